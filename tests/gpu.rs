//! The GPU engine: shaders validate, and training agrees with the CPU trainer and the SVD.
//! Runs on any adapter, Mesa's lavapipe included; in CI (CI=true) a missing adapter fails.

mod common;

use common::{Needs, Test};

use gpumf::cpu::CpuMode;
use gpumf::data::{load_ratings, LoadOptions};
use gpumf::problem::{split_random, Problem};
use gpumf::choice::Choice;
use gpumf::gpu::{GpuOptions, GpuSolver, KernelShape, Precision, Upload, GROUP_SUBGROUP_WGSL, GROUP_WORKGROUP_WGSL, SVDPP_WGSL, SGD_WGSL};
use gpumf::metrics;
use gpumf::objective::Loss;
use gpumf::model::{Model, Params};
use gpumf::grid::GridSize;
use gpumf::training::{train, Backend};
use gpumf::validate::{compare, dense_params, lab_params, low_rank_plus_noise};

fn validate_wgsl(source: &str, what: &str) {
    let module = naga::front::wgsl::parse_str(source).unwrap_or_else(|e| panic!("{what}: {}", e.emit_to_string(source)));
    let caps = naga::valid::Capabilities::SUBGROUP | naga::valid::Capabilities::SHADER_FLOAT16;
    naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps)
        .subgroup_stages(naga::valid::ShaderStages::COMPUTE)
        .subgroup_operations(naga::valid::SubgroupOperationSet::all())
        .validate(&module)
        .unwrap_or_else(|e| panic!("{what}: {}", e.emit_to_string(source)));
}

fn shapes() -> Vec<KernelShape> {
    let mut out = Vec::new();
    for precision in [Precision::F32, Precision::F16] {
        for (subgroups, width) in [(true, 8), (true, 32), (true, 64), (false, 0)] {
            for rank in [1, 3, 4, 31, 32, 128, 130, 512, 1000] {
                let shape = KernelShape::new(rank, precision, subgroups, width, None).unwrap();
                // With the SVD++ term's prior and passes too.
                out.extend([shape, KernelShape { svdpp: true, ..shape }]);
            }
        }
        // Every loss, with and without its constraints.
        for &(loss, _, _) in Loss::ALL {
            for (nonneg, l1) in [(false, false), (true, false), (false, true), (true, true)] {
                let shape = KernelShape::new(32, precision, true, 32, None).unwrap();
                out.extend([KernelShape { loss, nonneg, l1, ..shape }, KernelShape { loss, nonneg, l1, svdpp: true, ..shape }]);
            }
        }
        // Every lane count the flag allows, on the widest subgroup.
        for lanes in [1, 2, 4, 8, 16, 32, 64] {
            for rank in [1, 32, 128, 130] {
                out.push(KernelShape::new(rank, precision, true, 64, Some(lanes)).unwrap());
            }
        }
    }
    out
}

fn sgd_wgsl_validates_for_every_rank_precision_and_group() {
    for shape in shapes() {
        let source = shape.source();
        assert!(source.contains(SGD_WGSL));
        assert_eq!(source.contains(SVDPP_WGSL), shape.svdpp);
        validate_wgsl(&source, &format!("{shape:?}"));
    }
}

fn group_preludes_each_validate_with_the_kernel() {
    for (prelude, subgroups) in [(GROUP_SUBGROUP_WGSL, true), (GROUP_WORKGROUP_WGSL, false)] {
        let shape = KernelShape::new(64, Precision::F32, subgroups, 32, None).unwrap();
        let source = shape.source();
        assert!(source.contains(prelude));
        validate_wgsl(&source, if subgroups { "group_subgroup.wgsl" } else { "group_workgroup.wgsl" });
    }
}

fn a_rating_gets_the_fewest_lanes_that_hold_its_row_within_one_subgroup() {
    let lanes = |rank, width, wanted| KernelShape::new(rank, Precision::F32, true, width, wanted).map(|s| s.lanes);
    assert_eq!(lanes(128, 32, None).unwrap(), 32);
    assert_eq!(lanes(512, 32, None).unwrap(), 32);
    assert_eq!(lanes(64, 32, None).unwrap(), 16);
    assert_eq!(lanes(32, 32, None).unwrap(), 8, "rank 32: four ratings per subgroup of 32");
    assert_eq!(lanes(33, 8, None).unwrap(), 8);
    assert_eq!(lanes(1, 32, None).unwrap(), 1);
    assert_eq!(lanes(128, 32, Some(16)).unwrap(), 16);
    assert_eq!(lanes(128, 64, Some(64)).unwrap(), 64);
    for bad in [0, 3, 12, 64] {
        let e = lanes(128, 32, Some(bad)).unwrap_err().to_string();
        assert!(e.contains("--lanes-per-rating") && e.contains("32"), "{bad}: {e}");
    }
    let e = KernelShape::new(128, Precision::F32, false, 0, Some(8)).unwrap_err().to_string();
    assert!(e.contains("needs subgroups"), "{e}");
    assert_eq!(KernelShape::new(128, Precision::F32, false, 0, None).unwrap().ratings_per_workgroup(), 1);
    assert_eq!(KernelShape::new(32, Precision::F32, true, 32, None).unwrap().ratings_per_workgroup(), 32);
}

fn ratings_in_flight_stay_few_beside_the_rows_they_touch() {
    use gpumf::gpu::default_in_flight;
    assert_eq!(default_in_flight(3, 3), 1, "the lab's 3x3 matrix runs one rating at a time");
    assert_eq!(default_in_flight(300, 200), 120);
    assert_eq!(default_in_flight(943, 1682), 604);
    // Netflix: enough to keep every SM of a large GPU busy.
    assert_eq!(default_in_flight(480_189, 17_770), 17_135);
    assert_eq!(default_in_flight(0, 0), 1);
}

fn a_broken_shader_fails_validation() {
    let shape = KernelShape::new(8, Precision::F32, true, 32, None).unwrap();
    let source = shape.source();
    let broken = source.replace("let slopes = loss_slopes(score, label);", "let slopes = loss_slopes(undefined_name, label);");
    assert_ne!(broken, source, "the test's edit must hit the kernel");
    assert!(naga::front::wgsl::parse_str(&broken).is_err());
}

fn gpu(options: GpuOptions) -> Backend {
    Backend::Gpu(options)
}

fn test_rmse(problem: &Problem, params: &Params, backend: &Backend) -> f64 {
    let t = train(problem, params, backend, |_| {}).unwrap();
    t.history.last().unwrap().test_rmse().unwrap()
}

fn gpu_matches_the_cpu_on_ml100k_u1() {
    if !common::gpu_available() {
        return;
    }
    let Some(problem) = common::ml100k_fold(1) else { return };
    let params = Params::default();
    let t = train(&problem, &params, &gpu(GpuOptions::default()), |_| {}).unwrap();
    let g = t.history.last().unwrap().test_rmse().unwrap();
    let c = test_rmse(&problem, &params, &Backend::Cpu(CpuMode::GpuOrder));
    println!("u1 test RMSE: {} {g:.4}, cpu {c:.4}", t.backend);
    assert!((g - c).abs() <= 0.01, "gpu {g} vs cpu {c}");
    assert!(g <= 0.935);
    // The GPU's own reduction agrees with scoring its read-back model on the CPU.
    let cpu_view = metrics::evaluate(&t.model, &problem.test).rmse();
    assert!((cpu_view - g).abs() < 1e-3, "GPU-reduced {g} vs CPU-scored {cpu_view}");
}

