//! `gpumf lab`, `gpumf info` and `gpumf validate`.

use anyhow::{bail, Context};
use clap::Args;
use gpumf::cpu::CpuMode;
use gpumf::gpu::{list_adapters, GpuOptions, Precision};
use gpumf::lab::{exercise_mask, exercise_matrix, sgd_factorise, sgd_factorise_masked, svd_factorise};
use gpumf::metrics::{frobenius_error, masked_loss};
use gpumf::training::Backend;
use gpumf::svd::truncated_svd;
use gpumf::validate::{compare, dense_params, lab_params, low_rank_plus_noise, Comparison};
use gpumf::Error;
use ndarray::Array2;

#[derive(Args)]
pub struct LabArgs {
    /// Rank of the factorisation (1 to 3: the exercise matrix is 3 × 3).
    #[arg(long, default_value_t = 2)]
    pub rank: usize,
    /// SGD epochs over the matrix's entries (the masked completion runs at least 3000).
    #[arg(long, default_value_t = 1000)]
    pub epochs: usize,
    /// SGD's learning rate.
    #[arg(long, default_value_t = 0.01)]
    pub lr: f64,
    /// Seeds 0..seeds are run and summarised.
    #[arg(long, default_value_t = 20)]
    pub seeds: u64,
}

fn show(name: &str, m: &Array2<f64>) {
    println!("{name} =");
    for row in m.rows() {
        println!("  [{}]", row.iter().map(|v| format!("{v:8.4}")).collect::<Vec<_>>().join(" "));
    }
}

pub fn lab(args: LabArgs) -> anyhow::Result<()> {
    if args.rank == 0 || args.rank > 3 {
        bail!("--rank must be 1, 2 or 3 for the 3x3 exercise matrix, got {}", args.rank);
    }
    if args.epochs == 0 || args.seeds == 0 {
        bail!("--epochs and --seeds must be at least 1");
    }
    if !(args.lr > 0.0 && args.lr.is_finite()) {
        bail!("--lr must be a positive number, got {}", args.lr);
    }
    let a = exercise_matrix();
    show("A", &a);
    let svd = truncated_svd(a.view(), 3);
    println!("singular values: {:?}", svd.all_singular_values.iter().map(|s| format!("{s:.4}")).collect::<Vec<_>>());

    let (us, v) = svd_factorise(a.view(), args.rank);
    let svd_rec = us.dot(&v.t());
    let svd_loss = frobenius_error(a.view(), svd_rec.view());
    println!("\n1. Truncated SVD, rank {}: loss ||A - UV'||^2 = {svd_loss:.6} (smallest dropped singular value squared)", args.rank);
    show("SVD reconstruction", &svd_rec);

    println!("\n2. SGD, rank {}, {} epochs, lr {}, seeds 0..{}:", args.rank, args.epochs, args.lr, args.seeds);
    let mut losses = Vec::new();
    for seed in 0..args.seeds {
        let (u, v) = sgd_factorise(a.view(), args.rank, args.epochs, args.lr, seed);
        losses.push(frobenius_error(a.view(), u.dot(&v.t()).view()));
    }
    let mut sorted = losses.clone();
    sorted.sort_by(f64::total_cmp);
    let median = (sorted[(sorted.len() - 1) / 2] + sorted[sorted.len() / 2]) / 2.0;
    println!("   seed 0 loss {:.6}; median {median:.6} ({:+.2}% vs SVD), best {:.6}, worst {:.6}", losses[0], 100.0 * (median / svd_loss - 1.0), sorted[0], sorted[sorted.len() - 1]);
    let (u, v) = sgd_factorise(a.view(), args.rank, args.epochs, args.lr, 0);
    show("   SGD reconstruction (seed 0)", &u.dot(&v.t()));

    let mask = exercise_mask();
    let masked_epochs = args.epochs.max(3000);
    println!("\n3. Masked SGD (matrix completion), {masked_epochs} epochs, seed 0:");
    show("   mask", &mask);
    let (u, v) = sgd_factorise_masked(a.view(), mask.view(), args.rank, masked_epochs, args.lr, 0);
    let completed = u.dot(&v.t());
    show("   completed", &completed);
    println!("   loss on the observed entries: {:.2e}", masked_loss(a.view(), completed.view(), mask.view()));
    for ((i, j), &m) in mask.indexed_iter() {
        if m == 0.0 {
            println!("   entry ({i}, {j}): completed {:.4}, true {:.4}", completed[[i, j]], a[[i, j]]);
        }
    }
    Ok(())
}

