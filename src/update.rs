//! The SGD update rule of the model and the one function that trains a block with it, written
//! once: every CPU trainer (sequential, threads, blocks from disk, the distributed runner's
//! workers) calls [`train_block`], and the GPU kernel (shaders/sgd.wgsl) mirrors
//! [`sgd_update`] line for line, which the exact test checks. The loss is the objective's
//! ([`crate::objective`]).

use crate::data::Rating;
use crate::error::{Error, Result};
use crate::model::Params;
use crate::objective::{BinaryLabels, Loss, LossSums, Unit};
use crate::vector::dot;

/// The step sizes of one epoch, and what the steps descend.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Step {
    pub lr: f32,
    pub reg: f32,
    pub reg_bias: f32,
    pub mean: f32,
    pub biases: bool,
    pub loss: Loss,
    /// The rating unit: factor steps take the loss in units of the ratings' spread (see
    /// [`crate::model::Params::rating_unit`]).
    pub unit: Unit,
    /// With binary labels: values above this are the positive label, below the negative.
    pub label_middle: Option<f32>,
    /// L1 regularisation of the factors (0: none), weighted per row as λ is.
    pub l1: f32,
    /// Project the factors to ≥ 0 after each update.
    pub nonneg: bool,
}

/// Each row's regularisation weight ([`crate::model::Params::reg_weights`]), indexed as the
/// factor rows they go with.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct RowWeights {
    pub users: Vec<f32>,
    pub items: Vec<f32>,
}

impl RowWeights {
    /// By id, from the whole training set's counts.
    pub fn new(params: &Params, counts: &crate::data::RowCounts) -> RowWeights {
        RowWeights { users: params.reg_weights(&counts.users), items: params.reg_weights(&counts.items) }
    }

    /// Reordered by the schedule's positions, as the CPU keeps its rows.
    pub fn by_position(&self, schedule: &crate::schedule::Schedule) -> RowWeights {
        RowWeights { users: schedule.users.gather(&self.users), items: schedule.items.gather(&self.items) }
    }
}

impl Step {
    /// Steps at learning rate `lr` for a model with offset `mean`, in `unit`s of rating, with
    /// the data's binary `labels` where the loss takes them.
    pub fn new(params: &Params, lr: f32, mean: f32, unit: f32, labels: Option<BinaryLabels>) -> Step {
        Step {
            lr,
            reg: params.reg,
            reg_bias: params.reg_bias,
            mean,
            biases: params.biases,
            loss: params.loss,
            unit: Unit::of(unit),
            label_middle: labels.map(|l| l.middle()),
            l1: params.l1,
            nonneg: params.nonneg(),
        }
    }

    /// The label the loss takes for a rating's value.
    #[inline(always)]
    pub fn label(&self, value: f32) -> f32 {
        match self.label_middle {
            Some(middle) => {
                if value > middle {
                    1.0
                } else {
                    -1.0
                }
            }
            None => value,
        }
    }

    /// Whether factors are shrunk or projected after the plain step.
    #[inline(always)]
    fn constrained(&self) -> bool {
        self.l1 > 0.0 || self.nonneg
    }

    /// A factor after its plain step: shrunk toward zero by `threshold` and stopped there (L1),
    /// then projected to ≥ 0 (non-negative factors).
    #[inline(always)]
    fn constrain(&self, x: f32, threshold: f32) -> f32 {
        let mut x = x;
        if self.l1 > 0.0 {
            let shrunk = (x.abs() - threshold).max(0.0);
            x = if x < 0.0 { -shrunk } else { shrunk };
        }
        if self.nonneg {
            x = x.max(0.0);
        }
        x
    }
}

