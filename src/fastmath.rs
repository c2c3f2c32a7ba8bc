//! exp and log in straight-line f32 arithmetic, for the per-rating losses of the CPU update,
//! and the logistic loss's slope and value from a table ([`logistic_tail`]), which takes the
//! exp and the division out of its update's chain.
//!
//! libm's `expf`/`logf` are accurate and fast on their own, but in the update loop each call
//! makes the caller save and restore every vector register around it (the x86-64 ABI keeps none
//! across a call): two calls per rating cost the logistic loss 40% of its speed beside squared
//! error. These inline into the loop. Both are the classic range reduction and polynomial
//! (Cody–Waite reduction; minimax coefficients of the Cephes library's single-precision
//! routines), within 1 ulp of libm (see the tests). Neither calls libm even at the edges
//! (overflow, zero, infinities, NaN, which they choose by comparisons): a call left on a cold
//! path still makes the compiler keep the loop's vectors on the stack.
//!
//! The polynomials use `mul_add`: one rounding per step, so the bits are the same on every
//! machine (the distributed runner's models are bit-identical across them), and one
//! instruction where the CPU has FMA (x86-64 with AVX2, every aarch64), which shortens the
//! chain the update waits on.

const LOG2_E: f32 = std::f32::consts::LOG2_E;
/// ln 2 in two parts: the high part has few mantissa bits, so n·LN2_HI is exact for the n
/// that occur and the reduced argument keeps its precision.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// Adding and subtracting 1.5·2²³ rounds an f32 of magnitude below 2²² to the nearest integer.
const ROUNDER: f32 = 12_582_912.0;

/// e^x. Within 1 ulp of `f32::exp`, subnormal results, overflow and NaN included.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    // Beyond these e^x is 0 or infinite in f32, and the clamped value gives it; NaN passes.
    let x = x.clamp(-104.0, 89.0);
    // x·log2 e rounded to the integer n: t = 1.5·2²³ + n has ulp 1, so n is also t's bits less
    // the rounder's (no float-to-int conversion, whose saturation costs five instructions).
    let t = x.mul_add(LOG2_E, ROUNDER);
    let whole = t.to_bits() as i32 - ROUNDER.to_bits() as i32;
    let n = t - ROUNDER;
    let r = n.mul_add(-LN2_LO, n.mul_add(-LN2_HI, x));
    // e^r = 1 + r + r²·p(r) on |r| ≤ ln2/2, p of degree 5 in Estrin's form: three pairs at
    // once, then two steps, where Horner's rule would wait on five.
    let r2 = r * r;
    let r4 = r2 * r2;
    let low = r.mul_add(1.666_666_5e-1, 5e-1);
    let mid = r.mul_add(8.333_452e-3, 4.166_579_6e-2);
    let high = r.mul_add(1.987_569_1e-4, 1.398_199_9e-3);
    let p = high.mul_add(r4, mid.mul_add(r2, low));
    let er = p.mul_add(r2, r) + 1.0;
    // 2^n as two normal powers of two (n runs −150..=128), so the result rounds once, to a
    // subnormal or to infinity where it must.
    let pow2 = |e: i32| f32::from_bits(((e + 127) as u32) << 23);
    er * pow2(whole >> 1) * pow2(whole - (whole >> 1))
}

/// ln x. Within 1 ulp of `f32::ln`, and as libm at 0, below, at infinity and for NaN.
#[inline(always)]
pub fn ln(x: f32) -> f32 {
    // A subnormal x is scaled into the normal range first.
    let tiny = x < f32::MIN_POSITIVE;
    let scaled = if tiny { x * 8_388_608.0 } else { x };
    // x = 2^e · m with m in [√½, √2): ln x = e·ln 2 + ln m, ln m from a polynomial in m − 1.
    let bits = scaled.to_bits();
    let mut e = ((bits >> 23) as i32 - 126) as f32 - if tiny { 23.0 } else { 0.0 };
    let mut m = f32::from_bits((bits & 0x007f_ffff) | 0x3f00_0000);
    let low = m < std::f32::consts::FRAC_1_SQRT_2;
    e = if low { e - 1.0 } else { e };
    m = if low { m + m - 1.0 } else { m - 1.0 };
    let z = m * m;
    let mut y = 7.037_683_6e-2f32;
    y = y.mul_add(m, -1.151_461e-1);
    y = y.mul_add(m, 1.167_699_9e-1);
    y = y.mul_add(m, -1.242_014_1e-1);
    y = y.mul_add(m, 1.424_932_3e-1);
    y = y.mul_add(m, -1.666_805_8e-1);
    y = y.mul_add(m, 2.000_071_4e-1);
    y = y.mul_add(m, -2.499_999_4e-1);
    y = y.mul_add(m, 3.333_333e-1);
    y = e.mul_add(LN2_LO, y * m * z);
    y = z.mul_add(-0.5, y);
    let r = e.mul_add(LN2_HI, m + y);
    if x == 0.0 {
        f32::NEG_INFINITY
    } else if x.is_nan() || x < 0.0 {
        f32::NAN
    } else if x == f32::INFINITY {
        x
    } else {
        r
    }
}

