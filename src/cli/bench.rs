//! `gpumf generate` and `gpumf bench`.

use super::{threads, GpuTuningArgs, ParamArgs};
use anyhow::{bail, Context};
use clap::Args;
use gpumf::bench::{backend_name, backend_named, csv, plot_bench, run, synthetic_problem, table, BenchRow, Popularity, SyntheticSpec};
use gpumf::data::{load_ratings, write_events, write_ratings, WriteFormat};
use gpumf::problem::{split_random, Problem};
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

/// The synthetic set's shape, shared by `generate` and `bench`.
#[derive(Args, Clone, Debug)]
pub struct SyntheticArgs {
    /// The full Netflix shape: 480,189 users x 17,770 items, 99,072,112 + 1,408,395 ratings.
    #[arg(long)]
    pub netflix: bool,
    /// Training ratings (the Netflix shape scaled to this many unless --users/--items say).
    #[arg(long)]
    pub ratings: Option<usize>,
    /// Users (default: the Netflix shape's 480,189, scaled with --ratings).
    #[arg(long)]
    pub users: Option<usize>,
    /// Items (default: the Netflix shape's 17,770, scaled with --ratings).
    #[arg(long)]
    pub items: Option<usize>,
    /// Test ratings (default: the Netflix share, 1.4% of the training ratings).
    #[arg(long)]
    pub test_ratings: Option<usize>,
    /// Dimension of the hidden factors.
    #[arg(long, default_value_t = 8)]
    pub hidden_rank: usize,
    /// Standard deviation of the rating noise (the best reachable RMSE).
    #[arg(long, default_value_t = 0.1, allow_negative_numbers = true)]
    pub noise: f32,
    /// Zipf exponent of user and item popularity (default: uniform).
    #[arg(long, allow_negative_numbers = true)]
    pub zipf: Option<f64>,
    /// Clip ratings to a scale, e.g. --clip 1,5.
    #[arg(long, value_parser = parse_clip)]
    pub clip: Option<(f32, f32)>,
    /// Seed of the generated data.
    #[arg(long, default_value_t = 42)]
    pub data_seed: u64,
}

fn parse_clip(s: &str) -> Result<(f32, f32), String> {
    let (lo, hi) = s.split_once(',').ok_or("expected LOW,HIGH, e.g. 1,5")?;
    let parse = |v: &str| v.trim().parse::<f32>().map_err(|_| format!("{v:?} is not a number"));
    Ok((parse(lo)?, parse(hi)?))
}

impl SyntheticArgs {
    fn spec(&self, default_ratings: usize) -> SyntheticSpec {
        let base = if self.netflix { SyntheticSpec::netflix(self.data_seed) } else { SyntheticSpec::netflix_scaled(self.ratings.unwrap_or(default_ratings), self.data_seed) };
        let train = self.ratings.unwrap_or(base.train);
        SyntheticSpec {
            users: self.users.unwrap_or(base.users),
            items: self.items.unwrap_or(base.items),
            train,
            test: self.test_ratings.unwrap_or(if self.netflix && self.ratings.is_none() { base.test } else { (train as f64 * 0.0142).round() as usize }),
            rank: self.hidden_rank,
            noise: self.noise,
            clip: self.clip,
            popularity: self.zipf.map_or(Popularity::Uniform, Popularity::Zipf),
            ..base
        }
    }

    fn with_ratings(&self, ratings: usize) -> SyntheticSpec {
        SyntheticArgs { ratings: Some(ratings), netflix: false, users: None, items: None, test_ratings: None, ..self.clone() }.spec(ratings)
    }
}

#[derive(Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub shape: SyntheticArgs,
    /// Where the training ratings go.
    #[arg(long)]
    pub train_out: PathBuf,
    /// Where the test ratings go.
    #[arg(long)]
    pub test_out: Option<PathBuf>,
    /// binary: cuMF_SGD's 12-byte records (compact, read by gpumf and cuMF_SGD); tab or space: text.
    #[arg(long, value_parser = super::choice::<WriteFormat>(), default_value = "binary")]
    pub output_format: WriteFormat,
    /// Replace existing output files.
    #[arg(long)]
    pub force: bool,
    /// Write one-class events instead of ratings: the generated ratings at or above the middle
    /// of their scale (about half of --ratings), as `user item` lines (binary: rating 1), for
    /// --loss ials or bpr.
    #[arg(long)]
    pub events: bool,
}

