//! An epoch's work on the device: the update dispatches over the schedule's blocks (resident
//! windows in one pass, or streamed windows one submission each), the test scoring, and the
//! reductions of their error sums.

use super::buffers::{Bindings, Ring, Window};
use crate::data::Rating;
use super::kernel::{KernelShape, Pipelines};
use super::{Gpu, GpuSolver, Placement, EVAL_WORKGROUPS};
use crate::error::Result;

impl GpuSolver {
    /// Encodes (and, when streaming, submits window by window) the epoch's updates and its
    /// test scoring into `encoder`, leaving the reductions' copies to the slot in it.
    /// `started`: the SVD++ term's passes on the device went first and wrote the epoch's start
    /// time.
    pub(super) fn encode_epoch(&mut self, placement: &mut Placement, encoder: &mut wgpu::CommandEncoder, slot: usize, sequence: &[usize], score_test: bool, started: bool) -> Result<()> {
        match placement {
            Placement::Resident { train, test } => {
                self.write_pairs(train, sequence)?;
                {
                    let timestamp_writes = self.slots.timestamp_writes(slot, !started, true);
                    let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("sgd epoch"), timestamp_writes });
                    pass.set_pipeline(&self.pipelines.update);
                    for &b in sequence {
                        for w in &train[b] {
                            pass.set_bind_group(0, &w.bind_group, &[]);
                            pass.dispatch_workgroups(self.update_workgroups, 1, 1);
                        }
                    }
                }
                encode_reduction(encoder, &self.pipelines, &self.train_reduction, "training loss");
                self.slots.encode_copy(encoder, slot, &self.train_partials, 0);
                if score_test {
                    encoder.clear_buffer(&self.test_partials, 0, None);
                    {
                        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("score test"), timestamp_writes: None });
                        pass.set_pipeline(&self.pipelines.evaluate);
                        for w in test.iter() {
                            pass.set_bind_group(0, &w.bind_group, &[]);
                            pass.dispatch_workgroups(workgroups_for(&self.gpu, &self.shape, w.count as usize, EVAL_WORKGROUPS), 1, 1);
                        }
                    }
                }
            }
            Placement::Streamed { ring, test } => {
                self.stream_train(ring, encoder, slot, sequence)?;
                encode_reduction(encoder, &self.pipelines, &self.train_reduction, "training loss");
                self.slots.encode_copy(encoder, slot, &self.train_partials, 0);
                if score_test {
                    self.stream_test(ring, test, encoder)?;
                }
            }
        }
        Ok(())
    }

    /// The epoch's updates with the ratings streamed: each window is its own submission, so the
    /// ring's slots come free as the device works through them; the epoch's sums and
    /// timestamps span them all. A block on disk is read whole (once), then goes window by
    /// window.
    fn stream_train(&mut self, ring: &mut Ring, encoder: &mut wgpu::CommandEncoder, slot: usize, sequence: &[usize]) -> Result<()> {
        let windows: usize = sequence.iter().map(|&b| self.schedule.block_len(b).div_ceil(ring.window_ratings)).sum();
        let (mut records, mut window, mut read) = (Vec::new(), Vec::with_capacity(ring.window_ratings), Vec::new());
        let mut n = 0;
        for &b in sequence {
            if self.schedule.block_len(b) == 0 {
                continue;
            }
            let (ub, ib) = self.factor_blocks_for(b)?;
            let block = self.schedule.block_into(b, &mut read)?;
            if self.schedule.on_disk() {
                *self.streamed.back_mut().expect("pushed by submit_epoch") += std::mem::size_of_val(block) as u64;
            }
            // A pairwise loss's records are drawn for the whole block; ratings are made local a
            // window at a time (no copy of a block held in memory).
            let source = match &self.pairwise {
                Some(pairs) => {
                    pairs.records(&self.schedule, b, block, &mut records)?;
                    &records[..]
                }
                None => block,
            };
            for run in source.chunks(ring.window_ratings) {
                let run = match &self.pairwise {
                    Some(_) => run,
                    None => {
                        self.schedule.local_rows(run, &mut window);
                        &window[..]
                    }
                };
                let with = Bindings { pipelines: &self.pipelines, users: &self.user_blocks[ub], items: &self.item_blocks[ib], params: &self.params_buffer, output: &self.train_partials };
                let (ring_slot, window) = ring.upload(&self.gpu, run, &with)?;
                *self.streamed.back_mut().expect("pushed by submit_epoch") += std::mem::size_of_val(run) as u64;
                {
                    let timestamp_writes = self.slots.timestamp_writes(slot, n == 0, n + 1 == windows);
                    let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("sgd window"), timestamp_writes });
                    pass.set_pipeline(&self.pipelines.update);
                    pass.set_bind_group(0, &window.bind_group, &[]);
                    pass.dispatch_workgroups(self.update_workgroups, 1, 1);
                }
                let done = std::mem::replace(encoder, self.gpu.device.create_command_encoder(&Default::default()));
                ring.used(ring_slot, self.gpu.queue.submit([done.finish()]));
                n += 1;
            }
        }
        Ok(())
    }

    /// The test set's scoring with the ratings streamed (`test` by block, rows local), a
    /// submission a window.
    fn stream_test(&mut self, ring: &mut Ring, test: &[Vec<Rating>], encoder: &mut wgpu::CommandEncoder) -> Result<()> {
        encoder.clear_buffer(&self.test_partials, 0, None);
        for (b, block) in test.iter().enumerate().filter(|(_, block)| !block.is_empty()) {
            let (ub, ib) = self.factor_blocks_for(b)?;
            for run in block.chunks(ring.window_ratings) {
                let with = Bindings { pipelines: &self.pipelines, users: &self.user_blocks[ub], items: &self.item_blocks[ib], params: &self.params_buffer, output: &self.test_partials };
                let (ring_slot, window) = ring.upload(&self.gpu, run, &with)?;
                *self.streamed.back_mut().expect("pushed by submit_epoch") += std::mem::size_of_val(run) as u64;
                {
                    let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("score test window"), timestamp_writes: None });
                    pass.set_pipeline(&self.pipelines.evaluate);
                    pass.set_bind_group(0, &window.bind_group, &[]);
                    pass.dispatch_workgroups(workgroups_for(&self.gpu, &self.shape, run.len(), EVAL_WORKGROUPS), 1, 1);
                }
                let done = std::mem::replace(encoder, self.gpu.device.create_command_encoder(&Default::default()));
                ring.used(ring_slot, self.gpu.queue.submit([done.finish()]));
            }
        }
        Ok(())
    }

    /// With a pairwise loss: writes the epoch's pairs into the resident windows of the blocks
    /// of `sequence` (queued before the epoch's work; the epochs before still read theirs).
    fn write_pairs(&self, train: &[Vec<Window>], sequence: &[usize]) -> Result<()> {
        let Some(pairs) = &self.pairwise else { return Ok(()) };
        let mut records = Vec::new();
        for &b in sequence {
            pairs.records(&self.schedule, b, self.schedule.block(b), &mut records)?;
            let mut rest = &records[..];
            for w in &train[b] {
                let (run, after) = rest.split_at(w.count as usize);
                let buffer = w.ratings.as_ref().expect("resident windows keep their ratings");
                self.gpu.queue.write_buffer(buffer, 0, bytemuck::cast_slice(run));
                rest = after;
            }
        }
        Ok(())
    }

    /// The factor blocks (user, item) holding block `b`'s rows. With factors swapped, the rows
    /// on the device are written back to the host model and `b`'s loaded in their place first
    /// (a wait for the device: swapping trades time for memory).
    fn factor_blocks_for(&mut self, b: usize) -> Result<(usize, usize)> {
        let (ub, ib) = self.schedule.coordinates(b);
        let Some((loaded_u, loaded_i)) = self.swapped else { return Ok((ub, ib)) };
        let model = &mut self.template;
        // Out: the old block's rows and biases; in: the new block's with their λs.
        let row_bytes = self.shape.row_bytes();
        let moved = |old: usize, new: usize, axis: &crate::grid::Axis| axis.members(old).len() as u64 * (row_bytes + 4) + axis.members(new).len() as u64 * (row_bytes + 8);
        // With the SVD++ term a user row's share goes out and in, and its prior in.
        let (share_bytes, users) = (if self.svdpp.is_some() { super::buffers::share_row_bytes(&self.shape) } else { 0 }, &self.schedule.users);
        let prior_bytes = if self.svdpp.is_some() { row_bytes } else { 0 };
        let moved_users = |old: usize, new: usize| moved(old, new, users) + users.members(old).len() as u64 * share_bytes + users.members(new).len() as u64 * (share_bytes + prior_bytes);
        let swapped_bytes = if loaded_u != ub { moved_users(loaded_u, ub) } else { 0 } + if loaded_i != ib { moved(loaded_i, ib, &self.schedule.items) } else { 0 };
        if let Some(bytes) = self.streamed.back_mut() {
            *bytes += swapped_bytes;
        }
        if loaded_u != ub {
            let mut host = self.svdpp.as_mut().and_then(|i| i.host_rows());
            self.user_blocks[0].store(&self.gpu, &self.shape, &mut model.user_factors, &mut model.user_bias, host.as_mut().map(|(_, share)| &mut **share))?;
            let svdpp = host.map(|(prior, share)| (&*prior, &*share));
            self.user_blocks[0].load(&self.gpu, &self.shape, &self.schedule.users, ub, &model.user_factors, &model.user_bias, &self.weights.users, svdpp);
        }
        if loaded_i != ib {
            self.item_blocks[0].store(&self.gpu, &self.shape, &mut model.item_factors, &mut model.item_bias, None)?;
            self.item_blocks[0].load(&self.gpu, &self.shape, &self.schedule.items, ib, &model.item_factors, &model.item_bias, &self.weights.items, None);
        }
        self.swapped = Some((ub, ib));
        Ok((0, 0))
    }
}

/// Reduces the per-workgroup error sums in the partials that `window` binds into their first
/// two floats, in a pass of its own.
pub(super) fn encode_reduction(encoder: &mut wgpu::CommandEncoder, pipelines: &Pipelines, window: &Window, label: &str) {
    let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some(label), timestamp_writes: None });
    pass.set_pipeline(&pipelines.finish_evaluate);
    pass.set_bind_group(0, &window.bind_group, &[]);
    pass.dispatch_workgroups(1, 1, 1);
}

/// Workgroups to cover `ratings` with one group each, at most `cap` (grid-stride beyond).
pub(super) fn workgroups_for(gpu: &Gpu, shape: &KernelShape, ratings: usize, cap: u32) -> u32 {
    let needed = ratings.div_ceil(shape.ratings_per_workgroup() as usize).max(1);
    (needed as u64).min(cap as u64).min(gpu.limits.max_compute_workgroups_per_dimension as u64) as u32
}
