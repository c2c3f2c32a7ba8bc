//! What comes back after each epoch, without a wait between epochs: a small ring of slots,
//! each a mapped-read buffer for the epoch's error sums and kernel timestamps. Epoch e + 1 is
//! submitted before epoch e's slot is read, so the device always has the next epoch queued.

use super::Gpu;
use crate::error::{Error, Result};
use std::collections::VecDeque;

/// Epochs that may be in flight at once.
pub(super) const SLOTS: usize = 2;

/// Bytes of a slot: the training pass's four loss sums, the test set's, as f32, then two u64
/// timestamps.
const SLOT_BYTES: u64 = 48;
/// Bytes of one set of loss sums; the test set's lie after the training pass's.
pub(super) const SUMS_BYTES: u64 = 16;
const TIMESTAMPS_AT: u64 = 32;

struct Slot {
    readback: wgpu::Buffer,
    /// Timestamps at the start and end of the update pass, where the device has them.
    timer: Option<(wgpu::QuerySet, wgpu::Buffer)>,
    submission: Option<wgpu::SubmissionIndex>,
    scored_test: bool,
}

pub(super) struct EpochSlots {
    slots: Vec<Slot>,
    /// Slots submitted and not yet read, oldest first.
    pending: VecDeque<usize>,
    next: usize,
    nanoseconds_per_tick: f64,
}

/// One finished epoch's read-back.
pub(super) struct Finished {
    /// The training pass's loss sums, then the test set's (see [`crate::objective::LossSums`]).
    pub sums: [f32; 8],
    pub scored_test: bool,
    pub kernel_seconds: Option<f64>,
}

impl EpochSlots {
    pub(super) fn new(gpu: &Gpu) -> Result<EpochSlots> {
        let slots = gpu.scoped("creating the epoch read-back buffers", || {
            (0..SLOTS)
                .map(|_| Slot {
                    readback: gpu.device.create_buffer(&wgpu::BufferDescriptor {
                        label: Some("epoch read-back"),
                        size: SLOT_BYTES,
                        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                        mapped_at_creation: false,
                    }),
                    timer: gpu.timestamps.then(|| {
                        (
                            gpu.device.create_query_set(&wgpu::QuerySetDescriptor { label: Some("epoch timestamps"), ty: wgpu::QueryType::Timestamp, count: 2 }),
                            gpu.device.create_buffer(&wgpu::BufferDescriptor {
                                label: Some("resolved timestamps"),
                                size: 16,
                                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                                mapped_at_creation: false,
                            }),
                        )
                    }),
                    submission: None,
                    scored_test: false,
                })
                .collect()
        })?;
        Ok(EpochSlots { slots, pending: VecDeque::new(), next: 0, nanoseconds_per_tick: gpu.queue.get_timestamp_period() as f64 })
    }

    /// The slot for the next epoch; every slot in use is an error of the caller's.
    pub(super) fn take(&mut self) -> Result<usize> {
        if self.pending.len() == SLOTS {
            return Err(Error::Gpu(format!("more than {SLOTS} epochs submitted before one was finished")));
        }
        let slot = self.next;
        self.next = (self.next + 1) % SLOTS;
        Ok(slot)
    }

    /// The timestamps a pass of the epoch writes: the epoch's start if it is the `first` pass of
    /// the update, its end if the `last` (one pass when resident, one per window when streamed).
    pub(super) fn timestamp_writes(&self, slot: usize, first: bool, last: bool) -> Option<wgpu::ComputePassTimestampWrites<'_>> {
        self.slots[slot].timer.as_ref().filter(|_| first || last).map(|(queries, _)| wgpu::ComputePassTimestampWrites {
            query_set: queries,
            beginning_of_pass_write_index: first.then_some(0),
            end_of_pass_write_index: last.then_some(1),
        })
    }

    /// Copies the four reduced sums at the start of `partials` into the slot at `offset`.
    pub(super) fn encode_copy(&self, encoder: &mut wgpu::CommandEncoder, slot: usize, partials: &wgpu::Buffer, offset: u64) {
        encoder.copy_buffer_to_buffer(partials, 0, &self.slots[slot].readback, offset, SUMS_BYTES);
    }

    pub(super) fn encode_timestamps(&self, encoder: &mut wgpu::CommandEncoder, slot: usize) {
        if let Some((queries, resolved)) = &self.slots[slot].timer {
            encoder.resolve_query_set(queries, 0..2, resolved, 0);
            encoder.copy_buffer_to_buffer(resolved, 0, &self.slots[slot].readback, TIMESTAMPS_AT, 16);
        }
    }

    pub(super) fn submitted(&mut self, slot: usize, submission: wgpu::SubmissionIndex, scored_test: bool) {
        self.slots[slot].submission = Some(submission);
        self.slots[slot].scored_test = scored_test;
        self.pending.push_back(slot);
    }

    /// Waits for the oldest pending epoch alone and reads its slot.
    pub(super) fn finish(&mut self, gpu: &Gpu) -> Result<Finished> {
        let slot = self.pending.pop_front().ok_or_else(|| Error::Gpu("no epoch was submitted".into()))?;
        let s = &mut self.slots[slot];
        let bytes = gpu.read_mapped(&s.readback, SLOT_BYTES, s.submission.take())?;
        let sums: [f32; 8] = bytemuck::pod_read_unaligned(&bytes[..32]);
        let ticks: [u64; 2] = bytemuck::pod_read_unaligned(&bytes[TIMESTAMPS_AT as usize..]);
        let kernel_seconds = s.timer.is_some().then(|| ticks[1].saturating_sub(ticks[0]) as f64 * self.nanoseconds_per_tick * 1e-9);
        Ok(Finished { sums, scored_test: s.scored_test, kernel_seconds })
    }
}
