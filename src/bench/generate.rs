//! Seeded synthetic rating sets: low rank plus noise, with uniform or Zipf-skewed popularity.
//!
//! rating = center + spread·(a_u·b_i − rank/4) + N(0, noise²), with a_u, b_i ~ Uniform[0,1)^rank,
//! optionally clipped to a scale. With rank 8, center 3, spread 1.2 and noise 0.1 this is the
//! Netflix-shaped set of the GPU benchmarks (best possible test RMSE: 0.1). Generation runs in
//! fixed chunks, each with its own seeded generator, so the output depends on the seed alone,
//! not on the number of threads.

use crate::data::{IdMap, Rating, RatingSet};
use crate::problem::Problem;
use crate::error::{Error, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use rayon::prelude::*;

/// How often users and items occur.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub enum Popularity {
    Uniform,
    /// P(the r-th most popular) ∝ 1/r^s, as in real rating data.
    Zipf(f64),
}

/// What to generate.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct SyntheticSpec {
    pub users: usize,
    pub items: usize,
    pub train: usize,
    pub test: usize,
    /// Dimension of the hidden factors.
    pub rank: usize,
    pub noise: f32,
    pub center: f32,
    pub spread: f32,
    /// Clip ratings to [low, high].
    pub clip: Option<(f32, f32)>,
    pub popularity: Popularity,
    pub seed: u64,
}

impl SyntheticSpec {
    /// The Netflix-shaped set: 480,189 × 17,770, 99,072,112 training and 1,408,395 test ratings.
    pub fn netflix(seed: u64) -> SyntheticSpec {
        SyntheticSpec {
            users: 480_189,
            items: 17_770,
            train: 99_072_112,
            test: 1_408_395,
            rank: 8,
            noise: 0.1,
            center: 3.0,
            spread: 1.2,
            clip: None,
            popularity: Popularity::Uniform,
            seed,
        }
    }

    /// The same shape scaled to `train` training ratings (users, items and test set shrink alike).
    pub fn netflix_scaled(train: usize, seed: u64) -> SyntheticSpec {
        let full = SyntheticSpec::netflix(seed);
        let f = (train as f64 / full.train as f64).min(1.0);
        let scale = |n: usize, s: f64| ((n as f64 * s).round() as usize).max(1);
        SyntheticSpec {
            users: scale(full.users, f.sqrt()),
            items: scale(full.items, f.sqrt()),
            train,
            test: scale(full.test, f),
            ..full
        }
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidParameter(m));
        if self.users == 0 || self.items == 0 || self.train == 0 || self.rank == 0 {
            return bad("--users, --items, --ratings and --hidden-rank must be at least 1".into());
        }
        if self.users > u32::MAX as usize - 1 || self.items > u32::MAX as usize - 1 {
            return bad("--users and --items must be below 2^32 - 1".into());
        }
        // Pairs are drawn with replacement: a few repeat on sparse shapes, but more ratings
        // than pairs is no sparse matrix at all.
        let pairs = self.users as u128 * self.items as u128;
        if (self.train + self.test) as u128 > pairs {
            return bad(format!(
                "--ratings {} and --test-ratings {} are more than the {pairs} user-item pairs of {} x {} (--users x --items)",
                self.train, self.test, self.users, self.items
            ));
        }
        if self.rank > 4096 {
            return bad(format!("--hidden-rank {} is larger than the supported 4096", self.rank));
        }
        if !(self.noise >= 0.0 && self.noise.is_finite()) {
            return bad(format!("--noise must be a finite non-negative number, got {}", self.noise));
        }
        if let Popularity::Zipf(s) = self.popularity {
            if !(s > 0.0 && s.is_finite()) {
                return bad(format!("--zipf must be a positive exponent, got {s}"));
            }
        }
        if let Some((lo, hi)) = self.clip {
            if lo.partial_cmp(&hi) != Some(std::cmp::Ordering::Less) {
                return bad(format!("--clip needs low < high, got {lo}..{hi}"));
            }
        }
        Ok(())
    }
}

/// Draws indices with the given popularity: uniform, or by inverse CDF for Zipf; also within a
/// range of indices, with the range's share of the probability.
struct Sampler {
    n: usize,
    cdf: Option<Vec<f64>>,
}

impl Sampler {
    fn new(n: usize, popularity: Popularity) -> Sampler {
        let cdf = match popularity {
            Popularity::Uniform => None,
            Popularity::Zipf(s) => {
                let mut acc = 0.0;
                let mut cdf: Vec<f64> = (1..=n).map(|r| {
                    acc += (r as f64).powf(-s);
                    acc
                }).collect();
                let total = acc;
                cdf.iter_mut().for_each(|c| *c /= total);
                Some(cdf)
            }
        };
        Sampler { n, cdf }
    }