fn f16_factors_stay_within_0_005_of_f32() {
    if !common::gpu_available() {
        return;
    }
    let Some(problem) = common::ml100k_fold(1) else { return };
    let params = Params::default();
    let f32_rmse = test_rmse(&problem, &params, &gpu(GpuOptions::default()));
    let f16 = gpu(GpuOptions { precision: Precision::F16, ..GpuOptions::default() });
    match train(&problem, &params, &f16, |_| {}) {
        Ok(t) => {
            let f16_rmse = t.history.last().unwrap().test_rmse().unwrap();
            println!("u1: f32 {f32_rmse:.4}, f16 {f16_rmse:.4}");
            assert!((f16_rmse - f32_rmse).abs() <= 0.005, "f16 {f16_rmse} vs f32 {f32_rmse}");
        }
        Err(e) => {
            let adapter = gpumf::gpu::Gpu::open(false, true).unwrap().adapter;
            assert!(!adapter.shader_f16, "f16 failed on an adapter that has shader-f16: {e}");
            assert!(e.to_string().contains("shader-f16"), "{e}");
        }
    }
}

/// SGD on `backend` reaches within 5% of the truncated SVD's loss on the lab matrix and a
/// dense low-rank matrix, and never below it (which would mean a wrong loss).
fn sgd_is_within_5_percent_of_the_svd_and_never_below_it(backend: Backend) {
    let cases = [
        (gpumf::lab::exercise_matrix(), lab_params(1)),
        (low_rank_plus_noise(300, 200, 5, 0.1, 42), dense_params(5, 200, 42)),
    ];
    for (a, params) in cases {
        let c = compare(&a, &params, std::slice::from_ref(&backend)).unwrap();
        for r in &c.sgd {
            println!("{}x{}: {} loss {:.6} vs SVD {:.6}", c.rows, c.cols, r.backend, r.loss, c.svd_loss);
            assert!(!c.below_optimum(r.loss), "{}: {} below the optimum {}", r.backend, r.loss, c.svd_loss);
            assert!(r.loss <= 1.05 * c.svd_loss, "{}: {} vs SVD {}", r.backend, r.loss, c.svd_loss);
        }
    }
}

fn gpu_sgd_is_within_5_percent_of_the_svd_and_never_below_it() {
    if !common::gpu_available() {
        return;
    }
    sgd_is_within_5_percent_of_the_svd_and_never_below_it(gpu(GpuOptions::default()));
}

/// The CPU half of the SVD check, which needs no GPU.
fn cpu_sgd_is_within_5_percent_of_the_svd_and_never_below_it() {
    sgd_is_within_5_percent_of_the_svd_and_never_below_it(Backend::Cpu(CpuMode::Sequential));
}

fn small_problem() -> Problem {
    let all = load_ratings(&common::latest_small(), LoadOptions::default()).unwrap().ratings;
    split_random(&all, 0.2, 7).unwrap()
}

/// The SVD++ term on the GPU (its passes on the device, in f32 and f16, with the factors in
/// one block or cut into blocks, and on the host where a side's rows do not fit one binding)
/// beats the plain model as on the CPU, and reaches the CPU's RMSE.
fn svdpp_term_on_the_gpu_beats_the_plain_model_like_the_cpu() {
    if !common::gpu_available() {
        return;
    }
    let problem = split_random(&load_ratings(&common::latest_small(), LoadOptions::default()).unwrap().ratings, 0.2, 3).unwrap();
    let params = Params { rank: 32, epochs: 20, ..Params::default() };
    let cpu = test_rmse(&problem, &params, &Backend::Cpu(CpuMode::GpuOrder));
    let f16 = GpuOptions { precision: Precision::F16, ..GpuOptions::default() };
    let small_binding = GpuOptions { max_binding_bytes: Some(64 << 10), ..GpuOptions::default() };
    let blocked = Some(GridSize { user_blocks: 2, item_blocks: 3 });
    for (options, blocks, where_) in [(GpuOptions::default(), None, ", the SVD++ term)"), (f16.clone(), None, ", the SVD++ term)"), (GpuOptions::default(), blocked, ", the SVD++ term)"), (f16.clone(), blocked, ", the SVD++ term)"), (small_binding, None, "on the host")] {
        let params = Params { blocks, ..params.clone() };
        let run = |params: &Params| train(&problem, params, &gpu(options.clone()), |_| {}).unwrap();
        let (svdpp, plain) = (run(&params), run(&Params { svdpp: false, ..params.clone() }));
        let rmse = |t: &gpumf::training::Trained| t.history.last().unwrap().test_rmse().unwrap();
        println!("{}: the SVD++ term {:.4}, without {:.4}, cpu {cpu:.4}", svdpp.backend, rmse(&svdpp), rmse(&plain));
        assert!(svdpp.backend.contains(where_) && !plain.backend.contains("SVD++"), "{} / {}", svdpp.backend, plain.backend);
        assert!(rmse(&svdpp) < rmse(&plain) - 0.003, "{}: {} with the SVD++ term, {} without", svdpp.backend, rmse(&svdpp), rmse(&plain));
        assert!((rmse(&svdpp) - cpu).abs() < 0.005, "{}: {} against the cpu's {cpu}", svdpp.backend, rmse(&svdpp));
    }
}

fn ranks_that_are_not_multiples_of_four_or_the_subgroup_train_like_the_cpu() {
    if !common::gpu_available() {
        return;
    }
    let problem = small_problem();
    for rank in [1, 5, 33, 130, 512] {
        let params = Params { rank, epochs: 8, ..Params::default() };
        let g = test_rmse(&problem, &params, &gpu(GpuOptions::default()));
        let c = test_rmse(&problem, &params, &Backend::Cpu(CpuMode::GpuOrder));
        println!("rank {rank}: gpu {g:.4} cpu {c:.4}");
        assert!((g - c).abs() <= 0.01, "rank {rank}: gpu {g} vs cpu {c}");
    }
}

/// `--models 2` on the GPU: two devices' models averaged into one of twice the rank, scored as
/// the CPU's average is.
fn averaged_models_train_on_the_gpu_like_the_cpu() {
    if !common::gpu_available() {
        return;
    }
    let problem = small_problem();
    let params = Params { rank: 8, epochs: 6, models: 2, ..Params::default() };
    let t = train(&problem, &params, &gpu(GpuOptions::default()), |_| {}).unwrap();
    let g = t.history.last().unwrap().test_rmse().unwrap();
    let c = test_rmse(&problem, &params, &Backend::Cpu(CpuMode::GpuOrder));
    println!("2 models: {} {g:.4}, cpu {c:.4}", t.backend);
    assert!(t.backend.starts_with("2 models averaged, each gpu"), "{}", t.backend);
    assert_eq!(t.model.rank(), 16);
    assert!((g - c).abs() <= 0.01, "gpu {g} vs cpu {c}");
    assert!((metrics::evaluate(&t.model, &problem.test).rmse() - g).abs() < 1e-9);
}