/// One SGD update for one rating, reading the old p and q on both sides. With the score
/// s = μ + b_u + b_i + p·q and the loss's slopes (g_f, g_b) at s ([`Loss::slopes`]; for the
/// squared error (e / unit, e), e = r − s): p += lr(g_f·q − w_u·λ·(p − z));
/// q += lr(g_f·p − w_i·λ·q); b_u += lr(g_b − w_u·λ_b·b_u), b_i likewise; then, with L1, each
/// factor shrinks toward zero by lr·w·l1 (stopping there), and with non-negative factors each
/// is projected to ≥ 0. `weight` is (w_u, w_i), the two rows' regularisation weights
/// ([`crate::model::Params::reg_weights`]). With the SVD++ term ([`crate::svdpp`]), `prior`
/// is the user's z, which the user row is pulled toward instead of zero, and `share` gathers
/// g_f·q (the old q) for the pass after the epoch; both are empty without it.
/// Returns the rating's [`LossSums`] terms at the score before the update: summed over an
/// epoch they are its training loss, with no second pass over the ratings (as LIBMF reports
/// it).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn sgd_update(p: &mut [f32], q: &mut [f32], bu: &mut f32, bi: &mut f32, weight: (f32, f32), prior: &[f32], share: &mut [f32], value: f32, s: &Step) -> [f32; 4] {
    let mut score = s.mean + dot(p, q);
    if s.biases {
        score += *bu + *bi;
    }
    let label = s.label(value);
    let (slope, bias_slope) = s.loss.slopes(score, label, s.unit);
    if s.biases {
        *bu += s.lr * (bias_slope - weight.0 * s.reg_bias * *bu);
        *bi += s.lr * (bias_slope - weight.1 * s.reg_bias * *bi);
    }
    let (reg_p, reg_q) = (weight.0 * s.reg, weight.1 * s.reg);
    if s.constrained() {
        let (cut_p, cut_q) = (s.lr * weight.0 * s.l1, s.lr * weight.1 * s.l1);
        let no_prior = [];
        let prior = if prior.is_empty() { &no_prior[..] } else { prior };
        for (f, (pf, qf)) in p.iter_mut().zip(q.iter_mut()).enumerate() {
            let (a, b) = (*pf, *qf);
            let z = prior.get(f).copied().unwrap_or(0.0);
            *pf = s.constrain(a + s.lr * (slope * b - reg_p * (a - z)), cut_p);
            *qf = s.constrain(b + s.lr * (slope * a - reg_q * b), cut_q);
            if let Some(g) = share.get_mut(f) {
                *g += slope * b;
            }
        }
    } else if prior.is_empty() {
        for (pf, qf) in p.iter_mut().zip(q.iter_mut()) {
            let (a, b) = (*pf, *qf);
            *pf = a + s.lr * (slope * b - reg_p * a);
            *qf = b + s.lr * (slope * a - reg_q * b);
        }
    } else {
        for (((pf, qf), z), g) in p.iter_mut().zip(q.iter_mut()).zip(prior).zip(share) {
            let (a, b) = (*pf, *qf);
            *pf = a + s.lr * (slope * b - reg_p * (a - z));
            *qf = b + s.lr * (slope * a - reg_q * b);
            *g += slope * b;
        }
    }
    s.loss.terms(score, label)
}

/// One side's rows of a block, as its ratings name them: a rating's row is its index less
/// `first` (positions of the schedule, or rows of a stripe). `prior` and `share` are the
/// users' SVD++ term rows (empty without it, and on the items' side).
pub(crate) struct BlockRows<'a> {
    pub first: u32,
    pub factors: &'a mut [f32],
    pub bias: &'a mut [f32],
    pub weights: &'a [f32],
    pub prior: &'a [f32],
    pub share: &'a mut [f32],
}

impl BlockRows<'_> {
    fn rows(&self) -> usize {
        self.bias.len()
    }
}

/// How many ratings ahead the item row is prefetched (chosen on a 2-core EPYC at ranks 32 and
/// 128: 8 was never slower than 0 or 4).
const PREFETCH_AHEAD: usize = 8;

/// Trains `ratings` (one block, in their fixed order) on the block's rows at rank `k`, and
/// returns their loss sums: the one block-training function of every CPU trainer. A rating
/// whose user or item falls outside the rows (a corrupt block read from disk) stops the block
/// with an error naming it, before any row is touched by it.
pub(crate) fn train_block(ratings: &[Rating], users: BlockRows, items: BlockRows, k: usize, step: &Step) -> Result<LossSums> {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has AVX2 and FMA (detected just above).
        return unsafe { train_block_avx2(ratings, users, items, k, step) };
    }
    train_block_portable(ratings, users, items, k, step)
}

