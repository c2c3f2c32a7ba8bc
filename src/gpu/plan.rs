//! What the device holds: the grid the GPU trains by, and what of the problem fits a
//! `--gpu-memory` budget.

use super::{EVAL_WORKGROUPS, UPDATE_WORKGROUPS};
use crate::cache::DiskBlocks;
use crate::error::{Error, Result};
use crate::resources::human_bytes;
use crate::grid::{GridSize, Order};
use crate::schedule::Schedule;
use std::sync::Arc;

/// The grid the GPU trains by: the one asked for (one block by default), each side cut finer
/// where its rows would not fit one binding (or `user_block_rows`).
pub(super) fn gpu_grid(requested: Option<GridSize>, users: usize, items: usize, row_bytes: u64, max_binding: u64, user_block_rows: Option<usize>) -> Result<GridSize> {
    let rows_fit = (max_binding / row_bytes) as usize;
    if rows_fit == 0 {
        return Err(Error::Gpu(format!(
            "one factor row takes {row_bytes} bytes but the device binds at most {max_binding} bytes per buffer; lower --rank"
        )));
    }
    let user_rows = user_block_rows.unwrap_or(usize::MAX).min(rows_fit);
    let base = requested.unwrap_or(GridSize { user_blocks: 1, item_blocks: 1 });
    Ok(GridSize { user_blocks: base.user_blocks.max(users.div_ceil(user_rows)), item_blocks: base.item_blocks.max(items.div_ceil(rows_fit)) })
}

/// The schedule of a block cache on disk, which the GPU trains as it was cut: refused when it
/// was written in user order (for the CPU trainers) or another seed, or cut coarser than `needed`
/// (the grid whose blocks' rows fit the device on `adapter`).
pub(super) fn disk_schedule(disk: Arc<DiskBlocks>, needed: GridSize, seed: u64, adapter: &str) -> Result<Schedule> {
    if disk.order != Order::Shuffled || disk.seed != seed {
        return Err(Error::InvalidParameter(format!(
            "the block cache {} was written for {} with seed {}; the GPU needs it in random order within blocks with seed {seed}",
            disk.path.display(),
            disk.order.trainers(),
            disk.seed,
        )));
    }
    if disk.grid.user_blocks < needed.user_blocks || disk.grid.item_blocks < needed.item_blocks {
        let enough = GridSize { user_blocks: disk.grid.user_blocks.max(needed.user_blocks), item_blocks: disk.grid.item_blocks.max(needed.item_blocks) };
        return Err(Error::InvalidParameter(format!(
            "the block cache {} cuts the ratings into {} blocks; on {adapter} the factor rows of a block need at least {needed} (--blocks {enough} rebuilds the cache so)",
            disk.path.display(),
            disk.grid,
        )));
    }
    Ok(Schedule::from_disk(disk))
}

/// Device bytes besides factors and ratings, at most: the error partials and the uniform.
pub(super) const OVERHEAD_BYTES: u64 = 8 * (UPDATE_WORKGROUPS as u64 + EVAL_WORKGROUPS as u64) + 256;

/// What fits a `--gpu-memory` budget: everything; the factors but not the ratings (the ratings
/// stream); or not even the factors (the ratings stream and one block of each side's rows is on
/// the device at a time, the rest in host memory).
pub(super) struct DevicePlan {
    pub budget: Option<u64>,
    pub streamed: bool,
    /// With factors swapped: the most rows a block may have on each side.
    pub swapped_rows: Option<usize>,
}

/// Device bytes of a factor row beside its factors: its bias and its regularisation weight.
pub(super) const ROW_EXTRA_BYTES: u64 = 8;

