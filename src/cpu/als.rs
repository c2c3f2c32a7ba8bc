//! Alternating least squares for the one-class loss ([`Loss::Ials`](crate::objective::Loss)):
//! an epoch solves every user's row with the items fixed, then every item's with the users
//! fixed. The loss weighs every user–item pair, but a row's normal equations
//!
//! (w₀·G + Σ_events (c − w₀)·q qᵀ + λ_row·I) x = Σ_events c·q
//!
//! need only the other side's k×k Gramian G = Σ q qᵀ and the row's own events, so no pass
//! visits the pairs without events (Hu, Koren & Volinsky 2008). Each row takes a few steps of
//! conjugate gradient from where it stands, the matrix applied without being formed. Rows are
//! independent, so the threads split them and the bits do not depend on the thread count.
//!
//! λ_row is `--reg` times the row's weight, Σ c over its events plus w₀ for every other pair,
//! the frequency-scaled regularisation of Rendle et al. 2021 (constant with `--constant-reg`).
//!
//! The events are in memory, or in the block cache on disk (`--memory`): then a half-epoch reads
//! them a band at a time (a user block's row of blocks, an item block's column), the rows of a
//! band all of whose events it holds, so only the factors and one band are in memory.

use crate::data::{by_user, Rating};
use crate::error::{Error, Result};
use crate::metrics;
use crate::model::{Model, OneClassFit, Params};
use crate::objective::{LossSums, OneClass};
use crate::problem::Problem;
use crate::schedule::Schedule;
use crate::solver::{EpochFigures, Solver};
use crate::vector::{axpy, prefetch, Lanes};
use ndarray::{Array2, ArrayView2};
use rayon::prelude::*;
use std::collections::VecDeque;

/// One side's events by row: row r's are `index[starts[r]..starts[r + 1]]` (the other side's
/// rows) with their confidences in `weight`.
pub(crate) struct Events {
    pub starts: Vec<usize>,
    pub index: Vec<u32>,
    pub weight: Vec<f32>,
}

impl Events {
    /// The events of `ratings` grouped by user, each count turned into its confidence. A rating
    /// of 0 (below `--positive-threshold`) is no event.
    pub fn by_user(ratings: &[Rating], users: usize, one_class: &OneClass) -> Events {
        let (starts, pairs) = by_user(ratings, users, |_, r| (r.item, r.value));
        let (mut index, mut weight) = (Vec::with_capacity(pairs.len()), Vec::with_capacity(pairs.len()));
        let mut kept = vec![0usize; users + 1];
        for u in 0..users {
            for &(item, count) in &pairs[starts[u]..starts[u + 1]] {
                if count > 0.0 {
                    index.push(item);
                    weight.push(one_class.confidence(count));
                }
            }
            kept[u + 1] = index.len();
        }
        Events { starts: kept, index, weight }
    }

    pub fn row(&self, r: usize) -> (&[u32], &[f32]) {
        let span = self.starts[r]..self.starts[r + 1];
        (&self.index[span.clone()], &self.weight[span])
    }

    pub fn rows(&self) -> usize {
        self.starts.len() - 1
    }

    /// Rows `rows` alone, as rows from 0.
    pub fn slice(&self, rows: std::ops::Range<usize>) -> Events {
        let span = self.starts[rows.start]..self.starts[rows.end];
        let starts = self.starts[rows.start..=rows.end].iter().map(|s| s - span.start).collect();
        Events { starts, index: self.index[span.clone()].to_vec(), weight: self.weight[span].to_vec() }
    }

    /// Rows `rows` alone, as [`slice`](Self::slice) gives them, without a copy when they are
    /// every row.
    pub fn keep(self, rows: std::ops::Range<usize>) -> Events {
        if rows == (0..self.rows()) { self } else { self.slice(rows) }
    }

    /// The events of `rows` rows without any.
    pub fn empty(rows: usize) -> Events {
        Events { starts: vec![0; rows + 1], index: Vec::new(), weight: Vec::new() }
    }

    fn len(&self) -> usize {
        self.index.len()
    }

