//! A training run as a user asks for it, and the one place that chooses how it trains: in
//! memory, from a block cache on disk, on a cluster (DSGD), with early stopping, or after a
//! search of the settings. The CLI and Python describe a [`Job`] and print what
//! [`Job::run`] returns; the rules of which settings go together live here, once.

use crate::cache::{CacheSettings, DiskBlocks};
use crate::cpu::CpuMode;
use crate::data::{load_ratings, Loaded, LoadOptions, Rating, RatingSet};
use crate::distributed::{Cluster, Stripes};
use crate::error::{Error, Result};
use crate::gpu::GpuOptions;
use crate::metrics::Scores;
use crate::model::{Model, Params};
use crate::ranking::{ranking_metrics, RankingMetric, RankingReport};
use crate::problem::{remap_ratings, split_marked, split_per_user, split_random, ColdStart, Problem};
use crate::search::{Search, Trial};
use crate::training::{self, Backend, EpochReport, Trained};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Where the training ratings come from.
pub enum Source {
    /// A rating file, read by the loaders with the job's [`LoadOptions`].
    File(PathBuf),
    /// Ratings already in memory (Python's arrays).
    Ratings(RatingSet),
    /// A problem already made, its test set included (a fold of `cv`).
    Problem(Problem),
}

/// Where the test ratings come from.
pub enum Holdout {
    None,
    File(PathBuf),
    Ratings(RatingSet),
    /// A seeded share of the training ratings: of all of them, or of each user's.
    Fraction { fraction: f64, per_user: bool },
    /// The training file's split column (`LoadOptions::split_column`) marks them.
    Marked,
}

/// Where training runs, as asked: `Auto` picks a hardware GPU when there is one.
#[derive(Clone, Debug, PartialEq)]
pub enum Device {
    Auto,
    Cpu,
    Gpu,
}

/// Early stopping on ratings held out of the training set.
#[derive(Clone, Copy, Debug)]
pub struct Validation {
    pub fraction: f64,
    pub patience: usize,
    /// Train afresh on every training rating for the best epoch count, and keep that model.
    pub refit: bool,
}

impl Validation {
    /// Epochs without improvement before training stops, unless told otherwise.
    pub const PATIENCE: usize = 5;
}

/// One training run, as the CLI's `train` or Python's `fit` describes it.
pub struct Job {
    pub source: Source,
    pub holdout: Holdout,
    pub load: LoadOptions,
    pub params: Params,
    pub device: Device,
    pub threads: usize,
    pub gpu: GpuOptions,
    /// Hold at most this much of the training ratings in memory: more goes to a block cache.
    pub memory: Option<u64>,
    /// Where the block cache goes (default: beside the training file).
    pub cache_dir: Option<PathBuf>,
    pub cluster: Option<Cluster>,
    pub validation: Option<Validation>,
    /// `--auto`: search the settings within this time first.
    pub search: Option<Duration>,
    /// `--metrics`: ranking metrics of the kept model's lists on the test set's positives.
    pub ranking: Vec<RankingMetric>,
    /// `--unobserved-weight` as given; `None`: scaled to the training data
    /// ([`OneClass::scaled_unobserved_weight`](crate::objective::OneClass::scaled_unobserved_weight)).
    pub unobserved_weight: Option<f32>,
}

/// What a job hears as it runs, for people: notes, loading reports, each epoch (returning
/// false stops training after it, keeping the epochs done), each search trial.
pub trait Listener {
    fn note(&mut self, _message: &str) {}
    fn epoch(&mut self, _report: &EpochReport) -> bool {
        true
    }
    /// Before a training run of `epochs` epochs starts (early stopping's, then a refit's).
    fn start(&mut self, _epochs: usize, _held_out: &'static str) {}
    fn trial(&mut self, _trial: &Trial) {}
}

/// A listener that hears nothing.
pub struct Silent;
impl Listener for Silent {}

/// How early stopping went.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Stopped {
    pub fraction: f64,
    /// Validation ratings.
    pub ratings: usize,
    pub patience: usize,
    pub best_epoch: usize,
    /// The loss's own metric at the best epoch, and its name.
    pub best: Option<f64>,
    pub metric: &'static str,
    pub epochs_run: usize,
    pub stopped_early: bool,
    pub refit: bool,
    pub history: Vec<EpochReport>,
}

