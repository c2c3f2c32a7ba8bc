//! Making a GPU solver, one step a function: open the device and shape the kernel
//! ([`open_kernel`]); plan what fits the device ([`super::plan`]) and cut the schedule;
//! size the dispatches and the upload windows ([`Sizes`]); decide where the SVD++ term's
//! passes run ([`PassesAt`]); upload the rows, the ratings and the uniform.

use super::buffers::{self, Bindings, FactorBlock, Window};
use super::dispatch::workgroups_for;
use super::kernel::{KernelShape, ParamsUniform, Pipelines};
use super::plan::{self, gpu_grid, DevicePlan, MAPPED_WINDOW_BYTES, OVERHEAD_BYTES, RING_SLOTS, ROW_EXTRA_BYTES};
use super::readback::{self, EpochSlots};
use super::{default_in_flight, svdpp, Gpu, GpuOptions, GpuSolver, Placement, Precision, Upload, EVAL_WORKGROUPS, MAX_GROUP_ITERATIONS, UPDATE_WORKGROUPS};
use crate::data::Rating;
use crate::error::{Error, Result};
use crate::grid::Order;
use crate::model::{Model, Params};
use crate::problem::Problem;
use crate::schedule::Schedule;
use crate::update::RowWeights;
use std::collections::VecDeque;
use wgpu::util::DeviceExt;

/// Checks the GPU settings, opens the device and shapes the kernel for the rank, precision and
/// loss. Returns them with the largest binding the windows may use.
fn open_kernel(params: &Params, options: &GpuOptions) -> Result<(Gpu, KernelShape, u64)> {
    for (flag, value) in [("--in-flight", options.in_flight), ("--workgroups", options.workgroups), ("--lanes-per-rating", options.lanes_per_rating)] {
        if value == Some(0) {
            return Err(Error::InvalidParameter(format!("{flag} must be at least 1")));
        }
    }
    if options.user_block_rows == Some(0) {
        return Err(Error::InvalidParameter("--user-block-rows must be at least 1".into()));
    }
    let gpu = Gpu::open_at(options.adapter, options.precision == Precision::F16, options.subgroups)?;
    let mut shape = KernelShape::new(params.rank, options.precision, gpu.subgroups, gpu.adapter.subgroup_min_size, options.lanes_per_rating)?;
    shape.loss = params.loss;
    shape.nonneg = params.nonneg();
    shape.l1 = params.l1 > 0.0;
    if gpu.limits.max_storage_buffers_per_shader_stage < 8 {
        return Err(Error::Gpu(format!("{} allows {} storage buffers per shader stage; the kernel needs 8", gpu.adapter.name, gpu.limits.max_storage_buffers_per_shader_stage)));
    }
    if params.svdpp && gpu.limits.max_storage_buffers_per_shader_stage < 10 {
        return Err(Error::Gpu(format!(
            "{} allows {} storage buffers per shader stage; the SVD++ term needs 10 (--no-svdpp trains without it)",
            gpu.adapter.name, gpu.limits.max_storage_buffers_per_shader_stage
        )));
    }
    let device_binding = gpu.limits.max_storage_buffer_binding_size.min(gpu.limits.max_buffer_size);
    let max_binding = options.max_binding_bytes.map_or(device_binding, |cap| cap.min(device_binding));
    Ok((gpu, shape, max_binding))
}

/// The budget for ratings streamed from disk where the driver reports no memory: the ring's
/// windows then as large as a binding allows.
const UNCAPPED: u64 = u64::MAX / 4;

/// What a solver is made for: a whole problem, or one DSGD worker's blocks.
enum Holding<'a> {
    /// Every user block; the SVD++ term's passes run here (on the device or the host).
    Problem,
    /// Only the user blocks `own` accepts; the rows carry the SVD++ term's priors and shares,
    /// and its passes are the cluster's ([`crate::distributed`]).
    Worker { own: &'a dyn Fn(usize) -> bool },
}

impl Holding<'_> {
    /// Whether the solver holds user block `b`'s rows.
    fn holds_users(&self, b: usize) -> bool {
        match self {
            Holding::Problem => true,
            Holding::Worker { own } => own(b),
        }
    }
}