    /// Both sides' events of `problem`'s training set, or an error when it holds none.
    pub fn of_problem(problem: &Problem, one_class: &OneClass) -> Result<(Events, Events)> {
        let (by_user, by_item) = rayon::join(
            || Events::by_user(&problem.train, problem.num_users(), one_class),
            || {
                let swapped: Vec<Rating> = problem.train.iter().map(|r| Rating { user: r.item, item: r.user, value: r.value }).collect();
                Events::by_user(&swapped, problem.num_items(), one_class)
            },
        );
        if by_user.len() == 0 {
            return Err(Error::Data("no training events: every value is 0 (below --positive-threshold?)".into()));
        }
        Ok((by_user, by_item))
    }

    /// Each row's λ: `fit`'s, scaled by the row's weight (its events' confidences and w₀ for
    /// each of the `others` it has no event with).
    pub fn lambdas(&self, others: usize, fit: &OneClassFit) -> Vec<f32> {
        (0..self.rows())
            .map(|r| {
                let (index, weight) = self.row(r);
                fit.row_reg(weight.iter().sum::<f32>() + fit.settings.unobserved_weight * (others - index.len()) as f32)
            })
            .collect()
    }
}

/// Where an ALS solver's events are.
pub(crate) enum Store {
    Memory { by_user: Events, by_item: Events },
    /// In the block cache: the model's rows in the blocks' position order (put back in id
    /// order on the way out).
    Disk(Schedule),
}

/// The side a half-epoch solves.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Half {
    Users,
    Items,
}

impl Store {
    /// `problem`'s events for `model`: in memory, with the model recording each user's
    /// training items; or on disk, with the model's rows put in the blocks' position order.
    pub fn new(problem: &Problem, model: &mut Model, one_class: &OneClass) -> Result<Store> {
        match &problem.train_on_disk {
            None => {
                let (by_user, by_item) = Events::of_problem(problem, one_class)?;
                model.record_seen(problem);
                Ok(Store::Memory { by_user, by_item })
            }
            Some(disk) => {
                let schedule = Schedule::from_disk(disk.clone());
                super::reorder(model, |axis, rows| axis.gather(rows), &schedule);
                Ok(Store::Disk(schedule))
            }
        }
    }

    /// `model` (whose rows this store ordered) with its rows back in id order.
    pub fn restore(&self, mut model: Model) -> Model {
        if let Store::Disk(schedule) = self {
            super::reorder(&mut model, |axis, rows| axis.scatter(rows), schedule);
        }
        model
    }

    /// Calls `solve` with each band of `half`'s rows (a range of them) and the band's events,
    /// naming the other side's rows: on disk one band a block of that side; in memory one band
    /// of every row, or bands of at most `max_events` events (at least a row each).
    pub fn for_each_band(&self, half: Half, one_class: &OneClass, max_events: Option<usize>, mut solve: impl FnMut(std::ops::Range<usize>, &Events) -> Result<()>) -> Result<()> {
        match self {
            Store::Memory { by_user, by_item } => {
                let events = if half == Half::Users { by_user } else { by_item };
                let Some(most) = max_events else { return solve(0..events.rows(), events) };
                let mut start = 0;
                while start < events.rows() {
                    let mut end = start + 1;
                    while end < events.rows() && events.starts[end + 1] - events.starts[start] <= most {
                        end += 1;
                    }
                    solve(start..end, &events.slice(start..end))?;
                    start = end;
                }
            }
            Store::Disk(schedule) => {
                let mut buf = Vec::new();
                let axis = if half == Half::Users { &schedule.users } else { &schedule.items };
                for band in 0..axis.blocks() {
                    let (rows, events) = band_events(schedule, half, band, one_class, &mut buf)?;
                    solve(rows, &events)?;
                }
            }
        }
        Ok(())
    }

    /// Bytes read from disk by one pass over a side's bands (every block once).
    pub fn disk_bytes(&self) -> u64 {
        match self {
            Store::Memory { .. } => 0,
            Store::Disk(schedule) => 12 * schedule.ratings() as u64,
        }
    }
}

