//! The training loop shared by every backend, above them: a backend ([`Solver`]) only says how
//! an epoch runs; the learning-rate schedule, when the test set is scored, early stopping, the
//! reports and the result are common.

use crate::cpu::{als::AlsSolver, CpuMode, CpuSolver};
use crate::problem::Problem;
use crate::error::{Error, Result};
use crate::gpu::{als::GpuAlsSolver, GpuOptions, GpuSolver};
use crate::metrics::Scores;
use crate::model::{Model, Params};
use crate::objective::{Loss, Metric};
use crate::solver::{EpochFigures, Solver, UploadCounts};
use std::collections::VecDeque;
use std::time::Instant;

/// How many epochs apart the SVD++-style term's passes run for `params` (benches/svdpp.rs times
/// whole periods of them).
pub use crate::svdpp::pass_every as svdpp_pass_every;

/// Where training runs.
#[derive(Clone, Debug, PartialEq)]
pub enum Backend {
    Cpu(CpuMode),
    Gpu(GpuOptions),
}

impl Backend {
    /// The order within blocks this backend trains in, and so writes a block cache in
    /// (`--memory`): the CPU's ([`CpuMode::block_order`]); at random on the GPU (Hogwild).
    pub fn block_order(&self) -> crate::grid::Order {
        match self {
            Backend::Cpu(mode) => mode.block_order(),
            Backend::Gpu(_) => crate::grid::Order::Shuffled,
        }
    }

    /// Blocks it reads from a block cache at once: one a CPU thread; the GPU, one at a time.
    pub fn block_readers(&self) -> usize {
        match self {
            Backend::Cpu(mode) => mode.threads(),
            Backend::Gpu(_) => 1,
        }
    }
}

/// One epoch's figures.
#[derive(Clone, Debug)]
pub struct EpochReport {
    /// 1-based.
    pub epoch: usize,
    pub learning_rate: f32,
    /// The loss the run trains ([`crate::objective`]), which says which metrics are reported.
    pub loss: Loss,
    /// The loss summed over the training ratings, each taken as the pass met it, just before
    /// its update (LIBMF's training loss): for the squared error ½ Σ (r − score)².
    pub train_loss: f64,
    /// The loss's metrics over the training ratings as the pass met them (AUC excepted).
    pub train: Scores,
    /// The test set's, scored every `--eval-every` epochs and after the last; `None` in between.
    pub test: Option<Scores>,
    /// Host seconds of the epoch: from when the host could go on with it (its submission or
    /// the previous epoch's end, whichever is later) to its end, the test scoring included
    /// when it had one.
    pub sgd_seconds: f64,
    /// Seconds the device's clock measured for the kernels of the update pass, where it has one.
    pub kernel_seconds: Option<f64>,
    /// Seconds since training started.
    pub elapsed_seconds: f64,
    /// Bytes moved to and from the device (or disk) beyond what stays resident; 0 if none.
    pub streamed_bytes: u64,
    /// Streamed windows written to the GPU, and how many while it was still busy.
    pub uploads: UploadCounts,
}

impl EpochReport {
    /// The loss's own metric ([`Loss::metric`]) on the test set, when it was scored.
    pub fn test_metric(&self) -> Option<f64> {
        self.test.and_then(|t| t.get(self.loss.metric()))
    }

    /// The loss's own metric on the training ratings as the pass met them.
    pub fn train_metric(&self) -> Option<f64> {
        self.train.get(self.loss.metric())
    }

    pub fn test_rmse(&self) -> Option<f64> {
        self.test.and_then(|t| t.rmse)
    }

    pub fn test_mae(&self) -> Option<f64> {
        self.test.and_then(|t| t.mae)
    }

    pub fn train_rmse(&self) -> Option<f64> {
        self.train.rmse
    }
}

