//! The SVD++-style term (Koren, 2008): which items a user rated says something about
//! the user beyond the ratings' values. Each item j gets a second vector y_j, and each user u
//! the sum z_u = |N(u)|^-½ Σ_{j ∈ N(u)} y_j over the items N(u) it rated in training.
//!
//! SVD++ predicts with p_u + z_u. Here the user row holds that sum, w_u = p_u + z_u, and SGD
//! pulls it toward z_u instead of toward zero (λ‖w_u − z_u‖² is λ‖p_u‖²). So a user with few
//! ratings starts from what its items say, the model predicts as any other (μ + b_u + b_i +
//! w_u·q_i: the same rank, file and kernels), and training differs only in that pull.
//!
//! Updating every y_j of a user at each of its ratings, as SVD++'s SGD does, costs |N(u)|·k per
//! rating. Batched instead: a rating moves z_u by lr·ε·q_i in SVD++ (its |N(u)|
//! vectors y_j each by lr·ε·q_i/√|N(u)|), so the update adds ε·q_i to the user's *share* as it
//! goes (one more row operation a rating), and every third epoch ([`pass_every`]) each y_j takes
//! the sum of its users' shares, then each z_u (and w_u with it) is recomputed from the new y.
//! Only the epoch just before the passes gathers shares, each ε·q_i weighted by the epochs
//! since the last passes ([`share_weight`]): the other epochs' updates are the plain ones but
//! for z's pull. Two passes over
//! the ratings, each writing the rows of one side only. With the ratings in memory they read
//! lists ([`Index`]): each item's users, tile by tile, for y's gradient, and each user's items
//! for z, thirty-two columns at a time, each term rounded to bfloat16 ([`RoundedRows`]); from
//! the disk cache they run over the
//! [schedule](crate::schedule)'s blocks as training does, a block row (or column) per thread.
//! Either way each sum takes its terms in one order, the same on any number of threads. The
//! distributed runner's workers take the same lists and sweeps for their stripes' users
//! ([`StripeItems`]).
//!
//! Measured (BENCHMARKS.md), the default 40 epochs with it against the previous 60 without:
//! held-out RMSE 0.0055 lower on MovieLens 100k, 0.0044 on latest-small, 0.0133 on lecture
//! evaluations, 0.0017 and 0.0034 on two dense questionnaires, for 1.1–1.2× the time.

use crate::data::Rating;
use crate::model::Params;
use crate::error::Result;
use crate::schedule::Schedule;
use crate::update::Step;
use crate::vector::{axpy, dot, finish_streams, stream_scaled, widest, CacheLines, Path};
use rayon::prelude::*;

/// y's step, as a fraction of the epoch's learning rate. With [`ITEM_REG`] and [`CURVATURE`],
/// chosen by RMSE on ratings held out of the training files of five data sets (BENCHMARKS.md).
pub(crate) const ITEM_STEP: f32 = 0.1;
/// y's λ as a fraction of the factors' λ, applied as SVD++'s SGD applies it: at every rating
/// of every user who rated the item (so a popular item's y is held close to its evidence).
pub(crate) const ITEM_REG: f32 = 0.05;
/// How much of y's curvature bound damps its step: the bound is Σ |N(u)| over its users times
/// the ratings' mean |q_i|² (in rating units), so an item answered by thousands (a
/// questionnaire's) takes small steps, where it would otherwise overshoot.
pub(crate) const CURVATURE: f32 = 0.3;

/// How many epochs' shares the passes sum ([`passes_before`]): three, for a third of the
/// passes, which cost about what an epoch's updates cost (a read or write of a row per rating
/// and sixteen columns). That keeps squared error's held-out RMSE within 0.0004 of a pass
/// every epoch on five data sets, and the other losses' within 0.0015 on MovieLens (logistic
/// AUC on latest-small), though KL's divergence on msq rose 6% (on spi it fell 1%;
/// BENCHMARKS.md). One (a pass before every epoch but the first) where `--nonneg` is asked of
/// a loss that does not need it: the projection after z moves clipped more there (test RMSE
/// 0.003–0.005 higher on MovieLens 100k).
pub fn pass_every(params: &Params) -> usize {
    if params.nonneg && !params.loss.needs_nonneg() { 1 } else { 3 }
}

/// Whether the SVD++ term's passes run before epoch `epoch` (from 0) when they sum `every`
/// epochs' shares ([`pass_every`]): before the second epoch and every `every` after it, at the
/// learning rate of the epoch before (the last of those whose shares they sum). The first
/// comes early, so y starts at the highest rates and a short run has the term too. Before an
/// epoch, not after one: moving every z_u by three epochs' steps at once shifts the
/// predictions until the updates have taken it in, so training never ends on the passes
/// (ending there cost 0.0007 test RMSE on 20M ratings); shares left at the end are dropped, at
/// most three epochs' evidence for y at the smallest rates. A rule of the epoch alone, not of
/// how many are asked for, so a run cut short and resumed steps y as one never stopped.
pub(crate) fn passes_before(epoch: usize, every: usize) -> bool {
    epoch >= 1 && (epoch - 1).is_multiple_of(every)
}

/// What each ε·q_i of epoch `epoch`'s updates adds to its user's share, times ε·q_i: zero
/// (nothing gathered) unless the passes run before the next epoch ([`passes_before`]), and
/// then the number of epochs since the last passes, so the last epoch's shares stand for all
/// of them. Gathering in every epoch cost each update a share's read and write (a sixth to a
/// fifth of a plain update's time at rank 128); the last epoch's, weighted, left squared
/// error's held-out RMSE on five data sets equal or lower (one and two threads), and the other
/// losses' figures on MovieLens within noise but logistic AUC on latest-small, 0.0005 lower
/// (BENCHMARKS.md). Every backend takes the same rule.
pub(crate) fn share_weight(epoch: usize, every: usize) -> f32 {
    if passes_before(epoch + 1, every) { (epoch + 1).min(every) as f32 } else { 0.0 }
}

/// `step` for epoch `epoch` of a CPU trainer with `params` (one process or a cluster's
/// workers): its non-events' seed, and the shares weighted as [`share_weight`] says.
pub(crate) fn epoch_step(step: Step, epoch: usize, params: &Params) -> Step {
    step.for_epoch(epoch).gathering_shares(share_weight(epoch, pass_every(params)))
}

/// The SVD++-term state of one model, by the schedule's positions.
pub(crate) struct SvdppState {
    k: usize,
    /// |N(u)|^-½ by user (0 for a user with no training ratings).
    user_norm: Vec<f32>,
    reach: Reach,
    /// Each item's regularisation weight.
    item_weights: Vec<f32>,
    /// y: items × k, by sweep.
    item_vectors: Sweeps,
    /// z: users × k, what each user row is pulled toward.
    prior: CacheLines,
    /// users × k: Σ ε·q_i over the user's ratings met in the updates since the last pass.
    shares: CacheLines,
    /// items × k, by sweep: each item's gradient in the pass (kept, so its pages are mapped
    /// once).
    gradient: Sweeps,
    /// The passes' lists, when the ratings are in memory (none from the disk cache).
    index: Option<Index>,
}

/// What the passes read where the ratings are in memory: both sums read lists, not the
/// blocks, and add their terms rounded to bfloat16, two sweeps a cache line ([`RoundedRows`]).
/// 4 to 6 bytes a rating for the lists, and a user's parts half the bytes of its row.
struct Index {
    /// Each user's items, for z.
    by_user: UserItems,
    /// Each item's users, tile by tile, for y's gradient.
    by_item: ItemUsers,
    /// y rounded, for z.
    items: RoundedRows,
    /// Each user's |N(u)|^-½ share_u rounded, for y's gradient.
    parts: RoundedRows,
}

