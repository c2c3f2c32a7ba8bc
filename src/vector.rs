//! Small vector kernels the model and every CPU trainer share, with the same bits on every
//! path: [`dot`] is the reference, and [`Lanes`] lets the update loop pick an AVX2 or AVX-512
//! twin that does the same arithmetic in the same order (the distributed runner's models are
//! bit-identical across machines, with or without AVX2).

/// Dot product in the order both paths keep: eight lanes, even and odd chunks of eight in two
/// accumulators (two dependency chains, so the sum waits half as long), the lanes then folded
/// as a register folds (8 → 4 → 2 → 1), and the last `len % 8` products added in turn.
#[inline(always)]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    // −0.0, not 0.0: x + (−0.0) is x for every x, so the compiler drops the first addition
    // (x + 0.0 is not x for x = −0.0). The sums are the same bits but where every product is
    // −0.0 (then −0.0, not 0.0), which every caller then adds to something else.
    let mut acc = [[-0.0f32; 8]; 2];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (c, (x, y)) in ca.zip(cb).enumerate() {
        let acc = &mut acc[c & 1];
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    let lanes: [f32; 8] = std::array::from_fn(|l| acc[0][l] + acc[1][l]);
    let mut s = fold(lanes);
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

/// Eight lanes to one: halves added (8 → 4), then halves again (4 → 2), then the two.
#[inline(always)]
fn fold(lanes: [f32; 8]) -> f32 {
    let half = [lanes[0] + lanes[4], lanes[1] + lanes[5], lanes[2] + lanes[6], lanes[3] + lanes[7]];
    let quarter = [half[0] + half[2], half[1] + half[3]];
    quarter[0] + quarter[1]
}

/// y += a·x.
#[inline(always)]
pub fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
    for (yf, &xf) in y.iter_mut().zip(x) {
        *yf += a * xf;
    }
}

/// Asks the cache for `values` ahead of their use, a line (16 floats) at a time: for rows a loop
/// will read a few steps on, so their misses overlap its work. A no-op where stable Rust has no
/// prefetch (not x86_64).
#[inline(always)]
pub fn prefetch(values: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let mut at = 0;
        while at < values.len() {
            // SAFETY: a prefetch reads nothing; the address is within `values`.
            unsafe { _mm_prefetch(values.as_ptr().add(at) as *const i8, _MM_HINT_T0) };
            at += 16;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = values;
}

/// `out[f] = a·x[f]` for the 32 floats of `x` (two cache lines), written past the caches
/// (streaming stores) where `out` holds them all from a line's start and the CPU has AVX2: for
/// rows written once a pass and read only after it, whose lines would otherwise each be read
/// from memory before being written and push out of L2 what the pass reads. The same bits
/// either way. [`finish_streams`] before another thread reads them.
#[inline(always)]
pub(crate) fn stream_scaled(out: &mut [f32], a: f32, x: &[f32; 32], path: Path) {
    #[cfg(target_arch = "x86_64")]
    if path != Path::Portable && out.len() >= 32 && (out.as_ptr() as usize).is_multiple_of(64) {
        // SAFETY: the CPU has AVX2 (`path` says so), and `out` holds 32 floats from a 64-byte
        // boundary, as the stores need.
        unsafe { stream_scaled_avx2(out.as_mut_ptr(), a, x) };
        return;
    }
    let _ = path;
    for (o, &v) in out.iter_mut().zip(x) {
        *o = a * v;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn stream_scaled_avx2(out: *mut f32, a: f32, x: &[f32; 32]) {
    use std::arch::x86_64::{_mm256_loadu_ps, _mm256_mul_ps, _mm256_set1_ps, _mm256_stream_ps};
    let a = _mm256_set1_ps(a);
    for at in (0..32).step_by(8) {
        // SAFETY: `at + 8` ≤ 32, within `x` and (the caller's word) `out`, 32-byte aligned.
        unsafe { _mm256_stream_ps(out.add(at), _mm256_mul_ps(a, _mm256_loadu_ps(x.as_ptr().add(at)))) };
    }
}

/// Orders this thread's streaming stores ([`stream_scaled`]) before what it writes next, so a
/// thread that sees its work done sees them too.
#[inline(always)]
pub(crate) fn finish_streams() {
    // SAFETY: SSE, which the fence needs, is part of every x86_64 CPU.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        std::arch::x86_64::_mm_sfence()
    };
}

/// Floats in a cache line (64 bytes).
pub const LINE_FLOATS: usize = 16;

/// A cache line of floats: what [`CacheLines`] allocates, so that its first float starts one.
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C, align(64))]
struct Line([f32; LINE_FLOATS]);