impl Stopped {
    /// The report as JSON, its history's held-out metrics named `validation_*` (see
    /// [`report_json`]).
    pub fn to_json(&self) -> serde_json::Value {
        let mut value = serde_json::to_value(self).unwrap_or_default();
        value["history"] = self.history.iter().map(|r| report_json(r, "validation")).collect();
        value
    }
}

/// An epoch's report as JSON, its held-out metrics named for the ratings they were scored on:
/// `test_rmse` as it is, or `validation_rmse` where `held_out` (as [`Listener::start`] says it)
/// is "validation", so that early stopping's figures are never read as the test set's.
pub fn report_json(report: &EpochReport, held_out: &str) -> serde_json::Value {
    let mut value = serde_json::to_value(report).unwrap_or_default();
    if let (Some(map), "validation") = (value.as_object_mut(), held_out) {
        let scored: Vec<String> = map.keys().filter(|k| k.starts_with("test_")).cloned().collect();
        for from in scored {
            if let Some(v) = map.remove(&from) {
                map.insert(from.replacen("test_", "validation_", 1), v);
            }
        }
    }
    value
}

/// A finished job: the model and how it scored. On a cluster, only process 0 has one.
pub struct Run {
    pub trained: Trained,
    /// The settings trained with (`--auto`'s choice).
    pub params: Params,
    /// The report of the epoch whose factors the model holds.
    pub kept: EpochReport,
    /// Every metric of the loss on the test set, scored on the kept model.
    pub test: Option<Scores>,
    pub test_ratings: usize,
    /// Ratings the model was fitted on.
    pub train_ratings: usize,
    pub users: usize,
    pub items: usize,
    /// Test ratings whose user or item the kept model never saw.
    pub cold: ColdStart,
    pub validation: Option<Stopped>,
    pub search: Option<Search>,
    /// The ranking metrics asked for (`--metrics`), on the test set.
    pub ranking: Option<RankingReport>,
    /// Whether the training ratings were read from a block cache on disk (the model then
    /// records no seen items).
    pub on_disk: bool,
}

impl Job {
    /// A job on `source` with the defaults: no test set, the CPU on every core.
    pub fn new(source: Source, params: Params) -> Job {
        Job {
            source,
            holdout: Holdout::None,
            load: LoadOptions::default(),
            params,
            device: Device::Cpu,
            threads: crate::resources::cores(),
            gpu: GpuOptions::default(),
            memory: None,
            cache_dir: None,
            cluster: None,
            validation: None,
            search: None,
            ranking: Vec::new(),
            unobserved_weight: None,
        }
    }

