//! `--auto`: a small seeded search of rank, regularisation and learning rate, judged by the
//! loss's own metric on ratings held out of the training set (never on the test set), within
//! a time budget.
//!
//! Successive halving: every setting trains for a ninth of the epochs, the best third of them
//! for a third, the best third of those for all of them; the best at the last rung reached
//! wins. The given setting always goes on to the next rung: a ninth of the epochs favours
//! settings that learn fast, not those that end best (measured: with the defaults' small
//! initial factors the search otherwise dropped them after 7 epochs on MovieLens and chose a
//! setting that tested 0.005 worse), so the choice is always made against it at full length.
//! A trial costs what training costs on the chosen backend, so the search runs on the GPU when
//! training does. The settings are a grid around the given ones (rank ×½…×2, λ and the
//! learning rate ×½…×2; λ_bias moves with λ), so `--auto` refines what the user asked for
//! rather than replacing it.

use crate::data::RatingSet;
use crate::problem::{split_random, Problem};
use crate::error::{Error, Result};
use crate::model::Params;
use crate::objective::Metric;
use crate::training::{train, Backend};
use std::time::{Duration, Instant};

/// Seeds the held-out split apart from `--test-fraction`'s.
pub const HOLD_OUT_STREAM: u64 = 0x7661_6c69_6461_7465;

/// The share of the training ratings `--auto` holds out to judge settings by.
pub const AUTO_HOLD_OUT: f64 = 0.1;

/// Settings are cut to a third at each rung.
const KEEP_ONE_IN: usize = 3;

/// `problem`'s training ratings split into training and held-out (as `problem.test`), seeded
/// apart from every other split of the run.
pub fn hold_out(problem: &Problem, fraction: f64, seed: u64) -> Result<Problem> {
    if !(fraction > 0.0 && fraction < 1.0) {
        return Err(Error::InvalidParameter(format!("the held-out fraction must lie strictly between 0 and 1, got {fraction}")));
    }
    let training = RatingSet { entries: problem.train.clone(), users: problem.users.clone(), items: problem.items.clone() };
    split_random(&training, fraction, seed ^ HOLD_OUT_STREAM)
}

/// One setting trained for some epochs, and how it scored on the held-out ratings.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Trial {
    pub rank: usize,
    pub reg: f32,
    pub learning_rate: f32,
    pub epochs: usize,
    /// The loss's own metric on the held-out ratings (RMSE for the squared error); `None` when
    /// training diverged.
    pub score: Option<f64>,
    pub seconds: f64,
}

impl Trial {
    fn params(&self, base: &Params) -> Params {
        // λ_bias keeps its ratio to λ; with no λ to scale by (every trial's λ is then 0) it stays.
        let reg_bias = if base.reg > 0.0 { base.reg_bias * self.reg / base.reg } else { base.reg_bias };
        Params { rank: self.rank, reg: self.reg, reg_bias, learning_rate: self.learning_rate, epochs: self.epochs, eval_every: self.epochs, ..base.clone() }
    }

    /// The score to sort by, lowest best: the metric, negated where higher is better; a
    /// diverged trial last.
    fn rank_key(&self, metric: Metric) -> f64 {
        match self.score {
            Some(s) if metric.lower_is_better() => s,
            Some(s) => -s,
            None => f64::INFINITY,
        }
    }
}

/// What the search tried and chose.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Search {
    /// What the trials were judged by: the loss's own metric.
    pub metric: Metric,
    /// The chosen settings, with the given epochs.
    #[serde(skip)]
    pub chosen: Params,
    /// The best trial at the last rung reached, and the given settings' trial at the last rung
    /// they reached.
    pub best: Trial,
    pub given: Option<Trial>,
    pub trials: Vec<Trial>,
    /// Epochs of each rung reached.
    pub rungs: Vec<usize>,
    pub seconds: f64,
    /// Whether the budget cut the search short.
    pub cut_short: bool,
}

/// The grid around `base`: the given setting first, then the others in a seeded order (so a
/// budget that cuts the first rung short still samples the whole grid). Ranks stay within
/// what a model may hold with `--models`; a λ of 0 has no neighbours.
fn candidates(base: &Params) -> Vec<(usize, f32, f32)> {
    let ranks: Vec<usize> = [base.rank / 4, base.rank / 2, base.rank, base.rank * 2].into_iter().filter(|&k| k >= 4 && k * base.models.max(1) <= 4096).collect();
    let mut grid = Vec::new();
    for &rank in &ranks {
        for reg in [base.reg / 2.0, base.reg, base.reg * 2.0] {
            // Alternating least squares (the one-class loss) takes no learning rate.
            let lrs = if base.loss.trains_by_sgd() { vec![base.learning_rate / 2.0, base.learning_rate, base.learning_rate * 2.0] } else { vec![base.learning_rate] };
            for lr in lrs {
                if (rank, reg, lr) != (base.rank, base.reg, base.learning_rate) && !grid.contains(&(rank, reg, lr)) {
                    grid.push((rank, reg, lr));
                }
            }
        }
    }
    use rand::seq::SliceRandom;
    grid.shuffle(&mut crate::rng::part_rng(base.seed, 15, 0));
    grid.insert(0, (base.rank, base.reg, base.learning_rate));
    grid
}

