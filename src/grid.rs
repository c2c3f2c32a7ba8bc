//! The grid every block schedule is cut by: users and items permuted at random (seeded) and
//! dealt into blocks of nearly equal rows, each block a run of *positions*. The schedule
//! ([`crate::schedule`]) and the block cache on disk ([`crate::cache`]) both cut by it, so a
//! cache written once is read back in the schedule's blocks.

use crate::data::{Rating, UNKNOWN};
use crate::rng::part_rng;
use rand::seq::SliceRandom;

/// Blocks on one side of the grid, at most: 4096² blocks index 256 MiB of ranges.
pub const MAX_SIDE: usize = 4096;

/// Blocks per side of the grid, users × items; `None` lets each backend choose.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct GridSize {
    pub user_blocks: usize,
    pub item_blocks: usize,
}

impl std::str::FromStr for GridSize {
    type Err = String;

    /// `8` (8 × 8) or `16x4` (16 user blocks × 4 item blocks).
    fn from_str(s: &str) -> std::result::Result<GridSize, String> {
        let number = |t: &str| -> std::result::Result<usize, String> {
            match t.trim().parse::<usize>() {
                Ok(0) => Err("blocks per side must be at least 1".into()),
                Ok(n) => Ok(n),
                Err(_) => Err(format!("{t:?} is not a whole number of blocks (write 8, or 16x4 for users x items)")),
            }
        };
        let (u, i) = match s.split_once(['x', 'X']) {
            Some((u, i)) => (number(u)?, number(i)?),
            None => (number(s)?, number(s)?),
        };
        Ok(GridSize { user_blocks: u, item_blocks: i })
    }
}

impl std::fmt::Display for GridSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}", self.user_blocks, self.item_blocks)
    }
}

/// One side of the grid: each id's position, and the blocks as runs of positions.
#[derive(Clone, Debug)]
pub struct Axis {
    /// Ids by position: block b holds `members[starts[b]..starts[b + 1]]`.
    members: Vec<u32>,
    starts: Vec<usize>,
    /// Each id's position in `members`.
    position: Vec<u32>,
}

impl Axis {
    /// `ids` dealt at random (seeded) into `blocks` blocks of nearly equal size (one block keeps
    /// every row at its index: there is nothing to balance).
    pub(crate) fn new(ids: usize, blocks: usize, seed: u64, stream: u64) -> Axis {
        let blocks = blocks.clamp(1, ids.max(1));
        let mut members: Vec<u32> = (0..ids as u32).collect();
        if blocks > 1 {
            members.shuffle(&mut part_rng(seed, stream, 0));
        }
        let starts: Vec<usize> = (0..=blocks).map(|b| b * ids / blocks).collect();
        // Within a block, rows in id order: a CPU thread visiting a block's ratings by user then
        // walks the factor rows in memory order, which the hardware prefetches (about 2.5x
        // faster at rank 128 on 2 cores than the same rows in random order).
        for w in starts.windows(2) {
            members[w[0]..w[1]].sort_unstable();
        }
        let mut position = vec![0u32; ids];
        for (p, &id) in members.iter().enumerate() {
            position[id as usize] = p as u32;
        }
        Axis { members, starts, position }
    }

    pub fn blocks(&self) -> usize {
        self.starts.len() - 1
    }

    /// Rows on this side, all blocks together.
    pub fn ids(&self) -> usize {
        self.members.len()
    }

    /// The ids of block `b`, in the order of their rows there.
    pub fn members(&self, b: usize) -> &[u32] {
        &self.members[self.starts[b]..self.starts[b + 1]]
    }

    /// The first position of block `b`: its rows are positions `start(b)..start(b + 1)`.
    pub fn start(&self, b: usize) -> usize {
        self.starts[b]
    }

    /// The most rows any block has.
    pub fn max_rows(&self) -> usize {
        self.starts.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0)
    }

    /// The position of id `id`; [`UNKNOWN`] (a cold test entry) stays unknown.
    pub fn position(&self, id: u32) -> u32 {
        if id == UNKNOWN { UNKNOWN } else { self.position[id as usize] }
    }

    /// The id at position `p`.
    pub fn id_at(&self, p: u32) -> u32 {
        self.members[p as usize]
    }

    /// The block holding position `p`; [`UNKNOWN`] goes with block 0.
    pub fn block_at(&self, p: u32) -> usize {
        if p == UNKNOWN {
            return 0;
        }
        // starts is increasing; the block is the last start at or before p.
        self.starts.partition_point(|&s| s <= p as usize) - 1
    }

    /// Position `p` as a row of its block; [`UNKNOWN`] stays unknown.
    pub fn row_at(&self, p: u32) -> u32 {
        if p == UNKNOWN { UNKNOWN } else { p - self.starts[self.block_at(p)] as u32 }
    }

    /// Whether every id is at its own position (one block): nothing to gather or scatter.
    pub fn is_identity(&self) -> bool {
        self.blocks() == 1
    }

    /// `rows` (one per id, `rows.len() / ids` values each) reordered by position.
    pub fn gather(&self, rows: &[f32]) -> Vec<f32> {
        let width = rows.len() / self.members.len().max(1);
        let mut out = Vec::with_capacity(rows.len());
        for &id in &self.members {
            out.extend_from_slice(&rows[id as usize * width..][..width]);
        }
        out
    }

    /// The inverse of [`gather`](Self::gather): rows by position put back in id order.
    pub fn scatter(&self, by_position: &[f32]) -> Vec<f32> {
        let width = by_position.len() / self.members.len().max(1);
        let mut out = vec![0.0; by_position.len()];
        for (p, &id) in self.members.iter().enumerate() {
            out[id as usize * width..][..width].copy_from_slice(&by_position[p * width..][..width]);
        }
        out
    }
}

