//! `gpumf train`, `gpumf eval` and `gpumf predict`.

use super::progress::Progress;
use super::{BackendArg, InputArgs, ModelArgs, OutputArgs};
use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use gpumf::data::{load_ratings, LoadOptions};
use gpumf::job::{report_json, Holdout, Job, Listener, Run, Source, Stopped, Validation};
use gpumf::metrics::Scores;
use gpumf::model::Model;
use gpumf::problem::Problem;
use gpumf::ranking::{ranking_metrics, RankingMetric, RankingReport};
use gpumf::training::EpochReport;
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SplitArg {
    /// A random fraction of all ratings.
    Random,
    /// A random fraction of each user's ratings.
    PerUser,
}

#[derive(Args)]
pub struct TrainArgs {
    /// Training ratings (tab, comma, space, '::', CSV with header, Matrix Market; .gz too).
    #[arg(long)]
    pub train: PathBuf,
    /// Test ratings, e.g. MovieLens u1.test beside u1.base.
    #[arg(long, conflicts_with = "test_fraction")]
    pub test: Option<PathBuf>,
    /// Hold out this fraction of the training file as the test set (seeded by --seed).
    #[arg(long)]
    pub test_fraction: Option<f64>,
    /// The column (from 1) that marks each rating of --train as train or test (values
    /// train/test, or 0/1 with 1 for test), as some benchmark sets ship.
    #[arg(long, conflicts_with_all = ["test", "test_fraction"])]
    pub split_column: Option<usize>,
    /// How --test-fraction picks the held-out ratings.
    #[arg(long, value_enum, default_value = "random", requires = "test_fraction")]
    pub split: SplitArg,
    /// Early stopping: hold out this fraction of the training ratings (seeded by --seed) and
    /// stop when their RMSE has not improved for --patience epochs, keeping the best epoch's
    /// factors.
    #[arg(long)]
    pub validation: Option<f64>,
    /// With --validation: epochs without improvement before training stops.
    #[arg(long, default_value_t = Validation::PATIENCE, requires = "validation")]
    pub patience: usize,
    /// With --validation: then train afresh on all the training ratings for the best epoch
    /// count, and keep that model.
    #[arg(long, requires = "validation")]
    pub refit: bool,
    /// Search rank, --reg and --lr (not with --loss ials) around the given ones (x1/2 to x2) on a tenth of the
    /// training ratings held out (successive halving, on the backend that trains), print what
    /// it chose and why, then train on all the training ratings with it.
    #[arg(long, conflicts_with = "validation")]
    pub auto: bool,
    /// With --auto: the most seconds the search may take (training afterwards is not counted).
    #[arg(long, default_value_t = 300.0, requires = "auto", allow_negative_numbers = true)]
    pub budget: f64,
    /// Hold at most this much of the training ratings in memory (e.g. 512MiB, 4GiB). A file
    /// that may need more (gzip, or a pipe, whose size says nothing) is read once, piece by
    /// piece, into a cache of blocks on disk, and each block is read when training reaches it;
    /// the factors stay in memory. On the GPU the blocks then stream from disk through the
    /// upload ring (--gpu-memory caps the device).
    #[arg(long, value_parser = gpumf::resources::parse_size)]
    pub memory: Option<u64>,
    /// Where --memory keeps its block cache (default: beside the --train file; made if missing).
    /// A cache that matches the file and the settings is reused on the next run; a pipe's
    /// (needed for one) is removed after training, as a pipe cannot be read again to check it.
    #[arg(long, requires = "memory")]
    pub cache_dir: Option<PathBuf>,
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Save the trained model here.
    #[arg(long)]
    pub save: Option<PathBuf>,
    /// Replace an existing file at --save.
    #[arg(long)]
    pub force: bool,
    /// Also report ranking metrics of the trained model on the test set, comma-separated:
    /// recall@K, precision@K, ndcg@K, map@K, auc, mpr (see `gpumf eval --metrics`).
    #[arg(long, value_parser = RankingMetric::parse_list)]
    pub metrics: Option<RankingMetrics>,
    #[command(flatten)]
    pub input: InputArgs,
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// `--metrics`' list, as one value for clap.
pub type RankingMetrics = Vec<RankingMetric>;

/// How long a DSGD worker waits for a peer unless --timeout says.
const DEFAULT_TIMEOUT_S: u64 = 300;

/// DSGD: several workers in one process, or one process of a cluster.
#[derive(Args, Clone, Debug)]
pub struct ClusterArgs {
    /// Train by distributed SGD on this many workers (threads) in this process: users are cut
    /// into stripes pinned to workers and item blocks travel between them. On the CPU, each
    /// block trained in order: any worker count gives the same model for a seed and --blocks.
    /// With --loss ials: each process solves its share of the rows by ALS on this many threads.
    #[arg(long)]
    pub workers: Option<usize>,
    /// Run as one process of a cluster: FILE lists `host:port` for each process, one per line,
    /// the same file everywhere. Each process keeps only its users' ratings; process 0 prints
    /// the progress and writes the model.
    #[arg(long, requires = "process")]
    pub hosts: Option<PathBuf>,
    /// With --hosts: which line of the host file this process is (from 0).
    #[arg(long, requires = "hosts")]
    pub process: Option<usize>,
    /// Seconds a worker waits for a peer (to start, or to send a block) before giving up
    /// [default: 300].
    #[arg(long)]
    pub timeout: Option<u64>,
    /// With --workers or --hosts: write each worker's factors every this many epochs (and after
    /// the last) to --checkpoint-dir.
    #[arg(long)]
    pub checkpoint_every: Option<usize>,
    /// Where checkpoints go (created at the first checkpoint if missing).
    #[arg(long, default_value = "gpumf-checkpoints", requires = "checkpoint_every")]
    pub checkpoint_dir: PathBuf,
    /// Continue from the latest checkpoint in this directory, written with the same settings.
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// DSGD on GPUs, one worker each: `all`, or adapters by number as `gpumf info` lists them
    /// (`0,1`; one adapter twice opens two devices on it). Implies --backend gpu.
    #[arg(long)]
    pub devices: Option<String>,
}

impl ClusterArgs {
    /// The cluster these flags ask for, or `None` for training in one piece.
    fn cluster(&self, model: &ModelArgs) -> anyhow::Result<Option<gpumf::distributed::Cluster>> {
        let distributed = self.workers.is_some() || self.hosts.is_some() || self.devices.is_some();
        if !distributed {
            // Named, not ignored: each says something of workers that this run would not have.
            let given = [("--checkpoint-every", self.checkpoint_every.is_some()), ("--resume", self.resume.is_some()), ("--timeout", self.timeout.is_some())];
            if let Some((flag, _)) = given.iter().find(|(_, given)| *given) {
                bail!("{flag} belongs to distributed training: add --workers N (one process) or --hosts FILE --process I");
            }
            return Ok(None);
        }
        let on_gpu = self.devices.is_some() || model.backend == BackendArg::Gpu;
        if on_gpu && model.backend == BackendArg::Cpu {
            bail!("--devices puts DSGD workers on GPUs; leave out --backend cpu");
        }
        let devices: Option<Vec<usize>> = on_gpu.then(|| self.gpu_devices()).transpose()?;
        let workers = match (&devices, self.workers) {
            (Some(d), Some(w)) if d.len() != w => bail!("--workers {w} with --devices listing {} GPUs: on the GPU each worker has one GPU (leave out --workers)", d.len()),
            (Some(d), _) => d.len(),
            (None, w) => w.unwrap_or(1),
        };
        gpumf::resources::threads(Some(workers), "--workers", "workers")?;
        let hosts = match &self.hosts {
            Some(file) => gpumf::distributed::read_hosts(file).context("--hosts")?,
            None => Vec::new(),
        };
        let timeout = self.timeout.unwrap_or(DEFAULT_TIMEOUT_S);
        if timeout == 0 {
            bail!("--timeout must be at least 1 second");
        }
        let checkpoint = match self.checkpoint_every {
            Some(0) => bail!("--checkpoint-every must be at least 1"),
            Some(every) => {
                // Checked now, created at the first checkpoint: a run that stops early leaves nothing.
                gpumf::output::check_dir(&self.checkpoint_dir, "--checkpoint-dir")?;
                Some((self.checkpoint_dir.clone(), every))
            }
            None => None,
        };
        Ok(Some(gpumf::distributed::Cluster {
            workers,
            hosts,
            process: self.process.unwrap_or(0),
            timeout: std::time::Duration::from_secs(timeout),
            checkpoint,
            resume: self.resume.clone(),
            // Every process sends its users' items whether or not process 0 saves: --save is
            // process 0's flag alone, and all must agree on the messages.
            record_seen: true,
            gpu: devices.map(|d| (model.gpu.options(model.precision), d)),
        }))
    }

