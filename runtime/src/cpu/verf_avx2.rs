//! The exact GELU, 0.5·x·(1 + erf(x/√2)), 8 AVX2 lanes at a time at every SIMD level (16
//! at the bf16 levels: `verf_avx512`, the same operations)
//! (the scalar path calls libm's erff per element: a tenth of the front ends' elementwise
//! time). 1 + erf(z) comes from an odd polynomial below |z| = 1 and from
//! erfc(|z|) = e^(−z²)·h(|z|) above (as 2 − erfc, or erfc itself for negative z, which
//! keeps the negative tail's few significant bits instead of cancelling them); from
//! |z| = 4 on, erf is ±1 in f32 and 1 + erf is 2 or 0, as torch computes it.
//! Both polynomials are Chebyshev interpolants (of erf(z)/z in z², of h), within about
//! 1.5e-7 relative of the exact functions in f32 arithmetic; the GELU is within 2e-7 of
//! max(|x|, 1) everywhere, and within about 1.5e-6 relative on the negative tail (the
//! rounding of z = x/√2 grows by 2z² through e^(−z²)).

use std::arch::x86_64::*;

use super::vexp_avx2::exp8;

/// erf(z)/z = A(2z² − 1) for |z| < 1, lowest power first.
pub(super) const ERF_SMALL: [f32; 7] = [0.965_468_76, -0.140_536_1, 0.019_852_497, -0.002_285_419_5, 0.000_217_513_55, -1.766_906_8e-5, 1.230_605_4e-6];
/// h(a) = erfc(a)·e^(a²) = B(2a/3 − 5/3) for 1 <= a <= 4, lowest power first.
pub(super) const ERFC_SCALED: [f32; 13] = [
    0.210_806_37,
    -0.111_521,
    0.056_110_486,
    -0.027_005_717,
    0.012_489_52,
    -0.005_567_380_2,
    0.002_402_487_4,
    -0.001_017_008_9,
    0.000_412_986_93,
    -0.000_144_057_79,
    5.630_357_6e-5,
    -3.688_891_2e-5,
    1.336_583_6e-5,
];
/// From here on erf(z) rounds to ±1.
pub(super) const ERF_SATURATES: f32 = 4.0;

#[inline(always)]
unsafe fn horner(c: &[f32], s: __m256) -> __m256 {
    let mut acc = _mm256_set1_ps(c[c.len() - 1]);
    for &v in c[..c.len() - 1].iter().rev() {
        acc = _mm256_fmadd_ps(acc, s, _mm256_set1_ps(v));
    }
    acc
}

/// 0.5·x·(1 + erf(x/√2)) per lane; NaN stays NaN, −inf gives NaN as the formula does.
#[inline(always)]
pub(super) unsafe fn gelu_erf8(x: __m256) -> __m256 {
    let one = _mm256_set1_ps(1.0);
    let two = _mm256_set1_ps(2.0);
    let z = _mm256_mul_ps(x, _mm256_set1_ps(std::f32::consts::FRAC_1_SQRT_2));
    let a = _mm256_andnot_ps(_mm256_set1_ps(-0.0), z);
    // |z| < 1: 1 + z·A(2z² − 1).
    let s = _mm256_fmsub_ps(_mm256_mul_ps(z, z), two, one);
    let small = _mm256_fmadd_ps(z, horner(&ERF_SMALL, s), one);
    // 1 <= |z| < 4: erfc(|z|) (the argument clamped into the fit's range; NaN becomes 1
    // here and is carried by the final product with x).
    let ac = _mm256_min_ps(_mm256_max_ps(a, one), _mm256_set1_ps(ERF_SATURATES));
    let s = _mm256_fmsub_ps(ac, _mm256_set1_ps(2.0 / 3.0), _mm256_set1_ps(5.0 / 3.0));
    let erfc = _mm256_mul_ps(exp8(_mm256_mul_ps(ac, _mm256_sub_ps(_mm256_setzero_ps(), ac))), horner(&ERFC_SCALED, s));
    let negative = _mm256_cmp_ps::<_CMP_LT_OQ>(z, _mm256_setzero_ps());
    let large = _mm256_blendv_ps(_mm256_sub_ps(two, erfc), erfc, negative);
    let saturated = _mm256_blendv_ps(two, _mm256_setzero_ps(), negative);
    let beyond = _mm256_cmp_ps::<_CMP_GE_OQ>(a, _mm256_set1_ps(ERF_SATURATES));
    let within = _mm256_cmp_ps::<_CMP_LT_OQ>(a, one);
    let one_plus_erf = _mm256_blendv_ps(_mm256_blendv_ps(large, saturated, beyond), small, within);
    _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(0.5), x), one_plus_erf)
}

