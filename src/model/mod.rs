//! The factor model shared by every backend, its hyper-parameters, and (in [`mod@file`]) its file
//! format.

mod file;
mod fold_in;
mod seen;
mod top;

pub use file::{ModelFileInfo, LABELS_BESIDE, MODEL_FORMAT_VERSION};
pub use fold_in::{FoldInReg, FoldedUser};
pub use seen::SeenItems;
pub use top::{best_of, USERS_PER_BLOCK};

use crate::data::{IdMap, RatingSummary, UNKNOWN};
use crate::problem::Problem;
use crate::error::{Error, Result};
use crate::objective::{BinaryLabels, Family, Loss, OneClass};
use crate::rng::part_rng;
use crate::grid::GridSize;
use ndarray::Array2;
use rand_distr::{Distribution, Normal};
use rayon::prelude::*;

/// The training ratings of a row whose λ is `reg` under frequency-scaled regularisation.
pub const REG_REFERENCE_RATINGS: f32 = 100.0;

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
    /// L2 regularisation of the factors (λ): of a row with [`REG_REFERENCE_RATINGS`] training
    /// ratings when `frequency_reg`, of every row otherwise.
    pub reg: f32,
    /// Frequency-scaled regularisation: each user's and item's λ and λ_bias are weighted by
    /// `√(100 / n)` for its n training ratings (see [`Params::reg_weights`]).
    pub frequency_reg: bool,
    /// L2 regularisation of the biases, weighted as λ is.
    pub reg_bias: f32,
    /// Predict μ + b_u + b_i + p_u·q_i (true) or the lab's pure p_u·q_i (false).
    pub biases: bool,
    /// Standard deviation of the normal initial factors.
    pub init_std: f32,
    /// Seeds the initial factors and the visiting order.
    pub seed: u64,
    /// The block grid every backend trains by (see [`crate::schedule`]); `None` lets the
    /// backend choose: one block where it fits, two per thread and side on CPU threads.
    pub blocks: Option<GridSize>,
    /// Score the test set every this many epochs (and after the last).
    pub eval_every: usize,
    /// Models trained side by side from other seeds and averaged (see [`crate::ensemble`]).
    pub models: usize,
    /// Train in units of the ratings' spread (their standard deviation), as LIBMF scales its
    /// data, so the same learning rate, regularisation and initial spread suit stars,
    /// percentages or −10..10: see [`Params::rating_unit`].
    pub scale: bool,
    /// The SVD++-style term: each user row is pulled toward what the items it rated
    /// say of it rather than toward zero (see [`crate::svdpp`]).
    pub svdpp: bool,
    /// What training minimises ([`crate::objective`]).
    pub loss: Loss,
    /// Non-negative factors: each factor is projected to ≥ 0 after every update (LIBMF's
    /// `--nmf`), and after the SVD++ term's passes. The KL divergence implies it.
    pub nonneg: bool,
    /// L1 regularisation of the factors beside `reg`'s L2, weighted per row as `reg` is: each
    /// update shrinks every factor toward zero by lr·l1·w and stops it there (LIBMF's `-l1`).
    pub l1: f32,
    /// How events weigh under the one-class loss ([`Loss::Ials`]); unused by the others.
    pub one_class: OneClass,
}

impl Default for Params {
    /// Defaults chosen by RMSE on ratings held out of five data sets' training files (MovieLens
    /// 100k and latest-small, lecture evaluations, two questionnaires; BENCHMARKS.md). The
    /// learning rate starts high and decays fast (0.1, then 0.1 / (1 + 0.7t)): as good as a
    /// slow start on those five, and on large sparse data it leaves the small initial factors
    /// in a few epochs where a slow start takes tens.
    fn default() -> Self {
        Params {
            rank: 128,
            epochs: 40,
            learning_rate: 0.1,
            lr_decay: 0.7,
            reg: 0.09,
            frequency_reg: true,
            reg_bias: 0.1,
            biases: true,
            init_std: 0.01,
            seed: 42,
            blocks: None,
            eval_every: 1,
            models: 1,
            scale: true,
            svdpp: true,
            loss: Loss::Squared,
            nonneg: false,
            l1: 0.0,
            one_class: OneClass::default(),
        }
    }
}

