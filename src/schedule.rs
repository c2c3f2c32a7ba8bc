//! The one block schedule every backend trains by: the CPU trainers, the GPU and (later) the
//! multi-device runner differ only in where a block lives and who runs it.
//!
//! Users and items are permuted at random (seeded) and cut into a grid of `user_blocks` ×
//! `item_blocks` blocks whose row counts differ by at most one, so blocks hold about equal
//! numbers of ratings even where ids were assigned by popularity or time (LIBMF and cuMF_SGD
//! do the same). An id's place in the permutation is its *position*: a block's rows are a run
//! of positions, and the schedule's ratings name positions, so a trainer that keeps its factor
//! rows in position order (the CPU's, see [`Axis::gather`]) finds each block's rows together
//! in memory, apart from other threads' rows. Each block's ratings lie together, in an order
//! fixed when the grid is built.
//! An epoch visits every non-empty block once: one after another in a seeded order, or, on
//! several threads, any block whose user range and item range no running block holds. Two such
//! blocks share no factor row (DSGD's strata, LIBMF's free blocks), so they need no lock.

use crate::cache::DiskBlocks;
use crate::grid::{take_turns, Axis, GridSize, Order, MAX_SIDE};
use crate::data::{group_by_key, tiled, Rating};
use crate::error::{Error, Result};
use crate::rng::part_rng;
use rand::seq::SliceRandom;
use rayon::prelude::*;
use std::borrow::Cow;
use std::ops::Range;
use std::sync::{Arc, Condvar, Mutex};

/// A block's ratings and the rows they may name: every rating's user lies in `users` and its
/// item in `items` (positions, or a DSGD stripe's rows). Made by [`check`](Self::check), or
/// lent by a [`Schedule`] ([`Schedule::checked_block`]), which checks its blocks in memory once,
/// when it lays them out, and a block from disk each time it reads it. So the SVD++ term's
/// passes and ALS meet no rating outside a block's rows, and the block loop indexes them with
/// no check of its own:
/// checking every block again at every epoch cost it 4–8% of its time (BENCHMARKS.md).
#[derive(Clone, Copy, Debug)]
pub struct BlockRatings<'a> {
    ratings: &'a [Rating],
    /// (first row, rows) of each side.
    users: (u32, usize),
    items: (u32, usize),
}

impl<'a> BlockRatings<'a> {
    /// `ratings`, if each names a user of `users` and an item of `items`; else an error naming
    /// the first that does not (a block that does is corrupt).
    pub fn check(ratings: &'a [Rating], users: Range<usize>, items: Range<usize>) -> Result<BlockRatings<'a>> {
        let (u0, m, i0, n) = (users.start as u32, users.len(), items.start as u32, items.len());
        // One pass that vectorises, then a second to name the first bad rating only if there is one.
        let outside = |r: &Rating| (r.user.wrapping_sub(u0) as usize >= m) | (r.item.wrapping_sub(i0) as usize >= n);
        if ratings.iter().fold(false, |any, r| any | outside(r)) {
            let at = ratings.iter().position(outside).unwrap_or_default();
            let r = ratings[at];
            return Err(Error::Data(format!(
                "rating {at} names user {} and item {}, outside the block's users {users:?} and items {items:?}: the block is corrupt",
                r.user, r.item
            )));
        }
        Ok(BlockRatings { ratings, users: (u0, m), items: (i0, n) })
    }

    pub fn ratings(&self) -> &'a [Rating] {
        self.ratings
    }

    /// The first user row the ratings may name, and how many.
    pub fn users(&self) -> (u32, usize) {
        self.users
    }

    /// The first item row the ratings may name, and how many.
    pub fn items(&self) -> (u32, usize) {
        self.items
    }
}

/// Where the blocks' ratings live.
enum Store {
    /// With each block's rows as its ratings were checked against them, when laid out: what
    /// [`Schedule::checked_block`] lends them with, whatever becomes of the axes.
    Memory(Vec<Rating>, Vec<[(u32, usize); 2]>),
    /// In a block cache, read when the schedule reaches them.
    Disk(Arc<DiskBlocks>),
}

/// The training ratings laid out by block, and the grid that cut them.
pub struct Schedule {
    pub users: Axis,
    pub items: Axis,
    /// Ratings naming positions, block by block (row-major over the grid), in memory or on disk.
    store: Store,
    ranges: Vec<Range<usize>>,
    seed: u64,
}