pub fn generate(args: GenerateArgs) -> anyhow::Result<()> {
    let spec = args.shape.spec(1_000_000);
    spec.validate()?;
    if let Some(test_out) = args.test_out.as_ref().filter(|t| gpumf::output::same_file(t, &args.train_out)) {
        bail!("--test-out {}: the file --train-out names; the test ratings would overwrite the training ratings", test_out.display());
    }
    spec.ensure_fits(1)?;
    // Before the work: every output writable, and its disk large enough.
    let outputs = [(Some(&args.train_out), spec.train, "--train-out"), (args.test_out.as_ref(), spec.test, "--test-out")];
    for (out, ratings, flag) in outputs.iter().filter_map(|(o, n, f)| o.map(|o| (o, *n, *f))) {
        gpumf::output::check_output(out, args.force).context(flag)?;
        let bytes = gpumf::data::written_size(ratings as u64, args.output_format);
        let per_rating = (bytes / ratings.max(1) as u64).max(1);
        gpumf::resources::ensure_disk(out, bytes, &format!("{ratings} ratings in {:?} format", args.output_format), |free| {
            format!("at most about {} ratings fit", free / per_rating)
        })
        .context(flag)?;
    }
    let t = Instant::now();
    let (mut train, mut test) = gpumf::bench::generate(&spec)?;
    if args.events {
        for set in [&mut train, &mut test] {
            set.retain(|r| r.value >= spec.center);
        }
    }
    let generated = t.elapsed().as_secs_f64();
    let write = |out: &PathBuf, set: &[gpumf::data::Rating]| if args.events { write_events(out, set, args.output_format, args.force) } else { write_ratings(out, set, args.output_format, args.force) };
    write(&args.train_out, &train)?;
    if let Some(out) = &args.test_out {
        write(out, &test)?;
    }
    eprintln!(
        "generated {} training and {} test {} ({} users x {} items, hidden rank {}, noise {}) in {generated:.2} s; written in {:.2} s",
        train.len(),
        if args.test_out.is_some() { test.len() } else { 0 },
        if args.events { "events" } else { "ratings" },
        spec.users,
        spec.items,
        spec.rank,
        spec.noise,
        t.elapsed().as_secs_f64() - generated
    );
    Ok(())
}

#[derive(Args)]
pub struct BenchArgs {
    /// Real training ratings instead of synthetic ones.
    #[arg(long)]
    pub train: Option<PathBuf>,
    /// Test ratings for --train.
    #[arg(long, requires = "train", conflicts_with = "test_fraction")]
    pub test: Option<PathBuf>,
    /// Hold out this fraction of --train as the test set.
    #[arg(long, requires = "train")]
    pub test_fraction: Option<f64>,
    #[command(flatten)]
    pub shape: SyntheticArgs,
    /// Backends to compare: gpu, gpu-f16, cpu-threads (parallel blocks), cpu (sequential).
    #[arg(long, value_delimiter = ',', default_value = "gpu,cpu-threads,cpu")]
    pub backends: Vec<String>,
    /// Time every backend at exactly these ranks (a comma-separated list) instead of --rank.
    #[arg(long, value_delimiter = ',', conflicts_with = "rank")]
    pub ranks: Vec<usize>,
    /// Also time every backend on synthetic sets of these many training ratings.
    #[arg(long, value_delimiter = ',')]
    pub sizes: Vec<usize>,
    /// Report the wall time until the test value of the loss's metric (RMSE for squared
    /// error, log loss for logistic, ...) first reaches this; --target-rmse is its old name.
    #[arg(long, alias = "target-rmse")]
    pub target: Option<f64>,
    /// How --train and --test are read (format, --positive-threshold for binary losses, ...).
    #[command(flatten)]
    pub input: super::InputArgs,
    /// The device's memory bandwidth in GB/s, to report the share used.
    #[arg(long)]
    pub bandwidth: Option<f64>,
    #[command(flatten)]
    pub params: ParamArgs,
    /// With --train and --test: train from blocks on disk holding at most this much
    /// of the ratings in memory (as `train --memory`); the table then shows the bytes read per
    /// epoch and their GB/s.
    #[arg(long, value_parser = gpumf::resources::parse_size, requires_all = ["train", "test"])]
    pub memory: Option<u64>,
    /// Where --memory keeps its block caches (default: beside --train; made if missing).
    #[arg(long, requires = "memory")]
    pub cache_dir: Option<PathBuf>,
    /// CPU threads for the cpu-threads backend (default: every core; 1 runs its block
    /// schedule on one thread).
    #[arg(long)]
    pub threads: Option<usize>,
    #[command(flatten)]
    pub gpu: GpuTuningArgs,
    /// Print JSON (with per-epoch histories) instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Also write the rows as CSV here.
    #[arg(long)]
    pub csv: Option<PathBuf>,
    /// Draw test RMSE against time, and updates/s against rank and size, into this SVG.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Replace existing --csv and --plot files.
    #[arg(long)]
    pub force: bool,
}

