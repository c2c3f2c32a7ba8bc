//! Implicit feedback on the GPU ([`crate::implicit`] says what it computes). The update kernel
//! pulls each user row toward its prior, bound beside the user block; after each epoch y and
//! the priors move, by the passes of shaders/implicit.wgsl where every rating and factor row is
//! resident in one block (they index rows by id), else by the CPU's passes on the host,
//! between epochs, over the factors read back.

use super::kernel::{KernelShape, Pipelines};
use super::{Gpu, GpuSolver};
use crate::data::Rating;
use crate::error::Result;
use crate::implicit::ImplicitFeedback;
use crate::solver::Solver;
use crate::update::Step;
use ndarray::Array2;
use wgpu::util::DeviceExt;

/// Where the passes after an epoch run.
pub(super) enum Implicit {
    Device(DeviceImplicit),
    /// On the host, with the state by the schedule's positions and the priors by id (which
    /// the user blocks load from when they are swapped); `why` not on the device.
    Host { state: ImplicitFeedback, prior: Array2<f32>, why: String },
}

impl Implicit {
    /// The priors by id, where the host keeps them.
    pub fn host_prior(&self) -> Option<&Array2<f32>> {
        match self {
            Implicit::Host { prior, .. } => Some(prior),
            Implicit::Device(_) => None,
        }
    }

    /// For the solver's name.
    pub fn describe(&self) -> String {
        match self {
            Implicit::Device(_) => ", implicit feedback".into(),
            Implicit::Host { why, .. } => format!(", implicit feedback on the host between epochs ({why})"),
        }
    }
}

impl GpuSolver {
    /// The passes after an epoch on the host: reads every row back (waiting for the device),
    /// runs them, and puts the user rows and their priors back on the device. Returns the bytes
    /// moved.
    pub(super) fn host_implicit_pass(&mut self) -> Result<u64> {
        if !matches!(self.implicit, Some(Implicit::Host { .. })) {
            return Ok(0);
        }
        let model = self.snapshot()?;
        let Some(Implicit::Host { state, prior, .. }) = &mut self.implicit else { return Ok(0) };
        let (schedule, k, u) = (&self.schedule, model.rank(), &self.uniform);
        let by_position = |axis: &crate::schedule::Axis, rows: &[f32]| if axis.is_identity() { rows.to_vec() } else { axis.gather(rows) };
        let by_id = |axis: &crate::schedule::Axis, rows: Vec<f32>| if axis.is_identity() { rows } else { axis.scatter(&rows) };
        let mut p = by_position(&schedule.users, model.user_factors.as_slice().expect("row-major"));
        let q = by_position(&schedule.items, model.item_factors.as_slice().expect("row-major"));
        let (bu, bi) = (by_position(&schedule.users, &model.user_bias), by_position(&schedule.items, &model.item_bias));
        let step = Step { lr: u.learning_rate, reg: u.reg, reg_bias: u.reg_bias, mean: u.mean, biases: u.use_biases != 0, error_scale: u.error_scale };
        state.after_epoch(schedule, &mut p, &q, &bu, &bi, &step)?;
        // The user blocks on the device, each a run of positions.
        let loaded = |b: usize| match self.swapped {
            None => Some(b),
            Some((ub, _)) => (b == 0).then_some(ub),
        };
        for (slot, block) in self.user_blocks.iter().enumerate() {
            let Some(b) = loaded(slot) else { continue };
            let (start, len) = (schedule.users.start(b), schedule.users.members(b).len());
            block.write(&self.gpu, &self.shape, k, &p[start * k..][..len * k], &bu[start..][..len]);
            block.write_prior(&self.gpu, &self.shape, k, &state.priors()[start * k..][..len * k]);
        }
        let (m, n) = (model.user_bias.len() as u64, model.item_bias.len() as u64);
        let shape = (m as usize, k);
        self.template.user_factors = Array2::from_shape_vec(shape, by_id(&schedule.users, p)).expect("users x k");
        *prior = Array2::from_shape_vec(shape, by_id(&schedule.users, state.priors().to_vec())).expect("users x k");
        Ok((m + n) * (self.shape.row_bytes() + 4) + 2 * m * (self.shape.row_bytes() + 4))
    }
}

/// Threads per workgroup of the passes (IMPLICIT_WG in the shader).
const PASS_WORKGROUP: u64 = 64;

/// The device's implicit-feedback state and the passes' bindings.
pub(super) struct DeviceImplicit {
    /// Each pass with its bind group and workgroup count, in order.
    passes: Vec<(wgpu::BindGroup, u32)>,
}

/// The ratings grouped by `key`: where each group starts, and the ratings in group order.
fn grouped(ratings: &[Rating], rows: usize, key: impl Fn(&Rating) -> usize) -> (Vec<u32>, Vec<Rating>) {
    let mut start = vec![0u32; rows + 1];
    for r in ratings {
        start[key(r) + 1] += 1;
    }
    for i in 0..rows {
        start[i + 1] += start[i];
    }
    let mut next = start.clone();
    let mut sorted = vec![Rating { user: 0, item: 0, value: 0.0 }; ratings.len()];
    for r in ratings {
        let slot = &mut next[key(r)];
        sorted[*slot as usize] = *r;
        *slot += 1;
    }
    (start, sorted)
}