/// Where the SVD++ term's passes after an epoch run.
enum PassesAt {
    Nowhere,
    /// On the device: every rating and row resident, each side in one buffer.
    Device,
    /// On the host between epochs, and why not on the device.
    Host(String),
    /// The caller's: a DSGD worker's rows, whose passes span the cluster.
    Caller,
}

/// The dispatches' and windows' sizes, and the device bytes they come to.
struct Sizes {
    update_workgroups: u32,
    /// Ratings a resident window holds at most.
    window: usize,
    /// With the ratings streamed: the ring's window, and how it is written.
    streamed_window: Option<usize>,
    upload: Upload,
    /// Device bytes of the factors, partial sums and ratings (the SVD++ passes' state apart).
    needed: u64,
}

impl GpuSolver {
    pub fn new(problem: &Problem, model: Model, params: &Params, options: &GpuOptions) -> Result<GpuSolver> {
        let opened = open_kernel(params, options)?;
        let (gpu, shape, max_binding) = (&opened.0, &opened.1, opened.2);
        let (m, n) = (problem.num_users(), problem.num_items());
        // Without --gpu-memory, what the driver reports less a margin (for the driver, other
        // programs and the read-back buffers); no cap where it reports nothing.
        let budget = options.gpu_memory.or(gpu.adapter.device_memory.map(|m| m - (m / 10).max(512 << 20).min(m / 2)));
        // Ratings in a block cache on disk (`--memory`) always stream: they are never in host
        // memory whole, so never uploaded whole.
        let on_disk = problem.train_on_disk.clone();
        let (budget, rating_bytes) = match on_disk {
            Some(_) => (budget.or(Some(UNCAPPED)), u64::MAX / 2),
            None => (budget, 12 * (problem.train.len() + problem.test.len()) as u64),
        };
        let plan = DevicePlan::new(budget, shape.row_bytes(), if params.svdpp { shape.row_bytes() + buffers::share_row_bytes(shape) } else { 0 }, m, n, rating_bytes, params.rank)?;
        let needed = plan.grid(gpu_grid(if on_disk.is_some() { None } else { params.blocks }, m, n, shape.row_bytes(), max_binding, options.user_block_rows)?, m, n);
        let schedule = match on_disk {
            None => Schedule::new(&problem.train, m, n, needed, Order::Shuffled, params.seed)?,
            Some(disk) => plan::disk_schedule(disk, needed, params.seed, &gpu.adapter.name)?,
        };
        let unit = params.rating_unit(&problem.train_summary());
        let weights = RowWeights::new(params, &problem.train_counts());
        let mut solver = GpuSolver::assemble(opened, plan, schedule, &problem.test, model, params, unit, weights, options, Holding::Problem)?;
        solver.pairwise = params.loss.is_pairwise().then(|| super::pairwise::Pairwise::new(problem, params));
        Ok(solver)
    }