    /// The adapters --devices names (default: all of them).
    fn gpu_devices(&self) -> anyhow::Result<Vec<usize>> {
        let spec = self.devices.as_deref().unwrap_or("all").trim();
        if spec == "all" {
            let count = gpumf::gpu::list_adapters().len();
            if count == 0 {
                return Err(gpumf::Error::NoAdapter.into());
            }
            return Ok((0..count).collect());
        }
        spec.split(',')
            .map(|d| d.trim().parse::<usize>().map_err(|_| anyhow::anyhow!("--devices {spec}: {d:?} is not an adapter number (write all, or numbers such as 0,1, as `gpumf info` lists them)")))
            .collect()
    }
}

pub fn load(path: &Path, input: &InputArgs, quiet: bool) -> anyhow::Result<gpumf::data::RatingSet> {
    let loaded = load_ratings(path, input.options())?;
    if !quiet {
        eprintln!("{}", loaded.summary(path));
    }
    Ok(loaded.ratings)
}

impl TrainArgs {
    /// The job these flags describe.
    fn job(&self) -> anyhow::Result<Job> {
        let holdout = match (&self.test, self.test_fraction, self.split_column) {
            (_, _, Some(_)) => Holdout::Marked,
            (Some(test), _, _) => Holdout::File(test.clone()),
            (None, Some(fraction), _) => Holdout::Fraction { fraction, per_user: self.split == SplitArg::PerUser },
            (None, None, None) => Holdout::None,
        };
        if !(self.budget.is_finite() && self.budget > 0.0) && self.auto {
            bail!("--budget must be a positive number of seconds, got {}", self.budget);
        }
        Ok(Job {
            source: Source::File(self.train.clone()),
            holdout,
            load: LoadOptions { split_column: self.split_column, ..self.input.options() },
            params: self.model.params(),
            unobserved_weight: self.model.params.unobserved_weight,
            device: self.model.device(),
            threads: self.model.threads()?,
            gpu: self.model.gpu.options(self.model.precision),
            memory: self.memory,
            cache_dir: self.cache_dir.clone(),
            cluster: self.cluster.cluster(&self.model)?,
            validation: self.validation.map(|fraction| Validation { fraction, patience: self.patience, refit: self.refit }),
            search: self.auto.then(|| std::time::Duration::from_secs_f64(self.budget)),
            ranking: self.metrics.clone().unwrap_or_default(),
        })
    }
}

/// What a run says as it goes, on stderr: notes, the progress bar, the search's rungs.
pub struct Console {
    quiet: bool,
    /// Whether a progress bar is shown (a cluster's process 0 alone shows one).
    bar: bool,
    progress: Option<Progress>,
    /// The search rung being reported: its epochs, trials and seconds.
    rung: Option<(usize, usize, f64)>,
    /// Notes already shown: one that each fold of `cv` (or each run of a job) repeats, such as
    /// the adapter's, is shown once.
    shown: std::collections::HashSet<String>,
}

impl Console {
    pub fn new(quiet: bool) -> Console {
        Console { quiet, bar: !quiet, progress: None, rung: None, shown: Default::default() }
    }

