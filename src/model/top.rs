//! Top-N lists: every item scored for a block of users by one matrix product (blocked GEMM,
//! ndarray's matrixmultiply), the best N kept for each user without sorting them all; and the
//! items (or users) most like one by the cosine of their factors.

use super::Model;
use ndarray::{Array2, ArrayView2};
use rayon::prelude::*;
use std::cmp::Ordering;

/// Users scored by one matrix product: at 10,000 items their scores take 2.5 MiB, which stay
/// in cache while the lists are picked from them.
pub const USERS_PER_BLOCK: usize = 64;

/// Best first: the higher score, then the lower index (so equal scores list in a fixed order).
fn better(a: &(u32, f32), b: &(u32, f32)) -> Ordering {
    b.1.total_cmp(&a.1).then(a.0.cmp(&b.0))
}

/// The `n` best (index, score) of `scores`, best first, leaving out the indices in `skip`
/// (ascending). Candidates gather in a buffer of a few times `n`; each time it fills, the best
/// `n` are kept and their worst score becomes the bar a later index must pass (a later index
/// loses a tie), so most scores cost one comparison.
pub fn best_of(scores: &[f32], n: usize, skip: &[u32]) -> Vec<(u32, f32)> {
    let n = n.min(scores.len());
    if n == 0 {
        return Vec::new();
    }
    let capacity = (4 * n).max(64);
    let mut kept: Vec<(u32, f32)> = Vec::with_capacity(capacity);
    let mut bar: Option<f32> = None;
    let mut start = 0usize;
    let end = scores.len() as u32;
    for &stop in skip.iter().chain(std::iter::once(&end)) {
        let stop = (stop as usize).min(scores.len());
        for (i, &score) in scores.iter().enumerate().take(stop).skip(start) {
            if bar.is_some_and(|bar| score.total_cmp(&bar) != Ordering::Greater) {
                continue;
            }
            kept.push((i as u32, score));
            if kept.len() == capacity {
                kept.select_nth_unstable_by(n - 1, better);
                kept.truncate(n);
                bar = Some(kept[n - 1].1);
            }
        }
        start = start.max(stop + 1);
    }
    if kept.len() > n {
        kept.select_nth_unstable_by(n - 1, better);
        kept.truncate(n);
    }
    kept.sort_unstable_by(better);
    kept
}

impl Model {
    /// Every item's score for each of `users` (one row each), as [`Model::score`] gives it, but
    /// with the dot products summed by one matrix product (so the last bits may differ).
    pub fn score_all_items(&self, users: &[u32]) -> Array2<f32> {
        let mut rows = Array2::zeros((users.len(), self.rank()));
        for (mut row, &u) in rows.rows_mut().into_iter().zip(users) {
            row.assign(&self.user_factors.row(u as usize));
        }
        let bias: Vec<f32> = users.iter().map(|&u| self.user_bias[u as usize]).collect();
        self.scores_of(rows.view(), &bias)
    }

    /// Every item's score for users given by their factor rows and biases (users the model
    /// has, or folded in).
    pub(crate) fn scores_of(&self, rows: ArrayView2<f32>, user_bias: &[f32]) -> Array2<f32> {
        let mut scores = rows.dot(&self.item_factors.t());
        for (mut row, &bias) in scores.rows_mut().into_iter().zip(user_bias) {
            let base = self.mean + bias;
            for (s, &b) in row.iter_mut().zip(&self.item_bias) {
                *s += base + b;
            }
        }
        scores
    }

    /// The `n` items with the highest unclipped scores for `user` (a dense index), best first
    /// (equal scores by item). Ranking by the unclipped score keeps the order among items whose
    /// predictions all clip to the top of the scale. With `exclude_seen`, the user's training
    /// items are left out (when the model recorded them: see [`Model::seen`]).
    pub fn recommend(&self, user: u32, n: usize, exclude_seen: bool) -> Vec<(u32, f32)> {
        self.recommend_many(&[user], n, exclude_seen).pop().unwrap_or_default()
    }

    /// [`recommend`](Self::recommend) for each of `users`, in parallel: blocks of users scored
    /// by one matrix product each.
    pub fn recommend_many(&self, users: &[u32], n: usize, exclude_seen: bool) -> Vec<Vec<(u32, f32)>> {
        users
            .par_chunks(USERS_PER_BLOCK)
            .map(|block| {
                let scores = self.score_all_items(block);
                block.iter().zip(scores.rows()).map(|(&u, row)| best_of(row.as_slice().expect("row-major"), n, &self.training_items(u, exclude_seen))).collect::<Vec<_>>()
            })
            .collect::<Vec<_>>()
            .concat()
    }

    /// The user's training items (ascending) when they are to be left out and are recorded.
    pub(crate) fn training_items(&self, user: u32, exclude: bool) -> Vec<u32> {
        match (&self.seen, exclude) {
            (Some(seen), true) => seen.items_of(user),
            _ => Vec::new(),
        }
    }

    /// The `n` items whose factors have the highest cosine with `item`'s (itself left out),
    /// best first, as implicit's `similar_items` ranks them. Biases play no part.
    pub fn similar_items(&self, item: u32, n: usize) -> Vec<(u32, f32)> {
        most_similar(self.item_factors.view(), item, n)
    }

    /// [`similar_items`](Self::similar_items) for users.
    pub fn similar_users(&self, user: u32, n: usize) -> Vec<(u32, f32)> {
        most_similar(self.user_factors.view(), user, n)
    }
}

