//! What training minimises: the loss of one rating's score against its label, written once.
//! Every trainer takes it from here: the CPU's update rule ([`crate::update`]) calls
//! [`Loss::slopes`], and the GPU kernel composes [`Loss::wgsl`] into shaders/sgd.wgsl, so no
//! kernel is copied per loss. A loss gives its value and gradient with respect to the score,
//! its link (how a score becomes what `predict` prints), the sums an epoch reports, and the
//! metrics that fit it.
//!
//! The score is s = μ + b_u + b_i + p_u·q_i. Real-valued losses compare it with a rating;
//! binary losses with a label of −1 or +1 (see [`BinaryLabels`] for how a two-valued column
//! becomes one). The SGD step moves along the negative gradient, in the ratings' unit
//! ([`crate::model::Params::rating_unit`]): for the squared error ½(r − s)² that is e = r − s,
//! as before losses were a parameter.

use crate::error::{Error, Result};
use crate::fastmath;

/// The losses gpumf trains, LIBMF's real-valued and binary families.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Loss {
    /// ½(r − s)²: the mean; reports RMSE (LIBMF `-f 0`).
    #[default]
    Squared,
    /// |r − s|: the median, robust to outliers; reports MAE (LIBMF `-f 1`).
    Absolute,
    /// Generalised KL divergence r·log(r/s) − r + s, for non-negative ratings such as counts;
    /// trains non-negative factors (LIBMF `-f 2 --nmf`).
    Kl,
    /// log(1 + e^(−y·s)) for labels y = ±1: `predict` prints the probability of the positive
    /// label (LIBMF `-f 5`).
    Logistic,
    /// max(0, 1 − y·s): `predict` prints the margin and the class (LIBMF `-f 7`).
    Hinge,
    /// ½·max(0, 1 − y·s)²: as the hinge, smoother (LIBMF `-f 6`).
    SquaredHinge,
    /// One-class data (events: plays, clicks, purchases): the weighted squared loss over every
    /// user–item pair of implicit-feedback ALS (Hu, Koren & Volinsky 2008; LIBMF `-f 12`),
    /// ½·c·(1 − s)² for an event of confidence c and ½·w₀·s² for every pair without one.
    /// Trained by alternating least squares ([`crate::cpu::als`]), the pairs without events
    /// summed through the k×k Gramian ([`OneClass`]); reports NDCG@20.
    Ials,
    /// One-class data, pairwise: Bayesian personalised ranking (Rendle et al. 2009; LIBMF's
    /// row-oriented `-f 10`), log(1 + e^(−(s_ui − s_uj))) for an event (u, i) and an item j
    /// the user has no event with, sampled for each update within the block's items
    /// ([`crate::update`]). The score passed is the difference s_ui − s_uj; reports NDCG@20.
    Bpr,
    /// BPR by columns (LIBMF's column-oriented `-f 11`): each event (u, i) against a user v
    /// of the block without an event on i, log(1 + e^(−(s_ui − s_vi))), with user biases.
    BprColumns,
}

impl crate::choice::Choice for Loss {
    const WHAT: &'static str = "loss";
    const ALL: &'static [(Loss, &'static str, &'static str)] = &[
        (Loss::Squared, "squared", "Squared error on real values: the mean; reports RMSE (the default)"),
        (Loss::Absolute, "absolute", "Absolute error on real values: the median; reports MAE"),
        (Loss::Kl, "kl", "Generalised KL divergence on non-negative values (counts); non-negative factors"),
        (Loss::Logistic, "logistic", "Binary labels: logistic loss; predict prints a probability"),
        (Loss::Hinge, "hinge", "Binary labels: hinge loss; predict prints the margin and the class"),
        (Loss::SquaredHinge, "squared-hinge", "Binary labels: squared hinge loss; predict prints the margin and the class"),
        (Loss::Ials, "ials", "One-class events (plays, clicks): weighted squared loss over every pair, trained by ALS; reports NDCG@20"),
        (Loss::Bpr, "bpr", "One-class events: pairwise ranking (BPR), each event against a sampled item without one; reports NDCG@20"),
        (Loss::BprColumns, "bpr-columns", "One-class events: BPR by columns, each event against a sampled user without one on its item; reports NDCG@20"),
    ];
}

/// Whether a loss fits real values or two-valued labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    Real,
    Binary,
    /// Events, each a positive with a confidence; every other pair is a weak negative.
    OneClass,
}

/// The scores of the generalised KL divergence are taken at least this many rating units above
/// zero: its gradient 1 − r/s grows without bound as s nears zero, which biases can reach.
pub const KL_FLOOR: f32 = 0.05;

/// What an epoch or a test set adds up, rating by rating: the loss's value, the squared and
/// absolute error of the score, and the ratings whose sign the score gets right (binary).
/// f64, so 100M terms add up without drift.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct LossSums {
    pub count: u64,
    pub loss: f64,
    pub squared: f64,
    pub absolute: f64,
    pub correct: f64,
}

impl LossSums {
    /// Adds the terms of one rating that `loss`'s metrics read, and its value where they do
    /// not give it: for a loop that adds each rating's terms as it goes, where each costs an
    /// f64 addition a rating. The loop counts its ratings and takes the value from the error
    /// sums once, at its end ([`finish_read`](Self::finish_read)).
    #[inline(always)]
    pub fn add_read(&mut self, loss: Loss, terms: [f32; 4]) {
        if !Self::value_from_errors(loss) {
            self.loss += terms[0] as f64;
        }
        match loss.family() {
            Family::Real => {
                self.squared += terms[1] as f64;
                self.absolute += terms[2] as f64;
            }
            Family::Binary => self.correct += terms[3] as f64,
            Family::OneClass => {}
        }
    }

