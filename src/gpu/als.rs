//! Alternating least squares for the one-class loss on the GPU: shaders/als.wgsl computes the
//! fixed side's Gramian and solves each row by conjugate gradient, one workgroup a row, the
//! same normal equations as the CPU's solver ([`crate::cpu::als`]). The factors stay on the
//! device; the events too where they fit. Where they do not (`--gpu-memory` below what they
//! need), or they are in the block cache on disk (`--memory`), each half-epoch uploads them a
//! band of rows at a time, the device solving one band while the host writes the next. The
//! factors come back after each epoch, for the loss and NDCG@20, which the host computes as
//! the CPU's solver does.

use super::Gpu;
use crate::cpu::als::{epoch_figures, gramian, Events, Half, Store};
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
    first_row: u32,
    _pad: [u32; 2],
}

/// A band of one side's rows bound for the solve kernel: its events, λs and uniform on the
/// device, beside both sides' factors and the Gramian.
struct Band {
    bind_group: wgpu::BindGroup,
    rows: u32,
    /// Device bytes of its own buffers.
    bytes: u64,
}

/// The device's part: the pipelines, both sides' factors and the Gramian.
struct AlsDevice {
    gpu: Gpu,
    gram_pipeline: wgpu::ComputePipeline,
    solve_pipeline: wgpu::ComputePipeline,
    layout: wgpu::BindGroupLayout,
    user_factors: wgpu::Buffer,
    item_factors: wgpu::Buffer,
    gram: wgpu::Buffer,
    k: usize,
    /// Rows of each side.
    rows: (usize, usize),
    fit: OneClassFit,
}

impl AlsDevice {
    /// Uploads the events of `half`'s rows from `first` on, bound to solve them; on a software
    /// adapter, an error for a row with more events than its solve can take there.
    fn band(&self, half: Half, first: usize, events: &Events) -> Result<Band> {
        let gpu = &self.gpu;
        let binding = gpu.limits.max_storage_buffer_binding_size;
        if 4 * events.index.len() as u64 > binding {
            return Err(Error::InvalidParameter(format!(
                "a band of {} events is more than one binding of {} holds ({}): give a smaller --memory, so that the block cache cuts finer blocks",
                events.index.len(),
                gpu.adapter.name,
                crate::resources::human_bytes(binding)
            )));
        }
        self.check_rows(half, first, events)?;
        let (solved, fixed, others) = match half {
            Half::Users => (&self.user_factors, &self.item_factors, self.rows.1),
            Half::Items => (&self.item_factors, &self.user_factors, self.rows.0),
        };
        let starts: Vec<u32> = events.starts.iter().map(|&s| s as u32).collect();
        let lambdas = events.lambdas(others, &self.fit);
        let settings = &self.fit.settings;
        let uniform = AlsParams { rows: events.rows() as u32, others: others as u32, k: self.k as u32, steps: settings.cg_steps as u32, unobserved_weight: settings.unobserved_weight, first_row: first as u32, _pad: [0; 2] };
        let init = |label: &str, contents: &[u8], usage| gpu.device.create_buffer_init(&wgpu::util::BufferInitDescriptor { label: Some(label), contents, usage });
        // Storage bindings may not be empty: a band without events gets one unused element.
        let nonempty = |v: &[u8]| if v.is_empty() { vec![0u8; 4] } else { v.to_vec() };
        let storage = wgpu::BufferUsages::STORAGE;
        let buffers = [
            init("als params", bytemuck::bytes_of(&uniform), wgpu::BufferUsages::UNIFORM),
            init("starts", &nonempty(bytemuck::cast_slice(&starts)), storage),
            init("index", &nonempty(bytemuck::cast_slice(&events.index)), storage),
            init("weight", &nonempty(bytemuck::cast_slice(&events.weight)), storage),
            init("lambda", &nonempty(bytemuck::cast_slice(&lambdas)), storage),
        ];
        let bound = [(0, &buffers[0]), (1, solved), (2, fixed), (3, &self.gram), (4, &buffers[1]), (5, &buffers[2]), (6, &buffers[3]), (7, &buffers[4])];
        let entries: Vec<wgpu::BindGroupEntry> = bound.iter().map(|&(binding, buffer)| wgpu::BindGroupEntry { binding, resource: buffer.as_entire_binding() }).collect();
        let bind_group = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor { label: Some("als band"), layout: &self.layout, entries: &entries });
        Ok(Band { bind_group, rows: events.rows() as u32, bytes: buffers.iter().map(|b| b.size()).sum() })
    }

    /// On a software adapter, an error for a row of `events` (rows of `half` from `first` on)
    /// with more events than its solve can take there ([`SOFTWARE_ROW_EVENTS`]).
    fn check_rows(&self, half: Half, first: usize, events: &Events) -> Result<()> {
        if !self.gpu.adapter.is_software() {
            return Ok(());
        }
        match (0..events.rows()).map(|r| (r, events.starts[r + 1] - events.starts[r])).find(|&(_, n)| n > SOFTWARE_ROW_EVENTS) {
            None => Ok(()),
            Some((r, n)) => Err(Error::InvalidParameter(format!(
                "--backend gpu: {} is a software renderer, which ends long shader loops early without a word, and {} row {} has {n} events, more than its ALS solve takes there ({SOFTWARE_ROW_EVENTS}): use --backend cpu",
                self.gpu.adapter.name,
                if half == Half::Users { "user" } else { "item" },
                first + r
            ))),
        }
    }

    /// The Gramian of the fixed side, summed over `chunks` of its rows, a pass each.
    fn encode_gram(&self, encoder: &mut wgpu::CommandEncoder, chunks: &[Band]) {
        let k = self.k as u32;
        for chunk in chunks {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            pass.set_bind_group(0, &chunk.bind_group, &[]);
            pass.set_pipeline(&self.gram_pipeline);
            pass.dispatch_workgroups(k.div_ceil(16), k.div_ceil(16), 1);
        }
    }

    /// The solves of `band`'s rows, in a pass of their own (so they see the whole Gramian).
    fn encode_solve(&self, encoder: &mut wgpu::CommandEncoder, band: &Band) {
        if band.rows == 0 {
            return;
        }
        let max = self.gpu.limits.max_compute_workgroups_per_dimension.max(1);
        let mut pass = encoder.begin_compute_pass(&Default::default());
        pass.set_bind_group(0, &band.bind_group, &[]);
        pass.set_pipeline(&self.solve_pipeline);
        let x = band.rows.min(max);
        pass.dispatch_workgroups(x, band.rows.div_ceil(x), 1);
    }
}

