//! What training needs to know of the training ratings as a whole, gathered in one pass (in
//! memory) or piece by piece (the disk cache and the cluster read files in pieces).

use super::Rating;

/// Count, sum, sum of squares and range of a set of ratings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RatingSummary {
    pub count: u64,
    pub sum: f64,
    pub sum_squares: f64,
    pub lowest: f32,
    pub highest: f32,
}

impl Default for RatingSummary {
    fn default() -> Self {
        RatingSummary { count: 0, sum: 0.0, sum_squares: 0.0, lowest: f32::INFINITY, highest: f32::NEG_INFINITY }
    }
}

impl RatingSummary {
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
        }
        self.count += ratings.len() as u64;
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
        assert_eq!(pieces.range(), Some((1.0, 5.0)));
        assert!((pieces.spread() - 2f32.sqrt()).abs() < 1e-6);
    }

    #[test]
    fn no_spread_gives_a_unit_of_one() {
        assert_eq!(RatingSummary::default().spread(), 1.0);
        assert_eq!(RatingSummary::default().range(), None);
        assert_eq!(RatingSummary::of(&ratings(&[4.0, 4.0])).spread(), 1.0);
    }
}