impl Schedule {
    /// Cuts `ratings` (ids below `users` and `items`) into a `grid`, each block in `order`, ids
    /// turned into positions. A side asking for more blocks than it has ids gets one block per id.
    pub fn new(ratings: &[Rating], users: usize, items: usize, grid: GridSize, order: Order, seed: u64) -> Result<Schedule> {
        if !(1..=MAX_SIDE).contains(&grid.user_blocks) || !(1..=MAX_SIDE).contains(&grid.item_blocks) {
            return Err(Error::InvalidParameter(format!("--blocks {grid}: each side needs 1 to {MAX_SIDE} blocks")));
        }
        let user_axis = Axis::new(users, grid.user_blocks, seed, 11);
        let item_axis = Axis::new(items, grid.item_blocks, seed, 12);
        let columns = item_axis.blocks();
        let key = |r: &Rating| {
            let (u, i) = (user_axis.position(r.user), item_axis.position(r.item));
            let block = user_axis.block_at(u) * columns + item_axis.block_at(i);
            let row = match order {
                Order::Shuffled => 0,
                Order::ByUser => user_axis.row_at(u),
            };
            (block as u32, row)
        };
        let rows = match order {
            Order::Shuffled => 1,
            Order::ByUser => user_axis.max_rows().max(1),
        };
        let (mut ratings, ranges) = tiled(ratings, user_axis.blocks() * columns, rows, key, seed ^ 0x0062_6c6f_636b);
        if order == Order::ByUser {
            // The ranges run back to back from 0: cut the ratings into the blocks they name.
            let mut rest: &mut [Rating] = &mut ratings;
            let mut blocks = Vec::with_capacity(ranges.len());
            for range in &ranges {
                let (block, tail) = std::mem::take(&mut rest).split_at_mut(range.len());
                blocks.push(block);
                rest = tail;
            }
            blocks.into_par_iter().for_each(take_turns);
        }
        if !(user_axis.is_identity() && item_axis.is_identity()) {
            ratings.par_iter_mut().for_each(|r| *r = Rating { user: user_axis.position(r.user), item: item_axis.position(r.item), value: r.value });
        }
        let mut schedule = Schedule { users: user_axis, items: item_axis, store: Store::Memory(ratings, Vec::new()), ranges, seed };
        // Once, here: [`checked_block`](Self::checked_block) lends these blocks as checked.
        let checked = (0..schedule.len())
            .into_par_iter()
            .map(|b| {
                let (users, items) = schedule.rows(b);
                let block = BlockRatings::check(schedule.block(b), users, items).map_err(|e| schedule.in_block(b, e))?;
                Ok([block.users, block.items])
            })
            .collect::<Result<Vec<_>>>()?;
        if let Store::Memory(_, rows) = &mut schedule.store {
            *rows = checked;
        }
        Ok(schedule)
    }

    /// The schedule of a block cache: the grid, order and seed it was written with.
    pub fn from_disk(disk: Arc<DiskBlocks>) -> Schedule {
        let users = Axis::new(disk.users.len(), disk.grid.user_blocks, disk.seed, 11);
        let items = Axis::new(disk.items.len(), disk.grid.item_blocks, disk.seed, 12);
        Schedule { users, items, ranges: disk.block_ranges(), seed: disk.seed, store: Store::Disk(disk) }
    }

    /// Whether the blocks are read from disk as they are scheduled.
    pub fn on_disk(&self) -> bool {
        matches!(self.store, Store::Disk(_))
    }

    /// Block `b`'s ratings: lent from memory, or read from disk into `buf`.
    pub fn block_into<'s>(&'s self, b: usize, buf: &'s mut Vec<Rating>) -> Result<&'s [Rating]> {
        match &self.store {
            Store::Memory(ratings, _) => Ok(&ratings[self.ranges[b].clone()]),
            Store::Disk(disk) => {
                disk.read_block(b, buf)?;
                Ok(buf)
            }
        }
    }

    /// Block `b`'s ratings with the rows they may name ([`BlockRatings`]): lent from memory
    /// (checked when the grid was laid out), or read from disk into `buf` and checked.
    pub fn checked_block<'s>(&'s self, b: usize, buf: &'s mut Vec<Rating>) -> Result<BlockRatings<'s>> {
        match &self.store {
            Store::Memory(ratings, rows) => Ok(BlockRatings { ratings: &ratings[self.ranges[b].clone()], users: rows[b][0], items: rows[b][1] }),
            Store::Disk(disk) => {
                disk.read_block(b, buf)?;
                let (users, items) = self.rows(b);
                BlockRatings::check(buf, users, items).map_err(|e| self.in_block(b, e))
            }
        }
    }

