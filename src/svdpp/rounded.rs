//! y and the users' parts as the passes read them: columns sixteen at a time (sweeps), and two
//! sweeps rounded to bfloat16 in one cache line, the same bits on every path.

use crate::vector::{widest, CacheLines, Path};
use rayon::prelude::*;

/// Columns of y and its gradient in a cache line of each item's row: a sweep. The passes take
/// two sweeps at a time (y and the users' parts rounded to bfloat16, two sweeps a line:
/// [`RoundedRows`]), so what they read stays in a core's L2 cache (17,770 items: 1.1 MB, where
/// whole rows at rank 128 take 9 MB and came from L3) and each sum sits in registers.
pub(super) const SWEEP: usize = 16;

/// items × k floats sweep by sweep: columns 0..16 of every item, then 16..32, and so on, the
/// last sweep's lanes past k held at zero.
pub(super) struct Sweeps {
    pub(super) items: usize,
    pub(super) k: usize,
    pub(super) data: CacheLines,
}

impl Sweeps {
    pub(super) fn zeros(items: usize, k: usize) -> Sweeps {
        Sweeps { items, k, data: CacheLines::zeros(k.div_ceil(SWEEP) * items * SWEEP) }
    }

    /// Sweep `c` (its first column is c·16), items × 16.
    fn sweep(&self, c: usize) -> &[f32] {
        &self.data[c * self.items * SWEEP..][..self.items * SWEEP]
    }

    /// Item j's value in column f.
    #[cfg(test)]
    pub(super) fn at(&self, j: usize, f: usize) -> f32 {
        self.data[(f / SWEEP * self.items + j) * SWEEP + f % SWEEP]
    }

    /// Item j's columns of sweep `c`, and how many of the sweep's lanes are columns (the
    /// last sweep's may be fewer than 16).
    fn line(&self, c: usize, j: usize) -> std::ops::Range<usize> {
        let start = (c * self.items + j) * SWEEP;
        start..start + SWEEP.min(self.k - c * SWEEP)
    }

    /// items × k, row by row.
    pub(super) fn to_rows(&self) -> Vec<f32> {
        let mut rows = vec![0.0; self.items * self.k];
        for c in 0..self.k.div_ceil(SWEEP) {
            for j in 0..self.items {
                let line = &self.data[self.line(c, j)];
                rows[j * self.k + c * SWEEP..][..line.len()].copy_from_slice(line);
            }
        }
        rows
    }

    /// From items × k, row by row.
    pub(super) fn set_rows(&mut self, rows: &[f32]) {
        for c in 0..self.k.div_ceil(SWEEP) {
            for j in 0..self.items {
                let line = self.line(c, j);
                let width = line.len();
                self.data[line].copy_from_slice(&rows[j * self.k + c * SWEEP..][..width]);
            }
        }
    }
}

/// Rows (y's, or the users' parts of its gradient) rounded to bfloat16 for the passes' sums,
/// two sweeps a cache line: lane f of row r's line in pair c holds column 32c + f in its low
/// half and 32c + 16 + f in its high half. A sum reads a line a term and pair of sweeps, not
/// one a term and sweep: half the lines, which are what the passes wait on (at rank 128 on 20M
/// ratings, one thread, z's pass and the rows' moves took 0.26 s, against 0.34 with y's f32
/// lines; held-out figures the same: BENCHMARKS.md). The GPU rounds alike as it sums
/// ([`round_to_bf16`]); y, z and the sums themselves stay in f32.
pub(super) struct RoundedRows {
    rows: usize,
    pub(super) data: Vec<RoundedLine>,
}

/// A line of [`RoundedRows`], on a cache line of its own.
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C, align(64))]
pub(super) struct RoundedLine(pub(super) [u32; SWEEP]);

/// `scale` times two sweeps' values (`low`, `high`), rounded into a line. (Times 1 is exact.)
#[inline(always)]
fn pack_line(low: &[f32; SWEEP], high: &[f32; SWEEP], scale: f32) -> RoundedLine {
    RoundedLine(std::array::from_fn(|f| bf16_bits(scale * low[f]) >> 16 | bf16_bits(scale * high[f])))
}

