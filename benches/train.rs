//! One SGD epoch per backend, and the set-up before the first (shuffle, initial factors,
//! upload), on synthetic Netflix-shaped data, so a regression shows on any machine. Sizes from `GPUMF_BENCH_SIZES` (training ratings, comma-separated; default
//! 100000,1000000), ranks from `GPUMF_BENCH_RANKS` (default 32,128). The GPU is benched when
//! wgpu finds an adapter (lavapipe counts). Run: `cargo bench --bench train`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use gpumf::bench::{synthetic_problem, SyntheticSpec};
use gpumf::cpu::CpuMode;
use gpumf::data::shuffled;
use gpumf::gpu::GpuOptions;
use gpumf::model::{Model, Params};
use gpumf::training::{make_solver, Backend};

fn list(var: &str, default: &str) -> Vec<usize> {
    std::env::var(var).unwrap_or_else(|_| default.into()).split(',').filter_map(|s| s.trim().parse().ok()).collect()
}

fn bench(c: &mut Criterion) {
    let mut backends = vec![("cpu-sequential", Backend::Cpu(CpuMode::Sequential)), ("cpu-threads", Backend::Cpu(CpuMode::with_threads(num_threads())))];
    if !gpumf::gpu::list_adapters().is_empty() {
        backends.push(("gpu", Backend::Gpu(GpuOptions::default())));
    }
    let mut group = c.benchmark_group("epoch");
    group.sample_size(10);
    for size in list("GPUMF_BENCH_SIZES", "100000,1000000") {
        let problem = synthetic_problem(&SyntheticSpec::netflix_scaled(size, 1)).expect("generates");
        group.throughput(Throughput::Elements(problem.train.len() as u64));
        for rank in list("GPUMF_BENCH_RANKS", "32,128") {
            let params = Params { rank, epochs: 1, ..Params::default() };
            for (name, backend) in &backends {
                let mut solver = make_solver(&problem, &params, backend).expect("solver");
                group.bench_function(BenchmarkId::new(*name, format!("{size} ratings, rank {rank}")), |b| {
                    b.iter(|| {
                        solver.submit_epoch(0, params.learning_rate, false).expect("epoch");
                        solver.finish_epoch().expect("epoch")
                    })
                });
            }
        }
    }
    group.finish();

    // Host-side work must not dominate a short training run (cuMF_SGD's epoch at Netflix size
    // is 0.025 s on an H100), so the set-up is benched on its own.
    let mut group = c.benchmark_group("set-up");
    group.sample_size(10);
    for size in list("GPUMF_BENCH_SIZES", "100000,1000000") {
        let problem = synthetic_problem(&SyntheticSpec::netflix_scaled(size, 1)).expect("generates");
        let params = Params { rank: 32, epochs: 1, ..Params::default() };
        group.throughput(Throughput::Elements(problem.train.len() as u64));
        group.bench_function(BenchmarkId::new("shuffle", format!("{size} ratings")), |b| b.iter(|| shuffled(&problem.train, params.seed)));
        group.bench_function(BenchmarkId::new("initial factors", format!("{size} ratings, rank 32")), |b| b.iter(|| Model::init(&problem, &params, None)));
        for (name, backend) in &backends {
            group.bench_function(BenchmarkId::new(format!("{name} solver"), format!("{size} ratings, rank 32")), |b| {
                b.iter(|| make_solver(&problem, &params, backend).expect("solver"))
            });
        }
    }
    group.finish();
}

fn num_threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()).max(2)
}

criterion_group!(benches, bench);
criterion_main!(benches);
