//! What training needs to know of the training ratings as a whole, gathered in one pass (in
//! memory) or piece by piece (the disk cache and the cluster read files in pieces).

use super::Rating;

/// Count, sum, sum of squares and range of a set of ratings, and its first distinct values
/// (up to three: enough to tell whether a binary loss can take them as labels).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RatingSummary {
    pub count: u64,
    pub sum: f64,
    pub sum_squares: f64,
    pub lowest: f32,
    pub highest: f32,
    /// The first `distinct_seen` distinct values, in the order met.
    pub distinct: [f32; 3],
    pub distinct_seen: u8,
}

impl Default for RatingSummary {
    fn default() -> Self {
        RatingSummary { count: 0, sum: 0.0, sum_squares: 0.0, lowest: f32::INFINITY, highest: f32::NEG_INFINITY, distinct: [0.0; 3], distinct_seen: 0 }
    }
}

impl RatingSummary {
    /// What these ratings hold that is not an event (1), as [`super::check_values`] says it:
    /// `None` when every value is 1.
    pub fn not_events(&self) -> Option<String> {
        match (self.lowest, self.highest) {
            (1.0, 1.0) => None,
            (lowest, highest) if lowest == highest => Some(format!("the value {lowest} throughout")),
            (lowest, highest) => Some(format!("values from {lowest} to {highest}")),
        }
    }

    pub fn of(ratings: &[Rating]) -> RatingSummary {
        let mut summary = RatingSummary::default();
        summary.add(ratings);
        summary
    }

    pub fn add(&mut self, ratings: &[Rating]) {
        for r in ratings {
            let v = r.value as f64;
            self.sum += v;
            self.sum_squares += v * v;
            self.lowest = self.lowest.min(r.value);
            self.highest = self.highest.max(r.value);
            if self.distinct_seen < 3 && !self.values().contains(&r.value) {
                self.distinct[self.distinct_seen as usize] = r.value;
                self.distinct_seen += 1;
            }
        }
        self.count += ratings.len() as u64;
    }

    /// A summary kept elsewhere (a block cache's header): the count, sums, range and first
    /// distinct values.
    pub fn from_parts(count: u64, sum: f64, sum_squares: f64, (lowest, highest): (f32, f32), values: &[f32]) -> RatingSummary {
        let mut distinct = [0.0; 3];
        let seen = values.len().min(3);
        distinct[..seen].copy_from_slice(&values[..seen]);
        RatingSummary { count, sum, sum_squares, lowest, highest, distinct, distinct_seen: seen as u8 }
    }

    /// The first distinct values met, up to three.
    pub fn values(&self) -> &[f32] {
        &self.distinct[..self.distinct_seen as usize]
    }

    /// The mean rating, 0 without ratings.
    pub fn mean(&self) -> f32 {
        if self.count == 0 { 0.0 } else { (self.sum / self.count as f64) as f32 }
    }

    /// The least and greatest rating; `None` without ratings.
    pub fn range(&self) -> Option<(f32, f32)> {
        (self.lowest <= self.highest).then_some((self.lowest, self.highest))
    }

    /// The ratings' standard deviation; 1 where there is none to measure (no ratings, or all
    /// equal), so a unit taken from it is always usable.
    pub fn spread(&self) -> f32 {
        if self.count == 0 {
            return 1.0;
        }
        let (n, mean) = (self.count as f64, self.sum / self.count as f64);
        // Clamped: rounding can take Σv²/n − mean² just below zero.
        let variance = (self.sum_squares / n - mean * mean).max(0.0);
        let spread = variance.sqrt() as f32;
        if spread.is_finite() && spread as f64 > 1e-6 * (1.0 + mean.abs()) { spread } else { 1.0 }
    }
}

/// How many training ratings each user and each item has: frequency-scaled regularisation
/// (see [`crate::model::Params::reg_weights`]) weighs each row by its count.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RowCounts {
    pub users: Vec<u32>,
    pub items: Vec<u32>,
}

impl RowCounts {
    pub fn new(users: usize, items: usize) -> RowCounts {
        RowCounts { users: vec![0; users], items: vec![0; items] }
    }

    pub fn of(ratings: &[Rating], users: usize, items: usize) -> RowCounts {
        let mut counts = RowCounts::new(users, items);
        counts.add(ratings);
        counts
    }

    /// Counts `ratings` too, growing to the ids met (a streamed file's ids come as they are read).
    pub fn add(&mut self, ratings: &[Rating]) {
        for r in ratings {
            let (u, i) = (r.user as usize, r.item as usize);
            if u >= self.users.len() {
                self.users.resize(u + 1, 0);
            }
            if i >= self.items.len() {
                self.items.resize(i + 1, 0);
            }
            self.users[u] += 1;
            self.items[i] += 1;
        }
    }

    /// Sized for `users` and `items` (rows past the last id met have no ratings).
    pub fn sized(mut self, users: usize, items: usize) -> RowCounts {
        self.users.resize(users, 0);
        self.items.resize(items, 0);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ratings(values: &[f32]) -> Vec<Rating> {
        values.iter().enumerate().map(|(i, &value)| Rating { user: i as u32, item: 0, value }).collect()
    }

    #[test]
    fn pieces_sum_to_the_whole() {
        let all = ratings(&[1.0, 5.0, 3.0, 4.0, 2.0]);
        let mut pieces = RatingSummary::default();
        pieces.add(&all[..2]);
        pieces.add(&all[2..]);
        assert_eq!(pieces, RatingSummary::of(&all));
        assert_eq!(pieces.mean(), 3.0);
        assert_eq!(pieces.values(), [1.0, 5.0, 3.0], "the first three distinct values");
        assert_eq!(RatingSummary::of(&ratings(&[0.0, 1.0, 1.0, 0.0])).values(), [0.0, 1.0]);
        assert_eq!(pieces.range(), Some((1.0, 5.0)));
        assert!((pieces.spread() - 2f32.sqrt()).abs() < 1e-6);
    }

    #[test]
    fn rows_are_counted() {
        let all = [Rating { user: 0, item: 1, value: 1.0 }, Rating { user: 0, item: 0, value: 1.0 }, Rating { user: 2, item: 1, value: 1.0 }];
        assert_eq!(RowCounts::of(&all, 3, 2), RowCounts { users: vec![2, 0, 1], items: vec![1, 2] });
    }

    #[test]
    fn no_spread_gives_a_unit_of_one() {
        assert_eq!(RatingSummary::default().spread(), 1.0);
        assert_eq!(RatingSummary::default().range(), None);
        assert_eq!(RatingSummary::of(&ratings(&[4.0, 4.0])).spread(), 1.0);
    }
}