/// [`train_block_portable`] compiled for AVX2 and FMA: wider vectors, the same arithmetic (no
/// fused operation is written, so the bits are the same as without).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn train_block_avx2(ratings: &[Rating], users: BlockRows, items: BlockRows, k: usize, step: &Step) -> Result<LossSums> {
    train_block_portable(ratings, users, items, k, step)
}

#[inline(always)]
fn train_block_portable(ratings: &[Rating], users: BlockRows, items: BlockRows, k: usize, step: &Step) -> Result<LossSums> {
    let (m, n) = (users.rows(), items.rows());
    if users.factors.len() != m * k || items.factors.len() != n * k || users.weights.len() != m || items.weights.len() != n {
        return Err(Error::Data(format!("a block's rows do not match: {m} users and {n} items at rank {k}")));
    }
    let svdpp = !users.prior.is_empty();
    if svdpp && (users.prior.len() != m * k || users.share.len() != m * k) {
        return Err(Error::Data("a block's SVD++ rows do not match its users".into()));
    }
    let mut sums = LossSums::default();
    for (j, r) in ratings.iter().enumerate() {
        let (u, i) = (r.user.wrapping_sub(users.first) as usize, r.item.wrapping_sub(items.first) as usize);
        if u >= m || i >= n {
            return Err(Error::Data(format!(
                "rating {j} of a block names user {} and item {}, outside the block's users {}..{} and items {}..{}: the block is corrupt",
                r.user,
                r.item,
                users.first,
                users.first as usize + m,
                items.first,
                items.first as usize + n
            )));
        }
        prefetch_item_row(ratings, j, &items, k);
        let (prior, share): (&[f32], &mut [f32]) = if svdpp { (&users.prior[u * k..][..k], &mut users.share[u * k..][..k]) } else { (&[], &mut []) };
        let terms = sgd_update(
            &mut users.factors[u * k..][..k],
            &mut items.factors[i * k..][..k],
            &mut users.bias[u],
            &mut items.bias[i],
            (users.weights[u], items.weights[i]),
            prior,
            share,
            r.value,
            step,
        );
        sums.add(terms);
    }
    Ok(sums)
}

