//! The SGD update rule of the model and the one function that trains a block with it, written
//! once: every CPU trainer (sequential, threads, blocks from disk, the distributed runner's
//! workers) calls [`train_block`], and the GPU kernel (shaders/sgd.wgsl) mirrors
//! [`sgd_update`] line for line, which the exact test checks. The loss is the objective's
//! ([`crate::objective`]).

use crate::choice::Choice;
use crate::data::Rating;
use crate::schedule::BlockRatings;
use crate::error::{Error, Result};
use crate::model::Params;
use crate::objective::{AtScore, BinaryLabels, Loss, LogSum, LossSums, SumLanes, Unit};
use crate::vector::{prefetch, Lanes};

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
    /// The seed of the epoch's sampled non-events (pairwise losses); each block draws from
    /// its own stream of it ([`PairBlock`]).
    pub sample_seed: u64,
    /// With the SVD++ term, what each update adds to its user's share, times ε·q: 0 in the
    /// epochs that gather none ([`crate::svdpp::share_weight`]).
    pub share_weight: f32,
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
            sample_seed: params.seed,
            share_weight: 1.0,
        }
    }

    /// The same steps, sampling epoch `epoch`'s non-events.
    pub fn for_epoch(self, epoch: usize) -> Step {
        Step { sample_seed: epoch_sample_seed(self.sample_seed, epoch), ..self }
    }

    /// The same steps, adding to the SVD++ term's shares with `weight` (0: not at all).
    pub fn gathering_shares(self, weight: f32) -> Step {
        Step { share_weight: weight, ..self }
    }

    /// The label the loss takes for a rating's value. Only binary losses have a middle; the
    /// test of the loss first lets the block loop, compiled for one loss, drop the mapping for
    /// the others.
    #[inline(always)]
    pub fn label(&self, value: f32) -> f32 {
        match self.label_middle {
            Some(middle) if self.loss.is_binary() => {
                if value > middle {
                    1.0
                } else {
                    -1.0
                }
            }
            _ => value,
        }
    }
}

/// A factor after its plain step: shrunk toward zero by `threshold` and stopped there (L1),
/// then projected to ≥ 0 (non-negative factors). x − clamp(x, −t, t) is the soft threshold
/// in three branch-free operations, so the loop over a row vectorises.
#[inline(always)]
fn constrain<const L1: bool, const NONNEG: bool>(x: f32, threshold: f32) -> f32 {
    let mut x = x;
    // Comparisons rather than f32::max/min, whose NaN rules cost extra instructions per lane.
    if L1 {
        let low = if x < -threshold { -threshold } else { x };
        x -= if low > threshold { threshold } else { low };
    }
    if NONNEG {
        x = if x < 0.0 { 0.0 } else { x };
    }
    x
}

/// The factor half of [`sgd_update`], compiled once for each combination of the SVD++ term's
/// prior (`PRIOR`) and share (`SHARE`, gathered at `share_slope` = the share's weight × g_f),
/// L1 and non-negative factors, so no per-element test is left in the loop.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn step_factors<const PRIOR: bool, const SHARE: bool, const L1: bool, const NONNEG: bool>(p: &mut [f32], q: &mut [f32], prior: &[f32], share: &mut [f32], (slope, share_slope): (f32, f32), lr: f32, reg: (f32, f32), cut: (f32, f32)) {
    let k = p.len();
    let q = &mut q[..k];
    let prior = if PRIOR { &prior[..k] } else { &prior[..0] };
    let share = if SHARE { &mut share[..k] } else { &mut share[..0] };
    // In fused form: p ← lr·g·q + (1 − lr·λ_u)·p, q ← lr·g·p + (1 − lr·λ_i)·q; two operations
    // a factor where the written-out form takes five (at rank 128 a fifth of the epoch's
    // time). With the SVD++ term, p's decay is a pull toward z, p + lr·λ_u·(z − p): a
    // subtraction and a fused multiply-add. `mul_add` rounds once on every machine, so the
    // bits stay the same everywhere. The kernel (shaders/sgd.wgsl) takes the same steps, but a
    // GPU's fma may round once or twice (lavapipe's rounded twice where this was first
    // measured): where the product is small beside what it is added to (lr·g·q,
    // lr·λ·(z − p)) that changes almost nothing. (The pull written (1 − lr·λ)·p + lr·λ·z adds
    // two products of a row's size: fused, a row stepped 20,000 times an epoch drifted 7·10⁻⁵
    // from a kernel rounding twice in three epochs, so it was left unfused, which cost the
    // term's epoch 3–8% at ranks 32 and 128; this form, with the CPU rounding twice against
    // lavapipe's fused kernel, drifted 7·10⁻⁸.)
    let lr_slope = lr * slope;
    let pull = (lr * reg.0, lr * reg.1);
    let keep = (1.0 - pull.0, 1.0 - pull.1);
    for f in 0..k {
        let (a, b) = (p[f], q[f]);
        let kept = if PRIOR { pull.0.mul_add(prior[f] - a, a) } else { keep.0 * a };
        p[f] = constrain::<L1, NONNEG>(lr_slope.mul_add(b, kept), cut.0);
        q[f] = constrain::<L1, NONNEG>(lr_slope.mul_add(a, keep.1 * b), cut.1);
        if SHARE {
            share[f] += share_slope * b;
        }
    }
}

/// The score s = μ + p·q (+ b_u + b_i) the update steps from.
#[inline(always)]
pub(crate) fn score<L: Lanes>(p: &[f32], q: &[f32], bu: f32, bi: f32, s: &Step) -> f32 {
    let score = s.mean + L::dot(p, q);
    if s.biases { score + (bu + bi) } else { score }
}

/// One SGD update for one rating from its `score` s = μ + b_u + b_i + p·q ([`score`]),
/// reading the old p and q on both sides: the loss at the score ([`loss_at`]), then the step
/// it gives ([`step_rows`]). Returns the loss at the score before the update ([`AtScore`]):
/// its terms, summed over an epoch, are its training loss, with no second pass over the
/// ratings (as LIBMF reports it).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn sgd_update(score: f32, p: &mut [f32], q: &mut [f32], bu: &mut f32, bi: &mut f32, weight: (f32, f32), prior: &[f32], share: &mut [f32], value: f32, s: &Step) -> AtScore {
    let at = loss_at(score, value, s);
    step_rows(at.slopes, p, q, bu, bi, weight, prior, share, s);
    at
}

/// The loss of a rating of `value` at `score`, as the update takes it.
#[inline(always)]
fn loss_at(score: f32, value: f32, s: &Step) -> AtScore {
    s.loss.at(score, s.label(value), s.unit)
}

