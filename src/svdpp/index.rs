//! The lists the SVD++ term's passes read where the ratings are in memory: each user's items
//! (for z) and each item's users tile by tile (for y's gradient).

use crate::data::Rating;
use crate::error::Result;
use crate::schedule::Schedule;
use crate::vector::{finish_streams, stream_scaled, widest, Path};
use super::rounded::{add_line, RoundedRows, Sweeps, SWEEP};
use rayon::prelude::*;

/// What the passes read where the ratings are in memory: both sums read lists, not the
/// blocks, and add their terms rounded to bfloat16, two sweeps a cache line ([`RoundedRows`]).
/// 4 to 6 bytes a rating for the lists, and a user's parts half the bytes of its row.
pub(super) struct Index {
    /// Each user's items, for z.
    by_user: UserItems,
    /// Each item's users, tile by tile, for y's gradient.
    by_item: ItemUsers,
    /// y rounded, for z.
    pub(super) items: RoundedRows,
    /// Each user's |N(u)|^-½ share_u rounded, for y's gradient.
    parts: RoundedRows,
}

impl Index {
    pub(super) fn new(by_user: UserItems, users: usize, items: usize, k: usize) -> Index {
        let by_item = ItemUsers::of(&by_user, items);
        Index { by_user, by_item, items: RoundedRows::zeros(items, k), parts: RoundedRows::zeros(users, k) }
    }

    /// Each item's gradient g_j = Σ_u |N(u)|^-½ share_u over its users, in their order, each
    /// term rounded to bfloat16, into `g` (from zero), from the users' `norms` and `shares`
    /// (users × k). A task a pair of sweeps and a range of items: the same sums on any number
    /// of threads.
    pub(super) fn item_gradient(&mut self, g: &mut Sweeps, norms: &[f32], shares: &[f32]) {
        let (k, items, path) = (g.k, g.items, widest());
        if items == 0 {
            return;
        }
        self.parts.set_scaled(shares, k, norms);
        let pairs = RoundedRows::pairs(k);
        let span = items.div_ceil((2 * rayon::current_num_threads()).div_ceil(pairs.max(1))).max(1);
        let mut sweeps = g.data.chunks_mut((items * SWEEP).max(1));
        let mut tasks = Vec::new();
        for c in 0..pairs {
            let low = sweeps.next().expect("a pair's first sweep");
            let mut high = sweeps.next().map(|h| h.chunks_mut(span * SWEEP));
            for (x, low) in low.chunks_mut(span * SWEEP).enumerate() {
                tasks.push((c, x * span, low, high.as_mut().and_then(|h| h.next())));
            }
        }
        let (by_item, parts) = (&self.by_item, &self.parts);
        tasks.into_par_iter().for_each(|(c, first, low, mut high)| {
            low.fill(0.0);
            high.iter_mut().for_each(|h| h.fill(0.0));
            by_item.spread(parts.pair(c), first, low, high, path);
        });
    }

    /// z_u = `norm`·Σ y_j (y rounded: `self.items`) for pair `c` of sweeps, for users `first..`
    /// (`rows`, k wide), past the caches ([`stream_scaled`]), streams finished.
    pub(super) fn priors(&self, c: usize, first: usize, norms: &[f32], rows: &mut [f32], k: usize, path: Path) {
        for (o, z) in rows.chunks_mut(k).enumerate() {
            self.by_user.prior_columns(first + o, norms[first + o], &self.items, c, z, path);
        }
        finish_streams();
    }
}

/// How many users a tile of [`ItemUsers`] holds: their parts of a pair of sweeps (a line each,
/// 512 KiB) stay in L2 while every item adds up its users among them. Of 2,048 to 65,536 in a
/// standalone loop over the 20M set's lists (dev-intel, 2 MiB of L2), 8,192 was fastest. At
/// most 65,536: a user's place in its tile is 16 bits.
const TILE_USERS: usize = 8192;
const _: () = assert!(TILE_USERS <= 1 << 16);