    /// The settings that cannot go together, each refused naming its flags.
    pub fn check(&self) -> Result<()> {
        self.params.validate()?;
        let bad = |m: &str| Err(Error::InvalidParameter(m.into()));
        if let Holdout::Fraction { fraction, .. } = self.holdout {
            if !(fraction > 0.0 && fraction < 1.0) {
                return Err(Error::setting("--test-fraction", "test_fraction", fraction, format!("must lie strictly between 0 and 1, got {fraction}")));
            }
        }
        if let Some(v) = self.validation {
            if !(v.fraction > 0.0 && v.fraction < 1.0) {
                return Err(Error::InvalidParameter(format!("--validation must lie strictly between 0 and 1, got {}", v.fraction)));
            }
            if v.patience == 0 {
                return bad("--patience must be at least 1");
            }
        }
        if let Some(budget) = self.search {
            if budget.is_zero() {
                return bad("--budget must be a positive number of seconds");
            }
            if self.memory.is_some() {
                return bad("--auto trains many times on ratings held in memory; leave out --memory");
            }
            if self.validation.is_some() {
                return bad("--auto holds out its own ratings to judge settings; leave out --validation");
            }
        }
        if !self.params.loss.trains_by_sgd() && self.cluster.as_ref().is_some_and(|c| c.gpu.is_some()) {
            return bad("--loss ials on a cluster solves on each process's CPU threads: leave out --devices (--workers and --hosts train on the CPU)");
        }
        if self.params.loss.is_pairwise() && self.cluster.as_ref().is_some_and(|c| c.gpu.is_some()) {
            return bad("--loss bpr: the distributed runner draws pairs on its CPU workers: leave out --devices (--workers and --hosts train on the CPU)");
        }
        if self.cluster.is_some() && (self.memory.is_some() || self.validation.is_some() || self.search.is_some() || self.params.models > 1) {
            return bad("--workers/--hosts/--devices train one model in memory for --epochs: leave out --memory, --validation, --auto and --models");
        }
        if self.memory.is_some() && matches!(self.holdout, Holdout::Fraction { .. } | Holdout::Marked) || self.memory.is_some() && self.validation.is_some() {
            return bad("--memory reads --train piece by piece into blocks on disk, so it takes the test set as --test FILE; --test-fraction, --split-column and --validation need every rating in memory at once");
        }
        if !self.ranking.is_empty() && (self.memory.is_some() || self.cluster.is_some()) {
            return bad("--metrics leaves each user's training items out of their candidates, which needs the training ratings in one process's memory: leave out --memory and --workers/--hosts");
        }
        if matches!(self.holdout, Holdout::Marked) != self.load.split_column.is_some() {
            return bad("--split-column marks the test ratings in the training file: give it with no other test set");
        }
        Ok(())
    }

    /// The backend the job trains on; `Auto` says why a GPU was passed over, and a GPU setting
    /// given for the CPU is said to do nothing.
    pub fn backend(&self, listener: &mut dyn Listener) -> Backend {
        let cpu = Backend::Cpu(CpuMode::with_threads(self.threads));
        let gpu = Backend::Gpu(self.gpu.clone());
        let backend = match self.device {
            Device::Cpu => cpu,
            Device::Gpu => gpu,
            Device::Auto => {
                let (backend, passed_over) = training::choose_auto(cpu, gpu);
                if let Some(why) = passed_over {
                    let threads = self.threads;
                    listener.note(&format!("note: {why}; training on the CPU with {threads} thread{}", if threads == 1 { "" } else { "s" }));
                }
                backend
            }
        };
        if matches!(backend, Backend::Cpu(_)) {
            if let Some(flag) = [(self.gpu.gpu_memory.is_some(), "--gpu-memory"), (self.gpu.upload.is_some(), "--upload")].iter().find_map(|&(given, flag)| given.then_some(flag)) {
                listener.note(&format!("note: {flag} has no effect: training runs on the CPU"));
            }
        }
        backend
    }

    /// Runs the job: loads, trains as the settings say, and scores the kept model. On a
    /// cluster, processes other than 0 return `None` once their part is done.
    pub fn run(mut self, listener: &mut dyn Listener) -> Result<Option<Run>> {
        self.check()?;
        if let Some(cluster) = self.cluster.clone() {
            return self.run_distributed(&cluster, listener);
        }
        if let Some(memory) = self.on_disk() {
            return self.run_on_disk(memory, listener).map(Some);
        }
        // A file read whole holds at most `--memory` (else the memory available).
        self.load.max_bytes = self.load.max_bytes.or(self.memory);
        let problem = self.problem(listener)?;
        let mut run = self.run_in_memory(&problem, listener)?;
        if !self.ranking.is_empty() && !problem.test.is_empty() {
            let thresholded = self.load.positive_threshold.is_some();
            let model = &run.trained.model;
            // In the kept model's indices, which early stopping without a refit draws afresh.
            let test = remap_ratings(&problem.test, (&problem.users, &problem.items), (&model.users, &model.items));
            run.ranking = Some(ranking_metrics(model, &test, |r| is_positive(model, thresholded, r), &self.ranking)?);
        }
        Ok(Some(run))
    }

