//! Truncated SVD through nalgebra: the dense reference whose loss is the optimum of rank-k
//! approximation (Eckart–Young), used to validate the SGD trainers.

use nalgebra::DMatrix;
use ndarray::{Array1, Array2, ArrayView2};

/// The `rank` largest singular triplets of a dense matrix.
#[derive(Clone, Debug)]
pub struct TruncatedSvd {
    /// m × rank left singular vectors.
    pub u: Array2<f64>,
    /// The kept singular values, largest first.
    pub singular_values: Array1<f64>,
    /// n × rank right singular vectors.
    pub v: Array2<f64>,
    /// Every singular value of the matrix, largest first.
    pub all_singular_values: Vec<f64>,
}

impl TruncatedSvd {
    /// U·diag(s)·Vᵀ, the best rank-k approximation.
    pub fn reconstruction(&self) -> Array2<f64> {
        let us = &self.u * &self.singular_values;
        us.dot(&self.v.t())
    }

    /// The optimal loss ‖A − A_k‖²_F = Σ of the squared dropped singular values.
    pub fn optimal_loss(&self) -> f64 {
        self.all_singular_values.iter().skip(self.singular_values.len()).map(|s| s * s).sum()
    }
}

/// Truncated SVD of `a`, keeping `rank` singular values (at most min(m, n)).
pub fn truncated_svd(a: ArrayView2<f64>, rank: usize) -> TruncatedSvd {
    let (m, n) = a.dim();
    let dense = DMatrix::from_fn(m, n, |i, j| a[[i, j]]);
    let svd = dense.svd(true, true);
    let (u, vt) = (svd.u.expect("requested U"), svd.v_t.expect("requested Vt"));
    let mut order: Vec<usize> = (0..svd.singular_values.len()).collect();
    order.sort_by(|&x, &y| svd.singular_values[y].total_cmp(&svd.singular_values[x]));
    let keep = rank.min(order.len());
    TruncatedSvd {
        u: Array2::from_shape_fn((m, keep), |(i, c)| u[(i, order[c])]),
        singular_values: Array1::from_shape_fn(keep, |c| svd.singular_values[order[c]]),
        v: Array2::from_shape_fn((n, keep), |(j, c)| vt[(order[c], j)]),
        all_singular_values: order.iter().map(|&c| svd.singular_values[c]).collect(),
    }
}

/// The lab's `svd_factorise`: factors (U·S, V) of the truncated SVD, so U·Vᵀ is the rank-`rank`
/// reconstruction with every singular value beyond `rank` set to zero.
pub fn svd_factorise(a: ArrayView2<f64>, rank: usize) -> (Array2<f64>, Array2<f64>) {
    let svd = truncated_svd(a, rank);
    (&svd.u * &svd.singular_values, svd.v)
}