/// Each item's users, tile by tile of [`TILE_USERS`] users, for y's gradient: item by item, the
/// parts of its users in the tile (|N(u)|^-½ share_u, rounded, two sweeps a line) are read from
/// L2 and summed in registers, a line a rating and pair of sweeps. User by user instead, each
/// part added into each of its items' gradient lines, the pass read and wrote a line a rating
/// and sweep: at rank 128 on 20M ratings, one thread, 0.26–0.27 s against 0.20–0.22 with the
/// tiles and the parts' rounding (BENCHMARKS.md). Each sum takes its users in order, as the
/// pass over the blocks does.
struct ItemUsers {
    /// Where each tile's runs start in `runs`, tiles + 1 entries.
    tiles: Vec<usize>,
    /// Where each tile's users start in `users`.
    firsts: Vec<usize>,
    /// (item, end of its users in `users`): each tile's items with users in it, in order.
    runs: Vec<(u32, usize)>,
    /// Each run's users, in order, by their place in the tile.
    users: Vec<u16>,
}

impl ItemUsers {
    fn of(index: &UserItems, items: usize) -> ItemUsers {
        match &index.items {
            ItemIds::Narrow(ids) => ItemUsers::build(&index.starts, ids, items),
            ItemIds::Wide(ids) => ItemUsers::build(&index.starts, ids, items),
        }
    }

    /// From each user's items (`ids` from `starts[u]`), tile by tile: a count of each item's
    /// users in the tile, the items met in order, then the users placed in turn.
    fn build<I: ItemId>(starts: &[usize], ids: &[I], items: usize) -> ItemUsers {
        let users = starts.len() - 1;
        let (mut tiles, mut firsts, mut runs) = (vec![0], Vec::new(), Vec::new());
        let (mut placed, mut next, mut met) = (vec![0u16; ids.len()], vec![0usize; items], Vec::new());
        for first in (0..users).step_by(TILE_USERS) {
            let last = (first + TILE_USERS).min(users);
            for &j in &ids[starts[first]..starts[last]] {
                if next[j.at()] == 0 {
                    met.push(j.at() as u32);
                }
                next[j.at()] += 1;
            }
            met.sort_unstable();
            // Each item's count becomes where its users go.
            let mut at = starts[first];
            for &j in &met {
                let n = std::mem::replace(&mut next[j as usize], at);
                at += n;
                runs.push((j, at));
            }
            for u in first..last {
                for &j in &ids[starts[u]..starts[u + 1]] {
                    placed[next[j.at()]] = (u - first) as u16;
                    next[j.at()] += 1;
                }
            }
            met.drain(..).for_each(|j| next[j as usize] = 0);
            firsts.push(starts[first]);
            tiles.push(runs.len());
        }
        ItemUsers { tiles, firsts, runs, users: placed }
    }

    /// Adds to the gradient lines of items `first..` of a pair of sweeps (`low`, and `high`
    /// where the pair has a second) the parts of their users (`parts`: the pair's line of each
    /// user).
    fn spread(&self, parts: &[[u32; SWEEP]], first: usize, low: &mut [f32], high: Option<&mut [f32]>, path: Path) {
        match path {
            // SAFETY (both): the CPU has the path's features (`widest` detected them).
            #[cfg(target_arch = "x86_64")]
            Path::Avx512 => unsafe { self.spread_avx512(parts, first, low, high) },
            #[cfg(target_arch = "x86_64")]
            Path::Avx2 => unsafe { self.spread_avx2(parts, first, low, high) },
            _ => self.spread_with(parts, first, low, high),
        }
    }