/// Floats that start on a cache-line boundary, for factor rows and the rows beside them. The
/// allocator aligns a large `Vec<f32>` to 16 bytes only, so at a rank that is a multiple of 16
/// every 512-bit load and store of a row touched two lines; here each touches one (the
/// sequential trainer's updates/s 1.04–1.07× at rank 32 and 1.10–1.15× at 128, BENCHMARKS.md). The
/// floats are written when allocated, by the thread that allocates them, so their pages are
/// mapped at set-up: mapped by the first epoch's threads at once, the SVD++ term's made that
/// epoch 1.4 s longer at rank 128 on 20M ratings with two threads (on a virtual machine, where
/// page faults from two threads wait on each other).
#[derive(Clone, Default)]
pub struct CacheLines {
    lines: Vec<Line>,
    len: usize,
}

impl CacheLines {
    /// `len` zeros.
    pub fn zeros(len: usize) -> CacheLines {
        CacheLines { lines: vec![Line::default(); len.div_ceil(LINE_FLOATS)], len }
    }
}

impl From<&[f32]> for CacheLines {
    fn from(values: &[f32]) -> CacheLines {
        let mut out = CacheLines::zeros(values.len());
        out.copy_from_slice(values);
        out
    }
}

impl From<Vec<f32>> for CacheLines {
    fn from(values: Vec<f32>) -> CacheLines {
        CacheLines::from(values.as_slice())
    }
}

impl std::ops::Deref for CacheLines {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &bytemuck::cast_slice(&self.lines)[..self.len]
    }
}

impl std::ops::DerefMut for CacheLines {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut bytemuck::cast_slice_mut(&mut self.lines)[..self.len]
    }
}

impl PartialEq for CacheLines {
    fn eq(&self, other: &CacheLines) -> bool {
        self[..] == other[..]
    }
}

impl std::fmt::Debug for CacheLines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// `rows` in an array whose first float starts a cache line ([`CacheLines`] says why): the
/// same values and shape, the array's storage 15 floats longer at most. A copy of it (`clone`)
/// is aligned as the allocator gives, so a trainer aligns the arrays it trains in place.
pub fn line_aligned(rows: ndarray::Array2<f32>) -> ndarray::Array2<f32> {
    if rows.is_empty() || (rows.as_ptr().align_offset(std::mem::align_of::<Line>()) == 0 && rows.is_standard_layout()) {
        return rows;
    }
    let (shape, len) = (rows.dim(), rows.len());
    let mut storage = vec![0.0f32; len + LINE_FLOATS - 1];
    let skip = storage.as_ptr().align_offset(std::mem::align_of::<Line>());
    for (to, &from) in storage[skip..skip + len].iter_mut().zip(rows.iter()) {
        *to = from;
    }
    ndarray::Array1::from_vec(storage).slice_move(ndarray::s![skip..skip + len]).into_shape_with_order(shape).expect("the same number of floats")
}

/// Which dot product a hot loop uses: the compiler vectorises [`dot`]'s lanes poorly (two at a
/// time), so a loop compiled for AVX2 takes [`Avx2`]'s, and one for AVX-512 [`Avx512`]'s, with
/// the same bits.
pub(crate) trait Lanes {
    fn dot(a: &[f32], b: &[f32]) -> f32;
}

