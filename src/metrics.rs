//! Measures of a model on held-out ratings, as its loss defines them ([`crate::objective`]):
//! the loss sums of a set of ratings, the AUC of binary scores, every metric of a loss in one
//! [`Scores`]; and the dense measures of the lab (the masked loss, the Frobenius error).

use crate::data::{Rating, UNKNOWN};
use crate::model::Model;
use crate::objective::{LossSums, Metric, ONE_CLASS_K};
use ndarray::{ArrayView2, Zip};
use rayon::prelude::*;

/// The loss sums of the model's predictions on `ratings` (a real value judged clipped to the
/// training range, as it is predicted), in parallel.
pub fn evaluate(model: &Model, ratings: &[Rating]) -> LossSums {
    ratings
        .par_chunks(1 << 14)
        .map(|chunk| {
            let mut sums = LossSums::default();
            for r in chunk {
                let score = model.loss.judged(model.score(r.user, r.item), model.rating_range);
                sums.add(model.loss.terms(score, model.label(r.value)));
            }
            sums
        })
        .reduce(LossSums::default, LossSums::merge)
}

/// The area under the ROC curve of binary `scores` against `positive` labels: the chance that a
/// positive outscores a negative, ties counting half (the Mann–Whitney statistic). `None`
/// without both labels.
pub fn auc(scores: &[f32], positive: &[bool]) -> Option<f64> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.par_sort_unstable_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let (mut rank_sum, mut positives) = (0.0f64, 0u64);
    let mut i = 0;
    while i < order.len() {
        // A run of tied scores shares the mean of its ranks (1-based).
        let mut j = i;
        while j < order.len() && scores[order[j]] == scores[order[i]] {
            j += 1;
        }
        let mean_rank = (i + j + 1) as f64 / 2.0;
        for &at in &order[i..j] {
            if positive[at] {
                rank_sum += mean_rank;
                positives += 1;
            }
        }
        i = j;
    }
    let negatives = scores.len() as u64 - positives;
    if positives == 0 || negatives == 0 {
        return None;
    }
    let (p, n) = (positives as f64, negatives as f64);
    Some((rank_sum - p * (p + 1.0) / 2.0) / (p * n))
}

/// The held-out events of a problem and each user's training items, which the lists leave out:
/// what an SGD solver of a one-class loss judges its epochs by (NDCG@20), on either device.
pub(crate) struct HeldOutLists {
    test: Vec<Rating>,
    seen: crate::model::SeenItems,
}

impl HeldOutLists {
    /// `None` with the training ratings in a block cache on disk (their items are not at hand).
    pub fn of(problem: &crate::problem::Problem) -> Option<HeldOutLists> {
        let seen = || crate::model::SeenItems::from_ratings(&problem.train, problem.num_users(), problem.num_items());
        problem.train_on_disk.is_none().then(|| HeldOutLists { test: problem.test.clone(), seen: seen() })
    }

    pub fn is_empty(&self) -> bool {
        self.test.is_empty()
    }

    /// NDCG@20 of `model`'s lists on the held-out events.
    pub fn ndcg(&self, mut model: Model) -> Option<f64> {
        model.seen = Some(self.seen.clone());
        ndcg(&model, &self.test)
    }
}

/// NDCG@[`ONE_CLASS_K`] of the model's lists (training items left out) against `events`, the
/// held-out events of its users: `None` when the model does not record its training items or
/// no user has a held-out event.
pub fn ndcg(model: &Model, events: &[Rating]) -> Option<f64> {
    let metric = crate::ranking::RankingMetric::Ndcg(ONE_CLASS_K);
    let report = crate::ranking::ranking_metrics(model, events, |r| r.value > 0.0, &[metric]).ok()?;
    (report.users > 0).then(|| report.values[0].1)
}