impl Index {
    fn new(by_user: UserItems, users: usize, items: usize, k: usize) -> Index {
        let by_item = ItemUsers::of(&by_user, items);
        Index { by_user, by_item, items: RoundedRows::zeros(items, k), parts: RoundedRows::zeros(users, k) }
    }

    /// Each item's gradient g_j = Σ_u |N(u)|^-½ share_u over its users, in their order, each
    /// term rounded to bfloat16, into `g` (from zero), from the users' `norms` and `shares`
    /// (users × k). A task a pair of sweeps and a range of items: the same sums on any number
    /// of threads.
    fn item_gradient(&mut self, g: &mut Sweeps, norms: &[f32], shares: &[f32]) {
        let (k, items, path) = (g.k, g.items, widest());
        if items == 0 {
            return;
        }
        self.parts.set_scaled(shares, k, norms);
        let pairs = RoundedRows::pairs(k);
        let span = items.div_ceil((2 * rayon::current_num_threads()).div_ceil(pairs.max(1))).max(1);
        let mut sweeps = g.data.chunks_mut((items * SWEEP).max(1));
        let mut tasks = Vec::new();
        for c in 0..pairs {
            let low = sweeps.next().expect("a pair's first sweep");
            let mut high = sweeps.next().map(|h| h.chunks_mut(span * SWEEP));
            for (x, low) in low.chunks_mut(span * SWEEP).enumerate() {
                tasks.push((c, x * span, low, high.as_mut().and_then(|h| h.next())));
            }
        }
        let (by_item, parts) = (&self.by_item, &self.parts);
        tasks.into_par_iter().for_each(|(c, first, low, mut high)| {
            low.fill(0.0);
            high.iter_mut().for_each(|h| h.fill(0.0));
            by_item.spread(parts.pair(c), first, low, high, path);
        });
    }

    /// z_u = `norm`·Σ y_j (y rounded: `self.items`) for pair `c` of sweeps, for users `first..`
    /// (`rows`, k wide), past the caches ([`stream_scaled`]), streams finished.
    fn priors(&self, c: usize, first: usize, norms: &[f32], rows: &mut [f32], k: usize, path: Path) {
        for (o, z) in rows.chunks_mut(k).enumerate() {
            self.by_user.prior_columns(first + o, norms[first + o], &self.items, c, z, path);
        }
        finish_streams();
    }
}

/// How many users a tile of [`ItemUsers`] holds: their parts of a pair of sweeps (a line each,
/// 512 KiB) stay in L2 while every item adds up its users among them. Of 2,048 to 65,536 in a
/// standalone loop over the 20M set's lists (dev-intel, 2 MiB of L2), 8,192 was fastest. At
/// most 65,536: a user's place in its tile is 16 bits.
const TILE_USERS: usize = 8192;
const _: () = assert!(TILE_USERS <= 1 << 16);

/// Each item's users, tile by tile of [`TILE_USERS`] users, for y's gradient: item by item, the
/// parts of its users in the tile (|N(u)|^-½ share_u, rounded, two sweeps a line) are read from
/// L2 and summed in registers, a line a rating and pair of sweeps. User by user instead, each
/// part added into each of its items' gradient lines, the pass read and wrote a line a rating
/// and sweep: at rank 128 on 20M ratings, one thread, 0.26–0.27 s against 0.20–0.22 with the
/// tiles and the parts' rounding (BENCHMARKS.md). Each sum takes its users in order, as the
/// pass over the blocks does.
struct ItemUsers {
    /// Where each tile's runs start in `runs`, tiles + 1 entries.
    tiles: Vec<usize>,
    /// Where each tile's users start in `users`.
    firsts: Vec<usize>,
    /// (item, end of its users in `users`): each tile's items with users in it, in order.
    runs: Vec<(u32, usize)>,
    /// Each run's users, in order, by their place in the tile.
    users: Vec<u16>,
}

impl ItemUsers {
    fn of(index: &UserItems, items: usize) -> ItemUsers {
        match &index.items {
            ItemIds::Narrow(ids) => ItemUsers::build(&index.starts, ids, items),
            ItemIds::Wide(ids) => ItemUsers::build(&index.starts, ids, items),
        }
    }

    /// From each user's items (`ids` from `starts[u]`), tile by tile: a count of each item's
    /// users in the tile, the items met in order, then the users placed in turn.
    fn build<I: ItemId>(starts: &[usize], ids: &[I], items: usize) -> ItemUsers {
        let users = starts.len() - 1;
        let (mut tiles, mut firsts, mut runs) = (vec![0], Vec::new(), Vec::new());
        let (mut placed, mut next, mut met) = (vec![0u16; ids.len()], vec![0usize; items], Vec::new());
        for first in (0..users).step_by(TILE_USERS) {
            let last = (first + TILE_USERS).min(users);
            for &j in &ids[starts[first]..starts[last]] {
                if next[j.at()] == 0 {
                    met.push(j.at() as u32);
                }
                next[j.at()] += 1;
            }
            met.sort_unstable();
            // Each item's count becomes where its users go.
            let mut at = starts[first];
            for &j in &met {
                let n = std::mem::replace(&mut next[j as usize], at);
                at += n;
                runs.push((j, at));
            }
            for u in first..last {
                for &j in &ids[starts[u]..starts[u + 1]] {
                    placed[next[j.at()]] = (u - first) as u16;
                    next[j.at()] += 1;
                }
            }
            met.drain(..).for_each(|j| next[j as usize] = 0);
            firsts.push(starts[first]);
            tiles.push(runs.len());
        }
        ItemUsers { tiles, firsts, runs, users: placed }
    }

    /// Adds to the gradient lines of items `first..` of a pair of sweeps (`low`, and `high`
    /// where the pair has a second) the parts of their users (`parts`: the pair's line of each
    /// user).
    fn spread(&self, parts: &[[u32; SWEEP]], first: usize, low: &mut [f32], high: Option<&mut [f32]>, path: Path) {
        match path {
            // SAFETY (both): the CPU has the path's features (`widest` detected them).
            #[cfg(target_arch = "x86_64")]
            Path::Avx512 => unsafe { self.spread_avx512(parts, first, low, high) },
            #[cfg(target_arch = "x86_64")]
            Path::Avx2 => unsafe { self.spread_avx2(parts, first, low, high) },
            _ => self.spread_with(parts, first, low, high),
        }
    }

