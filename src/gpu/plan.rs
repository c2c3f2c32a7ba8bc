//! Cutting a problem into windows that each fit one storage binding: users and items into
//! blocks of rows, ratings into runs that touch one user block and one item block.
//!
//! On a device whose bindings hold the whole problem (the H100 binds 2 GiB) there is one
//! block of each and one window per `max_ratings` run; on drivers with 128 MiB bindings, or
//! when `user_block_rows` asks for blocks that fit the cache, there are more.

use crate::data::{group_by_key, Rating, UNKNOWN};
use crate::error::{Error, Result};
use std::borrow::Cow;

/// How users and items are cut into blocks of rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockPlan {
    pub user_rows: usize,
    pub item_rows: usize,
    pub user_blocks: usize,
    pub item_blocks: usize,
}

impl BlockPlan {
    /// Blocks as large as one binding allows (or `user_rows_wanted`, if smaller).
    pub fn new(users: usize, items: usize, row_bytes: u64, max_binding: u64, user_rows_wanted: Option<usize>) -> Result<BlockPlan> {
        let rows_fit = (max_binding / row_bytes) as usize;
        if rows_fit == 0 {
            return Err(Error::Gpu(format!(
                "one factor row takes {row_bytes} bytes but the device binds at most {max_binding} bytes per buffer; lower --rank"
            )));
        }
        let user_rows = user_rows_wanted.unwrap_or(usize::MAX).clamp(1, rows_fit).min(users.max(1));
        let item_rows = rows_fit.min(items.max(1));
        Ok(BlockPlan { user_rows, item_rows, user_blocks: users.div_ceil(user_rows).max(1), item_blocks: items.div_ceil(item_rows).max(1) })
    }
}

/// Rows in block `b` of `total` rows cut into blocks of `rows_per_block`: the last may be short.
pub fn block_len(b: usize, rows_per_block: usize, total: usize) -> usize {
    (total - b * rows_per_block).min(rows_per_block)
}

/// A run of ratings within one user block and one item block, ids relative to the blocks.
#[derive(Clone, Debug, PartialEq)]
pub struct Window<'a> {
    pub user_block: usize,
    pub item_block: usize,
    /// Borrowed when the problem is one block (the ids need no change), else grouped anew.
    pub ratings: Cow<'a, [Rating]>,
    /// Where each rating stood in the input, to put results back in order (when asked for).
    pub origin: Vec<u32>,
}

/// Groups `ratings` by block pair, keeping their order within each, and cuts every group into
/// runs of at most `max_ratings`. Cold entries ([`UNKNOWN`] side) go with the known side's block.
/// `keep_origin` records each rating's index in `ratings` (for predictions; training needs none).
pub fn windows<'a>(ratings: &'a [Rating], plan: &BlockPlan, max_ratings: usize, keep_origin: bool) -> Vec<Window<'a>> {
    let max_ratings = max_ratings.max(1);
    let tiles = plan.user_blocks * plan.item_blocks;
    if tiles == 1 {
        return ratings
            .chunks(max_ratings)
            .enumerate()
            .map(|(k, run)| Window {
                user_block: 0,
                item_block: 0,
                ratings: Cow::Borrowed(run),
                origin: if keep_origin { (k * max_ratings..k * max_ratings + run.len()).map(|i| i as u32).collect() } else { Vec::new() },
            })
            .collect();
    }
    let tile_of = |r: &Rating| {
        let ub = if r.user == UNKNOWN { 0 } else { r.user as usize / plan.user_rows };
        let ib = if r.item == UNKNOWN { 0 } else { r.item as usize / plan.item_rows };
        (ub * plan.item_blocks + ib) as u32
    };
    let keys = |_: usize, chunk: &[Rating]| -> Vec<u32> { chunk.iter().map(tile_of).collect() };
    let local = |id: u32, rows: usize| if id == UNKNOWN { UNKNOWN } else { (id as usize % rows) as u32 };
    let grouped = group_by_key(ratings, tiles, keys, |_, r| Rating { user: local(r.user, plan.user_rows), item: local(r.item, plan.item_rows), value: r.value });
    let origins = if keep_origin { group_by_key(ratings, tiles, keys, |i, _| i as u32) } else { vec![Vec::new(); tiles] };
    let mut out = Vec::new();
    for (t, (group, origin)) in grouped.into_iter().zip(origins).enumerate() {
        let (user_block, item_block) = (t / plan.item_blocks, t % plan.item_blocks);
        if group.len() <= max_ratings {
            if !group.is_empty() {
                out.push(Window { user_block, item_block, ratings: Cow::Owned(group), origin });
            }
            continue;
        }
        for (k, run) in group.chunks(max_ratings).enumerate() {
            let from = if keep_origin { origin[k * max_ratings..][..run.len()].to_vec() } else { Vec::new() };
            out.push(Window { user_block, item_block, ratings: Cow::Owned(run.to_vec()), origin: from });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(user: u32, item: u32) -> Rating {
        Rating { user, item, value: (user * 100 + item) as f32 }
    }

    #[test]
    fn one_window_when_everything_fits() {
        let plan = BlockPlan::new(10, 5, 512, 1 << 20, None).unwrap();
        assert_eq!((plan.user_blocks, plan.item_blocks), (1, 1));
        let ratings = vec![r(0, 1), r(9, 4), r(3, 3)];
        let w = windows(&ratings, &plan, 100, false);
        assert!(matches!(w[0].ratings, Cow::Borrowed(_)), "one block: no copy");
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].ratings, ratings);
    }

    #[test]
    fn blocks_and_runs_cover_every_rating_once_with_local_ids() {
        // 16-byte rows, 64-byte bindings: 4 rows a block.
        let plan = BlockPlan::new(10, 7, 16, 64, None).unwrap();
        assert_eq!(plan, BlockPlan { user_rows: 4, item_rows: 4, user_blocks: 3, item_blocks: 2 });
        assert_eq!(block_len(2, plan.user_rows, 10), 2);
        let ratings: Vec<Rating> = (0..10).flat_map(|u| (0..7).map(move |i| r(u, i))).collect();
        let w = windows(&ratings, &plan, 5, true);
        let mut seen = Vec::new();
        for win in &w {
            assert!(win.ratings.len() <= 5);
            for (x, &o) in win.ratings.iter().zip(&win.origin) {
                assert_eq!(ratings[o as usize].value, x.value);
                assert!((x.user as usize) < plan.user_rows && (x.item as usize) < plan.item_rows);
                seen.push(r(x.user + (win.user_block * 4) as u32, x.item + (win.item_block * 4) as u32));
            }
        }
        seen.sort_by_key(|x| (x.user, x.item));
        assert_eq!(seen, ratings);
    }

    #[test]
    fn cold_entries_keep_unknown_and_join_the_known_block() {
        let plan = BlockPlan::new(8, 8, 16, 64, None).unwrap();
        let cold = [r(UNKNOWN, 6), r(5, UNKNOWN)];
        let w = windows(&cold, &plan, 10, true);
        assert_eq!(w.len(), 2);
        assert_eq!((w[0].user_block, w[0].item_block, w[0].ratings[0].user, w[0].ratings[0].item), (0, 1, UNKNOWN, 2));
        assert_eq!((w[1].user_block, w[1].item_block, w[1].ratings[0].user, w[1].ratings[0].item), (1, 0, 1, UNKNOWN));
    }

    #[test]
    fn a_row_larger_than_a_binding_is_a_clear_error() {
        let e = BlockPlan::new(10, 10, 4096, 1024, None).unwrap_err().to_string();
        assert!(e.contains("4096 bytes") && e.contains("1024"), "{e}");
    }
}