    /// The memory budget when the training ratings go to disk: when they may need more than
    /// `--memory` once loaded, or nothing bounds them (a pipe, gzip).
    fn on_disk(&self) -> Option<u64> {
        let Source::File(path) = &self.source else { return None };
        self.memory.filter(|&memory| crate::data::loaded_bytes_bound(path).is_none_or(|bytes| bytes > memory))
    }

    /// Loads a file, passing its one-line report on.
    fn load(&self, path: &Path, options: LoadOptions, listener: &mut dyn Listener) -> Result<Loaded> {
        let loaded = load_ratings(path, options)?;
        listener.note(&loaded.summary(path));
        check_values(path, &loaded, &self.load, self.params.loss)?;
        Ok(loaded)
    }

    /// The test set of a file or ratings, loaded.
    fn test_set(&self, listener: &mut dyn Listener) -> Result<Option<RatingSet>> {
        match &self.holdout {
            Holdout::File(path) => Ok(Some(self.load(path, LoadOptions { split_column: None, ..self.load.clone() }, listener)?.ratings)),
            Holdout::Ratings(set) => Ok(Some(set.clone())),
            _ => Ok(None),
        }
    }

    /// The problem the job trains on, its test set made as the holdout says.
    fn problem(&self, listener: &mut dyn Listener) -> Result<Problem> {
        let (all, marks) = match &self.source {
            Source::Problem(problem) => return Ok(problem.clone()),
            Source::Ratings(set) => (set.clone(), None),
            Source::File(path) => {
                let loaded = self.load(path, self.load.clone(), listener)?;
                (loaded.ratings, loaded.test_marks)
            }
        };
        let seed = self.params.seed;
        Ok(match &self.holdout {
            Holdout::None => Problem::new(all, None),
            Holdout::File(_) | Holdout::Ratings(_) => Problem::new(all, self.test_set(listener)?.as_ref()),
            Holdout::Fraction { fraction, per_user } => {
                let problem = if *per_user { split_per_user(&all, *fraction, seed)? } else { split_random(&all, *fraction, seed)? };
                check_held_out(&problem, *fraction, *per_user)?;
                problem
            }
            Holdout::Marked => split_marked(&all, marks.as_deref().ok_or_else(|| Error::Data("--split-column: the loader found no split marks".into()))?)?,
        })
    }

    /// The settings for `problem`: the job's, with ials's w₀ scaled to the data where not given.
    fn params_for(&self, problem: &Problem) -> Params {
        let mut params = self.params.clone();
        if params.loss == crate::objective::Loss::Ials {
            let scaled = || crate::objective::OneClass::scaled_unobserved_weight(problem.train_len(), problem.num_users(), problem.num_items());
            params.one_class.unobserved_weight = self.unobserved_weight.unwrap_or_else(scaled);
        }
        params
    }

    /// Training in memory: for `--epochs`, or with early stopping, after a search when asked.
    fn run_in_memory(&self, problem: &Problem, listener: &mut dyn Listener) -> Result<Run> {
        self.check_labels(problem, listener)?;
        warn_of_overlap(problem, listener);
        let backend = self.backend(listener);
        let (params, search) = match self.search {
            Some(budget) => {
                let search = self.search(problem, &backend, budget, listener)?;
                (search.chosen.clone(), Some(search))
            }
            None => (self.params_for(problem), None),
        };
        let mut run = match self.validation {
            None => plain(problem, &params, &backend, listener)?,
            Some(v) => early_stopping(problem, &params, &backend, v, listener)?,
        };
        run.search = search;
        Ok(run)
    }