pub struct GpuAlsSolver {
    device: AlsDevice,
    /// Per side solved (users, items): bands without events over the fixed side's rows, a
    /// chunk each, bound for the Gramian.
    grams: [Vec<Band>; 2],
    /// Per side, with the events resident: its bands, uploaded once.
    resident: [Vec<Band>; 2],
    /// With the events streamed: `Some`, and in memory the most events a band holds.
    streamed: Option<Option<usize>>,
    model: Model,
    store: Store,
    test: Vec<Rating>,
    device_bytes: u64,
    done: VecDeque<EpochFigures>,
}

/// Rows of the fixed side one Gramian dispatch sums (shaders/als.wgsl says why it is cut).
const GRAM_CHUNK: usize = 8192;

/// Events a row may have on a software adapter. Mesa's lavapipe ends a workgroup's loops early
/// without a word once they run to about 16,000 iterations together, and a row's CG steps loop
/// over its events five times: rows of 12,000 events came out wrong, while rows of up to 990
/// gave the CPU's loss to the last digit printed (2,000 already drifted by 0.1%).
const SOFTWARE_ROW_EVENTS: usize = 1000;

/// Bytes of a band of `rows` rows and `events` events on the device.
fn band_bytes(rows: usize, events: usize) -> u64 {
    (8 * rows + 4 + 8 * events + 32) as u64
}

