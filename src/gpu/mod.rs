//! The GPU solver: Hogwild masked SGD in WGSL compute shaders through wgpu.
//!
//! Data path: the training ratings are shuffled once with the seed and uploaded once (as
//! cuMF_SGD does: reshuffling 100M ratings per epoch would cost more than the epoch), cut into
//! windows that each fit one storage binding. Each epoch is one submission: one dispatch per
//! window, in a seeded order per epoch, each a grid-stride loop of groups over its ratings.
//! Errors are reduced on the GPU (two floats read back per set); the factors come back once.

mod context;
mod kernel;
mod plan;

pub use context::{list_adapters, quiet_headless_drivers, AdapterSummary, Gpu};
pub use kernel::{KernelShape, GROUP_SUBGROUP_WGSL, GROUP_WORKGROUP_WGSL, SGD_WGSL};
pub use plan::{block_len, windows, BlockPlan, Window};

use crate::data::{shuffled, Problem, Rating};
use crate::error::{Error, Result};
use crate::metrics::ErrorSums;
use crate::model::{Model, Params};
use crate::solver::Solver;
use kernel::Pipelines;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use wgpu::util::DeviceExt;

/// How factors are stored on the GPU; arithmetic is always f32.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    F32,
    /// Half the bytes per update (needs the adapter's shader-f16 feature).
    F16,
}

impl Precision {
    fn bytes(self) -> u64 {
        match self {
            Precision::F32 => 4,
            Precision::F16 => 2,
        }
    }
}

/// GPU-specific settings; the model's hyper-parameters are in [`Params`].
#[derive(Clone, Debug, PartialEq)]
pub struct GpuOptions {
    pub precision: Precision,
    /// Use subgroups when the adapter has them; false forces the workgroup reduction.
    pub subgroups: bool,
    /// Caps one binding below the device's own limit (exercises the splitting on any device).
    pub max_binding_bytes: Option<u64>,
    /// Users per block, e.g. to keep a block's rows in the L2 cache.
    pub user_block_rows: Option<usize>,
    /// Workgroups per update dispatch (default: enough groups to hide memory latency).
    pub workgroups: Option<u32>,
    /// Lanes of a subgroup per rating (default: the fewest that hold a row in one vec4 each).
    pub lanes_per_rating: Option<u32>,
    /// Ratings updated at once, at most (default: [`default_in_flight`]).
    pub in_flight: Option<u32>,
}

impl Default for GpuOptions {
    fn default() -> Self {
        GpuOptions { precision: Precision::F32, subgroups: true, max_binding_bytes: None, user_block_rows: None, workgroups: None, lanes_per_rating: None, in_flight: None }
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
const EVAL_WORKGROUPS: u32 = 1024;
/// Default workgroups per update dispatch: 2048 × 8 subgroups keeps every SM of a large GPU busy.
const UPDATE_WORKGROUPS: u32 = 2048;

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
}

/// One block of factor rows and their biases on the GPU.
struct Block {
    factors: wgpu::Buffer,
    bias: wgpu::Buffer,
    rows: usize,
}

/// Timestamps written at the start and end of an epoch's pass, to time the kernels on the
/// device's own clock (the host's clock adds submission and the wait).
struct KernelTimer {
    queries: wgpu::QuerySet,
    resolved: wgpu::Buffer,
    readback: wgpu::Buffer,
    nanoseconds_per_tick: f64,
}

impl KernelTimer {
    fn new(gpu: &Gpu) -> Result<KernelTimer> {
        gpu.scoped("creating the kernel timer", || KernelTimer {
            queries: gpu.device.create_query_set(&wgpu::QuerySetDescriptor { label: Some("epoch timestamps"), ty: wgpu::QueryType::Timestamp, count: 2 }),
            resolved: gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("resolved timestamps"),
                size: 16,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            }),
            readback: gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("timestamp readback"),
                size: 16,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }),
            nanoseconds_per_tick: gpu.queue.get_timestamp_period() as f64,
        })
    }

    fn writes(&self) -> wgpu::ComputePassTimestampWrites<'_> {
        wgpu::ComputePassTimestampWrites { query_set: &self.queries, beginning_of_pass_write_index: Some(0), end_of_pass_write_index: Some(1) }
    }

    fn encode_resolve(&self, encoder: &mut wgpu::CommandEncoder) {
        encoder.resolve_query_set(&self.queries, 0..2, &self.resolved, 0);
        encoder.copy_buffer_to_buffer(&self.resolved, 0, &self.readback, 0, 16);
    }

    /// Seconds between the two timestamps, once the resolve has run.
    fn seconds(&self, solver: &GpuSolver) -> Result<f64> {
        let ticks: Vec<u64> = bytemuck::pod_collect_to_vec(&solver.map_and_read(&self.readback, 16)?);
        Ok(ticks[1].saturating_sub(ticks[0]) as f64 * self.nanoseconds_per_tick * 1e-9)
    }
}