/// Nodes per unit of x in [`logistic_tail`]'s table: the first- and second-order terms about the
/// nearest node, at most 1/128 away, leave errors below 10⁻⁷ (see the test). 16 KB: it
/// shares the L1 cache with the block's rows.
const NODES_PER_UNIT: f32 = 64.0;
/// The table's last node: beyond x = 16, σ(−x) < 1.2·10⁻⁷, and the slope is taken as there.
const LAST_NODE: usize = 16 * NODES_PER_UNIT as usize;

/// (σ(−x), σ′, σ″/2, ln(1 + e^(−x))) at each node x = n/64, n = 0..=1024, of σ(−x) = 1/(1 + e^x),
/// computed in f64 when the crate compiles, so every machine has the same table.
static LOGISTIC_TABLE: [[f32; 4]; LAST_NODE + 1] = logistic_table();

const fn logistic_table() -> [[f32; 4]; LAST_NODE + 1] {
    // r = e^(−1/64) from its series; the nodes' e^(−x) are its powers (relative error below
    // 10⁻¹³ after 1024 products, far below f32's).
    let h = 1.0 / NODES_PER_UNIT as f64;
    let (mut r, mut term, mut k) = (1.0f64, 1.0f64, 1);
    while k < 20 {
        term = term * -h / k as f64;
        r += term;
        k += 1;
    }
    let mut table = [[0.0f32; 4]; LAST_NODE + 1];
    let (mut t, mut n) = (1.0f64, 0);
    while n <= LAST_NODE {
        let sigma = t / (1.0 + t);
        let slope = -sigma * (1.0 - sigma);
        // ln(1 + t) = 2·atanh(y), y = t/(2 + t) ≤ 1/3: its odd series converges by 1/9 a term.
        let (y, mut power, mut sum, mut j) = (t / (2.0 + t), t / (2.0 + t), 0.0f64, 0);
        while j < 30 {
            sum += power / (2 * j + 1) as f64;
            power *= y * y;
            j += 1;
        }
        table[n] = [sigma as f32, slope as f32, (0.5 * slope * (2.0 * sigma - 1.0)) as f32, (2.0 * sum) as f32];
        t *= r;
        n += 1;
    }
    table
}