fn every_lane_count_trains_like_the_cpu() {
    if !common::gpu_available() {
        return;
    }
    let problem = small_problem();
    let params = Params { rank: 24, epochs: 8, ..Params::default() };
    let c = test_rmse(&problem, &params, &Backend::Cpu(CpuMode::GpuOrder));
    let widest = gpumf::gpu::Gpu::open(false, true).unwrap().adapter.subgroup_min_size;
    for lanes in [1, 2, 4, 8].into_iter().filter(|&l| l <= widest) {
        let g = test_rmse(&problem, &params, &gpu(GpuOptions { lanes_per_rating: Some(lanes), ..GpuOptions::default() }));
        println!("{lanes} lanes per rating: gpu {g:.4} cpu {c:.4}");
        assert!((g - c).abs() <= 0.01, "{lanes} lanes: gpu {g} vs cpu {c}");
    }
}

fn kernels_are_timed_on_the_devices_clock_where_it_has_timestamps() {
    if !common::gpu_available() {
        return;
    }
    let problem = small_problem();
    let params = Params { rank: 16, epochs: 3, ..Params::default() };
    let t = train(&problem, &params, &gpu(GpuOptions::default()), |_| {}).unwrap();
    let adapter = gpumf::gpu::Gpu::open(false, true).unwrap().adapter;
    for r in &t.history {
        match r.kernel_seconds {
            Some(k) => assert!(k > 0.0, "epoch {}: kernels {k} s", r.epoch),
            None => assert!(!adapter.timestamp_query, "{} has timestamps but the epoch was not timed", adapter.name),
        }
    }
    assert_eq!(t.kernel_seconds.is_some(), adapter.timestamp_query);
    // The default --gpu-memory comes from the Vulkan driver's device-local heap.
    if adapter.backend == "Vulkan" {
        assert!(adapter.device_memory.is_some_and(|m| m >= 64 << 20), "{}: device memory {:?}", adapter.name, adapter.device_memory);
    }
    // Epochs overlap on the host's clock (the next goes out before the last is read), so the
    // kernels are held to the host's time over the whole run.
    if let Some(k) = t.kernel_seconds {
        assert!(k <= t.train_seconds * 1.01 + 1e-3, "kernels {k} s, host {} s", t.train_seconds);
    }
}

fn the_workgroup_reduction_path_trains_like_the_subgroup_path() {
    if !common::gpu_available() {
        return;
    }
    let problem = small_problem();
    let params = Params { rank: 40, epochs: 10, ..Params::default() };
    let sub = test_rmse(&problem, &params, &gpu(GpuOptions::default()));
    let wg = test_rmse(&problem, &params, &gpu(GpuOptions { subgroups: false, ..GpuOptions::default() }));
    assert!((sub - wg).abs() <= 0.01, "subgroups {sub} vs workgroup {wg}");
}

fn problems_larger_than_one_binding_are_split_into_windows() {
    if !common::gpu_available() {
        return;
    }
    let problem = small_problem();
    let params = Params { rank: 32, epochs: 10, ..Params::default() };
    // 64 KiB bindings: 128 rows of rank 32 per block and 5461 ratings per window.
    let options = GpuOptions { max_binding_bytes: Some(64 << 10), ..GpuOptions::default() };
    let solver = GpuSolver::new(&problem, Model::init(&problem, &params, None), &params, &options).unwrap();
    let grid = solver.schedule().grid();
    assert!(grid.user_blocks > 1 && grid.item_blocks > 1, "{grid:?}");
    let split = test_rmse(&problem, &params, &gpu(options));
    let whole = test_rmse(&problem, &params, &gpu(GpuOptions::default()));
    println!("split {split:.4} whole {whole:.4}");
    assert!((split - whole).abs() <= 0.01, "split {split} vs whole {whole}");
}

/// Settings under which every term of the update shows in the factors: a steep learning-rate
/// decay, strong bias regularisation, several epochs (five: the SVD++ term's passes run
/// before the second and the fifth, the second moving priors the first set).
fn exact_params() -> Params {
    Params { rank: 16, epochs: 5, learning_rate: 0.02, lr_decay: 1.0, reg: 0.05, reg_bias: 0.5, ..Params::default() }
}

/// The share of two models' factors and biases more than `tolerance` apart.
fn share_apart(a: &Model, b: &Model, tolerance: f32) -> f64 {
    let pairs = || {
        let x = a.user_factors.iter().chain(a.item_factors.iter()).chain(&a.user_bias).chain(&a.item_bias);
        x.zip(b.user_factors.iter().chain(b.item_factors.iter()).chain(&b.user_bias).chain(&b.item_bias))
    };
    pairs().filter(|(p, q)| (*p - *q).abs() > tolerance).count() as f64 / pairs().count() as f64
}

/// The largest difference between two models' factors and biases.
fn largest_difference(a: &Model, b: &Model) -> f32 {
    let arrays = [
        (a.user_factors.as_slice().unwrap(), b.user_factors.as_slice().unwrap()),
        (a.item_factors.as_slice().unwrap(), b.item_factors.as_slice().unwrap()),
        (&a.user_bias[..], &b.user_bias[..]),
        (&a.item_bias[..], &b.item_bias[..]),
    ];
    arrays.iter().flat_map(|(x, y)| x.iter().zip(y.iter()).map(|(p, q)| (p - q).abs())).fold(0.0, f32::max)
}