/// As JSON, each metric of the loss by name: `train_rmse`, `test_rmse` (null when the test set
/// was not scored), `test_log_loss`, ...
impl serde::Serialize for EpochReport {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("epoch", &self.epoch)?;
        map.serialize_entry("learning_rate", &self.learning_rate)?;
        map.serialize_entry("loss", &self.loss)?;
        map.serialize_entry("metric", &self.loss.metric())?;
        map.serialize_entry("train_loss", &self.train_loss)?;
        for &m in self.loss.metrics() {
            if let Some(v) = self.train.get(m) {
                map.serialize_entry(&format!("train_{}", m.name()), &v)?;
            }
        }
        for &m in self.loss.metrics().iter().filter(|&&m| m != Metric::Auc) {
            map.serialize_entry(&format!("test_{}", m.name()), &self.test.and_then(|t| t.get(m)))?;
        }
        map.serialize_entry("sgd_seconds", &self.sgd_seconds)?;
        map.serialize_entry("kernel_seconds", &self.kernel_seconds)?;
        map.serialize_entry("elapsed_seconds", &self.elapsed_seconds)?;
        map.serialize_entry("streamed_bytes", &self.streamed_bytes)?;
        map.serialize_entry("uploads", &self.uploads)?;
        map.end()
    }
}

/// A finished run.
pub struct Trained {
    pub model: Model,
    pub history: Vec<EpochReport>,
    /// Seconds in SGD epochs, all epochs together.
    pub train_seconds: f64,
    /// The device's kernel seconds over all epochs, where every epoch was measured.
    pub kernel_seconds: Option<f64>,
    /// Seconds from start to finish: set-up, epochs, evaluation and read-back.
    pub total_seconds: f64,
    /// Seconds of set-up before the first epoch: initial model, shuffling, upload, compiling.
    pub setup_seconds: f64,
    pub backend: String,
    /// Bytes the backend held in device buffers (0 on the CPU).
    pub device_bytes: u64,
    /// With early stopping: the epoch (from 1) whose factors `model` holds, the one with the
    /// best held-out metric (the loss's own).
    pub best_epoch: Option<usize>,
}

/// Creates the backend's solver over the shared, seeded initial model.
pub fn make_solver<'a>(problem: &'a Problem, params: &Params, backend: &Backend) -> Result<Box<dyn Solver + 'a>> {
    params.validate()?;
    if problem.train_len() == 0 {
        return Err(Error::Data("no training ratings".into()));
    }
    // The factors, twice: the model, and the backend's working copy (the CPU's rows reordered
    // into the schedule's positions, the GPU's read-back). An allocation that fails would abort
    // the process without a word.
    let (m, n, k) = (problem.num_users() as u64, problem.num_items() as u64, params.rank as u64);
    let factors = (m + n).saturating_mul(k).saturating_mul(4);
    crate::resources::ensure_memory(factors.saturating_mul(2), &format!("rank {k} for {m} users and {n} items"), |available| {
        format!("--rank {} at most fits", (available / 2 / 4 / (m + n).max(1)).min(k.saturating_sub(1)))
    })?;
    if params.models > 1 {
        let members = (0..params.models as u64)
            .map(|s| make_solver(problem, &Params { models: 1, seed: params.seed.wrapping_add(s * crate::ensemble::SEED_STRIDE), ..params.clone() }, backend))
            .collect::<Result<Vec<_>>>()?;
        return Ok(Box::new(crate::ensemble::Ensemble::new(members, problem)));
    }
    let labels = problem.labels(params.loss)?;
    let model = Model::init(problem, params, labels);
    if !params.loss.trains_by_sgd() {
        return match backend {
            Backend::Cpu(mode) => Ok(Box::new(AlsSolver::new(problem, model, params, mode.threads())?)),
            Backend::Gpu(options) => Ok(Box::new(GpuAlsSolver::new(problem, model, params, options)?)),
        };
    }
    Ok(match backend {
        Backend::Cpu(mode) => Box::new(CpuSolver::new(problem, model, params, *mode)?),
        Backend::Gpu(options) => Box::new(GpuSolver::new(problem, model, params, options)?),
    })
}