    /// (No fused arithmetic is written, and a bfloat16 is the upper half of its float, so the
    /// sums are the same bits on every path.)
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx2,fma")]
    unsafe fn spread_avx512(&self, parts: &[[u32; SWEEP]], first: usize, low: &mut [f32], high: Option<&mut [f32]>) {
        self.spread_with(parts, first, low, high)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn spread_avx2(&self, parts: &[[u32; SWEEP]], first: usize, low: &mut [f32], high: Option<&mut [f32]>) {
        self.spread_with(parts, first, low, high)
    }

    #[inline(always)]
    fn spread_with(&self, parts: &[[u32; SWEEP]], first: usize, low: &mut [f32], mut high: Option<&mut [f32]>) {
        let end = first + low.len() / SWEEP;
        for t in 0..self.firsts.len() {
            let runs = &self.runs[self.tiles[t]..self.tiles[t + 1]];
            let from = runs.partition_point(|&(j, _)| (j as usize) < first);
            let mut start = if from == 0 { self.firsts[t] } else { runs[from - 1].1 };
            let tile = &parts[t * TILE_USERS..];
            for &(j, stop) in runs[from..].iter().take_while(|&&(j, _)| (j as usize) < end) {
                let at = (j as usize - first) * SWEEP;
                let mut l: [f32; SWEEP] = low[at..at + SWEEP].try_into().expect("a sweep's line");
                let mut h: [f32; SWEEP] = high.as_ref().map_or([0.0; SWEEP], |h| h[at..at + SWEEP].try_into().expect("a sweep's line"));
                for &o in &self.users[start..stop] {
                    add_line(&tile[o as usize], &mut l, &mut h);
                }
                low[at..at + SWEEP].copy_from_slice(&l);
                if let Some(high) = high.as_mut() {
                    high[at..at + SWEEP].copy_from_slice(&h);
                }
                start = stop;
            }
        }
    }
}

/// Each user's items by position, in the order the users' pass over the blocks meets them
/// (along the user's row of the grid, block by block): both passes read this instead of the
/// blocks, so a user's z (or its share) is taken once a sweep and held in a register through
/// its items, the same sums in the same order. Over the blocks, a user's row is met about once
/// per block, and so read from L3 once per item block (36 times at rank 128 on 20M ratings).
/// 2 bytes a rating where there are fewer than 65,536 items, else 4 ([`ItemIds`]).
pub(super) struct UserItems {
    /// Where each user's items start in `items`, users + 1 entries.
    starts: Vec<usize>,
    items: ItemIds,
}

/// The users' lists of items, in 16 bits where every position fits: each sweep of a pass
/// streams the whole list from memory, and half its bytes made the passes 0.04 s shorter
/// at rank 128 on 20M ratings, one thread (BENCHMARKS.md).
enum ItemIds {
    Narrow(Vec<u16>),
    Wide(Vec<u32>),
}

/// An item's position as [`ItemIds`] holds it.
trait ItemId: Copy {
    fn at(self) -> usize;
}

impl ItemId for u16 {
    #[inline(always)]
    fn at(self) -> usize {
        self as usize
    }
}

impl ItemId for u32 {
    #[inline(always)]
    fn at(self) -> usize {
        self as usize
    }
}

impl UserItems {
    pub(super) fn of(schedule: &Schedule, user_counts: &[u32]) -> Result<UserItems> {
        UserItems::build(user_counts, 0, |add| {
            let mut buf = Vec::new();
            // Blocks are numbered row by row of the grid: each user's items come block by
            // block along its row, as the pass over the blocks meets them.
            for b in 0..schedule.len() {
                add(schedule.block_into(b, &mut buf)?);
            }
            Ok(())
        })
    }

    /// The lists of users `first..` with `user_counts` items each, from the blocks that
    /// `blocks` hands to `add` in order (each rating's item appended to its user's list).
    pub(super) fn build(user_counts: &[u32], first: usize, blocks: impl FnOnce(&mut dyn FnMut(&[Rating])) -> Result<()>) -> Result<UserItems> {
        let mut starts = Vec::with_capacity(user_counts.len() + 1);
        starts.push(0);
        for &n in user_counts {
            starts.push(starts[starts.len() - 1] + n as usize);
        }
        let mut next = starts.clone();
        let mut items = vec![0u32; starts[user_counts.len()]];
        blocks(&mut |ratings: &[Rating]| {
            for r in ratings {
                let at = &mut next[r.user as usize - first];
                items[*at] = r.item;
                *at += 1;
            }
        })?;
        let items = match items.iter().all(|&j| j <= u16::MAX as u32) {
            true => ItemIds::Narrow(items.iter().map(|&j| j as u16).collect()),
            false => ItemIds::Wide(items),
        };
        Ok(UserItems { starts, items })
    }