/// With the schedule fixing the order and one rating in flight, the GPU runs the very updates
/// of the sequential CPU trainer, so the factors agree to rounding. Looser tests (RMSE within
/// 0.01) pass with a wrong update rule; this one fails when the GPU drops the bias
/// regularisation, ignores the learning-rate schedule or the rating unit, or updates q with the
/// new p, and when the CPU drops the bias regularisation (each was tried).
fn one_rating_in_flight_gives_the_sequential_trainers_factors() {
    if !common::gpu_available() {
        return;
    }
    let mut problems = vec![("generated", gpumf::bench::synthetic_problem(&gpumf::bench::SyntheticSpec::netflix_scaled(30_000, 3)).unwrap())];
    if let Some(u1) = common::ml100k_fold(1) {
        problems.push(("ml-100k u1", u1));
    }
    let one = GpuOptions { in_flight: Some(1), ..GpuOptions::default() };
    for (name, problem) in &problems {
        let params = exact_params();
        // Streamed: ratings through the ring with the factors on the device, and with the
        // factors swapped block by block too; the grid is the one the budget makes the GPU
        // choose, given to the CPU as well.
        // What everything but the SVD++ term's state takes: less than that streams.
        let plain = Params { svdpp: false, ..params.clone() };
        let need = GpuSolver::new(problem, Model::init(problem, &plain, None), &plain, &one).unwrap().buffer_bytes();
        let rows = (problem.num_users() + problem.num_items()) as u64;
        // Both ways of streaming: the host writing into mapped buffers, and copies.
        for (budget, upload) in [need - 12 * 1000, rows * 68 / 2 + 200_000].into_iter().flat_map(|b| [(b, Upload::Mapped), (b, Upload::Copied)]) {
            let options = GpuOptions { gpu_memory: Some(budget), upload: Some(upload), ..one.clone() };
            let grid = GpuSolver::new(problem, Model::init(problem, &params, None), &params, &options).unwrap().schedule().grid();
            let params = Params { blocks: Some(grid), ..params.clone() };
            let cpu = train(problem, &params, &Backend::Cpu(CpuMode::GpuOrder), |_| {}).unwrap();
            let gpu = train(problem, &params, &gpu(options), |_| {}).unwrap();
            assert!(gpu.backend.contains("streamed") && gpu.backend.contains(upload.name()) && gpu.backend.contains("the SVD++ term"), "{}", gpu.backend);
            let windows: u64 = gpu.history.iter().map(|r| r.uploads.windows).sum();
            assert!(windows >= params.epochs as u64 && gpu.history.iter().all(|r| r.uploads.while_device_busy <= r.uploads.windows), "{:?}", gpu.history.iter().map(|r| r.uploads).collect::<Vec<_>>());
            let diff = largest_difference(&cpu.model, &gpu.model);
            println!("{name}, {}: largest difference {diff:e} (--gpu-memory {budget}; {windows} windows)", gpu.backend);
            assert!(diff < 1e-5, "{name}, --gpu-memory {budget}, {upload:?}: the streamed GPU's factors differ from the sequential trainer's by {diff}");
        }
        let (m, n) = (problem.num_users(), problem.num_items());
        // The default single block; an uneven grid; and blocks cut by a small binding into
        // several windows each (the grid is given, so both trainers use it). Implicit
        // feedback's passes run on the device but where a side's rows take several bindings.
        let small_binding = GpuOptions { max_binding_bytes: Some(16 << 10), ..one.clone() };
        let rows_fit = (16 << 10) / 64;
        let fitted = GridSize { user_blocks: m.div_ceil(rows_fit), item_blocks: n.div_ceil(rows_fit) };
        for (blocks, options, passes) in [(None, one.clone(), ", the SVD++ term)"), (Some(GridSize { user_blocks: 3, item_blocks: 2 }), one.clone(), ", the SVD++ term)"), (Some(fitted), small_binding, "the SVD++ term on the host")] {
            let params = Params { blocks, ..exact_params() };
            let cpu = train(problem, &params, &Backend::Cpu(CpuMode::GpuOrder), |_| {}).unwrap();
            let gpu = train(problem, &params, &gpu(options), |_| {}).unwrap();
            assert!(gpu.backend.contains(passes), "{name}, blocks {blocks:?}: {}", gpu.backend);
            let diff = largest_difference(&cpu.model, &gpu.model);
            println!("{name}, {}: largest difference {diff:e} ({})", gpu.backend, params.blocks.map_or("default".into(), |g| g.to_string()));
            assert!(diff < 1e-5, "{name}, blocks {blocks:?}: the GPU's factors differ from the sequential trainer's by {diff}");
            // The losses summed during the two update passes agree too.
            for (c, g) in cpu.history.iter().zip(&gpu.history) {
                assert!((c.train_loss - g.train_loss).abs() <= 1e-4 * c.train_loss, "epoch {}: loss cpu {} gpu {}", c.epoch, c.train_loss, g.train_loss);
            }
        }
    }
}

/// Every loss, with non-negative factors and with L1 too, runs the very updates of the
/// sequential CPU trainer on the GPU with one rating in flight (real losses on ratings of 1 to
/// 5, binary ones on the same ratings as labels 0/1). It fails when the WGSL loss snippets or the
/// constraints differ from src/objective.rs and src/update.rs: a wrong sign in the logistic
/// slope, the projection skipped, L1 dropped on the GPU (each was tried).
fn every_loss_and_constraint_gives_the_sequential_trainers_factors() {
    if !common::gpu_available() {
        return;
    }
    let spec = gpumf::bench::SyntheticSpec { clip: Some((1.0, 5.0)), ..gpumf::bench::SyntheticSpec::netflix_scaled(20_000, 5) };
    let ratings = gpumf::bench::synthetic_problem(&spec).unwrap();
    let labels = {
        let liked = |r: &[gpumf::data::Rating]| r.iter().map(|r| gpumf::data::Rating { value: if r.value >= 3.5 { 1.0 } else { 0.0 }, ..*r }).collect::<Vec<_>>();
        Problem { train: liked(&ratings.train), test: liked(&ratings.test), ..ratings.clone() }
    };
    let one = GpuOptions { in_flight: Some(1), ..GpuOptions::default() };
    // (The one-class losses have their own tests below.)
    for &(loss, name, _) in Loss::ALL.iter().filter(|(l, _, _)| !l.is_one_class()) {
        let problem = if loss.is_binary() { &labels } else { &ratings };
        for (nonneg, l1) in [(false, 0.0), (true, 0.0), (false, 0.002), (true, 0.002)] {
            let params = Params { loss, nonneg, l1, ..exact_params() };
            let cpu = train(problem, &params, &Backend::Cpu(CpuMode::GpuOrder), |_| {}).unwrap();
            let gpu = train(problem, &params, &gpu(one.clone()), |_| {}).unwrap();
            let (diff, apart) = (largest_difference(&cpu.model, &gpu.model), share_apart(&cpu.model, &gpu.model, 1e-5));
            println!("{name}, nonneg {nonneg}, l1 {l1}: largest difference {diff:e}, {apart:e} of the values more than 1e-5 apart");
            // The hinge's slope jumps where a margin is 1: a margin within rounding of it takes
            // one step (lr, at most 0.02 here) on one side only, which moves that rating's two
            // rows (hinge with non-negative factors: one value in 8,000, 0.004 apart). A wrong
            // snippet or constraint moves most values.
            let kinked = loss == Loss::Hinge;
            assert!(diff < 1e-5 || (kinked && diff <= 0.02 && apart < 1e-3), "{name}, nonneg {nonneg}, l1 {l1}: the GPU's factors differ from the sequential trainer's by {diff} ({apart:e} of them)");
            if nonneg || loss.needs_nonneg() {
                assert!(gpu.model.user_factors.iter().chain(gpu.model.item_factors.iter()).all(|&x| x >= 0.0), "{name}: a negative factor");
            }
            for (c, g) in cpu.history.iter().zip(&gpu.history) {
                assert!((c.train_loss - g.train_loss).abs() <= 1e-4 * c.train_loss.abs().max(1.0), "{name}, epoch {}: loss cpu {} gpu {}", c.epoch, c.train_loss, g.train_loss);
                let (ct, gt) = (c.test_metric().unwrap(), g.test_metric().unwrap());
                assert!((ct - gt).abs() < 1e-4, "{name}, epoch {}: test {} cpu {ct} gpu {gt}", c.epoch, loss.metric().name());
            }
        }
    }
}