    /// DSGD: a device for one worker, holding the blocks of `schedule` (the worker's own; the
    /// others empty) resident, and factor rows only for the user blocks `own_users` accepts.
    /// The worker moves item blocks in and out with [`set_rows`](Self::set_rows) and
    /// [`rows`](Self::rows), trains blocks with [`train_blocks`](Self::train_blocks), and runs
    /// the SVD++ term's passes itself ([`svdpp_shares`](Self::svdpp_shares),
    /// [`set_svdpp_rows`](Self::set_svdpp_rows)). `unit` is the whole set's rating unit
    /// ([`Params::rating_unit`]), `weights` its rows' regularisation weights.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn for_blocks(schedule: Schedule, model: Model, params: &Params, unit: f32, weights: &RowWeights, options: &GpuOptions, own_users: &dyn Fn(usize) -> bool) -> Result<GpuSolver> {
        if params.loss.is_pairwise() {
            return Err(Error::InvalidParameter(format!("--loss {}: a DSGD worker's device does not draw pairs; the distributed runner trains it on CPU workers (leave out --devices)", crate::choice::Choice::name(params.loss))));
        }
        let opened = open_kernel(params, options)?;
        let prior_bytes = if params.svdpp { opened.1.row_bytes() + buffers::share_row_bytes(&opened.1) } else { 0 };
        let plan = DevicePlan::new(None, opened.1.row_bytes(), prior_bytes, 0, 0, 0, params.rank)?;
        GpuSolver::assemble(opened, plan, schedule, &[], model, params, unit, weights.clone(), options, Holding::Worker { own: own_users })
    }

    /// Uploads what `plan` keeps on the device and builds the windows: the constructors' common
    /// part.
    #[allow(clippy::too_many_arguments)]
    fn assemble((gpu, mut shape, max_binding): (Gpu, KernelShape, u64), plan: DevicePlan, schedule: Schedule, test: &[Rating], model: Model, params: &Params, unit: f32, weights: RowWeights, options: &GpuOptions, holding: Holding) -> Result<GpuSolver> {
        let (m, n) = (model.user_bias.len(), model.item_bias.len());
        let uniform = uniform_for(&model, params, unit, options, &schedule);
        let sizes = Sizes::of(&gpu, &shape, &plan, &schedule, test.len(), &uniform, params, options, max_binding, m + n)?;
        let swapped = plan.swapped_rows.is_some();
        let user_layout = buffers::SideLayout::new(&gpu, &shape, &schedule.users, swapped, &|b| holding.holds_users(b), params.svdpp, max_binding);
        let item_layout = buffers::SideLayout::new(&gpu, &shape, &schedule.items, swapped, &|_| true, false, max_binding);
        // The passes index rows by their place in each side's one buffer (blocks lie there one
        // after another, aligned), so they need each side in one buffer.
        let (m_rows, n_rows) = (user_layout.whole_rows().unwrap_or(m as u64) as usize, item_layout.whole_rows().unwrap_or(n as u64) as usize);
        let svdpp_bytes = svdpp::device_bytes(&shape, schedule.ratings(), m_rows, n_rows);
        let passes = passes_at(params, &holding, &plan, &schedule, &sizes, (&user_layout, &item_layout), &shape, max_binding, svdpp_bytes);
        shape.svdpp = params.svdpp;
        let needed = sizes.needed + if matches!(passes, PassesAt::Device) { svdpp_bytes } else { 0 };
        let pipelines = Pipelines::new(&gpu, &shape)?;
        // The priors start at zero (y = 0).
        let prior_rows = params.svdpp.then(|| ndarray::Array2::<f32>::zeros((m, params.rank)));
        let what = allocating(needed, schedule.ratings() + test.len(), (m, n), params.rank, options.precision);
        let rows_by_position = matches!(passes, PassesAt::Device).then(|| (user_layout.rows_by_position(&schedule.users), item_layout.rows_by_position(&schedule.items)));
        let uploaded = gpu.scoped(&what, || Uploaded::new(&gpu, &shape, user_layout, item_layout, &model, &weights, prior_rows.as_ref(), &uniform, sizes.update_workgroups))?;
        let host = (params, &weights, prior_rows);
        let svdpp = passes.state(&gpu, &shape, &pipelines, &schedule, &uploaded, rows_by_position, (m_rows, n_rows), host)?;
        let Uploaded { user_blocks, item_blocks, params_buffer, train_partials, test_partials } = uploaded;
        let bindings = |b: usize, output| {
            let (ub, ib) = schedule.coordinates(b);
            Bindings { pipelines: &pipelines, users: &user_blocks[ub], items: &item_blocks[ib], params: &params_buffer, output }
        };
        let placement = place_ratings(&gpu, &schedule, test, &sizes, (&train_partials, &test_partials), &bindings)?;
        // The reductions bind the partials beside a placeholder rating.
        let reduce = |output| buffers::upload_windows(&gpu, &[Rating { user: 0, item: 0, value: 0.0 }], 1, &bindings(0, output), "reduction").remove(0);
        let (train_reduction, test_reduction): (Window, Window) = (reduce(&train_partials), reduce(&test_partials));
        Ok(GpuSolver {
            shape,
            pipelines,
            svdpp,
            svdpp_every: crate::svdpp::pass_every(params),
            user_blocks,
            item_blocks,
            weights,
            params_buffer,
            uniform,
            train_partials,
            test_partials,
            placement,
            swapped: plan.swapped_rows.map(|_| (0, 0)),
            streamed: VecDeque::new(),
            uploads: VecDeque::new(),
            train_reduction,
            test_reduction,
            update_workgroups: sizes.update_workgroups,
            slots: EpochSlots::new(&gpu)?,
            template: model,
            buffer_bytes: needed,
            train_count: schedule.ratings() as u64,
            test_count: test.len() as u64,
            pairwise: None,
            schedule,
            gpu,
        })
    }
}