impl GpuAlsSolver {
    pub fn new(problem: &Problem, mut model: Model, params: &Params, options: &super::GpuOptions) -> Result<GpuAlsSolver> {
        let k = params.rank;
        if k > MAX_ALS_RANK {
            return Err(Error::InvalidParameter(format!("--rank {k}: the GPU solves --loss ials rows up to rank {MAX_ALS_RANK}; use --backend cpu for more")));
        }
        let gpu = Gpu::open_at(options.adapter, false, false)?;
        let fit = OneClassFit { settings: params.one_class, reg: params.reg, frequency_reg: params.frequency_reg };
        let store = Store::new(problem, &mut model, &fit.settings)?;
        let (m, n) = (problem.num_users(), problem.num_items());
        let (gram_pipeline, solve_pipeline, layout) = pipelines(&gpu)?;
        let factor_bytes = (4 * (m + n) * k + 4 * k * k) as u64;
        let streamed = plan(&gpu, &store, factor_bytes, options.gpu_memory)?;
        let storage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST;
        let device = gpu.scoped("allocating the ALS factors", || {
            let init = |label: &str, contents: &[u8]| gpu.device.create_buffer_init(&wgpu::util::BufferInitDescriptor { label: Some(label), contents, usage: storage });
            let factors = |a: &Array2<f32>, label| init(label, bytemuck::cast_slice(a.as_slice().expect("row-major")));
            let (user_factors, item_factors) = (factors(&model.user_factors, "user factors"), factors(&model.item_factors, "item factors"));
            let gram = init("gram", &vec![0u8; 4 * k * k]);
            (user_factors, item_factors, gram)
        })?;
        let (user_factors, item_factors, gram) = device;
        let device = AlsDevice { gpu, gram_pipeline, solve_pipeline, layout, user_factors, item_factors, gram, k, rows: (m, n), fit };
        // Over the fixed side: the items' rows for the users' half, the users' for the items'.
        let chunks = |half, others: usize| (0..others.max(1)).step_by(GRAM_CHUNK).map(|first| device.band(half, first, &Events::empty(GRAM_CHUNK.min(others - first)))).collect::<Result<Vec<Band>>>();
        let grams = [chunks(Half::Users, n)?, chunks(Half::Items, m)?];
        // Events in memory are checked before any training (those on disk as they are read).
        if let Store::Memory { by_user, by_item } = &store {
            device.check_rows(Half::Users, 0, by_user)?;
            device.check_rows(Half::Items, 0, by_item)?;
        }
        let mut resident: [Vec<Band>; 2] = [Vec::new(), Vec::new()];
        if streamed.is_none() {
            for (h, half) in [Half::Users, Half::Items].into_iter().enumerate() {
                device.gpu.scoped("uploading the events", || store.for_each_band(half, &device.fit.settings, None, |rows, events| {
                    resident[h].push(device.band(half, rows.start, events)?);
                    Ok(())
                }))??;
            }
        }
        let device_bytes = factor_bytes + resident.iter().flatten().map(|b| b.bytes).sum::<u64>();
        Ok(GpuAlsSolver { device, grams, resident, streamed, model, store, test: problem.test.clone(), device_bytes, done: VecDeque::new() })
    }

    /// One epoch on the device: for each side, the Gramian of the other, then the solves of
    /// its bands (resident, or uploaded one after another, two in flight at most). Returns the
    /// bytes uploaded.
    fn run_epoch(&mut self) -> Result<u64> {
        let device = &self.device;
        let mut uploaded = 0;
        for (h, half) in [Half::Users, Half::Items].into_iter().enumerate() {
            let mut encoder = device.gpu.device.create_command_encoder(&Default::default());
            device.encode_gram(&mut encoder, &self.grams[h]);
            for band in &self.resident[h] {
                device.encode_solve(&mut encoder, band);
            }
            device.gpu.queue.submit([encoder.finish()]);
            let Some(max_events) = self.streamed else { continue };
            let mut previous = None;
            self.store.for_each_band(half, &device.fit.settings, max_events, |rows, events| {
                let band = device.band(half, rows.start, events)?;
                uploaded += band.bytes;
                let mut encoder = device.gpu.device.create_command_encoder(&Default::default());
                device.encode_solve(&mut encoder, &band);
                let index = device.gpu.queue.submit([encoder.finish()]);
                match previous.replace(index) {
                    Some(before) => device.gpu.device.poll(wgpu::PollType::Wait { submission_index: Some(before), timeout: None }).map(|_| ()).map_err(|e| Error::Gpu(format!("waiting for the device failed: {e}"))),
                    None => Ok(()),
                }
            })?;
        }
        Ok(uploaded)
    }

    /// The factors back from the device into the host's model.
    fn read_factors(&mut self) -> Result<()> {
        let device = &self.device;
        for (buffer, host) in [(&device.user_factors, &mut self.model.user_factors), (&device.item_factors, &mut self.model.item_factors)] {
            let bytes = device.gpu.read_back(buffer, 0, buffer.size())?;
            let floats: &[f32] = bytemuck::cast_slice(&bytes);
            let out = host.as_slice_mut().expect("row-major");
            out.copy_from_slice(&floats[..out.len()]);
        }
        Ok(())
    }
}

