//! Error measures: RMSE and MAE over ratings, the masked loss and the Frobenius error of dense
//! reconstructions.

use crate::data::Rating;
use crate::model::Model;
use ndarray::{ArrayView2, Zip};
use rayon::prelude::*;

/// Sums of errors over a set of ratings; f64 so 100M terms add up without drift.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct ErrorSums {
    pub count: u64,
    pub squared: f64,
    pub absolute: f64,
}

impl ErrorSums {
    pub fn add(&mut self, error: f64) {
        self.count += 1;
        self.squared += error * error;
        self.absolute += error.abs();
    }

    pub fn merge(self, other: ErrorSums) -> ErrorSums {
        ErrorSums { count: self.count + other.count, squared: self.squared + other.squared, absolute: self.absolute + other.absolute }
    }

    /// Root mean squared error (NaN for an empty set).
    pub fn rmse(&self) -> f64 {
        (self.squared / self.count as f64).sqrt()
    }

    pub fn mae(&self) -> f64 {
        self.absolute / self.count as f64
    }
}

/// Errors of the model's clipped predictions on `ratings`, in parallel.
pub fn evaluate(model: &Model, ratings: &[Rating]) -> ErrorSums {
    ratings
        .par_chunks(1 << 14)
        .map(|chunk| {
            let mut sums = ErrorSums::default();
            for r in chunk {
                sums.add((r.value - model.predict(r.user, r.item)) as f64);
            }
            sums
        })
        .reduce(ErrorSums::default, ErrorSums::merge)
}

/// Root mean squared error between predictions and truth.
pub fn rmse(predicted: &[f32], truth: &[f32]) -> f64 {
    sums(predicted, truth).rmse()
}

/// Mean absolute error between predictions and truth.
pub fn mae(predicted: &[f32], truth: &[f32]) -> f64 {
    sums(predicted, truth).mae()
}

fn sums(predicted: &[f32], truth: &[f32]) -> ErrorSums {
    assert_eq!(predicted.len(), truth.len(), "predictions and truth differ in length");
    let mut s = ErrorSums::default();
    for (p, t) in predicted.iter().zip(truth) {
        s.add((*t - *p) as f64);
    }
    s
}

/// Σ over entries where `mask` is non-zero of (a − approx)², the masked objective.
pub fn masked_loss(a: ArrayView2<f64>, approx: ArrayView2<f64>, mask: ArrayView2<f64>) -> f64 {
    let mut loss = 0.0;
    Zip::from(a).and(approx).and(mask).for_each(|&x, &y, &m| {
        if m != 0.0 {
            loss += (x - y) * (x - y);
        }
    });
    loss
}

/// ‖a − b‖²_F, the reconstruction loss against a dense reference.
pub fn frobenius_error(a: ArrayView2<f64>, b: ArrayView2<f64>) -> f64 {
    (&a - &b).iter().map(|d| d * d).sum()
}
