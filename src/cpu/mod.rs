//! The CPU solver: SGD over the blocks of the [schedule](crate::schedule), one block after
//! another on one thread (bit-reproducible for a seed), or on several threads, each training a
//! block that shares no user and no item with the blocks the others are training.

mod blocks;

use crate::data::Rating;
use crate::problem::Problem;
use crate::error::{Error, Result};
use crate::metrics;
use crate::objective::LossSums;
use crate::model::{Model, Params};
use crate::grid::{Axis, GridSize, Order};
use crate::schedule::Schedule;
use crate::svdpp::SvdppState;
use crate::solver::{EpochFigures, Solver};
use crate::update::{train_block, RowWeights, Step};
use std::collections::VecDeque;

/// How the CPU runs an epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuMode {
    /// One thread, the blocks in the epoch's seeded sequence: the same seed gives the same bits.
    Sequential,
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
            CpuMode::Sequential => 1,
            CpuMode::Parallel { threads } => threads,
        }
    }

    /// The order within blocks: by user on several threads (a thread loads a user's row once
    /// a block); one thread gains nothing from it and keeps the order SGD (and the GPU) uses.
    pub fn block_order(self) -> Order {
        if self.threads() > 1 { Order::ByUser } else { Order::Shuffled }
    }

    /// One block when sequential; else two blocks per thread on each side, so a thread that
    /// finishes almost always finds a free block (LIBMF's rule of thumb, in our own form).
    pub fn default_grid(self) -> GridSize {
        let side = if self.threads() <= 1 { 1 } else { 2 * self.threads() };
        GridSize { user_blocks: side, item_blocks: side }
    }
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
}

impl CpuSolver {
    pub fn new(problem: &Problem, mut model: Model, params: &Params, mode: CpuMode) -> Result<Self> {
        let threads = mode.threads();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .map_err(|e| Error::InvalidParameter(format!("--threads {threads}: cannot start the thread pool: {e}")))?;
        let grid = params.blocks.unwrap_or(mode.default_grid());
        let order = mode.block_order();
        let schedule = match &problem.train_on_disk {
            Some(disk) if disk.order != order || disk.seed != params.seed => {
                return Err(Error::InvalidParameter(format!(
                    "the block cache {} was written for {} with seed {}; this run needs {} with seed {}",
                    disk.path.display(),
                    if disk.order == Order::ByUser { "several threads" } else { "one thread" },
                    disk.seed,
                    if order == Order::ByUser { "several threads" } else { "one thread" },
                    params.seed
                )))
            }
            Some(disk) => Schedule::from_disk(disk.clone()),
            None => pool.install(|| Schedule::new(&problem.train, problem.num_users(), problem.num_items(), grid, order, params.seed))?,
        };
        let test = schedule.to_positions(&problem.test);
        reorder(&mut model, |axis, rows| axis.gather(rows), &schedule);
        let unit = params.rating_unit(&problem.train_summary());
        let weights = RowWeights::new(params, &problem.train_counts()).by_position(&schedule);
        let svdpp = if params.svdpp { Some(pool.install(|| SvdppState::new(&schedule, params.rank, &weights.items))?) } else { None };
        Ok(CpuSolver { model, test, params: params.clone(), unit, weights, svdpp, schedule, mode, pool, done: VecDeque::new() })
    }

    fn step(&self, lr: f32) -> Step {
        Step::new(&self.params, lr, self.model.mean, self.unit, self.model.labels)
    }

    pub fn schedule(&self) -> &Schedule {
        &self.schedule
    }
}

/// Reorders the model's factor rows and biases on both sides by `how` (gather into position
/// order, or scatter back), unless the side is one block (positions are the ids).
fn reorder(model: &mut Model, how: impl Fn(&Axis, &[f32]) -> Vec<f32>, schedule: &Schedule) {
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
            CpuMode::Parallel { threads } => format!("cpu ({threads} threads, {} blocks)", self.schedule.grid()),
        }
    }

    fn submit_epoch(&mut self, epoch: usize, lr: f32, score_test: bool) -> Result<()> {
        let (step, k) = (self.step(lr), self.params.rank);
        let (model, weights, schedule) = (&mut self.model, &self.weights, &self.schedule);
        let train = match self.mode {
            CpuMode::Sequential => {
                let mut sums = LossSums::default();
                let mut buf = Vec::new();
                for b in schedule.sequence(epoch) {
                    let ratings = schedule.block_into(b, &mut buf)?;
                    let (users, items) = blocks::rows_of(model, weights, self.svdpp.as_mut(), schedule, b);
                    sums = sums.merge(train_block(ratings, users, items, k, &step).map_err(|e| blocks::in_block(schedule, b, e))?);
                }
                sums
            }
            CpuMode::Parallel { threads } => {
                let svdpp = self.svdpp.as_mut();
                self.pool.install(|| blocks::epoch(model, weights, svdpp, schedule, epoch, threads, &step))?
            }
        };
        if let Some(svdpp) = &mut self.svdpp {
            let m = &mut self.model;
            let (p, q) = (m.user_factors.as_slice_mut().expect("row-major"), m.item_factors.as_slice().expect("row-major"));
            let schedule = &self.schedule;
            self.pool.install(|| svdpp.after_epoch(schedule, p, q, &step))?;
        }
        let test = (score_test && !self.test.is_empty()).then(|| {
            let (model, test) = (&self.model, &self.test);
            self.pool.install(|| metrics::evaluate(model, test))
        });
        self.done.push_back(EpochFigures { train, test, kernel_seconds: None, streamed_bytes: if self.schedule.on_disk() { 12 * self.schedule.ratings() as u64 } else { 0 }, uploads: Default::default() });
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