/// The step of one update, from the loss's slopes (g_f, g_b) at the score ([`Loss::slopes`];
/// for the squared error (e / unit, e), e = r − s): p += lr(g_f·q − w_u·λ·(p − z));
/// q += lr(g_f·p − w_i·λ·q) (both in fused form, [`step_factors`]); b_u += lr(g_b − w_u·λ_b·b_u),
/// b_i likewise; then, with L1, each factor shrinks toward zero by lr·w·l1 (stopping there),
/// and with non-negative factors each is projected to ≥ 0. `weight` is (w_u, w_i), the two rows' regularisation weights
/// ([`crate::model::Params::reg_weights`]). With the SVD++ term ([`crate::svdpp`]), `prior`
/// is the user's z, which the user row is pulled toward instead of zero, and `share` gathers
/// g_f·q (the old q) times the step's share weight for the passes, where that is not 0;
/// both are empty without it.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn step_rows((slope, bias_slope): (f32, f32), p: &mut [f32], q: &mut [f32], bu: &mut f32, bi: &mut f32, weight: (f32, f32), prior: &[f32], share: &mut [f32], s: &Step) {
    if s.biases {
        *bu += s.lr * (bias_slope - weight.0 * s.reg_bias * *bu);
        *bi += s.lr * (bias_slope - weight.1 * s.reg_bias * *bi);
    }
    let reg = (weight.0 * s.reg, weight.1 * s.reg);
    let cut = (s.lr * weight.0 * s.l1, s.lr * weight.1 * s.l1);
    let slopes = (slope, slope * s.share_weight);
    // Direct calls (not a function pointer), so each inlines into the AVX2 block loop.
    match (!prior.is_empty(), s.share_weight != 0.0) {
        (false, _) => constrained::<false, false>(p, q, prior, share, slopes, s, reg, cut),
        (true, false) => constrained::<true, false>(p, q, prior, share, slopes, s, reg, cut),
        (true, true) => constrained::<true, true>(p, q, prior, share, slopes, s, reg, cut),
    }
}

/// [`step_factors`] for the step's L1 and non-negative factors.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn constrained<const PRIOR: bool, const SHARE: bool>(p: &mut [f32], q: &mut [f32], prior: &[f32], share: &mut [f32], slopes: (f32, f32), s: &Step, reg: (f32, f32), cut: (f32, f32)) {
    match (s.l1 > 0.0, s.nonneg) {
        (false, false) => step_factors::<PRIOR, SHARE, false, false>(p, q, prior, share, slopes, s.lr, reg, cut),
        (false, true) => step_factors::<PRIOR, SHARE, false, true>(p, q, prior, share, slopes, s.lr, reg, cut),
        (true, false) => step_factors::<PRIOR, SHARE, true, false>(p, q, prior, share, slopes, s.lr, reg, cut),
        (true, true) => step_factors::<PRIOR, SHARE, true, true>(p, q, prior, share, slopes, s.lr, reg, cut),
    }
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

/// How many ratings ahead the user row is prefetched. A block's users come in position order,
/// each for a few ratings, so where a block spans more users than the caches hold (a DSGD
/// worker's stripe: 240,000 rows, 123 MB at rank 128 on the 20M set) each new user's row came
/// from memory while the update waited. Asked for every rating (a test for a new user cost
/// more than it saved), 16 ahead; measured on an Intel Xeon (dev-intel, BENCHMARKS.md): two
/// DSGD workers' epochs 8% shorter at rank 128, the threaded trainer's within 1%, the
/// sequential trainer's 1–2%. Prefetching the SVD++ term's rows as well was 4% slower.
const USER_AHEAD: usize = 16;

/// Trains `block` (its ratings in their fixed order) on the block's rows at rank `k`, and
/// returns their loss sums: the one block-training function of every CPU trainer. The rows
/// must be those the block's ratings may name (checked when the block was laid out or read:
/// [`BlockRatings`]), or it is an error, before any row is touched.
pub(crate) fn train_block(block: BlockRatings, users: BlockRows, items: BlockRows, k: usize, step: &Step) -> Result<LossSums> {
    let (m, n) = (users.rows(), items.rows());
    if block.users() != (users.first, m) || block.items() != (items.first, n) {
        let ((u0, bm), (i0, bn)) = (block.users(), block.items());
        return Err(Error::Data(format!(
            "a block's ratings name users {u0}+{bm} and items {i0}+{bn}, and it was given the rows of users {}+{m} and items {}+{n}",
            users.first, items.first
        )));
    }
    if users.factors.len() != m * k || items.factors.len() != n * k || users.weights.len() != m || items.weights.len() != n {
        return Err(Error::Data(format!("a block's rows do not match: {m} users and {n} items at rank {k}")));
    }
    if !users.prior.is_empty() && (users.prior.len() != m * k || users.share.len() != m * k) {
        return Err(Error::Data("a block's SVD++ rows do not match its users".into()));
    }
    let ratings = block.ratings();
    // SAFETY (all three): every rating's rows lie in `users` and `items` (the block's check and
    // the test above); the AVX paths run only where `widest` detected their features.
    match crate::vector::widest() {
        #[cfg(target_arch = "x86_64")]
        crate::vector::Path::Avx512 => unsafe { train_block_avx512(ratings, users, items, k, step) },
        #[cfg(target_arch = "x86_64")]
        crate::vector::Path::Avx2 => unsafe { train_block_avx2(ratings, users, items, k, step) },
        _ => unsafe { train_block_with::<crate::vector::Portable>(ratings, users, items, k, step) },
    }
}

/// [`train_block_with`] compiled for AVX2 and FMA, with AVX2's dot product: wider vectors, the
/// same arithmetic (fused operations only where written, as `mul_add`), so the same bits.
///
/// # Safety
/// As [`train_block_with`], on a CPU with AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn train_block_avx2(ratings: &[Rating], users: BlockRows, items: BlockRows, k: usize, step: &Step) -> Result<LossSums> {
    unsafe { train_block_with::<crate::vector::Avx2>(ratings, users, items, k, step) }
}

/// [`train_block_with`] compiled for AVX-512F, with its dot product: a 512-bit register holds
/// a rank-32 row in two, so the row operations take half the instructions of AVX2's (1.08–1.10x
/// the updates/s at ranks 32 and 128 on an Intel Xeon, in alternating runs), with the same bits.
///
/// # Safety
/// As [`train_block_with`], on a CPU with AVX-512F, AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn train_block_avx512(ratings: &[Rating], users: BlockRows, items: BlockRows, k: usize, step: &Step) -> Result<LossSums> {
    unsafe { train_block_with::<crate::vector::Avx512>(ratings, users, items, k, step) }
}

/// The block loop compiled for the block's loss ([`FixedLoss`]), or the pairwise losses' own.
///
/// # Safety
/// Every rating's user and item lie in `users` and `items` (their first row on, as many as
/// they hold), whose factor rows (and SVD++ rows) hold `k` floats each: the loop indexes them
/// without checks ([`train_block`] checked them).
#[inline(always)]
unsafe fn train_block_with<L: Lanes>(ratings: &[Rating], users: BlockRows, items: BlockRows, k: usize, step: &Step) -> Result<LossSums> {
    if step.loss.is_pairwise() {
        return train_block_pairwise::<L>(ratings, users, items, k, step);
    }
    Ok(match step.loss {
        Loss::Squared => at_rank::<L, SquaredLoss>(ratings, users, items, k, step),
        Loss::Absolute => at_rank::<L, AbsoluteLoss>(ratings, users, items, k, step),
        Loss::Kl => at_rank::<L, KlLoss>(ratings, users, items, k, step),
        Loss::Logistic => at_rank::<L, LogisticLoss>(ratings, users, items, k, step),
        Loss::Hinge => at_rank::<L, HingeLoss>(ratings, users, items, k, step),
        Loss::SquaredHinge => at_rank::<L, SquaredHingeLoss>(ratings, users, items, k, step),
        // Pairwise losses returned above; the solvers send ials to ALS.
        Loss::Ials | Loss::Bpr | Loss::BprColumns => return Err(Error::InvalidParameter(format!("the {} loss has no SGD step of one rating", step.loss.name()))),
    })
}