    /// (No fused arithmetic is written, and a bfloat16 is the upper half of its float, so the
    /// sums are the same bits on every path.)
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx2,fma")]
    unsafe fn spread_avx512(&self, parts: &[[u32; SWEEP]], first: usize, low: &mut [f32], high: Option<&mut [f32]>) {
        self.spread_with(parts, first, low, high)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn spread_avx2(&self, parts: &[[u32; SWEEP]], first: usize, low: &mut [f32], high: Option<&mut [f32]>) {
        self.spread_with(parts, first, low, high)
    }

    #[inline(always)]
    fn spread_with(&self, parts: &[[u32; SWEEP]], first: usize, low: &mut [f32], mut high: Option<&mut [f32]>) {
        let end = first + low.len() / SWEEP;
        for t in 0..self.firsts.len() {
            let runs = &self.runs[self.tiles[t]..self.tiles[t + 1]];
            let from = runs.partition_point(|&(j, _)| (j as usize) < first);
            let mut start = if from == 0 { self.firsts[t] } else { runs[from - 1].1 };
            let tile = &parts[t * TILE_USERS..];
            for &(j, stop) in runs[from..].iter().take_while(|&&(j, _)| (j as usize) < end) {
                let at = (j as usize - first) * SWEEP;
                let mut l: [f32; SWEEP] = low[at..at + SWEEP].try_into().expect("a sweep's line");
                let mut h: [f32; SWEEP] = high.as_ref().map_or([0.0; SWEEP], |h| h[at..at + SWEEP].try_into().expect("a sweep's line"));
                for &o in &self.users[start..stop] {
                    add_line(&tile[o as usize], &mut l, &mut h);
                }
                low[at..at + SWEEP].copy_from_slice(&l);
                if let Some(high) = high.as_mut() {
                    high[at..at + SWEEP].copy_from_slice(&h);
                }
                start = stop;
            }
        }
    }
}

/// Each user's items by position, in the order the users' pass over the blocks meets them
/// (along the user's row of the grid, block by block): both passes read this instead of the
/// blocks, so a user's z (or its share) is taken once a sweep and held in a register through
/// its items, the same sums in the same order. Over the blocks, a user's row is met about once
/// per block, and so read from L3 once per item block (36 times at rank 128 on 20M ratings).
/// 2 bytes a rating where there are fewer than 65,536 items, else 4 ([`ItemIds`]).
struct UserItems {
    /// Where each user's items start in `items`, users + 1 entries.
    starts: Vec<usize>,
    items: ItemIds,
}

/// The users' lists of items, in 16 bits where every position fits: each sweep of a pass
/// streams the whole list from memory, and half its bytes made the passes 0.04 s shorter
/// at rank 128 on 20M ratings, one thread (BENCHMARKS.md).
enum ItemIds {
    Narrow(Vec<u16>),
    Wide(Vec<u32>),
}

/// An item's position as [`ItemIds`] holds it.
trait ItemId: Copy {
    fn at(self) -> usize;
}

impl ItemId for u16 {
    #[inline(always)]
    fn at(self) -> usize {
        self as usize
    }
}

impl ItemId for u32 {
    #[inline(always)]
    fn at(self) -> usize {
        self as usize
    }
}

impl UserItems {
    fn of(schedule: &Schedule, user_counts: &[u32]) -> Result<UserItems> {
        UserItems::build(user_counts, 0, |add| {
            let mut buf = Vec::new();
            // Blocks are numbered row by row of the grid: each user's items come block by
            // block along its row, as the pass over the blocks meets them.
            for b in 0..schedule.len() {
                add(schedule.block_into(b, &mut buf)?);
            }
            Ok(())
        })
    }

    /// The lists of users `first..` with `user_counts` items each, from the blocks that
    /// `blocks` hands to `add` in order (each rating's item appended to its user's list).
    fn build(user_counts: &[u32], first: usize, blocks: impl FnOnce(&mut dyn FnMut(&[Rating])) -> Result<()>) -> Result<UserItems> {
        let mut starts = Vec::with_capacity(user_counts.len() + 1);
        starts.push(0);
        for &n in user_counts {
            starts.push(starts[starts.len() - 1] + n as usize);
        }
        let mut next = starts.clone();
        let mut items = vec![0u32; starts[user_counts.len()]];
        blocks(&mut |ratings: &[Rating]| {
            for r in ratings {
                let at = &mut next[r.user as usize - first];
                items[*at] = r.item;
                *at += 1;
            }
        })?;
        let items = match items.iter().all(|&j| j <= u16::MAX as u32) {
            true => ItemIds::Narrow(items.iter().map(|&j| j as u16).collect()),
            false => ItemIds::Wide(items),
        };
        Ok(UserItems { starts, items })
    }

    /// User `u`'s items in `ids` (the index's list), in the order the pass over the blocks
    /// meets them.
    #[inline(always)]
    fn of_user<'a, I: ItemId>(&self, ids: &'a [I], u: usize) -> &'a [I] {
        &ids[self.starts[u]..self.starts[u + 1]]
    }

    /// Σ y_j over user `u`'s items j, in their order, for the columns of one pair of sweeps
    /// (`y`, y's rounded lines: [`RoundedRows`]), summed in registers: the bits of adding
    /// into a zeroed z. The low halves' sums (the pair's first sixteen columns), then the
    /// high halves'.
    #[inline(always)]
    fn gather(&self, u: usize, y: &[[u32; SWEEP]], path: Path) -> ([f32; SWEEP], [f32; SWEEP]) {
        match path {
            // SAFETY (both): the CPU has the path's features (`widest` detected them).
            #[cfg(target_arch = "x86_64")]
            Path::Avx512 => unsafe { self.gather_avx512(u, y) },
            #[cfg(target_arch = "x86_64")]
            Path::Avx2 => unsafe { self.gather_avx2(u, y) },
            _ => self.gather_with(u, y),
        }
    }

    /// (As for [`ItemUsers::spread`], the same bits on every path: a bfloat16 is the upper
    /// half of the float it stands for, so the shift and the mask are exact.)
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx2,fma")]
    unsafe fn gather_avx512(&self, u: usize, y: &[[u32; SWEEP]]) -> ([f32; SWEEP], [f32; SWEEP]) {
        self.gather_with(u, y)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn gather_avx2(&self, u: usize, y: &[[u32; SWEEP]]) -> ([f32; SWEEP], [f32; SWEEP]) {
        self.gather_with(u, y)
    }

    #[inline(always)]
    fn gather_with(&self, u: usize, y: &[[u32; SWEEP]]) -> ([f32; SWEEP], [f32; SWEEP]) {
        match &self.items {
            ItemIds::Narrow(ids) => self.gather_over(ids, u, y),
            ItemIds::Wide(ids) => self.gather_over(ids, u, y),
        }
    }

    #[inline(always)]
    fn gather_over<I: ItemId>(&self, ids: &[I], u: usize, y: &[[u32; SWEEP]]) -> ([f32; SWEEP], [f32; SWEEP]) {
        let (mut low, mut high) = ([0.0f32; SWEEP], [0.0f32; SWEEP]);
        for &j in self.of_user(ids, u) {
            add_line(&y[j.at()], &mut low, &mut high);
        }
        (low, high)
    }

    /// z_u = `norm`·Σ y_j over user `u`'s items, for the columns of pair `c` of y's rounded
    /// sweeps, written into user row `z` (k wide) past the caches where it can
    /// ([`stream_scaled`]: the rows are read after the pass, and written through L2 they
    /// pushed y's lines out of it; at rank 128 on 20M ratings, one thread, the sums took 0.13 s
    /// instead of 0.22). [`finish_streams`] before the rows are read.
    #[inline(always)]
    fn prior_columns(&self, u: usize, norm: f32, y: &RoundedRows, c: usize, z: &mut [f32], path: Path) {
        let (low, high) = self.gather(u, y.pair(c), path);
        let mut sums = [0.0f32; 2 * SWEEP];
        sums[..SWEEP].copy_from_slice(&low);
        sums[SWEEP..].copy_from_slice(&high);
        stream_scaled(&mut z[c * 2 * SWEEP..], norm, &sums, path);
    }
}

/// Columns of y and its gradient in a cache line of each item's row: a sweep. The passes take
/// two sweeps at a time (y and the users' parts rounded to bfloat16, two sweeps a line:
/// [`RoundedRows`]), so what they read stays in a core's L2 cache (17,770 items: 1.1 MB, where
/// whole rows at rank 128 take 9 MB and came from L3) and each sum sits in registers.
const SWEEP: usize = 16;

/// items × k floats sweep by sweep: columns 0..16 of every item, then 16..32, and so on, the
/// last sweep's lanes past k held at zero.
struct Sweeps {
    items: usize,
    k: usize,
    data: CacheLines,
}

impl Sweeps {
    fn zeros(items: usize, k: usize) -> Sweeps {
        Sweeps { items, k, data: CacheLines::zeros(k.div_ceil(SWEEP) * items * SWEEP) }
    }

    /// Sweep `c` (its first column is c·16), items × 16.
    fn sweep(&self, c: usize) -> &[f32] {
        &self.data[c * self.items * SWEEP..][..self.items * SWEEP]
    }

    /// Item j's value in column f.
    #[cfg(test)]
    fn at(&self, j: usize, f: usize) -> f32 {
        self.data[(f / SWEEP * self.items + j) * SWEEP + f % SWEEP]
    }