    /// Completes [`add_read`](Self::add_read)'s sums (and [`SumLanes`]', merged in) over
    /// `count` ratings: the squared error's value ½e² is half the squared sum (halving is
    /// exact, so the same bits as adding each rating's ½e²), the absolute error's is the
    /// absolute sum.
    pub fn finish_read(&mut self, loss: Loss, count: usize) {
        self.count += count as u64;
        match loss {
            Loss::Squared => self.loss += 0.5 * self.squared,
            Loss::Absolute => self.loss += self.absolute,
            _ => debug_assert!(!Self::value_from_errors(loss)),
        }
    }

    /// Whether [`finish_read`](Self::finish_read) takes `loss`'s value from the error sums.
    #[inline(always)]
    const fn value_from_errors(loss: Loss) -> bool {
        matches!(loss, Loss::Squared | Loss::Absolute)
    }

    /// Adds one rating's terms, as [`Loss::terms`] gives them.
    #[inline(always)]
    pub fn add(&mut self, terms: [f32; 4]) {
        self.count += 1;
        self.loss += terms[0] as f64;
        self.squared += terms[1] as f64;
        self.absolute += terms[2] as f64;
        self.correct += terms[3] as f64;
    }

    pub fn merge(self, o: LossSums) -> LossSums {
        LossSums { count: self.count + o.count, loss: self.loss + o.loss, squared: self.squared + o.squared, absolute: self.absolute + o.absolute, correct: self.correct + o.correct }
    }

    /// Root mean squared error (NaN for an empty set).
    pub fn rmse(&self) -> f64 {
        (self.squared / self.count as f64).sqrt()
    }

    pub fn mae(&self) -> f64 {
        self.absolute / self.count as f64
    }

    /// The loss's mean value.
    pub fn mean_loss(&self) -> f64 {
        self.loss / self.count as f64
    }

    pub fn accuracy(&self) -> f64 {
        self.correct / self.count as f64
    }
}

/// The loss at one score, as the update takes it ([`Loss::at`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AtScore {
    /// (factor slope, bias slope): the negative gradient in the ratings' unit.
    pub slopes: (f32, f32),
    /// The rating's terms of [`LossSums`], the loss's value but for its log part.
    pub terms: [f32; 4],
    /// The value's log part, as x of ln(1 + x) (0 where there is none: the logistic loss's
    /// update takes its whole value from a table). A trainer sums it with [`LogSum`] rather
    /// than taking a log for each rating, which would cost a pairwise update a fifth of its
    /// time.
    pub log1p: f32,
}

/// How many lanes [`SumLanes`] adds in.
const SUM_LANES: usize = 8;

/// [`LossSums`] kept in eight lanes, a rating's terms going to the lane of its place
/// ([`add`](Self::add)): the f64 additions of eight ratings are then independent, so a pass
/// over many ratings' terms vectorises. The update loop leaves the sums of most losses to such
/// a pass over the scores it records ([`crate::update`], [`Loss::sums_as_it_goes`]): added
/// inside it one rating at a time, the KL divergence's value and sums took a fifth of its time
/// at rank 32 (BENCHMARKS.md).
#[derive(Clone, Copy, Debug, Default)]
pub struct SumLanes {
    loss: [f64; SUM_LANES],
    squared: [f64; SUM_LANES],
    absolute: [f64; SUM_LANES],
    correct: [f64; SUM_LANES],
}

impl SumLanes {
    /// Adds the terms of many ratings, `terms[t][j]` the `t`th term ([`AtScore::terms`]) of
    /// rating `j`, as [`LossSums::add_read`] adds one rating's. Rating `j` goes to lane `j` %
    /// 8.
    #[inline(always)]
    pub fn add(&mut self, loss: Loss, terms: [&[f32]; 4]) {
        if !LossSums::value_from_errors(loss) {
            add_in_lanes(&mut self.loss, terms[0]);
        }
        match loss.family() {
            Family::Real => {
                add_in_lanes(&mut self.squared, terms[1]);
                add_in_lanes(&mut self.absolute, terms[2]);
            }
            Family::Binary => add_in_lanes(&mut self.correct, terms[3]),
            Family::OneClass => {}
        }
    }

    /// The lanes added up, with no count: [`LossSums::finish_read`] completes them.
    pub fn total(&self) -> LossSums {
        let add = |lanes: &[f64; SUM_LANES]| lanes.iter().sum::<f64>();
        LossSums { count: 0, loss: add(&self.loss), squared: add(&self.squared), absolute: add(&self.absolute), correct: add(&self.correct) }
    }
}

/// Adds term `j` to `sums[j % SUM_LANES]`. (A function, not a closure: the update loop that
/// inlines it is compiled for AVX-512 or AVX2, and a closure need not inline and keeps the
/// baseline's features.)
#[inline(always)]
fn add_in_lanes(sums: &mut [f64; SUM_LANES], terms: &[f32]) {
    let mut chunks = terms.chunks_exact(SUM_LANES);
    for chunk in chunks.by_ref() {
        for lane in 0..SUM_LANES {
            sums[lane] += chunk[lane] as f64;
        }
    }
    for (sum, &t) in sums.iter_mut().zip(chunks.remainder()) {
        *sum += t as f64;
    }
}