/// A loss fixed when the block loop is compiled: the loop is compiled once per loss, so the
/// loss's slopes inline into it with no per-rating choice among the losses.
trait FixedLoss {
    const LOSS: Loss;
}

macro_rules! fixed_losses {
    ($($name:ident => $loss:expr),* $(,)?) => {
        $(
            struct $name;
            impl FixedLoss for $name {
                const LOSS: Loss = $loss;
            }
        )*
    };
}

fixed_losses! {
    SquaredLoss => Loss::Squared,
    AbsoluteLoss => Loss::Absolute,
    KlLoss => Loss::Kl,
    LogisticLoss => Loss::Logistic,
    HingeLoss => Loss::Hinge,
    SquaredHingeLoss => Loss::SquaredHinge,
}

/// Row `r` of `rows` at rank `k`.
///
/// # Safety
/// `(r + 1) * k <= rows.len()`: every rating's rows were checked ([`BlockRatings`], [`train_block`]).
#[inline(always)]
unsafe fn row(rows: &[f32], r: usize, k: usize) -> &[f32] {
    // SAFETY: within `rows` (the caller's contract).
    unsafe { rows.get_unchecked(r * k..(r + 1) * k) }
}

/// [`row`], writable.
///
/// # Safety
/// As [`row`].
#[inline(always)]
unsafe fn row_mut(rows: &mut [f32], r: usize, k: usize) -> &mut [f32] {
    // SAFETY: within `rows` (the caller's contract).
    unsafe { rows.get_unchecked_mut(r * k..(r + 1) * k) }
}

/// The score of the rating on user row `u` and item row `i` of a block.
///
/// # Safety
/// `u` and `i` are rows of the block (as [`row`]).
#[inline(always)]
unsafe fn score_at<L: Lanes>((u, i): (usize, usize), users: &BlockRows, items: &BlockRows, k: usize, step: &Step) -> f32 {
    // SAFETY: the caller's contract.
    unsafe { score::<L>(row(users.factors, u, k), row(items.factors, i, k), *users.bias.get_unchecked(u), *items.bias.get_unchecked(i), step) }
}

/// [`rating_loop`] with the rank fixed at compile time where that pays: at ranks 16 and 32 the
/// loops over a row unroll into a few whole-register operations with no loop control or tail,
/// and an update is mostly that control (1.15–1.2x the updates/s at both ranks on an Intel
/// Xeon with AVX-512; at 64 within the noise, at 128 none). The same arithmetic, so the same
/// bits.
///
/// # Safety
/// As [`train_block_with`].
#[inline(always)]
unsafe fn at_rank<L: Lanes, O: FixedLoss>(ratings: &[Rating], users: BlockRows, items: BlockRows, k: usize, step: &Step) -> LossSums {
    match k {
        16 => rating_loop::<L, O, 16>(ratings, users, items, k, step),
        32 => rating_loop::<L, O, 32>(ratings, users, items, k, step),
        _ => rating_loop::<L, O, 0>(ratings, users, items, k, step),
    }
}

/// How many ratings the block loop trains before it sums their losses ([`add_scored`]): the
/// scores it records fill 4 KiB.
const SCORED_BATCH: usize = 1024;

/// The block loop, for ratings whose rows were checked ([`train_block`]), at rank `k` (`K` is
/// the same rank fixed at compile time, or 0 where it is not: [`at_rank`]). An update waits on its
/// score (the dot product, then the loss's slopes: for KL a division), and the next rating's
/// score would wait on this update when it shares a row. When it shares none, the next score
/// is computed before this update's rows are written, so the two chains overlap; it reads rows
/// this update does not touch, so the bits are those of one update after another. (Carrying the next rating's loss ahead as well, not only its
/// score, was measured slower for every loss.)
///
/// The squared and absolute error and the logistic loss add their sums as they go: their terms
/// share the slope's work ([`Loss::sums_as_it_goes`]). For the other losses the loop records
/// each score, and their sums come from the scores in a pass
/// after each [`SCORED_BATCH`] ratings ([`add_scored`]), which vectorises: taken one rating at
/// a time inside the loop, the KL divergence's value (with its log) and f64 sums made its
/// updates 1.28x the time of updates with no sums at rank 32, and with the pass 1.2x
/// (BENCHMARKS.md).
///
/// # Safety
/// As [`train_block_with`].
#[inline(always)]
unsafe fn rating_loop<L: Lanes, O: FixedLoss, const K: usize>(ratings: &[Rating], mut users: BlockRows, mut items: BlockRows, k: usize, step: &Step) -> LossSums {
    let k = if K == 0 { k } else { K };
    let step = &Step { loss: O::LOSS, ..*step };
    let svdpp = !users.prior.is_empty();
    let mut sums = LossSums::default();
    let mut ahead: Option<f32> = None;
    // Two loops, one per way of summing: the squared error's loop cut into batches as well was
    // 3.5% slower at rank 32.
    if O::LOSS.sums_as_it_goes() {
        for (j, r) in ratings.iter().enumerate() {
            // SAFETY: `r` is rating `j` of the block, whose rows were checked.
            let (_, at) = unsafe { train_rating::<L>(ratings, j, r, &mut ahead, &mut users, &mut items, k, svdpp, step) };
            sums.add_read(O::LOSS, at.terms);
        }
    } else {
        let (mut lanes, mut scores) = (SumLanes::default(), [0.0f32; SCORED_BATCH]);
        for (start, batch) in (0..).step_by(SCORED_BATCH).zip(ratings.chunks(SCORED_BATCH)) {
            for ((j, r), scored) in (start..).zip(batch).zip(scores.iter_mut()) {
                // SAFETY: as above.
                (*scored, _) = unsafe { train_rating::<L>(ratings, j, r, &mut ahead, &mut users, &mut items, k, svdpp, step) };
            }
            add_scored::<O>(&mut lanes, batch, &scores[..batch.len()], step);
        }
        sums = lanes.total();
    }
    sums.finish_read(O::LOSS, ratings.len());
    sums
}