/// `bench --memory`: each backend trains from a block cache laid out for it.
fn bench_on_disk(args: &BenchArgs, memory: u64, backends: &[gpumf::training::Backend], params: &gpumf::model::Params) -> anyhow::Result<()> {
    let (train, test) = (args.train.as_ref().expect("clap requires --train"), args.test.as_ref().expect("clap requires --test"));
    if std::fs::metadata(train).is_ok_and(|m| !m.is_file()) && backends.len() > 1 {
        anyhow::bail!("--train {}: not a regular file (a pipe or a device), which gives its ratings once, and each backend reads them into a cache of its own: save them to a file first", train.display());
    }
    let test_set = load_ratings(test, args.input.options())?.ratings;
    let dir = args.cache_dir.clone().unwrap_or_else(|| train.parent().filter(|p| !p.as_os_str().is_empty()).map_or_else(|| PathBuf::from("."), |p| p.to_path_buf()));
    let mut rows = Vec::new();
    for backend in backends {
        let settings = gpumf::cache::CacheSettings { grid: params.blocks, order: backend.block_order(), seed: params.seed, memory, threads: backend.block_readers() };
        let t = Instant::now();
        let cache = gpumf::cache::DiskBlocks::open_or_build(train, &args.input.options(), &dir, &settings, |note| {
            if !args.json {
                eprintln!("{note}");
            }
        })?;
        if !args.json {
            eprintln!("data: {} in {} blocks on disk, ready in {:.2} s", train.display(), cache.grid, t.elapsed().as_secs_f64());
        }
        let problem = Problem::on_disk(std::sync::Arc::new(cache), Some(&test_set));
        rows.push(run(&problem, &train.display().to_string(), params, backend, args.target, args.bandwidth, progress(backend, params.rank))?);
    }
    print_rows(args, &rows)
}

/// Each epoch of a run on stderr as it ends, so that a run cut short (a device call out of
/// time) still leaves what it measured; the rows come on stdout at the end.
fn progress(backend: &gpumf::training::Backend, rank: usize) -> impl FnMut(&gpumf::training::EpochReport) {
    let name = backend_name(backend);
    move |r| {
        let kernels = r.kernel_seconds.map_or(String::new(), |k| format!(" (kernels {k:.4} s)"));
        let test = r.test_metric().map_or(String::new(), |v| format!(", test {} {v:.4}", r.loss.metric().name()));
        eprintln!("bench: {name} rank {rank}, epoch {}: {:.4} s{kernels}{test}", r.epoch, r.sgd_seconds);
    }
}

/// The rows as JSON or a table on stdout, and as CSV where `--csv` asks.
fn print_rows(args: &BenchArgs, rows: &[BenchRow]) -> anyhow::Result<()> {
    if args.json {
        println!("{}", serde_json::to_string_pretty(rows)?);
    } else {
        print!("{}", table(rows));
    }
    if let Some(path) = &args.csv {
        gpumf::output::write_atomically(path, args.force, |w| w.write_all(csv(rows).as_bytes())).context("--csv")?;
    }
    Ok(())
}

/// `--ranks` in order, each once, each a valid setting with the other flags (the model's
/// `--rank` when none is given).
fn distinct_ranks(args: &BenchArgs) -> anyhow::Result<Vec<usize>> {
    let mut ranks: Vec<usize> = Vec::new();
    for &rank in &args.ranks {
        if !ranks.contains(&rank) {
            ranks.push(rank);
        }
    }
    if ranks.is_empty() {
        ranks.push(args.params.params().rank);
    }
    let params = args.params.params();
    for &rank in &ranks {
        match (gpumf::model::Params { rank, ..params.clone() }).validate() {
            // Only what the rank took part in is put on --ranks; the other flags name themselves.
            Err(e @ gpumf::Error::Setting { flag: "--rank" | "--models", .. }) if !args.ranks.is_empty() => return Err(anyhow::Error::new(e).context(format!("--ranks {rank}"))),
            other => other?,
        }
    }
    Ok(ranks)
}