/// Σ ln(1 + x) over many x ≥ 0 as the log of one product: x ≤ 1 (the logistic loss's
/// e^(−|m|)), so 512 factors stay below 2⁵¹², and each fold takes one log for them.
#[derive(Clone, Copy, Debug)]
pub struct LogSum {
    product: f64,
    pending: u32,
    sum: f64,
}

impl Default for LogSum {
    fn default() -> Self {
        LogSum { product: 1.0, pending: 0, sum: 0.0 }
    }
}

impl LogSum {
    #[inline(always)]
    pub fn add(&mut self, x: f32) {
        debug_assert!((0.0..=1.0).contains(&x), "{x}");
        self.product *= 1.0 + x as f64;
        self.pending += 1;
        if self.pending == 512 {
            self.fold();
        }
    }

    fn fold(&mut self) {
        self.sum += self.product.ln();
        self.product = 1.0;
        self.pending = 0;
    }

    /// The sum of ln(1 + x) so far.
    pub fn total(mut self) -> f64 {
        self.fold();
        self.sum
    }
}

/// How the score steps are scaled: training works in units of the ratings' spread (see
/// [`crate::model::Params::rating_unit`]); binary labels are their own unit.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Unit {
    pub unit: f32,
    /// 1 / `unit`.
    pub inverse: f32,
}

impl Unit {
    pub fn of(unit: f32) -> Unit {
        Unit { unit, inverse: 1.0 / unit }
    }
}

impl Loss {
    pub fn family(self) -> Family {
        match self {
            Loss::Squared | Loss::Absolute | Loss::Kl => Family::Real,
            Loss::Logistic | Loss::Hinge | Loss::SquaredHinge => Family::Binary,
            Loss::Ials | Loss::Bpr | Loss::BprColumns => Family::OneClass,
        }
    }

    /// Whether the SGD trainers train it: every loss but the weighted loss over every pair,
    /// whose pairs without events no pass over the ratings visits (it trains by ALS).
    pub fn trains_by_sgd(self) -> bool {
        self != Loss::Ials
    }

    /// Whether an update compares an event with a sampled non-event (BPR) rather than taking
    /// one rating's score.
    pub fn is_pairwise(self) -> bool {
        matches!(self, Loss::Bpr | Loss::BprColumns)
    }

    /// Whether the block loop adds a rating's terms of [`LossSums`] as it goes
    /// ([`LossSums::add_read`]): where they share the slope's work (the squared and absolute
    /// error's error, the logistic loss's table entry). For the others it records each score
    /// and takes their terms in a pass after many ratings, which vectorises ([`SumLanes`]).
    /// Measured at rank 32, one thread (BENCHMARKS.md): the pass made the KL divergence 1.10x
    /// as fast and the hinge 1.03x, the logistic loss 0.98x.
    pub const fn sums_as_it_goes(self) -> bool {
        matches!(self, Loss::Squared | Loss::Absolute | Loss::Logistic)
    }

    pub fn is_one_class(self) -> bool {
        self.family() == Family::OneClass
    }

    pub fn is_binary(self) -> bool {
        self.family() == Family::Binary
    }

    /// Whether the loss needs non-negative factors (and ratings): the KL divergence's scores
    /// must stay positive.
    pub fn needs_nonneg(self) -> bool {
        self == Loss::Kl
    }

    /// The score the KL divergence is taken at: at least [`KL_FLOOR`] units.
    #[inline(always)]
    fn kl_score(score: f32, unit: Unit) -> f32 {
        score.max(KL_FLOOR * unit.unit)
    }

    /// The loss of `score` against `label` (a rating, or ±1).
    pub fn value(self, score: f32, label: f32) -> f32 {
        self.terms(score, label)[0]
    }

    /// ∂[`value`](Self::value)/∂score (a subgradient where the loss has a kink).
    pub fn gradient(self, score: f32, label: f32) -> f32 {
        let margin = label * score;
        match self {
            Loss::Squared => score - label,
            Loss::Absolute => -(label - score).signum() * ((label - score) != 0.0) as u8 as f32,
            Loss::Kl => 1.0 - label / score,
            Loss::Logistic => -label / (1.0 + margin.exp()),
            Loss::Hinge => if margin < 1.0 { -label } else { 0.0 },
            Loss::SquaredHinge => -label * (1.0 - margin).max(0.0),
            Loss::Ials => -label * (1.0 - score),
            Loss::Bpr | Loss::BprColumns => Loss::Logistic.gradient(score, 1.0),
        }
    }

    /// The SGD step's slopes for one rating: (factor slope, bias slope), each the negative
    /// gradient in the ratings' unit. The factor step takes the loss as if the ratings were
    /// divided by the unit, the bias step multiplies that by the unit back (biases stay in
    /// rating units); for the squared error that is (e / unit, e), e = r − s. The KL
    /// divergence's score is floored ([`KL_FLOOR`]). shaders/sgd.wgsl's `loss_slopes` (from
    /// [`wgsl`](Self::wgsl)) is the same arithmetic.
    #[inline(always)]
    pub fn slopes(self, score: f32, label: f32, unit: Unit) -> (f32, f32) {
        self.at(score, label, unit).slopes
    }

