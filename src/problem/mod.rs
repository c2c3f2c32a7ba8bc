//! A training problem: training ratings with dense ids (in memory, or in a block cache on disk),
//! and a test set in the same index space; and (in [`split`]) the seeded hold-out splits that
//! make one.

mod split;

pub use split::{k_folds, split_fold, split_marked, split_per_user, split_random};

use crate::cache::DiskBlocks;
use crate::data::{IdMap, Rating, RatingSet, RatingSummary, RowCounts, UNKNOWN};
use crate::error::{Error, Result};
use crate::objective::{BinaryLabels, Loss};
use std::sync::Arc;

/// Test entries whose user or item never appears in training. The model predicts them from
/// what it knows (global mean and the known side's bias); they are counted for the report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ColdStart {
    /// Test entries with a user unseen in training.
    pub unknown_user_entries: usize,
    /// Test entries with an item unseen in training.
    pub unknown_item_entries: usize,
    /// Test entries with either side unseen.
    pub entries: usize,
}

impl ColdStart {
    /// The cold entries among ratings already mapped into a model's indices.
    pub fn of(ratings: &[Rating]) -> ColdStart {
        let mut cold = ColdStart::default();
        for r in ratings {
            let (u, i) = (r.user == UNKNOWN, r.item == UNKNOWN);
            cold.unknown_user_entries += u as usize;
            cold.unknown_item_entries += i as usize;
            cold.entries += (u || i) as usize;
        }
        cold
    }
}

/// Training ratings indexed densely over the users and items that occur in training;
/// test ratings mapped into the same indices, with [`UNKNOWN`] for cold users or items.
#[derive(Clone, Debug)]
pub struct Problem {
    pub train: Vec<Rating>,
    pub test: Vec<Rating>,
    pub users: IdMap,
    pub items: IdMap,
    pub cold: ColdStart,
    /// The training ratings when they live in a block cache on disk (`train` is then empty).
    pub train_on_disk: Option<Arc<DiskBlocks>>,
}

/// The largest rating magnitude the real-valued losses train on: an error twice it still
/// squares within f32 (3.4e38). Past it, training met infinities and stopped as "diverged".
pub const MAX_RATING: f32 = 9.0e18;

impl Problem {
    /// From a training set and an optional test set loaded separately (e.g. `u1.base`, `u1.test`).
    pub fn new(train: RatingSet, test: Option<&RatingSet>) -> Problem {
        let mut problem = Problem { train: train.entries, test: Vec::new(), users: train.users, items: train.items, cold: ColdStart::default(), train_on_disk: None };
        if let Some(test) = test {
            let users: Vec<u32> = test.users.externals().iter().map(|&id| problem.users.index_of(id).unwrap_or(UNKNOWN)).collect();
            let items: Vec<u32> = test.items.externals().iter().map(|&id| problem.items.index_of(id).unwrap_or(UNKNOWN)).collect();
            problem.test = test
                .entries
                .iter()
                .map(|r| Rating { user: users[r.user as usize], item: items[r.item as usize], value: r.value })
                .collect();
            problem.count_cold();
        }
        problem
    }

    /// Training ratings in a block cache, and a test set loaded separately.
    pub fn on_disk(disk: Arc<DiskBlocks>, test: Option<&RatingSet>) -> Problem {
        let (users, items) = (disk.users.clone(), disk.items.clone());
        let mut problem = Problem::new(RatingSet { entries: Vec::new(), users, items }, test);
        problem.train_on_disk = Some(disk);
        problem
    }

    /// The ids, the test set and the cold-start rule without the training ratings: what a run's
    /// report needs once the training set is handed to a trainer that keeps only its part.
    pub fn without_training(&self) -> Problem {
        Problem { train: Vec::new(), test: self.test.clone(), users: self.users.clone(), items: self.items.clone(), cold: self.cold, train_on_disk: None }
    }

