//! Fold-in: recommendations for a user the model has not seen, from the items they rated (or
//! used), without retraining. The user's row is solved with every item's factors fixed, as
//! the least-squares step of ALS does (implicit's `recalculate_user`): exactly for squared
//! error (one (k+1)×(k+1) solve), then by projected gradient steps for the other losses and
//! for L1 or non-negative factors.

use super::{best_of, Model, OneClassFit, Params};
use crate::error::{Error, Result};
use crate::objective::{Loss, Unit};
use nalgebra::{DMatrix, DVector};

/// Gradient steps after the least-squares start, for the losses it does not solve exactly.
const GRADIENT_STEPS: usize = 500;

/// A user folded into a model: the factors and bias their ratings give.
#[derive(Clone, Debug, PartialEq)]
pub struct FoldedUser {
    pub factors: Vec<f32>,
    pub bias: f32,
}

/// The L2 weights of a new user's row, as training weighs a row of `n` ratings: `reg` and
/// `reg_bias` at each rating, scaled by the row's frequency weight ([`Params::reg_weights`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FoldInReg {
    pub reg: f32,
    pub reg_bias: f32,
}

impl Default for FoldInReg {
    /// Training's defaults.
    fn default() -> FoldInReg {
        let p = Params::default();
        FoldInReg { reg: p.reg, reg_bias: p.reg_bias }
    }
}

impl Model {
    /// The row of a new user who gave `rated` (item index, value in the data's own terms:
    /// a rating, or one of the binary labels), minimising the model's loss over those ratings
    /// plus `reg`'s L2 penalty (and the model's L1 and non-negativity) with the items fixed.
    /// Training scales λ by the rating unit where it scales the ratings, which the model file
    /// does not record; the fold-in takes λ as given.
    pub fn fold_in(&self, rated: &[(u32, f32)], reg: FoldInReg) -> Result<FoldedUser> {
        if rated.is_empty() {
            return Err(Error::Data("fold-in needs at least one of the user's items".into()));
        }
        if let Some(&(item, _)) = rated.iter().find(|(i, _)| *i as usize >= self.items.len()) {
            return Err(Error::Data(format!("fold-in: item index {item} is outside the model's {} items", self.items.len())));
        }
        if let Some(message) = rated.iter().find_map(|&(_, v)| self.check_rated_value(v).err()) {
            return Err(Error::Data(format!("fold-in: {message}")));
        }
        if let Some(fit) = self.one_class {
            return Ok(self.fold_in_events(rated, &fit));
        }
        let k = self.rank();
        let n = rated.len();
        let weight = Params::default().reg_weights(&[n as u32])[0] * n as f32;
        // Features [q_i, 1] (the bias column only with biases), targets y_i − μ − b_i.
        let width = k + self.biases as usize;
        let features = DMatrix::<f64>::from_fn(n, width, |r, c| if c < k { self.item_row(rated[r].0)[c] as f64 } else { 1.0 });
        let labels: Vec<f32> = rated.iter().map(|&(_, v)| self.label(v)).collect();
        let offsets: Vec<f64> = rated.iter().map(|&(i, _)| (self.mean + self.item_bias[i as usize]) as f64).collect();
        let targets = DVector::<f64>::from_fn(n, |r, _| labels[r] as f64 - offsets[r]);
        let penalty = DVector::<f64>::from_fn(width, |c, _| weight as f64 * if c < k { reg.reg } else { reg.reg_bias } as f64);
        let mut theta = least_squares(&features, &targets, &penalty);
        if self.loss != Loss::Squared || self.l1 > 0.0 || self.nonneg {
            theta = self.descend(&features, &labels, &offsets, &penalty, weight, theta);
        }
        let bias = if self.biases { theta[k] as f32 } else { 0.0 };
        Ok(FoldedUser { factors: theta.rows(0, k).iter().map(|&x| x as f32).collect(), bias })
    }

    /// A one-class model's new user: the row's normal equations of the weighted loss over every
    /// item (as [`crate::cpu::als`] solves them in training, here exactly), from the item
    /// Gramian and the user's events, with the λ training gave a row of their weight. `rated`
    /// holds counts; a repeated item's add up.
    fn fold_in_events(&self, rated: &[(u32, f32)], fit: &OneClassFit) -> FoldedUser {
        let (k, s) = (self.rank(), &fit.settings);
        let mut counts: Vec<(u32, f32)> = rated.to_vec();
        counts.sort_by_key(|&(i, _)| i);
        counts.dedup_by(|b, a| a.0 == b.0 && {
            a.1 += b.1;
            true
        });
        let counts: Vec<(u32, f32)> = counts.into_iter().filter(|&(_, c)| c > 0.0).collect();
        let q = self.item_factors.mapv(|x| x as f64);
        let gram = q.t().dot(&q);
        let w0 = s.unobserved_weight as f64;
        let mut normal = DMatrix::<f64>::from_fn(k, k, |r, c| w0 * gram[(r, c)]);
        let mut right = DVector::<f64>::zeros(k);
        let mut mass = w0 * (self.items.len() - counts.len()) as f64;
        for &(item, count) in &counts {
            let c = s.confidence(count) as f64;
            mass += c;
            let row = DVector::<f64>::from_iterator(k, self.item_row(item).iter().map(|&x| x as f64));
            normal += (c - w0) * &row * row.transpose();
            right += c * &row;
        }
        let lambda = fit.row_reg(mass as f32) as f64;
        for d in 0..k {
            normal[(d, d)] += lambda.max(1e-9);
        }
        let x = solve_normal(normal, &right);
        FoldedUser { factors: x.iter().map(|&v| v as f32).collect(), bias: 0.0 }
    }

