//! The GPU solver: Hogwild masked SGD in WGSL compute shaders through wgpu.
//!
//! The path of the data, one step a module: the [schedule](crate::schedule) cuts the ratings
//! into blocks, each block's ratings in a fixed random order (as cuMF_SGD does: reshuffling
//! 100M ratings per epoch would cost more than the epoch); [`buffers`] uploads the factor rows
//! block by block and each block's ratings as windows of one binding; [`kernel`] composes the
//! one WGSL kernel; an epoch is one submission here, one dispatch per window in the epoch's
//! block sequence, each a grid-stride loop of groups over its ratings, summing the errors it
//! meets; [`readback`] brings back those sums (and the test set's) without stopping the next
//! epoch from going out. The factors come back once, at the end.

mod buffers;
mod context;
mod dispatch;
mod svdpp;
mod kernel;
mod plan;
mod readback;

pub use context::{list_adapters, quiet_headless_drivers, AdapterSummary, Gpu};
pub use kernel::{KernelShape, GROUP_SUBGROUP_WGSL, GROUP_WORKGROUP_WGSL, SVDPP_WGSL, SGD_WGSL};

use crate::data::Rating;
use crate::problem::Problem;
use std::collections::VecDeque;
use crate::error::{Error, Result};
use crate::metrics::ErrorSums;
use crate::model::{Model, Params};
use crate::grid::Order;
use crate::schedule::Schedule;
use crate::solver::{EpochFigures, Solver, UploadCounts};
use crate::update::RowWeights;
use buffers::{Bindings, FactorBlock, Window};
use dispatch::{encode_reduction, workgroups_for};
use kernel::Pipelines;
use plan::{gpu_grid, DevicePlan, MAPPED_WINDOW_BYTES, OVERHEAD_BYTES, RING_SLOTS, ROW_EXTRA_BYTES};
use readback::EpochSlots;
use wgpu::util::DeviceExt;

/// How factors are stored on the GPU; arithmetic is always f32.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    F32,
    /// Half the bytes per update (needs the adapter's shader-f16 feature).
    F16,
}

impl crate::choice::Choice for Precision {
    const WHAT: &'static str = "precision";
    const ALL: &'static [(Precision, &'static str, &'static str)] = &[
        (Precision::F32, "f32", "Factors stored as 32-bit floats"),
        (Precision::F16, "f16", "Half the bytes per update (needs the adapter's shader-f16 feature)"),
    ];
}

impl Precision {
    pub(crate) fn bytes(self) -> u64 {
        match self {
            Precision::F32 => 4,
            Precision::F16 => 2,
        }
    }
}

/// How streamed ratings reach the device (`--gpu-memory` below what they need).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Upload {
    /// The host writes each window straight into a buffer the kernels read (wgpu's
    /// MAPPABLE_PRIMARY_BUFFERS; device-local where the driver maps video memory), while the
    /// device trains the window before it. No copy is queued: on wgpu's one queue a copy would
    /// wait behind every kernel before it.
    Mapped,
    /// `write_buffer` through staging: the device copies each window before its kernels.
    Copied,
}

impl crate::choice::Choice for Upload {
    const WHAT: &'static str = "upload";
    const ALL: &'static [(Upload, &'static str, &'static str)] = &[
        (Upload::Mapped, "mapped", "The host writes windows into buffers the kernels read, while the device trains (the default where the adapter allows it)"),
        (Upload::Copied, "copied", "The device copies each window from staging before its kernels"),
    ];
}