impl DevicePlan {
    /// `prior_bytes`: what a user row takes beside it for the SVD++ term's prior (0 without).
    pub(super) fn new(budget: Option<u64>, row_bytes: u64, prior_bytes: u64, users: usize, items: usize, rating_bytes: u64, rank: usize) -> Result<DevicePlan> {
        let Some(budget) = budget else { return Ok(DevicePlan { budget, streamed: false, swapped_rows: None }) };
        let factors = (row_bytes + ROW_EXTRA_BYTES) * (users + items) as u64 + prior_bytes * users as u64;
        // A block of rows swapped in counts a prior for each row of either side, to be safe.
        let row_bytes = row_bytes + prior_bytes;
        let ring = (RING_SLOTS * MIN_STREAMED_WINDOW * 12) as u64;
        if factors + OVERHEAD_BYTES + rating_bytes <= budget {
            return Ok(DevicePlan { budget: Some(budget), streamed: false, swapped_rows: None });
        }
        if factors + OVERHEAD_BYTES + ring <= budget {
            return Ok(DevicePlan { budget: Some(budget), streamed: true, swapped_rows: None });
        }
        // A quarter of the budget for each side's block of rows, the rest for the ring.
        let rows = (budget.saturating_sub(OVERHEAD_BYTES) / 4 / (row_bytes + ROW_EXTRA_BYTES)) as usize;
        let smallest = OVERHEAD_BYTES + ring + 2 * (row_bytes + ROW_EXTRA_BYTES) * 4;
        if rows == 0 || budget < smallest {
            return Err(Error::InvalidParameter(format!(
                "--gpu-memory {}: too small for rank {rank} ({} a factor row) beside the {} that streaming the ratings needs; the smallest budget that works is {} (with blocks of one row; {} keeps all {} factor rows on the device)",
                human_bytes(budget),
                human_bytes(row_bytes + ROW_EXTRA_BYTES),
                human_bytes(ring + OVERHEAD_BYTES),
                human_bytes(smallest),
                human_bytes(factors + OVERHEAD_BYTES + ring),
                users + items
            )));
        }
        Ok(DevicePlan { budget: Some(budget), streamed: true, swapped_rows: Some(rows) })
    }

    /// `grid` cut finer where swapped blocks of rows must fit their share of the budget.
    pub(super) fn grid(&self, grid: GridSize, users: usize, items: usize) -> GridSize {
        match self.swapped_rows {
            None => grid,
            Some(rows) => GridSize { user_blocks: grid.user_blocks.max(users.div_ceil(rows)), item_blocks: grid.item_blocks.max(items.div_ceil(rows)) },
        }
    }
}

/// Upload buffers in the ring: one filling while one is read, and one spare so the host can
/// run a window ahead.
pub(super) const RING_SLOTS: usize = 3;
/// Bytes of a mapped upload slot at most, so that the ring fits the 256 MiB of video memory a
/// driver without resizable BAR maps for the host (larger slots would land in host memory,
/// which the kernels then read across the bus).
pub(super) const MAPPED_WINDOW_BYTES: usize = 64 << 20;
/// Ratings per streamed window at the least, below which dispatches would cost more than
/// their work.
pub(super) const MIN_STREAMED_WINDOW: usize = 4096;


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_keeps_everything_streams_the_ratings_or_swaps_the_factors() {
        // 1,000 rows of 520 bytes (rank 128, f32, with the bias and regularisation weight) and 1 MB of ratings.
        let plan = |budget: Option<u64>| DevicePlan::new(budget, 512, 0, 400, 600, 1_000_000, 128);
        let factors: u64 = 520 * 1000;
        let all = plan(None).unwrap();
        assert!(!all.streamed && all.swapped_rows.is_none());
        let fits = plan(Some(factors + OVERHEAD_BYTES + 1_000_000)).unwrap();
        assert!(!fits.streamed);
        let streams = plan(Some(factors + OVERHEAD_BYTES + 200_000)).unwrap();
        assert!(streams.streamed && streams.swapped_rows.is_none());
        let swaps = plan(Some(factors / 2 + 200_000)).unwrap();
        let rows = swaps.swapped_rows.unwrap();
        assert!(swaps.streamed && rows > 0 && 2 * rows as u64 * 520 < factors / 2 + 200_000, "{rows} rows");
        let e = plan(Some(10_000)).err().unwrap().to_string();
        assert!(e.contains("--gpu-memory") && e.contains("smallest budget that works"), "{e}");
    }
}