/// Trains `r`, rating `j` of the block: returns the score it was updated from and the loss
/// there. `ahead` carries the next rating's score, computed here before this update's writes
/// when the two share no row ([`rating_loop`]). `svdpp`: whether the users have the SVD++
/// term's rows. (The rating is passed as the loop's iterator gives it: taken here by index,
/// the squared error's loop was 2% slower at rank 32.)
///
/// # Safety
/// `r` is `ratings[j]`, and every rating's rows lie in `users` and `items` ([`train_block`]
/// checked them).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn train_rating<L: Lanes>(ratings: &[Rating], j: usize, r: &Rating, ahead: &mut Option<f32>, users: &mut BlockRows, items: &mut BlockRows, k: usize, svdpp: bool, step: &Step) -> (f32, AtScore) {
    let local = |r: &Rating| (r.user.wrapping_sub(users.first) as usize, r.item.wrapping_sub(items.first) as usize);
    let (u, i) = local(r);
    // Within a block the user rows repeat but the item rows jump about: the item row a few
    // ratings on is asked for now, so its cache misses overlap these updates; and the user
    // row further on, for users met for the first time in the block.
    if let Some(later) = ratings.get(j + PREFETCH_AHEAD) {
        // SAFETY (here and below): the caller's contract.
        prefetch(unsafe { row(items.factors, local(later).1, k) });
    }
    if let Some(later) = ratings.get(j + USER_AHEAD) {
        prefetch(unsafe { row(users.factors, local(later).0, k) });
    }
    let score = match ahead.take() {
        Some(score) => score,
        None => unsafe { score_at::<L>((u, i), users, items, k, step) },
    };
    if let Some(next) = ratings.get(j + 1).filter(|next| next.user != r.user && next.item != r.item) {
        *ahead = Some(unsafe { score_at::<L>(local(next), users, items, k, step) });
    }
    let at = unsafe {
        let (prior, share): (&[f32], &mut [f32]) = if svdpp { (row(users.prior, u, k), row_mut(users.share, u, k)) } else { (&[], &mut []) };
        sgd_update(
            score,
            row_mut(users.factors, u, k),
            row_mut(items.factors, i, k),
            users.bias.get_unchecked_mut(u),
            items.bias.get_unchecked_mut(i),
            (*users.weights.get_unchecked(u), *items.weights.get_unchecked(i)),
            prior,
            share,
            r.value,
            step,
        )
    };
    (score, at)
}

/// Adds to `sums` the loss terms of `ratings` at `scores`, the scores they were updated from,
/// in two loops that vectorise: each rating's terms ([`Loss::at`], branch-free for that), then
/// their sums. At most [`SCORED_BATCH`] ratings.
#[inline(always)]
fn add_scored<O: FixedLoss>(sums: &mut SumLanes, ratings: &[Rating], scores: &[f32], step: &Step) {
    let n = ratings.len().min(SCORED_BATCH);
    let mut terms = [[0.0f32; SCORED_BATCH]; 4];
    for (j, (r, &score)) in ratings[..n].iter().zip(scores).enumerate() {
        let at = loss_at(score, r.value, step).terms;
        for t in 0..4 {
            terms[t][j] = at[t];
        }
    }
    sums.add(O::LOSS, [&terms[0][..n], &terms[1][..n], &terms[2][..n], &terms[3][..n]]);
}

/// Tries at drawing a row without an event before an event goes without a pair (an anchor with
/// events on almost every row of the block's other side).
const SAMPLE_TRIES: u32 = 32;

/// Marks a rating with no row drawn against it: not an event, or every try hit an event. The
/// GPU's pair records carry it as its `UNKNOWN`.
pub(crate) const NO_DRAW: u32 = u32::MAX;

/// SplitMix64's finaliser: a seed mixed so that nearby inputs give unrelated streams.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The seed of epoch `epoch`'s draws, from the run's seed.
pub(crate) fn epoch_sample_seed(seed: u64, epoch: usize) -> u64 {
    mix(seed ^ mix(epoch as u64 + 1))
}

/// Where a block sits for its draws: the seed of its stream (from the epoch's seed and the
/// block's first user and item, so a block draws the same rows whichever thread or device
/// trains it), its first user and item, and its rows on each side.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PairBlock {
    pub stream: u64,
    pub first: (u32, u32),
    pub rows: (usize, usize),
}

impl PairBlock {
    pub fn new(sample_seed: u64, first: (u32, u32), rows: (usize, usize)) -> PairBlock {
        PairBlock { stream: mix(sample_seed ^ mix(((first.0 as u64) << 32) | first.1 as u64)), first, rows }
    }
}

/// Try `attempt` at a row among `n` for the `nth` event of `anchor` (a row of the block): a
/// counter-based draw, a pure function of its inputs, so the draws of many anchors can be made
/// in any order, on any thread, and the CPU and the GPU's host draw the same.
fn draw(stream: u64, anchor: u32, nth: u32, attempt: u32, n: usize) -> u32 {
    let h = mix(mix(stream ^ anchor as u64) ^ (((nth as u64) << 8) | attempt as u64));
    (((h >> 32) * n as u64) >> 32) as u32
}

/// The rows drawn against a block's ratings for the pairwise losses, one per rating in the
/// block's order, as rows of the block (or [`NO_DRAW`]). For `bpr` the anchor of a rating is its
/// user and a row is drawn among the block's items on which that user has no event; for
/// `bpr-columns` the anchor is the item and the draw among the block's users. Ratings of 0
/// (below `--positive-threshold`) are no events: never paired, free to be drawn. A rating naming a
/// row outside the block (a corrupt block read from disk) is an error naming it.
pub(crate) fn draw_pairs(ratings: &[Rating], columns: bool, block: &PairBlock) -> Result<Vec<u32>> {
    let local = |j: usize| -> Result<(u32, u32)> {
        let r = ratings[j];
        let (u, i) = (r.user.wrapping_sub(block.first.0), r.item.wrapping_sub(block.first.1));
        if u as usize >= block.rows.0 || i as usize >= block.rows.1 {
            return Err(Error::Data(format!("rating {j} of a block names user {} and item {}, outside the block's users and items: the block is corrupt", r.user, r.item)));
        }
        Ok(if columns { (i, u) } else { (u, i) })
    };
    let (anchors, others) = if columns { (block.rows.1, block.rows.0) } else { block.rows };
    // A stable counting sort of the ratings by anchor: each anchor's ratings together, in
    // block order.
    let mut starts = vec![0usize; anchors + 1];
    let mut pairs = Vec::with_capacity(ratings.len());
    for j in 0..ratings.len() {
        let (a, o) = local(j)?;
        starts[a as usize + 1] += 1;
        pairs.push((a, o));
    }
    for a in 0..anchors {
        starts[a + 1] += starts[a];
    }
    let mut by_anchor = vec![0u32; ratings.len()];
    let mut next = starts.clone();
    for (j, &(a, _)) in pairs.iter().enumerate() {
        by_anchor[next[a as usize]] = j as u32;
        next[a as usize] += 1;
    }
    let mut draws = vec![NO_DRAW; ratings.len()];
    let mut events: Vec<u32> = Vec::new();
    for a in 0..anchors {
        let run = &by_anchor[starts[a]..starts[a + 1]];
        events.clear();
        events.extend(run.iter().filter(|&&j| ratings[j as usize].value > 0.0).map(|&j| pairs[j as usize].1));
        events.sort_unstable();
        events.dedup();
        if events.len() >= others {
            continue;
        }
        for (nth, &j) in run.iter().filter(|&&j| ratings[j as usize].value > 0.0).enumerate() {
            let free = |&o: &u32| events.binary_search(&o).is_err();
            if let Some(o) = (0..SAMPLE_TRIES).map(|t| draw(block.stream, a as u32, nth as u32, t, others)).find(free) {
                draws[j as usize] = o;
            }
        }
    }
    Ok(draws)
}