/// What the upload of `needed` bytes is doing, for the error when the device refuses it.
fn allocating(needed: u64, ratings: usize, (m, n): (usize, usize), rank: usize, precision: Precision) -> String {
    format!(
        "allocating {:.2} GiB of GPU buffers ({ratings} ratings, {m} users x {n} items, rank {rank}, {precision:?}; --gpu-memory SIZE below what the device holds streams what does not fit)",
        needed as f64 / (1u64 << 30) as f64,
    )
}

impl PassesAt {
    /// The SVD++ term's state where its passes run: on the device, over the rows `uploaded`
    /// holds (each side in one buffer, rows found by `places`, `whole_rows` of each); on the
    /// host, from `host`'s settings, row weights and the priors (zero) as uploaded.
    #[allow(clippy::too_many_arguments)]
    fn state(self, gpu: &Gpu, shape: &KernelShape, pipelines: &Pipelines, schedule: &Schedule, uploaded: &Uploaded, places: Option<(Vec<u32>, Vec<u32>)>, whole_rows: (usize, usize), host: (&Params, &RowWeights, Option<ndarray::Array2<f32>>)) -> Result<Option<svdpp::Svdpp>> {
        let (params, weights, prior_rows) = host;
        Ok(match self {
            PassesAt::Nowhere | PassesAt::Caller => None,
            PassesAt::Device => {
                let reach = crate::svdpp::Reach::of(schedule)?;
                let (users, items) = (&uploaded.user_blocks[0], &uploaded.item_blocks[0]);
                let places = places.expect("made where the passes run on the device");
                let (prior, share) = users.prior.as_ref().zip(users.share.as_ref()).expect("user blocks carry priors and shares with the SVD++ term");
                let rows = [&users.factors, &items.factors, &items.reg_weight, prior, share];
                Some(svdpp::Svdpp::Device(gpu.scoped("uploading the SVD++ term's state", || svdpp::DeviceSvdpp::new(gpu, shape, pipelines, schedule, &places, whole_rows, &reach, rows, &uploaded.params_buffer))?))
            }
            PassesAt::Host(why) => {
                let state = crate::svdpp::SvdppState::new(schedule, params.rank, &weights.by_position(schedule).items)?;
                let prior = prior_rows.expect("made with the SVD++ term");
                let share = ndarray::Array2::zeros(prior.raw_dim());
                Some(svdpp::Svdpp::Host(Box::new(svdpp::HostSvdpp { state, prior, share, why })))
            }
        })
    }
}

/// Where the ratings live on the device: every block's windows and the test set's uploaded once
/// (resident), or a ring of upload slots the epochs stream the blocks through (the test set
/// kept on the host by block). `bindings(b, partials)` binds block `b`'s rows and the sums'
/// buffer.
fn place_ratings<'a>(gpu: &Gpu, schedule: &Schedule, test: &[Rating], sizes: &Sizes, (train_partials, test_partials): (&'a wgpu::Buffer, &'a wgpu::Buffer), bindings: &dyn Fn(usize, &'a wgpu::Buffer) -> Bindings<'a>) -> Result<Placement> {
    Ok(match sizes.streamed_window {
        None => Placement::Resident {
            train: gpu.scoped("uploading the train ratings", || {
                (0..schedule.len()).map(|b| buffers::upload_windows(gpu, &schedule.local_block(b), sizes.window, &bindings(b, train_partials), "train ratings")).collect()
            })?,
            test: gpu.scoped("uploading the test ratings", || {
                schedule.localize(test).iter().enumerate().flat_map(|(b, ratings)| buffers::upload_windows(gpu, ratings, sizes.window, &bindings(b, test_partials), "test ratings")).collect()
            })?,
        },
        Some(window) => Placement::Streamed { ring: buffers::Ring::new(gpu, RING_SLOTS, window, sizes.upload)?, test: schedule.localize(test) },
    })
}