#[derive(Args)]
pub struct InfoArgs {
    /// Print the adapters as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn info(args: InfoArgs) -> anyhow::Result<()> {
    let adapters = list_adapters();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&adapters)?);
        return Ok(());
    }
    if adapters.is_empty() {
        println!("no GPU adapters found (Vulkan, Metal, DX12); gpumf will train on the CPU");
        return Ok(());
    }
    for (i, a) in adapters.iter().enumerate() {
        println!("adapter {i}: {} ({} {}, driver {} {})", a.name, a.backend, a.device_type, a.driver, a.driver_info);
        let subgroups = if a.subgroups { format!("yes, size {}..{}", a.subgroup_min_size, a.subgroup_max_size) } else { "no".into() };
        println!(
            "  subgroups: {subgroups}; shader-f16: {}; timestamps: {}; mappable storage (--upload mapped): {}",
            yes(a.shader_f16),
            yes(a.timestamp_query),
            yes(a.mappable_storage)
        );
        println!(
            "  max storage binding {} MiB, max buffer {} MiB, {} storage buffers per stage, {} workgroups per dimension",
            a.max_storage_buffer_binding_size >> 20,
            a.max_buffer_size >> 20,
            a.max_storage_buffers_per_shader_stage,
            a.max_compute_workgroups_per_dimension
        );
        if let Some(bytes) = a.device_memory {
            println!("  device memory {} (the default --gpu-memory keeps a tenth of it, at least 512 MiB, free)", gpumf::resources::human_bytes(bytes));
        }
    }
    Ok(())
}

/// What a case's SGD loss says, and whether it fails the run. In a sweep, slow convergence at
/// a large rank is a finding, not a failure; falling below the optimum is always a bug.
fn verdict(c: &Comparison, loss: f64, sweep: bool) -> (&'static str, bool) {
    if c.below_optimum(loss) {
        ("BELOW THE OPTIMUM: a bug", true)
    } else if loss / c.svd_loss <= 1.05 {
        ("ok (within 5%)", false)
    } else {
        ("more than 5% above the optimum", !sweep)
    }
}

