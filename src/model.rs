//! The factor model shared by every backend, its hyper-parameters, and its file format.

use crate::data::{IdMap, Problem, UNKNOWN};
use crate::error::{Error, Result};
use ndarray::Array2;
use crate::rng::part_rng;
use rand_distr::{Distribution, Normal};
use rayon::prelude::*;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

/// Rows of initial factors drawn from one generator stream.
const INIT_BLOCK_ROWS: usize = 4096;

/// Hyper-parameters of SGD training, the same for the CPU and the GPU.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Params {
    /// Number of latent factors k.
    pub rank: usize,
    pub epochs: usize,
    /// Initial learning rate.
    pub learning_rate: f32,
    /// Learning rate at epoch t is `learning_rate / (1 + lr_decay * t)`.
    pub lr_decay: f32,
    /// L2 regularisation of the factors (λ).
    pub reg: f32,
    /// L2 regularisation of the biases.
    pub reg_bias: f32,
    /// Predict μ + b_u + b_i + p_u·q_i (true) or the lab's pure p_u·q_i (false).
    pub biases: bool,
    /// Standard deviation of the normal initial factors.
    pub init_std: f32,
    /// Seeds the initial factors and the visiting order.
    pub seed: u64,
}

impl Default for Params {
    /// Defaults tuned on MovieLens 100k u1 and latest-small (see README).
    fn default() -> Self {
        Params {
            rank: 128,
            epochs: 60,
            learning_rate: 0.02,
            lr_decay: 0.05,
            reg: 0.1,
            reg_bias: 0.01,
            biases: true,
            init_std: 0.1,
            seed: 42,
        }
    }
}

impl Params {
    /// Rejects settings that cannot train, naming the flag.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidParameter(m));
        if self.rank == 0 {
            return bad("--rank must be at least 1".into());
        }
        if self.rank > 4096 {
            return bad(format!("--rank {} is larger than the supported 4096", self.rank));
        }
        if self.epochs == 0 {
            return bad("--epochs must be at least 1".into());
        }
        for (flag, v) in [("--lr", self.learning_rate), ("--lr-decay", self.lr_decay), ("--reg", self.reg), ("--reg-bias", self.reg_bias), ("--init-std", self.init_std)] {
            if !v.is_finite() || v < 0.0 {
                return bad(format!("{flag} must be a finite non-negative number, got {v}"));
            }
        }
        if self.learning_rate == 0.0 {
            return bad("--lr must be positive".into());
        }
        Ok(())
    }

    /// The learning rate of epoch `epoch` (0-based).
    pub fn learning_rate_at(&self, epoch: usize) -> f32 {
        self.learning_rate / (1.0 + self.lr_decay * epoch as f32)
    }
}

/// A trained (or initial) factorisation: prediction(u, i) = μ + b_u + b_i + p_u·q_i.
#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    pub mean: f32,
    pub biases: bool,
    pub user_bias: Vec<f32>,
    pub item_bias: Vec<f32>,
    /// P, users × rank.
    pub user_factors: Array2<f32>,
    /// Q, items × rank.
    pub item_factors: Array2<f32>,
    /// Predictions are clipped to the training ratings' range.
    pub rating_range: (f32, f32),
    pub users: IdMap,
    pub items: IdMap,
}

impl Model {
    /// The seeded starting point shared by all backends: N(0, init_std) factors, zero biases.
    pub fn init(problem: &Problem, params: &Params) -> Model {
        let normal = Normal::new(0.0f32, params.init_std).expect("init_std validated");
        let (m, n, k) = (problem.num_users(), problem.num_items(), params.rank);
        // In parallel, blocks of rows each from their own stream (Netflix at rank 128 is 64M draws).
        let random = |rows: usize, stream: u64| {
            let mut a = Array2::<f32>::zeros((rows, k));
            let values = a.as_slice_mut().expect("row-major");
            values.par_chunks_mut(INIT_BLOCK_ROWS * k.max(1)).enumerate().for_each(|(b, block)| {
                let mut rng = part_rng(params.seed, stream, b);
                block.iter_mut().for_each(|x| *x = normal.sample(&mut rng));
            });
            a
        };
        let (user_factors, item_factors) = (random(m, 1), random(n, 2));
        let (lo, hi) = problem
            .train
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), r| (lo.min(r.value), hi.max(r.value)));
        Model {
            mean: if params.biases { problem.train_mean() } else { 0.0 },
            biases: params.biases,
            user_bias: vec![0.0; m],
            item_bias: vec![0.0; n],
            user_factors,
            item_factors,
            rating_range: if lo <= hi { (lo, hi) } else { (f32::NEG_INFINITY, f32::INFINITY) },
            users: problem.users.clone(),
            items: problem.items.clone(),
        }
    }

    pub fn rank(&self) -> usize {
        self.user_factors.ncols()
    }

    /// The unclipped score; unknown users or items contribute nothing beyond what is known.
    #[inline]
    pub fn score(&self, user: u32, item: u32) -> f32 {
        let mut s = self.mean;
        let known_user = user != UNKNOWN;
        let known_item = item != UNKNOWN;
        if known_user {
            s += self.user_bias[user as usize];
        }
        if known_item {
            s += self.item_bias[item as usize];
        }
        if known_user && known_item {
            s += crate::cpu::dot(self.user_row(user), self.item_row(item));
        }
        s
    }

    /// The predicted rating, clipped to the training range.
    #[inline]
    pub fn predict(&self, user: u32, item: u32) -> f32 {
        self.score(user, item).clamp(self.rating_range.0, self.rating_range.1)
    }

    /// Predicts from external ids, as written in the user's files.
    pub fn predict_external(&self, user: u64, item: u64) -> f32 {
        self.predict(self.users.index_of(user).unwrap_or(UNKNOWN), self.items.index_of(item).unwrap_or(UNKNOWN))
    }

    pub fn user_row(&self, user: u32) -> &[f32] {
        let k = self.rank();
        &self.user_factors.as_slice().expect("row-major")[user as usize * k..][..k]
    }

    pub fn item_row(&self, item: u32) -> &[f32] {
        let k = self.rank();
        &self.item_factors.as_slice().expect("row-major")[item as usize * k..][..k]
    }
}