/// A line's two sweeps added to `low` and `high`: a bfloat16 is the upper half of the float it
/// stands for, so the shift and the mask give each exactly.
#[inline(always)]
pub(super) fn add_line(line: &[u32; SWEEP], low: &mut [f32; SWEEP], high: &mut [f32; SWEEP]) {
    for ((l, h), &bits) in low.iter_mut().zip(high.iter_mut()).zip(line) {
        *l += f32::from_bits(bits << 16);
        *h += f32::from_bits(bits & 0xFFFF_0000);
    }
}

impl RoundedRows {
    pub(super) fn zeros(rows: usize, k: usize) -> RoundedRows {
        RoundedRows { rows, data: vec![RoundedLine::default(); RoundedRows::pairs(k) * rows] }
    }

    /// How many pairs of sweeps k columns take.
    pub(super) fn pairs(k: usize) -> usize {
        k.div_ceil(2 * SWEEP)
    }

    /// From y's sweeps.
    pub(super) fn set(&mut self, y: &Sweeps) {
        let (sweeps, none) = (y.k.div_ceil(SWEEP), vec![0.0; y.items * SWEEP]);
        self.data.par_chunks_mut(self.rows.max(1)).enumerate().for_each(|(c, pair)| {
            let low = y.sweep(2 * c).chunks_exact(SWEEP);
            let high = if 2 * c + 1 < sweeps { y.sweep(2 * c + 1) } else { &none };
            for ((line, low), high) in pair.iter_mut().zip(low).zip(high.chunks_exact(SWEEP)) {
                *line = pack_line(low.try_into().expect("a sweep"), high.try_into().expect("a sweep"), 1.0);
            }
        });
    }

    /// From `rows` (k wide, row by row), each row r times `scales[r]`: a task a few thousand
    /// rows, read in order, each row's lines of every pair in turn.
    pub(super) fn set_scaled(&mut self, rows: &[f32], k: usize, scales: &[f32]) {
        const ROWS: usize = 4096;
        let path = widest();
        let mut pairs: Vec<_> = self.data.chunks_mut(self.rows.max(1)).map(|pair| pair.chunks_mut(ROWS)).collect();
        let tasks: Vec<Vec<&mut [RoundedLine]>> = (0..self.rows.div_ceil(ROWS)).map(|_| pairs.iter_mut().map(|p| p.next().expect("a pair's rows")).collect()).collect();
        tasks.into_par_iter().enumerate().for_each(|(t, mut lines)| {
            let first = t * ROWS;
            let n = lines[0].len();
            round_rows(&mut lines, &rows[first * k..(first + n) * k], k, &scales[first..first + n], path);
        });
    }

    /// Pair `c` of sweeps (columns 32c..32c + 32), a line a row.
    pub(super) fn pair(&self, c: usize) -> &[[u32; SWEEP]] {
        bytemuck::cast_slice(&self.data[c * self.rows..][..self.rows])
    }
}

/// Each row of `rows` (k wide) times its scale, rounded, into its line of each pair (`lines`,
/// a slice of rows a pair).
fn round_rows(lines: &mut [&mut [RoundedLine]], rows: &[f32], k: usize, scales: &[f32], path: Path) {
    match path {
        // SAFETY (both): the CPU has the path's features (`widest` detected them).
        #[cfg(target_arch = "x86_64")]
        Path::Avx512 => unsafe { round_rows_avx512(lines, rows, k, scales) },
        #[cfg(target_arch = "x86_64")]
        Path::Avx2 => unsafe { round_rows_avx2(lines, rows, k, scales) },
        _ => round_rows_with(lines, rows, k, scales),
    }
}