/// The widest vector path this CPU runs, for the hot loops that are compiled once per path
/// (each with its [`Lanes`], the same bits on all).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) enum Path {
    Portable,
    /// AVX2 and FMA.
    Avx2,
    /// AVX-512F, AVX2 and FMA.
    Avx512,
}

/// [`Path`] for this CPU (the detection is cached by the standard library).
pub(crate) fn widest() -> Path {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        if has!("avx2") && has!("fma") {
            return if has!("avx512f") { Path::Avx512 } else { Path::Avx2 };
        }
    }
    Path::Portable
}

/// [`dot`] on this CPU's widest path ([`widest`]): the same bits, for code that scores one
/// pair of rows at a time outside the compiled hot loops (evaluation, prediction).
#[inline]
pub(crate) fn dot_widest(a: &[f32], b: &[f32]) -> f32 {
    match widest() {
        // SAFETY (both): the CPU has the path's features (`widest` detected them).
        #[cfg(target_arch = "x86_64")]
        Path::Avx512 => unsafe { dot_avx512(a, b) },
        #[cfg(target_arch = "x86_64")]
        Path::Avx2 => unsafe { dot_avx2(a, b) },
        _ => dot(a, b),
    }
}

/// [`dot`] as written.
pub(crate) struct Portable;

impl Lanes for Portable {
    #[inline(always)]
    fn dot(a: &[f32], b: &[f32]) -> f32 {
        dot(a, b)
    }
}

/// [`dot`] in AVX2 registers. Only for code that runs where AVX2 was detected.
#[cfg(target_arch = "x86_64")]
pub(crate) struct Avx2;

#[cfg(target_arch = "x86_64")]
impl Lanes for Avx2 {
    #[inline(always)]
    fn dot(a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: `Avx2` is used only where AVX2 was detected (see its doc).
        unsafe { dot_avx2(a, b) }
    }
}

/// [`dot`]'s arithmetic in 256-bit registers: the same products and sums in the same order (no
/// fused multiply-add), so the same bits.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let n = a.len().min(b.len());
    let chunks = n / 8;
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    // SAFETY (all loads): chunk c reads elements 8c..8c+8 < n of both slices.
    let product = |c: usize| unsafe { _mm256_mul_ps(_mm256_loadu_ps(pa.add(8 * c)), _mm256_loadu_ps(pb.add(8 * c))) };
    let (mut even, mut odd) = (_mm256_set1_ps(-0.0), _mm256_set1_ps(-0.0));
    let mut c = 0;
    while c + 2 <= chunks {
        even = _mm256_add_ps(even, product(c));
        odd = _mm256_add_ps(odd, product(c + 1));
        c += 2;
    }
    if c < chunks {
        even = _mm256_add_ps(even, product(c));
    }
    fold_avx2(even, odd, a, b, 8 * chunks)
}

/// The end of [`dot`] in 256-bit registers, from the even and odd chunks' accumulators: the
/// two added, their lanes folded (8 → 4 → 2 → 1), then the products from `done` on in turn.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
fn fold_avx2(even: std::arch::x86_64::__m256, odd: std::arch::x86_64::__m256, a: &[f32], b: &[f32], done: usize) -> f32 {
    use std::arch::x86_64::*;
    let lanes = _mm256_add_ps(even, odd);
    let half = _mm_add_ps(_mm256_castps256_ps128(lanes), _mm256_extractf128_ps(lanes, 1));
    let quarter = _mm_add_ps(half, _mm_movehl_ps(half, half));
    let mut s = _mm_cvtss_f32(_mm_add_ss(quarter, _mm_shuffle_ps(quarter, quarter, 1)));
    for (x, y) in a[done..].iter().zip(&b[done..]) {
        s += x * y;
    }
    s
}

/// [`dot`] in AVX-512 registers. Only for code that runs where AVX-512F was detected.
#[cfg(target_arch = "x86_64")]
pub(crate) struct Avx512;

#[cfg(target_arch = "x86_64")]
impl Lanes for Avx512 {
    #[inline(always)]
    fn dot(a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: `Avx512` is used only where AVX-512F was detected (see its doc).
        unsafe { dot_avx512(a, b) }
    }
}