/// The rows of `factors` nearest `row` by cosine; a zero row has cosine 0 with every row.
fn most_similar(factors: ArrayView2<f32>, row: u32, n: usize) -> Vec<(u32, f32)> {
    let norm = |v: ndarray::ArrayView1<f32>| v.dot(&v).sqrt();
    let target = factors.row(row as usize);
    let target_norm = norm(target);
    let dots = factors.dot(&target);
    let cosines: Vec<f32> = dots
        .iter()
        .zip(factors.rows())
        .map(|(&d, other)| {
            let scale = target_norm * norm(other);
            if scale > 0.0 { d / scale } else { 0.0 }
        })
        .collect();
    best_of(&cosines, n, &[row])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::RatingSet;
    use crate::model::Params;
    use crate::problem::Problem;

    /// 40 users × 30 items, each user with some training items, biases that matter.
    fn small_model() -> Model {
        let triplets: Vec<(u64, u64, f32)> = (0..40u64).flat_map(|u| (0..30u64).filter(move |i| (u * 7 + i * 3) % 5 == 0).map(move |i| (u, i, 1.0 + ((u + i) % 5) as f32))).collect();
        let problem = Problem::new(RatingSet::from_triplets(triplets), None);
        let mut model = Model::init(&problem, &Params { rank: 6, ..Params::default() }, None);
        for (j, b) in model.user_bias.iter_mut().enumerate() {
            *b = (j as f32 * 0.3).sin();
        }
        for (j, b) in model.item_bias.iter_mut().enumerate() {
            *b = (j as f32 * 0.7).cos();
        }
        model.record_seen(&problem);
        model
    }

    #[test]
    fn each_users_list_is_their_best_unseen_items() {
        let model = small_model();
        let users: Vec<u32> = (0..model.users.len() as u32).rev().collect();
        for exclude in [true, false] {
            let lists = model.recommend_many(&users, 5, exclude);
            assert_eq!(lists.len(), users.len());
            for (&u, list) in users.iter().zip(&lists) {
                let seen = model.training_items(u, exclude);
                let all: Vec<f32> = (0..model.items.len() as u32).map(|i| model.score(u, i)).collect();
                let expected = sorted_best(&all, 5, &seen);
                assert_eq!(list.iter().map(|x| x.0).collect::<Vec<_>>(), expected.iter().map(|x| x.0).collect::<Vec<_>>(), "user {u}");
                for ((_, got), (_, want)) in list.iter().zip(&expected) {
                    assert!((got - want).abs() < 1e-5, "user {u}: {got} against {want}");
                }
                if exclude {
                    assert!(!seen.is_empty() && list.iter().all(|(i, _)| !seen.contains(i)), "user {u}");
                }
            }
            assert_eq!(model.recommend(users[3], 5, exclude), lists[3]);
        }
    }

    #[test]
    fn similar_items_rank_by_cosine_and_leave_out_the_item() {
        let mut model = small_model();
        model.item_factors = Array2::zeros((model.items.len(), 6));
        for (item, row) in [(0, [1.0, 0.0]), (1, [2.0, 0.1]), (2, [0.0, 1.0]), (3, [-1.0, 0.0]), (4, [1.0, 1.0])] {
            model.item_factors[[item, 0]] = row[0];
            model.item_factors[[item, 1]] = row[1];
        }
        let similar = model.similar_items(0, 4);
        let items: Vec<u32> = similar.iter().map(|x| x.0).collect();
        // cos(0, 1) ≈ 0.9988, cos(0, 4) = 0.7071, then the zero rows and item 2 at 0 (by index).
        assert_eq!(items, vec![1, 4, 2, 5]);
        assert!((similar[1].1 - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-6);
        assert_eq!(model.similar_items(0, 100).last().unwrap(), &(3, -1.0));
        assert_eq!(model.similar_users(7, 3).len(), 3);
        assert!(model.similar_users(7, 3).iter().all(|x| x.0 != 7));
    }

    /// The plain way: sort everything.
    fn sorted_best(scores: &[f32], n: usize, skip: &[u32]) -> Vec<(u32, f32)> {
        let mut all: Vec<(u32, f32)> = scores.iter().enumerate().map(|(i, &s)| (i as u32, s)).filter(|(i, _)| !skip.contains(i)).collect();
        all.sort_by(better);
        all.truncate(n);
        all
    }

    #[test]
    fn the_best_of_many_scores_are_those_a_full_sort_gives() {
        // Scores with many ties (rounded), long enough for the buffer to fill many times.
        let scores: Vec<f32> = (0..5000u32).map(|i| ((i as f32 * 0.618).sin() * 20.0).round() / 4.0).collect();
        let skip: Vec<u32> = (0..5000).filter(|i| i % 7 == 3).collect();
        for n in [1, 5, 16, 100, 4999, 6000] {
            assert_eq!(best_of(&scores, n, &skip), sorted_best(&scores, n, &skip), "n = {n}");
        }
        assert_eq!(best_of(&scores, 0, &[]), vec![]);
        assert_eq!(best_of(&[1.0, 3.0, 2.0], 2, &[1]), vec![(2, 2.0), (0, 1.0)]);
        // Skipped indices past the end are harmless.
        assert_eq!(best_of(&[1.0, 3.0], 5, &[7]), vec![(1, 3.0), (0, 1.0)]);
    }
}