/// A problem whose grid leaves most blocks empty (one user rates most items; a few others
/// rate one each) trains on every placement, and the GPU with one rating in flight still gives
/// the sequential trainer's factors, resident and streamed.
fn empty_and_unequal_blocks_train_everywhere_and_exactly() {
    if !common::gpu_available() {
        return;
    }
    let mut triplets: Vec<(u64, u64, f32)> = (0..20_000).map(|i| (7, i, (i % 5) as f32 + 1.0)).collect();
    triplets.extend((0..9).map(|u| (100 + u, u * 3, 4.0)));
    let all = gpumf::data::RatingSet::from_triplets(triplets);
    let problem = Problem::new(all, None);
    // Three epochs, the last two pulled toward the priors. (A row stepped 20,000 times an epoch
    // drifts from lavapipe's by rounding: 1.7·10⁻⁵ in six.)
    let params = Params { blocks: Some(GridSize { user_blocks: 4, item_blocks: 3 }), epochs: 3, ..exact_params() };
    let cpu = train(&problem, &params, &Backend::Cpu(CpuMode::GpuOrder), |_| {}).unwrap();
    let threads = train(&problem, &params, &Backend::Cpu(CpuMode::Parallel { threads: 3 }), |_| {}).unwrap();
    assert!(threads.history.iter().all(|r| r.train_loss.is_finite()));
    let one = GpuOptions { in_flight: Some(1), ..GpuOptions::default() };
    let need = GpuSolver::new(&problem, Model::init(&problem, &params, None), &params, &one).unwrap().buffer_bytes();
    for options in [one.clone(), GpuOptions { gpu_memory: Some(need - 12 * 100), ..one.clone() }] {
        let gpu = train(&problem, &params, &gpu(options), |_| {}).unwrap();
        let diff = largest_difference(&cpu.model, &gpu.model);
        println!("{}: largest difference {diff:e}", gpu.backend);
        assert!(diff < 1e-5, "{}: differs by {diff}", gpu.backend);
    }
}

/// Ratings in a block cache on disk (`--memory`) stream to the GPU block by block: with one
/// rating in flight it gives the sequential CPU trainer's factors from the same cache, both
/// ways of uploading, its epochs count the bytes read from disk; a cache written in user order
/// (for CPU threads), or cut coarser than the device needs, is refused by name.
fn blocks_on_disk_stream_to_the_gpu_exactly() {
    use gpumf::cache::{CacheSettings, DiskBlocks};
    use gpumf::grid::Order;
    if !common::gpu_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let spec = gpumf::bench::SyntheticSpec::netflix_scaled(30_000, 3);
    let (train_ratings, test_ratings) = gpumf::bench::generate(&spec).unwrap();
    let path = dir.path().join("generated.bin");
    gpumf::data::write_ratings(&path, &train_ratings, gpumf::data::WriteFormat::Binary, false).unwrap();
    let test = gpumf::data::RatingSet::from_triplets(test_ratings.iter().map(|r| (r.user as u64, r.item as u64, r.value)));
    let params = Params { blocks: Some(GridSize { user_blocks: 3, item_blocks: 2 }), ..exact_params() };
    let settings = CacheSettings { grid: params.blocks, order: Order::Shuffled, seed: params.seed, memory: 64 << 10, threads: 1 };
    let cache = std::sync::Arc::new(DiskBlocks::open_or_build(&path, &LoadOptions::default(), dir.path(), &settings, |_| {}).unwrap());
    let problem = Problem::on_disk(cache.clone(), Some(&test));
    let cpu = train(&problem, &params, &Backend::Cpu(CpuMode::GpuOrder), |_| {}).unwrap();
    for upload in [Upload::Mapped, Upload::Copied] {
        let options = GpuOptions { in_flight: Some(1), upload: Some(upload), ..GpuOptions::default() };
        let gpu = train(&problem, &params, &gpu(options), |_| {}).unwrap();
        assert!(gpu.backend.contains("streamed") && gpu.backend.contains("3x2 blocks"), "{}", gpu.backend);
        let diff = largest_difference(&cpu.model, &gpu.model);
        println!("{}: largest difference {diff:e}", gpu.backend);
        assert!(diff < 1e-5, "{upload:?}: the GPU from disk differs from the sequential trainer from disk by {diff}");
        // Each epoch reads every block from disk and writes it to the device.
        assert!(gpu.history.iter().all(|r| r.streamed_bytes >= 2 * 12 * cache.summary.count), "{:?}", gpu.history.iter().map(|r| r.streamed_bytes).collect::<Vec<_>>());
    }
    let by_user = tempfile::tempdir().unwrap();
    let threads = CacheSettings { order: Order::ByUser, threads: 2, ..settings.clone() };
    let cache = DiskBlocks::open_or_build(&path, &LoadOptions::default(), by_user.path(), &threads, |_| {}).unwrap();
    let e = train(&Problem::on_disk(std::sync::Arc::new(cache), Some(&test)), &params, &gpu(GpuOptions::default()), |_| {}).err().expect("a cache in user order").to_string();
    assert!(e.contains("random order") && e.contains("the CPU trainers (by user within blocks)"), "{e}");
    // A binding of 1 KiB holds 62 rows of rank 16 (with their bias and λ): 3x2 blocks of this
    // set's users and items do not fit one.
    let small = GpuOptions { max_binding_bytes: Some(1 << 10), ..GpuOptions::default() };
    let e = train(&problem, &params, &gpu(small), |_| {}).err().expect("blocks too coarse").to_string();
    assert!(e.contains("cuts the ratings into 3x2 blocks") && e.contains("--blocks"), "{e}");
    // The command: `train --memory --backend gpu` writes the cache in the GPU's order, whatever
    // --threads says, and trains from it.
    let test_path = dir.path().join("generated-test.bin");
    gpumf::data::write_ratings(&test_path, &test_ratings, gpumf::data::WriteFormat::Binary, false).unwrap();
    let (train_arg, test_arg) = (path.display().to_string(), test_path.display().to_string());
    let args = ["train", "--train", &train_arg, "--test", &test_arg, "--memory", "200KiB", "--backend", "gpu", "--threads", "2", "--epochs", "2", "--rank", "8"];
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_gpumf")).args(args).output().unwrap();
    let (out, err) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success() && out.contains("ratings streamed") && out.contains("test RMSE") && err.contains("blocks on disk"), "{out}\n{err}");
}

/// The SVD++ term's passes on the device sum a popular item's users in runs: with one rating
/// in flight they still give the sequential trainer's factors when an item has thousands.
fn a_popular_item_gives_the_sequential_trainers_factors_with_the_svdpp_term() {
    if !common::gpu_available() {
        return;
    }
    let mut triplets: Vec<(u64, u64, f32)> = (0..3000).map(|u| (u, 0, (u % 5) as f32 + 1.0)).collect();
    triplets.extend((0..3000).map(|u| (u, 1 + u % 40, ((u / 7) % 5) as f32 + 1.0)));
    let problem = Problem::new(gpumf::data::RatingSet::from_triplets(triplets), None);
    let params = exact_params();
    let cpu = train(&problem, &params, &Backend::Cpu(CpuMode::GpuOrder), |_| {}).unwrap();
    let gpu = train(&problem, &params, &gpu(GpuOptions { in_flight: Some(1), ..GpuOptions::default() }), |_| {}).unwrap();
    let diff = largest_difference(&cpu.model, &gpu.model);
    println!("{}: largest difference {diff:e}", gpu.backend);
    assert!(gpu.backend.ends_with(", the SVD++ term)"), "the passes run on the device: {}", gpu.backend);
    assert!(diff < 1e-5, "{}: differs by {diff}", gpu.backend);
}