    /// Item j's columns of sweep `c`, and how many of the sweep's lanes are columns (the
    /// last sweep's may be fewer than 16).
    fn line(&self, c: usize, j: usize) -> std::ops::Range<usize> {
        let start = (c * self.items + j) * SWEEP;
        start..start + SWEEP.min(self.k - c * SWEEP)
    }

    /// items × k, row by row.
    fn to_rows(&self) -> Vec<f32> {
        let mut rows = vec![0.0; self.items * self.k];
        for c in 0..self.k.div_ceil(SWEEP) {
            for j in 0..self.items {
                let line = &self.data[self.line(c, j)];
                rows[j * self.k + c * SWEEP..][..line.len()].copy_from_slice(line);
            }
        }
        rows
    }

    /// From items × k, row by row.
    fn set_rows(&mut self, rows: &[f32]) {
        for c in 0..self.k.div_ceil(SWEEP) {
            for j in 0..self.items {
                let line = self.line(c, j);
                let width = line.len();
                self.data[line].copy_from_slice(&rows[j * self.k + c * SWEEP..][..width]);
            }
        }
    }
}

/// Rows (y's, or the users' parts of its gradient) rounded to bfloat16 for the passes' sums,
/// two sweeps a cache line: lane f of row r's line in pair c holds column 32c + f in its low
/// half and 32c + 16 + f in its high half. A sum reads a line a term and pair of sweeps, not
/// one a term and sweep: half the lines, which are what the passes wait on (at rank 128 on 20M
/// ratings, one thread, z's pass and the rows' moves took 0.26 s, against 0.34 with y's f32
/// lines; held-out figures the same: BENCHMARKS.md). The GPU rounds alike as it sums
/// ([`round_to_bf16`]); y, z and the sums themselves stay in f32.
struct RoundedRows {
    rows: usize,
    data: Vec<RoundedLine>,
}

/// A line of [`RoundedRows`], on a cache line of its own.
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C, align(64))]
struct RoundedLine([u32; SWEEP]);

/// `scale` times two sweeps' values (`low`, `high`), rounded into a line. (Times 1 is exact.)
#[inline(always)]
fn pack_line(low: &[f32; SWEEP], high: &[f32; SWEEP], scale: f32) -> RoundedLine {
    RoundedLine(std::array::from_fn(|f| bf16_bits(scale * low[f]) >> 16 | bf16_bits(scale * high[f])))
}

/// A line's two sweeps added to `low` and `high`: a bfloat16 is the upper half of the float it
/// stands for, so the shift and the mask give each exactly.
#[inline(always)]
fn add_line(line: &[u32; SWEEP], low: &mut [f32; SWEEP], high: &mut [f32; SWEEP]) {
    for ((l, h), &bits) in low.iter_mut().zip(high.iter_mut()).zip(line) {
        *l += f32::from_bits(bits << 16);
        *h += f32::from_bits(bits & 0xFFFF_0000);
    }
}

impl RoundedRows {
    fn zeros(rows: usize, k: usize) -> RoundedRows {
        RoundedRows { rows, data: vec![RoundedLine::default(); RoundedRows::pairs(k) * rows] }
    }

    /// How many pairs of sweeps k columns take.
    fn pairs(k: usize) -> usize {
        k.div_ceil(2 * SWEEP)
    }

    /// From y's sweeps.
    fn set(&mut self, y: &Sweeps) {
        let (sweeps, none) = (y.k.div_ceil(SWEEP), vec![0.0; y.items * SWEEP]);
        self.data.par_chunks_mut(self.rows.max(1)).enumerate().for_each(|(c, pair)| {
            let low = y.sweep(2 * c).chunks_exact(SWEEP);
            let high = if 2 * c + 1 < sweeps { y.sweep(2 * c + 1) } else { &none };
            for ((line, low), high) in pair.iter_mut().zip(low).zip(high.chunks_exact(SWEEP)) {
                *line = pack_line(low.try_into().expect("a sweep"), high.try_into().expect("a sweep"), 1.0);
            }
        });
    }

    /// From `rows` (k wide, row by row), each row r times `scales[r]`: a task a few thousand
    /// rows, read in order, each row's lines of every pair in turn.
    fn set_scaled(&mut self, rows: &[f32], k: usize, scales: &[f32]) {
        const ROWS: usize = 4096;
        let path = widest();
        let mut pairs: Vec<_> = self.data.chunks_mut(self.rows.max(1)).map(|pair| pair.chunks_mut(ROWS)).collect();
        let tasks: Vec<Vec<&mut [RoundedLine]>> = (0..self.rows.div_ceil(ROWS)).map(|_| pairs.iter_mut().map(|p| p.next().expect("a pair's rows")).collect()).collect();
        tasks.into_par_iter().enumerate().for_each(|(t, mut lines)| {
            let first = t * ROWS;
            let n = lines[0].len();
            round_rows(&mut lines, &rows[first * k..(first + n) * k], k, &scales[first..first + n], path);
        });
    }

    /// Pair `c` of sweeps (columns 32c..32c + 32), a line a row.
    fn pair(&self, c: usize) -> &[[u32; SWEEP]] {
        bytemuck::cast_slice(&self.data[c * self.rows..][..self.rows])
    }
}

/// Each row of `rows` (k wide) times its scale, rounded, into its line of each pair (`lines`,
/// a slice of rows a pair).
fn round_rows(lines: &mut [&mut [RoundedLine]], rows: &[f32], k: usize, scales: &[f32], path: Path) {
    match path {
        // SAFETY (both): the CPU has the path's features (`widest` detected them).
        #[cfg(target_arch = "x86_64")]
        Path::Avx512 => unsafe { round_rows_avx512(lines, rows, k, scales) },
        #[cfg(target_arch = "x86_64")]
        Path::Avx2 => unsafe { round_rows_avx2(lines, rows, k, scales) },
        _ => round_rows_with(lines, rows, k, scales),
    }
}

