//! Lock-free parallel SGD (HOGWILD!, Niu et al. 2011): each thread updates the shared factors
//! without synchronisation. All the unsafety of the CPU trainer lives in this module.

use super::{sgd_update, Step};
use crate::data::Rating;
use crate::model::Model;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

/// Raw views of the model's arrays that threads share during one epoch.
struct SharedFactors {
    p: *mut f32,
    q: *mut f32,
    bu: *mut f32,
    bi: *mut f32,
    k: usize,
}

// SAFETY: see `epoch`; the pointers stay valid for the whole parallel section because
// `epoch` holds `&mut Model` until every thread has joined.
unsafe impl Sync for SharedFactors {}
unsafe impl Send for SharedFactors {}

/// One Hogwild epoch: every thread reshuffles its own run of ratings (the runs were shuffled
/// globally once, at start-up), then walks it, updating rows in place.
///
/// Why this is acceptable: two threads touch the same row only when their current ratings
/// share a user or an item, which in sparse data is rare; then one update may overwrite
/// part of the other's, which is the very noise HOGWILD! proves SGD tolerates. Every index is
/// in bounds (ratings come from a `Problem` whose ids are < the model's rows, checked below),
/// f32 loads and stores are single machine words on every target we build for, so no value
/// is ever torn, and no reference outlives one update. Formally, concurrent `&mut` to the same
/// row is a data race in Rust's memory model; we accept it, contained to `sgd_update` on
/// plain f32 slices, as every lock-free SGD trainer (LIBMF, cuMF_SGD) does in its language.
pub(super) fn epoch(model: &mut Model, ratings: &mut [Rating], threads: usize, seed: u64, step: &Step) {
    let k = model.rank();
    let (m, n) = (model.user_bias.len(), model.item_bias.len());
    assert!(ratings.iter().all(|r| (r.user as usize) < m && (r.item as usize) < n), "rating index out of range");
    let shared = SharedFactors {
        p: model.user_factors.as_mut_ptr(),
        q: model.item_factors.as_mut_ptr(),
        bu: model.user_bias.as_mut_ptr(),
        bi: model.item_bias.as_mut_ptr(),
        k,
    };
    let run = ratings.len().div_ceil(threads.max(1)).max(1);
    ratings.par_chunks_mut(run).enumerate().for_each(|(t, chunk)| {
        chunk.shuffle(&mut ChaCha8Rng::seed_from_u64(seed ^ (t as u64) << 32));
        let s = &shared;
        for r in chunk.iter() {
            let (u, i) = (r.user as usize, r.item as usize);
            // SAFETY: in bounds (asserted above); aliasing argued in the doc comment.
            unsafe {
                let p = std::slice::from_raw_parts_mut(s.p.add(u * s.k), s.k);
                let q = std::slice::from_raw_parts_mut(s.q.add(i * s.k), s.k);
                sgd_update(p, q, &mut *s.bu.add(u), &mut *s.bi.add(i), r.value, step);
            }
        }
    });
}