    /// Checks the ratings against the loss before training, naming the files (a binary loss's
    /// two labels, the KL divergence's non-negative values), and says how two values became
    /// labels.
    fn check_labels(&self, problem: &Problem, listener: &mut dyn Listener) -> Result<()> {
        let named = |e: Error| match (e, &self.source, &self.holdout) {
            (Error::Data(m), Source::File(train), holdout) => {
                let test = match holdout {
                    Holdout::File(test) => format!(", test ratings from {}", test.display()),
                    _ => String::new(),
                };
                Error::Data(format!("{m} (training ratings from {}{test})", train.display()))
            }
            (e, _, _) => e,
        };
        if let Some(labels) = problem.labels(self.params.loss).map_err(named)? {
            listener.note(&format!("--loss {}: {}", crate::choice::Choice::name(self.params.loss), labels.describe()));
        }
        Ok(())
    }

    /// `--auto`: searches around the given settings on held-out training ratings.
    fn search(&self, problem: &Problem, backend: &Backend, budget: Duration, listener: &mut dyn Listener) -> Result<Search> {
        let fit = crate::search::hold_out(problem, crate::search::AUTO_HOLD_OUT, self.params.seed)?;
        let p = &self.params_for(problem);
        // Alternating least squares takes no learning rate.
        let lr = if p.loss.trains_by_sgd() { format!(" --lr {}", p.learning_rate) } else { String::new() };
        let what = if p.loss.trains_by_sgd() { "rank, --reg and --lr" } else { "rank and --reg" };
        listener.note(&format!("auto: searching {what} around --rank {} --reg {}{lr} on {} held-out training ratings, within {} s", p.rank, p.reg, fit.test.len(), budget.as_secs_f64()));
        crate::search::search(&fit, p, backend, budget, |t| listener.trial(t))
    }

    /// `--memory`: the training ratings in a block cache on disk.
    fn run_on_disk(&self, memory: u64, listener: &mut dyn Listener) -> Result<Run> {
        let Source::File(path) = &self.source else { unreachable!("only a file goes to disk") };
        let backend = self.backend(listener);
        let dir = match &self.cache_dir {
            Some(dir) => dir.clone(),
            None if std::fs::metadata(path).is_ok_and(|m| !m.is_file()) => {
                return Err(Error::InvalidParameter(format!(
                    "--memory: {} is not a regular file (a pipe or a device), so its block cache cannot go beside it: give --cache-dir DIR, where a temporary one is written and removed after training",
                    path.display()
                )));
            }
            None => path.parent().filter(|p| !p.as_os_str().is_empty()).map_or_else(|| PathBuf::from("."), Path::to_path_buf),
        };
        let settings = CacheSettings { grid: self.params.blocks, order: backend.block_order(), seed: self.params.seed, memory, threads: backend.block_readers() };
        let cache = DiskBlocks::open_or_build(path, &self.load, &dir, &settings, |note| listener.note(note))?;
        // As a file loaded whole is checked, from what the cache recorded of it.
        let loss = self.params.loss;
        crate::data::check_values(path, &self.load, cache.events, || cache.summary.not_events(), loss.is_one_class(), crate::choice::Choice::name(loss))?;
        listener.note(&format!(
            "{}: {} ratings ({} users x {} items) in {} blocks on disk, at most {} each{}",
            path.display(),
            cache.summary.count,
            cache.users.len(),
            cache.items.len(),
            cache.grid,
            crate::resources::human_bytes(cache.largest_block()),
            if cache.skipped_lines > 0 { format!("; {} malformed lines skipped", cache.skipped_lines) } else { String::new() }
        ));
        let test = self.test_set(listener)?;
        let problem = Problem::on_disk(Arc::new(cache), test.as_ref());
        self.check_labels(&problem, listener)?;
        let mut run = plain(&problem, &self.params_for(&problem), &backend, listener)?;
        run.on_disk = true;
        Ok(run)
    }