/// The backends `--backends` names, leaving out (with a note) the GPU ones where no adapter is
/// found.
fn backends_to_run(args: &BenchArgs) -> anyhow::Result<Vec<gpumf::training::Backend>> {
    let threads = threads(args.threads)?;
    let gpu_options = args.gpu.options(gpumf::gpu::Precision::F32);
    let mut backends = Vec::new();
    // Enumerating adapters starts every Vulkan driver; a CPU-only bench need not.
    let have_gpu = std::cell::OnceCell::new();
    for name in &args.backends {
        let backend = backend_named(name, threads, &gpu_options)
            .with_context(|| format!("--backends: unknown backend {name:?} (known: gpu, gpu-f16, cpu-threads, cpu)"))?;
        if matches!(backend, gpumf::training::Backend::Gpu(_)) && !*have_gpu.get_or_init(|| !gpumf::gpu::list_adapters().is_empty()) {
            eprintln!("note: no GPU adapter found; skipping backend {name}");
            continue;
        }
        backends.push(backend);
    }
    if backends.is_empty() {
        bail!("--backends: nothing left to run");
    }
    Ok(backends)
}

/// The data to time, with its label: `--train` (and `--test` or `--test-fraction`), or a
/// synthetic set of `--shape`.
fn bench_problem(args: &BenchArgs, seed: u64) -> anyhow::Result<(Problem, String)> {
    Ok(match &args.train {
        Some(path) => {
            let all = load_ratings(path, args.input.options())?.ratings;
            let problem = match (&args.test, args.test_fraction) {
                (Some(test), _) => Problem::new(all, Some(&load_ratings(test, args.input.options())?.ratings)),
                (None, Some(f)) => split_random(&all, f, seed)?,
                (None, None) => Problem::new(all, None),
            };
            (problem, path.display().to_string())
        }
        None => {
            let spec = args.shape.spec(1_000_000);
            (synthetic_problem(&spec)?, format!("synthetic {} x {}, {} ratings", spec.users, spec.items, spec.train))
        }
    })
}

pub fn bench(args: BenchArgs) -> anyhow::Result<()> {
    let ranks = distinct_ranks(&args)?;
    let params = gpumf::model::Params { rank: ranks[0], ..args.params.params() };
    for (out, flag) in [(&args.csv, "--csv"), (&args.plot, "--plot")] {
        if let Some(out) = out {
            gpumf::output::check_not_an_input(out, flag, &[("--train", args.train.as_deref()), ("--test", args.test.as_deref())])?;
            gpumf::output::check_output(out, args.force).context(flag)?;
        }
    }
    if !args.sizes.is_empty() && args.train.is_some() {
        bail!("--sizes sweeps synthetic data; it cannot be combined with --train");
    }
    let backends = backends_to_run(&args)?;
    if let Some(memory) = args.memory {
        return bench_on_disk(&args, memory, &backends, &params);
    }
    let t = Instant::now();
    let (problem, label) = bench_problem(&args, params.seed)?;
    if !args.json {
        eprintln!("data: {label} ({} training, {} test ratings), prepared in {:.2} s", problem.train_len(), problem.test.len(), t.elapsed().as_secs_f64());
    }

    let run_all = |problem: &Problem, label: &str, params: &gpumf::model::Params| -> anyhow::Result<Vec<BenchRow>> {
        backends.iter().map(|b| Ok(run(problem, label, params, b, args.target, args.bandwidth, progress(b, params.rank))?)).collect()
    };
    let runs = run_all(&problem, &label, &params)?;
    let mut by_rank = runs.clone();
    for &rank in &ranks[1..] {
        by_rank.extend(run_all(&problem, &label, &gpumf::model::Params { rank, ..params.clone() })?);
    }
    // Rows of the size sweep beyond the main runs (--sizes is synthetic only, checked above).
    let mut other_sizes = Vec::new();
    for &size in args.sizes.iter().filter(|&&s| s != problem.train_len()) {
        let spec = args.shape.with_ratings(size);
        let p = synthetic_problem(&spec)?;
        other_sizes.extend(run_all(&p, &format!("synthetic {} x {}, {} ratings", spec.users, spec.items, spec.train), &params)?);
    }
    drop(problem);

    let all_rows: Vec<BenchRow> = by_rank.iter().chain(&other_sizes).cloned().collect();
    print_rows(&args, &all_rows)?;
    if let Some(path) = &args.plot {
        let by_size: Vec<BenchRow> = if args.sizes.is_empty() { Vec::new() } else { runs.iter().chain(&other_sizes).cloned().collect() };
        plot_bench(path, &runs, if args.ranks.is_empty() { &[] } else { &by_rank }, &by_size)?;
        if !args.json {
            eprintln!("plot written to {}", path.display());
        }
    }
    Ok(())
}
