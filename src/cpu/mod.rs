//! The CPU solver: SGD over the known ratings, sequential (bit-reproducible for a seed) or
//! Hogwild (threads updating shared factors without locks).

mod hogwild;

use crate::data::{Problem, Rating};
use crate::error::{Error, Result};
use crate::metrics::{self, ErrorSums};
use crate::model::{Model, Params};
use crate::solver::Solver;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Dot product with eight independent accumulators, so the compiler can vectorise it.
#[inline(always)]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    let mut tail = 0.0;
    for (x, y) in ra.iter().zip(rb) {
        tail += x * y;
    }
    (acc[0] + acc[4]) + (acc[1] + acc[5]) + (acc[2] + acc[6]) + (acc[3] + acc[7]) + tail
}

/// The step sizes of one epoch.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Step {
    pub lr: f32,
    pub reg: f32,
    pub reg_bias: f32,
    pub mean: f32,
    pub biases: bool,
}

/// One SGD update for one rating, reading the old p and q on both sides:
/// e = r − prediction; p += lr(e·q − λp); q += lr(e·p − λq); biases likewise.
#[inline(always)]
pub(crate) fn sgd_update(p: &mut [f32], q: &mut [f32], bu: &mut f32, bi: &mut f32, value: f32, s: &Step) {
    let mut prediction = s.mean + dot(p, q);
    if s.biases {
        prediction += *bu + *bi;
    }
    let e = value - prediction;
    if s.biases {
        *bu += s.lr * (e - s.reg_bias * *bu);
        *bi += s.lr * (e - s.reg_bias * *bi);
    }
    for (pf, qf) in p.iter_mut().zip(q.iter_mut()) {
        let (a, b) = (*pf, *qf);
        *pf = a + s.lr * (e * b - s.reg * a);
        *qf = b + s.lr * (e * a - s.reg * b);
    }
}

/// How the CPU runs an epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuMode {
    /// One thread, ratings reshuffled every epoch: the same seed gives the same bits.
    Sequential,
    /// `threads` threads over disjoint runs of the shuffled ratings, sharing the factors.
    Hogwild { threads: usize },
}

impl CpuMode {
    /// Sequential for one thread, Hogwild for more.
    pub fn with_threads(threads: usize) -> CpuMode {
        if threads <= 1 { CpuMode::Sequential } else { CpuMode::Hogwild { threads } }
    }
}

pub struct CpuSolver<'a> {
    problem: &'a Problem,
    model: Model,
    params: Params,
    /// Sequential mode: the training ratings, reshuffled in full every epoch.
    ratings: Vec<Rating>,
    /// Hogwild mode: the ratings in tiles.
    tiles: Option<hogwild::Tiles>,
    rng: ChaCha8Rng,
    mode: CpuMode,
    pool: rayon::ThreadPool,
}

impl<'a> CpuSolver<'a> {
    pub fn new(problem: &'a Problem, model: Model, params: &Params, mode: CpuMode) -> Result<Self> {
        let threads = match mode {
            CpuMode::Sequential => 1,
            CpuMode::Hogwild { threads } => threads,
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .map_err(|e| Error::InvalidParameter(format!("--threads {threads}: cannot start the thread pool: {e}")))?;
        let rng = ChaCha8Rng::seed_from_u64(params.seed ^ 0x05ee_d0f0_bde7);
        let (ratings, tiles) = match mode {
            CpuMode::Sequential => (problem.train.clone(), None),
            CpuMode::Hogwild { threads } => {
                let tiles = pool.install(|| {
                    hogwild::Tiles::new(&problem.train, problem.num_users(), problem.num_items(), threads, params.seed)
                });
                (Vec::new(), Some(tiles))
            }
        };
        Ok(CpuSolver { problem, model, params: params.clone(), ratings, tiles, rng, mode, pool })
    }

    fn step(&self, lr: f32) -> Step {
        Step { lr, reg: self.params.reg, reg_bias: self.params.reg_bias, mean: self.model.mean, biases: self.params.biases }
    }
}

impl Solver for CpuSolver<'_> {
    fn name(&self) -> String {
        match self.mode {
            CpuMode::Sequential => "cpu (sequential)".into(),
            CpuMode::Hogwild { threads } => format!("cpu (hogwild, {threads} threads)"),
        }
    }

    fn run_epoch(&mut self, epoch: usize, lr: f32) -> Result<Option<f64>> {
        let step = self.step(lr);
        match self.mode {
            CpuMode::Sequential => {
                self.ratings.shuffle(&mut self.rng);
                let k = self.model.rank();
                let m = &mut self.model;
                let (p, q) = (m.user_factors.as_slice_mut().expect("row-major"), m.item_factors.as_slice_mut().expect("row-major"));
                for r in &self.ratings {
                    let (u, i) = (r.user as usize, r.item as usize);
                    sgd_update(&mut p[u * k..][..k], &mut q[i * k..][..k], &mut m.user_bias[u], &mut m.item_bias[i], r.value, &step);
                }
            }
            CpuMode::Hogwild { .. } => {
                let seed = self.params.seed.wrapping_add(epoch as u64 * 0x9e37_79b9);
                let (model, tiles) = (&mut self.model, self.tiles.as_ref().expect("built for hogwild"));
                debug_assert_eq!(tiles.len(), self.problem.train.len());
                self.pool.install(|| hogwild::epoch(model, tiles, seed, &step));
            }
        }
        Ok(None)
    }

    fn evaluate(&mut self) -> Result<(ErrorSums, Option<ErrorSums>)> {
        let (model, problem) = (&self.model, self.problem);
        let (train, test) = self.pool.install(|| {
            rayon::join(
                || metrics::evaluate(model, &problem.train),
                || (!problem.test.is_empty()).then(|| metrics::evaluate(model, &problem.test)),
            )
        });
        Ok((train, test))
    }

    fn into_model(self: Box<Self>) -> Result<Model> {
        Ok(self.model)
    }

    fn snapshot(&self) -> Result<Model> {
        Ok(self.model.clone())
    }
}
