//! The SVD++ term on a cluster ([`crate::svdpp`] says what it computes). A stripe's users
//! live with one worker, but every item's vector y gathers the shares of all its users, and
//! every user's prior reads the vectors of all its items. So after an epoch's updates each
//! worker sends worker 0 its stripes' parts of the items' gradient (one dense part a stripe)
//! and the squared norms of the item halves it holds; worker 0 adds them in stripe and half
//! order (so every worker count gives the same bits), moves y by the one step of
//! [`crate::svdpp::item_step`] and sends y to every worker, and each worker recomputes its
//! users' priors from it, moving their rows with them.

use super::{Shared, HALVES};
use crate::data::RowCounts;
use crate::schedule::Schedule;
use crate::update::Step;
use crate::vector::{axpy, dot};

/// What the passes know of the whole set, by position: each user's |N(u)|^-½, each item's
/// count of ratings and reach (Σ |N(u)| over its users).
pub(super) struct Reach {
    pub user_norm: Vec<f32>,
    pub item_counts: Vec<f32>,
    pub item_reach: Vec<f32>,
}

impl Reach {
    /// From the whole set's counts and reaches by id, put in `schedule`'s positions.
    pub fn new(schedule: &Schedule, counts: &RowCounts, item_reach: &[f32]) -> Reach {
        let norms: Vec<f32> = counts.users.iter().map(|&n| if n == 0 { 0.0 } else { 1.0 / (n as f32).sqrt() }).collect();
        let item_counts: Vec<f32> = counts.items.iter().map(|&n| n as f32).collect();
        Reach { user_norm: schedule.users.gather(&norms), item_counts: schedule.items.gather(&item_counts), item_reach: schedule.items.gather(item_reach) }
    }
}

/// Stripe `stripe`'s part of the items' gradient: Σ |N(u)|^-½ share_u over the stripe's users
/// of each item, by position, its blocks of `s` (where the worker keeps its ratings) in order.
/// `share` is the stripe's users' shares.
pub(super) fn item_gradient(shared: &Shared, s: &Schedule, reach: &Reach, stripe: usize, share: &[f32], k: usize) -> Vec<f32> {
    let first = s.users.start(stripe);
    let mut gradient = vec![0.0f32; s.items.ids() * k];
    for b in shared.blocks_of(stripe) {
        for r in s.block(b) {
            let u = r.user as usize;
            axpy(&mut gradient[r.item as usize * k..][..k], reach.user_norm[u], &share[(u - first) * k..][..k]);
        }
    }
    gradient
}

/// Σ n_j |q_j|² over the items of half `h`, whose rows are `factors`.
pub(super) fn half_norm(shared: &Shared, reach: &Reach, h: usize, factors: &[f32], k: usize) -> f64 {
    let first = shared.schedule.items.start(h);
    factors.chunks(k).enumerate().map(|(j, q)| reach.item_counts[first + j] as f64 * dot(q, q) as f64).sum()
}

/// Worker 0: moves y (`item_vectors`, by position) by the stripes' gradients, added in stripe
/// order, with the ratings' mean |q|² from the halves' norms, added in half order.
pub(super) fn step_items(shared: &Shared, reach: &Reach, item_vectors: &mut [f32], gradients: &[Vec<f32>], norms: &[f64], k: usize, step: &Step) {
    let mut gradient = vec![0.0f32; item_vectors.len()];
    for part in gradients {
        gradient.iter_mut().zip(part).for_each(|(g, x)| *g += x);
    }
    let total: f64 = norms.iter().sum();
    let ratings: f64 = reach.item_counts.iter().map(|&n| n as f64).sum();
    let scale = step.unit.inverse;
    let mean_norm = (total / ratings.max(1.0)) as f32 * scale * scale;
    let weights = &shared.weights.items;
    for (j, (y, g)) in item_vectors.chunks_mut(k).zip(gradient.chunks(k)).enumerate() {
        crate::svdpp::item_step(y, g, reach.item_reach[j], weights[j], mean_norm, step);
    }
}

/// Stripe `stripe`'s users' priors afresh from y: z_u = |N(u)|^-½ Σ y_j over the items each
/// rated, in the order of the stripe's blocks of `s`.
pub(super) fn priors(shared: &Shared, s: &Schedule, reach: &Reach, stripe: usize, item_vectors: &[f32], k: usize) -> Vec<f32> {
    let first = s.users.start(stripe);
    let mut sums = vec![0.0f32; s.users.members(stripe).len() * k];
    for b in shared.blocks_of(stripe) {
        for r in s.block(b) {
            let u = r.user as usize;
            axpy(&mut sums[(u - first) * k..][..k], reach.user_norm[u], &item_vectors[r.item as usize * k..][..k]);
        }
    }
    sums
}

/// Moves each user row w by its prior's change (so p = w − z stays), projected to ≥ 0 with
/// non-negative factors, and takes the fresh priors; as the CPU's pass does.
pub(super) fn move_rows(factors: &mut [f32], prior: &mut [f32], fresh: &[f32], nonneg: bool) {
    for ((w, z), new) in factors.iter_mut().zip(prior.iter_mut()).zip(fresh) {
        *w += new - *z;
        if nonneg {
            *w = w.max(0.0);
        }
        *z = *new;
    }
}

/// Halves a worker holds after an epoch, in order: each half once, so their norms add up the
/// whole.
pub(super) fn halves_in_order<'a>(halves: impl Iterator<Item = (&'a usize, &'a super::Rows)>) -> Vec<(usize, &'a super::Rows)> {
    let mut held: Vec<(usize, &super::Rows)> = halves.map(|(&h, rows)| (h, rows)).collect();
    held.sort_by_key(|(h, _)| *h);
    debug_assert!(held.iter().all(|(h, _)| *h < usize::MAX / HALVES));
    held
}