/// GPU-specific settings; the model's hyper-parameters are in [`Params`].
#[derive(Clone, Debug, PartialEq)]
pub struct GpuOptions {
    pub precision: Precision,
    /// Use subgroups when the adapter has them; false forces the workgroup reduction.
    pub subgroups: bool,
    /// Caps one binding below the device's own limit (exercises the blocks and windows on any
    /// device).
    pub max_binding_bytes: Option<u64>,
    /// Users per block at most, e.g. to keep a block's rows in the L2 cache (cuts the grid's
    /// user side finer than `Params::blocks` where needed).
    pub user_block_rows: Option<usize>,
    /// Workgroups per update dispatch (default: enough groups to hide memory latency).
    pub workgroups: Option<u32>,
    /// Lanes of a subgroup per rating (default: the fewest that hold a row in one vec4 each).
    pub lanes_per_rating: Option<u32>,
    /// Ratings updated at once, at most (default: [`default_in_flight`]).
    pub in_flight: Option<u32>,
    /// Bytes gpumf may allocate on the device. When the ratings and factors need more, the
    /// ratings stay in host memory and stream through a ring of upload buffers each epoch.
    /// `None`: the adapter's memory less a tenth (at least 512 MiB) where its driver reports
    /// it (Vulkan, Metal, DX12); no cap elsewhere.
    pub gpu_memory: Option<u64>,
    /// How streamed ratings reach the device; `None`: mapped where the adapter allows it.
    pub upload: Option<Upload>,
    /// Which adapter, by its place in `gpumf info`'s list; `None`: the preferred one.
    pub adapter: Option<usize>,
}

impl Default for GpuOptions {
    fn default() -> Self {
        GpuOptions { precision: Precision::F32, subgroups: true, max_binding_bytes: None, user_block_rows: None, workgroups: None, lanes_per_rating: None, in_flight: None, gpu_memory: None, upload: None, adapter: None }
    }
}

/// Ratings updated at once by default, for blocks of `users` × `items` rows: m·n/(m+n), the
/// number at which a rating expects about one other in flight to share its user or item row.
/// Hogwild needs such conflicts to stay rare, and the ratings' order is fixed at upload, so on a
/// small problem the same pairs would collide every epoch and bias the result (the 3×3 lab
/// matrix runs one rating at a time). Netflix-sized problems still fill the GPU (about 17,000).
pub fn default_in_flight(users: usize, items: usize) -> u32 {
    let (m, n) = (users.max(1) as f64, items.max(1) as f64);
    ((m * n / (m + n)).floor() as u64).clamp(1, u32::MAX as u64) as u32
}

/// Workgroups per evaluation dispatch; also the number of partial sums.
pub(crate) const EVAL_WORKGROUPS: u32 = 1024;
/// Ratings one group of lanes updates in one dispatch, at most. Mesa's llvmpipe (lavapipe) ends
/// a loop silently after about 16,000 iterations of a kernel's loops together (measured: one
/// rating in flight trained only the first 16,000 of u1's 80,000 ratings), and a long dispatch
/// can trip a desktop driver's watchdog; cutting windows shorter costs a dispatch per window.
const MAX_GROUP_ITERATIONS: usize = 1024;
/// Default workgroups per update dispatch: 2048 × 8 subgroups keeps every SM of a large GPU busy.
pub(crate) const UPDATE_WORKGROUPS: u32 = 2048;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct ParamsUniform {
    learning_rate: f32,
    reg: f32,
    reg_bias: f32,
    mean: f32,
    use_biases: u32,
    clip_low: f32,
    clip_high: f32,
    max_groups: u32,
    error_scale: f32,
}

/// Where the ratings live while training.
enum Placement {
    /// Uploaded once: each schedule block's windows (by block index), and the test set's.
    Resident { train: Vec<Vec<Window>>, test: Vec<Window> },
    /// In host memory (the schedule's blocks; the test set by block, rows local), uploaded
    /// window by window each epoch through the ring.
    Streamed { ring: buffers::Ring, test: Vec<Vec<Rating>> },
}

/// Checks the GPU settings, opens the device and shapes the kernel for the rank and precision.
/// Returns them with the largest binding the windows may use.
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
        let shape = KernelShape::new(params.rank, options.precision, gpu.subgroups, gpu.adapter.subgroup_min_size, options.lanes_per_rating)?;
        if gpu.limits.max_storage_buffers_per_shader_stage < 8 {
            return Err(Error::Gpu(format!(
                "{} allows {} storage buffers per shader stage; the kernel needs 8",
                gpu.adapter.name, gpu.limits.max_storage_buffers_per_shader_stage
            )));
        }
        let device_binding = gpu.limits.max_storage_buffer_binding_size.min(gpu.limits.max_buffer_size);
        let max_binding = options.max_binding_bytes.map_or(device_binding, |cap| cap.min(device_binding));
    Ok((gpu, shape, max_binding))
}

