//! How well a model ranks: its top-N lists judged on held-out positives (Recall, Precision,
//! NDCG and MAP at K), and its whole ranking (AUC, mean percentile rank). Each user's
//! candidates are every item but the user's training items; the users are scored in blocks,
//! in parallel ([`Model::score_all_items`]).

use crate::data::{Rating, UNKNOWN};
use crate::error::{Error, Result};
use crate::model::{best_of, Model, USERS_PER_BLOCK};
use rayon::prelude::*;

/// One ranking metric; those with a cutoff judge the top K of each user's list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RankingMetric {
    /// Held-out positives in the top K, over the user's held-out positives.
    Recall(usize),
    /// Held-out positives in the top K, over K.
    Precision(usize),
    /// DCG of the top K (gain 1 for a positive at place j: 1/log2(j + 1)) over the best DCG the
    /// user's positives allow.
    Ndcg(usize),
    /// Mean of the precision at each positive's place in the top K, over min(K, positives).
    Map(usize),
    /// The chance that a held-out positive outscores a candidate that is not one (ties count
    /// half), for each user, averaged over users.
    Auc,
    /// Mean percentile rank (as LIBMF and Hu, Koren & Volinsky 2008): for each held-out
    /// positive, the share of the user's other candidates scored above it (ties count half),
    /// averaged over positives. 0 is best, 0.5 is chance.
    Mpr,
}

impl RankingMetric {
    /// Parses `ndcg@20`, `recall@10`, `precision@5`, `map@20`, `auc` or `mpr`.
    pub fn parse(text: &str) -> std::result::Result<RankingMetric, String> {
        let text = text.trim().to_ascii_lowercase();
        let (name, k) = match text.split_once('@') {
            Some((name, k)) => match k.parse::<usize>() {
                Ok(0) => return Err(format!("{text}: K must be at least 1")),
                Ok(k) => (name.to_string(), Some(k)),
                Err(_) => return Err(format!("{text}: {k:?} is not a whole number")),
            },
            None => (text.clone(), None),
        };
        let metric = match (name.as_str(), k) {
            ("recall", Some(k)) => RankingMetric::Recall(k),
            ("precision", Some(k)) => RankingMetric::Precision(k),
            ("ndcg", Some(k)) => RankingMetric::Ndcg(k),
            ("map", Some(k)) => RankingMetric::Map(k),
            ("auc", None) => RankingMetric::Auc,
            ("mpr", None) => RankingMetric::Mpr,
            ("recall" | "precision" | "ndcg" | "map", None) => return Err(format!("{text} needs a cutoff, as in {text}@20")),
            ("auc" | "mpr", Some(_)) => return Err(format!("{text}: {name} takes no cutoff (it judges the whole ranking)")),
            _ => return Err(format!("unknown ranking metric {text:?}; expected recall@K, precision@K, ndcg@K, map@K, auc or mpr")),
        };
        Ok(metric)
    }

    /// Parses a comma-separated list, as `--metrics` takes it.
    pub fn parse_list(text: &str) -> std::result::Result<Vec<RankingMetric>, String> {
        let metrics = text.split(',').filter(|m| !m.trim().is_empty()).map(RankingMetric::parse).collect::<std::result::Result<Vec<_>, _>>()?;
        if metrics.is_empty() {
            return Err("no metric named; expected for instance ndcg@20,recall@20".into());
        }
        Ok(metrics)
    }

    /// The name as parsed and printed: `ndcg@20`, `auc`.
    pub fn name(self) -> String {
        match self {
            RankingMetric::Recall(k) => format!("recall@{k}"),
            RankingMetric::Precision(k) => format!("precision@{k}"),
            RankingMetric::Ndcg(k) => format!("ndcg@{k}"),
            RankingMetric::Map(k) => format!("map@{k}"),
            RankingMetric::Auc => "auc".into(),
            RankingMetric::Mpr => "mpr".into(),
        }
    }

    /// Whether a higher value is better (all but MPR).
    pub fn higher_is_better(self) -> bool {
        self != RankingMetric::Mpr
    }

    fn cutoff(self) -> usize {
        match self {
            RankingMetric::Recall(k) | RankingMetric::Precision(k) | RankingMetric::Ndcg(k) | RankingMetric::Map(k) => k,
            RankingMetric::Auc | RankingMetric::Mpr => 0,
        }
    }
}