/// Every metric of a loss on one set of ratings; those that do not fit the loss are `None`.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct Scores {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rmse: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mae: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gkl: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_loss: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accuracy: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auc: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none", rename = "ndcg@20")]
    pub ndcg: Option<f64>,
}

impl Scores {
    /// The metrics of `metrics` that sums give (every one but AUC).
    pub fn of(sums: &LossSums, metrics: &[Metric]) -> Scores {
        let mut s = Scores::default();
        for &m in metrics {
            s.set(m, m.of(sums));
        }
        s
    }

    /// Every metric of the model's loss on `ratings`, AUC included.
    pub fn measure(model: &Model, ratings: &[Rating]) -> Scores {
        let metrics = model.loss.metrics();
        let mut s = Scores::of(&evaluate(model, ratings), metrics);
        if metrics.contains(&Metric::Auc) {
            let scores: Vec<f32> = ratings.par_iter().map(|r| model.score(r.user, r.item)).collect();
            let positive: Vec<bool> = ratings.par_iter().map(|r| model.label(r.value) > 0.0).collect();
            s.auc = auc(&scores, &positive);
        }
        if metrics.contains(&Metric::Ndcg) {
            s.ndcg = ndcg(model, ratings);
        }
        s
    }

    pub fn get(&self, m: Metric) -> Option<f64> {
        match m {
            Metric::Rmse => self.rmse,
            Metric::Mae => self.mae,
            Metric::Gkl => self.gkl,
            Metric::LogLoss => self.log_loss,
            Metric::Accuracy => self.accuracy,
            Metric::Auc => self.auc,
            Metric::Ndcg => self.ndcg,
        }
    }

    fn set(&mut self, m: Metric, value: Option<f64>) {
        let slot = match m {
            Metric::Rmse => &mut self.rmse,
            Metric::Mae => &mut self.mae,
            Metric::Gkl => &mut self.gkl,
            Metric::LogLoss => &mut self.log_loss,
            Metric::Accuracy => &mut self.accuracy,
            Metric::Auc => &mut self.auc,
            Metric::Ndcg => &mut self.ndcg,
        };
        *slot = value;
    }

    /// "RMSE 0.9091  MAE 0.7154", the metrics of `metrics` that are known, for people.
    pub fn describe(&self, metrics: &[Metric]) -> String {
        metrics.iter().filter_map(|&m| self.get(m).map(|v| format!("{} {v:.4}", m.label()))).collect::<Vec<_>>().join("  ")
    }
}

/// Test ratings whose user or item the model does not know, of `ratings`.
pub fn unknown(ratings: &[Rating]) -> usize {
    ratings.iter().filter(|r| r.user == UNKNOWN || r.item == UNKNOWN).count()
}

/// Root mean squared error between predictions and truth.
pub fn rmse(predicted: &[f32], truth: &[f32]) -> f64 {
    sums(predicted, truth).rmse()
}

/// Mean absolute error between predictions and truth.
pub fn mae(predicted: &[f32], truth: &[f32]) -> f64 {
    sums(predicted, truth).mae()
}

fn sums(predicted: &[f32], truth: &[f32]) -> LossSums {
    assert_eq!(predicted.len(), truth.len(), "predictions and truth differ in length");
    let mut s = LossSums::default();
    for (p, t) in predicted.iter().zip(truth) {
        s.add(crate::objective::Loss::Squared.terms(*p, *t));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_counts_pairs_ordered_right_and_ties_as_half() {
        // Positives at 0.9 and 0.4; negatives at 0.5 and 0.1: 3 of 4 pairs right.
        assert_eq!(auc(&[0.9, 0.5, 0.4, 0.1], &[true, false, true, false]), Some(0.75));
        assert_eq!(auc(&[0.3, 0.3], &[true, false]), Some(0.5));
        assert_eq!(auc(&[1.0, 2.0, 3.0], &[false, true, true]), Some(1.0));
        assert_eq!(auc(&[1.0, 2.0], &[true, true]), None);
    }
}
