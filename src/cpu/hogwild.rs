//! Lock-free parallel SGD (HOGWILD!, Niu et al. 2011): threads update the shared factors
//! without synchronisation. All the unsafety of the CPU trainer lives in this module.
//!
//! For memory locality (the idea of LIBMF's blocked scheduling, in our own form) the ratings are
//! cut into tiles of user rows × item rows, each tile sorted by user with the items of a user in
//! random order: a user's row is then loaded once per tile and the tile's item rows stay in
//! cache. Each epoch visits the tiles in a fresh seeded order, threads taking them as they free
//! up. Reshuffling every rating every epoch, by contrast, costs more than the epoch's updates.

use super::{sgd_update, Step};
use crate::data::{tiled, Rating};
use crate::model::Model;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use std::ops::Range;

/// The training ratings grouped into tiles.
pub(super) struct Tiles {
    ratings: Vec<Rating>,
    tiles: Vec<Range<usize>>,
}

impl Tiles {
    /// Tiles of about `users / side` × `items / side` rows, with `side` growing with the threads
    /// so every thread always finds a tile to take.
    pub(super) fn new(ratings: &[Rating], users: usize, items: usize, threads: usize, seed: u64) -> Tiles {
        let side = (4 * threads).clamp(1, 64);
        let (user_rows, item_rows) = (users.div_ceil(side).max(1), items.div_ceil(side).max(1));
        let key = |r: &Rating| {
            let (user_block, item_block) = (r.user as usize / user_rows, r.item as usize / item_rows);
            ((user_block * side + item_block) as u32, (r.user as usize - user_block * user_rows) as u32)
        };
        let (ratings, tiles) = tiled(ratings, side * side, user_rows, key, seed ^ 0x7469_6c65);
        Tiles { ratings, tiles: tiles.into_iter().filter(|t| !t.is_empty()).collect() }
    }

    pub(super) fn len(&self) -> usize {
        self.ratings.len()
    }
}

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

/// One Hogwild epoch over every tile, in a seeded order.
///
/// Why this is acceptable: two threads touch the same row only when their current ratings
/// share a user or an item, which in sparse data is rare; then one update may overwrite
/// part of the other's, which is the very noise HOGWILD! proves SGD tolerates. Every index is
/// in bounds (checked below), f32 loads and stores are single machine words on every target we
/// build for, so no value is ever torn, and no reference outlives one update. Formally,
/// concurrent `&mut` to the same row is a data race in Rust's memory model; we accept it,
/// contained to `sgd_update` on plain f32 slices, as every lock-free SGD trainer (LIBMF,
/// cuMF_SGD) does in its language.
pub(super) fn epoch(model: &mut Model, tiles: &Tiles, seed: u64, step: &Step) {
    let k = model.rank();
    let (m, n) = (model.user_bias.len(), model.item_bias.len());
    assert!(tiles.ratings.iter().all(|r| (r.user as usize) < m && (r.item as usize) < n), "rating index out of range");
    let shared = SharedFactors {
        p: model.user_factors.as_mut_ptr(),
        q: model.item_factors.as_mut_ptr(),
        bu: model.user_bias.as_mut_ptr(),
        bi: model.item_bias.as_mut_ptr(),
        k,
    };
    let mut order: Vec<usize> = (0..tiles.tiles.len()).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    #[cfg(target_arch = "x86_64")]
    let wide = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
    order.par_iter().with_max_len(1).for_each(|&t| {
        let ratings = &tiles.ratings[tiles.tiles[t].clone()];
        #[cfg(target_arch = "x86_64")]
        if wide {
            // SAFETY: the CPU has AVX2 and FMA (detected above).
            unsafe { run_tile_avx2(ratings, &shared, step) };
            return;
        }
        // SAFETY: as for `run_tile`.
        unsafe { run_tile(ratings, &shared, step) };
    });
}

/// How many ratings ahead the item row is prefetched (chosen on a 2-core EPYC at ranks 32 and
/// 128: 8 was never slower than 0 or 4).
const PREFETCH_AHEAD: usize = 8;

/// Updates for one tile's ratings.
///
/// SAFETY: every rating's indices are below the model's rows (asserted by `epoch`); the
/// aliasing between threads is argued on `epoch`.
#[inline(always)]
unsafe fn run_tile(ratings: &[Rating], s: &SharedFactors, step: &Step) {
    for (j, r) in ratings.iter().enumerate() {
        // Within a tile the user rows repeat but the item rows jump about: ask for the item row
        // of a rating a few places ahead, so its cache misses overlap this update.
        #[cfg(target_arch = "x86_64")]
        if let Some(next) = ratings.get(j + PREFETCH_AHEAD) {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            let row = s.q.add(next.item as usize * s.k) as *const i8;
            for line in (0..s.k * 4).step_by(64) {
                _mm_prefetch(row.add(line), _MM_HINT_T0);
            }
        }
        let (u, i) = (r.user as usize, r.item as usize);
        let p = std::slice::from_raw_parts_mut(s.p.add(u * s.k), s.k);
        let q = std::slice::from_raw_parts_mut(s.q.add(i * s.k), s.k);
        sgd_update(p, q, &mut *s.bu.add(u), &mut *s.bi.add(i), r.value, step);
    }
}

/// `run_tile` compiled for AVX2 and FMA (about 18% faster at rank 128 on the development machine;
/// the baseline x86-64 build has SSE2 only). Only Hogwild uses it: the sequential trainer keeps
/// the same bits on every machine.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn run_tile_avx2(ratings: &[Rating], s: &SharedFactors, step: &Step) {
    run_tile(ratings, s, step)
}
