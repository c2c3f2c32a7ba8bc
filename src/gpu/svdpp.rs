//! The SVD++ term on the GPU ([`crate::svdpp`] says what it computes). The update kernel
//! pulls each user row toward its prior and adds to its share, both bound beside the user
//! block; every third epoch y and the priors move first, by the passes of shaders/svdpp.wgsl where
//! every rating and factor row is resident and each side's blocks lie in one buffer (the passes
//! bind it whole and index rows by their place there), else by the CPU's passes on the host,
//! between epochs, over the factors and shares read back.

use super::kernel::{KernelShape, Pipelines};
use super::{Gpu, GpuSolver};
use crate::data::Rating;
use crate::error::Result;
use crate::svdpp::{SvdppState, Reach};
use crate::schedule::Schedule;
use crate::solver::Solver;
use crate::update::Step;
use ndarray::Array2;
use wgpu::util::DeviceExt;

/// Threads per workgroup of the passes (SVDPP_WG in the shader).
const PASS_WORKGROUP: u64 = 64;
/// Users one thread sums at most for an item's y: a popular item's users (Netflix's most rated
/// film has 232,944) are cut into runs summed side by side, then each item adds its runs.
const RUN_USERS: u32 = 512;

/// Where the passes after an epoch run.
pub(super) enum Svdpp {
    Device(DeviceSvdpp),
    Host(Box<HostSvdpp>),
}

/// The SVD++ term's passes on the host: the state by the schedule's positions, and the
/// priors and shares by id for the user blocks swapped in and out; `why` not on the device.
pub(super) struct HostSvdpp {
    pub state: SvdppState,
    pub prior: Array2<f32>,
    pub share: Array2<f32>,
    pub why: String,
}

impl Svdpp {
    /// The priors and shares by id, where the host keeps them.
    pub fn host_rows(&mut self) -> Option<(&mut Array2<f32>, &mut Array2<f32>)> {
        match self {
            Svdpp::Host(host) => Some((&mut host.prior, &mut host.share)),
            Svdpp::Device(_) => None,
        }
    }

    pub fn on_host(&self) -> bool {
        matches!(self, Svdpp::Host(_))
    }

    /// For the solver's name.
    pub fn describe(&self) -> String {
        match self {
            Svdpp::Device(_) => ", the SVD++ term".into(),
            Svdpp::Host(host) => format!(", the SVD++ term on the host between epochs ({})", host.why),
        }
    }
}