    /// `--workers` / `--hosts` / `--devices`: DSGD, or ALS for ials. Process 0 returns the run.
    fn run_distributed(&self, cluster: &Cluster, listener: &mut dyn Listener) -> Result<Option<Run>> {
        if !self.params.loss.trains_by_sgd() {
            // Every process reads the whole file and keeps its own rows' events.
            let problem = self.problem(listener)?;
            self.check_labels(&problem, listener)?;
            warn_of_overlap(&problem, listener);
            let (params, train_ratings, shell) = (self.params_for(&problem), problem.train.len(), problem.without_training());
            listener.start(params.epochs, "test");
            let listener = std::cell::RefCell::new(listener);
            let trained = crate::distributed::als::train(problem, &params, cluster, |note| listener.borrow_mut().note(note), |r| listener.borrow_mut().epoch(r))?;
            return Ok(trained.map(|trained| Run { train_ratings, ..finish(trained, &shell, &params, None) }));
        }
        let stripes = match (&self.source, &self.holdout) {
            // Each process of a cluster reads the file piece by piece and keeps its own stripes.
            (Source::File(path), Holdout::None | Holdout::File(_)) if cluster.processes() > 1 && crate::data::streamable(path, &self.load) => {
                let test = self.test_set(listener)?;
                let stripes = Stripes::stream(path, &self.load, test.as_ref(), &self.params, cluster)?;
                let p = stripes.problem();
                listener.note(&format!(
                    "{}: {} ratings ({} users x {} items), read piece by piece; this process keeps the {} of its stripes",
                    path.display(),
                    stripes.total_ratings(),
                    p.num_users(),
                    p.num_items(),
                    p.train.len()
                ));
                stripes
            }
            _ => Stripes::from_problem(self.problem(listener)?, &self.params, cluster)?,
        };
        let train_ratings = stripes.total_ratings();
        let problem = stripes.problem();
        let shell = problem.without_training();
        listener.start(self.params.epochs, "test");
        let listener = std::cell::RefCell::new(listener);
        let trained = crate::distributed::train(stripes, &self.params, cluster, |note| listener.borrow_mut().note(note), |r| listener.borrow_mut().epoch(r))?;
        Ok(trained.map(|trained| Run { train_ratings, ..finish(trained, &shell, &self.params, None) }))
    }
}

/// A --test-fraction split that left either side empty: it would train on nothing, or report
/// no test error to a user who asked for one.
fn check_held_out(problem: &Problem, fraction: f64, per_user: bool) -> Result<()> {
    let total = problem.train.len() + problem.test.len();
    let why = match (problem.test.is_empty(), problem.train.is_empty()) {
        (true, _) if per_user => "none: each user's share of its ratings rounds down to 0",
        (true, _) => "none: the share rounds to 0",
        (_, true) => "every one of them, leaving none to train on",
        _ => return Ok(()),
    };
    Err(Error::setting("--test-fraction", "test_fraction", fraction, format!("{fraction} of {total} ratings holds out {why}; give another fraction, or the test ratings themselves")))
}

/// Checks a file's values against what the loss trains on: events (lines of a user and an
/// item only) only under a one-class loss; under a one-class loss, ratings only with a
/// threshold that makes them events, and other values only when `--counts` says they count.
fn check_values(path: &Path, loaded: &Loaded, options: &LoadOptions, loss: crate::objective::Loss) -> Result<()> {
    let set = &loaded.ratings;
    let not_event = || set.entries.iter().find(|r| r.value != 1.0).map(|r| format!("the value {} (user {}, item {})", r.value, set.users.shown(r.user), set.items.shown(r.item)));
    crate::data::check_values(path, options, loaded.events, not_event, loss.is_one_class(), crate::choice::Choice::name(loss))
}

/// Whether a held-out rating counts as a positive for ranking metrics: the positive label of a
/// binary model; with `--positive-threshold` (`thresholded`), a rating read as 1; otherwise
/// every held-out rating (one-class data).
pub fn is_positive(model: &Model, thresholded: bool, r: &Rating) -> bool {
    match model.labels {
        Some(labels) => labels.sign(r.value) == Some(1.0),
        None if thresholded => r.value > 0.5,
        None => true,
    }
}

