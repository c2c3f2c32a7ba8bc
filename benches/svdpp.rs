//! What the SVD++-style term costs on the CPU: its epochs beside plain ones (`--no-svdpp`),
//! at the same rank, threads and data (issue 27, item 5: at most 1.3x at ranks 32 and 128).
//!
//! On a shared machine an epoch can take twice as long in one minute as in the next, so two
//! separate runs compare two machines. Here both models train in one process, epoch for epoch
//! in turn (plain, term, plain, term, ...), so a slow spell falls on both, and the figure is the
//! ratio of their sums over whole pass periods: the term's passes run before every third epoch
//! (`svdpp_pass_every`), so each period holds its updates and one of its passes. Each run
//! prints every epoch's seconds, the ratio over the periods, the ratio of the fastest period of
//! each (a period's seconds summed over its epochs: the least contended), and the median ratio
//! of an epoch to the plain one just before it, for epochs without passes (the updates' cost)
//! and with them.
//!
//! Data: 20M ratings generated in memory in the shape of BENCHMARKS.md's 20M set (480,189 users
//! × 17,770 items, as `gpumf generate --ratings 20000000 --users 480189 --items 17770`, but with
//! data seed 1, not the command's 42, and 1% as many test ratings), or `GPUMF_BENCH_RATINGS`
//! ratings of that shape.
//! `GPUMF_BENCH_RANKS` (default 32,128), `GPUMF_BENCH_THREADS` (default 1), `GPUMF_BENCH_PERIODS`
//! (default 3; the first epoch, before any pass, is left out). Run: `cargo bench --bench svdpp`.

use gpumf::bench::{synthetic_problem, SyntheticSpec};
use gpumf::cpu::CpuMode;
use gpumf::model::Params;
use gpumf::solver::Solver;
use gpumf::training::{make_solver, svdpp_pass_every, Backend};
use std::time::Instant;

/// The whole numbers (at least 1) that environment variable `var` lists, or `default`'s.
fn setting(var: &str, default: &str) -> Result<Vec<usize>, String> {
    let text = std::env::var(var).unwrap_or_else(|_| default.into());
    let number = |s: &str| s.trim().parse().ok().filter(|&n: &usize| n >= 1).ok_or_else(|| format!("{var}: '{s}' is not a whole number of at least 1"));
    text.split(',').map(number).collect()
}

/// Seconds of one epoch of `solver`.
fn epoch(solver: &mut Box<dyn Solver + '_>, params: &Params, e: usize) -> Result<f64, String> {
    let start = Instant::now();
    solver.submit_epoch(e, params.learning_rate_at(e), false).map_err(|err| err.to_string())?;
    solver.finish_epoch().map_err(|err| err.to_string())?;
    Ok(start.elapsed().as_secs_f64())
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

fn main() -> std::process::ExitCode {
    // `cargo bench` passes `--bench`; there is nothing else to read from the command line.
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::from(2)
        }
    }
}

fn run() -> Result<(), String> {
    let ratings = setting("GPUMF_BENCH_RATINGS", "20000000")?[0];
    let threads = setting("GPUMF_BENCH_THREADS", "1")?[0];
    let periods = setting("GPUMF_BENCH_PERIODS", "3")?[0];
    let ranks = setting("GPUMF_BENCH_RANKS", "32,128")?;
    let spec = SyntheticSpec { users: 480_189, items: 17_770, train: ratings, test: (ratings / 100).max(1), ..SyntheticSpec::netflix(1) };
    let problem = synthetic_problem(&spec).map_err(|e| e.to_string())?;
    let backend = Backend::Cpu(CpuMode::with_threads(threads));
    println!("{ratings} ratings over {} users x {} items, {threads} thread(s); epochs in turn, plain then with the term", spec.users, spec.items);
    for rank in ranks {
        let term = Params { rank, ..Params::default() };
        let every = svdpp_pass_every(&term);
        let term = Params { epochs: 1 + every * periods, ..term };
        let plain = Params { svdpp: false, ..term.clone() };
        let solver = |params: &Params| make_solver(&problem, params, &backend).map_err(|e| e.to_string());
        let mut solvers = [solver(&plain)?, solver(&term)?];
        let mut seconds = [Vec::new(), Vec::new()];
        for e in 0..term.epochs {
            for (side, params) in [&plain, &term].into_iter().enumerate() {
                seconds[side].push(epoch(&mut solvers[side], params, e)?);
            }
        }
        // Periods from epoch 1 (the first passes run before it).
        let period_sums = |s: &[f64]| s[1..].chunks(every).map(|p| p.iter().sum::<f64>()).collect::<Vec<_>>();
        let (plain_periods, term_periods) = (period_sums(&seconds[0]), period_sums(&seconds[1]));
        let total = |p: &[f64]| p.iter().sum::<f64>();
        let fastest = |p: &[f64]| p.iter().cloned().fold(f64::INFINITY, f64::min);
        let list = |s: &[f64]| s.iter().map(|x| format!("{x:.3}")).collect::<Vec<_>>().join(" ");
        println!("rank {rank}: plain s/epoch {}", list(&seconds[0]));
        println!("rank {rank}: term  s/epoch {}", list(&seconds[1]));
        // Each epoch's ratio to the plain epoch run just before it, by whether passes ran first.
        let ratios = |passes: bool| median((1..term.epochs).filter(|e| ((e - 1) % every == 0) == passes).map(|e| seconds[1][e] / seconds[0][e]).collect());
        println!(
            "rank {rank}: term / plain over {periods} period(s) of {every} epochs: {:.3} (fastest periods: {:.3}; median epoch pairs: {:.3} without passes, {:.3} with them)",
            total(&term_periods) / total(&plain_periods),
            fastest(&term_periods) / fastest(&plain_periods),
            ratios(false),
            ratios(true)
        );
    }
    Ok(())
}