/// Band `band` of `half` from the block cache: a user block's row of blocks (or an item block's
/// column), as the events of its rows by place in the band, naming the other side's positions.
/// A block whose ratings fall outside its rows (a corrupt cache) is an error naming it.
fn band_events(schedule: &Schedule, half: Half, band: usize, one_class: &OneClass, buf: &mut Vec<Rating>) -> Result<(std::ops::Range<usize>, Events)> {
    let columns = schedule.items.blocks();
    let (axis, across) = if half == Half::Users { (&schedule.users, columns) } else { (&schedule.items, schedule.users.blocks()) };
    let rows = axis.start(band)..axis.start(band + 1);
    let first = rows.start as u32;
    let mut pairs = Vec::new();
    for o in 0..across {
        let b = if half == Half::Users { band * columns + o } else { o * columns + band };
        let ratings = schedule.checked_block(b, buf)?.ratings();
        pairs.extend(ratings.iter().map(|r| match half {
            Half::Users => Rating { user: r.user - first, item: r.item, value: r.value },
            Half::Items => Rating { user: r.item - first, item: r.user, value: r.value },
        }));
    }
    let events = Events::by_user(&pairs, rows.len(), one_class);
    Ok((rows, events))
}

/// The trainer of the one-class loss on the CPU.
pub struct AlsSolver {
    model: Model,
    store: Store,
    /// The held-out events, judged by NDCG@20 ([`metrics::ndcg`]) with the events in memory.
    test: Vec<Rating>,
    fit: OneClassFit,
    /// The items' Gramian as the last epoch left them (the next epoch's user solve needs it).
    item_gram: Option<Array2<f32>>,
    pool: rayon::ThreadPool,
    done: VecDeque<EpochFigures>,
}

impl AlsSolver {
    pub fn new(problem: &Problem, mut model: Model, params: &Params, threads: usize) -> Result<AlsSolver> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .map_err(|e| Error::InvalidParameter(format!("--threads {threads}: cannot start the thread pool: {e}")))?;
        let store = Store::new(problem, &mut model, &params.one_class)?;
        super::align_factors(&mut model);
        let fit = OneClassFit { settings: params.one_class, reg: params.reg, frequency_reg: params.frequency_reg };
        Ok(AlsSolver { model, store, test: problem.test.clone(), fit, item_gram: None, pool, done: VecDeque::new() })
    }

}

impl Store {
    /// One epoch of `m`: the users solved against the items, then the items against the users,
    /// and what it reports ([`epoch_figures`]). `item_gram` carries the items' Gramian from one
    /// epoch to the next.
    fn epoch(&self, m: &mut Model, fit: &OneClassFit, item_gram: &mut Option<Array2<f32>>, test: &[Rating], score_test: bool) -> Result<EpochFigures> {
        let (k, one_class) = (m.rank(), &fit.settings);
        let gq = item_gram.take().unwrap_or_else(|| gramian(m.item_factors.view()));
        let (p, q) = (m.user_factors.as_slice_mut().expect("row-major"), m.item_factors.as_slice_mut().expect("row-major"));
        self.for_each_band(Half::Users, one_class, None, |rows, events| {
            solve_side(&mut p[rows.start * k..rows.end * k], q, &gq, events, fit, false);
            Ok(())
        })?;
        let gp = gramian(m.user_factors.view());
        let (q, p) = (m.item_factors.as_slice_mut().expect("row-major"), m.user_factors.as_slice().expect("row-major"));
        // The items are solved last, so their events' part of the loss is taken as each block
        // is solved, while the user rows it names are still in cache.
        let mut train = LossSums::default();
        self.for_each_band(Half::Items, one_class, None, |rows, events| {
            train = solve_side(&mut q[rows.start * k..rows.end * k], p, &gp, events, fit, true).into_iter().fold(train, LossSums::merge);
            Ok(())
        })?;
        let gq = gramian(m.item_factors.view());
        let figures = epoch_figures(m, self, one_class, (&gp, &gq), Some(train), test, score_test)?;
        *item_gram = Some(gq);
        // From disk: a read of every block for each side.
        Ok(EpochFigures { streamed_bytes: 2 * self.disk_bytes(), ..figures })
    }

    /// NDCG@20 of `model`'s lists on the held-out events `test` when `score_test`; none with
    /// the events on disk (each user's training items, left out of the lists, are not at hand).
    pub fn ndcg(&self, model: &Model, test: &[Rating], score_test: bool) -> Option<f64> {
        match self {
            Store::Memory { .. } => (score_test && !test.is_empty()).then(|| metrics::ndcg(model, test)).flatten(),
            Store::Disk(_) => None,
        }
    }
}

/// Σ over rows of xᵀ·x: the k×k Gramian of a side's factors.
pub(crate) fn gramian(factors: ArrayView2<f32>) -> Array2<f32> {
    factors.t().dot(&factors)
}