/// What the buffers of [`DeviceImplicit::new`] take on the device.
pub(super) fn device_bytes(shape: &KernelShape, ratings: usize, users: usize, items: usize) -> u64 {
    let row32 = shape.k4() as u64 * 16;
    20 * ratings as u64 + users as u64 * (row32 + 8) + items as u64 * (row32 + 12) + 8
}

/// The largest single buffer of [`DeviceImplicit::new`] (each must fit one binding).
pub(super) fn largest_buffer(shape: &KernelShape, ratings: usize, users: usize, items: usize) -> u64 {
    let row32 = shape.k4() as u64 * 16;
    (12 * ratings as u64).max(users.max(items) as u64 * row32)
}

impl DeviceImplicit {
    /// Uploads the state for `ratings` (ids as rows) with y = 0, and binds the passes to the
    /// resident factor rows, biases and priors (zero). `item_reg` is each item's factor of λ
    /// in y's decay.
    #[allow(clippy::too_many_arguments)]
    pub fn new(gpu: &Gpu, shape: &KernelShape, pipelines: &Pipelines, ratings: &[Rating], users: usize, items: usize, item_reg: &[f32], rows: [&wgpu::Buffer; 5], params: &wgpu::Buffer) -> DeviceImplicit {
        let [user_factors, item_factors, user_bias, item_bias, prior] = rows;
        let k4 = shape.k4() as u64;
        let (user_start, by_user) = grouped(ratings, users, |r| r.user as usize);
        let (item_start, by_item) = grouped(ratings, items, |r| r.item as usize);
        let item_users: Vec<u32> = by_item.iter().map(|r| r.user).collect();
        drop(by_item);
        let usage = wgpu::BufferUsages::STORAGE;
        let init = |label: &str, contents: &[u8]| gpu.device.create_buffer_init(&wgpu::util::BufferInitDescriptor { label: Some(label), contents, usage });
        // Created zeroed, as wgpu clears new buffers.
        let zeroed = |label: &str, size: u64| gpu.device.create_buffer(&wgpu::BufferDescriptor { label: Some(label), size: size.max(4), usage, mapped_at_creation: false });
        let by_user = init("ratings by user", bytemuck::cast_slice(&by_user));
        let user_start = init("user starts", bytemuck::cast_slice(&user_start));
        let item_start = init("item starts", bytemuck::cast_slice(&item_start));
        let item_users = init("item users", bytemuck::cast_slice(&item_users));
        let item_implicit_reg = init("implicit item reg", bytemuck::cast_slice(item_reg));
        let errors = zeroed("implicit errors", 4 * ratings.len() as u64);
        let shares = zeroed("implicit shares", 16 * k4 * users as u64);
        let share_bound = zeroed("implicit share bounds", 4 * users as u64);
        let item_norm = zeroed("implicit item norms", 4 * items as u64);
        let item_vectors = zeroed("implicit item vectors", 16 * k4 * items as u64);
        // The buffer at each of the shader's binding numbers.
        let buffer = |n: u32| match n {
            0 => &by_user,
            1 => user_factors,
            2 => item_factors,
            3 => user_bias,
            4 => item_bias,
            5 => params,
            9 => prior,
            10 => &user_start,
            11 => &item_start,
            12 => &item_users,
            13 => &errors,
            14 => &shares,
            15 => &share_bound,
            16 => &item_norm,
            17 => &item_vectors,
            18 => &item_implicit_reg,
            _ => unreachable!("shaders/implicit.wgsl binds no buffer {n} in its passes"),
        };
        // Each pass's bindings, and the elements it covers.
        let uses: [(&[u32], u64); 5] = [
            (&[2, 5, 16], items as u64),
            (&[0, 1, 2, 3, 4, 5, 13], ratings.len() as u64),
            (&[0, 2, 10, 13, 14, 15, 16], users as u64 * k4),
            (&[5, 10, 11, 12, 14, 15, 17, 18], items as u64 * k4),
            (&[0, 1, 9, 10, 17], users as u64 * k4),
        ];
        let passes = pipelines
            .implicit
            .iter()
            .zip(uses)
            .map(|((entry, pipeline), (numbers, elements))| {
                let entries: Vec<wgpu::BindGroupEntry> = numbers.iter().map(|&n| wgpu::BindGroupEntry { binding: n, resource: buffer(n).as_entire_binding() }).collect();
                let bind_group = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor { label: Some(entry), layout: &pipeline.get_bind_group_layout(0), entries: &entries });
                let workgroups = elements.div_ceil(PASS_WORKGROUP).clamp(1, gpu.limits.max_compute_workgroups_per_dimension as u64) as u32;
                (bind_group, workgroups)
            })
            .collect();
        DeviceImplicit { passes }
    }

    /// Records the passes after an epoch's updates, in `pass`.
    pub fn encode(&self, pipelines: &Pipelines, pass: &mut wgpu::ComputePass) {
        for ((_, pipeline), (bind_group, workgroups)) in pipelines.implicit.iter().zip(&self.passes) {
            pass.set_pipeline(pipeline);
            pass.set_bind_group(0, bind_group, &[]);
            pass.dispatch_workgroups(*workgroups, 1, 1);
        }
    }
}