/// A window's ratings on the GPU, bound with its blocks.
struct GpuWindow {
    bind_group: wgpu::BindGroup,
    count: u32,
}

pub struct GpuSolver {
    gpu: Gpu,
    shape: KernelShape,
    pipelines: Pipelines,
    plan: BlockPlan,
    user_blocks: Vec<Block>,
    item_blocks: Vec<Block>,
    params_buffer: wgpu::Buffer,
    uniform: ParamsUniform,
    partials: wgpu::Buffer,
    readback: wgpu::Buffer,
    train_windows: Vec<GpuWindow>,
    test_windows: Vec<GpuWindow>,
    update_workgroups: u32,
    timer: Option<KernelTimer>,
    /// The model's non-factor parts, completed by the read-back.
    template: Model,
    seed: u64,
    buffer_bytes: u64,
    /// Ratings in one window: as many as one binding holds.
    max_window_ratings: usize,
}

impl GpuSolver {
    pub fn new(problem: &Problem, model: Model, params: &Params, options: &GpuOptions) -> Result<GpuSolver> {
        for (flag, value) in [("--in-flight", options.in_flight), ("--workgroups", options.workgroups), ("--lanes-per-rating", options.lanes_per_rating)] {
            if value == Some(0) {
                return Err(Error::InvalidParameter(format!("{flag} must be at least 1")));
            }
        }
        if options.user_block_rows == Some(0) {
            return Err(Error::InvalidParameter("--user-block-rows must be at least 1".into()));
        }
        let gpu = Gpu::open(options.precision == Precision::F16, options.subgroups)?;
        let shape = KernelShape::new(params.rank, options.precision, gpu.subgroups, gpu.adapter.subgroup_min_size, options.lanes_per_rating)?;
        if gpu.limits.max_storage_buffers_per_shader_stage < 6 {
            return Err(Error::Gpu(format!(
                "{} allows {} storage buffers per shader stage; the kernel needs 6",
                gpu.adapter.name, gpu.limits.max_storage_buffers_per_shader_stage
            )));
        }
        let pipelines = Pipelines::new(&gpu, &shape)?;
        let device_binding = gpu.limits.max_storage_buffer_binding_size.min(gpu.limits.max_buffer_size);
        let max_binding = options.max_binding_bytes.map_or(device_binding, |cap| cap.min(device_binding));
        let row_bytes = shape.k4() as u64 * 4 * options.precision.bytes();
        let (m, n) = (problem.num_users(), problem.num_items());
        let plan = BlockPlan::new(m, n, row_bytes, max_binding, options.user_block_rows)?;
        let max_ratings = (max_binding / std::mem::size_of::<Rating>() as u64) as usize;

        let shuffled = shuffled(&problem.train, params.seed ^ 0x0067_7075_6d66);
        let train_windows = windows(&shuffled, &plan, max_ratings, false);
        let test_windows = windows(&problem.test, &plan, max_ratings, false);

        let needed = row_bytes * (m + n) as u64
            + 4 * (m + n) as u64
            + 12 * (problem.train.len() + problem.test.len()) as u64
            + 8 * EVAL_WORKGROUPS as u64;
        let (lo, hi) = model.rating_range;
        let uniform = ParamsUniform {
            learning_rate: params.learning_rate,
            reg: params.reg,
            reg_bias: params.reg_bias,
            mean: model.mean,
            use_biases: params.biases as u32,
            clip_low: lo.max(f32::MIN),
            clip_high: hi.min(f32::MAX),
            max_groups: options.in_flight.unwrap_or_else(|| default_in_flight(m.min(plan.user_rows), n.min(plan.item_rows))),
        };
        let what = format!(
            "allocating {:.2} GiB of GPU buffers ({} ratings, {} users x {} items, rank {}, {:?})",
            needed as f64 / (1u64 << 30) as f64,
            problem.train.len() + problem.test.len(),
            m,
            n,
            params.rank,
            options.precision
        );
        let (user_blocks, item_blocks, params_buffer, partials, readback) = gpu.scoped(&what, || {
            let device = &gpu.device;
            let blocks = |factors: &ndarray::Array2<f32>, bias: &[f32], rows_per: usize, count: usize, label: &str| {
                (0..count)
                    .map(|b| {
                        let start = b * rows_per;
                        let rows = block_len(b, rows_per, bias.len());
                        let data = pack_rows(factors, start, rows, &shape);
                        Block {
                            factors: device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                                label: Some(label),
                                contents: &data,
                                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
                            }),
                            bias: device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                                label: Some(label),
                                contents: bytemuck::cast_slice(&bias[start..start + rows]),
                                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
                            }),
                            rows,
                        }
                    })
                    .collect::<Vec<_>>()
            };
            let user_blocks = blocks(&model.user_factors, &model.user_bias, plan.user_rows, plan.user_blocks, "user block");
            let item_blocks = blocks(&model.item_factors, &model.item_bias, plan.item_rows, plan.item_blocks, "item block");
            let params_buffer = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("params"),
                contents: bytemuck::bytes_of(&uniform),
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            });
            let partials = device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("error partials"),
                size: 8 * EVAL_WORKGROUPS as u64,
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            let readback = device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("error readback"),
                size: 16,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            (user_blocks, item_blocks, params_buffer, partials, readback)
        })?;
        let mut solver = GpuSolver {
            gpu,
            shape,
            pipelines,
            plan,
            user_blocks,
            item_blocks,
            params_buffer,
            uniform,
            partials,
            readback,
            train_windows: Vec::new(),
            test_windows: Vec::new(),
            update_workgroups: 0,
            timer: None,
            template: model,
            seed: params.seed,
            buffer_bytes: needed,
            max_window_ratings: max_ratings,
        };
        if solver.gpu.timestamps {
            solver.timer = Some(KernelTimer::new(&solver.gpu)?);
        }
        solver.train_windows = solver.upload_windows(&train_windows, "train ratings")?;
        solver.test_windows = solver.upload_windows(&test_windows, "test ratings")?;
        let in_flight_workgroups = solver.uniform.max_groups.div_ceil(solver.shape.ratings_per_workgroup());
        let cap = options.workgroups.unwrap_or(UPDATE_WORKGROUPS).min(in_flight_workgroups).max(1);
        solver.update_workgroups = solver.workgroups_for(train_windows.iter().map(|w| w.ratings.len()).max().unwrap_or(1), cap);
        Ok(solver)
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

    pub fn plan(&self) -> &BlockPlan {
        &self.plan
    }

    /// Workgroups to cover `ratings` with one group each, at most `cap` (grid-stride beyond).
    fn workgroups_for(&self, ratings: usize, cap: u32) -> u32 {
        let needed = ratings.div_ceil(self.shape.ratings_per_workgroup() as usize).max(1);
        (needed as u64).min(cap as u64).min(self.gpu.limits.max_compute_workgroups_per_dimension as u64) as u32
    }

    fn upload_windows(&self, windows: &[Window], label: &str) -> Result<Vec<GpuWindow>> {
        self.gpu.scoped(&format!("uploading the {label}"), || {
            windows.iter().map(|w| self.bind_window(w, &self.partials, label)).collect()
        })
    }

    fn bind_window(&self, window: &Window, output: &wgpu::Buffer, label: &str) -> GpuWindow {
        let device = &self.gpu.device;
        let ratings = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: bytemuck::cast_slice(&window.ratings),
            usage: wgpu::BufferUsages::STORAGE,
        });
        let (ub, ib) = (&self.user_blocks[window.user_block], &self.item_blocks[window.item_block]);
        fn entry(binding: u32, buffer: &wgpu::Buffer) -> wgpu::BindGroupEntry<'_> {
            wgpu::BindGroupEntry { binding, resource: buffer.as_entire_binding() }
        }
        let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(label),
            layout: &self.pipelines.layout,
            entries: &[
                entry(0, &ratings),
                entry(1, &ub.factors),
                entry(2, &ib.factors),
                entry(3, &ub.bias),
                entry(4, &ib.bias),
                entry(5, &self.params_buffer),
                entry(6, output),
            ],
        });
        GpuWindow { bind_group, count: window.ratings.len() as u32 }
    }

    /// Adds the error sums of `windows` to the partials, reduces them, and copies the two
    /// totals to `readback` at `offset`.
    fn encode_evaluation(&self, encoder: &mut wgpu::CommandEncoder, windows: &[GpuWindow], offset: u64) {
        encoder.clear_buffer(&self.partials, 0, None);
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("evaluate"), timestamp_writes: None });
            pass.set_pipeline(&self.pipelines.evaluate);
            for w in windows {
                pass.set_bind_group(0, &w.bind_group, &[]);
                pass.dispatch_workgroups(self.workgroups_for(w.count as usize, EVAL_WORKGROUPS), 1, 1);
            }
            pass.set_pipeline(&self.pipelines.finish_evaluate);
            pass.set_bind_group(0, &windows[0].bind_group, &[]);
            pass.dispatch_workgroups(1, 1, 1);
        }
        encoder.copy_buffer_to_buffer(&self.partials, 0, &self.readback, offset, 8);
    }

    /// Copies `size` bytes of `source` back to the host.
    fn read_back(&self, source: &wgpu::Buffer, size: u64) -> Result<Vec<u8>> {
        let staging = self.gpu.scoped("allocating a read-back buffer", || {
            self.gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("staging"),
                size,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        })?;
        let mut encoder = self.gpu.device.create_command_encoder(&Default::default());
        encoder.copy_buffer_to_buffer(source, 0, &staging, 0, size);
        self.gpu.queue.submit([encoder.finish()]);
        self.map_and_read(&staging, size)
    }

    fn map_and_read(&self, buffer: &wgpu::Buffer, size: u64) -> Result<Vec<u8>> {
        let (tx, rx) = std::sync::mpsc::channel();
        buffer.map_async(wgpu::MapMode::Read, 0..size, move |r| {
            let _ = tx.send(r);
        });
        self.gpu.wait()?;
        rx.recv()
            .map_err(|_| Error::Gpu("read-back was never answered".into()))?
            .map_err(|e| Error::Gpu(format!("read-back failed: {e}")))?;
        let bytes = buffer.get_mapped_range(0..size).map_err(|e| Error::Gpu(format!("read-back failed: {e}")))?.to_vec();
        buffer.unmap();
        Ok(bytes)
    }

    /// Clipped predictions for `ratings` (ids in the model's index space), computed on the GPU.
    pub fn predict(&self, ratings: &[Rating]) -> Result<Vec<f32>> {
        let max_ratings = self.max_window_ratings;
        let mut out = vec![0.0f32; ratings.len()];
        for window in windows(ratings, &self.plan, max_ratings, true) {
            let size = 4 * window.ratings.len() as u64;
            let output = self.gpu.scoped("allocating prediction output", || {
                self.gpu.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("predictions"),
                    size,
                    usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
                    mapped_at_creation: false,
                })
            })?;
            let bound = self.gpu.scoped("uploading ratings to predict", || self.bind_window(&window, &output, "predict"))?;
            let mut encoder = self.gpu.device.create_command_encoder(&Default::default());
            {
                let mut pass = encoder.begin_compute_pass(&Default::default());
                pass.set_pipeline(&self.pipelines.predict);
                pass.set_bind_group(0, &bound.bind_group, &[]);
                pass.dispatch_workgroups(self.workgroups_for(window.ratings.len(), UPDATE_WORKGROUPS), 1, 1);
            }
            self.gpu.queue.submit([encoder.finish()]);
            let values: Vec<f32> = bytemuck::pod_collect_to_vec(&self.read_back(&output, size)?);
            for (&o, v) in window.origin.iter().zip(values) {
                out[o as usize] = v;
            }
        }
        Ok(out)
    }

    /// Reads the factor and bias blocks back into `model`.
    fn read_factors(&self, model: &mut Model) -> Result<()> {
        let k = model.rank();
        for (blocks, rows_per, factors, bias) in [
            (&self.user_blocks, self.plan.user_rows, &mut model.user_factors, &mut model.user_bias),
            (&self.item_blocks, self.plan.item_rows, &mut model.item_factors, &mut model.item_bias),
        ] {
            for (b, block) in blocks.iter().enumerate() {
                let start = b * rows_per;
                let stride = self.shape.k4() as usize * 4;
                let raw = self.read_back(&block.factors, (block.rows * stride) as u64 * self.shape.precision.bytes())?;
                let values: Vec<f32> = match self.shape.precision {
                    Precision::F32 => bytemuck::pod_collect_to_vec(&raw),
                    Precision::F16 => bytemuck::pod_collect_to_vec::<u8, half::f16>(&raw).iter().map(|h| h.to_f32()).collect(),
                };
                let dest = factors.as_slice_mut().expect("row-major");
                for r in 0..block.rows {
                    dest[(start + r) * k..][..k].copy_from_slice(&values[r * stride..][..k]);
                }
                let b: Vec<f32> = bytemuck::pod_collect_to_vec(&self.read_back(&block.bias, 4 * block.rows as u64)?);
                bias[start..start + block.rows].copy_from_slice(&b);
            }
        }
        Ok(())
    }
}