    /// Notes, but no progress bar.
    pub fn without_bar(self) -> Console {
        Console { bar: false, ..self }
    }

    fn finish_rung(&mut self) {
        if let (Some((epochs, n, seconds)), false) = (self.rung.take(), self.quiet) {
            eprintln!("auto: {n} settings x {epochs} epochs in {seconds:.1} s");
        }
    }

    pub fn finish(&mut self) {
        self.finish_rung();
        if let Some(p) = self.progress.take() {
            p.finish();
        }
    }
}

impl Listener for Console {
    /// Notes for people, unless quiet; warnings always.
    fn note(&mut self, message: &str) {
        if let Some(p) = &self.progress {
            p.finish();
        }
        if (!self.quiet || message.starts_with("warning:")) && self.shown.insert(message.to_string()) {
            eprintln!("{message}");
        }
    }

    fn start(&mut self, epochs: usize, held_out: &'static str) {
        self.finish();
        self.progress = Some(Progress::new(epochs, !self.bar).held_out(held_out));
    }

    fn epoch(&mut self, report: &EpochReport) -> bool {
        if let Some(p) = &self.progress {
            p.epoch(report);
        }
        true
    }

    fn trial(&mut self, t: &gpumf::search::Trial) {
        match &mut self.rung {
            Some((epochs, n, seconds)) if *epochs == t.epochs => {
                *n += 1;
                *seconds += t.seconds;
            }
            _ => {
                self.finish_rung();
                self.rung = Some((t.epochs, 1, t.seconds));
            }
        }
    }
}

pub fn train(args: TrainArgs) -> anyhow::Result<()> {
    if let Some(save) = &args.save {
        // Before the work: a save that fails after training loses it.
        gpumf::output::check_not_an_input(save, "--save", &[("--train", Some(&args.train)), ("--test", args.test.as_deref())])?;
        gpumf::output::check_output(save, args.force).context("--save")?;
    }
    let job = args.job()?;
    let quiet = args.output.quiet || args.output.json;
    let process = job.cluster.as_ref().map_or(0, |c| c.process);
    let mut console = if process == 0 { Console::new(quiet) } else { Console::new(quiet).without_bar() };
    let run = job.run(&mut console);
    console.finish();
    let Some(run) = run? else {
        if !quiet {
            eprintln!("process {process}: done; process 0 reports and holds the model");
        }
        return Ok(());
    };
    if let (Some(search), false) = (&run.search, quiet) {
        describe_search(search);
    }
    report(&args, &run)?;
    if let Some(save) = &args.save {
        run.trained.model.save(save, args.force).context("--save")?;
        if !quiet {
            let without = if run.on_disk { " (without each user's seen items: the ratings stayed on disk)" } else { "" };
            eprintln!("saved the model to {}{without}", save.display());
        }
    }
    Ok(())
}

/// What `--auto` chose, against the given settings.
fn describe_search(search: &gpumf::search::Search) {
    let b = &search.best;
    let score = |t: &gpumf::search::Trial| t.score.map_or("diverged".to_string(), |r| format!("{r:.4}"));
    let versus = match &search.given {
        Some(g) if (g.rank, g.reg, g.learning_rate) != (b.rank, b.reg, b.learning_rate) && g.epochs == b.epochs => format!("; the given settings {}", score(g)),
        Some(g) if (g.rank, g.reg, g.learning_rate) != (b.rank, b.reg, b.learning_rate) => format!("; the given settings were dropped after {} epochs at {}", g.epochs, score(g)),
        Some(_) => "; the given settings were best".to_string(),
        None => String::new(),
    };
    // A search without learning rates (alternating least squares) names none.
    let lr = if search.trials.iter().all(|t| t.learning_rate == b.learning_rate) { String::new() } else { format!(" --lr {}", b.learning_rate) };
    eprintln!(
        "auto: chose --rank {} --reg {}{lr}: held-out {} {} after {} epochs{versus} ({} trials in {:.1} s{})",
        b.rank,
        b.reg,
        search.metric.label(),
        score(b),
        b.epochs,
        search.trials.len(),
        search.seconds,
        if search.cut_short { ", cut short by --budget" } else { "" }
    );
}

fn report(args: &TrainArgs, run: &Run) -> anyhow::Result<()> {
    if args.output.json {
        println!("{}", serde_json::to_string_pretty(&summary_json(args, run)?)?);
        return Ok(());
    }
    let t = &run.trained;
    let epochs = t.history.len();
    println!(
        "trained rank {} on {} in {:.2} s: {}, {:.4} s/epoch, {:.1} M updates/s",
        run.params.rank,
        t.backend,
        t.train_seconds,
        gpumf::resources::counted(epochs, "epoch"),
        t.train_seconds / epochs as f64,
        updates_per_second(run) / 1e6
    );
    if let Some(k) = t.kernel_seconds {
        println!("kernels: {:.4} s/epoch on the device's clock", k / epochs as f64);
    }
    let uploads = t.history.iter().fold(gpumf::solver::UploadCounts::default(), |a, r| a.merge(r.uploads));
    if uploads.windows > 0 {
        println!(
            "streamed: {} MB/epoch in {} windows, {} of them written while the device was busy",
            t.history.iter().map(|r| r.streamed_bytes).sum::<u64>() / epochs as u64 / 1_000_000,
            uploads.windows,
            uploads.while_device_busy
        );
    }
    if let Some(best) = t.best_epoch {
        println!("kept the factors of epoch {best}, the best on the validation ratings");
    }
    print_train_and_test(run);
    if let Some(ranking) = &run.ranking {
        print_ranking(ranking);
    }
    Ok(())
}

/// `train --json`'s summary: the settings, the data, the timings, the history and every metric
/// of the loss.
fn summary_json(args: &TrainArgs, run: &Run) -> anyhow::Result<serde_json::Value> {
    let t = &run.trained;
    let loss = run.params.loss;
    let epochs = t.history.len();
    // Without a refit, the kept run is early stopping's: its held-out figures are validation ones.
    let held_out = if run.validation.as_ref().is_some_and(|v| !v.refit) { "validation" } else { "test" };
    let mut summary = serde_json::json!({
        "loss": loss,
        "metric": loss.metric(),
        "train_loss": run.kept.train_loss,
        "validation": run.validation.as_ref().map(Stopped::to_json),
        "auto": run.search.as_ref().map(serde_json::to_value).transpose()?,
        "train_seconds": t.train_seconds,
        "kernel_seconds": t.kernel_seconds,
        "setup_seconds": t.setup_seconds,
        "total_seconds": t.total_seconds,
        "seconds_per_epoch": t.train_seconds / epochs as f64,
        "updates_per_second": updates_per_second(run),
        "backend": t.backend,
        "labels": t.model.labels,
        "settings": {
            "params": run.params,
            "precision": args.model.precision,
            "threads": args.model.threads()?,
            "train": args.train,
            "test": args.test,
            "test_fraction": args.test_fraction,
            "split_column": args.split_column,
            "split": args.test_fraction.map(|_| args.split),
        },
        "data": {
            "train_ratings": run.train_ratings,
            "test_ratings": run.test_ratings,
            "users": run.users,
            "items": run.items,
            "cold_start": run.cold,
        },
        "history": t.history.iter().map(|r| report_json(r, held_out)).collect::<serde_json::Value>(),
    });
    for &m in loss.metrics() {
        if let Some(v) = run.kept.train.get(m) {
            summary[format!("train_{}", m.name())] = v.into();
        }
        summary[format!("test_{}", m.name())] = run.test.and_then(|s| s.get(m)).into();
    }
    if let Some(ranking) = &run.ranking {
        add_ranking(&mut summary, ranking);
    }
    Ok(summary)
}

/// Ratings trained a second, over every epoch.
fn updates_per_second(run: &Run) -> f64 {
    (run.train_ratings * run.trained.history.len()) as f64 / run.trained.train_seconds
}

/// `train`'s lines for the training and test sets, in the loss's own terms.
fn print_train_and_test(run: &Run) {
    let loss = run.params.loss;
    let metrics = loss.metrics();
    if loss.is_one_class() {
        let over = if loss.is_pairwise() { "the sampled pairs" } else { "every user-item pair" };
        println!("train loss {:.1} over {over} ({} training entries)", run.kept.train_loss, run.train_ratings);
    } else {
        println!("train {} ({} ratings)", run.kept.train.describe(&metrics[..1]), run.train_ratings);
    }
    match &run.test {
        Some(scores) if loss.is_one_class() => match scores.describe(metrics) {
            none if none.is_empty() => println!(
                "test {}: none to measure (of {} held-out entries, none is an event of a known user and item outside the user's training items)",
                loss.metric().label(),
                run.test_ratings
            ),
            described => {
                println!("test {described} ({} held-out entries)", run.test_ratings);
                if run.cold.entries > 0 {
                    println!("  {} held-out entries name a user or item unseen in training, and are left out", run.cold.entries);
                }
            }
        },
        Some(scores) => {
            println!("test {} ({} ratings)", scores.describe(metrics), run.test_ratings);
            let cold = &run.cold;
            if cold.entries > 0 {
                println!(
                    "  {} test ratings have a user ({}) or item ({}) unseen in training; predicted from the mean and known biases",
                    cold.entries, cold.unknown_user_entries, cold.unknown_item_entries
                );
            }
        }
        None => println!("no test set (give --test FILE or --test-fraction F to measure test {})", loss.metric().label()),
    }
}

#[derive(Args)]
pub struct EvalArgs {
    /// A model saved by `gpumf train --save`.
    #[arg(long)]
    pub model: PathBuf,
    /// Ratings to score the model on.
    #[arg(long)]
    pub test: PathBuf,
    #[command(flatten)]
    pub input: InputArgs,
    /// Ranking metrics to report, comma-separated: recall@K, precision@K, ndcg@K, map@K, auc,
    /// mpr (e.g. ndcg@20,recall@20). The test file's ratings are the held-out positives (with
    /// --positive-threshold those at or above it; with a binary model, its positive label),
    /// and each user's candidates are all items but their training items.
    #[arg(long, value_parser = RankingMetric::parse_list)]
    pub metrics: Option<RankingMetrics>,
    /// Print a JSON summary.
    #[arg(long)]
    pub json: bool,
}

pub fn eval(args: EvalArgs) -> anyhow::Result<()> {
    let model = load_model(&args.model)?;
    let test = load(&args.test, &args.input, args.json)?;
    let problem = Problem::new(gpumf::data::RatingSet { entries: Vec::new(), users: model.users.clone(), items: model.items.clone() }, Some(&test));
    if let Some(labels) = model.labels {
        if let Some(r) = problem.test.iter().find(|r| labels.sign(r.value).is_none()) {
            bail!("{}: holds the value {}, neither of the model's labels {} and {} (--loss {})", args.test.display(), r.value, labels.negative, labels.positive, gpumf::choice::Choice::name(model.loss));
        }
    }
    if let Some(note) = foreign(&problem) {
        eprintln!("{note}");
    }
    // A one-class model is judged by its lists (NDCG@20, as training reports it): in words,
    // with how many users and events that took and why any were left out, which the bare
    // figure does not say (it was blank when no event counted).
    let one_class = (model.loss.is_one_class() && !args.json).then(|| vec![RankingMetric::Ndcg(gpumf::objective::ONE_CLASS_K)]);
    if let Some(ranking) = args.metrics.as_ref().or(one_class.as_ref()) {
        return report_ranking(&model, &problem, args.input.positive_threshold.is_some(), ranking, args.json);
    }
    let scores = Scores::measure(&model, &problem.test);
    let metrics = model.loss.metrics();
    if args.json {
        let mut summary = serde_json::json!({ "loss": model.loss, "metric": model.loss.metric(), "test_ratings": problem.test.len(), "cold_start": problem.cold });
        for &m in metrics {
            summary[format!("test_{}", m.name())] = scores.get(m).into();
        }
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        println!("test {} ({} ratings)", scores.describe(metrics), problem.test.len());
        if problem.cold.entries > 0 {
            println!("  {} ratings have a user or item the model has not seen (predicted from the mean and known biases)", problem.cold.entries);
        }
    }
    Ok(())
}

/// `eval --metrics`: the ranking metrics of the model's lists on the test file's positives.
fn report_ranking(model: &Model, problem: &Problem, thresholded: bool, metrics: &[RankingMetric], json: bool) -> anyhow::Result<()> {
    let report = ranking_metrics(model, &problem.test, |r| gpumf::job::is_positive(model, thresholded, r), metrics)?;
    if json {
        let mut summary = serde_json::json!({});
        add_ranking(&mut summary, &report);
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print_ranking(&report);
    }
    Ok(())
}

/// Ranking metrics in a JSON summary: `test_ndcg@20` and the like, and `ranking` with the
/// counts of users and positives.
fn add_ranking(summary: &mut serde_json::Value, report: &RankingReport) {
    for (m, value) in &report.values {
        summary[format!("test_{}", m.name())] = if value.is_finite() { (*value).into() } else { serde_json::Value::Null };
    }
    summary["ranking"] = serde_json::json!({ "users": report.users, "positives": report.positives, "left_out": report.left_out });
}

fn print_ranking(report: &RankingReport) {
    let values: Vec<String> = report.values.iter().map(|(m, v)| format!("{} {v:.4}", m.name())).collect();
    println!("test {} ({} users, {} held-out positives)", values.join("  "), report.users, report.positives);
    if report.left_out > 0 {
        println!("  {} held-out positives left out: a user or item the model does not know, a training item, or a repeat", report.left_out);
    }
}

/// A note when most test users or items are unknown to the model: it may belong to other data.
fn foreign(problem: &Problem) -> Option<String> {
    let n = problem.test.len().max(1) as f64;
    let (users, items) = (problem.cold.unknown_user_entries as f64 / n, problem.cold.unknown_item_entries as f64 / n);
    let (share, side) = if users >= items { (users, "users") } else { (items, "items") };
    (share > 0.5).then(|| format!("note: the model knows none of the {side} of {:.0}% of these test ratings; it may have been trained on other data", 100.0 * share))
}

/// What `predict` prints for a pair: the loss's link of the score (a rating, a probability, a
/// margin), and with the hinge losses the class, in the data's own values.
/// Loads a model, telling the user when its file is of an older format.
pub(super) fn load_model(path: &Path) -> anyhow::Result<Model> {
    let (model, info) = Model::load_with_info(path)?;
    if let Some(note) = info.note() {
        eprintln!("{note}");
    }
    Ok(model)
}
