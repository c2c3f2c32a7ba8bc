//! A (user, item) pair rated more than once in one file: found in linear time, and resolved
//! as the [`Duplicates`] policy says.

use super::options::Duplicates;
use super::{Rating, RatingSet};
use crate::error::{Error, Result};
use rayon::prelude::*;
use std::path::Path;

/// Finds (user, item) pairs rated more than once and applies `policy`; returns how many
/// ratings repeated an earlier pair. `locate` names a rating's place in the file by its
/// ordinal, for the error.
pub(super) fn resolve_duplicates(
    ratings: &mut RatingSet,
    marks: &mut Option<Vec<bool>>,
    policy: Duplicates,
    path: &Path,
    locate: impl Fn(usize) -> String,
) -> Result<usize> {
    let groups = repeated_pairs(&ratings.entries, ratings.users.len());
    let repeats: usize = groups.iter().map(|g| g.len() - 1).sum();
    if repeats == 0 {
        return Ok(0);
    }
    let mut remove = vec![false; ratings.entries.len()];
    match policy {
        Duplicates::Keep => return Ok(repeats),
        Duplicates::Error => {
            let first = groups.iter().min_by_key(|g| g[1]).expect("a repeat");
            let (user, item) = ratings.external(&ratings.entries[first[0] as usize]);
            return Err(Error::Data(format!(
                "{}: user {user} rates item {item} more than once ({} and {}); {repeats} such repeats in all (--duplicates keep, last, mean or sum resolves them)",
                path.display(),
                locate(first[0] as usize),
                locate(first[1] as usize)
            )));
        }
        Duplicates::Last => {
            for g in &groups {
                g[..g.len() - 1].iter().for_each(|&i| remove[i as usize] = true);
            }
        }
        Duplicates::Mean | Duplicates::Sum => {
            for g in &groups {
                let sum = g.iter().map(|&i| ratings.entries[i as usize].value as f64).sum::<f64>();
                let value = if policy == Duplicates::Sum { sum } else { sum / g.len() as f64 };
                ratings.entries[g[0] as usize].value = value as f32;
                g[1..].iter().for_each(|&i| remove[i as usize] = true);
            }
        }
    }
    let mut kept = remove.iter().map(|r| !r);
    ratings.entries.retain(|_| kept.next().expect("one flag a rating"));
    if let Some(marks) = marks {
        let mut kept = remove.iter().map(|r| !r);
        marks.retain(|_| kept.next().expect("one flag a rating"));
    }
    Ok(repeats)
}

/// The positions of each pair rated more than once, ascending within a pair. Linear: a
/// counting sort by user, then each user's few ratings sorted by item.
fn repeated_pairs(entries: &[Rating], users: usize) -> Vec<Vec<u32>> {
    // (item << 32 | position): sorting a user's run orders by item, then by file order.
    let (starts, mut keyed) = super::by_user(entries, users, |i, r| (r.item as u64) << 32 | i as u64);
    let mut runs: Vec<&mut [u64]> = Vec::with_capacity(users);
    let mut rest = &mut keyed[..];
    for u in 0..users {
        let (run, tail) = rest.split_at_mut(starts[u + 1] - starts[u]);
        runs.push(run);
        rest = tail;
    }
    runs.into_par_iter()
        .flat_map_iter(|run| {
            run.sort_unstable();
            let mut groups = Vec::new();
            let mut start = 0;
            for end in 1..=run.len() {
                if end == run.len() || run[end] >> 32 != run[start] >> 32 {
                    if end - start > 1 {
                        groups.push(run[start..end].iter().map(|k| *k as u32).collect());
                    }
                    start = end;
                }
            }
            groups
        })
        .collect()
}