/// The pairwise block loop (BPR): for each event with a row drawn against it
/// ([`draw_pairs`]: for `bpr` an item of the block without an event of the user's), one step
/// goes down the logistic loss of the difference x = s_ui − s_uj: with g = σ(−x),
/// p_u += lr(g(q_i − q_j) − w_u·λ·p_u), q_i += lr(g·p_u − w_i·λ·q_i),
/// q_j += lr(−g·p_u − w_j·λ·q_j), and the item biases likewise. For `bpr-columns` the roles
/// of users and items swap. The steps go in the block's order, whatever it is: the CPU's by
/// user, or the GPU's shuffled one (the exact test).
fn train_block_pairwise<L: Lanes>(ratings: &[Rating], users: BlockRows, items: BlockRows, k: usize, step: &Step) -> Result<LossSums> {
    let columns = step.loss == Loss::BprColumns;
    let draws = draw_pairs(ratings, columns, &PairBlock::new(step.sample_seed, (users.first, items.first), (users.rows(), items.rows())))?;
    let first = (users.first, items.first);
    let (anchors, others) = if columns { (items, users) } else { (users, items) };
    let (mut sums, mut log_part) = (LossSums::default(), LogSum::default());
    for (r, &other) in ratings.iter().zip(&draws) {
        if other == NO_DRAW {
            continue;
        }
        // Within the block: draw_pairs checked every rating's rows.
        let (u, i) = ((r.user - first.0) as usize, (r.item - first.1) as usize);
        let (a, o) = if columns { (i, u) } else { (u, i) };
        let at = pairwise_update::<L>(o, other as usize, &mut anchors.factors[a * k..][..k], &mut *others.factors, &mut *others.bias, (anchors.weights[a], others.weights), k, step);
        sums.add(at.terms);
        log_part.add(at.log1p);
    }
    sums.loss += log_part.total();
    Ok(sums)
}

/// One BPR step for user row `p`, event item `i` and non-event item `j` (rows of the block's
/// `q`, `i` ≠ `j`); returns the loss at the difference before the step.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn pairwise_update<L: Lanes>(i: usize, j: usize, p: &mut [f32], q: &mut [f32], bias: &mut [f32], (wu, wq): (f32, &[f32]), k: usize, s: &Step) -> AtScore {
    let (qi, qj) = two_rows(q, i, j, k);
    let mut x = L::dot(p, qi) - L::dot(p, qj);
    if s.biases {
        x += bias[i] - bias[j];
    }
    let at = s.loss.at(x, 1.0, Unit::of(1.0));
    let g = at.slopes.0;
    let (ru, ri, rj) = (wu * s.reg, wq[i] * s.reg, wq[j] * s.reg);
    for f in 0..k {
        let (a, b, c) = (p[f], qi[f], qj[f]);
        p[f] = a + s.lr * (g * (b - c) - ru * a);
        qi[f] = b + s.lr * (g * a - ri * b);
        qj[f] = c + s.lr * (-g * a - rj * c);
    }
    if s.biases {
        bias[i] += s.lr * (g - wq[i] * s.reg_bias * bias[i]);
        bias[j] += s.lr * (-g - wq[j] * s.reg_bias * bias[j]);
    }
    at
}