const MAGIC: &[u8; 8] = b"GPUMF\0\0\x01";

impl Model {
    /// Writes the model to `path` through a temporary file, so a failed write never leaves
    /// a half-written model behind. Refuses to replace an existing file unless `overwrite`.
    pub fn save(&self, path: &Path, overwrite: bool) -> Result<()> {
        let err = |message: String| Error::ModelFile { path: path.into(), message };
        if path.exists() && !overwrite {
            return Err(err("already exists; not overwriting it (pass --force to replace it)".into()));
        }
        let tmp = path.with_extension("tmp-gpumf");
        let write = || -> std::io::Result<()> {
            let mut w = BufWriter::new(std::fs::File::create(&tmp)?);
            w.write_all(MAGIC)?;
            let (m, n, k) = (self.users.len() as u64, self.items.len() as u64, self.rank() as u64);
            for v in [m, n, k, self.biases as u64] {
                w.write_all(&v.to_le_bytes())?;
            }
            for v in [self.mean, self.rating_range.0, self.rating_range.1] {
                w.write_all(&v.to_le_bytes())?;
            }
            for ids in [self.users.externals(), self.items.externals()] {
                w.write_all(bytemuck::cast_slice(ids))?;
            }
            w.write_all(bytemuck::cast_slice(&self.user_bias))?;
            w.write_all(bytemuck::cast_slice(&self.item_bias))?;
            w.write_all(bytemuck::cast_slice(self.user_factors.as_slice().expect("row-major")))?;
            w.write_all(bytemuck::cast_slice(self.item_factors.as_slice().expect("row-major")))?;
            w.into_inner().map_err(|e| e.into_error())?.sync_all()
        };
        if let Err(e) = write() {
            let _ = std::fs::remove_file(&tmp);
            return Err(err(format!("could not write: {e}")));
        }
        std::fs::rename(&tmp, path).map_err(|e| err(format!("could not move the finished file into place: {e}")))
    }

    /// Reads a model written by [`Model::save`].
    pub fn load(path: &Path) -> Result<Model> {
        let err = |message: String| Error::ModelFile { path: path.into(), message };
        if path.is_dir() {
            return Err(Error::IsDirectory { path: path.into() });
        }
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        let mut r = BufReader::new(file);
        let mut magic = [0u8; 8];
        r.read_exact(&mut magic).map_err(|_| err("too short to be a gpumf model".into()))?;
        if &magic != MAGIC {
            return Err(err("not a gpumf model file (bad magic bytes)".into()));
        }
        let truncated = |_| err("truncated".into());
        let mut u64s = [0u64; 4];
        for v in &mut u64s {
            let mut b = [0u8; 8];
            r.read_exact(&mut b).map_err(truncated)?;
            *v = u64::from_le_bytes(b);
        }
        let [m, n, k, biases] = u64s;
        let expected = 8 + 32 + 12 + 8 * (m + n) + 4 * (m + n) + 4 * k * (m + n);
        if k == 0 || len != expected {
            return Err(err(format!("size {len} bytes does not match its header ({m} users, {n} items, rank {k})")));
        }
        let mut f32s = [0f32; 3];
        for v in &mut f32s {
            let mut b = [0u8; 4];
            r.read_exact(&mut b).map_err(truncated)?;
            *v = f32::from_le_bytes(b);
        }
        fn read_vec<T: bytemuck::Pod + Default + Clone>(r: &mut impl Read, n: usize) -> std::io::Result<Vec<T>> {
            let mut v = vec![T::default(); n];
            r.read_exact(bytemuck::cast_slice_mut(&mut v))?;
            Ok(v)
        }
        let (m, n, k) = (m as usize, n as usize, k as usize);
        let users: Vec<u64> = read_vec(&mut r, m).map_err(truncated)?;
        let items: Vec<u64> = read_vec(&mut r, n).map_err(truncated)?;
        let user_bias = read_vec(&mut r, m).map_err(truncated)?;
        let item_bias = read_vec(&mut r, n).map_err(truncated)?;
        let p = read_vec(&mut r, m * k).map_err(truncated)?;
        let q = read_vec(&mut r, n * k).map_err(truncated)?;
        Ok(Model {
            mean: f32s[0],
            biases: biases != 0,
            user_bias,
            item_bias,
            user_factors: Array2::from_shape_vec((m, k), p).expect("sized above"),
            item_factors: Array2::from_shape_vec((n, k), q).expect("sized above"),
            rating_range: (f32s[1], f32s[2]),
            users: IdMap::from_externals(users),
            items: IdMap::from_externals(items),
        })
    }
}
