//! Validation of the SGD trainers against the truncated SVD: on a fully observed dense matrix the
//! masked objective is the Frobenius loss, whose optimum at rank k is the SVD's (Eckart–Young).
//! An SGD loss below it beyond float error means a bug.

use crate::data::{IdMap, Rating};
use crate::problem::Problem;
use crate::error::Result;
use crate::model::{Model, Params};
use crate::training::{train, Backend};
use crate::svd::truncated_svd;
use ndarray::Array2;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use std::time::Instant;

/// A seeded m × n matrix X·Yᵀ of rank `rank` (entries of unit scale) plus N(0, noise²) noise.
pub fn low_rank_plus_noise(m: usize, n: usize, rank: usize, noise: f64, seed: u64) -> Array2<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let scale = 1.0 / (rank as f64).sqrt();
    let unit = Normal::new(0.0, 1.0).expect("valid");
    let x = Array2::from_shape_simple_fn((m, rank), || unit.sample(&mut rng) * scale.sqrt());
    let y = Array2::from_shape_simple_fn((n, rank), || unit.sample(&mut rng) * scale.sqrt());
    let mut a = x.dot(&y.t());
    if noise > 0.0 {
        a.mapv_inplace(|v| v + noise * unit.sample(&mut rng));
    }
    a
}

/// Every entry of a dense matrix as a known rating (row = user, column = item).
pub fn dense_problem(a: &Array2<f64>) -> Problem {
    let (m, n) = a.dim();
    let train = (0..m)
        .flat_map(|i| (0..n).map(move |j| (i, j)))
        .map(|(i, j)| Rating { user: i as u32, item: j as u32, value: a[[i, j]] as f32 })
        .collect();
    Problem {
        train,
        test: Vec::new(),
        users: IdMap::from_externals((0..m as u64).collect()),
        items: IdMap::from_externals((0..n as u64).collect()),
        cold: Default::default(),
        train_on_disk: None,
    }
}

/// Settings that drive SGD close to the optimum of the plain (unregularised, bias-free)
/// objective, as the SVD comparison needs.
pub fn dense_params(rank: usize, epochs: usize, seed: u64) -> Params {
    Params { rank, epochs, learning_rate: 0.02, lr_decay: 0.02, reg: 0.0, reg_bias: 0.0, biases: false, init_std: 0.3, seed, scale: false, svdpp: false, ..Params::default() }
}

/// The lab's settings for its 3×3 matrix: a constant learning rate of 0.01 for 3000 epochs
/// (nine entries need many passes, and a decaying rate would stall before the optimum).
pub fn lab_params(seed: u64) -> Params {
    Params { learning_rate: 0.01, lr_decay: 0.0, init_std: 0.5, ..dense_params(2, 3000, seed) }
}

/// ‖A − P·Qᵀ‖²_F of a trained model (predictions unclipped).
pub fn dense_loss(model: &Model, a: &Array2<f64>) -> f64 {
    let (m, n) = a.dim();
    let mut loss = 0.0;
    for i in 0..m {
        for j in 0..n {
            let e = a[[i, j]] - model.score(i as u32, j as u32) as f64;
            loss += e * e;
        }
    }
    loss
}

/// One trainer's result on a dense matrix.
#[derive(Clone, Debug, serde::Serialize)]
pub struct SgdResult {
    pub backend: String,
    pub loss: f64,
    pub seconds: f64,
}

/// The SVD optimum and each backend's SGD loss on `a` at `rank`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Comparison {
    pub rows: usize,
    pub cols: usize,
    pub rank: usize,
    pub svd_loss: f64,
    pub svd_seconds: f64,
    pub sgd: Vec<SgdResult>,
}

impl Comparison {
    /// Whether an SGD loss lies below the optimum by more than float error (a bug).
    pub fn below_optimum(&self, sgd_loss: f64) -> bool {
        sgd_loss < self.svd_loss * (1.0 - 1e-4) - 1e-6
    }
}

/// Runs the truncated SVD and each backend's SGD on the same matrix.
pub fn compare(a: &Array2<f64>, params: &Params, backends: &[Backend]) -> Result<Comparison> {
    let t = Instant::now();
    let svd = truncated_svd(a.view(), params.rank);
    let svd_seconds = t.elapsed().as_secs_f64();
    let problem = dense_problem(a);
    let mut sgd = Vec::new();
    for backend in backends {
        let trained = train(&problem, params, backend, |_| {})?;
        sgd.push(SgdResult { backend: trained.backend, loss: dense_loss(&trained.model, a), seconds: trained.total_seconds });
    }
    Ok(Comparison { rows: a.nrows(), cols: a.ncols(), rank: params.rank, svd_loss: svd.optimal_loss(), svd_seconds, sgd })
}
