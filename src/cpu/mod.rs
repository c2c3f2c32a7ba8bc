//! The CPU solver: SGD over the blocks of the [schedule](crate::schedule), one block after
//! another on one thread (bit-reproducible for a seed), or on several threads, each training a
//! block that shares no user and no item with the blocks the others are training. Blocks are
//! sized so that their rows stay in the CPU's caches.

pub mod als;
mod blocks;

use crate::data::Rating;
use crate::problem::Problem;
use crate::error::{Error, Result};
use crate::metrics;
use crate::objective::LossSums;
use crate::model::{Model, Params};
use crate::grid::{Axis, GridSize, Order, MAX_SIDE};
use crate::schedule::Schedule;
use crate::svdpp::{epoch_step, pass_every, passes_before, SvdppState};
use crate::solver::{EpochFigures, Solver};
use crate::update::{train_block, RowWeights, Step};
use crate::vector::line_aligned;
use std::collections::VecDeque;

/// How the CPU runs an epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuMode {
    /// One thread, over blocks sized to the caches ([`cache_grid`]) in the epoch's seeded
    /// sequence, each block's ratings by user: the same seed gives the same bits.
    Sequential,
    /// One thread, one rating after another in the order the GPU trains them (each block
    /// shuffled; one block unless `--blocks` says): the trainer the exact tests hold the GPU to,
    /// rating for rating. Slower than [`Sequential`](Self::Sequential) on large data, whose rows
    /// it meets at random.
    GpuOrder,
    /// `threads` threads, each taking free blocks (no user or item range in use) as they come.
    Parallel { threads: usize },
}

impl CpuMode {
    /// Sequential for one thread, parallel for more.
    pub fn with_threads(threads: usize) -> CpuMode {
        if threads <= 1 { CpuMode::Sequential } else { CpuMode::Parallel { threads } }
    }

    /// Threads, and so blocks read from a block cache at once.
    pub fn threads(self) -> usize {
        match self {
            CpuMode::Sequential | CpuMode::GpuOrder => 1,
            CpuMode::Parallel { threads } => threads,
        }
    }

    /// The order within blocks: by user (a user's row is loaded once for its ratings in a
    /// block), except in the GPU's order.
    pub fn block_order(self) -> Order {
        match self {
            CpuMode::GpuOrder => Order::Shuffled,
            CpuMode::Sequential | CpuMode::Parallel { .. } => Order::ByUser,
        }
    }

    /// The grid when `--blocks` does not say: blocks sized to the caches, and on threads at
    /// least two blocks per thread on each side, so a thread that finishes almost always finds
    /// a free block (LIBMF's rule of thumb, in our own form); in the GPU's order, one block, as
    /// the GPU's default.
    pub fn default_grid(self, users: usize, items: usize, params: &Params) -> GridSize {
        let cached = cache_grid(users, items, params);
        match self {
            CpuMode::GpuOrder => GridSize { user_blocks: 1, item_blocks: 1 },
            CpuMode::Sequential => cached,
            CpuMode::Parallel { threads } => {
                let side = (2 * threads).min(MAX_SIDE);
                GridSize { user_blocks: cached.user_blocks.max(side), item_blocks: cached.item_blocks.max(side) }
            }
        }
    }
}

/// Bytes of item rows a block may hold: they are met at random within the block, so they should
/// stay in a core's L2 cache (1 MiB or more on recent x86-64 and Arm server cores), and the
/// larger the block, the more of a user's ratings it holds, so the fewer times a user row comes
/// from the last-level cache in an epoch. 1 MiB against 256 KiB, on 20M ratings over 17,770
/// items (an Intel Xeon with 2 MiB of L2): rank 128 one thread 1.13x the updates/s, 1.28x with
/// the SVD++ term (three user rows a rating); rank 256 1.31x; rank 32 the same (BENCHMARKS.md).
pub const ITEM_BLOCK_BYTES: usize = 1 << 20;
/// Bytes of user rows a block may hold: each user's ratings come together in a block, and a
/// user block's rows serve a row of blocks one after another, so they should stay in the
/// last-level cache between blocks.
pub const USER_BLOCK_BYTES: usize = 4 << 20;

