//! Benchmarking: synthetic data, timed runs of every backend, reports and plots.

mod generate;
mod plot;
mod run;

pub use generate::{generate, synthetic_problem, Popularity, SyntheticSpec};
pub use plot::{plot_bench, plot_validation};
pub use run::{backend_name, backend_named, bytes_per_update, csv, peak_rss_bytes, run, table, BenchRow};
