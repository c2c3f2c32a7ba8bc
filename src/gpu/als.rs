//! Alternating least squares for the one-class loss on the GPU: shaders/als.wgsl computes the
//! fixed side's Gramian and solves each row by conjugate gradient, one workgroup a row, the
//! same normal equations as the CPU's solver ([`crate::cpu::als`]). Everything stays on the
//! device during an epoch; the factors come back after it, for the loss and NDCG@20, which the
//! host computes as the CPU's solver does.

use super::Gpu;
use crate::cpu::als::{epoch_figures, gramian, Events};
use crate::data::Rating;
use crate::error::{Error, Result};
use crate::model::{Model, OneClassFit, Params};
use crate::problem::Problem;
use crate::solver::{EpochFigures, Solver};
use ndarray::Array2;
use std::collections::VecDeque;
use wgpu::util::DeviceExt;

pub const ALS_WGSL: &str = include_str!("../../shaders/als.wgsl");

/// The largest rank the kernel solves (MAX_K in the shader: four rows of it in workgroup memory).
pub const MAX_ALS_RANK: usize = 256;

/// The kernel's uniform (AlsParams in the shader).
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct AlsParams {
    rows: u32,
    others: u32,
    k: u32,
    steps: u32,
    unobserved_weight: f32,
    _pad: [u32; 3],
}

/// One half-epoch on the device: the fixed side's Gramian, then the rows solved against it.
struct HalfEpoch {
    bind_group: wgpu::BindGroup,
    rows: u32,
}

pub struct GpuAlsSolver {
    gpu: Gpu,
    gram_pipeline: wgpu::ComputePipeline,
    solve_pipeline: wgpu::ComputePipeline,
    /// Users solved against the items, then items against the users.
    halves: [HalfEpoch; 2],
    user_factors: wgpu::Buffer,
    item_factors: wgpu::Buffer,
    model: Model,
    by_user: Events,
    test: Vec<Rating>,
    fit: OneClassFit,
    device_bytes: u64,
    done: VecDeque<EpochFigures>,
}

impl GpuAlsSolver {
    pub fn new(problem: &Problem, mut model: Model, params: &Params, options: &super::GpuOptions) -> Result<GpuAlsSolver> {
        let k = params.rank;
        if k > MAX_ALS_RANK {
            return Err(Error::InvalidParameter(format!("--rank {k}: the GPU solves --loss ials rows up to rank {MAX_ALS_RANK}; use --backend cpu for more")));
        }
        if problem.train_on_disk.is_some() {
            return Err(Error::InvalidParameter("--loss ials on the GPU needs its events in memory: leave out --memory (the CPU trains it from the disk cache: --backend cpu)".into()));
        }
        let gpu = Gpu::open_at(options.adapter, false, false)?;
        let fit = OneClassFit { settings: params.one_class, reg: params.reg, frequency_reg: params.frequency_reg };
        let (by_user, by_item) = Events::of_problem(problem, &fit.settings)?;
        model.record_seen(problem);
        let (m, n) = (problem.num_users(), problem.num_items());
        let (gram_pipeline, solve_pipeline, layout) = pipelines(&gpu)?;
        let storage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST;
        let (user_factors, item_factors, gram, halves, device_bytes) = gpu.scoped("allocating the ALS buffers", || {
            let init = |label: &str, contents: &[u8]| gpu.device.create_buffer_init(&wgpu::util::BufferInitDescriptor { label: Some(label), contents, usage: storage });
            let factors = |a: &Array2<f32>, label| init(label, bytemuck::cast_slice(a.as_slice().expect("row-major")));
            let (p, q) = (factors(&model.user_factors, "user factors"), factors(&model.item_factors, "item factors"));
            let gram = init("gram", &vec![0u8; 4 * k * k]);
            let mut bytes = (p.size() + q.size() + gram.size()) as u64;
            let mut half = |events: &Events, solved: &wgpu::Buffer, fixed: &wgpu::Buffer, others: usize| {
                let starts: Vec<u32> = events.starts.iter().map(|&s| s as u32).collect();
                let lambdas = events.lambdas(others, &fit);
                let uniform = AlsParams { rows: events.rows() as u32, others: others as u32, k: k as u32, steps: fit.settings.cg_steps as u32, unobserved_weight: fit.settings.unobserved_weight, _pad: [0; 3] };
                // Storage bindings may not be empty: an empty side gets one unused element.
                let nonempty = |v: &[u8]| if v.is_empty() { vec![0u8; 4] } else { v.to_vec() };
                let buffers = [
                    gpu.device.create_buffer_init(&wgpu::util::BufferInitDescriptor { label: Some("als params"), contents: bytemuck::bytes_of(&uniform), usage: wgpu::BufferUsages::UNIFORM }),
                    init("starts", &nonempty(bytemuck::cast_slice(&starts))),
                    init("index", &nonempty(bytemuck::cast_slice(&events.index))),
                    init("weight", &nonempty(bytemuck::cast_slice(&events.weight))),
                    init("lambda", &nonempty(bytemuck::cast_slice(&lambdas))),
                ];
                bytes += buffers.iter().map(|b| b.size()).sum::<u64>();
                let bound = [(0, &buffers[0]), (1, solved), (2, fixed), (3, &gram), (4, &buffers[1]), (5, &buffers[2]), (6, &buffers[3]), (7, &buffers[4])];
                let entries: Vec<wgpu::BindGroupEntry> = bound.iter().map(|&(binding, buffer)| wgpu::BindGroupEntry { binding, resource: buffer.as_entire_binding() }).collect();
                let bind_group = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor { label: Some("als"), layout: &layout, entries: &entries });
                HalfEpoch { bind_group, rows: events.rows() as u32 }
            };
            let halves = [half(&by_user, &p, &q, n), half(&by_item, &q, &p, m)];
            (p, q, gram, halves, bytes)
        })?;
        drop(gram);
        Ok(GpuAlsSolver { gpu, gram_pipeline, solve_pipeline, halves, user_factors, item_factors, model, by_user, test: problem.test.clone(), fit, device_bytes, done: VecDeque::new() })
    }

    /// Records one epoch: for each side, the Gramian of the other, then the solves.
    fn encode_epoch(&self) -> wgpu::CommandBuffer {
        let k = self.model.rank() as u32;
        let mut encoder = self.gpu.device.create_command_encoder(&Default::default());
        let max = self.gpu.limits.max_compute_workgroups_per_dimension.max(1);
        for half in &self.halves {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            pass.set_bind_group(0, &half.bind_group, &[]);
            pass.set_pipeline(&self.gram_pipeline);
            pass.dispatch_workgroups(k.div_ceil(16), k.div_ceil(16), 1);
            drop(pass);
            // A second pass, so the solves see the whole Gramian.
            let mut pass = encoder.begin_compute_pass(&Default::default());
            pass.set_bind_group(0, &half.bind_group, &[]);
            pass.set_pipeline(&self.solve_pipeline);
            if half.rows > 0 {
                let x = half.rows.min(max);
                pass.dispatch_workgroups(x, half.rows.div_ceil(x), 1);
            }
        }
        encoder.finish()
    }

    /// The factors back from the device into the host's model.
    fn read_factors(&mut self) -> Result<()> {
        for (buffer, host) in [(&self.user_factors, &mut self.model.user_factors), (&self.item_factors, &mut self.model.item_factors)] {
            let bytes = self.gpu.read_back(buffer, 0, buffer.size())?;
            let floats: &[f32] = bytemuck::cast_slice(&bytes);
            let out = host.as_slice_mut().expect("row-major");
            out.copy_from_slice(&floats[..out.len()]);
        }
        Ok(())
    }
}