    /// The rows, by position, of block `b`'s user block and item block.
    pub fn rows(&self, b: usize) -> (Range<usize>, Range<usize>) {
        let (ub, ib) = self.coordinates(b);
        (self.users.start(ub)..self.users.start(ub + 1), self.items.start(ib)..self.items.start(ib + 1))
    }

    /// `e`, an error met in block `b`, with the block (and its cache) named.
    pub fn in_block(&self, b: usize, e: Error) -> Error {
        match e {
            Error::Data(message) => Error::Data(format!("{}block {b}: {message}", self.disk_path().map_or(String::new(), |p| format!("{}: ", p.display())))),
            e => e,
        }
    }

    /// The block cache the blocks are read from, if they are on disk.
    pub fn disk_path(&self) -> Option<&std::path::Path> {
        match &self.store {
            Store::Disk(disk) => Some(&disk.path),
            Store::Memory(..) => None,
        }
    }

    pub fn grid(&self) -> GridSize {
        GridSize { user_blocks: self.users.blocks(), item_blocks: self.items.blocks() }
    }

    /// Blocks in the grid, empty ones included.
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    /// Ratings in block `b` (without reading it from disk).
    pub fn block_len(&self, b: usize) -> usize {
        self.ranges[b].len()
    }

    pub fn is_empty(&self) -> bool {
        self.ratings() == 0
    }

    /// Ratings in all blocks.
    pub fn ratings(&self) -> usize {
        self.ranges.last().map_or(0, |r| r.end)
    }

    /// The (user block, item block) of block `b`.
    pub fn coordinates(&self, b: usize) -> (usize, usize) {
        (b / self.items.blocks(), b % self.items.blocks())
    }

    /// Block `b`'s ratings, naming positions, in their fixed order, from memory (blocks on disk
    /// are read with [`block_into`](Self::block_into)).
    pub fn block(&self, b: usize) -> &[Rating] {
        match &self.store {
            Store::Memory(ratings, _) => &ratings[self.ranges[b].clone()],
            Store::Disk(_) => panic!("block {b} is on disk: read it with block_into"),
        }
    }