/// The ranking metrics of a model on held-out positives.
#[derive(Clone, Debug, PartialEq)]
pub struct RankingReport {
    /// Users with at least one held-out positive the model could rank.
    pub users: usize,
    /// Held-out positives judged.
    pub positives: usize,
    /// Held-out positives left out: a user or item the model does not know, an item the user
    /// had in training (never a candidate), or a repeat.
    pub left_out: usize,
    /// Each metric asked for, in order, with its value (NaN when no user could be judged).
    pub values: Vec<(RankingMetric, f64)>,
}

/// One user's sums, added over users (and positives, for MPR).
#[derive(Clone, Default)]
struct Sums {
    users: usize,
    positives: usize,
    /// Users with at least one candidate that is not a positive (those AUC can judge).
    auc_users: usize,
    per_metric: Vec<f64>,
}

impl Sums {
    fn merge(mut self, other: Sums) -> Sums {
        if self.per_metric.is_empty() {
            return other;
        }
        self.users += other.users;
        self.positives += other.positives;
        self.auc_users += other.auc_users;
        for (a, b) in self.per_metric.iter_mut().zip(other.per_metric) {
            *a += b;
        }
        self
    }
}

/// Ranks every item but each user's training items for each user with held-out positives in
/// `test` (model indices; [`UNKNOWN`] where the model lacks the id), and judges the ranking
/// by `metrics`. `positive` says which held-out ratings count as positives (all of them for
/// one-class data; for ratings, those at or above a threshold). The training items are those
/// the model recorded ([`Model::seen`]); a model without them is refused, since its lists
/// would be judged against items the user already had.
pub fn ranking_metrics(model: &Model, test: &[Rating], positive: impl Fn(&Rating) -> bool + Sync, metrics: &[RankingMetric]) -> Result<RankingReport> {
    if model.seen.is_none() {
        return Err(Error::Data("the model file does not record each user's training items, which ranking metrics leave out of the candidates; train it again with this gpumf and --save".into()));
    }
    let users = model.users.len();
    let known: Vec<Rating> = test.iter().filter(|r| r.user != UNKNOWN && r.item != UNKNOWN && positive(r)).copied().collect();
    let (starts, items) = crate::data::by_user(&known, users, |_, r| r.item);
    // Each user's positives, sorted, once each.
    let held_out: Vec<(u32, Vec<u32>)> = (0..users)
        .into_par_iter()
        .filter(|&u| starts[u + 1] > starts[u])
        .map(|u| {
            let mut mine = items[starts[u]..starts[u + 1]].to_vec();
            mine.sort_unstable();
            mine.dedup();
            (u as u32, mine)
        })
        .collect();
    // Each block's sums, added in block order: the same bits on any number of threads (a
    // parallel reduce adds them in whatever order the threads split the work).
    let blocks: Vec<Sums> = held_out
        .par_chunks(USERS_PER_BLOCK)
        .map(|block| {
            let ids: Vec<u32> = block.iter().map(|(u, _)| *u).collect();
            let scores = model.score_all_items(&ids);
            block.iter().zip(scores.rows()).fold(Sums::default(), |sums, ((u, mine), row)| {
                // A training item is never a candidate, so it cannot be a positive either.
                let training = model.training_items(*u, true);
                let mine: Vec<u32> = mine.iter().copied().filter(|i| training.binary_search(i).is_err()).collect();
                if mine.is_empty() {
                    return sums;
                }
                sums.merge(user_sums(row.as_slice().expect("row-major"), &training, &mine, metrics))
            })
        })
        .collect();
    let sums = blocks.into_iter().fold(Sums::default(), Sums::merge);
    let values = metrics
        .iter()
        .enumerate()
        .map(|(m, &metric)| {
            let total = sums.per_metric.get(m).copied().unwrap_or(f64::NAN);
            let count = match metric {
                RankingMetric::Auc => sums.auc_users,
                RankingMetric::Mpr => sums.positives,
                _ => sums.users,
            };
            (metric, if count == 0 { f64::NAN } else { total / count as f64 })
        })
        .collect();
    Ok(RankingReport { users: sums.users, positives: sums.positives, left_out: test.iter().filter(|r| positive(r)).count() - sums.positives, values })
}

