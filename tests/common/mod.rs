//! Helpers shared by the integration tests.
#![allow(dead_code)]

use gpumf::data::{load_ratings, LoadOptions};
use gpumf::problem::Problem;
use std::path::PathBuf;

pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// MovieLens 100k, which may not be redistributed: read from `GPUMF_DATA` (default
/// ../shared/data). Outside CI a missing copy skips the test with a message; in CI it fails.
pub fn ml100k() -> Option<PathBuf> {
    let dir = data_root().join("ml-100k");
    if dir.join("u1.base").is_file() {
        return Some(dir);
    }
    let message = format!(
        "MovieLens 100k not found at {} (set GPUMF_DATA to the folder holding ml-100k/; get it from grouplens.org)",
        dir.display()
    );
    if in_ci() {
        panic!("{message}");
    }
    eprintln!("skipped: {message}");
    None
}

/// Where data that may not be redistributed lives: `GPUMF_DATA`, default ../shared/data.
pub fn data_root() -> PathBuf {
    std::env::var_os("GPUMF_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join("shared").join("data"))
}

/// The u`fold`.base / u`fold`.test problem.
pub fn ml100k_fold(fold: u32) -> Option<Problem> {
    let dir = ml100k()?;
    let load = |name: String| load_ratings(&dir.join(name), LoadOptions::default()).expect("ml-100k loads").ratings;
    let train = load(format!("u{fold}.base"));
    let test = load(format!("u{fold}.test"));
    Some(Problem::new(train, Some(&test)))
}

/// The problem with every rating mapped to `a·r + b`.
#[allow(dead_code)]
pub fn rescaled(problem: &Problem, a: f32, b: f32) -> Problem {
    let map = |ratings: &[gpumf::data::Rating]| ratings.iter().map(|r| gpumf::data::Rating { value: a * r.value + b, ..*r }).collect::<Vec<_>>();
    Problem { train: map(&problem.train), test: map(&problem.test), ..problem.clone() }
}

/// MovieLens latest-small as shipped in the repository.
pub fn latest_small() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/ml-latest-small/ratings.csv")
}

/// Whether a GPU adapter (lavapipe counts) can run the tests. In CI its absence fails the test.
pub fn gpu_available() -> bool {
    if !gpumf::gpu::list_adapters().is_empty() {
        return true;
    }
    let message = "no GPU adapter (install mesa-vulkan-drivers for lavapipe)";
    if in_ci() {
        panic!("{message}: GPU tests must run in CI");
    }
    eprintln!("skipped: {message}");
    false
}

/// What a test needs beyond the repository.
#[derive(Clone, Copy, Debug)]
pub struct Needs {
    pub gpu: bool,
    pub ml100k: bool,
}

impl Needs {
    pub const NOTHING: Needs = Needs { gpu: false, ml100k: false };
    pub const GPU: Needs = Needs { gpu: true, ml100k: false };
    pub const ML100K: Needs = Needs { gpu: false, ml100k: true };
    pub const GPU_AND_ML100K: Needs = Needs { gpu: true, ml100k: true };
}

pub struct Test {
    pub name: &'static str,
    pub needs: Needs,
    pub run: fn(),
}

/// Runs `tests` as cargo's own harness would, with one difference: outside CI, a test whose
/// GPU adapter or MovieLens 100k copy is missing is reported *ignored* (so cargo's summary
/// counts it as not run) instead of passing without running. In CI it runs, and fails.
pub fn harness(tests: Vec<Test>) -> std::process::ExitCode {
    let args = libtest_mimic::Arguments::from_args();
    let ci = in_ci();
    let wanted = |need: fn(&Needs) -> bool| tests.iter().any(|t| need(&t.needs));
    let gpu = !wanted(|n| n.gpu) || !gpumf::gpu::list_adapters().is_empty();
    let data_dir = data_root().join("ml-100k");
    let ml100k = !wanted(|n| n.ml100k) || data_dir.join("u1.base").is_file();
    let mut reasons = std::collections::BTreeSet::new();
    let trials = tests
        .into_iter()
        .map(|t| {
            let mut missing = Vec::new();
            if t.needs.gpu && !gpu {
                missing.push("a GPU adapter (install mesa-vulkan-drivers for lavapipe)".to_string());
            }
            if t.needs.ml100k && !ml100k {
                missing.push(format!("MovieLens 100k at {} (set GPUMF_DATA to the folder holding ml-100k/)", data_dir.display()));
            }
            let ignore = !missing.is_empty() && !ci;
            if ignore {
                reasons.extend(missing);
            }
            let run = t.run;
            libtest_mimic::Trial::test(t.name, move || {
                run();
                Ok(())
            })
            .with_ignored_flag(ignore)
        })
        .collect();
    for reason in reasons {
        eprintln!("note: tests that need {reason} are ignored: it is missing");
    }
    libtest_mimic::run(&args, trials).exit_code()
}

/// Early stopping keeps the best epoch's factors (not the last's), and stops `patience`
/// epochs after the best unless the epochs run out first.
pub fn check_early_stopping(backend: &gpumf::training::Backend) {
    use gpumf::data::{load_ratings, LoadOptions};
use gpumf::problem::split_random;
    use gpumf::model::Params;
    let all = load_ratings(&latest_small(), LoadOptions::default()).unwrap().ratings;
    let problem = split_random(&all, 0.1, 3).unwrap();
    // A large, slowly decaying rate overfits within a few dozen epochs: validation RMSE turns.
    let params = Params { rank: 32, epochs: 80, learning_rate: 0.05, lr_decay: 0.0, reg: 0.02, ..Params::default() };
    let patience = 3;
    let t = gpumf::training::train_early_stopping(&problem, &params, backend, patience, |_| {}).unwrap();
    let rmse: Vec<f64> = t.history.iter().map(|r| r.test_rmse().unwrap()).collect();
    let best = t.best_epoch.unwrap();
    let lowest = rmse.iter().cloned().fold(f64::INFINITY, f64::min);
    assert_eq!(rmse[best - 1], lowest, "best epoch {best} of {rmse:?}");
    assert!(t.history.len() == best + patience || t.history.len() == params.epochs, "ran {} epochs, best {best}", t.history.len());
    assert!(t.history.len() < params.epochs, "this set-up overfits, so training must stop early: {rmse:?}");
    let kept = gpumf::metrics::evaluate(&t.model, &problem.test).rmse();
    assert!((kept - lowest).abs() < 1e-4, "the model scores {kept} on validation; the best epoch scored {lowest}");
    assert!(kept < rmse[rmse.len() - 1], "the kept model is better than the last epoch's");
}