    /// One rating's terms of [`LossSums`]: the loss, the squared and absolute error of the
    /// score, and 1 where a binary score has the label's sign.
    #[inline(always)]
    pub fn terms(self, score: f32, label: f32) -> [f32; 4] {
        let at = self.at_with(score, label, Unit::of(1.0), true);
        let mut terms = at.terms;
        if at.log1p != 0.0 {
            terms[0] += at.log1p.ln_1p();
        }
        terms
    }

    /// [`slopes`](Self::slopes) and [`terms`](Self::terms) at once, sharing their costly parts
    /// (the logistic loss's table, the KL divergence's division), as the update takes them for
    /// every rating. The update uses only the slopes; the block loop's pass over its scores
    /// the terms, with the logistic loss's value from the same table.
    #[inline(always)]
    pub fn at(self, score: f32, label: f32, unit: Unit) -> AtScore {
        self.at_with(score, label, unit, false)
    }

    /// [`at`](Self::at), where `exact` takes the logistic loss from the exp (as evaluation
    /// does) rather than from [`fastmath::logistic_tail`]'s table, which the update takes:
    /// the two differ by less than 10⁻⁷.
    #[inline(always)]
    fn at_with(self, score: f32, label: f32, unit: Unit, exact: bool) -> AtScore {
        let e = label - score;
        let margin = label * score;
        // (the negative gradient in the loss's own unit, whether it scales with the rating
        // unit, the loss's value but for its log part)
        let mut log1p = 0.0;
        let (g, scaled, value) = match self {
            Loss::Squared => (e, true, 0.5 * e * e),
            Loss::Absolute => (if e > 0.0 { 1.0 } else if e < 0.0 { -1.0 } else { 0.0 }, false, e.abs()),
            Loss::Kl => {
                let floored = label / Self::kl_score(score, unit);
                // The value at the score itself (what evaluation reports), the gradient at the
                // floor. Both sides of each choice are computed, so a pass over many ratings'
                // values vectorises (the update takes only the slope).
                let at = score.max(f32::MIN_POSITIVE);
                let log_part = label * fastmath::ln(label / at);
                let value = if label > 0.0 { log_part - label + at } else { at };
                (floored - 1.0, false, value)
            }
            // The slope y·σ(−m) and the value ln(1 + e^(−m)) = max(−m, 0) + ln(1 + e^(−|m|)),
            // from σ(−|m|) and ln(1 + e^(−|m|)), which stay finite for any m.
            Loss::Logistic if exact => {
                // t = e^(−|m|) ≤ 1; the log part is left as t ([`AtScore::log1p`]).
                let t = fastmath::exp(-margin.abs());
                let sigmoid = if margin >= 0.0 { t } else { 1.0 } / (1.0 + t);
                log1p = t;
                (label * sigmoid, false, (-margin).max(0.0))
            }
            Loss::Logistic => {
                let (tail, softplus) = fastmath::logistic_tail(margin.abs());
                let sigmoid = if margin >= 0.0 { tail } else { 1.0 - tail };
                (label * sigmoid, false, (-margin).max(0.0) + softplus)
            }
            Loss::Hinge => (if margin < 1.0 { label } else { 0.0 }, false, (1.0 - margin).max(0.0)),
            Loss::SquaredHinge => {
                let gap = (1.0 - margin).max(0.0);
                (label * gap, false, 0.5 * gap * gap)
            }
            // The logistic loss of the difference s_ui − s_uj, which should be positive.
            // (With the exp: its figures in README.md were measured so.)
            Loss::Bpr | Loss::BprColumns => return Loss::Logistic.at_with(score, 1.0, unit, true),
            // An event's term: its label is the confidence c, its target 1.
            Loss::Ials => {
                let gap = 1.0 - score;
                let slope = label * gap;
                return AtScore { slopes: (slope, slope), terms: [0.5 * slope * gap, gap * gap, gap.abs(), 0.0], log1p: 0.0 };
            }
        };
        // Squared error steps factors by e / unit and biases by e; the others step factors by
        // g and biases by g·unit (for binary labels the unit is 1).
        let slopes = if scaled { (g * unit.inverse, g) } else { (g, g * unit.unit) };
        let correct = match self.family() {
            Family::Binary => ((label > 0.0) == (score > 0.0)) as u8 as f32,
            Family::Real | Family::OneClass => 0.0,
        };
        AtScore { slopes, terms: [value, e * e, e.abs(), correct], log1p }
    }

    /// The score a held-out rating is judged by: a real value clipped to the training range
    /// (so is its prediction), a binary score as it is.
    #[inline]
    pub fn judged(self, score: f32, range: (f32, f32)) -> f32 {
        match self.family() {
            Family::Real => clip(score, range),
            Family::Binary | Family::OneClass => score,
        }
    }

    /// What `predict` prints for a score: a rating clipped to the training range, the
    /// probability of the positive label (logistic), or the margin (hinge; the class is its
    /// sign, see [`BinaryLabels::class`]).
    #[inline]
    pub fn link(self, score: f32, range: (f32, f32)) -> f32 {
        match self {
            Loss::Squared | Loss::Absolute | Loss::Kl => clip(score, range),
            Loss::Logistic => 1.0 / (1.0 + (-score).exp()),
            Loss::Hinge | Loss::SquaredHinge | Loss::Ials | Loss::Bpr | Loss::BprColumns => score,
        }
    }

