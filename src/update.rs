//! The SGD update rule of the model, written once: the CPU trainers run it as it stands and the
//! GPU kernel (shaders/sgd.wgsl) mirrors it line for line, which the exact test checks.

use crate::vector::dot;

/// The step sizes of one epoch.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Step {
    pub lr: f32,
    pub reg: f32,
    pub reg_bias: f32,
    pub mean: f32,
    pub biases: bool,
    /// 1 / the rating unit: factor steps take the error in units of the ratings' spread (see
    /// [`crate::model::Params::rating_unit`]).
    pub error_scale: f32,
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
    pub fn new(params: &crate::model::Params, counts: &crate::data::RowCounts) -> RowWeights {
        RowWeights { users: params.reg_weights(&counts.users), items: params.reg_weights(&counts.items) }
    }

    /// Reordered by the schedule's positions, as the CPU keeps its rows.
    pub fn by_position(&self, schedule: &crate::schedule::Schedule) -> RowWeights {
        RowWeights { users: schedule.users.gather(&self.users), items: schedule.items.gather(&self.items) }
    }
}

impl Step {
    /// Steps at learning rate `lr` for a model with offset `mean`, in `unit`s of rating.
    pub fn new(params: &crate::model::Params, lr: f32, mean: f32, unit: f32) -> Step {
        Step { lr, reg: params.reg, reg_bias: params.reg_bias, mean, biases: params.biases, error_scale: 1.0 / unit }
    }
}

/// One SGD update for one rating, reading the old p and q on both sides:
/// e = r − prediction, ε = e / unit; p += lr(ε·q − w_u·λ·(p − z)); q += lr(ε·p − w_i·λ·q);
/// b_u += lr(e − w_u·λ_b·b_u), b_i likewise. `weight` is (w_u, w_i), the two rows'
/// regularisation weights ([`crate::model::Params::reg_weights`]). With the SVD++ term
/// ([`crate::svdpp`]), `prior` is the user's z, which the user row is pulled toward instead
/// of zero, and `share` gathers ε·q (the old q) for the pass after the epoch; both are empty
/// without it.
/// Returns e, the error before the update: its squares summed over an epoch are the epoch's
/// training loss, with no second pass over the ratings (as LIBMF reports it).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn sgd_update(p: &mut [f32], q: &mut [f32], bu: &mut f32, bi: &mut f32, weight: (f32, f32), prior: &[f32], share: &mut [f32], value: f32, s: &Step) -> f32 {
    let mut prediction = s.mean + dot(p, q);
    if s.biases {
        prediction += *bu + *bi;
    }
    let e = value - prediction;
    if s.biases {
        *bu += s.lr * (e - weight.0 * s.reg_bias * *bu);
        *bi += s.lr * (e - weight.1 * s.reg_bias * *bi);
    }
    let scaled = e * s.error_scale;
    let (reg_p, reg_q) = (weight.0 * s.reg, weight.1 * s.reg);
    if prior.is_empty() {
        for (pf, qf) in p.iter_mut().zip(q.iter_mut()) {
            let (a, b) = (*pf, *qf);
            *pf = a + s.lr * (scaled * b - reg_p * a);
            *qf = b + s.lr * (scaled * a - reg_q * b);
        }
    } else {
        for (((pf, qf), z), g) in p.iter_mut().zip(q.iter_mut()).zip(prior).zip(share) {
            let (a, b) = (*pf, *qf);
            *pf = a + s.lr * (scaled * b - reg_p * (a - z));
            *qf = b + s.lr * (scaled * a - reg_q * b);
            *g += scaled * b;
        }
    }
    e
}