impl GpuSolver {
    /// The SVD++ term's passes before an epoch ([`crate::svdpp::passes_before`]), at the rate
    /// the uniform still holds (the last epoch's): on the device, a submission of their own
    /// that writes the start time of the epoch in `slot`; else on the host (waiting for the
    /// device). Returns whether they ran on the device.
    pub(super) fn svdpp_passes(&mut self, slot: usize) -> Result<bool> {
        match &self.svdpp {
            Some(Svdpp::Device(svdpp)) => {
                let mut encoder = self.gpu.device.create_command_encoder(&Default::default());
                {
                    let timestamp_writes = self.slots.timestamp_writes(slot, true, false);
                    let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("svdpp passes"), timestamp_writes });
                    svdpp.encode(&self.pipelines, &mut pass);
                }
                self.gpu.queue.submit([encoder.finish()]);
                Ok(true)
            }
            Some(Svdpp::Host(_)) => {
                let moved = self.host_svdpp_pass()?;
                *self.streamed.back_mut().expect("pushed by submit") += moved;
                Ok(false)
            }
            None => Ok(false),
        }
    }

    /// The passes on the host ([`svdpp_passes`](Self::svdpp_passes) calls it where they run
    /// there): reads every row and share back (waiting for the device), runs them, and puts
    /// the user rows and their priors back on the device with the shares cleared. Returns the
    /// bytes moved.
    fn host_svdpp_pass(&mut self) -> Result<u64> {
        let model = self.snapshot()?;
        let (schedule, k, u) = (&self.schedule, model.rank(), &self.uniform);
        let (users, items) = (&schedule.users, &schedule.items);
        let Some(Svdpp::Host(host)) = &mut self.svdpp else { return Ok(0) };
        let HostSvdpp { state, prior, share, .. } = &mut **host;
        // The user blocks on the device, by their slot.
        let loaded = |slot: usize| match self.swapped {
            None => Some(slot),
            Some((ub, _)) => (slot == 0).then_some(ub),
        };
        for (slot, block) in self.user_blocks.iter().enumerate() {
            let Some(b) = loaded(slot) else { continue };
            let values = block.read_share(&self.gpu, &self.shape, k)?;
            for (r, &id) in users.members(b).iter().enumerate() {
                share.row_mut(id as usize).as_slice_mut().expect("row-major").copy_from_slice(&values[r * k..][..k]);
            }
        }
        let by_position = |axis: &crate::grid::Axis, rows: &[f32]| if axis.is_identity() { rows.to_vec() } else { axis.gather(rows) };
        let by_id = |axis: &crate::grid::Axis, rows: &[f32]| if axis.is_identity() { rows.to_vec() } else { axis.scatter(rows) };
        let mut p = by_position(users, model.user_factors.as_slice().expect("row-major"));
        let q = by_position(items, model.item_factors.as_slice().expect("row-major"));
        state.priors_and_shares().1.copy_from_slice(&by_position(users, share.as_slice().expect("row-major")));
        let step = Step {
            lr: u.learning_rate,
            reg: u.reg,
            reg_bias: u.reg_bias,
            mean: u.mean,
            biases: u.use_biases != 0,
            loss: self.shape.loss,
            unit: crate::objective::Unit { unit: u.unit, inverse: u.error_scale },
            label_middle: None,
            l1: u.l1,
            nonneg: self.shape.nonneg,
            // The SVD++ term's passes draw nothing.
            sample_seed: 0,
            // Nor do they gather shares.
            share_weight: 0.0,
        };
        state.run_passes(schedule, &mut p, &q, &step)?;
        let bias = by_position(users, &model.user_bias);
        let zeros = vec![0.0f32; users.max_rows() * k];
        for (slot, block) in self.user_blocks.iter().enumerate() {
            let Some(b) = loaded(slot) else { continue };
            let (start, len) = (users.start(b), users.members(b).len());
            block.write(&self.gpu, &self.shape, k, &p[start * k..][..len * k], &bias[start..][..len]);
            block.write_prior(&self.gpu, &self.shape, k, &state.priors()[start * k..][..len * k]);
            block.write_share(&self.gpu, &self.shape, k, &zeros[..len * k]);
        }
        let m = model.user_bias.len();
        self.template.user_factors = Array2::from_shape_vec((m, k), by_id(users, &p)).expect("users x k");
        *prior = Array2::from_shape_vec((m, k), by_id(users, state.priors())).expect("users x k");
        share.fill(0.0);
        let (m, n, row) = (m as u64, model.item_bias.len() as u64, self.shape.row_bytes() + 4);
        Ok((m + n) * row + m * super::buffers::share_row_bytes(&self.shape) + 2 * m * row)
    }
}

/// The device's SVD++-term state and the passes' bindings.
pub(super) struct DeviceSvdpp {
    /// Each pass with its bind group and workgroup count, in order.
    passes: Vec<(wgpu::BindGroup, u32)>,
}

/// Where each of `rows` groups starts, and the `other` of each member in group order, over the
/// ratings of every block.
fn grouped(blocks: &[&[Rating]], rows: usize, key: impl Fn(&Rating) -> usize, other: impl Fn(&Rating) -> u32) -> (Vec<u32>, Vec<u32>) {
    let ratings = || blocks.iter().flat_map(|b| b.iter());
    let mut start = vec![0u32; rows + 1];
    for r in ratings() {
        start[key(r) + 1] += 1;
    }
    for i in 0..rows {
        start[i + 1] += start[i];
    }
    let mut next = start.clone();
    let mut members = vec![0u32; start[rows] as usize];
    for r in ratings() {
        let slot = &mut next[key(r)];
        members[*slot as usize] = other(r);
        *slot += 1;
    }
    (start, members)
}

