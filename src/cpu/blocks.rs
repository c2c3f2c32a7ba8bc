//! The parallel CPU epoch: threads train free blocks of the schedule on shared factors. All the
//! unsafety of the CPU trainer lives in this module.
//!
//! Within a block the ratings are sorted by user, each user's items in random order (fixed
//! when the schedule is built): a user's row is loaded once per block and the block's item
//! rows stay in cache.

use crate::data::Rating;
use crate::error::{Error, Result};
use crate::metrics::ErrorSums;
use crate::model::Model;
use crate::schedule::Schedule;
use crate::svdpp::SvdppState;
use crate::update::{sgd_update, RowWeights, Step};
use std::sync::Mutex;

/// Raw views of the model's arrays that threads share during one epoch.
struct SharedFactors {
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
unsafe impl Sync for SharedFactors {}
unsafe impl Send for SharedFactors {}

/// One epoch over every block of `schedule` on `threads` threads of the current pool. Returns
/// the errors each update met, summed block by block in block order.
///
/// Why this is sound: [`Schedule::run_parallel`] never runs two blocks at once that share a
/// user block or an item block, and a row belongs to exactly one block of its side, so no two
/// threads ever touch the same row, bias or SVD++-term share (the priors are only read):
/// the shared pointers are only ever used for disjoint parts of the arrays. Every index is in
/// bounds (asserted below).
pub(super) fn epoch(model: &mut Model, weights: &RowWeights, svdpp: Option<&mut SvdppState>, schedule: &Schedule, epoch: usize, threads: usize, step: &Step) -> Result<ErrorSums> {
    let k = model.rank();
    let (m, n) = (model.user_bias.len(), model.item_bias.len());
    let sums = Mutex::new(vec![ErrorSums::default(); schedule.len()]);
    let failure: Mutex<Option<Error>> = Mutex::new(None);
    let (prior, share) = match svdpp {
        Some(f) => {
            let (prior, share) = f.priors_and_shares();
            assert!(prior.len() == m * k && share.len() == m * k, "a prior and a share for every user");
            (prior.as_ptr(), share.as_mut_ptr())
        }
        None => (std::ptr::null(), std::ptr::null_mut()),
    };
    let shared = SharedFactors {
        prior,
        share,
        p: model.user_factors.as_mut_ptr(),
        q: model.item_factors.as_mut_ptr(),
        bu: model.user_bias.as_mut_ptr(),
        bi: model.item_bias.as_mut_ptr(),
        k,
    };
    #[cfg(target_arch = "x86_64")]
    let wide = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
    schedule.run_parallel(epoch, threads, |b| {
        // A block on disk is read by the thread that trains it, into memory of its own.
        let mut buf = Vec::new();
        let ratings = match schedule.block_into(b, &mut buf) {
            Ok(ratings) => ratings,
            Err(e) => {
                failure.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(e);
                return;
            }
        };
        assert!(ratings.iter().all(|r| (r.user as usize) < m && (r.item as usize) < n), "rating index out of range");
        assert!(weights.users.len() == m && weights.items.len() == n, "a regularisation weight for every row");
        #[cfg(target_arch = "x86_64")]
        let block_sums = if wide {
            // SAFETY: the CPU has AVX2 and FMA (detected above); the rest as for `run_block`.
            unsafe { run_block_avx2(ratings, &shared, weights, step) }
        } else {
            // SAFETY: as for `run_block`.
            unsafe { run_block(ratings, &shared, weights, step) }
        };
        #[cfg(not(target_arch = "x86_64"))]
        // SAFETY: as for `run_block`.
        let block_sums = unsafe { run_block(ratings, &shared, weights, step) };
        sums.lock().unwrap_or_else(|e| e.into_inner())[b] = block_sums;
    });
    if let Some(e) = failure.into_inner().unwrap_or_else(|e| e.into_inner()) {
        return Err(e);
    }
    Ok(sums.into_inner().unwrap_or_else(|e| e.into_inner()).into_iter().fold(ErrorSums::default(), ErrorSums::merge))
}

/// How many ratings ahead the item row is prefetched (chosen on a 2-core EPYC at ranks 32 and
/// 128: 8 was never slower than 0 or 4).
const PREFETCH_AHEAD: usize = 8;

/// Within a block the user rows repeat but the item rows jump about: asks for the item row of
/// the rating `PREFETCH_AHEAD` places after `j`, so its cache misses overlap this update. A
/// no-op where stable Rust has no prefetch (not x86_64).
///
/// SAFETY: as for [`run_block`].
#[inline(always)]
unsafe fn prefetch_item_row(ratings: &[Rating], j: usize, s: &SharedFactors) {
    #[cfg(target_arch = "x86_64")]
    if let Some(next) = ratings.get(j + PREFETCH_AHEAD) {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let row = s.q.add(next.item as usize * s.k) as *const i8;
        for line in (0..s.k * 4).step_by(64) {
            _mm_prefetch(row.add(line), _MM_HINT_T0);
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (ratings, j, s, PREFETCH_AHEAD);
}

/// Updates for one block's ratings.
///
/// SAFETY: every rating's indices are below the model's rows (asserted by `epoch`), and no
/// other thread touches this block's rows meanwhile (argued on `epoch`).
#[inline(always)]
unsafe fn run_block(ratings: &[Rating], s: &SharedFactors, weights: &RowWeights, step: &Step) -> ErrorSums {
    let mut sums = ErrorSums::default();
    for (j, r) in ratings.iter().enumerate() {
        prefetch_item_row(ratings, j, s);
        let (u, i) = (r.user as usize, r.item as usize);
        let p = std::slice::from_raw_parts_mut(s.p.add(u * s.k), s.k);
        let q = std::slice::from_raw_parts_mut(s.q.add(i * s.k), s.k);
        let (prior, share): (&[f32], &mut [f32]) = if s.share.is_null() {
            (&[], &mut [])
        } else {
            (std::slice::from_raw_parts(s.prior.add(u * s.k), s.k), std::slice::from_raw_parts_mut(s.share.add(u * s.k), s.k))
        };
        let e = sgd_update(p, q, &mut *s.bu.add(u), &mut *s.bi.add(i), (weights.users[u], weights.items[i]), prior, share, r.value, step);
        sums.add(e as f64);
    }
    sums
}

/// `run_block` compiled for AVX2 and FMA (about 18% faster at rank 128 on the development
/// machine; the baseline x86-64 build has SSE2 only). Only the parallel trainer uses it: the
/// sequential trainer keeps the same bits on every machine.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn run_block_avx2(ratings: &[Rating], s: &SharedFactors, weights: &RowWeights, step: &Step) -> ErrorSums {
    run_block(ratings, s, weights, step)
}