impl Params {
    /// The defaults for `loss`: [`Params::default`]'s, but for the one-class losses, which
    /// train without the SVD++ term (and iALS without biases), the settings that ranked best by
    /// NDCG@20 on events held out of the training files of MovieLens 100k and latest-small, and
    /// for the other rating losses the learning rate they were measured with against LIBMF
    /// (BENCHMARKS.md).
    pub fn for_loss(loss: Loss) -> Params {
        match loss {
            Loss::Squared => Params::default(),
            Loss::Ials => Params { loss, rank: 128, epochs: 15, reg: 0.025, biases: false, svdpp: false, ..Params::default() },
            Loss::Bpr | Loss::BprColumns => Params { loss, rank: 128, epochs: 60, learning_rate: 0.1, lr_decay: 0.05, reg: 0.01, svdpp: false, ..Params::default() },
            Loss::Absolute | Loss::Kl | Loss::Logistic | Loss::Hinge | Loss::SquaredHinge => Params { loss, learning_rate: 0.02, lr_decay: 0.05, ..Params::default() },
        }
    }

    /// Rejects settings that cannot train, naming the setting (the CLI's flag, Python's
    /// argument).
    pub fn validate(&self) -> Result<()> {
        let bad = |flag, argument, value: &dyn std::fmt::Display, problem: String| Err(Error::setting(flag, argument, value, problem));
        if self.rank == 0 {
            return bad("--rank", "rank", &0, "must be at least 1".into());
        }
        if self.rank > 4096 {
            return bad("--rank", "rank", &self.rank, format!("{} is larger than the supported 4096", self.rank));
        }
        if self.epochs == 0 {
            return bad("--epochs", "epochs", &0, "must be at least 1".into());
        }
        for (flag, argument, v) in [
            ("--lr", "lr", self.learning_rate),
            ("--lr-decay", "lr_decay", self.lr_decay),
            ("--reg", "reg", self.reg),
            ("--reg-bias", "reg_bias", self.reg_bias),
            ("--init-std", "init_std", self.init_std),
            ("--l1", "l1", self.l1),
        ] {
            if !v.is_finite() || v < 0.0 {
                return bad(flag, argument, &v, format!("must be a finite non-negative number, got {v}"));
            }
        }
        if self.eval_every == 0 {
            return bad("--eval-every", "eval_every", &0, "must be at least 1".into());
        }
        if self.models == 0 {
            return bad("--models", "models", &0, "must be at least 1".into());
        }
        if self.rank.saturating_mul(self.models) > 4096 {
            return bad("--models", "models", &self.models, format!("{} at rank {} make a model of rank {}, larger than the supported 4096", self.models, self.rank, self.rank.saturating_mul(self.models)));
        }
        if self.learning_rate == 0.0 {
            return bad("--lr", "lr", &0, "must be positive".into());
        }
        if self.nonneg && self.loss.is_binary() && !self.biases {
            return bad(
                "--nonneg",
                "nonneg",
                &"True",
                format!(
                    "with the {} loss and no biases: every score p·q would be ≥ 0, so the model could never predict the negative label; keep the biases or leave out non-negative factors",
                    crate::choice::Choice::name(self.loss)
                ),
            );
        }
        self.refuse_unread()?;
        self.refuse_for_one_class()
    }

    /// Refuses what a one-class loss has no use for: the SVD++ term, non-negative factors, L1
    /// and (but for bpr) biases and ensembles; and checks the events' own settings.
    fn refuse_for_one_class(&self) -> Result<()> {
        if !self.loss.is_one_class() {
            return Ok(());
        }
        self.one_class.validate()?;
        let name = crate::choice::Choice::name(self.loss);
        let how = if self.loss.is_pairwise() { "compares sampled pairs of items" } else { "trains by alternating least squares" };
        let refuse = |flag, argument, value: &dyn std::fmt::Display, what: &str| Err(Error::setting(flag, argument, value, format!("cannot be used: the {name} loss {how}, which has no {what}")));
        if self.svdpp {
            return refuse("--no-svdpp", "svdpp", &"True", "SVD++-style term: leave it out (--no-svdpp, svdpp=False)");
        }
        if self.biases && !self.loss.is_pairwise() {
            return refuse("--no-biases", "biases", &"True", "biases: leave them out (--no-biases, biases=False)");
        }
        if self.nonneg {
            return refuse("--nonneg", "nonneg", &"True", "non-negative constraint");
        }
        if self.l1 > 0.0 {
            return refuse("--l1", "l1", &self.l1, "L1 penalty");
        }
        if self.models > 1 && !self.loss.is_pairwise() {
            return refuse("--models", "models", &self.models, "ensemble of models");
        }
        Ok(())
    }