/// Warns when test ratings repeat training pairs (the same file given twice, a fold against
/// itself): their error flatters the model.
pub fn warn_of_overlap(problem: &Problem, listener: &mut dyn Listener) {
    let shared = problem.overlap();
    if shared > 0 {
        listener.note(&format!(
            "warning: {shared} of the {} test ratings rate a (user, item) pair the training ratings rate too: the test set overlaps the training set (the same file given twice?), so its error flatters the model",
            problem.test.len()
        ));
    }
}

/// Training for `params.epochs`, the test set scored as `--eval-every` says.
fn plain(problem: &Problem, params: &Params, backend: &Backend, listener: &mut dyn Listener) -> Result<Run> {
    listener.start(params.epochs, "test");
    let trained = training::train_until(problem, params, backend, |r| listener.epoch(r))?;
    Ok(finish(trained, problem, params, None))
}

/// The run of a finished training on `problem`: the model scored on its test set, which it
/// records as its training items where the ratings are in memory. A cluster's `problem` holds
/// no training ratings ([`Problem::without_training`]): its model keeps the items its workers
/// gathered.
fn finish(mut trained: Trained, problem: &Problem, params: &Params, kept: Option<usize>) -> Run {
    if problem.train_len() > 0 {
        trained.model.record_seen(problem);
    }
    let kept = trained.history[kept.map_or(trained.history.len(), |e| e) - 1].clone();
    let test = (!problem.test.is_empty()).then(|| Scores::measure(&trained.model, &problem.test));
    Run {
        params: params.clone(),
        kept,
        test,
        test_ratings: problem.test.len(),
        train_ratings: problem.train_len(),
        users: problem.num_users(),
        items: problem.num_items(),
        cold: problem.cold,
        validation: None,
        search: None,
        ranking: None,
        on_disk: problem.train_on_disk.is_some(),
        trained,
    }
}

/// `--validation`: stops when the held-out ratings stop improving by the loss's own metric,
/// keeps the best epoch, and with `refit` trains afresh on every training rating for that many
/// epochs.
fn early_stopping(problem: &Problem, params: &Params, backend: &Backend, v: Validation, listener: &mut dyn Listener) -> Result<Run> {
    let fit = crate::search::hold_out(problem, v.fraction, params.seed)?;
    listener.start(params.epochs, "validation");
    let stopped = training::train_early_stopping(&fit, params, backend, v.patience, |r| {
        listener.epoch(r);
    })?;
    let best = stopped.best_epoch.expect("a validation set");
    let ran = stopped.history.len();
    let metric = params.loss.metric();
    let kept = &stopped.history[best - 1];
    let report = Stopped {
        fraction: v.fraction,
        ratings: fit.test.len(),
        patience: v.patience,
        best_epoch: best,
        best: kept.test_metric(),
        metric: metric.name(),
        epochs_run: ran,
        stopped_early: ran < params.epochs,
        refit: v.refit,
        history: stopped.history.clone(),
    };
    let how = if report.stopped_early { format!("stopped after {} epochs without improvement", v.patience) } else { "ran every epoch".to_string() };
    listener.note(&format!("validation: best {} {:.4} at epoch {best} of {ran} ({how}; {} validation ratings)", metric.label(), report.best.unwrap_or(f64::NAN), fit.test.len()));
    if v.refit {
        listener.note(&format!("refit: training on all {} training ratings for {best} epochs", problem.train.len()));
        let mut refit = plain(problem, &Params { epochs: best, ..params.clone() }, backend, listener)?;
        refit.validation = Some(report);
        return Ok(refit);
    }
    // The test set in the kept model's indices: a user seen only among the validation ratings
    // is cold for it.
    let test = Problem { test: fit.remap(&problem.test, problem), ..fit.clone() };
    let test = Problem { cold: ColdStart::of(&test.test), ..test };
    let mut run = finish(stopped, &test, params, Some(best));
    run.validation = Some(report);
    Ok(run)
}