/// (Rounding is exact integer work and the product one rounding, the same bits on every path.)
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn round_rows_avx512(lines: &mut [&mut [RoundedLine]], rows: &[f32], k: usize, scales: &[f32]) {
    round_rows_with(lines, rows, k, scales)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn round_rows_avx2(lines: &mut [&mut [RoundedLine]], rows: &[f32], k: usize, scales: &[f32]) {
    round_rows_with(lines, rows, k, scales)
}

#[inline(always)]
fn round_rows_with(lines: &mut [&mut [RoundedLine]], rows: &[f32], k: usize, scales: &[f32]) {
    for (r, (row, &scale)) in rows.chunks_exact(k).zip(scales).enumerate() {
        for (c, pair) in lines.iter_mut().enumerate() {
            let from = 2 * c * SWEEP;
            let (low, high): ([f32; SWEEP], [f32; SWEEP]) = match row.get(from..from + 2 * SWEEP) {
                Some(both) => (both[..SWEEP].try_into().expect("a sweep"), both[SWEEP..].try_into().expect("a sweep")),
                // The last pair, part-filled (lanes past k 0).
                None => {
                    let column = |f: usize| row.get(from + f).copied().unwrap_or(0.0);
                    (std::array::from_fn(column), std::array::from_fn(|f| column(SWEEP + f)))
                }
            };
            pair[r] = pack_line(&low, &high, scale);
        }
    }
}

/// `x` rounded to the nearest bfloat16 (ties to even), as an f32: what the passes' sums add.
#[inline]
pub(super) fn round_to_bf16(x: f32) -> f32 {
    f32::from_bits(bf16_bits(x))
}

/// The bits of `x` rounded to the nearest bfloat16 (ties to even): the upper half, the lower
/// zero. A NaN stays one (where shaders/svdpp.wgsl's may come out infinite: training has
/// failed by then either way).
#[inline]
fn bf16_bits(x: f32) -> u32 {
    let bits = x.to_bits();
    // (Both computed and one chosen, so the loops that round vectorise.)
    let rounded = bits.wrapping_add(0x7FFF + (bits >> 16 & 1)) & 0xFFFF_0000;
    if x.is_nan() { bits & 0xFFFF_0000 | 0x0040_0000 } else { rounded }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounded_lines_hold_two_sweeps_of_y_in_bfloat16() {
        let (items, k) = (3, 40);
        let rows: Vec<f32> = (0..items * k).map(|x| (x as f32 * 0.37).sin() / 3.0).collect();
        let mut sweeps = Sweeps::zeros(items, k);
        sweeps.set_rows(&rows);
        let mut rounded = RoundedRows::zeros(items, k);
        rounded.set(&sweeps);
        assert_eq!(RoundedRows::pairs(k), 2);
        for j in 0..items {
            for f in 0..2 * 2 * SWEEP {
                let bits = rounded.pair(f / (2 * SWEEP))[j][f % SWEEP];
                let half = if f % (2 * SWEEP) < SWEEP { bits << 16 } else { bits & 0xFFFF_0000 };
                let expected = if f < k { round_to_bf16(rows[j * k + f]) } else { 0.0 };
                assert_eq!(f32::from_bits(half), expected, "item {j}, column {f}");
                assert!(f >= k || (expected - rows[j * k + f]).abs() <= rows[j * k + f].abs() / 256.0);
            }
        }
    }

    #[test]
    fn bfloat16_rounds_to_nearest_ties_to_even() {
        let ulp = 1.0 / 128.0; // a bfloat16's 7 fraction bits, at 1
        assert_eq!(round_to_bf16(1.0 + ulp / 2.0), 1.0);
        assert_eq!(round_to_bf16(1.0 + 3.0 * ulp / 2.0), 1.0 + 2.0 * ulp);
        assert_eq!(round_to_bf16(1.0 + ulp / 2.0 + 1e-6), 1.0 + ulp);
        assert_eq!(round_to_bf16(-(1.0 + ulp / 2.0 + 1e-6)), -(1.0 + ulp));
        assert_eq!(round_to_bf16(0.0), 0.0);
        assert_eq!(round_to_bf16(f32::INFINITY), f32::INFINITY);
        assert!(round_to_bf16(f32::NAN).is_nan());
    }

    #[test]
    fn sweeps_hold_each_items_columns_sixteen_at_a_time() {
        let (items, k) = (3, 20);
        let rows: Vec<f32> = (0..items * k).map(|x| x as f32 + 1.0).collect();
        let mut sweeps = Sweeps::zeros(items, k);
        sweeps.set_rows(&rows);
        assert_eq!(sweeps.to_rows(), rows);
        // Item 1's first 16 columns, then (after the other items') its last 4 and 12 zeros.
        assert_eq!(&sweeps.sweep(0)[16..32], &rows[20..36]);
        assert_eq!(&sweeps.sweep(1)[16..20], &rows[36..40]);
        assert!(sweeps.sweep(1)[16..32][4..].iter().all(|&x| x == 0.0));
        assert_eq!(sweeps.at(1, 17), rows[37]);
    }
}