/// Where `--backend auto` trains: a hardware GPU when wgpu finds one, else the CPU, with a note
/// for people naming the software adapters passed over (lavapipe is slower than the CPU trainer).
pub fn choose_auto(cpu: Backend, gpu: Backend) -> (Backend, Option<String>) {
    let adapters = crate::gpu::list_adapters();
    if adapters.iter().any(|a| !a.is_software()) {
        return (gpu, None);
    }
    let why = if adapters.is_empty() {
        "no GPU adapter found".to_string()
    } else {
        let names: Vec<String> = adapters.iter().map(|a| format!("{} ({})", a.name, a.backend)).collect();
        let one = names.len() == 1;
        format!(
            "the only GPU adapter{} {} {}, a software renderer on the CPU, slower than the CPU trainer (--backend gpu uses it anyway)",
            if one { "" } else { "s" },
            if one { "is" } else { "are" },
            names.join(", ")
        )
    };
    (cpu, Some(why))
}

/// Trains for `params.epochs` epochs, calling `on_epoch` after each.
pub fn train(problem: &Problem, params: &Params, backend: &Backend, mut on_epoch: impl FnMut(&EpochReport)) -> Result<Trained> {
    train_until(problem, params, backend, |report| {
        on_epoch(report);
        true
    })
}

/// Like [`train`], but training ends after any epoch for which `on_epoch` returns false, with
/// the model of the epochs done (how an interrupt from Python stops at an epoch's end).
pub fn train_until(problem: &Problem, params: &Params, backend: &Backend, on_epoch: impl FnMut(&EpochReport) -> bool) -> Result<Trained> {
    run(problem, params, backend, None, on_epoch)
}

/// Early stopping: `problem.test` is a validation set held out of the training data. Training
/// stops once the loss's own metric on it ([`Loss::metric`]: RMSE for the squared error) has
/// not improved for `patience` epochs (or after `params.epochs`), and the model returned is the
/// best epoch's, a snapshot taken when it was reached.
pub fn train_early_stopping(problem: &Problem, params: &Params, backend: &Backend, patience: usize, on_epoch: impl FnMut(&EpochReport)) -> Result<Trained> {
    if problem.test.is_empty() {
        return Err(Error::Data("early stopping needs a validation set, and it is empty".into()));
    }
    if patience == 0 {
        return Err(Error::InvalidParameter("--patience must be at least 1".into()));
    }
    let mut on_epoch = on_epoch;
    run(problem, params, backend, Some(patience), |r| {
        on_epoch(r);
        true
    })
}

/// Trains `problem` on `backend`; `patience` turns on early stopping on `problem.test`.
fn run(problem: &Problem, params: &Params, backend: &Backend, patience: Option<usize>, on_epoch: impl FnMut(&EpochReport) -> bool) -> Result<Trained> {
    let start = Instant::now();
    let solver = make_solver(problem, params, backend)?;
    drive(solver, params, &Course { first_epoch: 0, has_test: !problem.test.is_empty(), patience }, start, on_epoch)
}

/// What the training loop runs: from which epoch (a resumed run's first) to `params.epochs`,
/// whether there is a test set to score, and early stopping's patience.
pub struct Course {
    pub first_epoch: usize,
    pub has_test: bool,
    pub patience: Option<usize>,
}