    /// Projected (proximal, for L1) gradient descent on the loss plus the penalties, from
    /// `theta`. Each step starts from the previous one's size (first 1/L, L a bound on the
    /// squared losses' curvature) and halves until the objective does not rise, so the
    /// logistic loss, KL's steep curvature near zero and the kinks of hinge and absolute
    /// losses all descend.
    fn descend(&self, features: &DMatrix<f64>, labels: &[f32], offsets: &[f64], penalty: &DVector<f64>, weight: f32, mut theta: DVector<f64>) -> DVector<f64> {
        let k = self.rank();
        let shrink = weight as f64 * self.l1 as f64;
        // The objective at θ, and the scores it took (the next gradient starts from them).
        let objective = |theta: &DVector<f64>| -> (f64, DVector<f64>) {
            let scores = features * theta;
            let loss: f64 = labels.iter().enumerate().map(|(r, &y)| self.loss.value((scores[r] + offsets[r]) as f32, y) as f64).sum();
            (loss + 0.5 * penalty.component_mul(theta).dot(theta) + shrink * theta.rows(0, k).abs().sum(), scores)
        };
        let project = |theta: &mut DVector<f64>, rate: f64| {
            for x in theta.iter_mut().take(k) {
                let t = rate * shrink;
                *x -= x.clamp(-t, t);
                if self.nonneg {
                    *x = x.max(0.0);
                }
            }
        };
        project(&mut theta, 0.0);
        let mut rate = 1.0 / (features.norm_squared() + penalty.max());
        let (mut current, mut scores) = objective(&theta);
        for _ in 0..GRADIENT_STEPS {
            // The slopes are the loss's negative gradient in the score.
            let slopes = DVector::<f64>::from_fn(labels.len(), |r, _| self.loss.at((scores[r] + offsets[r]) as f32, labels[r], Unit::of(1.0)).slopes.0 as f64);
            let gradient = penalty.component_mul(&theta) - features.transpose() * slopes;
            let mut moved = false;
            for _ in 0..40 {
                let mut next = &theta - &gradient * rate;
                project(&mut next, rate);
                let (value, at_next) = objective(&next);
                if value <= current {
                    moved = value < current;
                    (theta, current, scores) = (next, value, at_next);
                    rate *= 1.5;
                    break;
                }
                rate *= 0.5;
            }
            if !moved {
                break;
            }
        }
        theta
    }

    /// The value an item given without one stands for: the top of the rating scale, or the
    /// positive label.
    pub fn liked_value(&self) -> f32 {
        if self.one_class.is_some() {
            return 1.0;
        }
        self.labels.map_or(self.rating_range.1, |l| l.positive)
    }

    /// Whether `value` can be a new user's value for an item: finite, and with a binary model
    /// one of its two labels; else what is wrong with it.
    pub fn check_rated_value(&self, value: f32) -> std::result::Result<(), String> {
        if !value.is_finite() {
            return Err(format!("{value} is not a finite number"));
        }
        if self.one_class.is_some() && value < 0.0 {
            return Err(format!("{value} is negative; a count of events cannot be"));
        }
        match self.labels {
            Some(labels) if labels.sign(value).is_none() => Err(format!("{value} is neither of the model's labels {} and {}", labels.negative, labels.positive)),
            _ => Ok(()),
        }
    }

    /// The `n` best items for a folded-in user, leaving out `exclude` (item indices).
    pub fn recommend_folded(&self, user: &FoldedUser, n: usize, exclude: &[u32]) -> Vec<(u32, f32)> {
        let row = ndarray::ArrayView2::from_shape((1, user.factors.len()), &user.factors).expect("one row");
        let scores = self.scores_of(row, &[user.bias]);
        let mut skip = exclude.to_vec();
        skip.sort_unstable();
        skip.dedup();
        best_of(scores.row(0).as_slice().expect("row-major"), n, &skip)
    }
}

/// θ minimising |Xθ − t|² + Σ_c penalty_c·θ_c², by the normal equations (Cholesky; the
/// penalty makes them positive definite, and a tiny ridge covers a zero penalty).
fn least_squares(features: &DMatrix<f64>, targets: &DVector<f64>, penalty: &DVector<f64>) -> DVector<f64> {
    let mut normal = features.transpose() * features;
    for c in 0..normal.nrows() {
        normal[(c, c)] += penalty[c].max(1e-9);
    }
    solve_normal(normal, &(features.transpose() * targets))
}