/// Rows `start..start + rows` of `factors`, padded to whole vec4s, in the storage precision.
fn pack_rows(factors: &ndarray::Array2<f32>, start: usize, rows: usize, shape: &KernelShape) -> Vec<u8> {
    let k = factors.ncols();
    let stride = shape.k4() as usize * 4;
    let mut padded = vec![0.0f32; rows * stride];
    let src = factors.as_slice().expect("row-major");
    for r in 0..rows {
        padded[r * stride..][..k].copy_from_slice(&src[(start + r) * k..][..k]);
    }
    match shape.precision {
        Precision::F32 => bytemuck::cast_slice(&padded).to_vec(),
        Precision::F16 => {
            let halves: Vec<half::f16> = padded.iter().map(|&x| half::f16::from_f32(x)).collect();
            bytemuck::cast_slice(&halves).to_vec()
        }
    }
}

impl Solver for GpuSolver {
    fn name(&self) -> String {
        let adapter = self.gpu.adapter.name.split(" (").next().unwrap_or(&self.gpu.adapter.name);
        format!(
            "gpu ({}, {}, {:?}, {}, {} in flight)",
            adapter,
            self.gpu.adapter.backend,
            self.shape.precision,
            if self.shape.subgroups {
                format!("{} lanes per rating, subgroups of {}", self.shape.lanes, self.gpu.adapter.subgroup_min_size)
            } else {
                "workgroup reduction".into()
            },
            self.uniform.max_groups
        )
    }