/// The grid that keeps a block's rows in cache ([`ITEM_BLOCK_BYTES`], [`USER_BLOCK_BYTES`]) at
/// the rank of `params` (a user row with the SVD++ term's prior and share). Fixed sizes, not
/// this machine's caches, so that the grid, and with it a seed's factors, is the same on every
/// machine.
pub fn cache_grid(users: usize, items: usize, params: &Params) -> GridSize {
    let row = 4 * params.rank + 8;
    let user_row = if params.svdpp { row + 8 * params.rank } else { row };
    let side = |ids: usize, row: usize, budget: usize| (ids * row).div_ceil(budget).clamp(1, MAX_SIDE.min(ids.max(1)));
    GridSize { user_blocks: side(users, user_row, USER_BLOCK_BYTES), item_blocks: side(items, row, ITEM_BLOCK_BYTES) }
}

pub struct CpuSolver {
    /// The model with its rows in the schedule's position order, so a block's rows lie together
    /// and apart from other threads' (no false sharing); put back in id order on the way out.
    model: Model,
    /// The test ratings, naming positions.
    test: Vec<Rating>,
    params: Params,
    /// The rating unit of the factor steps ([`Params::rating_unit`]).
    unit: f32,
    /// Each row's regularisation weight, by position.
    weights: RowWeights,
    /// With the SVD++ term (the default; `--no-svdpp` is without): its state, by position.
    svdpp: Option<SvdppState>,
    schedule: Schedule,
    mode: CpuMode,
    pool: rayon::ThreadPool,
    /// Figures of epochs submitted and not yet finished (the CPU works at submission).
    done: VecDeque<EpochFigures>,
    /// For one-class losses, judged by their lists: the held-out events by id, and each
    /// user's training items, left out of the lists.
    ranked: Option<metrics::HeldOutLists>,
}

impl CpuSolver {
    pub fn new(problem: &Problem, mut model: Model, params: &Params, mode: CpuMode) -> Result<Self> {
        let threads = mode.threads();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .map_err(|e| Error::InvalidParameter(format!("--threads {threads}: cannot start the thread pool: {e}")))?;
        let grid = params.blocks.unwrap_or_else(|| mode.default_grid(problem.num_users(), problem.num_items(), params));
        let order = mode.block_order();
        let schedule = match &problem.train_on_disk {
            Some(disk) if disk.order != order || disk.seed != params.seed => {
                return Err(Error::InvalidParameter(format!(
                    "the block cache {} was written for {} with seed {}; this run needs {} with seed {}",
                    disk.path.display(),
                    disk.order.trainers(),
                    disk.seed,
                    order.trainers(),
                    params.seed
                )))
            }
            Some(disk) => Schedule::from_disk(disk.clone()),
            None => pool.install(|| Schedule::new(&problem.train, problem.num_users(), problem.num_items(), grid, order, params.seed))?,
        };
        let test = schedule.to_positions(&problem.test);
        reorder(&mut model, |axis, rows| axis.gather(rows), &schedule);
        align_factors(&mut model);
        let unit = params.rating_unit(&problem.train_summary());
        let weights = RowWeights::new(params, &problem.train_counts()).by_position(&schedule);
        let svdpp = if params.svdpp { Some(pool.install(|| SvdppState::new(&schedule, params.rank, &weights.items))?) } else { None };
        let ranked = params.loss.is_one_class().then(|| metrics::HeldOutLists::of(problem)).flatten();
        Ok(CpuSolver { model, test, params: params.clone(), unit, weights, svdpp, schedule, mode, pool, done: VecDeque::new(), ranked })
    }

    fn step(&self, lr: f32, epoch: usize) -> Step {
        epoch_step(Step::new(&self.params, lr, self.model.mean, self.unit, self.model.labels), epoch, &self.params)
    }