/// How a block's ratings are ordered, fixed when the grid is built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// Uniformly at random: ratings in flight together rarely share a row (the GPU's Hogwild),
    /// and a sequential pass sees them as SGD expects.
    Shuffled,
    /// By user, each user's items at random, [`USERS_IN_TURN`] users' ratings taking turns
    /// (see [`take_turns`]): a thread keeps those users' rows in cache through the block.
    ByUser,
}

impl Order {
    /// Which trainers lay their blocks out in this order, for messages about a block cache.
    pub fn trainers(self) -> &'static str {
        match self {
            Order::Shuffled => "the GPU (random order within blocks)",
            Order::ByUser => "the CPU trainers (by user within blocks)",
        }
    }
}

/// How many users' ratings take turns in a block ordered [`Order::ByUser`].
pub const USERS_IN_TURN: usize = 4;

/// Reorders a block whose ratings lie user by user (each user's together) so that
/// [`USERS_IN_TURN`] users' ratings take turns: a, b, c, d, a, b, c, d, ... One user's ratings
/// one after another form a chain, each update waiting on the last one's write of the user's
/// row; users in turn make independent chains that the CPU (and the block loop, which scores
/// the next rating while this one updates) runs side by side. A user who runs out hands its
/// turn to the next user of the block, so the chains stay [`USERS_IN_TURN`] until the block's
/// last users: with turns fixed by groups of four, a group's longest user ran alone once the
/// others were done. Each user's ratings keep their order.
pub fn take_turns(block: &mut [Rating]) {
    let mut runs = Vec::new();
    let mut start = 0;
    for j in 1..=block.len() {
        if j == block.len() || block[j].user != block[start].user {
            runs.push(start..j);
            start = j;
        }
    }
    let source = block.to_vec();
    let mut waiting = runs.into_iter();
    let mut turns: Vec<std::ops::Range<usize>> = waiting.by_ref().take(USERS_IN_TURN).collect();
    let mut out = 0;
    while !turns.is_empty() {
        let mut t = 0;
        while t < turns.len() {
            block[out] = source[turns[t].start];
            out += 1;
            turns[t].start += 1;
            if turns[t].is_empty() {
                match waiting.next() {
                    Some(run) => turns[t] = run,
                    None => {
                        turns.remove(t);
                        continue;
                    }
                }
            }
            t += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_take_turns_and_keep_their_order() {
        let r = |user: u32, item: u32| Rating { user, item, value: 0.0 };
        // Users 1..=5 with 3, 1, 2, 2, 2 ratings; the first four take turns, and user 5 takes
        // user 2's turn when user 2 runs out, so user 1 never runs alone while 5 waits.
        let mut block = vec![r(1, 10), r(1, 11), r(1, 12), r(2, 20), r(3, 30), r(3, 31), r(4, 40), r(4, 41), r(5, 50), r(5, 51)];
        take_turns(&mut block);
        let order: Vec<(u32, u32)> = block.iter().map(|r| (r.user, r.item)).collect();
        assert_eq!(order, [(1, 10), (2, 20), (3, 30), (4, 40), (1, 11), (5, 50), (3, 31), (4, 41), (1, 12), (5, 51)]);
        let mut empty: Vec<Rating> = Vec::new();
        take_turns(&mut empty);
    }

    #[test]
    fn four_users_stay_in_turn_until_fewer_remain() {
        // Blocks of users with 1 to 30 ratings each: every four neighbouring ratings belong to
        // four users, or to every user the block has left from there on; each user's ratings
        // keep their order and nothing is lost.
        for seed in 0..20u64 {
            let mut rng = part_rng(seed, 0, 0);
            let mut block = Vec::new();
            for user in 0..rand::Rng::random_range(&mut rng, 1..40u32) {
                for item in 0..rand::Rng::random_range(&mut rng, 1..31u32) {
                    block.push(Rating { user, item, value: 0.0 });
                }
            }
            let source = block.clone();
            take_turns(&mut block);
            let mut sorted = block.clone();
            sorted.sort_by_key(|r| (r.user, r.item));
            assert_eq!(sorted, source, "seed {seed}: the same ratings, each user's in order");
            let users = |rs: &[Rating]| rs.iter().map(|r| r.user).collect::<std::collections::HashSet<_>>().len();
            for p in 0..block.len() {
                let window = &block[p..(p + USERS_IN_TURN).min(block.len())];
                assert_eq!(users(window), USERS_IN_TURN.min(users(&block[p..])), "seed {seed}: ratings {p}..: {window:?}");
            }
            for user in 0..40 {
                let items: Vec<u32> = block.iter().filter(|r| r.user == user).map(|r| r.item).collect();
                assert!(items.windows(2).all(|w| w[0] < w[1]), "seed {seed}: user {user}'s ratings keep their order");
            }
        }
    }

    #[test]
    fn grid_sizes_parse_and_bad_ones_say_why() {
        assert_eq!("8".parse::<GridSize>(), Ok(GridSize { user_blocks: 8, item_blocks: 8 }));
        assert_eq!("16x4".parse::<GridSize>(), Ok(GridSize { user_blocks: 16, item_blocks: 4 }));
        assert!("0".parse::<GridSize>().unwrap_err().contains("at least 1"));
        assert!("4x".parse::<GridSize>().unwrap_err().contains("not a whole number"));
    }
}