/// The kernel's uniform for `model`, trained with `params` in `unit`s.
fn uniform_for(model: &Model, params: &Params, unit: f32, options: &GpuOptions, schedule: &Schedule) -> ParamsUniform {
    let (lo, hi) = model.rating_range;
    ParamsUniform {
        learning_rate: params.learning_rate,
        reg: params.reg,
        reg_bias: params.reg_bias,
        mean: model.mean,
        use_biases: params.biases as u32,
        clip_low: lo.max(f32::MIN),
        clip_high: hi.min(f32::MAX),
        max_groups: options.in_flight.unwrap_or_else(|| default_in_flight(schedule.users.max_rows(), schedule.items.max_rows())),
        error_scale: 1.0 / unit,
        unit,
        l1: params.l1,
        label_middle: model.labels.map_or(0.0, |l| l.middle()),
        share_weight: 1.0,
    }
}

impl Sizes {
    /// The workgroups an update dispatch takes, how long a window is (as one binding holds,
    /// but no group looping more than MAX_GROUP_ITERATIONS times in one dispatch), the ring's
    /// window when the ratings stream, and the device bytes.
    #[allow(clippy::too_many_arguments)]
    fn of(gpu: &Gpu, shape: &KernelShape, plan: &DevicePlan, schedule: &Schedule, test: usize, uniform: &ParamsUniform, params: &Params, options: &GpuOptions, max_binding: u64, rows: usize) -> Result<Sizes> {
        let max_ratings = (max_binding / std::mem::size_of::<Rating>() as u64) as usize;
        let in_flight_workgroups = uniform.max_groups.div_ceil(shape.ratings_per_workgroup());
        let cap = options.workgroups.unwrap_or(UPDATE_WORKGROUPS).min(in_flight_workgroups).max(1);
        let largest_block = (0..schedule.len()).map(|b| schedule.block_len(b)).max().unwrap_or(1).min(max_ratings);
        let update_workgroups = workgroups_for(gpu, shape, largest_block, cap);
        let live_groups = (uniform.max_groups as usize).min(update_workgroups as usize * shape.ratings_per_workgroup() as usize);
        let window = max_ratings.min(live_groups.saturating_mul(MAX_GROUP_ITERATIONS)).max(1);
        let (user_rows, item_rows) = (schedule.users.max_rows() as u64, schedule.items.max_rows() as u64);
        // With the SVD++ term a user row carries its prior and share.
        let prior_and_share_bytes = if params.svdpp { (shape.row_bytes() + buffers::share_row_bytes(shape)) * plan.swapped_rows.map_or(schedule.users.ids() as u64, |_| user_rows) } else { 0 };
        let factor_bytes = prior_and_share_bytes
            + match plan.swapped_rows {
                None => (shape.row_bytes() + ROW_EXTRA_BYTES) * rows as u64,
                Some(_) => (shape.row_bytes() + ROW_EXTRA_BYTES) * (user_rows + item_rows),
            };
        let upload = options.upload.unwrap_or(if gpu.mappable { Upload::Mapped } else { Upload::Copied });
        let max_window = match upload {
            Upload::Mapped => window.min(MAPPED_WINDOW_BYTES / 12),
            Upload::Copied => window,
        };
        let streamed_window = plan.budget.filter(|_| plan.streamed).map(|budget| ((budget.saturating_sub(factor_bytes + OVERHEAD_BYTES) / 12) as usize / RING_SLOTS).clamp(1, max_window));
        if streamed_window.is_some() && upload == Upload::Mapped && !gpu.mappable {
            return Err(Error::InvalidParameter(format!("--upload mapped: {} cannot map storage buffers for writing; use --upload copied", gpu.adapter.name)));
        }
        let needed = factor_bytes
            + partial_bytes(update_workgroups)
            + partial_bytes(EVAL_WORKGROUPS)
            + streamed_window.map_or(12 * (schedule.ratings() + test) as u64, |w| (RING_SLOTS * w * 12) as u64);
        Ok(Sizes { update_workgroups, window, streamed_window, upload, needed })
    }
}