/// Where each run of at most [`RUN_USERS`] of an item's users starts in `item_users` (with
/// the end after the last), and where each item's runs start in that list (with the end).
fn runs(item_start: &[u32]) -> (Vec<u32>, Vec<u32>) {
    let (mut run_start, mut item_runs) = (Vec::new(), Vec::with_capacity(item_start.len()));
    for w in item_start.windows(2) {
        item_runs.push(run_start.len() as u32);
        run_start.extend((w[0]..w[1]).step_by(RUN_USERS as usize));
    }
    item_runs.push(run_start.len() as u32);
    run_start.push(*item_start.last().unwrap_or(&0));
    (run_start, item_runs)
}

/// Runs at most, for the memory plan.
fn most_runs(ratings: usize, items: usize) -> u64 {
    (ratings as u64).div_ceil(RUN_USERS as u64) + items as u64
}

/// What the buffers of [`DeviceSvdpp::new`] take on the device.
pub(super) fn device_bytes(shape: &KernelShape, ratings: usize, users: usize, items: usize) -> u64 {
    let row32 = shape.k4() as u64 * 16;
    8 * ratings as u64 + 4 * (users + 1) as u64 + items as u64 * (row32 + 12) + most_runs(ratings, items) * (row32 + 4) + 16
}

/// The largest single buffer of [`DeviceSvdpp::new`] (each must fit one binding).
pub(super) fn largest_buffer(shape: &KernelShape, ratings: usize, items: usize) -> u64 {
    let row32 = shape.k4() as u64 * 16;
    (4 * ratings as u64).max(items as u64 * row32).max(most_runs(ratings, items) * row32)
}

/// The passes' lists by row place in each side's buffer: each user's items and each item's
/// users (as CSR starts and members), and each item's reach.
struct Lists {
    user_start: Vec<u32>,
    user_items: Vec<u32>,
    item_start: Vec<u32>,
    item_users: Vec<u32>,
    item_reach: Vec<f32>,
}

impl Lists {
    fn of(schedule: &Schedule, places: &(Vec<u32>, Vec<u32>), (users, items): (usize, usize), reach: &Reach) -> Lists {
        let (user_row, item_row) = (|r: &Rating| places.0[r.user as usize], |r: &Rating| places.1[r.item as usize]);
        let blocks: Vec<&[Rating]> = (0..schedule.len()).map(|b| schedule.block(b)).collect();
        let (user_start, user_items) = grouped(&blocks, users, |r| user_row(r) as usize, item_row);
        let (item_start, item_users) = grouped(&blocks, items, |r| item_row(r) as usize, user_row);
        let mut item_reach = vec![0.0f32; items];
        for (p, &reach) in reach.item_reach.iter().enumerate() {
            item_reach[places.1[p] as usize] = reach;
        }
        Lists { user_start, user_items, item_start, item_users, item_reach }
    }
}