/// (Rounding is exact integer work and the product one rounding, the same bits on every path.)
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn round_rows_avx512(lines: &mut [&mut [RoundedLine]], rows: &[f32], k: usize, scales: &[f32]) {
    round_rows_with(lines, rows, k, scales)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn round_rows_avx2(lines: &mut [&mut [RoundedLine]], rows: &[f32], k: usize, scales: &[f32]) {
    round_rows_with(lines, rows, k, scales)
}

#[inline(always)]
fn round_rows_with(lines: &mut [&mut [RoundedLine]], rows: &[f32], k: usize, scales: &[f32]) {
    for (r, (row, &scale)) in rows.chunks_exact(k).zip(scales).enumerate() {
        for (c, pair) in lines.iter_mut().enumerate() {
            let from = 2 * c * SWEEP;
            let (low, high): ([f32; SWEEP], [f32; SWEEP]) = match row.get(from..from + 2 * SWEEP) {
                Some(both) => (both[..SWEEP].try_into().expect("a sweep"), both[SWEEP..].try_into().expect("a sweep")),
                // The last pair, part-filled (lanes past k 0).
                None => {
                    let column = |f: usize| row.get(from + f).copied().unwrap_or(0.0);
                    (std::array::from_fn(column), std::array::from_fn(|f| column(SWEEP + f)))
                }
            };
            pair[r] = pack_line(&low, &high, scale);
        }
    }
}

/// `x` rounded to the nearest bfloat16 (ties to even), as an f32: what the passes' sums add.
fn round_to_bf16(x: f32) -> f32 {
    f32::from_bits(bf16_bits(x))
}

/// The bits of `x` rounded to the nearest bfloat16 (ties to even): the upper half, the lower
/// zero. A NaN stays one (where shaders/svdpp.wgsl's may come out infinite: training has
/// failed by then either way).
fn bf16_bits(x: f32) -> u32 {
    let bits = x.to_bits();
    // (Both computed and one chosen, so the loops that round vectorise.)
    let rounded = bits.wrapping_add(0x7FFF + (bits >> 16 & 1)) & 0xFFFF_0000;
    if x.is_nan() { bits & 0xFFFF_0000 | 0x0040_0000 } else { rounded }
}

/// The SVD++ term's two sums over one DSGD stripe's users, for the distributed runner
/// ([`crate::distributed`]), on rows as the cluster sends them (row by row, k a row): the
/// same index and sweeps as the CPU's pass. (Rating by rating over the stripe's blocks, each
/// rating's rows from L3 or memory, the passes made two workers' epochs 2.3x as long as they
/// are with these, at rank 128 on the 20M set: BENCHMARKS.md.)
pub(crate) struct StripeItems {
    index: Index,
    /// The stripe's first user, by position.
    first: usize,
    /// y or its gradient by sweep, kept from pass to pass (9 MB at rank 128 on 17,770 items).
    sweeps: Sweeps,
}

impl StripeItems {
    /// The items of users `users` (positions), from their ratings: `blocks` in order (the
    /// stripe's row of the grid), each naming only those users and items below `items`.
    pub fn new(users: std::ops::Range<usize>, blocks: &[&[Rating]], items: usize, k: usize) -> Result<StripeItems> {
        let first = users.start;
        let mut counts = vec![0u32; users.len()];
        for r in blocks.iter().flat_map(|b| b.iter()) {
            match counts.get_mut((r.user as usize).wrapping_sub(first)) {
                Some(n) if (r.item as usize) < items => *n += 1,
                _ => return Err(crate::error::Error::Data(format!("a rating names user {} and item {}, outside the stripe's users {users:?} and the {items} items", r.user, r.item))),
            }
        }
        let by_user = UserItems::build(&counts, first, |add| {
            blocks.iter().for_each(|b| add(b));
            Ok(())
        })?;
        Ok(StripeItems { index: Index::new(by_user, users.len(), items, k), first, sweeps: Sweeps::zeros(items, k) })
    }

    /// The stripe's first user, by position.
    pub fn first(&self) -> usize {
        self.first
    }

    /// Each item's part of y's gradient from the stripe: Σ |N(u)|^-½ share_u over its users in
    /// the stripe, in their order (items × k, row by row). `norms` and `shares` (users × k)
    /// are the stripe's users'.
    pub fn item_gradient(&mut self, norms: &[f32], shares: &[f32]) -> Vec<f32> {
        self.index.item_gradient(&mut self.sweeps, norms, shares);
        self.sweeps.to_rows()
    }

    /// The stripe's users' priors z_u = |N(u)|^-½ Σ y_j over their items, into `z` (users × k,
    /// row by row), from y (items × k, row by row): the bits of the one-process pass.
    pub fn priors(&mut self, norms: &[f32], y: &[f32], z: &mut [f32]) {
        let (k, path) = (self.sweeps.k, widest());
        self.sweeps.set_rows(y);
        self.index.items.set(&self.sweeps);
        for c in 0..RoundedRows::pairs(k) {
            self.index.priors(c, 0, norms, z, k, path);
        }
    }
}

/// How far each item's y reaches: the items' numbers of training ratings, and Σ |N(u)| over
/// each item's users (the ratings its y enters, which scales its decay and curvature).
#[derive(Clone, Debug)]
pub(crate) struct Reach {
    pub user_counts: Vec<u32>,
    pub item_counts: Vec<f32>,
    pub item_reach: Vec<f32>,
}

impl Reach {
    /// From `schedule`'s ratings, by its positions.
    pub fn of(schedule: &Schedule) -> Result<Reach> {
        let mut user_counts = vec![0u32; schedule.users.ids()];
        let mut item_counts = vec![0.0f32; schedule.items.ids()];
        let mut buf = Vec::new();
        for b in 0..schedule.len() {
            for r in schedule.checked_block(b, &mut buf)?.ratings() {
                user_counts[r.user as usize] += 1;
                item_counts[r.item as usize] += 1.0;
            }
        }
        let mut item_reach = vec![0.0f32; schedule.items.ids()];
        for b in 0..schedule.len() {
            for r in schedule.block_into(b, &mut buf)? {
                item_reach[r.item as usize] += user_counts[r.user as usize] as f32;
            }
        }
        Ok(Reach { user_counts, item_counts, item_reach })
    }

    /// The ratings' mean |q_i|² (each item's counted once per rating), in rating units
    /// (`scale`² times): with an item's reach, the bound on its y's curvature.
    pub fn mean_squared_norm(&self, q: &[f32], k: usize, scale: f32) -> f32 {
        let total: f64 = q.par_chunks(k).zip(self.item_counts.par_iter()).map(|(qi, &n)| n as f64 * dot(qi, qi) as f64).sum();
        let ratings: f64 = self.item_counts.iter().map(|&n| n as f64).sum();
        (total / ratings.max(1.0)) as f32 * scale * scale
    }
}

/// y_j's step after an epoch at `step`: y += (g − ρ·y) / (1/(η·lr) + κ·c + ρ), where g is the
/// sum of its users' shares, each times |N(u)|^-½; ρ = λ·w·[`ITEM_REG`]·reach its decay; and
/// c = reach·`mean_norm` its curvature bound: a step of η·lr where the curvature is small, never
/// past the bound's minimum where it is large. shaders/svdpp.wgsl mirrors it.
#[inline(always)]
pub(crate) fn item_step(y: &mut [f32], gradient: &[f32], reach: f32, weight: f32, mean_norm: f32, step: &Step) {
    let decay = step.reg * weight * ITEM_REG * reach;
    let denominator = 1.0 / (ITEM_STEP * step.lr) + CURVATURE * mean_norm * reach + decay;
    for (yf, &g) in y.iter_mut().zip(gradient) {
        *yf += (g - decay * *yf) / denominator;
    }
}

impl SvdppState {
    /// The state for `schedule`'s ratings at rank `k`, with y = 0 (so z = 0: the first epoch
    /// trains as without it). `item_weights` are the items' regularisation weights by position.
    pub fn new(schedule: &Schedule, k: usize, item_weights: &[f32]) -> Result<SvdppState> {
        let reach = Reach::of(schedule)?;
        let (users, items) = (reach.user_counts.len(), reach.item_counts.len());
        let user_norm = reach.user_counts.iter().map(|&n| if n == 0 { 0.0 } else { 1.0 / (n as f32).sqrt() }).collect();
        let index = if schedule.on_disk() { None } else { Some(Index::new(UserItems::of(schedule, &reach.user_counts)?, users, items, k)) };
        Ok(SvdppState {
            k,
            user_norm,
            reach,
            item_weights: item_weights.to_vec(),
            item_vectors: Sweeps::zeros(items, k),
            prior: CacheLines::zeros(users * k),
            shares: CacheLines::zeros(users * k),
            gradient: Sweeps::zeros(items, k),
            index,
        })
    }

    /// Every prior, users × k by position.
    pub fn priors(&self) -> &[f32] {
        &self.prior
    }

    /// Every prior (read) and share (written by the updates), users × k by position.
    pub fn priors_and_shares(&mut self) -> (&[f32], &mut [f32]) {
        (&self.prior, &mut self.shares)
    }

    /// The passes at `step` (the learning rate and regularisation of the epoch before them),
    /// where [`passes_before`] says: moves y by the shares since the last and recomputes z, moving each user row w_u with it so p_u = w_u − z_u
    /// stays (projected to ≥ 0 again with non-negative factors), and clears the shares. `p`
    /// and `q` (row-major, k a row) are the model's, by position. Runs on the current rayon
    /// pool.
    pub fn run_passes(&mut self, schedule: &Schedule, p: &mut [f32], q: &[f32], step: &Step) -> Result<()> {
        let (k, items) = (self.k, self.reach.item_counts.len());
        self.item_gradient(schedule)?;
        let mean_norm = self.reach.mean_squared_norm(q, k, step.unit.inverse);
        let (reach, weights) = (&self.reach.item_reach, &self.item_weights);
        // Line by line (each a sweep's columns of one item).
        let lines = self.item_vectors.data.par_chunks_mut(SWEEP).zip(self.gradient.data.par_chunks(SWEEP));
        lines.enumerate().for_each(|(x, (y, g))| item_step(y, g, reach[x % items], weights[x % items], mean_norm, step));
        self.move_priors(schedule, p, step.nonneg)
    }

    /// Each item's gradient Σ_u |N(u)|^-½ share_u over its users, in the users' order, each
    /// term rounded to bfloat16 ([`Index::item_gradient`]; from the blocks, a block of items a
    /// thread).
    fn item_gradient(&mut self, schedule: &Schedule) -> Result<()> {
        let (k, items) = (self.k, self.reach.item_counts.len());
        let (norm, shares) = (&self.user_norm, &self.shares);
        match &mut self.index {
            Some(index) => index.item_gradient(&mut self.gradient, norm, shares),
            None => {
                let mut rows = vec![0.0f32; items * k];
                over_blocks(schedule, Side::Items, &mut rows, k, |r, g| {
                    let u = r.user as usize;
                    for (gf, &share) in g.iter_mut().zip(&shares[u * k..][..k]) {
                        *gf += round_to_bf16(norm[u] * share);
                    }
                })?;
                self.gradient.set_rows(&rows);
            }
        }
        Ok(())
    }

    /// z_u afresh from y (into the shares, done with), then each user's w_u moved by z_u's
    /// change and its share cleared for the next epoch. From the index a pair of sweeps at a
    /// time, each user's sums for the pair held in registers. Either way z_u is |N(u)|^-½
    /// times the sum of y rounded ([`RoundedRows`]), its terms in the index's order.
    fn move_priors(&mut self, schedule: &Schedule, p: &mut [f32], nonneg: bool) -> Result<()> {
        let (k, path) = (self.k, widest());
        let (norm, fresh) = (&self.user_norm, &mut self.shares);
        match &mut self.index {
            // (Each pair writes its columns of every user: nothing is left to clear first.)
            Some(index) => {
                index.items.set(&self.item_vectors);
                let index = &*index;
                // A task a few hundred users.
                const USERS: usize = 256;
                for c in 0..RoundedRows::pairs(k) {
                    fresh.par_chunks_mut(k * USERS).enumerate().for_each(|(t, rows)| index.priors(c, t * USERS, norm, rows, k, path));
                }
            }
            None => {
                let y: Vec<f32> = self.item_vectors.to_rows().into_iter().map(round_to_bf16).collect();
                fresh.fill(0.0);
                over_blocks(schedule, Side::Users, fresh, k, |r, z| axpy(z, 1.0, &y[r.item as usize * k..][..k]))?;
                fresh.par_chunks_mut(k).zip(norm.par_iter()).for_each(|(z, &n)| z.iter_mut().for_each(|x| *x *= n));
            }
        }
        self.prior.par_chunks_mut(k).zip(p.par_chunks_mut(k)).zip(fresh.par_chunks_mut(k)).for_each(|((z, w), fresh)| {
            move_prior(z, w, fresh, nonneg);
        });
        Ok(())
    }
}

/// Priors `z` set to `fresh`, and their rows `w` moved by the change, so p = w − z stays
/// (projected to ≥ 0 again with non-negative factors); `fresh` (the shares' buffer) is
/// cleared for the next epoch as it is read. One user's or a whole stripe's (the distributed
/// runner's).
#[inline(always)]
pub(crate) fn move_prior(z: &mut [f32], w: &mut [f32], fresh: &mut [f32], nonneg: bool) {
    for ((zf, wf), nf) in z.iter_mut().zip(w.iter_mut()).zip(fresh) {
        *wf += *nf - *zf;
        if nonneg {
            *wf = wf.max(0.0);
        }
        *zf = std::mem::take(nf);
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Side {
    Users,
    Items,
}

/// Calls `visit(rating, row)` for every rating of `schedule`, with the row (`k` wide) of `side`
/// the rating names, by position. Each block of `side` is a thread's: the thread writes only
/// its block's rows, and every row meets its ratings block by block in the grid's order (an
/// item's by user within a block, as the users' index meets them), so the sums come out the
/// same on any number of threads.
fn over_blocks(schedule: &Schedule, side: Side, rows: &mut [f32], k: usize, visit: impl Fn(&Rating, &mut [f32]) + Sync) -> Result<()> {
    let (axis, other) = if side == Side::Users { (&schedule.users, &schedule.items) } else { (&schedule.items, &schedule.users) };
    // Each block's rows, cut from the array.
    let mut parts = Vec::with_capacity(axis.blocks());
    let mut rows = rows;
    for b in 0..axis.blocks() {
        let (part, rest) = std::mem::take(&mut rows).split_at_mut(axis.members(b).len() * k);
        rows = rest;
        parts.push((b, part));
    }
    let path = widest();
    let item_blocks = schedule.items.blocks();
    let visit_one = |b: usize, o: usize, rows: &mut [f32]| {
        let block = if side == Side::Users { b * item_blocks + o } else { o * item_blocks + b };
        match path {
            // SAFETY (both): the CPU has the path's features (`widest` detected them).
            #[cfg(target_arch = "x86_64")]
            Path::Avx512 => unsafe { visit_block_avx512(schedule, side, block, axis.start(b), rows, k, &visit) },
            #[cfg(target_arch = "x86_64")]
            Path::Avx2 => unsafe { visit_block_avx2(schedule, side, block, axis.start(b), rows, k, &visit) },
            _ => visit_block(schedule, side, block, axis.start(b), rows, k, &visit),
        }
    };
    match side {
        // A thread walks its user block's row of the grid: its rows stay in cache, and each
        // item block's rows (the smaller side) are read once per user block.
        Side::Users => parts.into_par_iter().try_for_each(|(b, rows)| (0..other.blocks()).try_for_each(|o| visit_one(b, o, rows))),
        // The user blocks in turn, every item block's thread taking its block of each: a user
        // block's rows are read from memory once for all item blocks, not once per item block
        // (36 times over at rank 128 on 20M ratings, which made this pass twice as slow).
        Side::Items => (0..other.blocks()).try_for_each(|o| parts.par_iter_mut().try_for_each(|(b, rows)| visit_one(*b, o, rows))),
    }
}

/// One block of [`over_blocks`]: `rows` are the rows of `side` from `start` on.
#[inline(always)]
fn visit_block(schedule: &Schedule, side: Side, block: usize, start: usize, rows: &mut [f32], k: usize, visit: &impl Fn(&Rating, &mut [f32])) -> Result<()> {
    let mut buf = Vec::new();
    let ratings = schedule.checked_block(block, &mut buf)?.ratings();
    // Each item's sums take its users in their order, as the items' lists do (in a block its
    // users take turns, four at a time).
    let mut by_user = Vec::new();
    let ratings = if side == Side::Items {
        by_user.extend_from_slice(ratings);
        by_user.sort_by_key(|r| r.user);
        &by_user
    } else {
        ratings
    };
    for r in ratings {
        let row = if side == Side::Users { r.user } else { r.item } as usize - start;
        visit(r, &mut rows[row * k..][..k]);
    }
    Ok(())
}

/// `visit_block` compiled for AVX2 and FMA (no fused arithmetic is written, so the sums are the
/// same bits as without).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn visit_block_avx2(schedule: &Schedule, side: Side, block: usize, start: usize, rows: &mut [f32], k: usize, visit: &impl Fn(&Rating, &mut [f32])) -> Result<()> {
    visit_block(schedule, side, block, start, rows, k, visit)
}

/// `visit_block` compiled for AVX-512 (the same bits, as for AVX2).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn visit_block_avx512(schedule: &Schedule, side: Side, block: usize, start: usize, rows: &mut [f32], k: usize, visit: &impl Fn(&Rating, &mut [f32])) -> Result<()> {
    visit_block(schedule, side, block, start, rows, k, visit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grid::{GridSize, Order};
    use rand::{Rng, SeedableRng};

    /// 30 users rating 3 to 12 of 40 items, a 3x2 grid, and random factors of rank `k` by
    /// position.
    fn setting(k: usize) -> (Schedule, Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>) {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let (users, items) = (30, 40);
        let mut ratings = Vec::new();
        for u in 0..users {
            let mut seen = std::collections::BTreeSet::new();
            for _ in 0..rng.random_range(3..12) {
                seen.insert(rng.random_range(0..items));
            }
            ratings.extend(seen.into_iter().map(|i| Rating { user: u, item: i, value: rng.random_range(1..=5) as f32 }));
        }
        let schedule = Schedule::new(&ratings, users as usize, items as usize, GridSize { user_blocks: 3, item_blocks: 2 }, Order::ByUser, 1).unwrap();
        let mut random = |n: usize| (0..n).map(|_| rng.random_range(-0.5..0.5)).collect::<Vec<f32>>();
        let (p, q) = (random(users as usize * k), random(items as usize * k));
        let (bu, bi) = (random(users as usize), random(items as usize));
        (schedule, p, q, bu, bi)
    }

    fn step() -> Step {
        Step { lr: 0.05, reg: 0.1, reg_bias: 0.1, mean: 3.0, biases: true, loss: crate::objective::Loss::Squared, unit: crate::objective::Unit::of(1.0 / 0.9), label_middle: None, l1: 0.0, nonneg: false, sample_seed: 0, share_weight: 1.0 }
    }

    #[test]
    fn the_pass_moves_y_sets_each_prior_from_its_items_and_keeps_p() {
        // Part of a sweep; a whole one and part of the next; a pair of sweeps and part of the
        // next pair; two whole pairs (every row's sums streamed past the caches).
        for k in [6, 20, 40, 64] {
            moves_y_and_sets_priors(k);
        }
    }

    fn moves_y_and_sets_priors(k: usize) {
        let (schedule, mut w, q, _, _) = setting(k);
        let mut state = SvdppState::new(&schedule, k, &vec![1.0; schedule.items.ids()]).unwrap();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        for epoch in 0..3 {
            let p: Vec<f32> = w.iter().zip(state.priors()).map(|(w, z)| w - z).collect();
            // What an epoch's updates would have gathered.
            state.priors_and_shares().1.iter_mut().for_each(|s| *s = rng.random_range(-1.0..1.0));
            state.run_passes(&schedule, &mut w, &q, &step()).unwrap();
            assert!(state.priors_and_shares().1.iter().all(|&s| s == 0.0), "epoch {epoch}: the shares are cleared");
            assert!(state.item_vectors.data.iter().any(|&y| y.abs() > 1e-4), "epoch {epoch}: y moved");
            // p = w − z is what the pass leaves alone.
            for (x, (w, z)) in p.iter().zip(w.iter().zip(state.priors())) {
                assert!((x - (w - z)).abs() < 1e-6, "epoch {epoch}: p moved");
            }
            // z_u = |N(u)|^-½ Σ y_j over the items u rated (each y rounded to bfloat16),
            // recomputed from the ratings.
            let mut items_of = vec![Vec::new(); schedule.users.ids()];
            for b in 0..schedule.len() {
                for r in schedule.block(b) {
                    items_of[r.user as usize].push(r.item as usize);
                }
            }
            for (u, items) in items_of.iter().enumerate() {
                for f in 0..k {
                    let sum: f32 = items.iter().map(|&j| round_to_bf16(state.item_vectors.at(j, f))).sum();
                    let expected = sum / (items.len() as f32).sqrt();
                    let z = state.priors()[u * k + f];
                    assert!((z - expected).abs() < 1e-5, "epoch {epoch}, user {u}: z {z} vs {expected}");
                }
            }
        }
    }

    #[test]
    fn an_epoch_without_shares_moves_y_only_by_its_decay() {
        let (schedule, mut w, q, _, _) = setting(6);
        let k = 6;
        let mut state = SvdppState::new(&schedule, k, &vec![1.0; schedule.items.ids()]).unwrap();
        state.priors_and_shares().1.iter_mut().enumerate().for_each(|(x, s)| *s = (x % 7) as f32 / 7.0 - 0.4);
        state.run_passes(&schedule, &mut w, &q, &step()).unwrap();
        // The pass cleared the shares: the next one's gradient is zero (none left over from
        // the epoch before), so each y only decays.
        let mut expected = state.item_vectors.to_rows();
        let mean_norm = state.reach.mean_squared_norm(&q, k, step().unit.inverse);
        for (j, y) in expected.chunks_mut(k).enumerate() {
            item_step(y, &[0.0; 6], state.reach.item_reach[j], 1.0, mean_norm, &step());
        }
        state.run_passes(&schedule, &mut w, &q, &step()).unwrap();
        assert_eq!(state.item_vectors.to_rows(), expected);
    }

    /// Two epochs' passes on `threads` threads, reading each user's items from the index or
    /// (without it, as from the disk cache) from the blocks: (w, y, z).
    fn two_passes(threads: usize, index: bool) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        // A whole sweep and part of the next: sweeps on threads of their own.
        let (schedule, mut w, q, _, _) = setting(20);
        let mut state = SvdppState::new(&schedule, 20, &vec![1.0; schedule.items.ids()]).unwrap();
        assert!(state.index.is_some(), "ratings in memory get the index");
        if !index {
            state.index = None;
        }
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        for epoch in 0..2 {
            state.priors_and_shares().1.iter_mut().enumerate().for_each(|(x, s)| *s = ((x * 7 + epoch) % 13) as f32 / 13.0 - 0.5);
            pool.install(|| state.run_passes(&schedule, &mut w, &q, &step())).unwrap();
        }
        (w, state.item_vectors.to_rows(), state.prior.to_vec())
    }

    #[test]
    fn the_pass_gives_the_same_bits_on_any_number_of_threads() {
        assert_eq!(two_passes(1, true), two_passes(3, true));
        assert_eq!(two_passes(1, false), two_passes(3, false));
    }

    #[test]
    fn the_users_index_gives_the_bits_of_the_pass_over_the_blocks() {
        assert_eq!(two_passes(2, true), two_passes(2, false));
    }

    #[test]
    fn a_stripes_sums_are_those_of_its_ratings_in_order() {
        // A whole sweep and part of the next; the grid's middle row of blocks as the stripe.
        let (schedule, _, y, _, _) = setting(20);
        let (k, items, stripe) = (20, schedule.items.ids(), 1);
        let users = schedule.users.start(stripe)..schedule.users.start(stripe) + schedule.users.members(stripe).len();
        let blocks: Vec<&[Rating]> = (0..2).map(|h| schedule.block(stripe * 2 + h)).collect();
        let mut index = StripeItems::new(users.clone(), &blocks, items, k).unwrap();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let norms: Vec<f32> = users.clone().map(|_| rng.random_range(0.1..1.0)).collect();
        let shares: Vec<f32> = (0..users.len() * k).map(|_| rng.random_range(-1.0..1.0)).collect();
        // Each user's items, block by block; the gradient by user (each term rounded to
        // bfloat16), the priors by item (the sums of y rounded, times the user's norm).
        let mut items_of = vec![Vec::new(); users.len()];
        for r in blocks.iter().flat_map(|b| b.iter()) {
            items_of[r.user as usize - users.start].push(r.item as usize);
        }
        let (mut gradient, mut priors) = (vec![0.0f32; items * k], vec![0.0f32; users.len() * k]);
        for (u, its) in items_of.iter().enumerate() {
            for &j in its {
                for f in 0..k {
                    gradient[j * k + f] += round_to_bf16(norms[u] * shares[u * k + f]);
                    priors[u * k + f] += round_to_bf16(y[j * k + f]);
                }
            }
            priors[u * k..][..k].iter_mut().for_each(|z| *z *= norms[u]);
        }
        assert_eq!(index.item_gradient(&norms, &shares), gradient);
        let mut z = vec![1.0f32; users.len() * k];
        index.priors(&norms, &y, &mut z);
        assert_eq!(z, priors);
        // A rating of a user outside the stripe, or of no item, is an error, not a panic.
        let outside = [Rating { user: users.end as u32, item: 0, value: 1.0 }];
        let e = StripeItems::new(users.clone(), &[&outside], items, k).err().expect("refused").to_string();
        assert!(e.contains(&format!("user {}", outside[0].user)), "{e}");
        let beyond = [Rating { user: users.start as u32, item: items as u32, value: 1.0 }];
        let e = StripeItems::new(users, &[&beyond], items, k).err().expect("refused").to_string();
        assert!(e.contains(&format!("item {items}")), "{e}");
    }

    #[test]
    fn the_index_holds_items_in_16_bits_where_all_fit_and_in_32_where_not() {
        for (items, narrow) in [(65_536, true), (65_537, false)] {
            let last = items as u32 - 1;
            let rating = |user, item| Rating { user, item, value: 1.0 };
            let ratings = [rating(0, 3), rating(1, last), rating(0, last)];
            let index = UserItems::build(&[2, 1], 0, |add| {
                add(&ratings);
                Ok(())
            })
            .unwrap();
            assert_eq!(matches!(index.items, ItemIds::Narrow(_)), narrow, "{items} items");
            // y: 1 in every column of item 3 and 2 in the last item's (both exact in bfloat16).
            let mut y = RoundedRows::zeros(items, 2 * SWEEP);
            y.data[3] = RoundedLine([0x3F80_3F80; SWEEP]);
            y.data[last as usize] = RoundedLine([0x4000_4000; SWEEP]);
            for path in [Path::Portable, widest()] {
                assert_eq!(index.gather(0, y.pair(0), path), ([3.0; SWEEP], [3.0; SWEEP]), "{items} items");
                assert_eq!(index.gather(1, y.pair(0), path), ([2.0; SWEEP], [2.0; SWEEP]), "{items} items");
                // Each user's share (user u's column f: 32u + f) and norm (1, then 0.5) spread
                // (every part exact in bfloat16).
                let (mut low, mut high) = (vec![0.0f32; items * SWEEP], vec![0.0f32; items * SWEEP]);
                let shares: Vec<f32> = (0..4 * SWEEP).map(|x| x as f32).collect();
                let mut parts = RoundedRows::zeros(2, 2 * SWEEP);
                parts.set_scaled(&shares, 2 * SWEEP, &[1.0, 0.5]);
                ItemUsers::of(&index, items).spread(parts.pair(0), 0, &mut low, Some(&mut high), path);
                for f in 0..SWEEP {
                    assert_eq!((low[3 * SWEEP + f], high[3 * SWEEP + f]), (f as f32, (SWEEP + f) as f32));
                    let at = last as usize * SWEEP + f;
                    assert_eq!(low[at], f as f32 + 0.5 * (2 * SWEEP + f) as f32, "{items} items");
                    assert_eq!(high[at], (SWEEP + f) as f32 + 0.5 * (3 * SWEEP + f) as f32, "{items} items");
                }
            }
        }
    }

    #[test]
    fn each_items_gradient_adds_its_users_parts_in_order_across_tiles() {
        // Users over three tiles (the last part-filled), each rating one to three of 50 items;
        // a whole pair of sweeps and part of the next; on one thread and on three.
        let (users, items, k) = (2 * TILE_USERS + 700, 50, 40);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
        let mut ratings = Vec::new();
        let mut counts = vec![0u32; users];
        for (u, count) in counts.iter_mut().enumerate() {
            for _ in 0..rng.random_range(1..=3) {
                ratings.push(Rating { user: u as u32, item: rng.random_range(0..items as u32), value: 1.0 });
                *count += 1;
            }
        }
        let norms: Vec<f32> = (0..users).map(|_| rng.random_range(0.1..1.0)).collect();
        let shares: Vec<f32> = (0..users * k).map(|_| rng.random_range(-1.0..1.0)).collect();
        let mut expected = vec![0.0f32; items * k];
        for r in &ratings {
            let (u, j) = (r.user as usize, r.item as usize);
            for f in 0..k {
                expected[j * k + f] += round_to_bf16(norms[u] * shares[u * k + f]);
            }
        }
        let by_user = UserItems::build(&counts, 0, |add| {
            add(&ratings);
            Ok(())
        })
        .unwrap();
        let mut index = Index::new(by_user, users, items, k);
        assert_eq!(index.by_item.firsts.len(), 3, "three tiles");
        for threads in [1, 3] {
            let mut g = Sweeps::zeros(items, k);
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| index.item_gradient(&mut g, &norms, &shares));
            assert_eq!(g.to_rows(), expected, "{threads} threads");
        }
    }

    #[test]
    fn rounded_lines_hold_two_sweeps_of_y_in_bfloat16() {
        let (items, k) = (3, 40);
        let rows: Vec<f32> = (0..items * k).map(|x| (x as f32 * 0.37).sin() / 3.0).collect();
        let mut sweeps = Sweeps::zeros(items, k);
        sweeps.set_rows(&rows);
        let mut rounded = RoundedRows::zeros(items, k);
        rounded.set(&sweeps);
        assert_eq!(RoundedRows::pairs(k), 2);
        for j in 0..items {
            for f in 0..2 * 2 * SWEEP {
                let bits = rounded.pair(f / (2 * SWEEP))[j][f % SWEEP];
                let half = if f % (2 * SWEEP) < SWEEP { bits << 16 } else { bits & 0xFFFF_0000 };
                let expected = if f < k { round_to_bf16(rows[j * k + f]) } else { 0.0 };
                assert_eq!(f32::from_bits(half), expected, "item {j}, column {f}");
                assert!(f >= k || (expected - rows[j * k + f]).abs() <= rows[j * k + f].abs() / 256.0);
            }
        }
    }

    #[test]
    fn bfloat16_rounds_to_nearest_ties_to_even() {
        let ulp = 1.0 / 128.0; // a bfloat16's 7 fraction bits, at 1
        assert_eq!(round_to_bf16(1.0 + ulp / 2.0), 1.0);
        assert_eq!(round_to_bf16(1.0 + 3.0 * ulp / 2.0), 1.0 + 2.0 * ulp);
        assert_eq!(round_to_bf16(1.0 + ulp / 2.0 + 1e-6), 1.0 + ulp);
        assert_eq!(round_to_bf16(-(1.0 + ulp / 2.0 + 1e-6)), -(1.0 + ulp));
        assert_eq!(round_to_bf16(0.0), 0.0);
        assert_eq!(round_to_bf16(f32::INFINITY), f32::INFINITY);
        assert!(round_to_bf16(f32::NAN).is_nan());
    }

    #[test]
    fn sweeps_hold_each_items_columns_sixteen_at_a_time() {
        let (items, k) = (3, 20);
        let rows: Vec<f32> = (0..items * k).map(|x| x as f32 + 1.0).collect();
        let mut sweeps = Sweeps::zeros(items, k);
        sweeps.set_rows(&rows);
        assert_eq!(sweeps.to_rows(), rows);
        // Item 1's first 16 columns, then (after the other items') its last 4 and 12 zeros.
        assert_eq!(&sweeps.sweep(0)[16..32], &rows[20..36]);
        assert_eq!(&sweeps.sweep(1)[16..20], &rows[36..40]);
        assert!(sweeps.sweep(1)[16..32][4..].iter().all(|&x| x == 0.0));
        assert_eq!(sweeps.at(1, 17), rows[37]);
    }
}
