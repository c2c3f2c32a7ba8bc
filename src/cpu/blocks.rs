//! A block's rows of the CPU trainer's model, and the parallel CPU epoch: threads train free
//! blocks of the schedule on shared factors. All the unsafety of the CPU trainer lives in this
//! module; the updates themselves are [`train_block`]'s, safe code over the block's rows.

use crate::error::Result;
use crate::model::Model;
use crate::objective::LossSums;
use crate::schedule::Schedule;
use crate::svdpp::SvdppState;
use crate::update::{train_block, BlockRows, RowWeights, Step};
use std::sync::Mutex;

/// Block `b`'s user rows and item rows of `model` (rows by position), with their weights and
/// the SVD++ term's rows where it is on: what [`train_block`] trains.
pub(super) fn rows_of<'a>(model: &'a mut Model, weights: &'a RowWeights, svdpp: Option<&'a mut SvdppState>, schedule: &Schedule, b: usize) -> (BlockRows<'a>, BlockRows<'a>) {
    let k = model.rank();
    let (users, items) = schedule.rows(b);
    let (prior, share): (&[f32], &mut [f32]) = match svdpp {
        Some(state) => {
            let (prior, share) = state.priors_and_shares();
            (&prior[users.start * k..users.end * k], &mut share[users.start * k..users.end * k])
        }
        None => (&[], &mut []),
    };
    (
        BlockRows {
            first: users.start as u32,
            factors: &mut model.user_factors.as_slice_mut().expect("row-major")[users.start * k..users.end * k],
            bias: &mut model.user_bias[users.clone()],
            weights: &weights.users[users],
            prior,
            share,
        },
        BlockRows {
            first: items.start as u32,
            factors: &mut model.item_factors.as_slice_mut().expect("row-major")[items.start * k..items.end * k],
            bias: &mut model.item_bias[items.clone()],
            weights: &weights.items[items],
            prior: &[],
            share: &mut [],
        },
    )
}

/// Raw views of the model's arrays that threads share during one epoch.
struct SharedRows {
    p: *mut f32,
    q: *mut f32,
    bu: *mut f32,
    bi: *mut f32,
    /// With the SVD++ term, the users' priors and shares (null without).
    prior: *const f32,
    share: *mut f32,
    k: usize,
}

// SAFETY: see `epoch`; the pointers stay valid for the whole parallel section because
// `epoch` holds `&mut Model` until every thread has joined.
unsafe impl Sync for SharedRows {}
unsafe impl Send for SharedRows {}

impl SharedRows {
    /// Block `b`'s rows, as [`rows_of`] gives them.
    ///
    /// SAFETY: no other thread may use block `b`'s user or item rows while the views live
    /// (argued on [`epoch`]); the ranges lie within the arrays (the schedule's blocks tile the
    /// positions, and the arrays hold a row for every position).
    unsafe fn block<'a>(&self, schedule: &Schedule, weights: &'a RowWeights, b: usize) -> (BlockRows<'a>, BlockRows<'a>) {
        let k = self.k;
        let (users, items) = schedule.rows(b);
        let (prior, share): (&[f32], &mut [f32]) = if self.share.is_null() {
            (&[], &mut [])
        } else {
            (std::slice::from_raw_parts(self.prior.add(users.start * k), users.len() * k), std::slice::from_raw_parts_mut(self.share.add(users.start * k), users.len() * k))
        };
        (
            BlockRows {
                first: users.start as u32,
                factors: std::slice::from_raw_parts_mut(self.p.add(users.start * k), users.len() * k),
                bias: std::slice::from_raw_parts_mut(self.bu.add(users.start), users.len()),
                weights: &weights.users[users],
                prior,
                share,
            },
            BlockRows {
                first: items.start as u32,
                factors: std::slice::from_raw_parts_mut(self.q.add(items.start * k), items.len() * k),
                bias: std::slice::from_raw_parts_mut(self.bi.add(items.start), items.len()),
                weights: &weights.items[items],
                prior: &[],
                share: &mut [],
            },
        )
    }
}

/// One epoch over every block of `schedule` on `threads` threads of the current pool. Returns
/// the loss sums of each block's updates, added block by block in block order.
///
/// Why this is sound: [`Schedule::run_parallel`] never runs two blocks at once that share a
/// user block or an item block, and a row belongs to exactly one block of its side, so no two
/// threads ever hold views of the same row, bias or SVD++ share (the priors are only read):
/// each thread's views are disjoint parts of the arrays. The arrays hold a row for every
/// position (asserted below), and the views are cut from the schedule's ranges.
pub(super) fn epoch(model: &mut Model, weights: &RowWeights, svdpp: Option<&mut SvdppState>, schedule: &Schedule, epoch: usize, threads: usize, step: &Step) -> Result<LossSums> {
    let k = model.rank();
    let (m, n) = (model.user_bias.len(), model.item_bias.len());
    assert!(m == schedule.users.ids() && n == schedule.items.ids() && model.user_factors.len() == m * k && model.item_factors.len() == n * k, "a row for every position");
    assert!(weights.users.len() == m && weights.items.len() == n, "a regularisation weight for every row");
    let sums = Mutex::new(vec![LossSums::default(); schedule.len()]);
    let (prior, share) = match svdpp {
        Some(state) => {
            let (prior, share) = state.priors_and_shares();
            assert!(prior.len() == m * k && share.len() == m * k, "a prior and a share for every user");
            (prior.as_ptr(), share.as_mut_ptr())
        }
        None => (std::ptr::null(), std::ptr::null_mut()),
    };
    let shared = SharedRows {
        prior,
        share,
        p: model.user_factors.as_mut_ptr(),
        q: model.item_factors.as_mut_ptr(),
        bu: model.user_bias.as_mut_ptr(),
        bi: model.item_bias.as_mut_ptr(),
        k,
    };
    schedule.run_parallel(epoch, threads, |b| {
        // A block on disk is read by the thread that trains it, into memory of its own.
        let mut buf = Vec::new();
        let ratings = schedule.checked_block(b, &mut buf)?;
        // SAFETY: as argued above, this thread alone holds block b's rows now.
        let (users, items) = unsafe { shared.block(schedule, weights, b) };
        let block_sums = train_block(ratings, users, items, k, step).map_err(|e| schedule.in_block(b, e))?;
        sums.lock().unwrap_or_else(|e| e.into_inner())[b] = block_sums;
        Ok(())
    })?;
    Ok(sums.into_inner().unwrap_or_else(|e| e.into_inner()).into_iter().fold(LossSums::default(), LossSums::merge))
}