/// x solving `normal`·x = `right` for positive definite normal equations (Cholesky; LU should
/// rounding have cost the definiteness).
fn solve_normal(normal: DMatrix<f64>, right: &DVector<f64>) -> DVector<f64> {
    match normal.clone().cholesky() {
        Some(c) => c.solve(right),
        None => normal.lu().solve(right).unwrap_or_else(|| DVector::zeros(right.len())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::RatingSet;
    use crate::objective::BinaryLabels;
    use crate::problem::Problem;

    fn model(loss: Loss, nonneg: bool, l1: f32) -> Model {
        let triplets = (0..6u64).flat_map(|u| (0..30u64).map(move |i| (u, i, 1.0 + ((u + i) % 5) as f32)));
        let problem = Problem::new(RatingSet::from_triplets(triplets), None);
        let mut m = Model::init(&problem, &Params { rank: 5, ..Params::default() }, None);
        m.item_factors.iter_mut().enumerate().for_each(|(j, x)| *x = (j as f32 * 0.77).sin() * if nonneg { 0.0 } else { 0.5 } + if nonneg { 0.4 + 0.3 * (j as f32).cos() } else { 0.0 });
        m.item_bias.iter_mut().enumerate().for_each(|(j, b)| *b = 0.1 * (j as f32).cos());
        (m.loss, m.nonneg, m.l1) = (loss, nonneg, l1);
        if loss.is_binary() {
            (m.labels, m.mean) = (Some(BinaryLabels { negative: 0.0, positive: 1.0 }), 0.0);
        }
        m
    }

    #[test]
    fn every_loss_folds_in_to_a_minimum_of_its_penalised_loss() {
        let reg = FoldInReg::default();
        for (loss, nonneg, l1) in [(Loss::Squared, false, 0.0), (Loss::Squared, false, 0.05), (Loss::Squared, true, 0.0), (Loss::Absolute, false, 0.0), (Loss::Kl, true, 0.0), (Loss::Logistic, false, 0.0), (Loss::Hinge, false, 0.0), (Loss::SquaredHinge, false, 0.0)] {
            let m = model(loss, nonneg, l1);
            let rated: Vec<(u32, f32)> = (0..14u32).map(|i| (i * 2, if loss.is_binary() { (i % 3 == 0) as u8 as f32 } else { 1.0 + (i % 5) as f32 })).collect();
            let folded = m.fold_in(&rated, reg).unwrap();
            // The penalised loss, written out here as the oracle.
            let n = rated.len();
            let weight = Params::default().reg_weights(&[n as u32])[0] * n as f32;
            let objective = |p: &[f32], b: f32| -> f64 {
                let user = FoldedUser { factors: p.to_vec(), bias: b };
                let loss: f64 = rated.iter().map(|&(i, v)| m.loss.value(m.mean + user.bias + m.item_bias[i as usize] + crate::vector::dot(p, m.item_row(i)), m.label(v)) as f64).sum();
                let l2: f64 = p.iter().map(|x| (x * x) as f64).sum::<f64>() * (weight * reg.reg) as f64 + (b * b * weight * reg.reg_bias) as f64;
                loss + 0.5 * l2 + (weight * l1) as f64 * p.iter().map(|x| x.abs() as f64).sum::<f64>()
            };
            let best = objective(&folded.factors, folded.bias);
            if nonneg {
                assert!(folded.factors.iter().all(|&x| x >= 0.0), "{loss:?}: {:?}", folded.factors);
            }
            for probe in 0..200 {
                let size = if probe % 2 == 0 { 1e-2 } else { 1e-3 };
                let mut p = folded.factors.clone();
                p.iter_mut().enumerate().for_each(|(c, x)| *x += size * ((probe * 7 + c * 13) as f32 * 0.61).sin());
                if nonneg {
                    p.iter_mut().for_each(|x| *x = x.max(0.0));
                }
                let b = folded.bias + size * (probe as f32 * 1.3).cos();
                let other = objective(&p, b);
                assert!(other >= best - 1e-4 * best.abs().max(1.0), "{loss:?} nonneg {nonneg} l1 {l1}: a nearby point is lower, {other} < {best}");
            }
        }
    }

    #[test]
    fn folding_in_nothing_or_an_unknown_item_is_an_error() {
        let m = model(Loss::Squared, false, 0.0);
        assert!(m.fold_in(&[], FoldInReg::default()).unwrap_err().to_string().contains("at least one"));
        assert!(m.fold_in(&[(99, 1.0)], FoldInReg::default()).unwrap_err().to_string().contains("outside"));
        assert!(m.fold_in(&[(1, f32::NAN)], FoldInReg::default()).unwrap_err().to_string().contains("not a finite number"));
        let binary = model(Loss::Logistic, false, 0.0);
        assert!(binary.fold_in(&[(1, 3.0)], FoldInReg::default()).unwrap_err().to_string().contains("neither of the model's labels 0 and 1"));
        assert_eq!((m.liked_value(), binary.liked_value()), (m.rating_range.1, 1.0));
    }
}