/// Rows `a` and `b` (a ≠ b) of `rows` at rank `k`, both writable.
#[inline(always)]
fn two_rows(rows: &mut [f32], a: usize, b: usize, k: usize) -> (&mut [f32], &mut [f32]) {
    if a < b {
        let (low, high) = rows.split_at_mut(b * k);
        (&mut low[a * k..][..k], &mut high[..k])
    } else {
        let (low, high) = rows.split_at_mut(a * k);
        (&mut high[..k], &mut low[b * k..][..k])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vector::Portable;
    use crate::choice::Choice;

    /// One update as a trainer makes it: the score, then the step.
    #[allow(clippy::too_many_arguments)]
    fn update(p: &mut [f32], q: &mut [f32], bu: &mut f32, bi: &mut f32, weight: (f32, f32), value: f32, s: &Step) -> AtScore {
        let at = score::<Portable>(p, q, *bu, *bi, s);
        sgd_update(at, p, q, bu, bi, weight, &[], &mut [], value, s)
    }

    /// [`train_block`] on whole rows starting at 0, without the SVD++ term: (factors, biases,
    /// weights) of the users, then of the items.
    fn train_rows(block: &[Rating], users: (&mut [f32], &mut [f32], &[f32]), items: (&mut [f32], &mut [f32], &[f32]), k: usize, s: &Step) -> LossSums {
        let checked = BlockRatings::check(block, 0..users.1.len(), 0..items.1.len()).unwrap();
        let (users, items) = (BlockRows { first: 0, factors: users.0, bias: users.1, weights: users.2, prior: &[], share: &mut [] }, BlockRows { first: 0, factors: items.0, bias: items.1, weights: items.2, prior: &[], share: &mut [] });
        train_block(checked, users, items, k, s).unwrap()
    }

    fn step(loss: Loss) -> Step {
        Step { lr: 0.1, reg: 0.05, reg_bias: 0.02, mean: 0.5, biases: true, loss, unit: Unit::of(1.0), label_middle: loss.is_binary().then_some(0.0), l1: 0.0, nonneg: false, sample_seed: 7, share_weight: 1.0 }
    }

    #[test]
    fn the_share_weight_scales_what_the_updates_gather_and_nothing_else() {
        // The SVD++ term's rows on a tangled block at weights 1, 3 and 0: the factors and
        // biases come out the same bits, the shares three times as large, then none at all.
        let (k, m, n) = (16, 5, 4);
        let block = tangled_block();
        let run = |weight: f32| {
            let start = |rows: usize, salt: f32| -> Vec<f32> { (0..rows * k).map(|x| (x as f32 * 0.37 + salt).sin() * 0.3).collect() };
            let (mut p, mut q, mut bu, mut bi, mut share) = (start(m, 0.1), start(n, 0.7), vec![0.05f32; m], vec![-0.05f32; n], vec![0.0f32; m * k]);
            let (wu, wi, z) = (vec![1.0f32; m], vec![0.5f32; n], start(m, 0.3));
            let checked = BlockRatings::check(&block, 0..m, 0..n).unwrap();
            let users = BlockRows { first: 0, factors: &mut p, bias: &mut bu, weights: &wu, prior: &z, share: &mut share };
            let items = BlockRows { first: 0, factors: &mut q, bias: &mut bi, weights: &wi, prior: &[], share: &mut [] };
            train_block(checked, users, items, k, &step(Loss::Squared).gathering_shares(weight)).unwrap();
            (p, q, bu, bi, share)
        };
        let ((p1, q1, bu1, bi1, share1), (p3, q3, bu3, bi3, share3), (p0, q0, bu0, bi0, share0)) = (run(1.0), run(3.0), run(0.0));
        assert!((p1 == p3 && p1 == p0) && (q1 == q3 && q1 == q0) && (bu1 == bu3 && bu1 == bu0) && (bi1 == bi3 && bi1 == bi0), "the steps are the same");
        let largest = share1.iter().fold(0.0f32, |a, s| a.max(s.abs()));
        assert!(largest > 1e-3 && share1.iter().zip(&share3).all(|(a, b)| (3.0 * a - b).abs() <= 1e-5 * largest), "weighted three times");
        assert!(share0.iter().all(|&s| s == 0.0), "nothing gathered at weight 0");
    }

    #[test]
    fn binary_losses_map_each_value_to_its_label_and_the_others_take_it_as_it_is() {
        // 0/1 labels: the middle is 0.5.
        let logistic = Step { label_middle: Some(0.5), ..step(Loss::Logistic) };
        assert_eq!((logistic.label(0.0), logistic.label(1.0)), (-1.0, 1.0));
        let squared = step(Loss::Squared);
        assert_eq!((squared.label(0.0), squared.label(4.5)), (0.0, 4.5));
    }

    #[test]
    fn a_drawn_row_is_never_an_event_of_its_anchor_and_each_free_row_is_drawn() {
        // Block at users 100.., items 40..50. User 100 has events on items 41, 42, 45, 49
        // (and a rating below the threshold on 43, no event: free to be drawn); user 101 has
        // events on every item, so nothing can be drawn for it.
        let mut ratings: Vec<Rating> = [41u32, 42, 45, 49].iter().cycle().take(2000).map(|&item| Rating { user: 100, item, value: 1.0 }).collect();
        ratings.push(Rating { user: 100, item: 43, value: 0.0 });
        ratings.extend((40..50).map(|item| Rating { user: 101, item, value: 1.0 }));
        let block = PairBlock::new(3, (100, 40), (2, 10));
        let draws = draw_pairs(&ratings, false, &block).unwrap();
        let drawn: std::collections::BTreeSet<u32> = draws[..2000].iter().map(|&d| d + 40).collect();
        assert_eq!(drawn.into_iter().collect::<Vec<_>>(), vec![40, 43, 44, 46, 47, 48]);
        assert!(draws[2000..].iter().all(|&d| d == NO_DRAW), "no pair for a non-event or an anchor with every row an event");
        // The draws depend on the block and each anchor's events in order, not on where the
        // anchors' ratings sit: interleaving the users changes none of user 100's.
        let mut mixed = ratings.clone();
        mixed.rotate_right(10);
        let again = draw_pairs(&mixed, false, &block).unwrap();
        assert_eq!(&again[10..2010], &draws[..2000]);
        assert_ne!(draw_pairs(&ratings, false, &PairBlock::new(4, (100, 40), (2, 10))).unwrap(), draws, "another seed draws others");
        // By columns, the anchor is the item: on items 41, 42, 45 and 49 both users have
        // events, so nothing is drawn; on the others user 101's events are paired with user 100.
        let columns = draw_pairs(&ratings, true, &block).unwrap();
        assert!(columns[..2001].iter().all(|&d| d == NO_DRAW));
        let expected: Vec<u32> = (40..50).map(|item| if [41, 42, 45, 49].contains(&item) { NO_DRAW } else { 0 }).collect();
        assert_eq!(&columns[2001..], &expected[..]);
        let corrupt = [Rating { user: 102, item: 40, value: 1.0 }];
        assert!(draw_pairs(&corrupt, false, &block).unwrap_err().to_string().contains("user 102"));
    }

    #[test]
    fn bpr_pairs_each_event_with_items_without_one_and_repeats_for_a_seed() {
        // User 0 has events on items 0–2 of a block of 4 (and a rating below the threshold on
        // item 3, no event): every pair is (event, item 3), so item 3's bias only falls and
        // the others' only rise. User 1 has events on every item: no pair, no step.
        let k = 3;
        let block: Vec<Rating> = [(0, 0, 1.0), (0, 1, 1.0), (0, 2, 1.0), (0, 3, 0.0), (1, 0, 1.0), (1, 1, 1.0), (1, 2, 1.0), (1, 3, 1.0)]
            .iter()
            .cycle()
            .take(8 * 5)
            .map(|&(user, item, value)| Rating { user, item, value })
            .collect();
        let mut block = block;
        block.sort_by_key(|r| r.user);
        let run = |seed: u64| {
            let s = Step { sample_seed: seed, mean: 0.0, ..step(Loss::Bpr) };
            let (mut p, mut q) = (vec![0.1f32; 2 * k], (0..4 * k).map(|x| (x as f32 * 0.3).sin() * 0.1).collect::<Vec<f32>>());
            let (mut bu, mut bi) = (vec![0.0f32; 2], vec![0.0f32; 4]);
            let (wu, wi) = (vec![1.0f32; 2], vec![1.0f32; 4]);
            let p1 = p[k..].to_vec();
            let sums = train_rows(&block, (&mut p, &mut bu, &wu), (&mut q, &mut bi, &wi), k, &s);
            assert_eq!(sums.count, 15, "user 0's 15 events, none of user 1's");
            assert_eq!(&p[k..], &p1[..], "user 1 had no non-event to compare with");
            assert!(bi[3] < 0.0 && bi[..3].iter().all(|&b| b > 0.0), "{bi:?}");
            assert_eq!(bu, vec![0.0, 0.0], "user biases cancel in a difference");
            (p, q)
        };
        assert_eq!(run(5), run(5), "the same seed draws the same items");
    }

    #[test]
    fn bpr_by_columns_pairs_each_event_with_users_without_one_on_its_item() {
        // Item 0 has events of users 0–2 of a block of 4 (user 3's rating is below the
        // threshold): every pair is (event, user 3), so user 3's bias only falls and the
        // others' only rise; the item biases stay.
        let k = 3;
        let block: Vec<Rating> = [(0, 0, 1.0), (1, 0, 1.0), (2, 0, 1.0), (3, 0, 0.0)].iter().cycle().take(4 * 5).map(|&(user, item, value)| Rating { user, item, value }).collect();
        let s = Step { mean: 0.0, ..step(Loss::BprColumns) };
        let (mut p, mut q) = ((0..4 * k).map(|x| (x as f32 * 0.3).sin() * 0.1).collect::<Vec<f32>>(), vec![0.1f32; k]);
        let (mut bu, mut bi) = (vec![0.0f32; 4], vec![0.0f32; 1]);
        let (wu, wi) = (vec![1.0f32; 4], vec![1.0f32; 1]);
        let sums = train_rows(&block, (&mut p, &mut bu, &wu), (&mut q, &mut bi, &wi), k, &s);
        assert_eq!(sums.count, 15);
        assert!(bu[3] < 0.0 && bu[..3].iter().all(|&b| b > 0.0), "{bu:?}");
        assert_eq!(bi, vec![0.0]);
    }

    #[test]
    fn one_update_follows_the_rule_for_every_loss() {
        for &(loss, _, _) in Loss::ALL {
            let s = step(loss);
            let (p0, q0) = ([0.3f32, -0.2, 0.5], [0.4f32, 0.1, -0.3]);
            let (mut p, mut q, mut bu, mut bi) = (p0, q0, 0.1f32, -0.2f32);
            let value = if loss.is_binary() { -1.0 } else { 2.0 };
            let terms = update(&mut p, &mut q, &mut bu, &mut bi, (1.5, 0.5), value, &s);
            // Summed in the update's order, so the terms compare bit for bit.
            let score = 0.5 + crate::vector::dot(&p0, &q0) + (0.1 + -0.2);
            let g = -loss.gradient(score, value);
            for f in 0..3 {
                assert!((p[f] - (p0[f] + 0.1 * (g * q0[f] - 1.5 * 0.05 * p0[f]))).abs() < 1e-6, "{loss:?}: p[{f}]");
                assert!((q[f] - (q0[f] + 0.1 * (g * p0[f] - 0.5 * 0.05 * q0[f]))).abs() < 1e-6, "{loss:?}: q[{f}]");
            }
            assert!((bu - (0.1 + 0.1 * (g - 1.5 * 0.02 * 0.1))).abs() < 1e-6, "{loss:?}: b_u");
            assert!((bi - (-0.2 + 0.1 * (g - 0.5 * 0.02 * -0.2))).abs() < 1e-6, "{loss:?}: b_i");
            assert_eq!(terms, loss.at(score, value, Unit::of(1.0)), "{loss:?}: the loss is taken before the update");
        }
    }

    #[test]
    fn l1_shrinks_toward_zero_and_stops_there_and_nonneg_projects() {
        let s = Step { l1: 1.0, ..step(Loss::Squared) };
        // Slope 0 (score = value), no λ: only the L1 cut of lr·w·l1 = 0.1·2 acts.
        let (mut p, mut q, mut bu, mut bi) = ([0.5f32, -0.05, 0.0], [0.0f32, 0.0, 0.0], 0.0f32, 0.0f32);
        let s = Step { reg: 0.0, biases: false, mean: 0.0, ..s };
        update(&mut p, &mut q, &mut bu, &mut bi, (2.0, 1.0), 0.0, &s);
        assert!((p[0] - 0.3).abs() < 1e-6 && p[1] == 0.0 && p[2] == 0.0, "{p:?}");
        let s = Step { l1: 0.0, nonneg: true, ..s };
        let (mut p, mut q) = ([0.5f32, -0.5], [0.5f32, 0.5]);
        update(&mut p, &mut q, &mut bu, &mut bi, (1.0, 1.0), -4.0, &s);
        assert!(p.iter().chain(&q).all(|&x| x >= 0.0), "{p:?} {q:?}");
        assert_eq!(p[1], 0.0, "the negative factor is projected to zero");
    }

    /// Ratings over 5 users and 4 items in which neighbours often share a user or an item.
    fn tangled_block() -> Vec<Rating> {
        tangled_ratings(64)
    }

    /// `n` ratings as [`tangled_block`]'s.
    fn tangled_ratings(n: usize) -> Vec<Rating> {
        let pairs = [(0, 0), (1, 0), (1, 1), (2, 1), (0, 2), (3, 2), (3, 3), (4, 0), (4, 3), (2, 3), (0, 1), (1, 2), (1, 3), (4, 1), (2, 0), (3, 0)];
        pairs.iter().cycle().take(n).enumerate().map(|(j, &(user, item))| Rating { user, item, value: if j % 3 == 0 { 1.0 } else { -1.0 } }).collect()
    }

    #[test]
    fn the_block_loop_gives_the_bits_of_one_update_after_another() {
        // The loop scores the next rating while this one updates when they share no row; a
        // shared user or item must wait. Compare with updates made strictly in turn, and the
        // loop's sums (for most losses from its recorded scores, a batch at a time: here two
        // whole batches and a part) with each rating's terms. (The pairwise loss has its own
        // loop.)
        let k = 5;
        for &(loss, _, _) in Loss::ALL.iter().filter(|(l, _, _)| l.trains_by_sgd() && !l.is_pairwise()) {
            let s = Step { l1: 0.01, ..step(loss) };
            let start = |rows: usize, salt: f32| -> Vec<f32> { (0..rows * k).map(|x| ((x as f32 * 0.37 + salt).sin() * 0.3).abs()).collect() };
            let (mut p, mut q) = (start(5, 0.1), start(4, 0.7));
            let (mut bu, mut bi) = (vec![0.05f32; 5], vec![-0.05f32; 4]);
            let (wu, wi) = (vec![1.0f32; 5], vec![0.5f32; 4]);
            // Real values 1 and 3 (KL's must be positive), binary labels ±1.
            let lift = if loss.is_binary() { 0.0 } else { 2.0 };
            let block: Vec<Rating> = tangled_ratings(2 * SCORED_BATCH + 300).into_iter().map(|r| Rating { value: r.value + lift, ..r }).collect();
            let (mut p2, mut q2, mut bu2, mut bi2) = (p.clone(), q.clone(), bu.clone(), bi.clone());
            let sums = train_rows(&block, (&mut p, &mut bu, &wu), (&mut q, &mut bi, &wi), k, &s);
            let mut each = LossSums::default();
            for r in &block {
                let (u, i) = (r.user as usize, r.item as usize);
                let (pu, qi) = (&mut p2[u * k..][..k], &mut q2[i * k..][..k]);
                let at = score::<Portable>(pu, qi, bu2[u], bi2[i], &s);
                each.add(loss.terms(at, s.label(r.value)));
                sgd_update(at, pu, qi, &mut bu2[u], &mut bi2[i], (wu[u], wi[i]), &[], &mut [], r.value, &s);
            }
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!((bits(&p), bits(&q), bits(&bu), bits(&bi)), (bits(&p2), bits(&q2), bits(&bu2), bits(&bi2)), "{loss:?}");
            // The same terms added in another order; the update takes the logistic loss's
            // value from a table, `terms` from the exp: the same to within 1e-7 a rating.
            let close = |a: f64, b: f64, what: &str| assert!((a - b).abs() <= 1e-5 * b.abs().max(1.0), "{loss:?}: {what} {a} against {b}");
            assert_eq!(sums.count, each.count, "{loss:?}");
            close(sums.loss, each.loss, "loss");
            if loss.family() == crate::objective::Family::Real {
                close(sums.squared, each.squared, "squared error");
                close(sums.absolute, each.absolute, "absolute error");
            } else {
                assert_eq!(sums.correct, each.correct, "{loss:?}: right signs");
            }
        }
    }

    /// The block loop on each path this CPU can run (portable, portable with the rank not fixed
    /// at compile time, AVX2, AVX-512): (p, q, b_u, b_i, share) as bits.
    fn on_every_path(k: usize, loss: Loss, nonneg: bool, l1: f32, prior: bool) -> Vec<Vec<Vec<u32>>> {
        let s = Step { nonneg, l1, ..step(loss) };
        let (m, n) = (5, 4);
        let start = |rows: usize, salt: f32| -> Vec<f32> { (0..rows * k).map(|x| ((x as f32 * 0.37 + salt).sin() * 0.3).abs()).collect() };
        let block = tangled_block();
        let run = |path: usize| -> Vec<Vec<u32>> {
            let (mut p, mut q, mut bu, mut bi) = (start(m, 0.1), start(n, 0.7), vec![0.05f32; m], vec![-0.05f32; n]);
            let (wu, wi, z) = (vec![1.0f32; m], vec![0.5f32; n], start(m, 0.3));
            let mut share = vec![0.0f32; if prior { m * k } else { 0 }];
            let z: &[f32] = if prior { &z } else { &[] };
            let users = BlockRows { first: 0, factors: &mut p, bias: &mut bu, weights: &wu, prior: z, share: &mut share };
            let items = BlockRows { first: 0, factors: &mut q, bias: &mut bi, weights: &wi, prior: &[], share: &mut [] };
            // SAFETY (all): the block's ratings name rows 0..5 and 0..4 (`tangled_block`), and
            // only paths up to the widest this CPU runs are taken (below).
            match path {
                0 => unsafe { train_block_with::<Portable>(&block, users, items, k, &s) },
                1 => Ok(unsafe { any_rank(&block, users, items, k, &s) }),
                #[cfg(target_arch = "x86_64")]
                2 => unsafe { train_block_avx2(&block, users, items, k, &s) },
                #[cfg(target_arch = "x86_64")]
                _ => unsafe { train_block_avx512(&block, users, items, k, &s) },
                #[cfg(not(target_arch = "x86_64"))]
                _ => unreachable!(),
            }
            .unwrap();
            [p, q, bu, bi, share].iter().map(|v| v.iter().map(|x| x.to_bits()).collect()).collect()
        };
        let widest = match crate::vector::widest() {
            crate::vector::Path::Portable => 1,
            crate::vector::Path::Avx2 => 2,
            crate::vector::Path::Avx512 => 3,
        };
        (0..=widest).map(run).collect()
    }

    /// The portable loop compiled for any rank, even one [`at_rank`] fixes.
    ///
    /// # Safety
    /// As [`train_block_with`].
    unsafe fn any_rank(block: &[Rating], users: BlockRows, items: BlockRows, k: usize, s: &Step) -> LossSums {
        match s.loss {
            Loss::Squared => rating_loop::<Portable, SquaredLoss, 0>(block, users, items, k, s),
            Loss::Absolute => rating_loop::<Portable, AbsoluteLoss, 0>(block, users, items, k, s),
            Loss::Kl => rating_loop::<Portable, KlLoss, 0>(block, users, items, k, s),
            Loss::Logistic => rating_loop::<Portable, LogisticLoss, 0>(block, users, items, k, s),
            Loss::Hinge => rating_loop::<Portable, HingeLoss, 0>(block, users, items, k, s),
            Loss::SquaredHinge => rating_loop::<Portable, SquaredHingeLoss, 0>(block, users, items, k, s),
            other => panic!("{other:?} has no rating loop"),
        }
    }

    #[test]
    fn every_vector_path_and_fixed_rank_gives_the_portable_bits() {
        // Rows of a pair of 8-float chunks, of whole pairs, of an odd chunk, with a tail under 8;
        // 16 and 32 are compiled as fixed ranks.
        for k in [16, 24, 32, 37, 128] {
            for &(loss, _, _) in Loss::ALL.iter().filter(|(l, _, _)| l.trains_by_sgd() && !l.is_pairwise()) {
                for (nonneg, l1, prior) in [(false, 0.0, false), (true, 0.0, true), (false, 0.01, true)] {
                    let paths = on_every_path(k, loss, nonneg, l1, prior);
                    for (path, bits) in paths.iter().enumerate().skip(1) {
                        assert!(bits == &paths[0], "rank {k}, {loss:?}, nonneg {nonneg}, l1 {l1}, prior {prior}: path {path} differs from the portable one (1: any rank, 2: AVX2, 3: AVX-512)");
                    }
                }
            }
        }
    }

    #[test]
    fn a_log_sum_is_the_sum_of_its_logs_over_many_folds() {
        let mut sum = LogSum::default();
        let mut exact = 0.0f64;
        for j in 0..5000 {
            let x = ((j as f32 * 0.618).fract()).powi(3);
            sum.add(x);
            exact += (x as f64).ln_1p();
        }
        assert!((sum.total() - exact).abs() < 1e-9 * exact, "{exact}");
        assert_eq!(LogSum::default().total(), 0.0);
    }

    #[test]
    fn a_rating_outside_the_blocks_rows_is_an_error_not_a_panic() {
        let (k, s) = (2, step(Loss::Squared));
        let (mut p, mut q, mut bu, mut bi) = (vec![0.1f32; 4], vec![0.1f32; 6], vec![0.0f32; 2], vec![0.0f32; 3]);
        let (wu, wi) = (vec![1.0f32; 2], vec![1.0f32; 3]);
        fn rows<'a>(first: u32, factors: &'a mut [f32], bias: &'a mut [f32], weights: &'a [f32]) -> BlockRows<'a> {
            BlockRows { first, factors, bias, weights, prior: &[], share: &mut [] }
        }
        // Users 10 and 11, items 20 to 22.
        let good = [Rating { user: 10, item: 22, value: 1.0 }];
        let block = BlockRatings::check(&good, 10..12, 20..23).unwrap();
        let sums = train_block(block, rows(10, &mut p, &mut bu, &wu), rows(20, &mut q, &mut bi, &wi), k, &s).unwrap();
        assert_eq!(sums.count, 1);
        // The check names the first rating outside the rows.
        for bad in [Rating { user: 12, item: 20, value: 1.0 }, Rating { user: 9, item: 20, value: 1.0 }, Rating { user: 10, item: u32::MAX, value: 1.0 }] {
            let e = BlockRatings::check(&[good[0], bad], 10..12, 20..23).unwrap_err().to_string();
            assert!(e.contains("rating 1 names") && e.contains("corrupt") && e.contains(&bad.user.to_string()), "{e}");
        }
        // Rows other than the block's (shifted, or fewer) are an error before any row moves.
        let before = (p.clone(), q.clone(), bu.clone(), bi.clone());
        let e = train_block(block, rows(11, &mut p, &mut bu, &wu), rows(20, &mut q, &mut bi, &wi), k, &s).unwrap_err().to_string();
        assert!(e.contains("was given the rows of users 11+2"), "{e}");
        let e = train_block(block, rows(10, &mut p, &mut bu, &wu), rows(20, &mut q[..4], &mut bi[..2], &wi[..2]), k, &s).unwrap_err().to_string();
        assert!(e.contains("items 20+3") && e.contains("items 20+2"), "{e}");
        assert_eq!((p, q, bu, bi), before, "a block given the wrong rows moved rows");
    }
}