    /// What the link gives, for people: "rating", "probability" or "margin".
    pub fn link_name(self) -> &'static str {
        match self {
            Loss::Squared | Loss::Absolute | Loss::Kl => "rating",
            Loss::Logistic => "probability",
            Loss::Hinge | Loss::SquaredHinge => "margin",
            Loss::Ials | Loss::Bpr | Loss::BprColumns => "score",
        }
    }

    /// The metrics reported for this loss, the one early stopping and `--auto` judge by first.
    pub fn metrics(self) -> &'static [Metric] {
        match self {
            Loss::Squared => &[Metric::Rmse, Metric::Mae],
            Loss::Absolute => &[Metric::Mae, Metric::Rmse],
            Loss::Kl => &[Metric::Gkl, Metric::Rmse, Metric::Mae],
            Loss::Logistic => &[Metric::LogLoss, Metric::Accuracy, Metric::Auc],
            Loss::Hinge | Loss::SquaredHinge => &[Metric::Accuracy, Metric::Auc],
            Loss::Ials | Loss::Bpr | Loss::BprColumns => &[Metric::Ndcg],
        }
    }

    /// The metric early stopping and `--auto` judge by.
    pub fn metric(self) -> Metric {
        self.metrics()[0]
    }

    /// The constant score the model starts from (μ): the mean rating; for the logistic loss
    /// the log-odds of the positive label, its best constant. `mean` is the labels' mean.
    pub fn offset(self, mean: f32) -> f32 {
        match self {
            Loss::Logistic => {
                let p = ((mean + 1.0) / 2.0).clamp(1e-4, 1.0 - 1e-4);
                (p / (1.0 - p)).ln()
            }
            // Scores only order a user's items: no offset.
            Loss::Ials | Loss::Bpr | Loss::BprColumns => 0.0,
            _ => mean,
        }
    }

    /// The WGSL the kernel composes for this loss: `loss_slopes(score, label)`, the step's
    /// (factor, bias) slopes as [`slopes`](Self::slopes); `loss_terms(score, label)`, one
    /// rating's [`LossSums`] terms as [`terms`](Self::terms); and `judged(score)`, as
    /// [`judged`](Self::judged). `params.unit` and `params.error_scale` (its inverse) and the
    /// clipping range come from the kernel's uniform.
    pub fn wgsl(self) -> String {
        let (slopes, value) = match self {
            Loss::Squared => ("let e = label - score;\n    return vec2<f32>(e * params.error_scale, e);", "0.5 * (label - score) * (label - score)"),
            Loss::Absolute => (
                "let e = label - score;\n    var g = 0.0;\n    if (e > 0.0) { g = 1.0; } else if (e < 0.0) { g = -1.0; }\n    return vec2<f32>(g, g * params.unit);",
                "abs(label - score)",
            ),
            Loss::Kl => (
                "let g = label / max(score, KL_FLOOR * params.unit) - 1.0;\n    return vec2<f32>(g, g * params.unit);",
                "kl_value(score, label)",
            ),
            Loss::Logistic => (
                "let m = label * score;\n    let t = exp(-abs(m));\n    let g = label * select(1.0, t, m >= 0.0) / (1.0 + t);\n    return vec2<f32>(g, g);",
                "logistic_value(label * score)",
            ),
            Loss::Hinge => ("var g = 0.0;\n    if (label * score < 1.0) { g = label; }\n    return vec2<f32>(g, g);", "max(1.0 - label * score, 0.0)"),
            Loss::SquaredHinge => (
                "let g = label * max(1.0 - label * score, 0.0);\n    return vec2<f32>(g, g);",
                "0.5 * max(1.0 - label * score, 0.0) * max(1.0 - label * score, 0.0)",
            ),
            Loss::Ials => ("let g = label * (1.0 - score);\n    return vec2<f32>(g, g);", "0.5 * label * (1.0 - score) * (1.0 - score)"),
            Loss::Bpr | Loss::BprColumns => ("let t = exp(-abs(score));\n    let g = select(1.0, t, score >= 0.0) / (1.0 + t);\n    return vec2<f32>(g, g);", "logistic_value(score)"),
        };
        let correct = match self.family() {
            Family::Binary => "select(0.0, 1.0, (label > 0.0) == (score > 0.0))",
            Family::Real | Family::OneClass => "0.0",
        };
        let judged = match self.family() {
            Family::Real => "clamp(score, params.clip_low, params.clip_high)",
            Family::Binary | Family::OneClass => "score",
        };
        // Functions a loss's value needs, as its Rust arm above computes it.
        let helpers = match self {
            Loss::Kl => format!(
                "const KL_FLOOR: f32 = {KL_FLOOR:?};\n\nfn kl_value(score: f32, label: f32) -> f32 {{\n    let s = max(score, 1.17549435e-38);\n    if (label > 0.0) {{\n        return label * log(label / s) - label + s;\n    }}\n    return s;\n}}\n\n"
            ),
            Loss::Logistic | Loss::Bpr | Loss::BprColumns => "fn logistic_value(m: f32) -> f32 {\n    let t = exp(-abs(m));\n    let log1p = select(log(1.0 + t), t * (1.0 - t * (0.5 - t / 3.0)), t < 1e-3);\n    return max(-m, 0.0) + log1p;\n}\n\n".to_string(),
            _ => String::new(),
        };
        format!(
            "// The loss, {name} (src/objective.rs).\n{helpers}fn loss_slopes(score: f32, label: f32) -> vec2<f32> {{\n    {slopes}\n}}\n\nfn loss_terms(score: f32, label: f32) -> vec4<f32> {{\n    let e = label - score;\n    return vec4<f32>({value}, e * e, abs(e), {correct});\n}}\n\nfn judged(score: f32) -> f32 {{\n    return {judged};\n}}\n",
            name = crate::choice::Choice::name(self)
        )
    }
}