pub struct GpuSolver {
    gpu: Gpu,
    shape: KernelShape,
    pipelines: Pipelines,
    /// With the SVD++ term: where its passes run, and their state.
    svdpp: Option<svdpp::Svdpp>,
    schedule: Schedule,
    user_blocks: Vec<FactorBlock>,
    item_blocks: Vec<FactorBlock>,
    /// Each row's regularisation weight by id, for the blocks swapped onto the device.
    weights: RowWeights,
    params_buffer: wgpu::Buffer,
    uniform: ParamsUniform,
    /// Per-workgroup error sums of the update pass, and of the test set's scoring.
    train_partials: wgpu::Buffer,
    test_partials: wgpu::Buffer,
    placement: Placement,
    /// With factors swapped: the (user, item) blocks whose rows are on the device now; the
    /// other rows are in `template`.
    swapped: Option<(usize, usize)>,
    /// Bytes streamed or swapped by epochs submitted and not yet finished, oldest first.
    streamed: VecDeque<u64>,
    /// The ring's windows written by those epochs.
    uploads: VecDeque<UploadCounts>,
    /// Bind the partials for the reductions.
    train_reduction: Window,
    test_reduction: Window,
    update_workgroups: u32,
    slots: EpochSlots,
    /// The model's non-factor parts, completed by the read-back; with factors swapped, also the
    /// rows not on the device.
    template: Model,
    buffer_bytes: u64,
    train_count: u64,
    test_count: u64,
}

