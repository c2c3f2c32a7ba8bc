//! The SVD++ term's passes over one DSGD stripe's users, for the distributed runner.

use crate::data::Rating;
use crate::error::Result;
use crate::vector::widest;
use super::index::{Index, UserItems};
use super::rounded::{RoundedRows, Sweeps};

/// The SVD++ term's two sums over one DSGD stripe's users, for the distributed runner
/// ([`crate::distributed`]), on rows as the cluster sends them (row by row, k a row): the
/// same index and sweeps as the CPU's pass. (Rating by rating over the stripe's blocks, each
/// rating's rows from L3 or memory, the passes made two workers' epochs 2.3x as long as they
/// are with these, at rank 128 on the 20M set: BENCHMARKS.md.)
pub(crate) struct StripeItems {
    index: Index,
    /// The stripe's first user, by position.
    first: usize,
    /// y or its gradient by sweep, kept from pass to pass (9 MB at rank 128 on 17,770 items).
    sweeps: Sweeps,
}

impl StripeItems {
    /// The items of users `users` (positions), from their ratings: `blocks` in order (the
    /// stripe's row of the grid), each naming only those users and items below `items`.
    pub fn new(users: std::ops::Range<usize>, blocks: &[&[Rating]], items: usize, k: usize) -> Result<StripeItems> {
        let first = users.start;
        let mut counts = vec![0u32; users.len()];
        for r in blocks.iter().flat_map(|b| b.iter()) {
            match counts.get_mut((r.user as usize).wrapping_sub(first)) {
                Some(n) if (r.item as usize) < items => *n += 1,
                _ => return Err(crate::error::Error::Data(format!("a rating names user {} and item {}, outside the stripe's users {users:?} and the {items} items", r.user, r.item))),
            }
        }
        let by_user = UserItems::build(&counts, first, |add| {
            blocks.iter().for_each(|b| add(b));
            Ok(())
        })?;
        Ok(StripeItems { index: Index::new(by_user, users.len(), items, k), first, sweeps: Sweeps::zeros(items, k) })
    }

    /// The stripe's first user, by position.
    pub fn first(&self) -> usize {
        self.first
    }

    /// Each item's part of y's gradient from the stripe: Σ |N(u)|^-½ share_u over its users in
    /// the stripe, in their order (items × k, row by row). `norms` and `shares` (users × k)
    /// are the stripe's users'.
    pub fn item_gradient(&mut self, norms: &[f32], shares: &[f32]) -> Vec<f32> {
        self.index.item_gradient(&mut self.sweeps, norms, shares);
        self.sweeps.to_rows()
    }

    /// The stripe's users' priors z_u = |N(u)|^-½ Σ y_j over their items, into `z` (users × k,
    /// row by row), from y (items × k, row by row): the bits of the one-process pass.
    pub fn priors(&mut self, norms: &[f32], y: &[f32], z: &mut [f32]) {
        let (k, path) = (self.sweeps.k, widest());
        self.sweeps.set_rows(y);
        self.index.items.set(&self.sweeps);
        for c in 0..RoundedRows::pairs(k) {
            self.index.priors(c, 0, norms, z, k, path);
        }
    }
}