/// Rows solved together at most: their conjugate-gradient steps go in lockstep, so each step's
/// products with the Gramian are one matrix product (a few times the speed of a matrix–vector
/// product per row).
const ROWS_PER_SOLVE: usize = 64;

/// Floats of other-side rows a block's events may name at most (512 KiB), unless one row's
/// alone take more: each CG step reads them all again, so they should stay in a core's L2
/// cache between steps. Blocks are cut from the data alone, so the bits do not depend on the
/// threads.
const BLOCK_EVENT_FLOATS: usize = 1 << 17;

/// Consecutive rows of `events` cut into blocks of at most [`ROWS_PER_SOLVE`] rows whose
/// events name at most [`BLOCK_EVENT_FLOATS`] floats at rank `k` (a block holds at least one
/// row).
pub(crate) fn solve_blocks(events: &Events, k: usize) -> Vec<std::ops::Range<usize>> {
    let mut blocks = Vec::new();
    let (mut start, mut floats) = (0, 0);
    for r in 0..events.rows() {
        let more = (events.starts[r + 1] - events.starts[r]) * k;
        if r > start && (r - start == ROWS_PER_SOLVE || floats + more > BLOCK_EVENT_FLOATS) {
            blocks.push(start..r);
            (start, floats) = (r, 0);
        }
        floats += more;
    }
    if start < events.rows() {
        blocks.push(start..events.rows());
    }
    blocks
}

/// Solves the rows of `rows` (k floats each, one per row of `events`) against the fixed
/// `other` side's rows, whose Gramian is `gram`, in parallel; with `sums`, returns the loss's
/// sums over their events once solved ([`event_sums`]), one per block of [`solve_blocks`], in
/// order (added up by the caller, so a cluster adds them as one process does).
pub(crate) fn solve_side(rows: &mut [f32], other: &[f32], gram: &Array2<f32>, events: &Events, fit: &OneClassFit, sums: bool) -> Vec<LossSums> {
    let one_class = &fit.settings;
    let k = gram.nrows();
    let lambdas = events.lambdas(other.len() / k.max(1), fit);
    let mut pieces = Vec::new();
    let mut rest = rows;
    for block in solve_blocks(events, k) {
        let (piece, tail) = rest.split_at_mut(block.len() * k);
        pieces.push((block, piece));
        rest = tail;
    }
    pieces
        .into_par_iter()
        .map(|(block, x)| {
            let systems: Vec<RowSystem> = block
                .map(|r| {
                    let (index, weight) = events.row(r);
                    RowSystem { other, k, index, weight, w0: one_class.unobserved_weight, lambda: lambdas[r] }
                })
                .collect();
            Block { systems, gram: gram.view(), w0: one_class.unobserved_weight, k }.solve(x, one_class, sums)
        })
        .collect()
}

/// Events ahead whose other-side rows are asked for while one is worked on: their misses (from
/// L3 or memory on the first pass over a block) overlap the work.
const AHEAD: usize = 4;

/// One row's normal equations but for the Gramian's term, applied without being formed.
struct RowSystem<'a> {
    other: &'a [f32],
    k: usize,
    index: &'a [u32],
    weight: &'a [f32],
    w0: f32,
    lambda: f32,
}

impl RowSystem<'_> {
    /// The other side's row of event `e`.
    #[inline(always)]
    fn event_row(&self, e: usize) -> &[f32] {
        &self.other[self.index[e] as usize * self.k..][..self.k]
    }

    /// out += λ·v + Σ_events ((c − w₀)(q·v) − t·c)·q: the row's terms of A·v beside w₀·G·v, less
    /// t·b (b = Σ_events c·q), so that t = 1 gives A·v − b in the same pass over the events.
    #[inline(always)]
    fn add_own_terms<L: Lanes>(&self, v: &[f32], t: f32, out: &mut [f32]) {
        axpy(out, self.lambda, v);
        for (e, &c) in self.weight.iter().enumerate() {
            if e + AHEAD < self.index.len() {
                prefetch(self.event_row(e + AHEAD));
            }
            let q = self.event_row(e);
            axpy(out, (c - self.w0) * L::dot(q, v) - t * c, q);
        }
    }
}

/// Consecutive rows' systems, sharing the Gramian.
struct Block<'a> {
    systems: Vec<RowSystem<'a>>,
    gram: ArrayView2<'a, f32>,
    w0: f32,
    k: usize,
}