    /// The SVD++ term's passes before epoch `epoch`, at the rate of the epoch before it
    /// ([`passes_before`]).
    fn svdpp_passes(&mut self, epoch: usize) -> Result<()> {
        let step = self.step(self.params.learning_rate_at(epoch - 1), epoch - 1);
        let Some(svdpp) = &mut self.svdpp else { return Ok(()) };
        let m = &mut self.model;
        let (p, q) = (m.user_factors.as_slice_mut().expect("row-major"), m.item_factors.as_slice().expect("row-major"));
        let schedule = &self.schedule;
        self.pool.install(|| svdpp.run_passes(schedule, p, q, &step))
    }

    /// NDCG@20 of the factors as they stand on the held-out events (one-class losses).
    fn ndcg(&self) -> Result<Option<f64>> {
        let Some(lists) = &self.ranked else { return Ok(None) };
        let model = self.snapshot()?;
        Ok(self.pool.install(|| lists.ndcg(model)))
    }

    pub fn schedule(&self) -> &Schedule {
        &self.schedule
    }
}

/// The model's factor rows moved to storage that starts a cache line ([`line_aligned`]), as a
/// trainer that updates them in place wants them.
pub(crate) fn align_factors(model: &mut Model) {
    for rows in [&mut model.user_factors, &mut model.item_factors] {
        *rows = line_aligned(std::mem::take(rows));
    }
}

/// Reorders the model's factor rows and biases on both sides by `how` (gather into position
/// order, or scatter back), unless the side is one block (positions are the ids).
pub(crate) fn reorder(model: &mut Model, how: impl Fn(&Axis, &[f32]) -> Vec<f32>, schedule: &Schedule) {
    for (axis, factors, bias) in [
        (&schedule.users, &mut model.user_factors, &mut model.user_bias),
        (&schedule.items, &mut model.item_factors, &mut model.item_bias),
    ] {
        if axis.is_identity() {
            continue;
        }
        let reordered = how(axis, factors.as_slice().expect("row-major"));
        factors.as_slice_mut().expect("row-major").copy_from_slice(&reordered);
        *bias = how(axis, bias);
    }
}

impl Solver for CpuSolver {
    fn name(&self) -> String {
        match self.mode {
            CpuMode::Sequential => format!("cpu (sequential, {} blocks)", self.schedule.grid()),
            CpuMode::GpuOrder => format!("cpu (sequential in the GPU's order, {} blocks)", self.schedule.grid()),
            CpuMode::Parallel { threads } => format!("cpu ({threads} threads, {} blocks)", self.schedule.grid()),
        }
    }

    fn submit_epoch(&mut self, epoch: usize, lr: f32, score_test: bool) -> Result<()> {
        let (step, k) = (self.step(lr, epoch), self.params.rank);
        if passes_before(epoch, pass_every(&self.params)) {
            self.svdpp_passes(epoch)?;
        }
        let (model, weights, schedule) = (&mut self.model, &self.weights, &self.schedule);
        let train = match self.mode {
            CpuMode::Sequential | CpuMode::GpuOrder => {
                let mut sums = LossSums::default();
                let mut buf = Vec::new();
                for b in schedule.sequence(epoch) {
                    let ratings = schedule.checked_block(b, &mut buf)?;
                    let (users, items) = blocks::rows_of(model, weights, self.svdpp.as_mut(), schedule, b);
                    sums = sums.merge(train_block(ratings, users, items, k, &step).map_err(|e| schedule.in_block(b, e))?);
                }
                sums
            }
            CpuMode::Parallel { threads } => {
                let svdpp = self.svdpp.as_mut();
                self.pool.install(|| blocks::epoch(model, weights, svdpp, schedule, epoch, threads, &step))?
            }
        };
        let scored = score_test && !self.test.is_empty();
        let ndcg = if scored { self.ndcg()? } else { None };
        let test = (scored && ndcg.is_none()).then(|| {
            let (model, test) = (&self.model, &self.test);
            self.pool.install(|| metrics::evaluate(model, test))
        });
        self.done.push_back(EpochFigures { train, test, ndcg, kernel_seconds: None, streamed_bytes: if self.schedule.on_disk() { 12 * self.schedule.ratings() as u64 } else { 0 }, uploads: Default::default() });
        Ok(())
    }

