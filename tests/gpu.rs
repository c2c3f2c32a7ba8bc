//! The GPU engine: shaders validate, and training agrees with the CPU trainer and the SVD.
//! Runs on any adapter, Mesa's lavapipe included; in CI (CI=true) a missing adapter fails.

mod common;

use gpumf::cpu::CpuMode;
use gpumf::data::{load_ratings, split_random, LoadOptions, Problem};
use gpumf::gpu::{GpuOptions, GpuSolver, KernelShape, Precision, GROUP_SUBGROUP_WGSL, GROUP_WORKGROUP_WGSL, SGD_WGSL};
use gpumf::metrics;
use gpumf::model::{Model, Params};
use gpumf::solver::{train, Backend, Solver};
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
                out.push(KernelShape { rank, precision, subgroups, min_subgroup_size: width });
            }
        }
    }
    out
}

#[test]
fn sgd_wgsl_validates_for_every_rank_precision_and_group() {
    for shape in shapes() {
        let source = shape.source();
        assert!(source.contains(SGD_WGSL));
        validate_wgsl(&source, &format!("{shape:?}"));
    }
}

#[test]
fn group_preludes_each_validate_with_the_kernel() {
    for (prelude, subgroups) in [(GROUP_SUBGROUP_WGSL, true), (GROUP_WORKGROUP_WGSL, false)] {
        let shape = KernelShape { rank: 64, precision: Precision::F32, subgroups, min_subgroup_size: 32 };
        let source = shape.source();
        assert!(source.contains(prelude));
        validate_wgsl(&source, if subgroups { "group_subgroup.wgsl" } else { "group_workgroup.wgsl" });
    }
}

#[test]
fn a_broken_shader_fails_validation() {
    let shape = KernelShape { rank: 8, precision: Precision::F32, subgroups: true, min_subgroup_size: 32 };
    let broken = shape.source().replace("let e = r.value - prediction;", "let e = r.value - undefined_name;");
    assert!(naga::front::wgsl::parse_str(&broken).is_err());
}

fn gpu(options: GpuOptions) -> Backend {
    Backend::Gpu(options)
}

fn test_rmse(problem: &Problem, params: &Params, backend: &Backend) -> f64 {
    let t = train(problem, params, backend, |_| {}).unwrap();
    t.history.last().unwrap().test_rmse.unwrap()
}

#[test]
fn gpu_matches_the_cpu_on_ml100k_u1() {
    if !common::gpu_available() {
        return;
    }
    let Some(problem) = common::ml100k_fold(1) else { return };
    let params = Params::default();
    let t = train(&problem, &params, &gpu(GpuOptions::default()), |_| {}).unwrap();
    let g = t.history.last().unwrap().test_rmse.unwrap();
    let c = test_rmse(&problem, &params, &Backend::Cpu(CpuMode::Sequential));
    println!("u1 test RMSE: {} {g:.4}, cpu {c:.4}", t.backend);
    assert!((g - c).abs() <= 0.01, "gpu {g} vs cpu {c}");
    assert!(g <= 0.935);
    // The GPU's own reduction agrees with scoring its read-back model on the CPU.
    let cpu_view = metrics::evaluate(&t.model, &problem.test).rmse();
    assert!((cpu_view - g).abs() < 1e-3, "GPU-reduced {g} vs CPU-scored {cpu_view}");
}

#[test]
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
            let f16_rmse = t.history.last().unwrap().test_rmse.unwrap();
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

#[test]
fn gpu_sgd_is_within_5_percent_of_the_svd_and_never_below_it() {
    if !common::gpu_available() {
        return;
    }
    let backends = [gpu(GpuOptions::default()), Backend::Cpu(CpuMode::Sequential)];
    let cases = [
        (gpumf::lab::exercise_matrix(), lab_params(1)),
        (low_rank_plus_noise(300, 200, 5, 0.1, 42), dense_params(5, 200, 42)),
    ];
    for (a, params) in cases {
        let c = compare(&a, &params, &backends).unwrap();
        for r in &c.sgd {
            println!("{}x{}: {} loss {:.6} vs SVD {:.6}", c.rows, c.cols, r.backend, r.loss, c.svd_loss);
            assert!(!c.below_optimum(r.loss), "{}: {} below the optimum {}", r.backend, r.loss, c.svd_loss);
            assert!(r.loss <= 1.05 * c.svd_loss, "{}: {} vs SVD {}", r.backend, r.loss, c.svd_loss);
        }
    }
}

fn small_problem() -> Problem {
    let all = load_ratings(&common::latest_small(), LoadOptions::default()).unwrap().ratings;
    split_random(&all, 0.2, 7).unwrap()
}

#[test]
fn ranks_that_are_not_multiples_of_four_or_the_subgroup_train_like_the_cpu() {
    if !common::gpu_available() {
        return;
    }
    let problem = small_problem();
    for rank in [1, 5, 33, 130, 512] {
        let params = Params { rank, epochs: 8, ..Params::default() };
        let g = test_rmse(&problem, &params, &gpu(GpuOptions::default()));
        let c = test_rmse(&problem, &params, &Backend::Cpu(CpuMode::Sequential));
        println!("rank {rank}: gpu {g:.4} cpu {c:.4}");
        assert!((g - c).abs() <= 0.01, "rank {rank}: gpu {g} vs cpu {c}");
    }
}

#[test]
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

#[test]
fn problems_larger_than_one_binding_are_split_into_windows() {
    if !common::gpu_available() {
        return;
    }
    let problem = small_problem();
    let params = Params { rank: 32, epochs: 10, ..Params::default() };
    // 64 KiB bindings: 128 rows of rank 32 per block and 5461 ratings per window.
    let options = GpuOptions { max_binding_bytes: Some(64 << 10), ..GpuOptions::default() };
    let solver = GpuSolver::new(&problem, Model::init(&problem, &params), &params, &options).unwrap();
    let plan = *solver.plan();
    assert!(plan.user_blocks > 1 && plan.item_blocks > 1, "{plan:?}");
    let split = test_rmse(&problem, &params, &gpu(options));
    let whole = test_rmse(&problem, &params, &gpu(GpuOptions::default()));
    println!("split {split:.4} whole {whole:.4}");
    assert!((split - whole).abs() <= 0.01, "split {split} vs whole {whole}");
}

#[test]
fn the_predict_kernel_agrees_with_the_cpu_model() {
    if !common::gpu_available() {
        return;
    }
    let problem = small_problem();
    let params = Params { rank: 24, epochs: 3, ..Params::default() };
    for options in [GpuOptions::default(), GpuOptions { max_binding_bytes: Some(32 << 10), ..GpuOptions::default() }] {
        let mut solver = GpuSolver::new(&problem, Model::init(&problem, &params), &params, &options).unwrap();
        for e in 0..params.epochs {
            solver.run_epoch(e, params.learning_rate_at(e)).unwrap();
        }
        let on_gpu = solver.predict(&problem.test).unwrap();
        let (train_sums, test_sums) = solver.evaluate().unwrap();
        let model = Box::new(solver).into_model().unwrap();
        for (r, g) in problem.test.iter().zip(&on_gpu) {
            let c = model.predict(r.user, r.item);
            assert!((c - g).abs() < 1e-4, "{r:?}: gpu {g} cpu {c}");
        }
        let cpu_test = metrics::evaluate(&model, &problem.test);
        assert!((cpu_test.rmse() - test_sums.unwrap().rmse()).abs() < 1e-4);
        assert!((metrics::evaluate(&model, &problem.train).rmse() - train_sums.rmse()).abs() < 1e-4);
    }
}