/// The budget for ratings streamed from disk where the driver reports no memory: the ring's
/// windows then as large as a binding allows.
const UNCAPPED: u64 = u64::MAX / 4;

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
        GpuSolver::assemble(opened, plan, schedule, &problem.test, model, params, unit, weights, options, &|_| true)
    }

    /// DSGD: a device for one worker, holding the blocks of `schedule` (the worker's own; the
    /// others empty) resident, and factor rows only for the user blocks `own_users` accepts.
    /// The worker moves item blocks in and out with [`set_rows`](Self::set_rows) and
    /// [`rows`](Self::rows) and trains blocks with [`train_blocks`](Self::train_blocks).
    /// `unit` is the whole set's rating unit ([`Params::rating_unit`]), `weights` its rows'
    /// regularisation weights.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn for_blocks(schedule: Schedule, model: Model, params: &Params, unit: f32, weights: &RowWeights, options: &GpuOptions, own_users: &dyn Fn(usize) -> bool) -> Result<GpuSolver> {
        let opened = open_kernel(params, options)?;
        let plan = DevicePlan::new(None, opened.1.row_bytes(), 0, 0, 0, 0, params.rank)?;
        GpuSolver::assemble(opened, plan, schedule, &[], model, params, unit, weights.clone(), options, own_users)
    }

    /// Uploads what `plan` keeps on the device and builds the windows: the constructors' common
    /// part.
    #[allow(clippy::too_many_arguments)]
    fn assemble(
        opened: (Gpu, KernelShape, u64),
        plan: DevicePlan,
        schedule: Schedule,
        test: &[Rating],
        model: Model,
        params: &Params,
        unit: f32,
        weights: RowWeights,
        options: &GpuOptions,
        own_users: &dyn Fn(usize) -> bool,
    ) -> Result<GpuSolver> {
        let (gpu, mut shape, max_binding) = opened;
        let (m, n) = (model.user_bias.len(), model.item_bias.len());
        let train_len = schedule.ratings();
        let max_ratings = (max_binding / std::mem::size_of::<crate::data::Rating>() as u64) as usize;

        let (lo, hi) = model.rating_range;
        let uniform = ParamsUniform {
            learning_rate: params.learning_rate,
            reg: params.reg,
            reg_bias: params.reg_bias,
            mean: model.mean,
            use_biases: params.biases as u32,
            clip_low: lo.max(f32::MIN),
            clip_high: hi.min(f32::MAX),
            max_groups: options.in_flight.unwrap_or_else(|| default_in_flight(schedule.users.max_rows(), schedule.items.max_rows())),
            error_scale: 1.0 / unit,
        };
        let in_flight_workgroups = uniform.max_groups.div_ceil(shape.ratings_per_workgroup());
        let cap = options.workgroups.unwrap_or(UPDATE_WORKGROUPS).min(in_flight_workgroups).max(1);
        let largest_block = (0..schedule.len()).map(|b| schedule.block_len(b)).max().unwrap_or(1).min(max_ratings);
        let update_workgroups = workgroups_for(&gpu, &shape, largest_block, cap);
        // A window is as long as one binding holds, but no group loops more than
        // MAX_GROUP_ITERATIONS times in one dispatch.
        let live_groups = (uniform.max_groups as usize).min(update_workgroups as usize * shape.ratings_per_workgroup() as usize);
        let max_ratings = max_ratings.min(live_groups.saturating_mul(MAX_GROUP_ITERATIONS)).max(1);

        let (user_rows, item_rows) = (schedule.users.max_rows() as u64, schedule.items.max_rows() as u64);
        // With the SVD++ term a user row carries its prior and share.
        let prior_and_share_bytes = if params.svdpp { (shape.row_bytes() + buffers::share_row_bytes(&shape)) * plan.swapped_rows.map_or(m as u64, |_| user_rows) } else { 0 };
        let factor_bytes = prior_and_share_bytes
            + match plan.swapped_rows {
                None => (shape.row_bytes() + ROW_EXTRA_BYTES) * (m + n) as u64,
                Some(_) => (shape.row_bytes() + ROW_EXTRA_BYTES) * (user_rows + item_rows),
            };
        let upload = options.upload.unwrap_or(if gpu.mappable { Upload::Mapped } else { Upload::Copied });
        let max_window = match upload {
            Upload::Mapped => max_ratings.min(MAPPED_WINDOW_BYTES / 12),
            Upload::Copied => max_ratings,
        };
        let streamed_window = plan.budget.filter(|_| plan.streamed).map(|budget| ((budget.saturating_sub(factor_bytes + OVERHEAD_BYTES) / 12) as usize / RING_SLOTS).clamp(1, max_window));
        if streamed_window.is_some() && upload == Upload::Mapped && !gpu.mappable {
            return Err(Error::InvalidParameter(format!("--upload mapped: {} cannot map storage buffers for writing; use --upload copied", gpu.adapter.name)));
        }
        let partial_bytes = |workgroups: u32| 8 * workgroups.max(1) as u64;
        let needed = factor_bytes
            + partial_bytes(update_workgroups)
            + partial_bytes(EVAL_WORKGROUPS)
            + streamed_window.map_or(12 * (train_len + test.len()) as u64, |w| (RING_SLOTS * w * 12) as u64);
        // The SVD++ term's passes run on the device where every rating and row is resident,
        // each side in one buffer, and their state fits beside them; elsewhere on the host,
        // between epochs.
        if params.svdpp && gpu.limits.max_storage_buffers_per_shader_stage < 10 {
            return Err(Error::Gpu(format!(
                "{} allows {} storage buffers per shader stage; the SVD++ term needs 10 (--no-svdpp trains without it)",
                gpu.adapter.name, gpu.limits.max_storage_buffers_per_shader_stage
            )));
        }
        let swapped = plan.swapped_rows.is_some();
        let user_layout = buffers::SideLayout::new(&gpu, &shape, &schedule.users, swapped, own_users, params.svdpp, max_binding);
        let item_layout = buffers::SideLayout::new(&gpu, &shape, &schedule.items, swapped, &|_| true, false, max_binding);
        // The passes index rows by their place in each side's one buffer (blocks lie there
        // one after another, aligned), so they need each side in one buffer.
        let (m_rows, n_rows) = (user_layout.whole_rows().unwrap_or(m as u64) as usize, item_layout.whole_rows().unwrap_or(n as u64) as usize);
        let svdpp_bytes = svdpp::device_bytes(&shape, train_len, m_rows, n_rows);
        let on_host = if !params.svdpp {
            None
        } else if swapped {
            Some(format!("the factors are swapped onto the device in {} blocks", schedule.grid()))
        } else if user_layout.whole_rows().is_none() || item_layout.whole_rows().is_none() {
            Some(format!("a side's factor rows do not fit one binding of {}", crate::resources::human_bytes(max_binding)))
        } else if schedule.on_disk() {
            Some("the ratings stream from disk".to_string())
        } else if streamed_window.is_some() {
            Some("the ratings stream from host memory".to_string())
        } else if svdpp::largest_buffer(&shape, train_len, n_rows) > max_binding {
            Some(format!("its state needs a binding of {}, above the device's {}", crate::resources::human_bytes(svdpp::largest_buffer(&shape, train_len, n_rows)), crate::resources::human_bytes(max_binding)))
        } else if plan.budget.is_some_and(|budget| needed + svdpp_bytes + OVERHEAD_BYTES > budget) {
            Some(format!("its {} do not fit the GPU memory budget beside the ratings and factors", crate::resources::human_bytes(svdpp_bytes)))
        } else {
            None
        };
        shape.svdpp = params.svdpp;
        let needed = needed + if params.svdpp && on_host.is_none() { svdpp_bytes } else { 0 };
        let pipelines = Pipelines::new(&gpu, &shape)?;
        // The priors start at zero (y = 0).
        let prior_rows = params.svdpp.then(|| ndarray::Array2::<f32>::zeros((m, params.rank)));
        let what = format!(
            "allocating {:.2} GiB of GPU buffers ({} ratings, {} users x {} items, rank {}, {:?}; --gpu-memory SIZE below what the device holds streams what does not fit)",
            needed as f64 / (1u64 << 30) as f64,
            train_len + test.len(),
            m,
            n,
            params.rank,
            options.precision
        );
        let rows_by_position = (params.svdpp && on_host.is_none()).then(|| (user_layout.rows_by_position(&schedule.users), item_layout.rows_by_position(&schedule.items)));
        let (user_blocks, item_blocks, params_buffer, train_partials, test_partials) = gpu.scoped(&what, || {
            let partials = |label: &str, workgroups: u32| {
                gpu.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some(label),
                    size: partial_bytes(workgroups),
                    usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                })
            };
            (
                buffers::upload_factor_blocks(&gpu, &shape, user_layout, &model.user_factors, &model.user_bias, &weights.users, prior_rows.as_ref(), "user block"),
                buffers::upload_factor_blocks(&gpu, &shape, item_layout, &model.item_factors, &model.item_bias, &weights.items, None, "item block"),
                gpu.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: Some("params"),
                    contents: bytemuck::bytes_of(&uniform),
                    usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                }),
                partials("training error partials", update_workgroups),
                partials("test error partials", EVAL_WORKGROUPS),
            )
        })?;
        let svdpp = match (params.svdpp, on_host) {
            (false, _) => None,
            (true, None) => {
                let reach = crate::svdpp::Reach::of(&schedule)?;
                let (users, items) = (&user_blocks[0], &item_blocks[0]);
                let places = rows_by_position.expect("made where the passes run on the device");
                let (prior, share) = users.prior.as_ref().zip(users.share.as_ref()).expect("user blocks carry priors and shares with the SVD++ term");
                let rows = [&users.factors, &items.factors, &items.reg_weight, prior, share];
                Some(svdpp::Svdpp::Device(gpu.scoped("uploading the SVD++ term's state", || svdpp::DeviceSvdpp::new(&gpu, &shape, &pipelines, &schedule, &places, (m_rows, n_rows), &reach, rows, &params_buffer))?))
            }
            (true, Some(why)) => {
                let state = crate::svdpp::SvdppState::new(&schedule, params.rank, &weights.by_position(&schedule).items)?;
                let share = ndarray::Array2::zeros((m, params.rank));
                Some(svdpp::Svdpp::Host(Box::new(svdpp::HostSvdpp { state, prior: prior_rows.expect("made with the SVD++ term"), share, why })))
            }
        };
        let bindings = |b: usize, output| {
            let (ub, ib) = schedule.coordinates(b);
            Bindings { pipelines: &pipelines, users: &user_blocks[ub], items: &item_blocks[ib], params: &params_buffer, output }
        };
        let placement = match streamed_window {
            None => Placement::Resident {
                train: gpu.scoped("uploading the train ratings", || {
                    (0..schedule.len()).map(|b| buffers::upload_windows(&gpu, &schedule.local_block(b), max_ratings, &bindings(b, &train_partials), "train ratings")).collect()
                })?,
                test: gpu.scoped("uploading the test ratings", || {
                    schedule
                        .localize(test)
                        .iter()
                        .enumerate()
                        .flat_map(|(b, ratings)| buffers::upload_windows(&gpu, ratings, max_ratings, &bindings(b, &test_partials), "test ratings"))
                        .collect()
                })?,
            },
            Some(window) => Placement::Streamed { ring: buffers::Ring::new(&gpu, RING_SLOTS, window, upload)?, test: schedule.localize(test) },
        };
        // The reductions bind the partials beside a placeholder rating.
        let reduce = |output| buffers::upload_windows(&gpu, &[crate::data::Rating { user: 0, item: 0, value: 0.0 }], 1, &bindings(0, output), "reduction").remove(0);
        let (train_reduction, test_reduction) = (reduce(&train_partials), reduce(&test_partials));
        let slots = EpochSlots::new(&gpu)?;
        Ok(GpuSolver {
            shape,
            pipelines,
            svdpp,
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
            update_workgroups,
            slots,
            template: model,
            buffer_bytes: needed,
            train_count: train_len as u64,
            test_count: test.len() as u64,
            schedule,
            gpu,
        })
    }

    /// Bytes of GPU buffers this solver holds.
    pub fn buffer_bytes(&self) -> u64 {
        self.buffer_bytes
    }

    pub fn adapter(&self) -> &AdapterSummary {
        &self.gpu.adapter
    }

    pub fn shape(&self) -> &KernelShape {
        &self.shape
    }

    pub fn schedule(&self) -> &Schedule {
        &self.schedule
    }
}

