//! `gpumf train`, `gpumf eval` and `gpumf predict`.

use super::progress::Progress;
use super::{BackendArg, InputArgs, ModelArgs, OutputArgs};
use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use gpumf::cpu::CpuMode;
use gpumf::data::{load_pairs, load_ratings, LoadOptions};
use gpumf::problem::{split_marked, split_per_user, split_random, ColdStart, Problem};
use gpumf::metrics;
use gpumf::model::Model;
use gpumf::model::Params;
use gpumf::training::{train as run_training, train_early_stopping, Backend, EpochReport, Trained};
use std::io::Write;
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
    #[arg(long, default_value_t = 5, requires = "validation")]
    pub patience: usize,
    /// With --validation: then train afresh on all the training ratings for the best epoch
    /// count, and keep that model.
    #[arg(long, requires = "validation")]
    pub refit: bool,
    /// Search rank, --reg and --lr around the given ones (x1/2 to x2) on a tenth of the
    /// training ratings held out (successive halving, on the backend that trains), print what
    /// it chose and why, then train on all the training ratings with it.
    #[arg(long, conflicts_with = "validation")]
    pub auto: bool,
    /// With --auto: the most seconds the search may take (training afterwards is not counted).
    #[arg(long, default_value_t = 300.0, requires = "auto", allow_negative_numbers = true)]
    pub budget: f64,
    /// Hold at most this much of the training ratings in memory (e.g. 512MiB, 4GiB). A file
    /// that may need more is read once, piece by piece, into a cache of blocks on disk, and
    /// each block is read when training reaches it; the factors stay in memory. On the GPU the
    /// blocks then stream from disk through the upload ring (--gpu-memory caps the device).
    #[arg(long, value_parser = gpumf::resources::parse_size)]
    pub memory: Option<u64>,
    /// Where --memory keeps its block cache (default: beside the --train file). A cache that
    /// matches the file and the settings is reused on the next run.
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
    #[command(flatten)]
    pub input: InputArgs,
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// DSGD: several workers in one process, or one process of a cluster.
#[derive(Args, Clone, Debug)]
pub struct ClusterArgs {
    /// Train by distributed SGD on this many workers (threads) in this process: users are cut
    /// into stripes pinned to workers and item blocks travel between them. On the CPU, each
    /// block trained in order: any worker count gives the same model for a seed and --blocks.
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
    /// Seconds a worker waits for a peer (to start, or to send a block) before giving up.
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
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
            if self.checkpoint_every.is_some() || self.resume.is_some() {
                bail!("--checkpoint-every and --resume belong to distributed training: add --workers N (one process) or --hosts FILE --process I");
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
        gpumf::resources::threads(Some(workers), "--workers")?;
        let hosts = match &self.hosts {
            Some(file) => gpumf::distributed::read_hosts(file).context("--hosts")?,
            None => Vec::new(),
        };
        if self.timeout == 0 {
            bail!("--timeout must be at least 1 second");
        }
        let checkpoint = match self.checkpoint_every {
            Some(0) => bail!("--checkpoint-every must be at least 1"),
            Some(every) => {
                // Checked now, created at the first checkpoint: a run that stops early leaves nothing.
                let dir = &self.checkpoint_dir;
                let parent = dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
                if dir.exists() && !dir.is_dir() {
                    bail!("--checkpoint-dir {}: exists and is not a directory", dir.display());
                }
                if !dir.exists() && !parent.is_dir() {
                    bail!("--checkpoint-dir {}: {} is not a directory", dir.display(), parent.display());
                }
                Some((dir.clone(), every))
            }
            None => None,
        };
        Ok(Some(gpumf::distributed::Cluster {
            workers,
            hosts,
            process: self.process.unwrap_or(0),
            timeout: std::time::Duration::from_secs(self.timeout),
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

fn load_with(path: &Path, options: LoadOptions, quiet: bool) -> anyhow::Result<gpumf::data::Loaded> {
    let loaded = load_ratings(path, options)?;
    if !quiet {
        eprintln!("{}", loaded.summary(path));
    }
    Ok(loaded)
}

pub fn load(path: &Path, input: &InputArgs, quiet: bool) -> anyhow::Result<gpumf::data::RatingSet> {
    Ok(load_with(path, input.options(), quiet)?.ratings)
}

pub fn train(args: TrainArgs) -> anyhow::Result<()> {
    let mut params = args.model.params();
    params.validate()?;
    let threads = args.model.threads()?;
    if let Some(f) = args.test_fraction {
        if !(f > 0.0 && f < 1.0) {
            bail!("--test-fraction must lie strictly between 0 and 1, got {f}");
        }
    }
    if let Some(save) = &args.save {
        // Before the work: a save that fails after training loses it.
        gpumf::output::check_output(save, args.force).context("--save")?;
    }
    let cluster = args.cluster.cluster(&args.model)?;
    if cluster.is_some() && (args.memory.is_some() || args.validation.is_some() || args.auto || params.models > 1) {
        bail!("--workers/--hosts/--devices train one model in memory for --epochs: leave out --memory, --validation, --auto and --models");
    }
    if cluster.is_some() && params.svdpp {
        // The default, which the distributed runner cannot train yet: said, not refused.
        if !(args.output.quiet || args.output.json) {
            eprintln!("note: --workers/--hosts/--devices train without the SVD++ term (as --no-svdpp does): the distributed runner exchanges factor blocks only");
        }
        params.svdpp = false;
    }
    if args.auto && args.memory.is_some() {
        bail!("--auto trains many times on ratings held in memory; leave out --memory");
    }
    if args.auto && !(args.budget.is_finite() && args.budget > 0.0) {
        bail!("--budget must be a positive number of seconds, got {}", args.budget);
    }
    let quiet = args.output.quiet || args.output.json;
    let options = LoadOptions { split_column: args.split_column, ..args.input.options() };
    if let Some(cluster) = cluster.as_ref().filter(|c| c.processes() > 1 && streams(&args, &options)) {
        // Each process of a cluster reads the file piece by piece and keeps its own stripes.
        let test = args.test.as_ref().map(|t| load(t, &args.input, quiet)).transpose()?;
        let stripes = gpumf::distributed::Stripes::stream(&args.train, &options, test.as_ref(), &params, cluster)?;
        if !quiet {
            let p = stripes.problem();
            eprintln!(
                "{}: {} ratings ({} users x {} items), read piece by piece; this process keeps the {} of its stripes",
                args.train.display(),
                stripes.total_ratings(),
                p.num_users(),
                p.num_items(),
                p.train.len()
            );
        }
        return train_distributed(&args, stripes, &params, cluster, quiet);
    }
    // A file of s bytes holds at most s/6 ratings (`1 1 1` and a newline), which take 24 bytes
    // each while loaded and laid out: 4·s bytes surely fit, anything more goes to disk.
    let on_disk = args.memory.filter(|&memory| std::fs::metadata(&args.train).map_or(true, |m| m.len().saturating_mul(4) > memory));
    if let Some(memory) = on_disk {
        return train_on_disk(&args, memory, options, &params, threads, quiet);
    }
    let loaded = load_with(&args.train, options, quiet)?;
    let all = loaded.ratings;
    // Every arm consumes `all`: the ratings as loaded are not kept beside the problem (a DSGD
    // process keeps only its stripes').
    let problem = match (&args.test, args.test_fraction) {
        _ if args.split_column.is_some() => {
            let marks = loaded.test_marks.as_deref().context("--split-column: the loader found no split marks")?;
            let problem = split_marked(&all, marks)?;
            drop(all);
            problem
        }
        (Some(test), _) => {
            let test = load(test, &args.input, quiet)?;
            Problem::new(all, Some(&test))
        }
        (None, Some(f)) => {
            let problem = match args.split {
                SplitArg::Random => split_random(&all, f, params.seed)?,
                SplitArg::PerUser => split_per_user(&all, f, params.seed)?,
            };
            drop(all);
            problem
        }
        (None, None) => Problem::new(all, None),
    };

    if let Some(cluster) = cluster {
        let stripes = gpumf::distributed::Stripes::from_problem(problem, &params, &cluster)?;
        return train_distributed(&args, stripes, &params, &cluster, quiet);
    }
    let backend = chosen_backend(&args.model, threads, quiet);
    let (params, auto) = match args.auto {
        true => auto_search(&args, &problem, &params, &backend, quiet)?,
        false => (params, None),
    };
    let mut outcome = match args.validation {
        None => plain(&problem, &params, &backend, quiet)?,
        Some(fraction) => early_stopping(&args, fraction, &problem, &params, &backend, quiet)?,
    };
    outcome.auto = auto;
    report(&args, &problem, &params, &outcome)?;
    if let Some(save) = &args.save {
        let fitted_on = outcome.fitted_on.as_ref().unwrap_or(&problem);
        outcome.trained.model.record_seen(fitted_on);
        outcome.trained.model.save(save, args.force).context("--save")?;
        if !quiet {
            eprintln!("saved the model to {}", save.display());
        }
    }
    Ok(())
}

/// Whether the cluster's processes can read --train piece by piece (each keeping its stripes):
/// with the test set in its own file, and a file and flags the streaming loader reads.
fn streams(args: &TrainArgs, options: &LoadOptions) -> bool {
    args.test_fraction.is_none() && gpumf::data::streamable(&args.train, options)
}

/// `train --workers` / `--hosts` / `--devices`: DSGD. Process 0 reports and saves as a
/// one-process run does, each user's training items gathered from the processes with it.
fn train_distributed(args: &TrainArgs, stripes: gpumf::distributed::Stripes, params: &Params, cluster: &gpumf::distributed::Cluster, quiet: bool) -> anyhow::Result<()> {
    let lead = cluster.process == 0;
    // What the report needs once the stripes are handed over.
    let train_ratings = stripes.total_ratings();
    let problem = stripes.problem();
    let shell = Problem { train: Vec::new(), test: problem.test.clone(), users: problem.users.clone(), items: problem.items.clone(), cold: problem.cold, train_on_disk: None };
    let progress = Progress::new(params.epochs, quiet || !lead);
    let trained = gpumf::distributed::train(stripes, params, cluster, |r| progress.epoch(r));
    progress.finish();
    let Some(trained) = trained? else {
        if !quiet {
            eprintln!("process {}: done; process 0 reports and holds the model", cluster.process);
        }
        return Ok(());
    };
    let kept = trained.history.last().expect("at least one epoch").clone();
    let test = kept.test_rmse.zip(kept.test_mae);
    let outcome = Outcome { trained, fitted_on: None, train_ratings, kept, test, validation: None, auto: None, cold: shell.cold };
    report(args, &shell, params, &outcome)?;
    if let Some(save) = &args.save {
        outcome.trained.model.save(save, args.force).context("--save")?;
        if !quiet {
            eprintln!("saved the model to {}", save.display());
        }
    }
    Ok(())
}

/// `train --memory`: the training ratings in a block cache on disk.
fn train_on_disk(args: &TrainArgs, memory: u64, options: LoadOptions, params: &Params, threads: usize, quiet: bool) -> anyhow::Result<()> {
    if args.test_fraction.is_some() || args.split_column.is_some() || args.validation.is_some() {
        bail!("--memory reads --train piece by piece into blocks on disk, so it takes the test set as --test FILE; --test-fraction, --split-column and --validation need every rating in memory at once");
    }
    let backend = chosen_backend(&args.model, threads, quiet);
    let dir = match &args.cache_dir {
        Some(dir) => dir.clone(),
        None => args.train.parent().filter(|p| !p.as_os_str().is_empty()).map_or_else(|| PathBuf::from("."), Path::to_path_buf),
    };
    if !dir.is_dir() {
        bail!("--cache-dir {}: not a directory", dir.display());
    }
    let settings = gpumf::cache::CacheSettings {
        grid: params.blocks,
        order: backend.block_order(),
        seed: params.seed,
        memory,
        threads: backend.block_readers(),
    };
    let cache = gpumf::cache::DiskBlocks::open_or_build(&args.train, &options, &dir, &settings, |note| {
        if !quiet {
            eprintln!("{note}");
        }
    })?;
    if !quiet {
        eprintln!(
            "{}: {} ratings ({} users x {} items) in {} blocks on disk, at most {} each{}",
            args.train.display(),
            cache.summary.count,
            cache.users.len(),
            cache.items.len(),
            cache.grid,
            gpumf::resources::human_bytes(cache.largest_block()),
            if cache.skipped_lines > 0 { format!("; {} malformed lines skipped", cache.skipped_lines) } else { String::new() }
        );
    }
    let test = args.test.as_ref().map(|t| load(t, &args.input, quiet)).transpose()?;
    let problem = Problem::on_disk(std::sync::Arc::new(cache), test.as_ref());
    let mut outcome = plain(&problem, params, &backend, quiet)?;
    report(args, &problem, params, &outcome)?;
    if let Some(save) = &args.save {
        outcome.trained.model.record_seen(&problem);
        outcome.trained.model.save(save, args.force).context("--save")?;
        if !quiet {
            eprintln!("saved the model to {} (without each user's seen items: the ratings stayed on disk)", save.display());
        }
    }
    Ok(())
}

/// Where `--backend` trains; for `auto`, says why a GPU was passed over (unless `quiet`).
pub fn chosen_backend(model: &ModelArgs, threads: usize, quiet: bool) -> Backend {
    let cpu = Backend::Cpu(CpuMode::with_threads(threads));
    let gpu = Backend::Gpu(model.gpu.options(model.precision));
    match model.backend {
        BackendArg::Cpu => cpu,
        BackendArg::Gpu => gpu,
        BackendArg::Auto => {
            let (backend, passed_over) = gpumf::training::choose_auto(cpu, gpu);
            if let (Some(why), false) = (passed_over, quiet) {
                eprintln!("note: {why}; training on the CPU with {threads} thread{}", if threads == 1 { "" } else { "s" });
            }
            backend
        }
    }
}

/// What a `train` run ends with: the model to report and save, and how it was scored.
struct Outcome {
    trained: Trained,
    /// The problem the model was fitted on, when not the one loaded (early stopping without
    /// --refit fits on the training ratings less the validation ones).
    fitted_on: Option<Problem>,
    /// Ratings the model was fitted on.
    train_ratings: usize,
    /// The kept epoch's report (its train RMSE and loss).
    kept: EpochReport,
    /// Test RMSE and MAE of the kept model, when there is a test set.
    test: Option<(f64, f64)>,
    /// How early stopping went, for the report.
    validation: Option<serde_json::Value>,
    /// What --auto tried and chose.
    auto: Option<serde_json::Value>,
    /// Test ratings whose user or item the kept model never saw.
    cold: ColdStart,
}

/// Training for --epochs, the test set scored after every epoch.
fn plain(problem: &Problem, params: &Params, backend: &Backend, quiet: bool) -> anyhow::Result<Outcome> {
    let progress = Progress::new(params.epochs, quiet);
    let trained = run_training(problem, params, backend, |r| progress.epoch(r));
    progress.finish();
    let trained = trained?;
    let kept = trained.history.last().expect("at least one epoch").clone();
    let test = kept.test_rmse.zip(kept.test_mae);
    Ok(Outcome { trained, fitted_on: None, train_ratings: problem.train_len(), kept, test, validation: None, auto: None, cold: problem.cold })
}

/// --validation: stop when the held-out ratings stop improving, keep the best epoch, and
/// with --refit train afresh on every training rating for that many epochs.
fn early_stopping(args: &TrainArgs, fraction: f64, problem: &Problem, params: &Params, backend: &Backend, quiet: bool) -> anyhow::Result<Outcome> {
    if !(fraction > 0.0 && fraction < 1.0) {
        bail!("--validation must lie strictly between 0 and 1, got {fraction}");
    }
    let fit = gpumf::search::hold_out(problem, fraction, params.seed)?;
    let progress = Progress::new(params.epochs, quiet).held_out("validation");
    let stopped = train_early_stopping(&fit, params, backend, args.patience, |r| progress.epoch(r));
    progress.finish();
    let stopped = stopped?;
    let best = stopped.best_epoch.expect("a validation set");
    let kept = stopped.history[best - 1].clone();
    let ran = stopped.history.len();
    let validation = serde_json::json!({
        "fraction": fraction,
        "ratings": fit.test.len(),
        "patience": args.patience,
        "best_epoch": best,
        "best_rmse": kept.test_rmse,
        "epochs_run": ran,
        "stopped_early": ran < params.epochs,
        "refit": args.refit,
        "history": renamed_history(&stopped.history),
    });
    if !quiet {
        let how = if ran < params.epochs { format!("stopped after {} epochs without improvement", args.patience) } else { "ran every epoch".to_string() };
        eprintln!("validation: best RMSE {:.4} at epoch {best} of {ran} ({how}; {} validation ratings)", kept.test_rmse.unwrap_or(f64::NAN), fit.test.len());
    }
    if args.refit {
        if !quiet {
            eprintln!("refit: training on all {} training ratings for {best} epochs", problem.train.len());
        }
        let mut refit = plain(problem, &Params { epochs: best, ..params.clone() }, backend, quiet)?;
        refit.validation = Some(validation);
        return Ok(refit);
    }
    // The test set in the kept model's indices: a user seen only among the validation ratings
    // is cold for it.
    let test_ratings = fit.remap(&problem.test, problem);
    let test = (!test_ratings.is_empty()).then(|| {
        let sums = metrics::evaluate(&stopped.model, &test_ratings);
        (sums.rmse(), sums.mae())
    });
    let cold = ColdStart::of(&test_ratings);
    Ok(Outcome { trained: stopped, train_ratings: fit.train_len(), fitted_on: Some(fit), kept, test, validation: Some(validation), auto: None, cold })
}

/// --auto: searches around `params` on held-out training ratings; returns the settings chosen
/// and the search for the report.
fn auto_search(args: &TrainArgs, problem: &Problem, params: &Params, backend: &Backend, quiet: bool) -> anyhow::Result<(Params, Option<serde_json::Value>)> {
    let fit = gpumf::search::hold_out(problem, gpumf::search::AUTO_HOLD_OUT, params.seed)?;
    if !quiet {
        eprintln!(
            "auto: searching rank, --reg and --lr around --rank {} --reg {} --lr {} on {} held-out training ratings, within {} s",
            params.rank,
            params.reg,
            params.learning_rate,
            fit.test.len(),
            args.budget
        );
    }
    let mut rung: Option<(usize, usize, f64)> = None;
    let finish_rung = |rung: &Option<(usize, usize, f64)>| {
        if let (Some((epochs, n, seconds)), false) = (rung, quiet) {
            eprintln!("auto: {n} settings x {epochs} epochs in {seconds:.1} s");
        }
    };
    let search = gpumf::search::search(&fit, params, backend, std::time::Duration::from_secs_f64(args.budget), |t| {
        match &mut rung {
            Some((epochs, n, seconds)) if *epochs == t.epochs => {
                *n += 1;
                *seconds += t.seconds;
            }
            _ => {
                finish_rung(&rung);
                rung = Some((t.epochs, 1, t.seconds));
            }
        }
    })?;
    finish_rung(&rung);
    if !quiet {
        let b = &search.best;
        let rmse = |t: &gpumf::search::Trial| t.rmse.map_or("diverged".to_string(), |r| format!("{r:.4}"));
        let versus = match &search.given {
            Some(g) if (g.rank, g.reg, g.learning_rate) != (b.rank, b.reg, b.learning_rate) && g.epochs == b.epochs => format!("; the given settings {}", rmse(g)),
            Some(g) if (g.rank, g.reg, g.learning_rate) != (b.rank, b.reg, b.learning_rate) => format!("; the given settings were dropped after {} epochs at {}", g.epochs, rmse(g)),
            Some(_) => "; the given settings were best".to_string(),
            None => String::new(),
        };
        eprintln!(
            "auto: chose --rank {} --reg {} --lr {}: held-out RMSE {} after {} epochs{versus} ({} trials in {:.1} s{})",
            b.rank,
            b.reg,
            b.learning_rate,
            rmse(b),
            b.epochs,
            search.trials.len(),
            search.seconds,
            if search.cut_short { ", cut short by --budget" } else { "" }
        );
    }
    Ok((search.chosen.clone(), Some(serde_json::to_value(&search)?)))
}

/// An early-stopping run's history, its held-out RMSE named for what it is.
fn renamed_history(history: &[EpochReport]) -> serde_json::Value {
    let mut value = serde_json::to_value(history).unwrap_or_default();
    for epoch in value.as_array_mut().into_iter().flatten() {
        if let Some(map) = epoch.as_object_mut() {
            for (from, to) in [("test_rmse", "validation_rmse"), ("test_mae", "validation_mae")] {
                if let Some(v) = map.remove(from) {
                    map.insert(to.into(), v);
                }
            }
        }
    }
    value
}

fn report(args: &TrainArgs, problem: &Problem, params: &Params, outcome: &Outcome) -> anyhow::Result<()> {
    let t = &outcome.trained;
    let last = &outcome.kept;
    let (test_rmse, test_mae) = (outcome.test.map(|t| t.0), outcome.test.map(|t| t.1));
    let epochs = t.history.len();
    let updates_per_second = (outcome.train_ratings * epochs) as f64 / t.train_seconds;
    if args.output.json {
        let summary = serde_json::json!({
            "test_rmse": test_rmse,
            "test_mae": test_mae,
            "train_rmse": last.train_rmse,
            "train_loss": last.train_loss,
            "validation": outcome.validation,
            "auto": outcome.auto,
            "train_seconds": t.train_seconds,
            "kernel_seconds": t.kernel_seconds,
            "setup_seconds": t.setup_seconds,
            "total_seconds": t.total_seconds,
            "seconds_per_epoch": t.train_seconds / epochs as f64,
            "updates_per_second": updates_per_second,
            "backend": t.backend,
            "settings": {
                "params": params,
                "precision": args.model.precision,
                "threads": args.model.threads()?,
                "train": args.train,
                "test": args.test,
                "test_fraction": args.test_fraction,
                "split_column": args.split_column,
                "split": args.test_fraction.map(|_| args.split),
            },
            "data": {
                "train_ratings": outcome.train_ratings,
                "test_ratings": problem.test.len(),
                "users": problem.num_users(),
                "items": problem.num_items(),
                "cold_start": outcome.cold,
            },
            "history": if outcome.fitted_on.is_some() { renamed_history(&t.history) } else { serde_json::to_value(&t.history)? },
        });
        println!("{}", serde_json::to_string_pretty(&summary)?);
        return Ok(());
    }
    println!(
        "trained rank {} on {} in {:.2} s: {} epochs, {:.4} s/epoch, {:.1} M updates/s",
        params.rank,
        t.backend,
        t.train_seconds,
        epochs,
        t.train_seconds / epochs as f64,
        updates_per_second / 1e6
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
    println!("train RMSE {:.4} ({} ratings)", last.train_rmse, outcome.train_ratings);
    if let (Some(rmse), Some(mae)) = (test_rmse, test_mae) {
        println!("test RMSE {rmse:.4}  MAE {mae:.4} ({} ratings)", problem.test.len());
        let cold = &outcome.cold;
        if cold.entries > 0 {
            println!(
                "  {} test ratings have a user ({}) or item ({}) unseen in training; predicted from the mean and known biases",
                cold.entries, cold.unknown_user_entries, cold.unknown_item_entries
            );
        }
    } else {
        println!("no test set (give --test FILE or --test-fraction F to measure test RMSE)");
    }
    Ok(())
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
    /// Print a JSON summary.
    #[arg(long)]
    pub json: bool,
}

pub fn eval(args: EvalArgs) -> anyhow::Result<()> {
    let model = load_model(&args.model)?;
    let test = load(&args.test, &args.input, args.json)?;
    let problem = Problem::new(
        gpumf::data::RatingSet { entries: Vec::new(), users: model.users.clone(), items: model.items.clone() },
        Some(&test),
    );
    let sums = metrics::evaluate(&model, &problem.test);
    if args.json {
        let summary = serde_json::json!({
            "test_rmse": sums.rmse(), "test_mae": sums.mae(), "test_ratings": sums.count, "cold_start": problem.cold,
        });
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        println!("test RMSE {:.4}  MAE {:.4} ({} ratings)", sums.rmse(), sums.mae(), sums.count);
        if problem.cold.entries > 0 {
            println!("  {} ratings have a user or item the model has not seen (predicted from the mean and known biases)", problem.cold.entries);
        }
    }
    Ok(())
}

#[derive(Args)]
pub struct PredictArgs {
    /// A model saved by `gpumf train --save`.
    #[arg(long)]
    pub model: PathBuf,
    /// Pairs to predict, one `user item` per line, separated as in training files (tab, comma,
    /// semicolon, space or '::'; more columns are ignored; a header line is skipped).
    #[arg(long, required_unless_present = "user", conflicts_with = "user")]
    pub pairs: Option<PathBuf>,
    /// Recommend for this user (external id): the items with the highest scores, leaving out
    /// the items the user rated in training.
    #[arg(long)]
    pub user: Option<u64>,
    /// How many items --user lists.
    #[arg(long, default_value_t = 10, requires = "user", value_parser = at_least_one)]
    pub top: usize,
    /// Let --user list items the user rated in training too.
    #[arg(long, requires = "user")]
    pub include_seen: bool,
    /// Write predictions here instead of stdout (an existing file is kept unless --force).
    #[arg(long)]
    pub output: Option<PathBuf>,
    #[arg(long)]
    pub force: bool,
}

fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("{s:?} is not a whole number")),
    }
}

/// Loads a model, telling the user when its file is of an older format.
fn load_model(path: &Path) -> anyhow::Result<Model> {
    let (model, info) = Model::load_with_info(path)?;
    if let Some(note) = info.note() {
        eprintln!("{note}");
    }
    Ok(model)
}

pub fn predict(args: PredictArgs) -> anyhow::Result<()> {
    if let Some(out) = &args.output {
        gpumf::output::check_output(out, args.force).context("--output")?;
    }
    let model = load_model(&args.model)?;
    let mut lines = String::new();
    if let Some(user) = args.user {
        let Some(u) = model.users.index_of(user) else {
            bail!("--user {user}: the model has no such user (it knows {} users)", model.users.len());
        };
        let exclude_seen = !args.include_seen;
        if exclude_seen && model.seen.is_none() {
            eprintln!("note: this model file does not record which items each user rated, so the list may include them");
        }
        // Columns: user, item, the predicted rating (clipped to the scale), and the unclipped
        // score that orders the list.
        for (i, score) in model.recommend(u, args.top, exclude_seen) {
            lines.push_str(&format!("{user}\t{}\t{:.4}\t{score:.4}\n", model.items.external_id(i), model.predict(u, i)));
        }
    } else if let Some(path) = &args.pairs {
        for (user, item) in load_pairs(path)? {
            let known = model.users.index_of(user).is_some() && model.items.index_of(item).is_some();
            let note = if known { "" } else { "\tcold" };
            lines.push_str(&format!("{user}\t{item}\t{:.4}{note}\n", model.predict_external(user, item)));
        }
    }
    match &args.output {
        Some(out) => gpumf::output::write_atomically(out, args.force, |w| w.write_all(lines.as_bytes())).context("--output")?,
        None => std::io::stdout().write_all(lines.as_bytes())?,
    }
    Ok(())
}