    /// Refuses, by name, a setting moved from its default that the loss never reads (the
    /// weights of events under any loss but ials; the SGD step and the biases' λ under ials,
    /// which solves rows exactly and has no biases): a user who sets one expects it to act.
    fn refuse_unread(&self) -> Result<()> {
        use crate::choice::Choice;
        let name = self.loss.name();
        if self.loss != Loss::Ials {
            let (given, default) = (&self.one_class, OneClass::default());
            let moved = [
                ("--unobserved-weight", "unobserved_weight", given.unobserved_weight != default.unobserved_weight, given.unobserved_weight.to_string()),
                ("--confidence", "confidence", given.confidence != default.confidence, given.confidence.name().to_string()),
                ("--alpha", "alpha", given.alpha != default.alpha, given.alpha.to_string()),
                ("--epsilon", "epsilon", given.epsilon != default.epsilon, given.epsilon.to_string()),
                ("--cg-steps", "cg_steps", given.cg_steps != default.cg_steps, given.cg_steps.to_string()),
            ];
            if let Some((flag, argument, _, value)) = moved.into_iter().find(|m| m.2) {
                return Err(Error::setting(flag, argument, value, format!("is a setting of the ials loss alone, and this run trains the {name} loss")));
            }
            return Ok(());
        }
        let own = Params::for_loss(Loss::Ials);
        let moved = [
            ("--lr", "lr", self.learning_rate, own.learning_rate, "is SGD's step, and the ials loss solves each row by least squares"),
            ("--lr-decay", "lr_decay", self.lr_decay, own.lr_decay, "is SGD's step, and the ials loss solves each row by least squares"),
            ("--reg-bias", "reg_bias", self.reg_bias, own.reg_bias, "regularises the biases, and the ials loss has none"),
        ];
        match moved.into_iter().find(|m| m.2 != m.3) {
            Some((flag, argument, value, _, why)) => Err(Error::setting(flag, argument, value, why)),
            None => Ok(()),
        }
    }

    /// Whether factors are kept non-negative: asked for, or needed by the loss.
    pub fn nonneg(&self) -> bool {
        self.nonneg || self.loss.needs_nonneg()
    }

    /// The rating unit training works in: with `scale`, the training ratings' standard
    /// deviation (with or without biases: the pure model's factors then meet the ratings at the
    /// size they meet 1-5 stars unscaled), otherwise 1.
    ///
    /// Training on ratings divided by σ and multiplying the result back (factors by √σ, biases
    /// by σ) is, step for step, the same as training on the ratings as they are with factors
    /// drawn √σ wider and the error divided by σ in the factor steps only (the bias steps do
    /// not change). So the model stays in the ratings' own units and no rating is rewritten,
    /// on any backend or in any cache.
    pub fn rating_unit(&self, ratings: &RatingSummary) -> f32 {
        // Binary labels are ±1 whatever the file said: their own unit.
        if !self.scale || !matches!(self.loss.family(), Family::Real) {
            return 1.0;
        }
        ratings.spread()
    }

    /// Each row's regularisation weight from its number of training ratings: its factors'
    /// λ and its bias's λ_bias are multiplied by it. SGD applies a row's λ at each of its n
    /// ratings, n·λ in an epoch, while the evidence against the prior grows as n too: a dense
    /// row (a questionnaire item everyone answers) then ends over-regularised and a sparse one
    /// (a student who rated three lecturers) under-regularised. A weight of √(100/n), 1 at 100
    /// ratings (about MovieLens' ratings per user), chose best by validation RMSE on all five
    /// data sets measured (BENCHMARKS.md); 1/n and a constant both did worse.
    pub fn reg_weights(&self, counts: &[u32]) -> Vec<f32> {
        counts.iter().map(|&n| if self.frequency_reg { (REG_REFERENCE_RATINGS / n.max(1) as f32).sqrt() } else { 1.0 }).collect()
    }

    /// Whether the test set is scored after epoch `epoch` (0-based): every `eval_every` epochs
    /// and after the last.
    pub fn scores_test_after(&self, epoch: usize) -> bool {
        (epoch + 1).is_multiple_of(self.eval_every.max(1)) || epoch + 1 == self.epochs
    }