    fn finish_epoch(&mut self) -> Result<EpochFigures> {
        self.done.pop_front().ok_or_else(|| Error::Data("finish_epoch with no epoch submitted".into()))
    }

    fn into_model(self: Box<Self>) -> Result<Model> {
        let mut model = self.model;
        reorder(&mut model, |axis, rows| axis.scatter(rows), &self.schedule);
        Ok(model)
    }

    fn snapshot(&self) -> Result<Model> {
        let mut model = self.model.clone();
        reorder(&mut model, |axis, rows| axis.scatter(rows), &self.schedule);
        Ok(model)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::RatingSet;
    use crate::objective::Loss;
    use crate::svdpp::share_weight;

    #[test]
    fn the_svdpp_terms_passes_run_before_the_second_epoch_and_every_third_on_the_last_epochs_shares() {
        let triplets = (0..600u64).map(|j| (j % 41, (j * 7) % 29, (j % 5) as f32 + 1.0));
        let problem = Problem::new(RatingSet::from_triplets(triplets), None);
        let params = Params { rank: 8, ..Params::default() };
        let mut solver = CpuSolver::new(&problem, Model::init(&problem, &params, None), &params, CpuMode::Sequential).unwrap();
        let mut last_priors = solver.svdpp.as_ref().unwrap().priors().to_vec();
        for e in 0..8 {
            solver.submit_epoch(e, params.learning_rate_at(e), false).unwrap();
            solver.finish_epoch().unwrap();
            let (priors, shares) = solver.svdpp.as_mut().unwrap().priors_and_shares();
            assert_eq!(priors != last_priors, e == 1 || e == 4 || e == 7, "epoch {e}: the priors move at the passes only");
            // The passes clear the shares, and only the epoch before the next passes gathers.
            assert_eq!(shares.iter().any(|&s| s != 0.0), e == 0 || e == 3 || e == 6, "epoch {e}: shares gathered");
            last_priors = priors.to_vec();
        }
        assert!(last_priors.iter().any(|&z| z != 0.0));
        // Each gathering epoch's shares stand for the epochs since the last passes.
        assert_eq!((0..8).map(|e| share_weight(e, 3)).collect::<Vec<_>>(), [1.0, 0.0, 0.0, 3.0, 0.0, 0.0, 3.0, 0.0]);
        assert_eq!((0..4).map(|e| share_weight(e, 1)).collect::<Vec<_>>(), [1.0; 4]);
        // With --nonneg asked of a loss that does not need it, before every epoch but the first.
        let every = |loss, nonneg| pass_every(&Params { loss, nonneg, ..Params::default() });
        assert_eq!((every(Loss::Squared, true), every(Loss::Squared, false), every(Loss::Kl, false), every(Loss::Logistic, false)), (1, 3, 3, 3));
        assert_eq!((0..5).map(|e| passes_before(e, 1)).collect::<Vec<_>>(), [false, true, true, true, true]);
    }

    #[test]
    fn the_trainer_updates_rows_that_start_a_cache_line() {
        let triplets = (0..300u64).map(|j| (j % 37, (j * 7) % 23, (j % 5) as f32 + 1.0));
        let problem = Problem::new(RatingSet::from_triplets(triplets), None);
        for (threads, svdpp) in [(1, true), (2, false)] {
            let params = Params { rank: 16, svdpp, ..Params::default() };
            let mode = if threads == 1 { CpuMode::Sequential } else { CpuMode::Parallel { threads } };
            let mut solver = CpuSolver::new(&problem, Model::init(&problem, &params, None), &params, mode).unwrap();
            let at_line = |rows: &[f32]| (rows.as_ptr() as usize).is_multiple_of(64);
            assert!(at_line(solver.model.user_factors.as_slice().unwrap()) && at_line(solver.model.item_factors.as_slice().unwrap()));
            if let Some(state) = &mut solver.svdpp {
                let (prior, share) = state.priors_and_shares();
                assert!(at_line(prior) && at_line(share));
            }
        }
    }
}