    /// Block `b`'s ratings with ids made rows of its user and item blocks (how the GPU binds
    /// them beside the blocks' factor rows).
    /// With one block the rows are the model's ids and the ratings are lent as they are.
    pub fn local_block(&self, b: usize) -> Cow<'_, [Rating]> {
        if self.len() == 1 {
            return Cow::Borrowed(self.block(b));
        }
        Cow::Owned(self.block(b).iter().map(|r| Rating { user: self.users.row_at(r.user), item: self.items.row_at(r.item), value: r.value }).collect())
    }

    /// `ratings` of one block (naming positions) with ids made rows of their blocks, into `out`.
    pub fn local_rows(&self, ratings: &[Rating], out: &mut Vec<Rating>) {
        out.clear();
        out.extend(ratings.iter().map(|r| Rating { user: self.users.row_at(r.user), item: self.items.row_at(r.item), value: r.value }));
    }

    /// Other ratings (a test set) grouped by the block they fall in, ids made rows of its
    /// blocks, in their given order within each block. Cold ids ([`crate::data::UNKNOWN`]) stay unknown and
    /// go with the known side's block.
    pub fn localize(&self, ratings: &[Rating]) -> Vec<Vec<Rating>> {
        let columns = self.items.blocks();
        let keys = |_: usize, chunk: &[Rating]| -> Vec<u32> {
            chunk.iter().map(|r| (self.users.block_at(self.users.position(r.user)) * columns + self.items.block_at(self.items.position(r.item))) as u32).collect()
        };
        group_by_key(ratings, self.len(), keys, |_, r| Rating {
            user: self.users.row_at(self.users.position(r.user)),
            item: self.items.row_at(self.items.position(r.item)),
            value: r.value,
        })
    }

    /// Other ratings (a test set) with ids turned into positions, in their order.
    pub fn to_positions(&self, ratings: &[Rating]) -> Vec<Rating> {
        ratings.par_iter().map(|r| Rating { user: self.users.position(r.user), item: self.items.position(r.item), value: r.value }).collect()
    }

    /// The non-empty blocks in the order epoch `epoch` trains them one after another: the user
    /// blocks in a seeded order, and within each its item blocks in a seeded order of their own.
    /// A user block's rows are then needed for one run of blocks per epoch, which is what lets
    /// a device that holds one block of rows at a time load each user block once.
    pub fn sequence(&self, epoch: usize) -> Vec<usize> {
        let columns = self.items.blocks();
        let mut rng = part_rng(self.seed, 13, epoch);
        let mut user_blocks: Vec<usize> = (0..self.users.blocks()).collect();
        user_blocks.shuffle(&mut rng);
        let mut order = Vec::with_capacity(self.len());
        for u in user_blocks {
            let mut item_blocks: Vec<usize> = (0..columns).map(|i| u * columns + i).filter(|&b| !self.ranges[b].is_empty()).collect();
            item_blocks.shuffle(&mut rng);
            order.extend(item_blocks);
        }
        order
    }

    /// DSGD's grid of `stripes` user blocks: as many item blocks, each cut into two halves (item
    /// blocks `2j` and `2j + 1` of the grid), so a worker can send one half on while it trains
    /// the other (DSGD++).
    pub fn dsgd_grid(stripes: usize) -> GridSize {
        GridSize { user_blocks: stripes, item_blocks: 2 * stripes }
    }

    /// DSGD's strata of epoch `epoch` on a [`dsgd_grid`](Self::dsgd_grid): the shifts
    /// `0..stripes` in a seeded order. In the stratum of shift `s`, user block `p` trains item
    /// pair `(p + s) % stripes`, so no two user blocks share an item row; `stripes` strata
    /// visit every block once. The order depends on the seed and the epoch only, never on
    /// who trains the blocks: that is what makes every worker count give the same bits.
    pub fn strata(&self, epoch: usize) -> Vec<usize> {
        let mut shifts: Vec<usize> = (0..self.users.blocks()).collect();
        shifts.shuffle(&mut part_rng(self.seed, 14, epoch));
        shifts
    }

    /// The item pair user block `stripe` trains in the stratum of shift `shift`.
    pub fn pair_of(&self, stripe: usize, shift: usize) -> usize {
        (stripe + shift) % self.users.blocks()
    }

    /// The user block that trains item pair `pair` in the stratum of shift `shift`.
    pub fn stripe_of(&self, pair: usize, shift: usize) -> usize {
        let side = self.users.blocks();
        (pair + side - shift % side) % side
    }

    /// Runs `train(block)` once for every non-empty block on `threads` threads of the current
    /// rayon pool, never two blocks at once that share a user block or an item block. Free
    /// blocks are taken in the epoch's seeded [`sequence`](Self::sequence) order. The first
    /// error (or panic, with its message) stops every thread from taking another block, frees
    /// those waiting, and is returned: a failing block never leaves the others waiting.
    pub fn run_parallel(&self, epoch: usize, threads: usize, train: impl Fn(usize) -> Result<()> + Sync) -> Result<()> {
        let state = Mutex::new(Free {
            pending: self.sequence(epoch),
            busy_users: vec![false; self.users.blocks()],
            busy_items: vec![false; self.items.blocks()],
            failure: None,
        });
        let freed = Condvar::new();
        let lock = || state.lock().unwrap_or_else(|e| e.into_inner());
        let worker = || loop {
            let mut free = lock();
            let block = loop {
                if free.pending.is_empty() || free.failure.is_some() {
                    return;
                }
                let found = free.pending.iter().position(|&b| {
                    let (u, i) = self.coordinates(b);
                    !free.busy_users[u] && !free.busy_items[i]
                });
                match found {
                    Some(at) => break free.pending.remove(at),
                    None => free = freed.wait(free).unwrap_or_else(|e| e.into_inner()),
                }
            };
            let (u, i) = self.coordinates(block);
            free.busy_users[u] = true;
            free.busy_items[i] = true;
            drop(free);
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| train(block))).unwrap_or_else(|panic| {
                let message = panic.downcast_ref::<String>().cloned().or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default();
                Err(Error::Data(format!("a training thread panicked on block {block}: {message}")))
            });
            let mut free = lock();
            free.busy_users[u] = false;
            free.busy_items[i] = false;
            if let Err(e) = outcome {
                free.failure.get_or_insert(e);
            }
            freed.notify_all();
        };
        rayon::scope(|s| {
            for _ in 0..threads.max(1) {
                s.spawn(|_| worker());
            }
        });
        match state.into_inner().unwrap_or_else(|e| e.into_inner()).failure {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// The parallel epoch's shared state: blocks not yet taken, and the ranges in use.
struct Free {
    pending: Vec<usize>,
    busy_users: Vec<bool>,
    busy_items: Vec<bool>,
    /// The first block's failure: no block is taken after it.
    failure: Option<Error>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::UNKNOWN;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn all_pairs(users: u32, items: u32) -> Vec<Rating> {
        (0..users).flat_map(|u| (0..items).map(move |i| Rating { user: u, item: i, value: (u * 1000 + i) as f32 })).collect()
    }

    #[test]
    fn each_block_is_lent_checked_with_its_rows() {
        let ratings = all_pairs(23, 17);
        let s = Schedule::new(&ratings, 23, 17, GridSize { user_blocks: 4, item_blocks: 3 }, Order::ByUser, 9).unwrap();
        let mut buf = Vec::new();
        for b in 0..s.len() {
            let (users, items) = s.rows(b);
            let block = s.checked_block(b, &mut buf).unwrap();
            assert_eq!((block.users(), block.items()), ((users.start as u32, users.len()), (items.start as u32, items.len())));
            assert_eq!(block.ratings(), s.block(b));
        }
    }

    /// A block read from disk whose checksum agrees but whose ratings name rows outside it (a
    /// cache written wrong) is an error naming the cache and the block: the block loop, which
    /// indexes rows unchecked, never sees it.
    #[cfg(unix)]
    #[test]
    fn a_block_from_disk_that_names_rows_outside_it_is_an_error() {
        use crate::cache::{CacheSettings, DiskBlocks};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.tsv");
        crate::data::write_ratings(&path, &all_pairs(300, 40), crate::data::WriteFormat::Tab, false).unwrap();
        let settings = CacheSettings { grid: Some(GridSize { user_blocks: 3, item_blocks: 2 }), order: Order::ByUser, seed: 9, memory: 1 << 20, threads: 1 };
        let mut cache = DiskBlocks::open_or_build(&path, &crate::data::LoadOptions::default(), dir.path(), &settings, |_| {}).unwrap();
        let mut block = Vec::new();
        cache.read_block(1, &mut block).unwrap();
        // Items are positions 0..40: 40 lies outside every block.
        block[5].item = 40;
        cache.overwrite_block(1, &block);
        let s = Schedule::from_disk(std::sync::Arc::new(cache));
        let e = s.checked_block(1, &mut Vec::new()).unwrap_err().to_string();
        assert!(e.contains("block 1: rating 5 names") && e.contains("item 40") && e.contains("corrupt") && e.contains("r.tsv.gpumf-blocks"), "{e}");
        assert!(s.checked_block(0, &mut Vec::new()).is_ok(), "the other blocks are sound");
    }

    #[test]
    fn every_rating_lands_once_in_the_block_of_its_user_and_item() {
        let ratings = all_pairs(23, 17);
        for order in [Order::Shuffled, Order::ByUser] {
            let s = Schedule::new(&ratings, 23, 17, GridSize { user_blocks: 4, item_blocks: 3 }, order, 9).unwrap();
            assert_eq!(s.grid(), GridSize { user_blocks: 4, item_blocks: 3 });
            let mut seen = Vec::new();
            for b in 0..s.len() {
                let (ub, ib) = s.coordinates(b);
                for (r, local) in s.block(b).iter().zip(s.local_block(b).iter()) {
                    assert_eq!((s.users.block_at(r.user), s.items.block_at(r.item)), (ub, ib));
                    let (user, item) = (s.users.id_at(r.user), s.items.id_at(r.item));
                    assert_eq!(s.users.members(ub)[local.user as usize], user, "local rows name the same user");
                    assert_eq!(s.items.members(ib)[local.item as usize], item);
                    assert_eq!(r.value, (user * 1000 + item) as f32, "the value stays with its pair");
                    seen.push((user, item));
                }
                if order == Order::ByUser {
                    // Users in order of their first rating, each user's ratings within a span
                    // of at most USERS_IN_TURN users taking turns.
                    let rows: Vec<u32> = s.block(b).iter().map(|r| r.user).collect();
                    let mut firsts = rows.clone();
                    firsts.dedup();
                    firsts.retain({
                        let mut met = std::collections::HashSet::new();
                        move |u| met.insert(*u)
                    });
                    assert!(firsts.windows(2).all(|w| w[0] < w[1]), "by user within block {b}: {rows:?}");
                    for u in &firsts {
                        let (first, last) = (rows.iter().position(|x| x == u).unwrap(), rows.iter().rposition(|x| x == u).unwrap());
                        let mut span: Vec<u32> = rows[first..=last].to_vec();
                        span.sort_unstable();
                        span.dedup();
                        assert!(span.len() <= crate::grid::USERS_IN_TURN, "block {b}: user {u} spans {span:?}");
                    }
                }
            }
            // Every user's ratings cross block boundaries: they lie in each of its item blocks.
            let blocks_of_user_0 = (0..s.len()).filter(|&b| s.block(b).iter().any(|r| s.users.id_at(r.user) == 0)).count();
            assert_eq!(blocks_of_user_0, 3, "user 0's ratings span its row of blocks");
            seen.sort_unstable();
            assert_eq!(seen, ratings.iter().map(|r| (r.user, r.item)).collect::<Vec<_>>());
        }
    }

    #[test]
    fn gather_and_scatter_are_inverse_and_blocks_are_runs_of_positions_in_id_order() {
        let s = Schedule::new(&all_pairs(10, 7), 10, 7, GridSize { user_blocks: 3, item_blocks: 2 }, Order::Shuffled, 4).unwrap();
        let rows: Vec<f32> = (0..20).map(|x| x as f32).collect(); // 10 ids x 2 values
        let gathered = s.users.gather(&rows);
        for p in 0..10u32 {
            assert_eq!(gathered[p as usize * 2], (s.users.id_at(p) * 2) as f32);
            assert_eq!(s.users.position(s.users.id_at(p)), p);
        }
        assert_eq!(s.users.scatter(&gathered), rows);
        for b in 0..3 {
            assert!(s.users.members(b).windows(2).all(|w| w[0] < w[1]), "ids in order within block {b}");
        }
        assert_eq!((s.users.position(UNKNOWN), s.users.block_at(UNKNOWN), s.users.row_at(UNKNOWN)), (UNKNOWN, 0, UNKNOWN));
    }

    #[test]
    fn blocks_are_balanced_and_unequal_by_at_most_one_row() {
        let s = Schedule::new(&all_pairs(10, 7), 10, 7, GridSize { user_blocks: 4, item_blocks: 3 }, Order::Shuffled, 1).unwrap();
        let sizes: Vec<usize> = (0..4).map(|b| s.users.members(b).len()).collect();
        assert_eq!(sizes.iter().sum::<usize>(), 10);
        assert!(sizes.iter().all(|&n| n == 2 || n == 3), "{sizes:?}");
        // Permuted: the first block is not simply the first ids.
        let seeds_in_order = (0..20).filter(|&seed| {
            let s = Schedule::new(&all_pairs(10, 7), 10, 7, GridSize { user_blocks: 4, item_blocks: 3 }, Order::Shuffled, seed).unwrap();
            s.users.members(0) == [0, 1]
        });
        assert!(seeds_in_order.count() < 3);
    }

    #[test]
    fn more_blocks_than_ids_gives_one_block_per_id_and_one_block_keeps_ids() {
        let s = Schedule::new(&all_pairs(3, 2), 3, 2, GridSize { user_blocks: 8, item_blocks: 8 }, Order::Shuffled, 1).unwrap();
        assert_eq!(s.grid(), GridSize { user_blocks: 3, item_blocks: 2 });
        let one = Schedule::new(&all_pairs(5, 4), 5, 4, GridSize { user_blocks: 1, item_blocks: 1 }, Order::Shuffled, 1).unwrap();
        assert!(matches!(one.local_block(0), Cow::Borrowed(_)), "one block: rows are the model's ids, no copy");
        assert_eq!(one.sequence(0), vec![0]);
    }

    #[test]
    fn empty_blocks_are_skipped_and_the_sequence_changes_with_the_epoch() {
        // Only user 0 rates: every block of the other user blocks is empty.
        let ratings: Vec<Rating> = (0..50).map(|i| Rating { user: 0, item: i, value: 1.0 }).collect();
        let s = Schedule::new(&ratings, 40, 50, GridSize { user_blocks: 4, item_blocks: 5 }, Order::Shuffled, 3).unwrap();
        let seq = s.sequence(0);
        assert_eq!(seq.len(), 5);
        assert!(seq.iter().all(|&b| !s.block(b).is_empty()));
        let many = Schedule::new(&all_pairs(30, 30), 30, 30, GridSize { user_blocks: 5, item_blocks: 5 }, Order::Shuffled, 3).unwrap();
        assert_ne!(many.sequence(0), many.sequence(1));
        assert_eq!(many.sequence(1), many.sequence(1));
    }

    #[test]
    fn dsgd_strata_cover_every_block_once_and_never_share_an_item_pair() {
        let g = 5;
        let s = Schedule::new(&all_pairs(40, 40), 40, 40, Schedule::dsgd_grid(g), Order::Shuffled, 6).unwrap();
        assert_eq!(s.grid(), GridSize { user_blocks: 5, item_blocks: 10 });
        let strata = s.strata(3);
        let mut sorted = strata.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..g).collect::<Vec<_>>());
        assert_eq!(strata, s.strata(3), "seeded");
        assert!((0..6).any(|e| s.strata(e) != strata), "another epoch, another order");
        let mut visits = vec![0; g * g];
        for &shift in &strata {
            let pairs: Vec<usize> = (0..g).map(|p| s.pair_of(p, shift)).collect();
            let mut distinct = pairs.clone();
            distinct.sort_unstable();
            distinct.dedup();
            assert_eq!(distinct.len(), g, "one stratum: every pair once");
            for (p, &j) in pairs.iter().enumerate() {
                assert_eq!(s.stripe_of(j, shift), p);
                visits[p * g + j] += 1;
            }
        }
        assert!(visits.iter().all(|&v| v == 1), "an epoch trains every (stripe, pair) once");
    }

    #[test]
    fn a_failing_or_panicking_block_stops_the_epoch_with_its_message_and_no_thread_waits() {
        let s = Schedule::new(&all_pairs(40, 40), 40, 40, GridSize { user_blocks: 6, item_blocks: 6 }, Order::ByUser, 2).unwrap();
        let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
        let ran = AtomicUsize::new(0);
        let e = pool
            .install(|| {
                s.run_parallel(0, 3, |b| {
                    ran.fetch_add(1, Ordering::SeqCst);
                    if b == s.sequence(0)[4] {
                        panic!("bad block {b}");
                    }
                    std::thread::sleep(std::time::Duration::from_millis(1));
                    Ok(())
                })
            })
            .unwrap_err()
            .to_string();
        assert!(e.contains("panicked") && e.contains("bad block"), "{e}");
        assert!(ran.load(Ordering::SeqCst) < s.len(), "blocks after the failure are not taken");
        let e = pool.install(|| s.run_parallel(1, 3, |_| Err(Error::Data("disk gone".into())))).unwrap_err();
        assert!(e.to_string().contains("disk gone"));
    }

    #[test]
    fn parallel_runs_never_share_a_user_or_item_block_and_cover_every_block_once() {
        let s = Schedule::new(&all_pairs(40, 40), 40, 40, GridSize { user_blocks: 6, item_blocks: 5 }, Order::ByUser, 2).unwrap();
        let busy_users: Vec<AtomicUsize> = (0..6).map(|_| AtomicUsize::new(0)).collect();
        let busy_items: Vec<AtomicUsize> = (0..5).map(|_| AtomicUsize::new(0)).collect();
        let runs: Vec<AtomicUsize> = (0..s.len()).map(|_| AtomicUsize::new(0)).collect();
        let overlaps = AtomicUsize::new(0);
        let pool = rayon::ThreadPoolBuilder::new().num_threads(4).build().unwrap();
        pool.install(|| {
            s.run_parallel(0, 4, |b| {
                let (u, i) = s.coordinates(b);
                let user_taken = busy_users[u].fetch_add(1, Ordering::SeqCst) > 0;
                let item_taken = busy_items[i].fetch_add(1, Ordering::SeqCst) > 0;
                if user_taken || item_taken {
                    overlaps.fetch_add(1, Ordering::SeqCst);
                }
                std::thread::sleep(std::time::Duration::from_millis(2));
                busy_users[u].fetch_sub(1, Ordering::SeqCst);
                busy_items[i].fetch_sub(1, Ordering::SeqCst);
                runs[b].fetch_add(1, Ordering::SeqCst);
                Ok(())
            })
        })
        .unwrap();
        assert_eq!(overlaps.load(Ordering::SeqCst), 0);
        assert!(runs.iter().all(|r| r.load(Ordering::SeqCst) == 1));
    }
}