/// Training beyond device memory: `--gpu-memory` an eighth of what the resident run allocates
/// streams the ratings and swaps the factor blocks, and reaches the resident run's accuracy.
fn an_eighth_of_the_device_memory_gives_the_resident_accuracy() {
    if !common::gpu_available() {
        return;
    }
    let mut cases = vec![(
        "generated 2M",
        gpumf::bench::synthetic_problem(&gpumf::bench::SyntheticSpec::netflix_scaled(2_000_000, 11)).unwrap(),
        Params { rank: 32, epochs: 15, ..Params::default() },
    )];
    if let Some(u1) = common::ml100k_fold(1) {
        cases.push(("ml-100k u1", u1, Params::default()));
    }
    for (name, problem, params) in &cases {
        let resident = train(problem, params, &gpu(GpuOptions::default()), |_| {}).unwrap();
        let budget = resident.device_bytes / 8;
        let streamed = train(problem, params, &gpu(GpuOptions { gpu_memory: Some(budget), ..GpuOptions::default() }), |_| {}).unwrap();
        let (r, s) = (resident.history.last().unwrap().test_rmse().unwrap(), streamed.history.last().unwrap().test_rmse().unwrap());
        println!("{name}: resident {r:.4} ({} bytes), an eighth {s:.4} ({} bytes, {})", resident.device_bytes, streamed.device_bytes, streamed.backend);
        assert!(streamed.device_bytes <= budget, "{name}: allocated {} over the budget {budget}", streamed.device_bytes);
        assert!(streamed.backend.contains("streamed"), "{}", streamed.backend);
        assert!((r - s).abs() <= 0.005, "{name}: resident {r} vs streamed {s}");
    }
}

/// A budget that cannot hold one row of each side beside the ring is refused, naming the
/// smallest that works; that budget then trains.
fn a_budget_too_small_names_the_smallest_that_works() {
    if !common::gpu_available() {
        return;
    }
    let problem = small_problem();
    let params = Params { rank: 8, epochs: 1, ..Params::default() };
    let e = train(&problem, &params, &gpu(GpuOptions { gpu_memory: Some(4096), ..GpuOptions::default() }), |_| {}).err().expect("4 KiB is too small");
    let message = e.to_string();
    assert!(message.contains("--gpu-memory") && message.contains("smallest budget that works is"), "{message}");
    let smallest = message.split("smallest budget that works is ").nth(1).unwrap().split(' ').take(2).collect::<Vec<_>>().join("");
    let bytes = gpumf::resources::parse_size(&smallest).unwrap();
    // Rounded for people: a little above the figure it names trains.
    let t = train(&problem, &params, &gpu(GpuOptions { gpu_memory: Some(bytes + 1024), ..GpuOptions::default() }), |_| {}).unwrap();
    assert!(t.history[0].train_loss.is_finite());
}

/// The GPU's own scoring of the test set, through blocks and windows, agrees with scoring its
/// read-back model on the CPU, and its update-pass loss with what the CPU's pass met.
fn the_gpu_scores_the_test_set_like_the_cpu_through_blocks_and_windows() {
    if !common::gpu_available() {
        return;
    }
    let problem = small_problem();
    let params = Params { rank: 24, epochs: 3, ..Params::default() };
    // Several ratings per subgroup (2 lanes each) leave groups idle at the end of a window.
    let several = GpuOptions { lanes_per_rating: Some(2), ..GpuOptions::default() };
    for options in [GpuOptions::default(), GpuOptions { max_binding_bytes: Some(32 << 10), ..GpuOptions::default() }, several] {
        let t = train(&problem, &params, &gpu(options), |_| {}).unwrap();
        let last = t.history.last().unwrap();
        let cpu_test = metrics::evaluate(&t.model, &problem.test);
        assert!((cpu_test.rmse() - last.test_rmse().unwrap()).abs() < 1e-4, "{}: gpu {:?} cpu {}", t.backend, last.test_rmse(), cpu_test.rmse());
        assert!((cpu_test.mae() - last.test_mae().unwrap()).abs() < 1e-4);
    }
}

fn early_stopping_keeps_the_best_epoch_on_the_gpu() {
    if !common::gpu_available() {
        return;
    }
    common::check_early_stopping(&gpu(GpuOptions::default()));
}

/// DSGD with a GPU per worker: two devices opened on the one adapter stand in for two GPUs,
/// and reach one device's test RMSE (and the one-process GPU trainer's).
fn two_devices_on_one_adapter_train_like_one() {
    if !common::gpu_available() {
        return;
    }
    let Some(problem) = common::ml100k_fold(1) else { return };
    // With the SVD++ term, whose passes the cluster runs between the devices' epochs.
    let params = Params { rank: 32, epochs: 20, ..Params::default() };
    let run = |devices: Vec<usize>| {
        let cluster = gpumf::distributed::Cluster { gpu: Some((GpuOptions::default(), devices.clone())), ..gpumf::distributed::Cluster::threads(devices.len()) };
        let stripes = gpumf::distributed::Stripes::from_problem(problem.clone(), &params, &cluster).unwrap();
        gpumf::distributed::train(stripes, &params, &cluster, |_| {}, |_| true).unwrap().expect("one process: process 0")
    };
    let (one, two) = (run(vec![0]), run(vec![0, 0]));
    let plain = train(&problem, &params, &gpu(GpuOptions::default()), |_| {}).unwrap();
    let rmse = |t: &gpumf::training::Trained| t.history.last().unwrap().test_rmse().unwrap();
    println!("one device {:.4} ({}), two {:.4} ({}), one-process GPU {:.4}", rmse(&one), one.backend, rmse(&two), two.backend, rmse(&plain));
    assert!(two.backend.contains("2 workers") && two.backend.contains("GPU"), "{}", two.backend);
    assert!((rmse(&one) - rmse(&two)).abs() <= 0.005, "one device {} vs two {}", rmse(&one), rmse(&two));
    assert!((rmse(&two) - rmse(&plain)).abs() <= 0.01, "two devices {} vs the GPU trainer {}", rmse(&two), rmse(&plain));
    // The model that comes back is the trained one: it scores as the last epoch reported.
    let scored = metrics::evaluate(&two.model, &problem.test).rmse();
    assert!((scored - rmse(&two)).abs() < 1e-4, "{scored} vs {}", rmse(&two));
}

fn als_wgsl_validates() {
    validate_wgsl(gpumf::gpu::als::ALS_WGSL, "als.wgsl");
}