#[cfg(test)]
mod tests {
    use crate::cpu::vexp_avx2::{act_row, Act8};

    /// row = gelu_erf(row + bias) through the row kernel.
    unsafe fn gelu_erf_row(bias: Option<&[f32]>, row: &mut [f32]) {
        act_row(Act8::GeluErf, bias, row)
    }

    fn gelu(x: f64) -> f64 {
        0.5 * x * (1.0 + libm::erf(x / std::f64::consts::SQRT_2))
    }

    #[test]
    // The arguments straddle √2 on purpose (just below and above it), not approximate it.
    #[allow(clippy::approx_constant)]
    fn the_vector_gelu_is_within_2e7_of_the_exact_one() {
        if !is_x86_feature_detected!("avx2") || !is_x86_feature_detected!("fma") {
            return println!("SKIPPED: this CPU lacks AVX2/FMA");
        }
        // Both sides of every branch edge (|z| = 1 and 4, i.e. |x| = √2 and 4√2), odd length.
        let mut xs: Vec<f32> = (-130_001..=130_001).map(|i| i as f32 * 1e-4).collect();
        xs.extend([-100.0, -6.0, -5.657, -5.6568, -1.4143, -1.4142, 1.4142, 1.4143, 5.6568, 5.657, 30.0, 1e-30, -1e-30]);
        let mut got = xs.clone();
        // SAFETY: AVX2/FMA detected above.
        unsafe { gelu_erf_row(None, &mut got) };
        let mut worst = 0f64;
        for (&x, &g) in xs.iter().zip(&got) {
            let err = (g as f64 - gelu(x as f64)).abs() / (x.abs() as f64).max(1.0);
            worst = worst.max(err);
            assert!(err <= 2e-7, "gelu({x}) = {g:e}, want {:e}", gelu(x as f64));
        }
        println!("worst error {worst:e} (relative to max(|x|, 1))");
        // Relative accuracy on the negative tail, which the libm form loses to cancellation.
        for x in [-2.0f32, -3.0, -4.0, -5.0, -5.3, -5.5, -5.65] {
            let mut g = [x];
            // SAFETY: as above.
            unsafe { gelu_erf_row(None, &mut g) };
            let want = gelu(x as f64);
            assert!((g[0] as f64 - want).abs() <= 3e-6 * want.abs(), "gelu({x}) = {:e}, want {want:e}", g[0]);
        }
    }

    #[test]
    fn special_values_and_the_bias() {
        if !is_x86_feature_detected!("avx2") || !is_x86_feature_detected!("fma") {
            return println!("SKIPPED: this CPU lacks AVX2/FMA");
        }
        let mut row = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 0.0, -0.0, -7.0, 7.0, 1.0, 2.0];
        let bias = [0.0, 0.0, 0.0, 0.0, -0.0, 0.0, 0.0, 0.0, -1.0];
        // SAFETY: as above.
        unsafe { gelu_erf_row(Some(&bias), &mut row) };
        assert!(row[0].is_nan() && row[2].is_nan(), "{row:?}");
        assert_eq!(row[1], f32::INFINITY);
        assert_eq!((row[3], row[4].to_bits()), (0.0, (-0.0f32).to_bits()));
        assert_eq!((row[5], row[6]), (0.0, 7.0));
        assert!((row[7] as f64 - gelu(1.0)).abs() < 2e-7 && (row[8] as f64 - gelu(1.0)).abs() < 2e-7, "{row:?}");
    }
}