    /// The learning rate of epoch `epoch` (0-based).
    pub fn learning_rate_at(&self, epoch: usize) -> f32 {
        self.learning_rate / (1.0 + self.lr_decay * epoch as f32)
    }
}

/// A trained (or initial) factorisation: score(u, i) = μ + b_u + b_i + p_u·q_i, and what the
/// score means: its loss's link (a rating, a probability, a margin).
#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    /// What the model was trained to minimise, which says what its scores mean.
    pub loss: Loss,
    /// With a binary loss: the file's two values, for the classes `predict` prints.
    pub labels: Option<BinaryLabels>,
    /// The constraints it was trained under (non-negative factors, L1), recorded in its file.
    pub nonneg: bool,
    pub l1: f32,
    pub mean: f32,
    pub biases: bool,
    pub user_bias: Vec<f32>,
    pub item_bias: Vec<f32>,
    /// P, users × rank.
    pub user_factors: Array2<f32>,
    /// Q, items × rank.
    pub item_factors: Array2<f32>,
    /// Real-valued predictions are clipped to the training ratings' range.
    pub rating_range: (f32, f32),
    pub users: IdMap,
    pub items: IdMap,
    /// Each user's training items, so recommendations can leave them out. Recorded when a
    /// model is saved after training (see [`Model::record_seen`]); `None` in files written
    /// before gpumf kept it.
    pub seen: Option<SeenItems>,
    /// What a one-class model was trained with, which folding a user in solves by; `None`
    /// for the other losses.
    pub one_class: Option<OneClassFit>,
}

/// The one-class loss's settings a model keeps: its weights and regularisation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OneClassFit {
    pub settings: OneClass,
    pub reg: f32,
    pub frequency_reg: bool,
}

impl OneClassFit {
    /// λ of a row whose pairs weigh `mass` in all (see [`crate::cpu::als`]).
    pub fn row_reg(&self, mass: f32) -> f32 {
        if self.frequency_reg { self.reg * mass } else { self.reg }
    }
}

impl Model {
    /// The seeded starting point shared by all backends: N(0, init_std) factors (in the rating
    /// unit, see [`Params::rating_unit`]; their absolute values with non-negative factors),
    /// zero biases, and the loss's offset as μ. `labels` are the binary labels of the data,
    /// with a binary loss ([`Problem::labels`]).
    pub fn init(problem: &Problem, params: &Params, labels: Option<BinaryLabels>) -> Model {
        Model::init_for(problem, params, &problem.train_summary(), labels)
    }

    /// [`Model::init`] for `problem`'s users and items with the offset, range and unit of
    /// `ratings`: a cluster process holds only its own stripes, but starts from the whole set's.
    pub fn init_for(problem: &Problem, params: &Params, ratings: &RatingSummary, labels: Option<BinaryLabels>) -> Model {
        let std = params.init_std * params.rating_unit(ratings).sqrt();
        let normal = Normal::new(0.0f32, std).expect("init_std validated");
        let nonneg = params.nonneg();
        let (m, n, k) = (problem.num_users(), problem.num_items(), params.rank);
        // In parallel, blocks of rows each from their own stream (Netflix at rank 128 is 64M draws).
        let random = |rows: usize, stream: u64| {
            let mut a = Array2::<f32>::zeros((rows, k));
            let values = a.as_slice_mut().expect("row-major");
            values.par_chunks_mut(INIT_BLOCK_ROWS * k.max(1)).enumerate().for_each(|(b, block)| {
                let mut rng = part_rng(params.seed, stream, b);
                block.iter_mut().for_each(|x| *x = normal.sample(&mut rng));
                if nonneg {
                    block.iter_mut().for_each(|x| *x = x.abs());
                }
            });
            a
        };
        let (user_factors, item_factors) = (random(m, 1), random(n, 2));
        // The labels' mean (±1) where they are binary.
        let mean = match labels {
            Some(l) => (2.0 * (ratings.mean() - l.negative) / (l.positive - l.negative) - 1.0).clamp(-1.0, 1.0),
            None => ratings.mean(),
        };
        Model {
            loss: params.loss,
            labels,
            nonneg,
            l1: params.l1,
            mean: if params.biases { params.loss.offset(mean) } else { 0.0 },
            biases: params.biases,
            user_bias: vec![0.0; m],
            item_bias: vec![0.0; n],
            user_factors,
            item_factors,
            rating_range: ratings.range().unwrap_or((f32::NEG_INFINITY, f32::INFINITY)),
            users: problem.users.clone(),
            items: problem.items.clone(),
            seen: None,
            one_class: (params.loss == Loss::Ials).then_some(OneClassFit { settings: params.one_class, reg: params.reg, frequency_reg: params.frequency_reg }),
        }
    }