    /// User `u`'s items in `ids` (the index's list), in the order the pass over the blocks
    /// meets them.
    #[inline(always)]
    fn of_user<'a, I: ItemId>(&self, ids: &'a [I], u: usize) -> &'a [I] {
        &ids[self.starts[u]..self.starts[u + 1]]
    }

    /// Σ y_j over user `u`'s items j, in their order, for the columns of one pair of sweeps
    /// (`y`, y's rounded lines: [`RoundedRows`]), summed in registers: the bits of adding
    /// into a zeroed z. The low halves' sums (the pair's first sixteen columns), then the
    /// high halves'.
    #[inline(always)]
    fn gather(&self, u: usize, y: &[[u32; SWEEP]], path: Path) -> ([f32; SWEEP], [f32; SWEEP]) {
        match path {
            // SAFETY (both): the CPU has the path's features (`widest` detected them).
            #[cfg(target_arch = "x86_64")]
            Path::Avx512 => unsafe { self.gather_avx512(u, y) },
            #[cfg(target_arch = "x86_64")]
            Path::Avx2 => unsafe { self.gather_avx2(u, y) },
            _ => self.gather_with(u, y),
        }
    }

    /// (As for [`ItemUsers::spread`], the same bits on every path: a bfloat16 is the upper
    /// half of the float it stands for, so the shift and the mask are exact.)
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx2,fma")]
    unsafe fn gather_avx512(&self, u: usize, y: &[[u32; SWEEP]]) -> ([f32; SWEEP], [f32; SWEEP]) {
        self.gather_with(u, y)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn gather_avx2(&self, u: usize, y: &[[u32; SWEEP]]) -> ([f32; SWEEP], [f32; SWEEP]) {
        self.gather_with(u, y)
    }

    #[inline(always)]
    fn gather_with(&self, u: usize, y: &[[u32; SWEEP]]) -> ([f32; SWEEP], [f32; SWEEP]) {
        match &self.items {
            ItemIds::Narrow(ids) => self.gather_over(ids, u, y),
            ItemIds::Wide(ids) => self.gather_over(ids, u, y),
        }
    }

    #[inline(always)]
    fn gather_over<I: ItemId>(&self, ids: &[I], u: usize, y: &[[u32; SWEEP]]) -> ([f32; SWEEP], [f32; SWEEP]) {
        let (mut low, mut high) = ([0.0f32; SWEEP], [0.0f32; SWEEP]);
        for &j in self.of_user(ids, u) {
            add_line(&y[j.at()], &mut low, &mut high);
        }
        (low, high)
    }

    /// z_u = `norm`·Σ y_j over user `u`'s items, for the columns of pair `c` of y's rounded
    /// sweeps, written into user row `z` (k wide) past the caches where it can
    /// ([`stream_scaled`]: the rows are read after the pass, and written through L2 they
    /// pushed y's lines out of it; at rank 128 on 20M ratings, one thread, the sums took 0.13 s
    /// instead of 0.22). [`finish_streams`] before the rows are read.
    #[inline(always)]
    fn prior_columns(&self, u: usize, norm: f32, y: &RoundedRows, c: usize, z: &mut [f32], path: Path) {
        let (low, high) = self.gather(u, y.pair(c), path);
        let mut sums = [0.0f32; 2 * SWEEP];
        sums[..SWEEP].copy_from_slice(&low);
        sums[SWEEP..].copy_from_slice(&high);
        stream_scaled(&mut z[c * 2 * SWEEP..], norm, &sums, path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::svdpp::rounded::{round_to_bf16, RoundedLine};
    use rand::{Rng, SeedableRng};

    #[test]
    fn the_index_holds_items_in_16_bits_where_all_fit_and_in_32_where_not() {
        for (items, narrow) in [(65_536, true), (65_537, false)] {
            let last = items as u32 - 1;
            let rating = |user, item| Rating { user, item, value: 1.0 };
            let ratings = [rating(0, 3), rating(1, last), rating(0, last)];
            let index = UserItems::build(&[2, 1], 0, |add| {
                add(&ratings);
                Ok(())
            })
            .unwrap();
            assert_eq!(matches!(index.items, ItemIds::Narrow(_)), narrow, "{items} items");
            // y: 1 in every column of item 3 and 2 in the last item's (both exact in bfloat16).
            let mut y = RoundedRows::zeros(items, 2 * SWEEP);
            y.data[3] = RoundedLine([0x3F80_3F80; SWEEP]);
            y.data[last as usize] = RoundedLine([0x4000_4000; SWEEP]);
            for path in [Path::Portable, widest()] {
                assert_eq!(index.gather(0, y.pair(0), path), ([3.0; SWEEP], [3.0; SWEEP]), "{items} items");
                assert_eq!(index.gather(1, y.pair(0), path), ([2.0; SWEEP], [2.0; SWEEP]), "{items} items");
                // Each user's share (user u's column f: 32u + f) and norm (1, then 0.5) spread
                // (every part exact in bfloat16).
                let (mut low, mut high) = (vec![0.0f32; items * SWEEP], vec![0.0f32; items * SWEEP]);
                let shares: Vec<f32> = (0..4 * SWEEP).map(|x| x as f32).collect();
                let mut parts = RoundedRows::zeros(2, 2 * SWEEP);
                parts.set_scaled(&shares, 2 * SWEEP, &[1.0, 0.5]);
                ItemUsers::of(&index, items).spread(parts.pair(0), 0, &mut low, Some(&mut high), path);
                for f in 0..SWEEP {
                    assert_eq!((low[3 * SWEEP + f], high[3 * SWEEP + f]), (f as f32, (SWEEP + f) as f32));
                    let at = last as usize * SWEEP + f;
                    assert_eq!(low[at], f as f32 + 0.5 * (2 * SWEEP + f) as f32, "{items} items");
                    assert_eq!(high[at], (SWEEP + f) as f32 + 0.5 * (3 * SWEEP + f) as f32, "{items} items");
                }
            }
        }
    }

    #[test]
    fn each_items_gradient_adds_its_users_parts_in_order_across_tiles() {
        // Users over three tiles (the last part-filled), each rating one to three of 50 items;
        // a whole pair of sweeps and part of the next; on one thread and on three.
        let (users, items, k) = (2 * TILE_USERS + 700, 50, 40);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
        let mut ratings = Vec::new();
        let mut counts = vec![0u32; users];
        for (u, count) in counts.iter_mut().enumerate() {
            for _ in 0..rng.random_range(1..=3) {
                ratings.push(Rating { user: u as u32, item: rng.random_range(0..items as u32), value: 1.0 });
                *count += 1;
            }
        }
        let norms: Vec<f32> = (0..users).map(|_| rng.random_range(0.1..1.0)).collect();
        let shares: Vec<f32> = (0..users * k).map(|_| rng.random_range(-1.0..1.0)).collect();
        let mut expected = vec![0.0f32; items * k];
        for r in &ratings {
            let (u, j) = (r.user as usize, r.item as usize);
            for f in 0..k {
                expected[j * k + f] += round_to_bf16(norms[u] * shares[u * k + f]);
            }
        }
        let by_user = UserItems::build(&counts, 0, |add| {
            add(&ratings);
            Ok(())
        })
        .unwrap();
        let mut index = Index::new(by_user, users, items, k);
        assert_eq!(index.by_item.firsts.len(), 3, "three tiles");
        for threads in [1, 3] {
            let mut g = Sweeps::zeros(items, k);
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| index.item_gradient(&mut g, &norms, &shares));
            assert_eq!(g.to_rows(), expected, "{threads} threads");
        }
    }
}
