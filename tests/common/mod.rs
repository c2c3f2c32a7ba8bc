//! Helpers shared by the integration tests.
#![allow(dead_code)]

use gpumf::data::{load_ratings, LoadOptions, Problem};
use std::path::PathBuf;

pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// MovieLens 100k, which may not be redistributed: read from `GPUMF_DATA` (default
/// ../shared/data). Outside CI a missing copy skips the test with a message; in CI it fails.
pub fn ml100k() -> Option<PathBuf> {
    let root = std::env::var_os("GPUMF_DATA").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join("shared").join("data")
    });
    let dir = root.join("ml-100k");
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

/// The u`fold`.base / u`fold`.test problem.
pub fn ml100k_fold(fold: u32) -> Option<Problem> {
    let dir = ml100k()?;
    let load = |name: String| load_ratings(&dir.join(name), LoadOptions::default()).expect("ml-100k loads").ratings;
    let train = load(format!("u{fold}.base"));
    let test = load(format!("u{fold}.test"));
    Some(Problem::new(train, Some(&test)))
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