    pub fn rank(&self) -> usize {
        self.user_factors.ncols()
    }

    /// One model whose predictions are the mean of `models`' (unclipped): their factors side by
    /// side, each scaled by 1/√S, so p·q sums to the mean of the S products; their biases
    /// averaged. The models share the problem, so their ids, mean and range agree.
    pub fn averaged(mut models: Vec<Model>) -> Model {
        let s = models.len();
        assert!(s > 0, "at least one model");
        if s == 1 {
            return models.pop().expect("one model");
        }
        let scale = 1.0 / (s as f32).sqrt();
        // Row by row, so the result is row-major as every backend and the file expect.
        let side = |factors: &dyn Fn(&Model) -> &Array2<f32>| {
            let (rows, k) = factors(&models[0]).dim();
            let mut out = Array2::<f32>::zeros((rows, k * s));
            for (j, m) in models.iter().enumerate() {
                out.slice_mut(ndarray::s![.., j * k..(j + 1) * k]).assign(&(factors(m) * scale));
            }
            out
        };
        let mean_bias = |bias: &dyn Fn(&Model) -> &Vec<f32>| -> Vec<f32> {
            (0..bias(&models[0]).len()).map(|i| models.iter().map(|m| bias(m)[i]).sum::<f32>() / s as f32).collect()
        };
        let (user_factors, item_factors) = (side(&|m| &m.user_factors), side(&|m| &m.item_factors));
        let (user_bias, item_bias) = (mean_bias(&|m| &m.user_bias), mean_bias(&|m| &m.item_bias));
        let first = models.swap_remove(0);
        Model { user_factors, item_factors, user_bias, item_bias, seen: None, ..first }
    }

    /// The unclipped score; unknown users or items contribute nothing beyond what is known.
    #[inline]
    pub fn score(&self, user: u32, item: u32) -> f32 {
        let user = (user != UNKNOWN).then(|| (self.user_row(user), self.user_bias[user as usize]));
        let item = (item != UNKNOWN).then(|| (self.item_row(item), self.item_bias[item as usize]));
        score_rows(self.mean, user, item)
    }

    /// The prediction: the score through the loss's link (a rating clipped to the training
    /// range, a probability, or a margin).
    #[inline]
    pub fn predict(&self, user: u32, item: u32) -> f32 {
        self.loss.link(self.score(user, item), self.rating_range)
    }

    /// The label of a rating's value as the loss takes it: the value, or ±1 for binary labels.
    #[inline]
    pub fn label(&self, value: f32) -> f32 {
        self.labels.map_or(value, |l| l.label(value))
    }

    /// The class a score predicts, in the data's own values, with a binary loss.
    pub fn class(&self, user: u32, item: u32) -> Option<f32> {
        self.labels.map(|l| l.class(self.score(user, item)))
    }