/// How an event's count becomes its confidence (Hu, Koren & Volinsky 2008).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Confidence {
    /// 1 + α·c.
    #[default]
    Linear,
    /// 1 + α·ln(1 + c/ε): play counts that run to thousands weigh little more than tens.
    Log,
}

impl crate::choice::Choice for Confidence {
    const WHAT: &'static str = "confidence";
    const ALL: &'static [(Confidence, &'static str, &'static str)] = &[
        (Confidence::Linear, "linear", "1 + alpha * count (the default)"),
        (Confidence::Log, "log", "1 + alpha * ln(1 + count / epsilon), for counts that run to thousands"),
    ];
}

/// The settings of the one-class loss ([`Loss::Ials`]): how events weigh against the pairs
/// without one, and how its rows are solved.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OneClass {
    /// w₀: the weight of each pair without an event (Rendle et al. 2021's α₀). Jobs scale it
    /// to the data unless it is given ([`OneClass::scaled_unobserved_weight`]).
    pub unobserved_weight: f32,
    pub confidence: Confidence,
    /// α of the confidence.
    pub alpha: f32,
    /// ε of the log confidence.
    pub epsilon: f32,
    /// Conjugate-gradient steps per row and half-epoch, each started from the row as it stands
    /// (as implicit's ALS): a few suffice once the rows settle, and each costs one pass over
    /// the row's events rather than a k×k factorisation.
    pub cg_steps: usize,
}

impl Default for OneClass {
    fn default() -> Self {
        OneClass { unobserved_weight: 0.2, confidence: Confidence::Linear, alpha: 1.0, epsilon: 1.0, cg_steps: 3 }
    }
}

/// w₀ by default is this times the square root of the share of pairs the training data names.
pub const UNOBSERVED_SCALE: f32 = 1.3;

impl OneClass {
    /// The default w₀ for `entries` training entries over `users` × `items`:
    /// [`UNOBSERVED_SCALE`]·√(entries / (users·items)). The pairs without events outweigh the
    /// events the more, the sparser the data; a fixed w₀ that ranks best on MovieLens 100k
    /// (1,447 items) smothers the events of Last.fm's 17,617 artists, where the best w₀ is a
    /// quarter of it. This rule came within 0.004 of the best w₀ of a grid on validation
    /// splits inside the training files of MovieLens 100k, latest-small and Last.fm
    /// (BENCHMARKS.md).
    pub fn scaled_unobserved_weight(entries: usize, users: usize, items: usize) -> f32 {
        let pairs = (users.max(1) as f64) * (items.max(1) as f64);
        (UNOBSERVED_SCALE as f64 * (entries as f64 / pairs).sqrt()) as f32
    }

    /// The confidence of an event counted `count` times (count > 0).
    #[inline]
    pub fn confidence(&self, count: f32) -> f32 {
        match self.confidence {
            Confidence::Linear => 1.0 + self.alpha * count,
            Confidence::Log => 1.0 + self.alpha * (count / self.epsilon).ln_1p(),
        }
    }

    /// The weighted squared loss of one row against the other side, its events given as
    /// (score, confidence): ½Σ c(1 − s)² over the events plus ½w₀ Σ s² over every other pair,
    /// the latter as ½w₀(xᵀGx − Σ s²) with G the other side's Gramian, so it never visits the
    /// pairs without events. `x_gram_x` is xᵀGx.
    pub fn row_loss(&self, events: impl IntoIterator<Item = (f32, f32)>, x_gram_x: f64) -> f64 {
        let w0 = self.unobserved_weight as f64;
        let mut loss = 0.5 * w0 * x_gram_x;
        for (s, c) in events {
            let (s, c) = (s as f64, c as f64);
            loss += 0.5 * (c * (1.0 - s) * (1.0 - s) - w0 * s * s);
        }
        loss
    }

    /// The checks the settings must pass, naming the flag.
    pub fn validate(&self) -> Result<()> {
        for (flag, argument, v) in [("--unobserved-weight", "unobserved_weight", self.unobserved_weight), ("--alpha", "alpha", self.alpha)] {
            if !v.is_finite() || v < 0.0 {
                return Err(Error::setting(flag, argument, v, format!("must be a finite non-negative number, got {v}")));
            }
        }
        if !self.epsilon.is_finite() || self.epsilon <= 0.0 {
            return Err(Error::setting("--epsilon", "epsilon", self.epsilon, format!("must be a positive number, got {}", self.epsilon)));
        }
        if self.cg_steps == 0 {
            return Err(Error::setting("--cg-steps", "cg_steps", 0, "must be at least 1"));
        }
        Ok(())
    }
}

/// A score clipped to `(lo, hi)`. Comparisons rather than `clamp`, which panics on a range
/// built by hand the wrong way round; and rather than `max`/`min`, which would turn a diverged
/// NaN into a plausible rating and hide the divergence.
#[inline]
pub(crate) fn clip(s: f32, (lo, hi): (f32, f32)) -> f32 {
    if s < lo {
        lo
    } else if s > hi {
        hi
    } else {
        s
    }
}