impl Solver for GpuSolver {
    fn name(&self) -> String {
        let adapter = self.gpu.adapter.name.split(" (").next().unwrap_or(&self.gpu.adapter.name);
        format!(
            "gpu ({}, {}, {:?}, {}, {} in flight, {} blocks{}{})",
            adapter,
            self.gpu.adapter.backend,
            self.shape.precision,
            if self.shape.subgroups {
                format!("{} lanes per rating, subgroups of {}", self.shape.lanes, self.gpu.adapter.subgroup_min_size)
            } else {
                "workgroup reduction".into()
            },
            self.uniform.max_groups,
            self.schedule.grid(),
            match &self.placement {
                Placement::Resident { .. } => String::new(),
                Placement::Streamed { ring, .. } => format!(", ratings streamed in windows of {}, {}", ring.window_ratings, crate::choice::Choice::name(ring.upload_kind())),
            },
            self.svdpp.as_ref().map_or(String::new(), |i| i.describe())
        )
    }

    fn submit_epoch(&mut self, epoch: usize, lr: f32, score_test: bool) -> Result<()> {
        let sequence = self.schedule.sequence(epoch);
        self.submit(&sequence, lr, score_test)
    }

    fn finish_epoch(&mut self) -> Result<EpochFigures> {
        let done = self.slots.finish(&self.gpu)?;
        Ok(EpochFigures {
            train: ErrorSums { count: self.train_count, squared: done.sums[0] as f64, absolute: done.sums[1] as f64 },
            test: done.scored_test.then(|| ErrorSums { count: self.test_count, squared: done.sums[2] as f64, absolute: done.sums[3] as f64 }),
            kernel_seconds: done.kernel_seconds,
            streamed_bytes: self.streamed.pop_front().unwrap_or(0),
            uploads: self.uploads.pop_front().unwrap_or_default(),
        })
    }
    fn epochs_in_flight(&self) -> usize {
        // The SVD++ term's passes on the host need each epoch's factors before the next.
        if self.svdpp.as_ref().is_some_and(svdpp::Svdpp::on_host) { 1 } else { readback::SLOTS }
    }