/// Within a block the user rows repeat but the item rows jump about: asks for the item row of
/// the rating `PREFETCH_AHEAD` places after `j`, so its cache misses overlap this update. A
/// no-op where stable Rust has no prefetch (not x86_64), and for a row outside the block.
#[inline(always)]
fn prefetch_item_row(ratings: &[Rating], j: usize, items: &BlockRows, k: usize) {
    #[cfg(target_arch = "x86_64")]
    if let Some(next) = ratings.get(j + PREFETCH_AHEAD) {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let row = next.item.wrapping_sub(items.first) as usize;
        if let Some(values) = items.factors.get(row * k..(row + 1) * k) {
            for line in values.chunks(16) {
                // SAFETY: a prefetch reads nothing; the address is within the row's slice.
                unsafe { _mm_prefetch(line.as_ptr() as *const i8, _MM_HINT_T0) };
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (ratings, j, items, k, PREFETCH_AHEAD);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::choice::Choice;

    fn step(loss: Loss) -> Step {
        Step { lr: 0.1, reg: 0.05, reg_bias: 0.02, mean: 0.5, biases: true, loss, unit: Unit::of(1.0), label_middle: loss.is_binary().then_some(0.0), l1: 0.0, nonneg: false }
    }

    #[test]
    fn one_update_follows_the_rule_for_every_loss() {
        for &(loss, _, _) in Loss::ALL {
            let s = step(loss);
            let (p0, q0) = ([0.3f32, -0.2, 0.5], [0.4f32, 0.1, -0.3]);
            let (mut p, mut q, mut bu, mut bi) = (p0, q0, 0.1f32, -0.2f32);
            let value = if loss.is_binary() { -1.0 } else { 2.0 };
            let terms = sgd_update(&mut p, &mut q, &mut bu, &mut bi, (1.5, 0.5), &[], &mut [], value, &s);
            let score = 0.5 + 0.1 - 0.2 + dot(&p0, &q0);
            let g = -loss.gradient(score, value);
            for f in 0..3 {
                assert!((p[f] - (p0[f] + 0.1 * (g * q0[f] - 1.5 * 0.05 * p0[f]))).abs() < 1e-6, "{loss:?}: p[{f}]");
                assert!((q[f] - (q0[f] + 0.1 * (g * p0[f] - 0.5 * 0.05 * q0[f]))).abs() < 1e-6, "{loss:?}: q[{f}]");
            }
            assert!((bu - (0.1 + 0.1 * (g - 1.5 * 0.02 * 0.1))).abs() < 1e-6, "{loss:?}: b_u");
            assert!((bi - (-0.2 + 0.1 * (g - 0.5 * 0.02 * -0.2))).abs() < 1e-6, "{loss:?}: b_i");
            assert_eq!(terms, loss.terms(score, value), "{loss:?}: the terms are taken before the update");
        }
    }

    #[test]
    fn l1_shrinks_toward_zero_and_stops_there_and_nonneg_projects() {
        let s = Step { l1: 1.0, ..step(Loss::Squared) };
        // Slope 0 (score = value), no λ: only the L1 cut of lr·w·l1 = 0.1·2 acts.
        let (mut p, mut q, mut bu, mut bi) = ([0.5f32, -0.05, 0.0], [0.0f32, 0.0, 0.0], 0.0f32, 0.0f32);
        let s = Step { reg: 0.0, biases: false, mean: 0.0, ..s };
        sgd_update(&mut p, &mut q, &mut bu, &mut bi, (2.0, 1.0), &[], &mut [], 0.0, &s);
        assert!((p[0] - 0.3).abs() < 1e-6 && p[1] == 0.0 && p[2] == 0.0, "{p:?}");
        let s = Step { l1: 0.0, nonneg: true, ..s };
        let (mut p, mut q) = ([0.5f32, -0.5], [0.5f32, 0.5]);
        sgd_update(&mut p, &mut q, &mut bu, &mut bi, (1.0, 1.0), &[], &mut [], -4.0, &s);
        assert!(p.iter().chain(&q).all(|&x| x >= 0.0), "{p:?} {q:?}");
        assert_eq!(p[1], 0.0, "the negative factor is projected to zero");
    }

    #[test]
    fn a_rating_outside_the_blocks_rows_is_an_error_not_a_panic() {
        let (k, s) = (2, step(Loss::Squared));
        let (mut p, mut q, mut bu, mut bi) = (vec![0.1f32; 4], vec![0.1f32; 6], vec![0.0f32; 2], vec![0.0f32; 3]);
        let (wu, wi) = (vec![1.0f32; 2], vec![1.0f32; 3]);
        fn rows<'a>(first: u32, factors: &'a mut [f32], bias: &'a mut [f32], weights: &'a [f32]) -> BlockRows<'a> {
            BlockRows { first, factors, bias, weights, prior: &[], share: &mut [] }
        }
        let good = [Rating { user: 10, item: 22, value: 1.0 }];
        let sums = train_block(&good, rows(10, &mut p, &mut bu, &wu), rows(20, &mut q, &mut bi, &wi), k, &s).unwrap();
        assert_eq!(sums.count, 1);
        for bad in [Rating { user: 12, item: 20, value: 1.0 }, Rating { user: 9, item: 20, value: 1.0 }, Rating { user: 10, item: u32::MAX, value: 1.0 }] {
            let e = train_block(&[bad], rows(10, &mut p, &mut bu, &wu), rows(20, &mut q, &mut bi, &wi), k, &s).unwrap_err().to_string();
            assert!(e.contains("corrupt") && e.contains(&bad.user.to_string()), "{e}");
        }
    }
}
