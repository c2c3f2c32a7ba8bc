//! `gpumf cv`: cross-validation, seeded folds of one file or fold files given in pairs.

use super::train::{load, Console};
use super::{InputArgs, ModelArgs, OutputArgs};
use anyhow::{bail, Context};
use clap::Args;
use gpumf::data::RatingSet;
use gpumf::job::{Holdout, Job, Source};
use gpumf::metrics::Scores;
use gpumf::problem::{k_folds, split_fold, Problem};
use std::path::PathBuf;

#[derive(Args)]
pub struct CvArgs {
    /// Ratings to cut into --folds seeded folds (by --seed); each fold is the test set once.
    /// `--train` too, as `gpumf train` names its file.
    #[arg(long, alias = "train", required_unless_present = "fold", conflicts_with = "fold")]
    pub data: Option<PathBuf>,
    /// How many folds --data is cut into.
    #[arg(long, default_value_t = 5)]
    pub folds: usize,
    /// A fold given as its TRAIN,TEST files, e.g. --fold u1.base,u1.test; once for each fold.
    #[arg(long, value_parser = parse_fold)]
    pub fold: Vec<(PathBuf, PathBuf)>,
    /// Also report ranking metrics on each fold's test set, comma-separated: recall@K,
    /// precision@K, ndcg@K, map@K, auc, mpr (see `gpumf eval --metrics`).
    #[arg(long, value_parser = gpumf::ranking::RankingMetric::parse_list)]
    pub metrics: Option<super::train::RankingMetrics>,
    #[command(flatten)]
    pub input: InputArgs,
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

fn parse_fold(s: &str) -> Result<(PathBuf, PathBuf), String> {
    let (train, test) = s.split_once(',').ok_or_else(|| format!("expected TRAIN,TEST files, e.g. u1.base,u1.test; got {s:?}"))?;
    Ok((PathBuf::from(train), PathBuf::from(test)))
}

/// One fold's result: every metric of the loss on its test set.
#[derive(serde::Serialize)]
struct FoldResult {
    fold: usize,
    train: String,
    test: String,
    train_ratings: usize,
    test_ratings: usize,
    #[serde(flatten)]
    scores: Scores,
    /// `--metrics`, by name (`ndcg@20`).
    #[serde(flatten)]
    ranking: std::collections::BTreeMap<String, f64>,
    seconds: f64,
}

/// Mean, sample standard deviation (none for one value), lowest and highest.
#[derive(serde::Serialize)]
struct Spread {
    mean: f64,
    std: Option<f64>,
    min: f64,
    max: f64,
}

fn spread(values: &[f64]) -> Spread {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let std = (values.len() > 1).then(|| (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt());
    let (min, max) = values.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    Spread { mean, std, min, max }
}

pub fn cv(args: CvArgs) -> anyhow::Result<()> {
    let params = args.model.params();
    params.validate()?;
    let threads = args.model.threads()?;
    let quiet = args.output.quiet || args.output.json;
    let folds = Folds::of(&args, quiet, params.seed)?;
    let mut results = Vec::new();
    let mut trained_on = String::new();
    let mut console = Console::new(quiet);
    for k in 0..folds.len() {
        let (result, backend) = run_fold(&args, &folds, k, &params, threads, &mut console)?;
        if !args.output.json {
            let ranked: String = args.metrics.iter().flatten().map(|m| format!("  {} {:.4}", m.name(), result.ranking.get(&m.name()).copied().unwrap_or(f64::NAN))).collect();
            println!(
                "fold {}/{}: test {}{ranked}  ({} training, {} test {entries}, {:.2} s)",
                result.fold,
                folds.len(),
                result.scores.describe(params.loss.metrics()),
                result.train_ratings,
                result.test_ratings,
                result.seconds,
                entries = if params.loss.is_one_class() { "events" } else { "ratings" }
            );
        }
        results.push(result);
        trained_on = backend;
    }
    print_spreads(&args, &params, threads, &results, &trained_on)
}

/// Trains fold `k` and scores its test set; returns its result and the backend it trained on.
fn run_fold(args: &CvArgs, folds: &Folds, k: usize, params: &gpumf::model::Params, threads: usize, console: &mut Console) -> anyhow::Result<(FoldResult, String)> {
    let quiet = args.output.quiet || args.output.json;
    let (problem, train_name, test_name) = folds.problem(k, &args.input, quiet)?;
    if problem.test.is_empty() {
        bail!("fold {}: the test set is empty", k + 1);
    }
    let (train_ratings, test_ratings) = (problem.train.len(), problem.test.len());
    let job = Job {
        source: Source::Problem(problem),
        holdout: Holdout::None,
        device: args.model.device(),
        threads,
        gpu: args.model.gpu.options(args.model.precision),
        ranking: args.metrics.clone().unwrap_or_default(),
        unobserved_weight: args.model.params.unobserved_weight,
        ..Job::new(Source::Ratings(RatingSet::default()), params.clone())
    };
    let run = job.run(console);
    console.finish();
    let run = run.with_context(|| format!("fold {}", k + 1))?.context("a run in one process")?;
    let result = FoldResult {
        fold: k + 1,
        train: train_name,
        test: test_name,
        train_ratings,
        test_ratings,
        scores: run.test.context("a test set")?,
        ranking: run.ranking.iter().flat_map(|r| &r.values).map(|(m, v)| (m.name(), *v)).collect(),
        seconds: run.trained.total_seconds,
    };
    Ok((result, run.trained.backend))
}

/// The mean, spread and range over the folds of each metric of the loss and of `--metrics`, as
/// lines or (with `--json`) with every fold's result.
fn print_spreads(args: &CvArgs, params: &gpumf::model::Params, threads: usize, results: &[FoldResult], trained_on: &str) -> anyhow::Result<()> {
    let ranking: &[gpumf::ranking::RankingMetric] = args.metrics.as_deref().unwrap_or_default();
    // (the name printed, the JSON key, the spread over folds)
    let mut spreads: Vec<(String, String, Spread)> = params
        .loss
        .metrics()
        .iter()
        .filter_map(|&m| results.iter().map(|r| r.scores.get(m)).collect::<Option<Vec<f64>>>().map(|v| (m.label().to_string(), m.name().to_string(), spread(&v))))
        .collect();
    spreads.extend(ranking.iter().map(|m| (m.name(), m.name(), spread(&results.iter().map(|r| r.ranking.get(&m.name()).copied().unwrap_or(f64::NAN)).collect::<Vec<_>>()))));
    if args.output.json {
        let mut summary = serde_json::json!({
            "folds": results,
            "loss": params.loss,
            "metric": params.loss.metric(),
            "backend": trained_on,
            "settings": { "params": params, "precision": args.model.precision, "threads": threads, "data": args.data, "k": args.data.as_ref().map(|_| args.folds) },
        });
        for (_, key, s) in &spreads {
            summary[key] = serde_json::to_value(s)?;
        }
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        let width = spreads.iter().map(|(label, _, _)| label.len()).max().unwrap_or(0);
        for (label, _, s) in &spreads {
            let std = s.std.map_or(String::new(), |d| format!(" ± {d:.4}"));
            let folds = gpumf::resources::counted(results.len(), "fold");
            println!("mean test {label:width$} {:.4}{std} (lowest {:.4}, highest {:.4}) over {folds}", s.mean, s.min, s.max);
        }
    }
    Ok(())
}

/// Where the folds come from. Each fold's problem is made when its turn comes, so only one
/// is held at a time.
enum Folds {
    /// One file cut into k seeded folds: `assignment` holds each rating's fold.
    Seeded { path: PathBuf, all: Box<RatingSet>, assignment: Vec<u32>, k: usize },
    /// (training, test) files, one pair a fold.
    Files(Vec<(PathBuf, PathBuf)>),
}

impl Folds {
    /// The folds `--data` or `--fold` name, warning of a fold given twice.
    fn of(args: &CvArgs, quiet: bool, seed: u64) -> anyhow::Result<Folds> {
        let folds = match &args.data {
            Some(path) => {
                let all = load(path, &args.input, quiet)?;
                let assignment = k_folds(&all, args.folds, seed)?;
                Folds::Seeded { path: path.clone(), all: Box::new(all), assignment, k: args.folds }
            }
            None if args.fold.is_empty() => bail!("--fold: give at least one TRAIN,TEST pair, or --data FILE"),
            None => Folds::Files(args.fold.clone()),
        };
        if let Folds::Files(pairs) = &folds {
            for (k, pair) in pairs.iter().enumerate() {
                if let Some(first) = pairs[..k].iter().position(|p| p == pair) {
                    eprintln!("warning: fold {} repeats fold {} ({},{}): the mean counts it twice", k + 1, first + 1, pair.0.display(), pair.1.display());
                }
            }
        }
        Ok(folds)
    }

    fn len(&self) -> usize {
        match self {
            Folds::Seeded { k, .. } => *k,
            Folds::Files(pairs) => pairs.len(),
        }
    }

    /// Fold `k`'s problem, and names for its training and test sides.
    fn problem(&self, k: usize, input: &InputArgs, quiet: bool) -> anyhow::Result<(Problem, String, String)> {
        Ok(match self {
            Folds::Seeded { path, all, assignment, .. } => {
                let name = path.display();
                (split_fold(all, assignment, k as u32), format!("{name} without fold {}", k + 1), format!("{name} fold {}", k + 1))
            }
            Folds::Files(pairs) => {
                let (train_path, test_path) = &pairs[k];
                let train = load(train_path, input, quiet).with_context(|| format!("--fold {}", train_path.display()))?;
                let test = load(test_path, input, quiet).with_context(|| format!("--fold {}", test_path.display()))?;
                (Problem::new(train, Some(&test)), train_path.display().to_string(), test_path.display().to_string())
            }
        })
    }
}