/// One user's terms of each metric, from the scores of every item, the user's training items
/// and held-out positives (both ascending, disjoint).
fn user_sums(scores: &[f32], training: &[u32], positives: &[u32], metrics: &[RankingMetric]) -> Sums {
    let longest = metrics.iter().map(|m| m.cutoff()).max().unwrap_or(0);
    let top = best_of(scores, longest, training);
    let hit: Vec<bool> = top.iter().map(|(i, _)| positives.binary_search(i).is_ok()).collect();
    let whole = metrics.iter().any(|m| m.cutoff() == 0).then(|| whole_ranking(scores, training, positives));
    let p = positives.len();
    let per_metric = metrics
        .iter()
        .map(|&metric| {
            let k = metric.cutoff();
            let hits = || hit.iter().take(k).filter(|&&h| h).count() as f64;
            match metric {
                RankingMetric::Recall(_) => hits() / p as f64,
                RankingMetric::Precision(_) => hits() / k as f64,
                RankingMetric::Ndcg(_) => {
                    let gain = |place: usize| 1.0 / ((place + 2) as f64).log2();
                    let dcg: f64 = hit.iter().take(k).enumerate().filter(|(_, &h)| h).map(|(j, _)| gain(j)).sum();
                    dcg / (0..k.min(p)).map(gain).sum::<f64>()
                }
                RankingMetric::Map(_) => {
                    let mut found = 0.0;
                    let precisions: f64 = hit.iter().take(k).enumerate().filter(|(_, &h)| h).map(|(j, _)| {
                        found += 1.0;
                        found / (j + 1) as f64
                    }).sum();
                    precisions / k.min(p) as f64
                }
                RankingMetric::Auc => whole.map_or(0.0, |w| w.auc.unwrap_or(0.0)),
                RankingMetric::Mpr => whole.map_or(0.0, |w| w.percentile_sum),
            }
        })
        .collect();
    let auc_users = whole.is_some_and(|w| w.auc.is_some()) as usize;
    Sums { users: 1, positives: p, auc_users, per_metric }
}

#[derive(Clone, Copy)]
struct WholeRanking {
    /// The user's AUC; `None` when every candidate is a positive.
    auc: Option<f64>,
    /// The sum over the user's positives of their percentile ranks.
    percentile_sum: f64,
}