impl Block<'_> {
    /// out = A·v − t·b for each row's v (rows of `v` and `out`): t = 0 for A·v, 1 for the
    /// residual's negative.
    #[inline(always)]
    fn apply<L: Lanes>(&self, v: &[f32], t: f32, out: &mut [f32]) {
        let n = self.systems.len();
        let v_rows = ArrayView2::from_shape((n, self.k), v).expect("n rows of k");
        let mut out_rows = ndarray::ArrayViewMut2::from_shape((n, self.k), &mut *out).expect("n rows of k");
        // V·G is (G·vᵢ)ᵀ row by row: G is symmetric.
        ndarray::linalg::general_mat_mul(self.w0, &v_rows, &self.gram, 0.0, &mut out_rows);
        for ((system, v), out) in self.systems.iter().zip(v.chunks_exact(self.k)).zip(out.chunks_exact_mut(self.k)) {
            system.add_own_terms::<L>(v, t, out);
        }
    }

    /// The settings' steps of conjugate gradient from the rows `x`, in place, then (with
    /// `sums`) the loss's sums over their events. Compiled for AVX2 and FMA where the CPU has
    /// them (or AVX-512), with the same bits ([`crate::vector::Lanes`]).
    fn solve(&self, x: &mut [f32], one_class: &OneClass, sums: bool) -> LossSums {
        match crate::vector::widest() {
            // SAFETY (both): the CPU has the path's features (`widest` detected them).
            #[cfg(target_arch = "x86_64")]
            crate::vector::Path::Avx512 => unsafe { self.solve_avx512(x, one_class, sums) },
            #[cfg(target_arch = "x86_64")]
            crate::vector::Path::Avx2 => unsafe { self.solve_avx2(x, one_class, sums) },
            _ => self.solve_with::<crate::vector::Portable>(x, one_class, sums),
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn solve_avx2(&self, x: &mut [f32], one_class: &OneClass, sums: bool) -> LossSums {
        self.solve_with::<crate::vector::Avx2>(x, one_class, sums)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx2,fma")]
    unsafe fn solve_avx512(&self, x: &mut [f32], one_class: &OneClass, sums: bool) -> LossSums {
        self.solve_with::<crate::vector::Avx512>(x, one_class, sums)
    }

    #[inline(always)]
    fn solve_with<L: Lanes>(&self, x: &mut [f32], one_class: &OneClass, sums: bool) -> LossSums {
        self.conjugate_gradient_with::<L>(x, one_class.cg_steps);
        let mut total = LossSums::default();
        if sums {
            for (system, x) in self.systems.iter().zip(x.chunks_exact(self.k)) {
                total = total.merge(row_sums::<L>(x, system.other, self.k, system.index, system.weight, one_class));
            }
        }
        total
    }

    #[inline(always)]
    fn conjugate_gradient_with<L: Lanes>(&self, x: &mut [f32], steps: usize) {
        let k = self.k;
        let mut r = vec![0.0f32; x.len()];
        self.apply::<L>(x, 1.0, &mut r);
        r.iter_mut().for_each(|a| *a = -*a);
        let mut p = r.clone();
        let mut ap = vec![0.0f32; x.len()];
        let mut rr: Vec<f32> = r.chunks_exact(k).map(|r| L::dot(r, r)).collect();
        for _ in 0..steps {
            self.apply::<L>(&p, 0.0, &mut ap);
            for (row, rr) in rr.iter_mut().enumerate() {
                if *rr <= f32::MIN_POSITIVE {
                    continue;
                }
                let span = row * k..(row + 1) * k;
                let (p, ap, r) = (&mut p[span.clone()], &ap[span.clone()], &mut r[span.clone()]);
                let alpha = *rr / L::dot(p, ap);
                axpy(&mut x[span], alpha, p);
                axpy(r, -alpha, ap);
                let next = L::dot(r, r);
                let beta = next / *rr;
                p.iter_mut().zip(r.iter()).for_each(|(p, r)| *p = r + beta * *p);
                *rr = next;
            }
        }
    }
}

/// The loss's sums over the events of `rows` (k floats each, one per row of `events`) with
/// the `other` side's rows: the events' part of the loss (their squared errors weighed by
/// confidence, less the w₀·s² that [`all_pairs_loss`] counts for them too).
fn event_sums(rows: &[f32], other: &[f32], k: usize, events: &Events, one_class: &OneClass) -> LossSums {
    // Row by row, then added in order: the same bits on any number of threads.
    let sums: Vec<LossSums> = (0..events.rows())
        .into_par_iter()
        .map(|r| {
            let (index, weight) = events.row(r);
            row_sums::<crate::vector::Portable>(&rows[r * k..(r + 1) * k], other, k, index, weight, one_class)
        })
        .collect();
    sums.into_iter().fold(LossSums::default(), LossSums::merge)
}

/// [`event_sums`] of one row `x`, whose events name the `other` side's rows `index` with
/// confidences `weight`.
#[inline(always)]
fn row_sums<L: Lanes>(x: &[f32], other: &[f32], k: usize, index: &[u32], weight: &[f32], one_class: &OneClass) -> LossSums {
    let row = |i: u32| &other[i as usize * k..][..k];
    let mut sums = LossSums::default();
    let scores = index.iter().zip(weight).enumerate().map(|(e, (&i, &c))| {
        if let Some(&ahead) = index.get(e + AHEAD) {
            prefetch(row(ahead));
        }
        (L::dot(x, row(i)), c)
    });
    let loss = one_class.row_loss(scores.inspect(|&(s, _)| sums.add([0.0, (1.0 - s) * (1.0 - s), (1.0 - s).abs(), 0.0])), 0.0);
    sums.loss = loss;
    sums
}

/// ½w₀ Σ over every pair of s², through the Gramians of the factors: Σ_u p_uᵀ G_Q p_u = ⟨G_P, G_Q⟩.
pub(crate) fn all_pairs_loss(one_class: &OneClass, (gp, gq): (&Array2<f32>, &Array2<f32>)) -> f64 {
    0.5 * one_class.unobserved_weight as f64 * gp.iter().zip(gq.iter()).map(|(a, b)| *a as f64 * *b as f64).sum::<f64>()
}

/// What an ALS epoch reports, on either device, from `model`'s factors (in the store's order)
/// and their Gramians `grams`: the loss over every pair, its events' part `events_part` where
/// the solve took it, else summed here by user band (so the item rows the events name stay in
/// cache; one more pass over the events on disk), and NDCG@20 of the held-out events `test`
/// when `score_test`. Its `streamed_bytes` are the caller's to fill in.
pub(crate) fn epoch_figures(model: &Model, store: &Store, one_class: &OneClass, grams: (&Array2<f32>, &Array2<f32>), events_part: Option<LossSums>, test: &[Rating], score_test: bool) -> Result<EpochFigures> {
    let (p, q) = (model.user_factors.as_slice().expect("row-major"), model.item_factors.as_slice().expect("row-major"));
    let k = model.rank();
    let mut train = match events_part {
        Some(sums) => sums,
        None => {
            let mut sums = LossSums::default();
            store.for_each_band(Half::Users, one_class, None, |rows, events| {
                sums = sums.merge(event_sums(&p[rows.start * k..rows.end * k], q, k, events, one_class));
                Ok(())
            })?;
            sums
        }
    };
    train.loss += all_pairs_loss(one_class, grams);
    Ok(EpochFigures { train, test: None, ndcg: store.ndcg(model, test, score_test), kernel_seconds: None, streamed_bytes: 0, uploads: Default::default() })
}

impl Solver for AlsSolver {
    fn name(&self) -> String {
        let threads = crate::resources::counted(self.pool.current_num_threads(), "thread");
        match &self.store {
            Store::Memory { .. } => format!("cpu (alternating least squares, {threads})"),
            Store::Disk(schedule) => format!("cpu (alternating least squares, {threads}, events read from {} blocks on disk)", schedule.grid()),
        }
    }

    fn submit_epoch(&mut self, _epoch: usize, _lr: f32, score_test: bool) -> Result<()> {
        let (model, store, fit, item_gram, test) = (&mut self.model, &self.store, &self.fit, &mut self.item_gram, &self.test);
        let figures = self.pool.install(|| store.epoch(model, fit, item_gram, test, score_test))?;
        self.done.push_back(figures);
        Ok(())
    }

    fn finish_epoch(&mut self) -> Result<EpochFigures> {
        self.done.pop_front().ok_or_else(|| Error::Data("finish_epoch with no epoch submitted".into()))
    }

    fn into_model(self: Box<Self>) -> Result<Model> {
        Ok(self.store.restore(self.model))
    }

    fn snapshot(&self) -> Result<Model> {
        Ok(self.store.restore(self.model.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::RatingSet;
    use crate::objective::{Confidence, Loss};

    /// 30 users × 20 items, each user with a few events of counts 1–3.
    fn problem() -> Problem {
        let triplets: Vec<(u64, u64, f32)> =
            (0..30u64).flat_map(|u| (0..20u64).filter(move |i| (u * 7 + i * 3) % 5 == 0 || (u + i) % 11 == 0).map(move |i| (u, i, 1.0 + ((u + i) % 3) as f32))).collect();
        Problem::new(RatingSet::from_triplets(triplets), None)
    }

    fn params(cg_steps: usize) -> Params {
        Params { rank: 4, one_class: OneClass { unobserved_weight: 0.3, confidence: Confidence::Log, alpha: 2.0, epsilon: 0.5, cg_steps }, ..Params::for_loss(Loss::Ials) }
    }

    fn solver(p: &Params, threads: usize) -> AlsSolver {
        let problem = problem();
        AlsSolver::new(&problem, Model::init(&problem, p, None), p, threads).unwrap()
    }

    /// The solver's events by user and by item (in memory).
    fn events(s: &AlsSolver) -> (&Events, &Events) {
        match &s.store {
            Store::Memory { by_user, by_item } => (by_user, by_item),
            Store::Disk(_) => panic!("events on disk"),
        }
    }

    /// The whole weighted loss summed pair by pair, every user against every item.
    fn brute_force_loss(model: &Model, problem: &Problem, one_class: &OneClass) -> f64 {
        let mut confidence = vec![vec![None; problem.num_items()]; problem.num_users()];
        for r in &problem.train {
            confidence[r.user as usize][r.item as usize] = Some(one_class.confidence(r.value));
        }
        let mut loss = 0.0;
        for (u, row) in confidence.iter().enumerate() {
            for (i, c) in row.iter().enumerate() {
                let s = model.score(u as u32, i as u32) as f64;
                loss += match c {
                    Some(c) => 0.5 * *c as f64 * (1.0 - s) * (1.0 - s),
                    None => 0.5 * one_class.unobserved_weight as f64 * s * s,
                };
            }
        }
        loss
    }

    #[test]
    fn solve_blocks_cover_the_rows_in_order_within_their_bounds() {
        // Rows of 1 to 3,000 events at rank 100: 3,000 rows' floats exceed a block alone.
        let counts: Vec<usize> = (0..500).map(|r| if r % 97 == 0 { 3000 } else { 1 + r % 40 }).collect();
        let mut starts = vec![0];
        counts.iter().for_each(|c| starts.push(starts.last().unwrap() + c));
        let events = Events { index: vec![0; starts[500]], weight: vec![1.0; starts[500]], starts };
        let blocks = solve_blocks(&events, 100);
        assert_eq!(blocks.first().unwrap().start, 0);
        assert_eq!(blocks.last().unwrap().end, 500);
        for (a, b) in blocks.iter().zip(blocks.iter().skip(1)) {
            assert_eq!(a.end, b.start);
        }
        for b in &blocks {
            let floats: usize = b.clone().map(|r| counts[r] * 100).sum();
            assert!(!b.is_empty() && b.len() <= ROWS_PER_SOLVE && (floats <= BLOCK_EVENT_FLOATS || b.len() == 1), "{b:?}: {floats}");
        }
    }

    #[test]
    fn the_loss_through_the_gramians_equals_the_sum_over_every_pair() {
        let p = params(3);
        let mut s = solver(&p, 1);
        for _ in 0..2 {
            s.submit_epoch(0, 0.0, false).unwrap();
            let reported = s.finish_epoch().unwrap().train.loss;
            let brute = brute_force_loss(&s.model, &problem(), &p.one_class);
            assert!((reported - brute).abs() <= 1e-4 * brute.abs(), "{reported} against {brute}");
        }
    }

    #[test]
    fn enough_conjugate_gradient_steps_solve_each_row_exactly() {
        // With as many steps as the rank (and a few for rounding), each user row minimises its
        // penalised loss with the items fixed: the gradient, summed pair by pair, vanishes.
        let p = params(12);
        let s = solver(&p, 2);
        let mut m = s.model.clone();
        let gq = gramian(m.item_factors.view());
        solve_side(m.user_factors.as_slice_mut().unwrap(), m.item_factors.as_slice().unwrap(), &gq, events(&s).0, &s.fit, false);
        let (problem, m, oc) = (problem(), &m, p.one_class);
        let k = m.rank();
        for u in 0..problem.num_users() {
            let (index, weight) = events(&s).0.row(u);
            let mut grad = vec![0.0f64; k];
            let mut mass = 0.0f64;
            for i in 0..problem.num_items() {
                let event = index.iter().position(|&j| j as usize == i).map(|at| weight[at]);
                let s_ui = m.score(u as u32, i as u32) as f64;
                let (c, target) = match event {
                    Some(c) => (c as f64, 1.0),
                    None => (oc.unobserved_weight as f64, 0.0),
                };
                mass += c;
                for (g, q) in grad.iter_mut().zip(m.item_row(i as u32)) {
                    *g += c * (s_ui - target) * *q as f64;
                }
            }
            for (g, x) in grad.iter_mut().zip(m.user_row(u as u32)) {
                *g += p.reg as f64 * mass * *x as f64;
            }
            let norm = grad.iter().map(|g| g * g).sum::<f64>().sqrt();
            assert!(norm < 1e-4, "user {u}: gradient {norm}");
        }
    }

    #[test]
    fn folding_in_a_training_user_gives_back_its_trained_row() {
        // Trained to convergence, a user's row is the solve of its events against the items,
        // which fold-in does once, exactly, from the model alone (its file keeps the settings).
        let p = params(8);
        let mut s = solver(&p, 2);
        for epoch in 0..60 {
            s.submit_epoch(epoch, 0.0, false).unwrap();
        }
        let problem = problem();
        for u in 0..problem.num_users() as u32 {
            let events: Vec<(u32, f32)> = problem.train.iter().filter(|r| r.user == u).map(|r| (r.item, r.value)).collect();
            let folded = s.model.fold_in(&events, Default::default()).unwrap();
            let trained = s.model.user_row(u);
            let gap: f32 = folded.factors.iter().zip(trained).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
            let size: f32 = trained.iter().map(|x| x.abs()).fold(0.0, f32::max);
            assert!(gap <= 5e-3 * size.max(1e-3), "user {u}: folded {:?}, trained {trained:?}", folded.factors);
            assert_eq!(folded.bias, 0.0);
        }
    }

    /// ½Σ λ_row·|x|² over both sides, λ_row as an epoch takes it.
    fn penalty(s: &AlsSolver, p: &Params) -> f64 {
        let side = |rows: &Array2<f32>, events: &Events, others: usize| -> f64 {
            (0..rows.nrows())
                .map(|r| {
                    let (index, weight) = events.row(r);
                    let mass = weight.iter().sum::<f32>() + p.one_class.unobserved_weight * (others - index.len()) as f32;
                    0.5 * (p.reg * mass) as f64 * rows.row(r).iter().map(|x| (*x as f64).powi(2)).sum::<f64>()
                })
                .sum()
        };
        let (by_user, by_item) = events(s);
        side(&s.model.user_factors, by_user, s.model.item_factors.nrows()) + side(&s.model.item_factors, by_item, s.model.user_factors.nrows())
    }

    #[test]
    fn epochs_never_raise_the_penalised_loss_and_threads_do_not_change_the_bits() {
        let p = params(3);
        let (mut one, mut two) = (solver(&p, 1), solver(&p, 2));
        let mut last = f64::INFINITY;
        for epoch in 0..6 {
            one.submit_epoch(epoch, 0.0, false).unwrap();
            two.submit_epoch(epoch, 0.0, false).unwrap();
            let (a, b) = (one.finish_epoch().unwrap().train.loss, two.finish_epoch().unwrap().train.loss);
            assert_eq!(a, b);
            let penalised = a + penalty(&one, &p);
            assert!(penalised <= last * (1.0 + 1e-6), "epoch {epoch}: {penalised} after {last}");
            last = penalised;
        }
        assert_eq!(one.model.user_factors, two.model.user_factors);
        assert_eq!(one.model.item_factors, two.model.item_factors);
    }
}