    /// Records which items each user rated in `problem`'s training set, for
    /// [`Model::recommend`] to leave out; saved with the model.
    /// Training ratings on disk are not gathered again: the model then records none.
    pub fn record_seen(&mut self, problem: &Problem) {
        if problem.train_on_disk.is_some() {
            self.seen = None;
            return;
        }
        self.seen = Some(SeenItems::from_ratings(&problem.train, self.users.len(), self.items.len()));
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

/// The one scoring rule: the mean, the bias of each known side, and p·q when both are known.
/// Takes rows rather than a model, so a DSGD worker holding only some rows scores with it too.
/// p·q is taken on the CPU's widest vector path, with the portable bits: the portable dot kept
/// its sums in memory, and scoring 100,000 test ratings at rank 128 took twice as long.
#[inline]
pub(crate) fn score_rows(mean: f32, user: Option<(&[f32], f32)>, item: Option<(&[f32], f32)>) -> f32 {
    let mut s = mean;
    if let Some((_, bias)) = user {
        s += bias;
    }
    if let Some((_, bias)) = item {
        s += bias;
    }
    if let (Some((p, _)), Some((q, _))) = (user, item) {
        s += crate::vector::dot_widest(p, q);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_setting_the_loss_never_reads_is_refused_by_name() {
        use crate::choice::Choice;
        use crate::objective::Confidence;
        for &(loss, _, _) in Loss::ALL {
            Params::for_loss(loss).validate().unwrap();
        }
        let events = OneClass::default();
        let ials = Params::for_loss(Loss::Ials);
        let cases = [
            ("--alpha", Params { one_class: OneClass { alpha: 3.0, ..events }, ..Params::default() }),
            ("--unobserved-weight", Params { one_class: OneClass { unobserved_weight: 0.5, ..events }, ..Params::for_loss(Loss::Logistic) }),
            ("--confidence", Params { one_class: OneClass { confidence: Confidence::Log, ..events }, ..Params::for_loss(Loss::Bpr) }),
            ("--epsilon", Params { one_class: OneClass { epsilon: 0.5, ..events }, ..Params::for_loss(Loss::Kl) }),
            ("--cg-steps", Params { one_class: OneClass { cg_steps: 5, ..events }, ..Params::default() }),
            ("--lr", Params { learning_rate: 0.05, ..ials.clone() }),
            ("--lr-decay", Params { lr_decay: 0.3, ..ials.clone() }),
            ("--reg-bias", Params { reg_bias: 0.3, ..ials.clone() }),
        ];
        for (flag, params) in cases {
            let e = params.validate().unwrap_err().to_string();
            assert!(e.starts_with(&format!("invalid setting: {flag} ")), "{flag}: {e}");
        }
        // Where the loss reads them, the same settings train.
        Params { one_class: OneClass { alpha: 3.0, confidence: Confidence::Log, epsilon: 0.5, cg_steps: 5, unobserved_weight: 0.5 }, ..ials }.validate().unwrap();
        Params { learning_rate: 0.05, lr_decay: 0.3, reg_bias: 0.3, ..Params::for_loss(Loss::Bpr) }.validate().unwrap();
    }

    #[test]
    fn each_rows_regularisation_is_weighted_by_its_count() {
        let weights = Params::default().reg_weights(&[100, 25, 400, 0]);
        let expected = [1.0, 2.0, 0.5, 10.0];
        for (got, want) in weights.iter().zip(expected) {
            assert!((got - want).abs() < 1e-6, "{weights:?}");
        }
        assert_eq!(Params { frequency_reg: false, ..Params::default() }.reg_weights(&[100, 25, 0]), vec![1.0; 3]);
    }

    #[test]
    fn an_averaged_model_predicts_the_mean_of_its_members() {
        let ratings: Vec<crate::data::Rating> = (0..40).map(|i| crate::data::Rating { user: i % 5, item: i % 7, value: 1.0 + (i % 5) as f32 }).collect();
        let problem = Problem::new(crate::data::RatingSet { entries: ratings, users: IdMap::from_externals((0..5).collect()), items: IdMap::from_externals((0..7).collect()) }, None);
        let members: Vec<Model> = (0..3)
            .map(|s| {
                let mut m = Model::init(&problem, &Params { rank: 4, seed: s, ..Params::default() }, None);
                m.user_bias.iter_mut().enumerate().for_each(|(i, b)| *b = (i as f32 + s as f32) * 0.1);
                m
            })
            .collect();
        let averaged = Model::averaged(members.clone());
        assert_eq!(averaged.rank(), 12);
        assert!(averaged.user_factors.is_standard_layout());
        for (u, i) in [(0, 0), (3, 6), (4, 2)] {
            let mean = members.iter().map(|m| m.score(u, i)).sum::<f32>() / 3.0;
            assert!((averaged.score(u, i) - mean).abs() < 1e-5, "({u}, {i}): {} against {mean}", averaged.score(u, i));
        }
    }

    #[test]
    fn the_rating_unit_is_the_spread_unless_told_otherwise() {
        // 1 and 5: mean 3, standard deviation 2.
        let ratings: Vec<crate::data::Rating> = [1.0f32, 5.0].iter().map(|&value| crate::data::Rating { user: 0, item: 0, value }).collect();
        let summary = RatingSummary::of(&ratings);
        assert_eq!(Params::default().rating_unit(&summary), 2.0);
        assert_eq!(Params { biases: false, ..Params::default() }.rating_unit(&summary), 2.0);
        assert_eq!(Params { scale: false, ..Params::default() }.rating_unit(&summary), 1.0);
    }
}
