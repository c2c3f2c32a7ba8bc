//! Top-N lists for every user: users a second at rank 128 over 10,000 items, each user's
//! training items left out (issue target: 20,000 users/s on 2 cores), and the ranking
//! metrics of those lists.
//!
//! Run: `cargo bench --bench topn`. `GPUMF_BENCH_USERS` (default 50000), `GPUMF_BENCH_ITEMS`
//! (10000), `GPUMF_BENCH_RANK` (128), `GPUMF_BENCH_TOP` (20), `RAYON_NUM_THREADS` (all cores).

use gpumf::bench::{synthetic_problem, SyntheticSpec};
use gpumf::model::{Model, Params};
use gpumf::ranking::{ranking_metrics, RankingMetric};
use std::time::Instant;

fn env(var: &str, default: usize) -> usize {
    std::env::var(var).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let (users, items, rank, top) = (env("GPUMF_BENCH_USERS", 50_000), env("GPUMF_BENCH_ITEMS", 10_000), env("GPUMF_BENCH_RANK", 128), env("GPUMF_BENCH_TOP", 20));
    // 20 training and 5 test ratings a user; the factors are the seeded starting point (the
    // work of a list does not depend on what the factors learnt).
    let spec = SyntheticSpec { users, items, train: users * 20, test: users * 5, ..SyntheticSpec::netflix(1) };
    let problem = synthetic_problem(&spec).expect("synthetic data");
    let mut model = Model::init(&problem, &Params { rank, ..Params::default() }, None);
    model.record_seen(&problem);
    let all: Vec<u32> = (0..users as u32).collect();
    let threads = rayon::current_num_threads();
    println!("{users} users × {items} items at rank {rank}, top {top}, {threads} threads, median of 5 runs");
    let lists = median(
        (0..5)
            .map(|_| {
                let t = Instant::now();
                let lists = model.recommend_many(&all, top, true);
                assert_eq!(lists.len(), users);
                t.elapsed().as_secs_f64()
            })
            .collect(),
    );
    println!("top-{top} lists:        {:>8.3} s   {:>10.0} users/s", lists, users as f64 / lists);
    let metrics = RankingMetric::parse_list(&format!("ndcg@{top},recall@{top},auc,mpr")).expect("metrics");
    let judged = median(
        (0..5)
            .map(|_| {
                let t = Instant::now();
                ranking_metrics(&model, &problem.test, |_| true, &metrics).expect("metrics");
                t.elapsed().as_secs_f64()
            })
            .collect(),
    );
    println!("ranking metrics:      {:>8.3} s   {:>10.0} users/s", judged, users as f64 / judged);
}