    /// Training ratings, in memory or on disk.
    pub fn train_len(&self) -> usize {
        self.train_on_disk.as_ref().map_or(self.train.len(), |d| d.summary.count as usize)
    }

    /// The training ratings' count, sums and range, from the cache's header when on disk.
    pub fn train_summary(&self) -> RatingSummary {
        match &self.train_on_disk {
            Some(disk) => disk.summary,
            None => RatingSummary::of(&self.train),
        }
    }

    /// How many training ratings each user and item has, from the cache when on disk.
    pub fn train_counts(&self) -> RowCounts {
        match &self.train_on_disk {
            Some(disk) => disk.counts.clone(),
            None => RowCounts::of(&self.train, self.num_users(), self.num_items()),
        }
    }

    /// Checks the ratings against what `loss` takes, and returns their binary labels where it
    /// takes labels: two values in training (the test ratings among them), or non-negative
    /// values for the KL divergence. The errors name the loss's flag and a value seen.
    pub fn labels(&self, loss: Loss) -> Result<Option<BinaryLabels>> {
        self.labels_of(loss, &self.train_summary())
    }

    /// [`labels`](Self::labels) with the training ratings summed up in `train` (a cluster
    /// process holds only its stripes, but knows the whole set's summary).
    pub fn labels_of(&self, loss: Loss, train: &RatingSummary) -> Result<Option<BinaryLabels>> {
        let flag = || crate::choice::Choice::name(loss);
        if loss.is_one_class() {
            if train.lowest < 0.0 {
                let line = self.train.iter().position(|r| r.value < 0.0).map(|at| format!(" (training entry {})", at + 1)).unwrap_or_default();
                return Err(Error::Data(format!("--loss {}: a count of events is {}{line}; counts and weights of events cannot be negative", flag(), train.lowest)));
            }
            if train.highest <= 0.0 {
                return Err(Error::Data(format!("--loss {}: every training count is 0, so there are no events", flag())));
            }
            return Ok(None);
        }
        if loss.needs_nonneg() {
            let lowest = train.lowest.min(self.test.iter().map(|r| r.value).fold(f32::INFINITY, f32::min));
            if lowest < 0.0 {
                let side = if train.lowest < 0.0 { "training" } else { "test" };
                return Err(Error::Data(format!("--loss {}: the {side} ratings hold {lowest}; the KL divergence needs non-negative values (counts, amounts)", flag())));
            }
            if train.highest <= 0.0 {
                return Err(Error::Data(format!("--loss {}: every training rating is 0; the KL divergence needs some positive values", flag())));
            }
        }
        if !loss.is_binary() {
            let largest = train.lowest.abs().max(train.highest.abs());
            if largest > MAX_RATING {
                return Err(Error::Data(format!(
                    "--loss {}: the training ratings reach {largest:e}; training works in f32, where errors of ratings past ±{MAX_RATING:e} square beyond its range: rescale them",
                    flag()
                )));
            }
            return Ok(None);
        }
        let labels = BinaryLabels::detect(train.values().iter().copied(), "the training ratings", loss)?;
        if let Some(r) = self.test.iter().find(|r| labels.sign(r.value).is_none()) {
            return Err(Error::Data(format!(
                "--loss {}: the test ratings hold {}, which is neither of the training labels {} and {}",
                flag(),
                r.value,
                labels.negative,
                labels.positive
            )));
        }
        Ok(Some(labels))
    }

