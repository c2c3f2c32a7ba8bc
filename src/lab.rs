//! The classic lab exercise, reproduced exactly: dense per-entry SGD factorisation, truncated SVD
//! and masked SGD for matrix completion, over ndarray in f64.

use ndarray::{array, Array2, ArrayView2};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub use crate::svd::svd_factorise;

/// The exercise's 3×3 matrix.
pub fn exercise_matrix() -> Array2<f64> {
    array![[0.3374, 0.6005, 0.1735], [3.3359, 0.0492, 1.8374], [2.9407, 0.5301, 2.2620]]
}

/// The exercise's observation mask (1 = known).
pub fn exercise_mask() -> Array2<f64> {
    array![[1.0, 1.0, 1.0], [0.0, 1.0, 1.0], [1.0, 0.0, 1.0]]
}

/// Dense SGD factorisation A ≈ U·Vᵀ, as in the exercise: U and V drawn Uniform(0,1) (U first,
/// row-major), entries visited in row-major order each epoch, and V's row updated with the
/// U row just updated.
pub fn sgd_factorise(a: ArrayView2<f64>, rank: usize, epochs: usize, lr: f64, seed: u64) -> (Array2<f64>, Array2<f64>) {
    let ones = Array2::ones(a.dim());
    sgd_factorise_masked(a, ones.view(), rank, epochs, lr, seed)
}

/// The same SGD over the entries where `mask` is non-zero only (matrix completion).
pub fn sgd_factorise_masked(
    a: ArrayView2<f64>,
    mask: ArrayView2<f64>,
    rank: usize,
    epochs: usize,
    lr: f64,
    seed: u64,
) -> (Array2<f64>, Array2<f64>) {
    assert_eq!(a.dim(), mask.dim(), "matrix and mask differ in shape");
    let (m, n) = a.dim();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut u = Array2::from_shape_simple_fn((m, rank), || rng.random::<f64>());
    let mut v = Array2::from_shape_simple_fn((n, rank), || rng.random::<f64>());
    for _ in 0..epochs {
        for r in 0..m {
            for c in 0..n {
                if mask[[r, c]] == 0.0 {
                    continue;
                }
                let e = a[[r, c]] - u.row(r).dot(&v.row(c));
                for f in 0..rank {
                    u[[r, f]] += lr * e * v[[c, f]];
                }
                for f in 0..rank {
                    v[[c, f]] += lr * e * u[[r, f]];
                }
            }
        }
    }
    (u, v)
}