/// The one-class loss by ALS on the GPU solves the CPU's normal equations: its factors, loss
/// and NDCG@20 agree with the CPU's to rounding, at a rank below the workgroup and one above
/// it, with rows without events (ratings below the threshold) among them; resident, streamed in
/// bands and from the disk cache. It fails when the kernel drops the Gramian's or the events'
/// term, λ, or a CG step's update, or a band is solved at the wrong rows (each was tried).
fn ials_on_the_gpu_gives_the_cpus_factors() {
    if !common::gpu_available() {
        return;
    }
    // 120 users × 90 items; events where (u·7 + i·3) % 11 < 3, counts 1–3; user 5's are 0s.
    let mut triplets: Vec<(u64, u64, f32)> = Vec::new();
    for u in 0..120u64 {
        for i in (0..90u64).filter(|i| (u * 7 + i * 3) % 11 < 3) {
            triplets.push((u, i, if u == 5 { 0.0 } else { 1.0 + ((u + i) % 3) as f32 }));
        }
    }
    let set = gpumf::data::RatingSet::from_triplets(triplets);
    let problem = split_random(&set, 0.2, 9).unwrap();
    for rank in [8, 70] {
        let params = Params { rank, epochs: 3, ..Params::for_loss(Loss::Ials) };
        let cpu = train(&problem, &params, &Backend::Cpu(CpuMode::with_threads(2)), |_| {}).unwrap();
        let gpu = train(&problem, &params, &gpu(GpuOptions::default()), |_| {}).unwrap();
        let diff = largest_difference(&cpu.model, &gpu.model);
        let size = cpu.model.user_factors.iter().fold(0.0f32, |a, x| a.max(x.abs()));
        println!("ials rank {rank}: largest difference {diff:e} (largest factor {size})");
        assert!(diff < 1e-4 * size.max(1.0), "rank {rank}: the GPU's factors differ from the CPU's by {diff}");
        for (c, g) in cpu.history.iter().zip(&gpu.history) {
            assert!((c.train_loss - g.train_loss).abs() <= 1e-5 * c.train_loss.abs(), "rank {rank}, epoch {}: loss cpu {} gpu {}", c.epoch, c.train_loss, g.train_loss);
            let (ct, gt) = (c.test_metric().unwrap(), g.test_metric().unwrap());
            assert!((ct - gt).abs() < 1e-6, "rank {rank}, epoch {}: NDCG@20 cpu {ct} gpu {gt}", c.epoch);
        }
        assert!(gpu.backend.contains("alternating least squares"), "{}", gpu.backend);
    }
    // The events streamed in bands of rows (a few per side: 30 kB of device memory holds the
    // factors and two bands of about 1,300 events), and read from a block cache on disk a
    // block row (column) at a time: the same factors as the CPU's.
    let params = Params { rank: 8, epochs: 3, ..Params::for_loss(Loss::Ials) };
    let cpu = train(&problem, &params, &Backend::Cpu(CpuMode::with_threads(2)), |_| {}).unwrap();
    let streamed = train(&problem, &params, &gpu(GpuOptions { gpu_memory: Some(30_000), ..GpuOptions::default() }), |_| {}).unwrap();
    let diff = largest_difference(&cpu.model, &streamed.model);
    println!("{}: largest difference {diff:e}", streamed.backend);
    assert!(streamed.backend.contains("streamed in bands") && diff < 1e-4, "{}: differs by {diff}", streamed.backend);
    assert!(streamed.history.iter().all(|r| r.streamed_bytes > 2 * 8 * problem.train.len() as u64), "each epoch uploads every event");
    let e = train(&problem, &params, &gpu(GpuOptions { gpu_memory: Some(8_000), ..GpuOptions::default() }), |_| {}).err().expect("too little memory").to_string();
    assert!(e.contains("--gpu-memory") && e.contains("give at least"), "{e}");
    use gpumf::cache::{CacheSettings, DiskBlocks};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.bin");
    gpumf::data::write_ratings(&path, &problem.train, gpumf::data::WriteFormat::Binary, false).unwrap();
    let settings = CacheSettings { grid: Some(GridSize { user_blocks: 3, item_blocks: 2 }), order: gpumf::grid::Order::Shuffled, seed: params.seed, memory: 64 << 10, threads: 1 };
    let cache = std::sync::Arc::new(DiskBlocks::open_or_build(&path, &LoadOptions::default(), dir.path(), &settings, |_| {}).unwrap());
    let on_disk = Problem::on_disk(cache, None);
    let cpu = train(&on_disk, &params, &Backend::Cpu(CpuMode::with_threads(2)), |_| {}).unwrap();
    let banded = train(&on_disk, &params, &gpu(GpuOptions::default()), |_| {}).unwrap();
    let diff = largest_difference(&cpu.model, &banded.model);
    println!("{}: largest difference {diff:e}", banded.backend);
    assert!(banded.backend.contains("3x2 blocks on disk") && diff < 1e-4, "{}: differs by {diff}", banded.backend);
    for (c, g) in cpu.history.iter().zip(&banded.history) {
        assert!((c.train_loss - g.train_loss).abs() <= 1e-5 * c.train_loss.abs(), "from disk, epoch {}: loss cpu {} gpu {}", c.epoch, c.train_loss, g.train_loss);
    }
    // A software adapter (lavapipe) ends long shader loops early: a row of more events than
    // its solve takes there is refused by name, not solved wrong.
    if gpumf::gpu::list_adapters().iter().all(|a| a.is_software()) {
        let busy = gpumf::data::RatingSet::from_triplets((0..1200u64).map(|u| (u, 0, 1.0f32)).chain((0..1200u64).map(|u| (u, 1 + u % 7, 1.0))).collect::<Vec<_>>());
        let e = train(&Problem::new(busy, None), &params, &gpu(GpuOptions::default()), |_| {}).err().expect("a row too long for lavapipe").to_string();
        assert!(e.contains("software renderer") && e.contains("item row") && e.contains("1200 events") && e.contains("--backend cpu"), "{e}");
    }
}

/// The pairwise losses on the GPU pair each event with the row the CPU draws for it (the host
/// draws both), so with one rating in flight the factors, loss and NDCG@20 are the sequential
/// trainer's in the GPU's order: by rows and by columns, with and without biases, resident on
/// one block and on a 3×2 grid, streamed, and from a block cache on disk. It fails when the
/// kernel steps the drawn row up instead of down, drops its λ, or pairs the wrong side (each was
/// tried).
fn bpr_on_the_gpu_gives_the_sequential_trainers_factors() {
    use gpumf::cache::{CacheSettings, DiskBlocks};
    use gpumf::grid::Order;
    if !common::gpu_available() {
        return;
    }
    // 300 users × 200 items; events where (u·7 + i·3) % 13 < 3; user 5's are 0s (seen, below
    // the threshold: drawn, never paired).
    let mut triplets: Vec<(u64, u64, f32)> = Vec::new();
    for u in 0..300u64 {
        for i in (0..200u64).filter(|i| (u * 7 + i * 3) % 13 < 3) {
            triplets.push((u, i, if u == 5 { 0.0 } else { 1.0 }));
        }
    }
    let set = gpumf::data::RatingSet::from_triplets(triplets);
    let problem = split_random(&set, 0.2, 9).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.bin");
    gpumf::data::write_ratings(&path, &problem.train, gpumf::data::WriteFormat::Binary, false).unwrap();
    let one = GpuOptions { in_flight: Some(1), ..GpuOptions::default() };
    for loss in [Loss::Bpr, Loss::BprColumns] {
        for biases in [true, false] {
            let params = Params { rank: 12, epochs: 3, learning_rate: 0.2, biases, ..Params::for_loss(loss) };
            let need = GpuSolver::new(&problem, Model::init(&problem, &params, None), &params, &one).unwrap().buffer_bytes();
            let grid = Some(GridSize { user_blocks: 3, item_blocks: 2 });
            let streamed = GpuOptions { gpu_memory: Some(need - 12 * 500), ..one.clone() };
            for (blocks, options) in [(None, one.clone()), (grid, one.clone()), (grid, streamed)] {
                let params = Params { blocks, ..params.clone() };
                let streams = options.gpu_memory.is_some();
                let cpu = train(&problem, &params, &Backend::Cpu(CpuMode::GpuOrder), |_| {}).unwrap();
                let gpu = train(&problem, &params, &gpu(options), |_| {}).unwrap();
                let diff = largest_difference(&cpu.model, &gpu.model);
                println!("{}, biases {biases}, {}: largest difference {diff:e}", loss.name(), gpu.backend);
                assert!(diff < 1e-5, "{}, biases {biases}, {}: the GPU's factors differ from the sequential trainer's by {diff}", loss.name(), gpu.backend);
                assert!(largest_difference(&cpu.model, &Model::init(&problem, &params, None)) > 1e-2, "the pairs trained");
                assert_eq!(gpu.backend.contains("streamed"), streams, "{}", gpu.backend);
                for (c, g) in cpu.history.iter().zip(&gpu.history) {
                    let (ct, gt) = (c.test_metric().unwrap(), g.test_metric().unwrap());
                    assert!((ct - gt).abs() < 1e-6, "{}, epoch {}: NDCG@20 cpu {ct} gpu {gt}", loss.name(), c.epoch);
                }
            }
            // From a block cache on disk, in the GPU's order: both trainers read the same blocks.
            let settings = CacheSettings { grid, order: Order::Shuffled, seed: params.seed, memory: 16 << 10, threads: 1 };
            let cache = std::sync::Arc::new(DiskBlocks::open_or_build(&path, &LoadOptions::default(), dir.path(), &settings, |_| {}).unwrap());
            let on_disk = Problem::on_disk(cache, None);
            let params = Params { blocks: grid, ..params.clone() };
            let cpu = train(&on_disk, &params, &Backend::Cpu(CpuMode::GpuOrder), |_| {}).unwrap();
            let gpu = train(&on_disk, &params, &gpu(one.clone()), |_| {}).unwrap();
            let diff = largest_difference(&cpu.model, &gpu.model);
            println!("{}, biases {biases}, from disk, {}: largest difference {diff:e}", loss.name(), gpu.backend);
            assert!(gpu.backend.contains("streamed") && diff < 1e-5, "{}, biases {biases}, from disk: differs by {diff} ({})", loss.name(), gpu.backend);
        }
    }
}

