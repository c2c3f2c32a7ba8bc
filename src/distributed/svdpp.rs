//! The SVD++ term on a cluster ([`crate::svdpp`] says what it computes). A stripe's users
//! live with one worker, but every item's vector y gathers the shares of all its users, and
//! every user's prior reads the vectors of all its items. So after an epoch's updates each
//! worker sends worker 0 its stripes' parts of the items' gradient (one dense part a stripe)
//! and the squared norms of the item halves it holds; worker 0 adds them in stripe and half
//! order (so every worker count gives the same bits), moves y by the one step of
//! [`crate::svdpp::item_step`] and sends y to every worker, and each worker recomputes its
//! users' priors from it, moving their rows with them.

use super::{Shared, HALVES};
use crate::data::{Rating, RowCounts};
use crate::error::Result;
use crate::schedule::Schedule;
use crate::svdpp::StripeItems;
use crate::update::Step;
use crate::vector::dot;

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

/// The index of stripe `stripe`'s users' items ([`StripeItems`]), from its blocks in `s`
/// (where the worker keeps its ratings), in their order.
pub(super) fn stripe_items(shared: &Shared, s: &Schedule, stripe: usize) -> Result<StripeItems> {
    let users = s.users.start(stripe)..s.users.start(stripe) + s.users.members(stripe).len();
    let blocks: Vec<&[Rating]> = shared.blocks_of(stripe).map(|b| s.block(b)).collect();
    StripeItems::new(users, &blocks, s.items.ids(), shared.params.rank)
}

/// The stripe's part of the items' gradient: Σ |N(u)|^-½ share_u over the stripe's users of
/// each item, by position (items × k). `share` is the stripe's users' shares.
pub(super) fn item_gradient(index: &mut StripeItems, reach: &Reach, share: &[f32], k: usize) -> Vec<f32> {
    let norms = &reach.user_norm[index.first()..][..share.len() / k];
    index.item_gradient(norms, share)
}

/// Σ n_j |q_j|² over the items of half `h`, whose rows are `factors`.
pub(super) fn half_norm(shared: &Shared, reach: &Reach, h: usize, factors: &[f32], k: usize) -> f64 {
    let first = shared.schedule.items.start(h);
    factors.chunks(k).enumerate().map(|(j, q)| reach.item_counts[first + j] as f64 * dot(q, q) as f64).sum()
}

/// Worker 0: moves y (`item_vectors`, by position) by the stripes' gradients, added in stripe
/// order (into the first, rather than into fresh memory: on a virtual machine mapping 9 MB of
/// new pages took 50–90 ms an epoch), with the ratings' mean |q|² from the halves' norms, added
/// in half order.
pub(super) fn step_items(shared: &Shared, reach: &Reach, item_vectors: &mut [f32], gradients: Vec<Vec<f32>>, norms: &[f64], k: usize, step: &Step) {
    let mut parts = gradients.into_iter();
    let mut gradient = parts.next().unwrap_or_else(|| vec![0.0; item_vectors.len()]);
    for part in parts {
        gradient.iter_mut().zip(&part).for_each(|(g, x)| *g += x);
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

/// The stripe's users' priors afresh from y (items × k), into `z` (users × k): z_u =
/// |N(u)|^-½ Σ y_j over the items each rated, in the order of the stripe's blocks.
pub(super) fn priors(index: &mut StripeItems, reach: &Reach, item_vectors: &[f32], z: &mut [f32], k: usize) {
    index.priors(&reach.user_norm[index.first()..][..z.len() / k], item_vectors, z)
}

/// Halves a worker holds after an epoch, in order: each half once, so their norms add up the
/// whole.
pub(super) fn halves_in_order<'a>(halves: impl Iterator<Item = (&'a usize, &'a super::Rows)>) -> Vec<(usize, &'a super::Rows)> {
    let mut held: Vec<(usize, &super::Rows)> = halves.map(|(&h, rows)| (h, rows)).collect();
    held.sort_by_key(|(h, _)| *h);
    debug_assert!(held.iter().all(|(h, _)| *h < usize::MAX / HALVES));
    held
}