    fn run_epoch(&mut self, epoch: usize, lr: f32) -> Result<Option<f64>> {
        self.uniform.learning_rate = lr;
        self.gpu.queue.write_buffer(&self.params_buffer, 0, bytemuck::bytes_of(&self.uniform));
        let mut order: Vec<usize> = (0..self.train_windows.len()).collect();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(self.seed.wrapping_add(epoch as u64)));
        let mut encoder = self.gpu.device.create_command_encoder(&Default::default());
        {
            let timestamp_writes = self.timer.as_ref().map(KernelTimer::writes);
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("sgd epoch"), timestamp_writes });
            pass.set_pipeline(&self.pipelines.update);
            for &w in &order {
                pass.set_bind_group(0, &self.train_windows[w].bind_group, &[]);
                pass.dispatch_workgroups(self.update_workgroups, 1, 1);
            }
        }
        if let Some(timer) = &self.timer {
            timer.encode_resolve(&mut encoder);
        }
        self.gpu.queue.submit([encoder.finish()]);
        self.gpu.wait()?;
        self.timer.as_ref().map(|t| t.seconds(self)).transpose()
    }

    fn evaluate(&mut self) -> Result<(ErrorSums, Option<ErrorSums>)> {
        let mut encoder = self.gpu.device.create_command_encoder(&Default::default());
        self.encode_evaluation(&mut encoder, &self.train_windows, 0);
        let has_test = !self.test_windows.is_empty();
        if has_test {
            self.encode_evaluation(&mut encoder, &self.test_windows, 8);
        }
        self.gpu.queue.submit([encoder.finish()]);
        let sums: Vec<f32> = bytemuck::pod_collect_to_vec(&self.map_and_read(&self.readback, 16)?);
        let count = |ws: &[GpuWindow]| ws.iter().map(|w| w.count as u64).sum::<u64>();
        let train = ErrorSums { count: count(&self.train_windows), squared: sums[0] as f64, absolute: sums[1] as f64 };
        let test = has_test.then(|| ErrorSums { count: count(&self.test_windows), squared: sums[2] as f64, absolute: sums[3] as f64 });
        Ok((train, test))
    }

    fn device_bytes(&self) -> u64 {
        self.buffer_bytes
    }

    fn into_model(self: Box<Self>) -> Result<Model> {
        self.snapshot()
    }

    fn snapshot(&self) -> Result<Model> {
        let mut model = self.template.clone();
        self.read_factors(&mut model)?;
        Ok(model)
    }
}