/// [`dot`]'s arithmetic in 512-bit registers, with the same bits: a register's low half is the
/// even chunks' accumulator and its high half the odd chunks', so a pair of chunks takes one
/// multiply and one add where AVX2 takes two of each.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2")]
#[inline]
unsafe fn dot_avx512(a: &[f32], b: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let n = a.len().min(b.len());
    let chunks = n / 8;
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut pairs = _mm512_set1_ps(-0.0);
    let mut c = 0;
    while c + 2 <= chunks {
        // SAFETY: chunks c and c + 1 are elements 8c..8c+16 <= n of both slices.
        pairs = _mm512_add_ps(pairs, unsafe { _mm512_mul_ps(_mm512_loadu_ps(pa.add(8 * c)), _mm512_loadu_ps(pb.add(8 * c))) });
        c += 2;
    }
    let mut even = _mm512_castps512_ps256(pairs);
    let odd = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(pairs)));
    if c < chunks {
        // SAFETY: chunk c is elements 8c..8c+8 <= n of both slices.
        even = _mm256_add_ps(even, unsafe { _mm256_mul_ps(_mm256_loadu_ps(pa.add(8 * c)), _mm256_loadu_ps(pb.add(8 * c))) });
    }
    fold_avx2(even, odd, a, b, 8 * chunks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_lines_start_a_line_and_hold_exactly_their_floats() {
        for len in [0, 1, 15, 16, 17, 1000] {
            let values: Vec<f32> = (0..len).map(|i| i as f32 - 3.5).collect();
            let lines = CacheLines::from(values.clone());
            assert_eq!(lines.as_ptr() as usize % 64, 0, "length {len}");
            assert_eq!(&lines[..], &values[..]);
            assert_eq!(lines.clone().as_ptr() as usize % 64, 0, "a clone, length {len}");
            assert!(CacheLines::zeros(len).iter().all(|&x| x == 0.0) && CacheLines::zeros(len).len() == len);
        }
    }

    #[test]
    fn a_line_aligned_array_keeps_its_values_and_shape() {
        for (m, k) in [(1, 1), (7, 3), (40, 32)] {
            // An array that starts 4 bytes into a line, whatever the allocator gave.
            let storage = line_aligned(ndarray::Array2::from_shape_fn((1, m * k + 1), |(_, j)| j as f32));
            let offset = ndarray::Array1::from_iter(storage.iter().copied()).slice_move(ndarray::s![1..]);
            let rows = offset.into_shape_with_order((m, k)).unwrap();
            let expected = rows.clone();
            let aligned = line_aligned(rows);
            assert_eq!(aligned, expected);
            assert!(aligned.is_standard_layout());
            assert_eq!(aligned.as_ptr() as usize % 64, 0, "{m} x {k}");
        }
    }

    #[test]
    fn dot_is_the_sum_of_products() {
        let a: Vec<f32> = (0..21).map(|i| i as f32).collect();
        let b = vec![2.0f32; 21];
        assert_eq!(dot(&a, &b), 420.0);
        assert_eq!(dot(&[], &[]), 0.0);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_avx2_avx512_and_widest_dots_have_the_portable_bits() {
        if !std::arch::is_x86_feature_detected!("avx2") {
            return;
        }
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        };
        for len in 0..=70 {
            for _ in 0..20 {
                let (a, b): (Vec<f32>, Vec<f32>) = (0..len).map(|_| (next(), next() * 1e3)).unzip();
                assert_eq!(Avx2::dot(&a, &b).to_bits(), dot(&a, &b).to_bits(), "length {len}");
                assert_eq!(dot_widest(&a, &b).to_bits(), dot(&a, &b).to_bits(), "the widest path, length {len}");
                if std::arch::is_x86_feature_detected!("avx512f") {
                    assert_eq!(Avx512::dot(&a, &b).to_bits(), dot(&a, &b).to_bits(), "AVX-512, length {len}");
                }
            }
        }
    }
}
