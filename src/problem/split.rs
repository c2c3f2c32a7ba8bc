//! Seeded hold-out splits of one rating set into training and test entries.

use super::Problem;
use crate::data::{Rating, RatingSet};
use crate::error::{Error, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn check_fraction(fraction: f64) -> Result<()> {
    if !(fraction > 0.0 && fraction < 1.0) {
        return Err(Error::InvalidParameter(format!("--test-fraction must lie strictly between 0 and 1, got {fraction}")));
    }
    Ok(())
}

/// Splits by marks read from the file itself (`--split-column`): marked ratings are the test
/// set. An empty side is an error, since it would train on nothing or measure nothing.
pub fn split_marked(all: &RatingSet, is_test: &[bool]) -> Result<Problem> {
    let tests = is_test.iter().filter(|&&t| t).count();
    if tests == 0 || tests == all.len() {
        let side = if tests == 0 { "test" } else { "train" };
        return Err(Error::Data(format!("the split column marks no rating {side}")));
    }
    let (train, test) = partition(all, is_test);
    Ok(Problem::from_split(all, train, test))
}

/// Holds out a seeded random `fraction` of all ratings.
pub fn split_random(all: &RatingSet, fraction: f64, seed: u64) -> Result<Problem> {
    check_fraction(fraction)?;
    let mut order: Vec<u32> = (0..all.len() as u32).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let n_test = ((all.len() as f64) * fraction).round() as usize;
    let mut is_test = vec![false; all.len()];
    for &i in &order[..n_test] {
        is_test[i as usize] = true;
    }
    let (train, test) = partition(all, &is_test);
    Ok(Problem::from_split(all, train, test))
}

/// Holds out a seeded random `fraction` of each user's ratings (rounded down, so users with
/// few ratings keep them all in training and no user is entirely cold).
pub fn split_per_user(all: &RatingSet, fraction: f64, seed: u64) -> Result<Problem> {
    check_fraction(fraction)?;
    let mut by_user: Vec<Vec<u32>> = vec![Vec::new(); all.users.len()];
    for (i, r) in all.entries.iter().enumerate() {
        by_user[r.user as usize].push(i as u32);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut is_test = vec![false; all.len()];
    for entries in &mut by_user {
        entries.shuffle(&mut rng);
        let n_test = ((entries.len() as f64) * fraction).floor() as usize;
        for &i in &entries[..n_test.min(entries.len().saturating_sub(1))] {
            is_test[i as usize] = true;
        }
    }
    let (train, test) = partition(all, &is_test);
    Ok(Problem::from_split(all, train, test))
}

/// Seeded k-fold cross-validation: each rating's fold, 0..k, the folds as equal in size as
/// can be (a seeded shuffle, then every k-th rating to the same fold).
pub fn k_folds(all: &RatingSet, k: usize, seed: u64) -> Result<Vec<u32>> {
    if k < 2 || k > all.len() {
        return Err(Error::InvalidParameter(format!("--folds must lie between 2 and the {} ratings, got {k}", all.len())));
    }
    let mut order: Vec<u32> = (0..all.len() as u32).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let mut fold = vec![0u32; all.len()];
    for (position, &i) in order.iter().enumerate() {
        fold[i as usize] = (position % k) as u32;
    }
    Ok(fold)
}

/// Fold `which` of [`k_folds`]'s assignment as the test set, every other fold as training.
pub fn split_fold(all: &RatingSet, folds: &[u32], which: u32) -> Problem {
    let is_test: Vec<bool> = folds.iter().map(|&f| f == which).collect();
    let (train, test) = partition(all, &is_test);
    Problem::from_split(all, train, test)
}

fn partition(all: &RatingSet, is_test: &[bool]) -> (Vec<Rating>, Vec<Rating>) {
    let mut train = Vec::with_capacity(all.len());
    let mut test = Vec::new();
    for (r, &t) in all.entries.iter().zip(is_test) {
        if t { test.push(*r) } else { train.push(*r) }
    }
    (train, test)
}