/// The Gramian and solve pipelines over one bind group layout.
fn pipelines(gpu: &Gpu) -> Result<(wgpu::ComputePipeline, wgpu::ComputePipeline, wgpu::BindGroupLayout)> {
    gpu.scoped("compiling the ALS kernel", || {
        let device = &gpu.device;
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor { label: Some("als.wgsl"), source: wgpu::ShaderSource::Wgsl(ALS_WGSL.into()) });
        let entry = |binding: u32, ty: wgpu::BufferBindingType| wgpu::BindGroupLayoutEntry {
            binding,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer { ty, has_dynamic_offset: false, min_binding_size: None },
            count: None,
        };
        let storage = |binding, read_only| entry(binding, wgpu::BufferBindingType::Storage { read_only });
        let entries = [entry(0, wgpu::BufferBindingType::Uniform), storage(1, false), storage(2, true), storage(3, false), storage(4, true), storage(5, true), storage(6, true), storage(7, true)];
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor { label: Some("als"), entries: &entries });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor { label: Some("als"), bind_group_layouts: &[Some(&layout)], immediate_size: 0 });
        let pipeline = |name: &str| {
            device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(name),
                layout: Some(&pipeline_layout),
                module: &module,
                entry_point: Some(name),
                compilation_options: Default::default(),
                cache: None,
            })
        };
        (pipeline("gramian"), pipeline("solve"), layout)
    })
}

impl Solver for GpuAlsSolver {
    fn name(&self) -> String {
        format!("gpu (alternating least squares, {})", self.gpu.adapter.name)
    }

    fn submit_epoch(&mut self, _epoch: usize, _lr: f32, score_test: bool) -> Result<()> {
        let commands = self.encode_epoch();
        self.gpu.queue.submit([commands]);
        self.read_factors()?;
        let m = &self.model;
        let grams = (gramian(m.user_factors.view()), gramian(m.item_factors.view()));
        self.done.push_back(epoch_figures(m, &self.by_user, &self.fit.settings, (&grams.0, &grams.1), &self.test, score_test));
        Ok(())
    }

    fn finish_epoch(&mut self) -> Result<EpochFigures> {
        self.done.pop_front().ok_or_else(|| Error::Data("finish_epoch with no epoch submitted".into()))
    }

    fn into_model(self: Box<Self>) -> Result<Model> {
        Ok(self.model)
    }

    fn snapshot(&self) -> Result<Model> {
        Ok(self.model.clone())
    }

    fn device_bytes(&self) -> u64 {
        self.device_bytes
    }
}