fn print_case(name: &str, c: &Comparison, sweep: bool) {
    println!("{name}, rank {}: SVD loss {:.6} ({:.3} s)", c.rank, c.svd_loss, c.svd_seconds);
    for r in &c.sgd {
        let ratio = r.loss / c.svd_loss;
        println!("  {:<48} SGD loss {:.6}  x{ratio:.4} of SVD  {:.3} s  {}", r.backend, r.loss, r.seconds, verdict(c, r.loss, sweep).0);
    }
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

#[derive(Args)]
pub struct ValidateArgs {
    /// Skip the GPU (compare the CPU trainer with the SVD only).
    #[arg(long)]
    pub no_gpu: bool,
    /// Rows of the low-rank matrix (without --sweep, whose sides are --sizes).
    #[arg(long, default_value_t = 300)]
    pub rows: usize,
    /// Columns of the low-rank matrix.
    #[arg(long, default_value_t = 200)]
    pub cols: usize,
    /// Rank of the low-rank matrix and of the factorisation (without --sweep: --ranks there).
    #[arg(long, default_value_t = 5)]
    pub rank: usize,
    /// Standard deviation of the noise added to the low-rank matrix.
    #[arg(long, default_value_t = 0.1)]
    pub noise: f64,
    /// SGD epochs for each trainer on the low-rank cases (the 3 × 3 lab matrix takes 3000).
    #[arg(long, default_value_t = 200)]
    pub epochs: usize,
    /// Seed of the matrix, its noise and the trainers' initial factors.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// How the GPU stores factors (arithmetic is f32 either way).
    #[arg(long, value_parser = super::choice::<Precision>(), default_value = "f32")]
    pub precision: Precision,
    /// Print the comparisons as JSON.
    #[arg(long)]
    pub json: bool,
    /// Sweep square matrices of --sizes × --ranks × --noises instead of the two fixed cases.
    #[arg(long)]
    pub sweep: bool,
    /// Sweep: matrix sides.
    #[arg(long, value_delimiter = ',', default_value = "100,300,1000,2000")]
    pub sizes: Vec<usize>,
    /// Sweep: ranks (of the matrix and of the factorisation).
    #[arg(long, value_delimiter = ',', default_value = "5,20,50")]
    pub ranks: Vec<usize>,
    /// Sweep: noise standard deviations.
    #[arg(long, value_delimiter = ',', default_value = "0.1")]
    pub noises: Vec<f64>,
    /// Sweep: CPU threads (more than one runs Hogwild).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Draw SGD loss / SVD loss against matrix size into this SVG.
    #[arg(long)]
    pub plot: Option<std::path::PathBuf>,
}

pub fn validate(args: ValidateArgs) -> anyhow::Result<()> {
    if args.rows == 0 || args.cols == 0 || args.rank == 0 || args.rank > args.rows.min(args.cols) {
        bail!("need --rows, --cols >= 1 and 1 <= --rank <= min(rows, cols)");
    }
    if let Some(noise) = [args.noise].iter().chain(&args.noises).find(|n| !(n.is_finite() && **n >= 0.0)) {
        bail!("--noise and --noises must be finite non-negative numbers, got {noise}");
    }
    if args.epochs == 0 {
        bail!("--epochs must be at least 1");
    }
    let backends = backends(&args)?;
    if let Some(plot) = &args.plot {
        gpumf::output::check_output(plot, false).context("--plot")?;
    }
    // The dense matrix, its reconstruction and the SVD's working copies: about four of it.
    let largest = if args.sweep { args.sizes.iter().map(|&n| (n, n)).max().unwrap_or((0, 0)) } else { (args.rows, args.cols) };
    let bytes = (largest.0 as u64).saturating_mul(largest.1 as u64).saturating_mul(8 * 4);
    gpumf::resources::ensure_memory(bytes, &format!("a dense {} x {} matrix and its SVD", largest.0, largest.1), |available| {
        format!("matrices up to about {0} x {0} fit", ((available / 32) as f64).sqrt() as u64)
    })?;
    let cases = cases(&args)?;
    let mut results: Vec<(String, Comparison)> = Vec::new();
    if !args.sweep {
        results.push(("lab matrix 3x3".to_string(), compare(&exercise_matrix(), &lab_params(args.seed), &backends)?));
    }
    for Case { name, rows, cols, rank, noise } in cases {
        let a = low_rank_plus_noise(rows, cols, rank, noise, args.seed);
        let c = compare(&a, &dense_params(rank, args.epochs, args.seed), &backends)?;
        if args.sweep && !args.json {
            // A sweep runs for minutes: each case is printed once, as it finishes.
            print_case(&name, &c, true);
        }
        results.push((name, c));
    }
    if let Some(plot) = &args.plot {
        let comparisons: Vec<Comparison> = results.iter().map(|(_, c)| c.clone()).collect();
        gpumf::bench::plot_validation(plot, &comparisons)?;
    }
    if args.json {
        let rows: Vec<_> = results.iter().map(|(n, c)| serde_json::json!({"case": n, "comparison": c})).collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
    }
    let mut failed = false;
    for (name, c) in &results {
        if !args.json && !args.sweep {
            print_case(name, c, false);
        }
        failed |= c.sgd.iter().any(|r| verdict(c, r.loss, args.sweep).1);
    }
    if failed {
        bail!("validation failed (see above)");
    }
    Ok(())
}

/// The trainers to compare: the GPU's where there is one (unless --no-gpu), and the CPU's
/// (its threads in a sweep, else the sequential one).
fn backends(args: &ValidateArgs) -> anyhow::Result<Vec<Backend>> {
    let cpu_mode = if args.sweep { CpuMode::with_threads(super::threads(args.threads)?) } else { CpuMode::Sequential };
    let mut backends = vec![Backend::Cpu(cpu_mode)];
    if !args.no_gpu {
        match gpumf::gpu::Gpu::open(false, true) {
            Ok(_) => backends.insert(0, Backend::Gpu(GpuOptions { precision: args.precision, ..GpuOptions::default() })),
            Err(Error::NoAdapter) => eprintln!("note: no GPU adapter found; comparing the CPU trainer only"),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(backends)
}

/// A matrix to validate on: `rows` × `cols` of rank `rank` plus noise of spread `noise`.
struct Case {
    name: String,
    rows: usize,
    cols: usize,
    rank: usize,
    noise: f64,
}

/// Each matrix to validate on: the sizes, ranks and noises of a sweep, or the one given.
fn cases(args: &ValidateArgs) -> anyhow::Result<Vec<Case>> {
    let mut cases = Vec::new();
    if args.sweep {
        for &n in &args.sizes {
            for &rank in args.ranks.iter().filter(|&&r| r >= 1 && r <= n) {
                for &noise in &args.noises {
                    cases.push(Case { name: format!("{n}x{n} rank {rank} + N(0,{noise}^2)"), rows: n, cols: n, rank, noise });
                }
            }
        }
        if cases.is_empty() {
            bail!("--sweep: no case has 1 <= rank <= size");
        }
    } else {
        cases.push(Case { name: format!("{}x{} rank {} + N(0,{}^2)", args.rows, args.cols, args.rank, args.noise), rows: args.rows, cols: args.cols, rank: args.rank, noise: args.noise });
    }
    Ok(cases)
}