/// Whether the events stream, and in memory the most a band holds: `None` where both sides'
/// fit beside the factors (`factor_bytes`) within `gpu_memory` (default: what the adapter
/// reports, less a tenth) and one binding; bands of a block each from disk.
fn plan(gpu: &Gpu, store: &Store, factor_bytes: u64, gpu_memory: Option<u64>) -> Result<Option<Option<usize>>> {
    let Store::Memory { by_user, by_item } = store else { return Ok(Some(None)) };
    let budget = gpu_memory.or(gpu.adapter.device_memory.map(|m| m - m / 10)).unwrap_or(u64::MAX);
    let binding = gpu.limits.max_storage_buffer_binding_size;
    let events = by_user.index.len();
    let need = factor_bytes + band_bytes(by_user.rows(), events) + band_bytes(by_item.rows(), events);
    if need <= budget && 4 * (events as u64) <= binding {
        return Ok(None);
    }
    // Two bands in flight, each of at most this many events (and its rows' starts and λs).
    let room = budget.saturating_sub(factor_bytes + 2 * band_bytes(by_user.rows().max(by_item.rows()), 0)) / 2;
    let most = (room / 8).min(binding / 4) as usize;
    if most < 1024 {
        return Err(Error::InvalidParameter(format!(
            "--gpu-memory {}: the factors take {} and the events' bands need room beside them; give at least {}",
            crate::resources::human_bytes(budget),
            crate::resources::human_bytes(factor_bytes),
            crate::resources::human_bytes(factor_bytes + 2 * band_bytes(by_user.rows().max(by_item.rows()), 1024))
        )));
    }
    Ok(Some(Some(most)))
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
        let how = match (&self.store, self.streamed) {
            (Store::Disk(schedule), _) => format!(", events read from {} blocks on disk", schedule.grid()),
            (_, Some(Some(most))) => format!(", events streamed in bands of up to {most}"),
            _ => String::new(),
        };
        format!("gpu (alternating least squares, {}{how})", self.device.gpu.adapter.name)
    }

    fn submit_epoch(&mut self, _epoch: usize, _lr: f32, score_test: bool) -> Result<()> {
        let uploaded = self.run_epoch()?;
        self.read_factors()?;
        let m = &self.model;
        let grams = (gramian(m.user_factors.view()), gramian(m.item_factors.view()));
        let figures = epoch_figures(m, &self.store, &self.device.fit.settings, (&grams.0, &grams.1), None, &self.test, score_test)?;
        // From disk: a read of every block per side, and one more for the loss.
        self.done.push_back(EpochFigures { streamed_bytes: uploaded + 3 * self.store.disk_bytes(), ..figures });
        Ok(())
    }

    fn finish_epoch(&mut self) -> Result<EpochFigures> {
        self.done.pop_front().ok_or_else(|| Error::Data("finish_epoch with no epoch submitted".into()))
    }

    fn into_model(self: Box<Self>) -> Result<Model> {
        Ok(self.store.restore(self.model))
    }

    fn snapshot(&self) -> Result<Model> {
        Ok(self.store.restore(self.model.clone()))
    }

    fn device_bytes(&self) -> u64 {
        self.device_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::{AlsParams, ALS_WGSL};

    /// The WGSL `struct AlsParams` and the Rust uniform are two hand-kept copies: each named
    /// field at the same offset, in the same order, and the WGSL struct no larger than the
    /// buffer the host writes.
    #[test]
    fn the_als_uniform_has_the_rust_structs_layout() {
        let (fields, span) = crate::gpu::wgsl_struct_layout(ALS_WGSL, "AlsParams");
        let wgsl: Vec<(&str, usize)> = fields.iter().map(|(name, offset)| (name.as_str(), *offset)).collect();
        let rust = vec![
            ("rows", std::mem::offset_of!(AlsParams, rows)),
            ("others", std::mem::offset_of!(AlsParams, others)),
            ("k", std::mem::offset_of!(AlsParams, k)),
            ("steps", std::mem::offset_of!(AlsParams, steps)),
            ("unobserved_weight", std::mem::offset_of!(AlsParams, unobserved_weight)),
            ("first_row", std::mem::offset_of!(AlsParams, first_row)),
        ];
        assert_eq!(wgsl, rust, "each field at the same offset, in the same order");
        assert!(span <= std::mem::size_of::<AlsParams>(), "the WGSL struct ({span} bytes) fits the Rust one");
    }
}