/// AUC and percentile ranks in one pass over the candidates: with the positives' scores
/// sorted, each candidate finds by binary search the positives it outscores and ties.
fn whole_ranking(scores: &[f32], training: &[u32], positives: &[u32]) -> WholeRanking {
    let mut sorted: Vec<f32> = positives.iter().map(|&i| scores[i as usize]).collect();
    sorted.sort_unstable_by(f32::total_cmp);
    let p = sorted.len();
    // above[j] gathers, for the positive at sorted place j, how many candidates outscore it
    // (ties half), as a suffix sum: a candidate adds ½ at the first tie and ½ past the last.
    let mut above = vec![0.0f64; p + 1];
    let (mut correct_pairs, mut negatives, mut candidates) = (0.0f64, 0usize, 0usize);
    let mut next_training = training.iter().peekable();
    let mut next_positive = positives.iter().peekable();
    for (i, &s) in scores.iter().enumerate() {
        let i = i as u32;
        if next_training.next_if_eq(&&i).is_some() {
            continue;
        }
        candidates += 1;
        let below = sorted.partition_point(|&x| x.total_cmp(&s).is_lt());
        let upto = sorted.partition_point(|&x| x.total_cmp(&s).is_le());
        above[below] += 0.5;
        above[upto] += 0.5;
        if next_positive.next_if_eq(&&i).is_some() {
            continue;
        }
        negatives += 1;
        correct_pairs += (p - upto) as f64 + 0.5 * (upto - below) as f64;
    }
    // A positive ties with itself: take back its own half.
    let mut outscored = 0.0;
    let mut percentile_sum = 0.0;
    let others = (candidates - 1).max(1) as f64;
    for j in (0..p).rev() {
        outscored += above[j + 1];
        percentile_sum += (outscored - 0.5) / others;
    }
    let auc = (negatives > 0).then(|| correct_pairs / (p * negatives) as f64);
    WholeRanking { auc, percentile_sum }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn the_metrics_are_the_same_bits_on_any_number_of_threads() {
        // 2,000 users, 32 blocks of them, each with training and held-out items.
        use crate::{data::RatingSet, problem::Problem};
        let triplets = |from: u64, count: u64| -> Vec<(u64, u64, f32)> { (0..2000u64).flat_map(|u| (0..count).map(move |j| (u, (u * 7 + (from + j) * 13) % 300, 1.0))).collect() };
        let mut problem = Problem::new(RatingSet::from_triplets(triplets(0, 5)), Some(&RatingSet::from_triplets(triplets(5, 4))));
        problem.train.dedup();
        let params = crate::model::Params { rank: 8, ..Default::default() };
        let mut model = Model::init(&problem, &params, None);
        model.record_seen(&problem);
        let metrics = [RankingMetric::Ndcg(20), RankingMetric::Auc, RankingMetric::Map(10)];
        let on = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let report = pool.install(|| ranking_metrics(&model, &problem.test, |_| true, &metrics)).unwrap();
            report.values.iter().map(|(_, v)| v.to_bits()).collect::<Vec<u64>>()
        };
        let one = on(1);
        for threads in [2, 3, 5] {
            assert_eq!(on(threads), one, "{threads} threads");
        }
    }

    #[test]
    fn metric_names_parse_and_bad_ones_say_why() {
        assert_eq!(RankingMetric::parse_list("ndcg@20, Recall@10,auc,mpr,map@5,precision@3").unwrap(), vec![
            RankingMetric::Ndcg(20),
            RankingMetric::Recall(10),
            RankingMetric::Auc,
            RankingMetric::Mpr,
            RankingMetric::Map(5),
            RankingMetric::Precision(3)
        ]);
        for (bad, says) in [("ndcg@0", "at least 1"), ("ndcg", "needs a cutoff"), ("auc@5", "no cutoff"), ("hits@3", "unknown"), ("ndcg@x", "not a whole number"), ("", "no metric")] {
            let e = RankingMetric::parse_list(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
        assert_eq!(RankingMetric::Ndcg(20).name(), "ndcg@20");
    }

    #[test]
    fn each_metric_matches_a_case_worked_by_hand() {
        // Seven items; item 0 was a training item. Scores rank the candidates
        // 4 (0.9), 2 (0.8), 6 (0.7), 1 (0.5), 3 (0.4), 5 (0.1); positives are 2 and 5.
        let scores = [5.0, 0.5, 0.8, 0.4, 0.9, 0.1, 0.7];
        let metrics = [RankingMetric::Recall(3), RankingMetric::Precision(3), RankingMetric::Ndcg(3), RankingMetric::Map(3), RankingMetric::Auc, RankingMetric::Mpr];
        let sums = user_sums(&scores, &[0], &[2, 5], &metrics);
        let v = &sums.per_metric;
        // Top 3: 4, 2, 6: one hit (item 2, second place).
        assert!(close(v[0], 0.5), "recall {}", v[0]);
        assert!(close(v[1], 1.0 / 3.0), "precision {}", v[1]);
        // DCG = 1/log2(3); the best for 2 positives is 1 + 1/log2(3).
        let g = 1.0 / 3f64.log2();
        assert!(close(v[2], g / (1.0 + g)), "ndcg {}", v[2]);
        // One hit at place 2 with precision 1/2, over min(3, 2) = 2.
        assert!(close(v[3], 0.25), "map {}", v[3]);
        // Pairs: item 2 outscores 6, 1, 3 but not 4 (3 of 4); item 5 outscores none (0 of 4).
        assert!(close(v[4], 3.0 / 8.0), "auc {}", v[4]);
        // Item 2 has 1 of its 5 other candidates above it, item 5 has all 5: 1/5 + 5/5.
        assert!(close(v[5], 0.2 + 1.0), "mpr sum {}", v[5]);
        assert_eq!((sums.users, sums.positives, sums.auc_users), (1, 2, 1));
    }

    #[test]
    fn ties_count_half_and_a_user_of_only_positives_has_no_auc() {
        let metrics = [RankingMetric::Auc, RankingMetric::Mpr];
        // Items 0 and 1 tie; 0 is the positive: one pair, tied: AUC ½; one other candidate,
        // tied: percentile ½.
        let sums = user_sums(&[1.0, 1.0], &[], &[0], &metrics);
        assert!(close(sums.per_metric[0], 0.5) && close(sums.per_metric[1], 0.5), "{:?}", sums.per_metric);
        let sums = user_sums(&[1.0, 2.0], &[], &[0, 1], &metrics);
        assert_eq!(sums.auc_users, 0);
    }
}