/// Searches around `base` on `fit` (its `test` holds the held-out ratings) within `budget`,
/// calling `on_trial` after each trial.
pub fn search(fit: &Problem, base: &Params, backend: &Backend, budget: Duration, mut on_trial: impl FnMut(&Trial)) -> Result<Search> {
    base.validate()?;
    if fit.test.is_empty() {
        return Err(Error::Data("--auto needs held-out ratings to judge settings by, and there are none".into()));
    }
    let start = Instant::now();
    let metric = base.loss.metric();
    let mut rungs: Vec<usize> = vec![base.epochs.div_ceil(9).max(1), base.epochs.div_ceil(3).max(1), base.epochs];
    rungs.dedup();
    let mut alive = candidates(base);
    let mut trials: Vec<Trial> = Vec::new();
    let mut reached = Vec::new();
    let mut cut_short = false;
    let mut last_rung: Vec<Trial> = Vec::new();
    for (r, &epochs) in rungs.iter().enumerate() {
        // Each rung may spend its share of what is left.
        let rung_budget = budget.saturating_sub(start.elapsed()) / (rungs.len() - r) as u32;
        let rung_start = Instant::now();
        let mut scored: Vec<Trial> = Vec::new();
        for &(rank, reg, learning_rate) in &alive {
            // Stop when the next trial would likely overrun: the rung's trials so far give the pace.
            if !scored.is_empty() {
                let per_trial = rung_start.elapsed() / scored.len() as u32;
                if rung_start.elapsed() + per_trial > rung_budget {
                    cut_short = true;
                    break;
                }
            }
            let trial = run_trial(fit, base, backend, Trial { rank, reg, learning_rate, epochs, score: None, seconds: 0.0 })?;
            on_trial(&trial);
            trials.push(trial.clone());
            scored.push(trial);
        }
        if scored.is_empty() {
            break;
        }
        reached.push(epochs);
        scored.sort_by(|a, b| a.rank_key(metric).total_cmp(&b.rank_key(metric)));
        let first = trials.iter().filter(|t| t.epochs == rungs[0]).count();
        alive = survivors(&scored, first.div_ceil(KEEP_ONE_IN.pow(r as u32 + 1)), base);
        last_rung = scored;
        if alive.len() == 1 {
            break;
        }
    }
    let best = last_rung.first().cloned().ok_or_else(|| Error::InvalidParameter(format!("--budget {} s is too short for even one trial", budget.as_secs_f64())))?;
    if best.score.is_none() {
        return Err(Error::Data("--auto: every setting tried diverged; lower --lr or raise --reg".into()));
    }
    let given = trials.iter().rev().find(|t| (t.rank, t.reg, t.learning_rate) == (base.rank, base.reg, base.learning_rate)).cloned();
    let chosen = Params { epochs: base.epochs, eval_every: base.eval_every, ..best.params(base) };
    Ok(Search { metric, chosen, best, given, trials, rungs: reached, seconds: start.elapsed().as_secs_f64(), cut_short })
}

/// `trial` trained and scored on `fit`'s held-out ratings (no score where it diverged).
fn run_trial(fit: &Problem, base: &Params, backend: &Backend, mut trial: Trial) -> Result<Trial> {
    let began = Instant::now();
    trial.score = match train(fit, &trial.params(base), backend, |_| {}) {
        Ok(t) => t.history.last().and_then(|h| h.test_metric()).filter(|x| x.is_finite()),
        // A setting that diverges loses; the search goes on.
        Err(Error::Data(message)) if message.starts_with("training diverged") => None,
        Err(e) => return Err(e),
    };
    trial.seconds = began.elapsed().as_secs_f64();
    Ok(trial)
}

/// The settings that go on to the next rung: the best `keep` of a rung's trials `scored`
/// (sorted best first; a third of the first rung's count, a ninth, ..., so the given setting
/// carried along does not widen the later rungs), and `base`'s own where it was tried.
fn survivors(scored: &[Trial], keep: usize, base: &Params) -> Vec<(usize, f32, f32)> {
    let mut alive: Vec<_> = scored.iter().take(keep).map(|t| (t.rank, t.reg, t.learning_rate)).collect();
    let given = (base.rank, base.reg, base.learning_rate);
    // First, so that a rung the budget cuts short still compares against it.
    if !alive.contains(&given) && scored.iter().any(|t| (t.rank, t.reg, t.learning_rate) == given) {
        alive.insert(0, given);
    }
    alive
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grid_starts_with_the_given_setting_and_holds_each_once() {
        let base = Params::default();
        let grid = candidates(&base);
        assert_eq!(grid[0], (base.rank, base.reg, base.learning_rate));
        assert_eq!(grid.len(), 4 * 3 * 3);
        let mut sorted: Vec<String> = grid.iter().map(|g| format!("{g:?}")).collect();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), grid.len());
        assert_eq!(candidates(&base), grid, "seeded");
        // Ranks below 4 are left out, and ranks --models could not hold.
        assert_eq!(candidates(&Params { rank: 8, ..base.clone() }).len(), 3 * 3 * 3);
        assert!(candidates(&Params { models: 32, ..base.clone() }).iter().all(|&(k, _, _)| k * 32 <= 4096));
        // The one-class loss's grid has no learning rates.
        assert_eq!(candidates(&Params { rank: 8, ..Params::for_loss(crate::objective::Loss::Ials) }).len(), 3 * 3);
        // With λ 0 the grid holds each rank and learning rate once.
        let unregularised = candidates(&Params { reg: 0.0, ..base.clone() });
        assert_eq!(unregularised.len(), 4 * 3);
        let trial = Trial { rank: 64, reg: 0.0, learning_rate: 0.01, epochs: 1, score: None, seconds: 0.0 };
        assert_eq!(trial.params(&Params { reg: 0.0, ..base }).reg_bias, Params::default().reg_bias);
    }
}