/// The one training loop, over any backend's solver (the distributed runner's too): the
/// learning-rate schedule, when the test set is scored, early stopping on it, the reports and
/// the result. `start` is when set-up began.
pub fn drive(mut solver: Box<dyn Solver + '_>, params: &Params, course: &Course, start: Instant, mut on_epoch: impl FnMut(&EpochReport) -> bool) -> Result<Trained> {
    let (has_test, patience) = (course.has_test, course.patience);
    let mut best: Option<(usize, f64, Model)> = None;
    let setup_seconds = start.elapsed().as_secs_f64();
    let backend = solver.name();
    // Early stopping snapshots the factors of the epoch just finished, so nothing may run ahead.
    let depth = if patience.is_some() { 1 } else { solver.epochs_in_flight().max(1) };
    let scores_test = |epoch: usize| has_test && params.scores_test_after(epoch);
    // Not `with_capacity(params.epochs)`: an epoch count is the user's to give, and a huge one
    // must cost time, not an allocation that aborts.
    let mut history = Vec::with_capacity(params.epochs.min(1024));
    let mut train_seconds = 0.0;
    let mut submitted: VecDeque<Instant> = VecDeque::new();
    let (mut next, mut stopping) = (course.first_epoch, false);
    let mut last_end = Instant::now();
    for epoch in course.first_epoch..params.epochs {
        while !stopping && next < params.epochs && next < epoch + depth {
            submitted.push_back(Instant::now());
            solver.submit_epoch(next, params.learning_rate_at(next), scores_test(next))?;
            next += 1;
        }
        let figures = solver.finish_epoch()?;
        let began = submitted.pop_front().expect("an epoch was submitted").max(last_end);
        last_end = Instant::now();
        let sgd_seconds = last_end.duration_since(began).as_secs_f64();
        train_seconds += sgd_seconds;
        let report = epoch_report(params, epoch, figures, sgd_seconds, start);
        check_finite(params, &report)?;
        // A stop asked for while later epochs were already queued takes effect after them: the
        // model then holds every epoch reported.
        stopping |= !on_epoch(&report);
        if let (Some(patience), Some(score)) = (patience, report.test_metric()) {
            let metric = params.loss.metric();
            if best.as_ref().is_none_or(|b| metric.better(score, b.1)) {
                best = Some((epoch + 1, score, solver.snapshot()?));
            } else if epoch + 1 - best.as_ref().map_or(0, |b| b.0) >= patience {
                stopping = true;
            }
        }
        history.push(report);
        if stopping && next == epoch + 1 {
            break;
        }
    }
    let device_bytes = solver.device_bytes();
    let (model, best_epoch) = match best {
        Some((epoch, _, snapshot)) => (snapshot, Some(epoch)),
        None => (solver.into_model()?, None),
    };
    let kernel_seconds = history.iter().map(|r| r.kernel_seconds).sum::<Option<f64>>();
    Ok(Trained { model, history, train_seconds, kernel_seconds, total_seconds: start.elapsed().as_secs_f64(), setup_seconds, backend, device_bytes, best_epoch })
}

/// Epoch `epoch`'s (from 0) report, from what its solver measured.
fn epoch_report(params: &Params, epoch: usize, figures: EpochFigures, sgd_seconds: f64, start: Instant) -> EpochReport {
    let metrics = params.loss.metrics();
    EpochReport {
        epoch: epoch + 1,
        learning_rate: params.learning_rate_at(epoch),
        loss: params.loss,
        train_loss: figures.train.loss,
        train: Scores::of(&figures.train, metrics),
        test: match (figures.test, figures.ndcg) {
            (Some(t), _) => Some(Scores::of(&t, metrics)),
            (None, Some(ndcg)) => Some(Scores { ndcg: Some(ndcg), ..Scores::default() }),
            (None, None) => None,
        },
        sgd_seconds,
        kernel_seconds: figures.kernel_seconds,
        streamed_bytes: figures.streamed_bytes,
        uploads: figures.uploads,
        elapsed_seconds: start.elapsed().as_secs_f64(),
    }
}

/// An error saying what to change when the epoch's training loss is not finite.
fn check_finite(params: &Params, report: &EpochReport) -> Result<()> {
    if report.train_loss.is_finite() {
        return Ok(());
    }
    // Initial factors of spread 1 or more start with scores of k·std² and may overflow.
    let std = params.init_std;
    let what = if std >= 1.0 { format!("lower --init-std (now {}) or --lr", if std >= 1e6 { format!("{std:e}") } else { std.to_string() }) } else { "lower --lr or raise --reg".into() };
    Err(Error::Data(format!("training diverged at epoch {} (loss is {}); {what}", report.epoch, report.train_loss)))
}