/// (σ(−x), ln(1 + e^(−x))) for x ≥ 0: the logistic loss's slope and value at margin x, without
/// the exp and the division that would sit between each update's score and its writes (on a
/// 2-core EPYC they cost the logistic loss 40% of its speed beside squared error). A table
/// lookup and two second-order steps from the nearest node: within 10⁻⁷ of the exact values
/// (an f32 step or two at these magnitudes, as the exp and division it replaces) up to x = 16,
/// 1.2·10⁻⁷ beyond (the test), far inside the step's own noise, and the same
/// bits on every machine (the table
/// is built when the crate compiles; the steps are `mul_add`). NaN gives NaN, so a diverging
/// model is still caught.
#[inline(always)]
pub fn logistic_tail(x: f32) -> (f32, f32) {
    // Comparison, not f32::min, so NaN passes through to `frac` below.
    let x = if x > 16.0 { 16.0 } else { x };
    // The nearest node, rounded as in `exp`; NaN's bits land beyond the table and are held to
    // its last node.
    let t = x.mul_add(NODES_PER_UNIT, ROUNDER);
    let n = ((t.to_bits() as i32 - ROUNDER.to_bits() as i32) as u32 as usize).min(LAST_NODE);
    let frac = x - (t - ROUNDER) * (1.0 / NODES_PER_UNIT);
    let [sigma, slope, curve, softplus] = LOGISTIC_TABLE[n];
    let frac2 = frac * frac;
    // d/dx ln(1 + e^(−x)) = −σ(−x), and its second derivative is −σ′.
    (curve.mul_add(frac2, slope.mul_add(frac, sigma)), (-0.5 * slope).mul_add(frac2, (-sigma).mul_add(frac, softplus)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How many f32 steps apart two finite values are.
    fn ulps(a: f32, b: f32) -> u32 {
        let key = |v: f32| {
            let i = v.to_bits() as i32;
            if i < 0 { i32::MIN - i } else { i }
        };
        key(a).abs_diff(key(b))
    }

    #[test]
    fn exp_is_within_1_ulp_of_libm_and_exact_at_the_edges() {
        let mut worst = 0;
        for i in 0..=2_000_000 {
            let x = -105.0 + 195.0 * i as f32 / 2_000_000.0;
            worst = worst.max(ulps(exp(x), x.exp()));
        }
        assert!(worst <= 1, "exp: {worst} ulp");
        for x in [0.0f32, -0.0, 1.0, -1.0, 88.5, 88.8, 100.0, -103.5, -110.0, -1e30, f32::INFINITY, f32::NEG_INFINITY] {
            assert_eq!(exp(x).to_bits(), x.exp().to_bits(), "exp({x})");
        }
        assert!(exp(f32::NAN).is_nan());
    }

    #[test]
    fn ln_is_within_1_ulp_of_libm_and_exact_at_the_edges() {
        let mut worst = 0;
        let mut x = f32::MIN_POSITIVE;
        while x < f32::MAX / 1.0001 {
            for step in 0..64 {
                let v = x * (1.0 + step as f32 / 64.0);
                worst = worst.max(ulps(ln(v), v.ln()));
            }
            x *= 1.37;
        }
        for i in 1..=100_000 {
            let v = 0.5 + i as f32 / 100_000.0;
            worst = worst.max(ulps(ln(v), v.ln()));
        }
        assert!(worst <= 1, "ln: {worst} ulp");
        assert_eq!(ln(1.0), 0.0);
        for x in [0.0f32, -0.0, f32::INFINITY] {
            assert_eq!(ln(x).to_bits(), x.ln().to_bits(), "ln({x})");
        }
        for x in [1e-40f32, 1e-45, 3e-39] {
            assert!(ulps(ln(x), x.ln()) <= 1, "ln({x}) = {}, libm {}", ln(x), x.ln());
        }
        assert!(ln(-1.0).is_nan() && ln(f32::NEG_INFINITY).is_nan());
        assert!(ln(f32::NAN).is_nan() && ln(-1.0).is_nan());
    }

    #[test]
    fn the_logistic_table_is_within_1e_7_of_the_exact_sigmoid_and_softplus() {
        let (mut worst_sigma, mut worst_softplus, mut worst_beyond) = (0.0f64, 0.0f64, 0.0f64);
        for i in 0..=500_000 {
            let x = 25.0 * i as f32 / 500_000.0;
            let (sigma, softplus) = logistic_tail(x);
            let e = (-(x as f64)).exp();
            let off = ((sigma as f64 - e / (1.0 + e)).abs(), (softplus as f64 - e.ln_1p()).abs());
            if x <= 16.0 {
                worst_sigma = worst_sigma.max(off.0);
                worst_softplus = worst_softplus.max(off.1);
            } else {
                worst_beyond = worst_beyond.max(off.0.max(off.1));
            }
        }
        assert!(worst_sigma < 1e-7 && worst_softplus < 1e-7, "σ off by {worst_sigma:e}, softplus by {worst_softplus:e}");
        assert!(worst_beyond < 1.2e-7, "beyond 16: off by {worst_beyond:e}");
        assert_eq!(logistic_tail(0.0), (0.5, std::f32::consts::LN_2));
        let (sigma, softplus) = logistic_tail(f32::NAN);
        assert!(sigma.is_nan() && softplus.is_nan());
    }
}