fn main() -> std::process::ExitCode {
    common::harness(vec![
        Test { name: "als_wgsl_validates", needs: Needs::NOTHING, run: als_wgsl_validates },
        Test { name: "ials_on_the_gpu_gives_the_cpus_factors", needs: Needs::GPU, run: ials_on_the_gpu_gives_the_cpus_factors },
        Test { name: "bpr_on_the_gpu_gives_the_sequential_trainers_factors", needs: Needs::GPU, run: bpr_on_the_gpu_gives_the_sequential_trainers_factors },
        Test { name: "sgd_wgsl_validates_for_every_rank_precision_and_group", needs: Needs::NOTHING, run: sgd_wgsl_validates_for_every_rank_precision_and_group },
        Test { name: "svdpp_term_on_the_gpu_beats_the_plain_model_like_the_cpu", needs: Needs::GPU, run: svdpp_term_on_the_gpu_beats_the_plain_model_like_the_cpu },
        Test { name: "a_popular_item_gives_the_sequential_trainers_factors_with_the_svdpp_term", needs: Needs::GPU, run: a_popular_item_gives_the_sequential_trainers_factors_with_the_svdpp_term },
        Test { name: "group_preludes_each_validate_with_the_kernel", needs: Needs::NOTHING, run: group_preludes_each_validate_with_the_kernel },
        Test { name: "a_rating_gets_the_fewest_lanes_that_hold_its_row_within_one_subgroup", needs: Needs::NOTHING, run: a_rating_gets_the_fewest_lanes_that_hold_its_row_within_one_subgroup },
        Test { name: "ratings_in_flight_stay_few_beside_the_rows_they_touch", needs: Needs::NOTHING, run: ratings_in_flight_stay_few_beside_the_rows_they_touch },
        Test { name: "every_loss_and_constraint_gives_the_sequential_trainers_factors", needs: Needs::GPU, run: every_loss_and_constraint_gives_the_sequential_trainers_factors },
        Test { name: "cpu_sgd_is_within_5_percent_of_the_svd_and_never_below_it", needs: Needs::NOTHING, run: cpu_sgd_is_within_5_percent_of_the_svd_and_never_below_it },
        Test { name: "a_broken_shader_fails_validation", needs: Needs::NOTHING, run: a_broken_shader_fails_validation },
        Test { name: "gpu_matches_the_cpu_on_ml100k_u1", needs: Needs::GPU_AND_ML100K, run: gpu_matches_the_cpu_on_ml100k_u1 },
        Test { name: "f16_factors_stay_within_0_005_of_f32", needs: Needs::GPU_AND_ML100K, run: f16_factors_stay_within_0_005_of_f32 },
        Test { name: "gpu_sgd_is_within_5_percent_of_the_svd_and_never_below_it", needs: Needs::GPU, run: gpu_sgd_is_within_5_percent_of_the_svd_and_never_below_it },
        Test { name: "ranks_that_are_not_multiples_of_four_or_the_subgroup_train_like_the_cpu", needs: Needs::GPU, run: ranks_that_are_not_multiples_of_four_or_the_subgroup_train_like_the_cpu },
        Test { name: "averaged_models_train_on_the_gpu_like_the_cpu", needs: Needs::GPU, run: averaged_models_train_on_the_gpu_like_the_cpu },
        Test { name: "every_lane_count_trains_like_the_cpu", needs: Needs::GPU, run: every_lane_count_trains_like_the_cpu },
        Test { name: "kernels_are_timed_on_the_devices_clock_where_it_has_timestamps", needs: Needs::GPU, run: kernels_are_timed_on_the_devices_clock_where_it_has_timestamps },
        Test { name: "the_workgroup_reduction_path_trains_like_the_subgroup_path", needs: Needs::GPU, run: the_workgroup_reduction_path_trains_like_the_subgroup_path },
        Test { name: "problems_larger_than_one_binding_are_split_into_windows", needs: Needs::GPU, run: problems_larger_than_one_binding_are_split_into_windows },
        Test { name: "one_rating_in_flight_gives_the_sequential_trainers_factors", needs: Needs::GPU, run: one_rating_in_flight_gives_the_sequential_trainers_factors },
        Test { name: "empty_and_unequal_blocks_train_everywhere_and_exactly", needs: Needs::GPU, run: empty_and_unequal_blocks_train_everywhere_and_exactly },
        Test { name: "blocks_on_disk_stream_to_the_gpu_exactly", needs: Needs::GPU, run: blocks_on_disk_stream_to_the_gpu_exactly },
        Test { name: "an_eighth_of_the_device_memory_gives_the_resident_accuracy", needs: Needs::GPU, run: an_eighth_of_the_device_memory_gives_the_resident_accuracy },
        Test { name: "a_budget_too_small_names_the_smallest_that_works", needs: Needs::GPU, run: a_budget_too_small_names_the_smallest_that_works },
        Test { name: "the_gpu_scores_the_test_set_like_the_cpu_through_blocks_and_windows", needs: Needs::GPU, run: the_gpu_scores_the_test_set_like_the_cpu_through_blocks_and_windows },
        Test { name: "early_stopping_keeps_the_best_epoch_on_the_gpu", needs: Needs::GPU, run: early_stopping_keeps_the_best_epoch_on_the_gpu },
        Test { name: "two_devices_on_one_adapter_train_like_one", needs: Needs::GPU_AND_ML100K, run: two_devices_on_one_adapter_train_like_one },
    ])
}