    #[inline]
    fn sample(&self, rng: &mut ChaCha8Rng) -> u32 {
        self.sample_in(0..self.n, rng)
    }

    /// An index in `range`, with the popularity restricted to it.
    #[inline]
    fn sample_in(&self, range: std::ops::Range<usize>, rng: &mut ChaCha8Rng) -> u32 {
        match &self.cdf {
            None => rng.random_range(range.start as u32..range.end as u32),
            Some(cdf) => {
                let below = if range.start == 0 { 0.0 } else { cdf[range.start - 1] };
                let x = below + rng.random::<f64>() * (cdf[range.end - 1] - below);
                (range.start + cdf[range].partition_point(|&c| c < x)).min(self.n - 1) as u32
            }
        }
    }

    /// The probability that a draw lands in `range`.
    fn mass(&self, range: std::ops::Range<usize>) -> f64 {
        match &self.cdf {
            None => range.len() as f64 / self.n as f64,
            Some(cdf) => cdf[range.end - 1] - if range.start == 0 { 0.0 } else { cdf[range.start - 1] },
        }
    }
}

/// Users per group: a group's hidden factors stay in the cache while its ratings are drawn.
const USER_GROUP: usize = 2048;


fn hidden_factors(n: usize, rank: usize, seed: u64) -> Vec<f32> {
    let mut out = vec![0f32; n * rank];
    out.par_chunks_mut(rank * 4096).enumerate().for_each(|(c, rows)| {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ (c as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        rows.iter_mut().for_each(|v| *v = rng.random());
    });
    out
}

/// Draws `count` ratings: users in groups of consecutive rows, each group getting its share of
/// the ratings (largest remainders, so the total is exact) from its own seeded generator. The
/// ratings come out grouped by user, as rating files usually are; trainers shuffle them.
fn draw(spec: &SyntheticSpec, a: &[f32], b: &[f32], users: &Sampler, items: &Sampler, count: usize, stream: u64) -> Vec<Rating> {
    let noise = Normal::new(0.0f32, spec.noise).expect("validated");
    let k = spec.rank;
    let offset = k as f32 / 4.0;
    let groups: Vec<std::ops::Range<usize>> =
        (0..spec.users.div_ceil(USER_GROUP)).map(|g| g * USER_GROUP..((g + 1) * USER_GROUP).min(spec.users)).collect();
    let exact: Vec<f64> = groups.iter().map(|g| users.mass(g.clone()) * count as f64).collect();
    let mut sizes: Vec<usize> = exact.iter().map(|e| e.floor() as usize).collect();
    let mut by_remainder: Vec<usize> = (0..groups.len()).collect();
    by_remainder.sort_by(|&x, &y| (exact[y] - exact[y].floor()).total_cmp(&(exact[x] - exact[x].floor())).then(x.cmp(&y)));
    let short = count - sizes.iter().sum::<usize>();
    for &g in by_remainder.iter().cycle().take(short) {
        sizes[g] += 1;
    }
    let mut out = vec![Rating { user: 0, item: 0, value: 0.0 }; count];
    let mut pieces = Vec::with_capacity(groups.len());
    let mut rest = out.as_mut_slice();
    for &size in &sizes {
        let (piece, tail) = rest.split_at_mut(size);
        pieces.push(piece);
        rest = tail;
    }
    pieces.into_par_iter().zip(groups).enumerate().for_each(|(g, (chunk, range))| {
        let mut rng = ChaCha8Rng::seed_from_u64(spec.seed ^ stream ^ (g as u64).wrapping_mul(0xd1b5_4a32_d192_ed03));
        for r in chunk {
            let (u, i) = (users.sample_in(range.clone(), &mut rng), items.sample(&mut rng));
            let dot: f32 = a[u as usize * k..][..k].iter().zip(&b[i as usize * k..][..k]).map(|(x, y)| x * y).sum();
            let mut value = spec.center + spec.spread * (dot - offset) + noise.sample(&mut rng);
            if let Some((lo, hi)) = spec.clip {
                value = value.clamp(lo, hi);
            }
            *r = Rating { user: u, item: i, value };
        }
    });
    out
}

impl SyntheticSpec {
    /// Bytes `generate` holds at its peak: the ratings, the hidden factors and the samplers.
    pub fn memory_bytes(&self) -> u64 {
        ratings_bytes(self.ratings(), 1).saturating_add(self.row_bytes())
    }

    /// Training and test ratings together.
    fn ratings(&self) -> u64 {
        (self.train as u64).saturating_add(self.test as u64)
    }

    /// The hidden factors and the samplers' tables.
    fn row_bytes(&self) -> u64 {
        let rows = (self.users as u64).saturating_add(self.items as u64);
        rows.saturating_mul((self.rank as u64).saturating_mul(4).saturating_add(8))
    }

    /// Fails before allocating when `copies` of the ratings (plus the factors) exceed the
    /// memory available, saying how many ratings would fit.
    pub fn ensure_fits(&self, copies: u64) -> Result<()> {
        let needed = ratings_bytes(self.ratings(), copies).saturating_add(self.row_bytes());
        crate::resources::ensure_memory(needed, &format!("generating {} ratings ({} users x {} items)", self.ratings(), self.users, self.items), |available| {
            format!("at most about {} ratings fit", available.saturating_sub(self.row_bytes()) / ratings_bytes(1, copies))
        })
    }
}

/// Bytes of `copies` copies of `ratings` ratings.
fn ratings_bytes(ratings: u64, copies: u64) -> u64 {
    ratings.saturating_mul(copies).saturating_mul(std::mem::size_of::<Rating>() as u64)
}

/// Training and test ratings, ids 0-based (user u is row u).
pub fn generate(spec: &SyntheticSpec) -> Result<(Vec<Rating>, Vec<Rating>)> {
    spec.validate()?;
    spec.ensure_fits(1)?;
    let a = hidden_factors(spec.users, spec.rank, spec.seed ^ 0xa);
    let b = hidden_factors(spec.items, spec.rank, spec.seed ^ 0xb);
    let (users, items) = (Sampler::new(spec.users, spec.popularity), Sampler::new(spec.items, spec.popularity));
    let train = draw(spec, &a, &b, &users, &items, spec.train, 0x7261_696e);
    let test = draw(spec, &a, &b, &users, &items, spec.test, 0x7465_7374);
    Ok((train, test))
}

/// A generated set as a training problem (users or items absent from training become cold).
pub fn synthetic_problem(spec: &SyntheticSpec) -> Result<Problem> {
    // The split copies the ratings once more.
    spec.validate()?;
    spec.ensure_fits(2)?;
    let (train, test) = generate(spec)?;
    let all = RatingSet {
        entries: Vec::new(),
        users: IdMap::from_externals((0..spec.users as u64).collect()),
        items: IdMap::from_externals((0..spec.items as u64).collect()),
    };
    Ok(Problem::from_split(&all, train, test))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(popularity: Popularity) -> SyntheticSpec {
        SyntheticSpec { train: 200_000, test: 10_000, popularity, ..SyntheticSpec::netflix_scaled(200_000, 5) }
    }

    #[test]
    fn generation_is_seeded_and_follows_the_formula() {
        let spec = small(Popularity::Uniform);
        let (train, test) = generate(&spec).unwrap();
        assert_eq!((train.len(), test.len()), (200_000, 10_000));
        assert_eq!(generate(&spec).unwrap().0, train);
        assert_ne!(generate(&SyntheticSpec { seed: 6, ..spec.clone() }).unwrap().0, train);
        // E[a·b] = rank/4, so the mean is 3 up to the sampling of the hidden factors: with 1,785
        // items, 1.2 · 8 · ½ · 0.29/√1785 ≈ 0.033 standard deviation.
        let mean = train.iter().map(|r| r.value as f64).sum::<f64>() / train.len() as f64;
        assert!((mean - 3.0).abs() < 0.1, "mean {mean}");
        assert!(train.iter().all(|r| (r.user as usize) < spec.users && (r.item as usize) < spec.items));
    }

    #[test]
    fn zipf_popularity_is_skewed_and_clipping_holds() {
        let spec = SyntheticSpec { clip: Some((1.0, 5.0)), ..small(Popularity::Zipf(1.0)) };
        let (train, _) = generate(&spec).unwrap();
        let mut counts = vec![0usize; spec.items];
        for r in &train {
            counts[r.item as usize] += 1;
        }
        assert!(counts[0] > 50 * counts[spec.items / 2].max(1), "head {} vs middle {}", counts[0], counts[spec.items / 2]);
        assert!(train.iter().all(|r| (1.0..=5.0).contains(&r.value)));
    }

    #[test]
    fn bad_specs_are_rejected() {
        for spec in [
            SyntheticSpec { users: 0, ..small(Popularity::Uniform) },
            SyntheticSpec { noise: -1.0, ..small(Popularity::Uniform) },
            small(Popularity::Zipf(0.0)),
            SyntheticSpec { clip: Some((5.0, 1.0)), ..small(Popularity::Uniform) },
            SyntheticSpec { users: 5, items: 5, train: 20, test: 6, ..small(Popularity::Uniform) },
        ] {
            assert!(generate(&spec).is_err(), "{spec:?}");
        }
    }
}