impl DeviceSvdpp {
    /// Uploads the state for `schedule`'s ratings with y = 0 and binds the passes to the
    /// resident rows, each side in one buffer: `rows` are the user factors, item factors, item
    /// regularisation weights, user priors and user shares; `places` each user's and item's row
    /// there by position, and `(users, items)` the buffers' rows (blocks' padding included).
    #[allow(clippy::too_many_arguments)]
    pub fn new(gpu: &Gpu, shape: &KernelShape, pipelines: &Pipelines, schedule: &Schedule, places: &(Vec<u32>, Vec<u32>), (users, items): (usize, usize), reach: &Reach, rows: [&wgpu::Buffer; 5], params: &wgpu::Buffer) -> DeviceSvdpp {
        let [user_factors, item_factors, item_reg_weight, prior, share] = rows;
        let k4 = shape.k4() as u64;
        let Lists { user_start, user_items, item_start, item_users, item_reach } = Lists::of(schedule, places, (users, items), reach);
        let usage = wgpu::BufferUsages::STORAGE;
        let init = |label: &str, contents: &[u8]| gpu.device.create_buffer_init(&wgpu::util::BufferInitDescriptor { label: Some(label), contents, usage });
        // Created zeroed, as wgpu clears new buffers.
        let zeroed = |label: &str, size: u64| gpu.device.create_buffer(&wgpu::BufferDescriptor { label: Some(label), size: size.max(4), usage, mapped_at_creation: false });
        let user_start = init("user starts", bytemuck::cast_slice(&user_start));
        let user_items = init("user items", bytemuck::cast_slice(&user_items));
        let (run_start, item_runs) = runs(&item_start);
        let item_start = init("item starts", bytemuck::cast_slice(&item_start));
        let item_users = init("item users", bytemuck::cast_slice(&item_users));
        let item_reach = init("item reach", bytemuck::cast_slice(&item_reach));
        let run_count = run_start.len() as u64 - 1;
        let run_sums = zeroed("run sums", 16 * k4 * run_count);
        let run_start = init("run starts", bytemuck::cast_slice(&run_start));
        let item_runs = init("item runs", bytemuck::cast_slice(&item_runs));
        let mean_norm = zeroed("mean norm", 4);
        let item_vectors = zeroed("SVD++ item vectors", 16 * k4 * items as u64);
        // The buffer at each of the shader's binding numbers.
        let buffer = |n: u32| match n {
            1 => user_factors,
            2 => item_factors,
            5 => params,
            8 => item_reg_weight,
            9 => prior,
            10 => share,
            11 => &user_start,
            12 => &user_items,
            13 => &item_start,
            14 => &item_users,
            15 => &item_reach,
            16 => &mean_norm,
            17 => &item_vectors,
            18 => &run_start,
            19 => &item_runs,
            20 => &run_sums,
            _ => unreachable!("shaders/svdpp.wgsl binds no buffer {n} in its passes"),
        };
        // Each pass's bindings, and the threads it runs (the mean: one workgroup).
        let uses: [(&[u32], u64); 4] = [
            (&[2, 5, 13, 16], PASS_WORKGROUP),
            (&[10, 11, 14, 18, 20], run_count * k4),
            (&[5, 8, 15, 16, 17, 19, 20], items as u64 * k4),
            (&[1, 9, 10, 11, 12, 17], users as u64 * k4),
        ];
        let pass = |((entry, pipeline), (numbers, threads)): (&(&str, wgpu::ComputePipeline), (&[u32], u64))| {
            let entries: Vec<wgpu::BindGroupEntry> = numbers.iter().map(|&n| wgpu::BindGroupEntry { binding: n, resource: buffer(n).as_entire_binding() }).collect();
            let bind_group = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor { label: Some(entry), layout: &pipeline.get_bind_group_layout(0), entries: &entries });
            (bind_group, threads.div_ceil(PASS_WORKGROUP).clamp(1, gpu.limits.max_compute_workgroups_per_dimension as u64) as u32)
        };
        DeviceSvdpp { passes: pipelines.svdpp.iter().zip(uses).map(pass).collect() }
    }

    /// Records the passes in `pass`.
    pub fn encode(&self, pipelines: &Pipelines, pass: &mut wgpu::ComputePass) {
        for ((_, pipeline), (bind_group, workgroups)) in pipelines.svdpp.iter().zip(&self.passes) {
            pass.set_pipeline(pipeline);
            pass.set_bind_group(0, bind_group, &[]);
            pass.dispatch_workgroups(*workgroups, 1, 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_cut_each_items_users_into_short_pieces_in_order() {
        // Items of 0, 1, RUN_USERS, RUN_USERS + 1 and 3·RUN_USERS users.
        let counts = [0, 1, RUN_USERS, RUN_USERS + 1, 3 * RUN_USERS];
        let mut item_start = vec![0u32];
        for c in counts {
            item_start.push(item_start.last().unwrap() + c);
        }
        let (run_start, item_runs) = runs(&item_start);
        assert_eq!(item_runs, vec![0, 0, 1, 2, 4, 7]);
        assert_eq!(*run_start.last().unwrap(), *item_start.last().unwrap());
        for (j, w) in item_runs.windows(2).enumerate() {
            // The item's runs tile its users exactly, none longer than RUN_USERS.
            let pieces: Vec<(u32, u32)> = (w[0]..w[1]).map(|r| (run_start[r as usize], run_start[r as usize + 1])).collect();
            assert!(pieces.iter().all(|(a, b)| a < b && b - a <= RUN_USERS), "item {j}: {pieces:?}");
            if let (Some(first), Some(last)) = (pieces.first(), pieces.last()) {
                assert_eq!((first.0, last.1), (item_start[j], item_start[j + 1]), "item {j}");
            }
        }
        assert!((run_start.len() as u64 - 1) <= most_runs(*item_start.last().unwrap() as usize, counts.len()));
    }
}
