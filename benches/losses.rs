//! What each loss costs beside squared error: one epoch of every loss per backend, on the same
//! binary labels (a synthetic Netflix-shaped set, ratings of 4 and above as 1, the rest 0), so
//! every loss moves the same bytes. The losses take turns epoch by epoch (each round starting
//! one later), and each row is the median of its rounds, so a noisy shared machine slows them
//! all alike; the ratio to squared error is the figure to read. The GPU rows time the update kernels by the device's clock
//! (lavapipe counts as a device).
//!
//! Run: `cargo bench --bench losses`. `GPUMF_BENCH_RATINGS` (default 2000000), `GPUMF_BENCH_RANK`
//! (default 32), `GPUMF_BENCH_ROUNDS` (default 7) and `GPUMF_BENCH_BACKENDS` (default
//! `cpu,cpu-threads,gpu`) change the run.

use gpumf::bench::{synthetic_problem, SyntheticSpec};
use gpumf::choice::Choice;
use gpumf::cpu::CpuMode;
use gpumf::gpu::GpuOptions;
use gpumf::model::Params;
use gpumf::objective::Loss;
use gpumf::problem::Problem;
use gpumf::training::{make_solver, Backend};
use std::time::Instant;

/// The variants timed: each rating loss at its defaults, and squared error with each constraint.
fn variants() -> Vec<(String, Params)> {
    let base = Params { svdpp: false, epochs: 1, ..Params::default() };
    // The one-class losses train other data (events) and have their own bench (benches/topn.rs).
    let mut v: Vec<(String, Params)> = Loss::ALL.iter().filter(|(loss, _, _)| !loss.is_one_class()).map(|&(loss, name, _)| (name.to_string(), Params { loss, ..base.clone() })).collect();
    v.push(("squared --nonneg".into(), Params { nonneg: true, ..base.clone() }));
    v.push(("squared --l1 0.01".into(), Params { l1: 0.01, ..base }));
    v
}

fn env(var: &str, default: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| default.into())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Seconds of each variant's epochs on `backend`, round by round: (host wall, device kernels).
fn time_backend(problem: &Problem, rank: usize, rounds: usize, backend: &Backend) -> Vec<(Vec<f64>, Vec<f64>)> {
    let variants = variants();
    let mut solvers: Vec<_> = variants.iter().map(|(_, p)| make_solver(problem, &Params { rank, ..p.clone() }, backend).expect("solver")).collect();
    let mut times = vec![(Vec::new(), Vec::new()); solvers.len()];
    // Round 0 warms caches and compiles kernels; it is not counted. Each round starts one
    // variant later, so none always runs first (or last) in a round.
    for round in 0..=rounds {
        let count = solvers.len();
        for v in (0..count).map(|v| (v + round) % count) {
            let (solver, (wall, kernel)) = (&mut solvers[v], &mut times[v]);
            let t = Instant::now();
            solver.submit_epoch(round, 0.01, false).expect("epoch");
            let figures = solver.finish_epoch().expect("epoch");
            if round > 0 {
                wall.push(t.elapsed().as_secs_f64());
                kernel.extend(figures.kernel_seconds);
            }
        }
    }
    times
}

fn main() {
    // `cargo bench` passes --bench; a filter argument is not supported here.
    let ratings: usize = env("GPUMF_BENCH_RATINGS", "2000000").parse().expect("GPUMF_BENCH_RATINGS: a number");
    let rank: usize = env("GPUMF_BENCH_RANK", "32").parse().expect("GPUMF_BENCH_RANK: a number");
    let rounds: usize = env("GPUMF_BENCH_ROUNDS", "7").parse().expect("GPUMF_BENCH_ROUNDS: a number");
    let mut problem = synthetic_problem(&SyntheticSpec { clip: Some((1.0, 5.0)), ..SyntheticSpec::netflix_scaled(ratings, 1) }).expect("generates");
    for r in problem.train.iter_mut().chain(problem.test.iter_mut()) {
        r.value = if r.value >= 4.0 { 1.0 } else { 0.0 };
    }
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    println!("{ratings} ratings (labels 0/1), rank {rank}, median of {rounds} rounds, the variants in turn");
    println!("{:<34} {:<20} {:>10} {:>11} {:>10}", "backend", "loss", "s/epoch", "updates/s", "vs squared");
    for name in env("GPUMF_BENCH_BACKENDS", "cpu,cpu-threads,gpu").split(',') {
        let backend = match name.trim() {
            "cpu" => Backend::Cpu(CpuMode::Sequential),
            "cpu-threads" => Backend::Cpu(CpuMode::Parallel { threads }),
            "gpu" if !gpumf::gpu::list_adapters().is_empty() => Backend::Gpu(GpuOptions::default()),
            "gpu" => {
                println!("gpu: no adapter found, skipped");
                continue;
            }
            other => panic!("GPUMF_BENCH_BACKENDS: unknown backend {other:?} (cpu, cpu-threads, gpu)"),
        };
        let times = time_backend(&problem, rank, rounds, &backend);
        // The device's own clock where it has one: the kernels are what the losses change.
        let seconds: Vec<f64> = times.into_iter().map(|(wall, kernel)| median(if kernel.is_empty() { wall } else { kernel })).collect();
        let label = match &backend {
            Backend::Gpu(_) => "gpu (kernel clock)".to_string(),
            Backend::Cpu(CpuMode::Parallel { threads }) => format!("cpu ({threads} threads)"),
            Backend::Cpu(_) => "cpu (sequential)".to_string(),
        };
        for ((variant, _), s) in variants().iter().zip(&seconds) {
            println!("{label:<34} {variant:<20} {s:>10.4} {:>10.1}M {:>10.2}", ratings as f64 / s / 1e6, seconds[0] / s);
        }
    }
}