    fn device_bytes(&self) -> u64 {
        self.buffer_bytes
    }

    fn into_model(self: Box<Self>) -> Result<Model> {
        self.snapshot()
    }

    fn snapshot(&self) -> Result<Model> {
        let mut model = self.template.clone();
        buffers::read_factor_blocks(&self.gpu, &self.shape, &self.user_blocks, &mut model.user_factors, &mut model.user_bias)?;
        buffers::read_factor_blocks(&self.gpu, &self.shape, &self.item_blocks, &mut model.item_factors, &mut model.item_bias)?;
        Ok(model)
    }
}

/// A side of the grid, for moving a block of rows on and off the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Users,
    Items,
}

impl GpuSolver {
    /// Submits one pass over `sequence`'s blocks at learning rate `lr` (an epoch, or a DSGD
    /// worker's blocks), scoring the test set after it when asked.
    fn submit(&mut self, sequence: &[usize], lr: f32, score_test: bool) -> Result<()> {
        self.uniform.learning_rate = lr;
        // Ordered on the queue: epochs already submitted keep the rate they were given.
        self.gpu.queue.write_buffer(&self.params_buffer, 0, bytemuck::bytes_of(&self.uniform));
        let slot = self.slots.take()?;
        let mut encoder = self.gpu.device.create_command_encoder(&Default::default());
        encoder.clear_buffer(&self.train_partials, 0, None);
        let score_test = score_test && self.test_count > 0;
        // Out of self for the epoch, so swapping factor blocks can borrow the rest.
        let mut placement = std::mem::replace(&mut self.placement, Placement::Resident { train: Vec::new(), test: Vec::new() });
        self.streamed.push_back(0);
        let outcome = self.encode_epoch(&mut placement, &mut encoder, slot, sequence, score_test);
        self.uploads.push_back(match &mut placement {
            Placement::Streamed { ring, .. } => ring.take_counts(),
            Placement::Resident { .. } => UploadCounts::default(),
        });
        self.placement = placement;
        outcome?;
        if score_test {
            encode_reduction(&mut encoder, &self.pipelines, &self.test_reduction, "test error");
            self.slots.encode_copy(&mut encoder, slot, &self.test_partials, 8);
        }
        self.slots.encode_timestamps(&mut encoder, slot);
        let submission = self.gpu.queue.submit([encoder.finish()]);
        self.slots.submitted(slot, submission, score_test);
        Ok(())
    }

    /// DSGD: trains `blocks` once each, in order, at `lr`, and returns their errors (waits for
    /// the device).
    pub fn train_blocks(&mut self, blocks: &[usize], lr: f32) -> Result<ErrorSums> {
        self.submit(blocks, lr, false)?;
        let figures = self.finish_epoch()?;
        let count = blocks.iter().map(|&b| self.schedule.block_len(b) as u64).sum();
        Ok(ErrorSums { count, ..figures.train })
    }

    /// DSGD: the rows of block `b` of `side`, by position within the block, and their biases.
    pub fn rows(&self, side: Side, b: usize) -> Result<(Vec<f32>, Vec<f32>)> {
        let blocks = if side == Side::Users { &self.user_blocks } else { &self.item_blocks };
        blocks[b].read(&self.gpu, &self.shape, self.template.rank())
    }

    /// DSGD: puts `factors` and `bias` (by position within block `b`) on the device as block
    /// `b` of `side`; the next training sees them.
    pub fn set_rows(&mut self, side: Side, b: usize, factors: &[f32], bias: &[f32]) {
        let blocks = if side == Side::Users { &self.user_blocks } else { &self.item_blocks };
        blocks[b].write(&self.gpu, &self.shape, self.template.rank(), factors, bias);
    }
}