/// What a run is judged by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    Rmse,
    Mae,
    /// The generalised KL divergence's mean.
    Gkl,
    /// The logistic loss's mean (cross-entropy of the predicted probabilities).
    LogLoss,
    /// The share of binary labels whose sign the score gets right.
    Accuracy,
    /// The area under the ROC curve of the scores: the chance that a positive outscores a
    /// negative. Not a sum: computed from the scores (see [`crate::metrics::auc`]).
    Auc,
    /// NDCG@[`ONE_CLASS_K`] of each user's list against its held-out events: how one-class
    /// models are judged. Not a sum: computed from the lists ([`crate::ranking`]).
    #[serde(rename = "ndcg@20")]
    Ndcg,
}

/// The list length one-class models are judged by during training (early stopping, `--auto`):
/// NDCG@20, as the one-class benchmarks report.
pub const ONE_CLASS_K: usize = 20;

impl Metric {
    /// The name in reports and JSON: "rmse", "log_loss".
    pub fn name(self) -> &'static str {
        match self {
            Metric::Rmse => "rmse",
            Metric::Mae => "mae",
            Metric::Gkl => "gkl",
            Metric::LogLoss => "log_loss",
            Metric::Accuracy => "accuracy",
            Metric::Auc => "auc",
            Metric::Ndcg => "ndcg@20",
        }
    }

    /// The name for people: "RMSE", "log loss".
    pub fn label(self) -> &'static str {
        match self {
            Metric::Rmse => "RMSE",
            Metric::Mae => "MAE",
            Metric::Gkl => "KL divergence",
            Metric::LogLoss => "log loss",
            Metric::Accuracy => "accuracy",
            Metric::Auc => "AUC",
            Metric::Ndcg => "NDCG@20",
        }
    }

    pub fn lower_is_better(self) -> bool {
        !matches!(self, Metric::Accuracy | Metric::Auc | Metric::Ndcg)
    }

    /// Whether `a` is better than `b` by this metric.
    pub fn better(self, a: f64, b: f64) -> bool {
        if self.lower_is_better() { a < b } else { a > b }
    }

    /// The metric from sums; `None` for AUC and NDCG, which sums cannot give.
    pub fn of(self, sums: &LossSums) -> Option<f64> {
        match self {
            Metric::Rmse => Some(sums.rmse()),
            Metric::Mae => Some(sums.mae()),
            Metric::Gkl | Metric::LogLoss => Some(sums.mean_loss()),
            Metric::Accuracy => Some(sums.accuracy()),
            Metric::Auc | Metric::Ndcg => None,
        }
    }
}

/// How a two-valued column becomes the labels −1 and +1 the binary losses train on: the
/// smaller value is the negative label, the larger the positive (0/1, ±1, 1/5, no/yes coded
/// as numbers). Kept with the model, so `predict` prints classes in the file's own values.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct BinaryLabels {
    pub negative: f32,
    pub positive: f32,
}

impl BinaryLabels {
    /// The two values of `values`, or an error naming what is wrong: `what` names the column
    /// ("the training ratings of FILE").
    pub fn detect(values: impl IntoIterator<Item = f32>, what: &str, loss: Loss) -> Result<BinaryLabels> {
        let mut seen: Vec<f32> = Vec::with_capacity(3);
        for v in values {
            if !seen.contains(&v) {
                seen.push(v);
                if seen.len() > 2 {
                    seen.sort_by(f32::total_cmp);
                    return Err(Error::Data(format!(
                        "--loss {}: {what} hold more than two values ({}, {} and {}, at least); a binary loss needs a two-valued column such as 0/1 or -1/1 (--positive-threshold T makes ratings of T and above the positive label)",
                        crate::choice::Choice::name(loss),
                        seen[0],
                        seen[1],
                        seen[2]
                    )));
                }
            }
        }
        match seen[..] {
            [a, b] => Ok(BinaryLabels { negative: a.min(b), positive: a.max(b) }),
            [a] => Err(Error::Data(format!(
                "--loss {}: {what} hold one value only ({a}); a binary loss needs both labels",
                crate::choice::Choice::name(loss)
            ))),
            _ => Err(Error::Data(format!("{what} are empty"))),
        }
    }

    /// The label of `value`: −1, +1, or `None` for a value that is neither.
    pub fn sign(&self, value: f32) -> Option<f32> {
        if value == self.positive {
            Some(1.0)
        } else if value == self.negative {
            Some(-1.0)
        } else {
            None
        }
    }

    /// The label a value becomes: +1 above the middle of the two values, −1 below (exact for
    /// the two values themselves, and the same arithmetic on every backend).
    #[inline(always)]
    pub fn label(&self, value: f32) -> f32 {
        if value > self.middle() { 1.0 } else { -1.0 }
    }

    /// Halfway between the two values.
    pub fn middle(&self) -> f32 {
        0.5 * (self.negative + self.positive)
    }

    /// The class a score predicts, in the file's values.
    pub fn class(&self, score: f32) -> f32 {
        if score > 0.0 { self.positive } else { self.negative }
    }

