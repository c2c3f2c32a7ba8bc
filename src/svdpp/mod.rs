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

mod index;
mod rounded;
mod stripes;

use crate::data::Rating;
use crate::error::Result;
use crate::model::Params;
use crate::schedule::Schedule;
use crate::update::Step;
use crate::vector::{axpy, dot, widest, CacheLines};
use index::{Index, UserItems};
use rayon::prelude::*;
use rounded::{round_to_bf16, RoundedRows, Sweeps, SWEEP};
pub(crate) use stripes::StripeItems;

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
            crate::vector::Path::Avx512 => unsafe { visit_block_avx512(schedule, side, block, axis.start(b), rows, k, &visit) },
            #[cfg(target_arch = "x86_64")]
            crate::vector::Path::Avx2 => unsafe { visit_block_avx2(schedule, side, block, axis.start(b), rows, k, &visit) },
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
}