/// Bytes of the per-workgroup loss sums of `workgroups` workgroups.
fn partial_bytes(workgroups: u32) -> u64 {
    readback::SUMS_BYTES * workgroups.max(1) as u64
}

/// Where the SVD++ term's passes run: on the device where every rating and row is resident,
/// each side in one buffer, and their state fits beside them; elsewhere on the host, between
/// epochs (saying why); a DSGD worker's are the cluster's.
#[allow(clippy::too_many_arguments)]
fn passes_at(params: &Params, holding: &Holding, plan: &DevicePlan, schedule: &Schedule, sizes: &Sizes, (users, items): (&buffers::SideLayout, &buffers::SideLayout), shape: &KernelShape, max_binding: u64, svdpp_bytes: u64) -> PassesAt {
    let human = crate::resources::human_bytes;
    let largest = svdpp::largest_buffer(shape, schedule.ratings(), items.whole_rows().unwrap_or(0) as usize);
    if !params.svdpp {
        PassesAt::Nowhere
    } else if matches!(holding, Holding::Worker { .. }) {
        PassesAt::Caller
    } else if plan.swapped_rows.is_some() {
        PassesAt::Host(format!("the factors are swapped onto the device in {} blocks", schedule.grid()))
    } else if users.whole_rows().is_none() || items.whole_rows().is_none() {
        PassesAt::Host(format!("a side's factor rows do not fit one binding of {}", human(max_binding)))
    } else if schedule.on_disk() {
        PassesAt::Host("the ratings stream from disk".to_string())
    } else if sizes.streamed_window.is_some() {
        PassesAt::Host("the ratings stream from host memory".to_string())
    } else if largest > max_binding {
        PassesAt::Host(format!("its state needs a binding of {}, above the device's {}", human(largest), human(max_binding)))
    } else if plan.budget.is_some_and(|budget| sizes.needed + svdpp_bytes + OVERHEAD_BYTES > budget) {
        PassesAt::Host(format!("its {} do not fit the GPU memory budget beside the ratings and factors", human(svdpp_bytes)))
    } else {
        PassesAt::Device
    }
}

/// The buffers every solver uploads: each side's rows, the uniform, and the partial sums.
struct Uploaded {
    user_blocks: Vec<FactorBlock>,
    item_blocks: Vec<FactorBlock>,
    params_buffer: wgpu::Buffer,
    train_partials: wgpu::Buffer,
    test_partials: wgpu::Buffer,
}

impl Uploaded {
    #[allow(clippy::too_many_arguments)]
    fn new(gpu: &Gpu, shape: &KernelShape, users: buffers::SideLayout, items: buffers::SideLayout, model: &Model, weights: &RowWeights, priors: Option<&ndarray::Array2<f32>>, uniform: &ParamsUniform, update_workgroups: u32) -> Uploaded {
        let partials = |label: &str, workgroups: u32| {
            gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: partial_bytes(workgroups),
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        };
        Uploaded {
            user_blocks: buffers::upload_factor_blocks(gpu, shape, users, &model.user_factors, &model.user_bias, &weights.users, priors, "user block"),
            item_blocks: buffers::upload_factor_blocks(gpu, shape, items, &model.item_factors, &model.item_bias, &weights.items, None, "item block"),
            params_buffer: gpu.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("params"),
                contents: bytemuck::bytes_of(uniform),
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            }),
            train_partials: partials("training loss partials", update_workgroups),
            test_partials: partials("test loss partials", EVAL_WORKGROUPS),
        }
    }
}