    /// For the load report: "0 → −1, 1 → +1".
    pub fn describe(&self) -> String {
        format!("{} is the negative label, {} the positive", self.negative, self.positive)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::choice::Choice;

    const UNIT: Unit = Unit { unit: 1.0, inverse: 1.0 };

    /// Scores and labels away from each loss's kinks, where the derivative exists.
    fn cases(loss: Loss) -> Vec<(f32, f32)> {
        match loss.family() {
            Family::Real => vec![(3.2, 4.0), (4.6, 2.0), (0.7, 1.0), (2.5, 0.0), (1.3, 5.0)],
            Family::Binary => vec![(0.3, 1.0), (-0.4, 1.0), (0.2, -1.0), (-2.5, -1.0), (1.7, -1.0), (-0.05, 1.0)],
            // (score, an event's confidence)
            Family::OneClass => vec![(0.3, 2.0), (1.4, 1.0), (-0.2, 5.0)],
        }
    }

    #[test]
    fn each_gradient_is_the_derivative_of_its_value() {
        for &(loss, _, _) in Loss::ALL {
            for (score, label) in cases(loss) {
                let h = 1e-3f64;
                let value = |s: f64| loss.value(s as f32, label) as f64;
                let numeric = (value(score as f64 + h) - value(score as f64 - h)) / (2.0 * h);
                let analytic = loss.gradient(score, label) as f64;
                assert!((numeric - analytic).abs() < 2e-2 * (1.0 + analytic.abs()), "{loss:?} at score {score}, label {label}: {analytic} against {numeric}");
            }
        }
    }

    #[test]
    fn each_step_goes_down_the_gradient_in_rating_units() {
        for &(loss, _, _) in Loss::ALL {
            for (score, label) in cases(loss) {
                // Unit 1: both slopes are the negative gradient.
                let (factor, bias) = loss.slopes(score, label, UNIT);
                let g = -loss.gradient(score, label);
                assert!((factor - g).abs() < 1e-5 && (bias - g).abs() < 1e-5, "{loss:?} at ({score}, {label}): {factor}, {bias} against {g}");
                // In units of 2: the factor slope is the scaled problem's, the bias slope that
                // times the unit (ratings r/2, scores s/2).
                if loss.family() == Family::Real {
                    let unit = Unit::of(2.0);
                    let (factor, bias) = loss.slopes(score, label, unit);
                    let scaled = -loss.gradient(score / 2.0, label / 2.0);
                    assert!((factor - scaled).abs() < 1e-5 && (bias - 2.0 * scaled).abs() < 1e-5, "{loss:?} at ({score}, {label}) in units of 2: {factor}, {bias} against {scaled}");
                }
            }
        }
        // The squared error's slopes are today's (e / unit, e) to the bit.
        let (factor, bias) = Loss::Squared.slopes(3.25, 4.5, Unit::of(0.9));
        assert_eq!((factor, bias), ((4.5f32 - 3.25) * (1.0 / 0.9), 4.5 - 3.25));
    }

    #[test]
    fn links_and_terms_say_what_each_loss_predicts() {
        assert_eq!(Loss::Squared.link(7.0, (1.0, 5.0)), 5.0);
        assert!((Loss::Logistic.link(0.0, (1.0, 5.0)) - 0.5).abs() < 1e-7);
        assert!(Loss::Logistic.link(3.0, (0.0, 0.0)) > 0.95);
        assert_eq!(Loss::Hinge.link(-0.3, (1.0, 5.0)), -0.3);
        assert_eq!(Loss::Hinge.terms(-0.3, -1.0)[3], 1.0);
        assert_eq!(Loss::Logistic.terms(0.4, -1.0)[3], 0.0);
        assert_eq!(Loss::Squared.terms(3.0, 5.0), [2.0, 4.0, 2.0, 0.0]);
        // The logistic loss does not overflow for large margins.
        assert!(Loss::Logistic.value(-200.0, 1.0).is_finite() && Loss::Logistic.slopes(300.0, -1.0, UNIT).0.is_finite());
        assert_eq!(Loss::Logistic.metric(), Metric::LogLoss);
        assert!(Metric::Accuracy.better(0.9, 0.8) && Metric::Rmse.better(0.8, 0.9));
    }

    #[test]
    fn two_valued_columns_become_labels_and_others_are_refused_by_name() {
        let labels = BinaryLabels::detect([1.0, 5.0, 5.0, 1.0], "the ratings", Loss::Logistic).unwrap();
        assert_eq!((labels.negative, labels.positive), (1.0, 5.0));
        assert_eq!((labels.sign(5.0), labels.sign(1.0), labels.sign(3.0)), (Some(1.0), Some(-1.0), None));
        assert_eq!(labels.class(0.2), 5.0);
        let e = BinaryLabels::detect([0.0, 1.0, 2.0], "the ratings of r.tsv", Loss::Hinge).unwrap_err().to_string();
        assert!(e.contains("--loss hinge") && e.contains("r.tsv") && e.contains("0, 1 and 2"), "{e}");
        let e = BinaryLabels::detect([1.0, 1.0], "the ratings", Loss::Logistic).unwrap_err().to_string();
        assert!(e.contains("one value"), "{e}");
    }

    #[test]
    fn every_loss_is_named_once_and_parses_back() {
        for &(loss, name, _) in Loss::ALL {
            assert_eq!(Loss::named(name), Ok(loss));
        }
        assert!(Loss::named("huber").unwrap_err().contains("squared, absolute"));
    }
}