    /// From two subsets of one rating set (a split): renumbers ids so the model holds
    /// only users and items that occur in training.
    pub fn from_split(all: &RatingSet, train: Vec<Rating>, test: Vec<Rating>) -> Problem {
        let mut user_map = vec![UNKNOWN; all.users.len()];
        let mut item_map = vec![UNKNOWN; all.items.len()];
        let mut users = IdMap::new();
        let mut items = IdMap::new();
        let train = train
            .into_iter()
            .map(|r| {
                if user_map[r.user as usize] == UNKNOWN {
                    user_map[r.user as usize] = users.intern_from(&all.users, r.user);
                }
                if item_map[r.item as usize] == UNKNOWN {
                    item_map[r.item as usize] = items.intern_from(&all.items, r.item);
                }
                Rating { user: user_map[r.user as usize], item: item_map[r.item as usize], value: r.value }
            })
            .collect();
        let test = test
            .into_iter()
            .map(|r| Rating { user: user_map[r.user as usize], item: item_map[r.item as usize], value: r.value })
            .collect();
        let mut problem = Problem { train, test, users, items, cold: ColdStart::default(), train_on_disk: None };
        problem.count_cold();
        problem
    }

    /// How many test ratings name a (user, item) pair the training ratings (in memory) name
    /// too: a test set that overlaps the training set flatters the model.
    pub fn overlap(&self) -> usize {
        if self.test.is_empty() || self.train.is_empty() {
            return 0;
        }
        let key = |r: &Rating| (r.user as u64) << 32 | r.item as u64;
        let tested: rustc_hash::FxHashSet<u64> = self.test.iter().filter(|r| r.user != UNKNOWN && r.item != UNKNOWN).map(key).collect();
        if tested.is_empty() {
            return 0;
        }
        let trained: rustc_hash::FxHashSet<u64> = self.train.iter().map(key).filter(|k| tested.contains(k)).collect();
        self.test.iter().filter(|r| trained.contains(&key(r))).count()
    }

    /// Ratings of another problem (`from`'s index space) in this one's, for scoring a test set
    /// against a model trained on a subset: ids this problem lacks become [`UNKNOWN`].
    pub fn remap(&self, ratings: &[Rating], from: &Problem) -> Vec<Rating> {
        remap_ratings(ratings, (&from.users, &from.items), (&self.users, &self.items))
    }

    fn count_cold(&mut self) {
        self.cold = ColdStart::of(&self.test);
    }

    pub fn num_users(&self) -> usize {
        self.users.len()
    }

    pub fn num_items(&self) -> usize {
        self.items.len()
    }
}

/// `ratings` moved from the index space of the id maps `from` (users, items) into that of
/// `to`: an id `to` lacks becomes [`UNKNOWN`].
pub fn remap_ratings(ratings: &[Rating], from: (&IdMap, &IdMap), to: (&IdMap, &IdMap)) -> Vec<Rating> {
    let map = |index: u32, ours: &IdMap, theirs: &IdMap| {
        if index == UNKNOWN { UNKNOWN } else { ours.index_of(theirs.external_id(index)).unwrap_or(UNKNOWN) }
    };
    ratings.iter().map(|r| Rating { user: map(r.user, to.0, from.0), item: map(r.item, to.1, from.1), value: r.value }).collect()
}


#[cfg(test)]
mod tests {
    use super::*;

    fn of(values: &[f32]) -> Problem {
        let (users, items): (Vec<u64>, Vec<u64>) = (0..values.len() as u64).map(|k| (k % 3, k % 4)).unzip();
        Problem::new(RatingSet::from_columns(&users, &items, values, "ratings").unwrap(), None)
    }

    #[test]
    fn ratings_whose_errors_f32_cannot_square_are_refused_before_training() {
        let e = of(&[1.0, -2.0e19, 3.0]).labels(Loss::Squared).unwrap_err().to_string();
        assert!(e.contains("reach 2e19") && e.contains("rescale them"), "{e}");
        assert!(of(&[1.0, 3.0e19]).labels(Loss::Absolute).is_err());
        of(&[1.0, MAX_RATING, -MAX_RATING]).labels(Loss::Squared).unwrap();
        // Two labels are ±1 to training, whatever their values.
        assert!(of(&[0.0, 3.0e19, 0.0]).labels(Loss::Logistic).unwrap().is_some());
    }
}
