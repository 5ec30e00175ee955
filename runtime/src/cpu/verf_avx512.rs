//! The exact GELU on 16 AVX-512 lanes: `verf_avx2::gelu_erf8`'s operations in its order on
//! wider vectors (its polynomials, and `vexp::x86::exp16`, bit-identical per lane to
//! `exp8`), so both give the same bits, and the many-row GEMMs apply it as they store
//! their sums (`store::x86::store16`).

use std::arch::x86_64::*;

use super::verf_avx2::{ERFC_SCALED, ERF_SATURATES, ERF_SMALL};
use super::vexp::x86::exp16;

#[inline(always)]
unsafe fn horner(c: &[f32], s: __m512) -> __m512 {
    let mut acc = _mm512_set1_ps(c[c.len() - 1]);
    for &v in c[..c.len() - 1].iter().rev() {
        acc = _mm512_fmadd_ps(acc, s, _mm512_set1_ps(v));
    }
    acc
}

/// 0.5·x·(1 + erf(x/√2)) per lane, as `gelu_erf8` computes it.
/// # Safety
/// AVX-512 F.
#[inline]
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn gelu_erf16(x: __m512) -> __m512 {
    let one = _mm512_set1_ps(1.0);
    let two = _mm512_set1_ps(2.0);
    let z = _mm512_mul_ps(x, _mm512_set1_ps(std::f32::consts::FRAC_1_SQRT_2));
    let a = _mm512_abs_ps(z);
    let s = _mm512_fmsub_ps(_mm512_mul_ps(z, z), two, one);
    let small = _mm512_fmadd_ps(z, horner(&ERF_SMALL, s), one);
    let ac = _mm512_min_ps(_mm512_max_ps(a, one), _mm512_set1_ps(ERF_SATURATES));
    let s = _mm512_fmsub_ps(ac, _mm512_set1_ps(2.0 / 3.0), _mm512_set1_ps(5.0 / 3.0));
    let erfc = _mm512_mul_ps(exp16(_mm512_mul_ps(ac, _mm512_sub_ps(_mm512_setzero_ps(), ac))), horner(&ERFC_SCALED, s));
    let negative = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(z, _mm512_setzero_ps());
    let large = _mm512_mask_blend_ps(negative, _mm512_sub_ps(two, erfc), erfc);
    let saturated = _mm512_mask_blend_ps(negative, two, _mm512_setzero_ps());
    let beyond = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(a, _mm512_set1_ps(ERF_SATURATES));
    let within = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(a, one);
    let one_plus_erf = _mm512_mask_blend_ps(within, _mm512_mask_blend_ps(beyond, large, saturated), small);
    _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(0.5), x), one_plus_erf)
}

#[cfg(test)]
mod tests {
    use std::arch::x86_64::*;

    /// The same bits as `gelu_erf8` over both sides of every branch edge, the tails and
    /// the special values.
    #[test]
    fn matches_the_eight_lane_kernel_bit_for_bit() {
        if !crate::cpu::Isa::Avx512.available() {
            return println!("SKIPPED: no AVX-512 on this CPU");
        }
        let mut xs: Vec<f32> = (-90_001..=90_001).map(|i| i as f32 * 1.37e-4).collect();
        xs.extend([f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 0.0, -0.0, -100.0, 100.0, 1e-30, -1e-30, 1.4142, 1.4143, -5.6568, -5.657, 5.657]);
        xs.resize(xs.len().next_multiple_of(16), 0.5);
        for chunk in xs.chunks_exact(16) {
            // SAFETY: AVX-512 F checked (the AVX-512 level implies AVX2/FMA); 16 values.
            let (wide, narrow) = unsafe {
                let mut wide = [0f32; 16];
                _mm512_storeu_ps(wide.as_mut_ptr(), super::gelu_erf16(_mm512_loadu_ps(chunk.as_ptr())));
                let mut narrow = [0f32; 16];
                for h in 0..2 {
                    _mm256_storeu_ps(narrow.as_mut_ptr().add(8 * h), crate::cpu::verf_avx2::gelu_erf8(_mm256_loadu_ps(chunk.as_ptr().add(8 * h))));
                }
                (wide, narrow)
            };
            for ((x, w), n) in chunk.iter().zip(wide).zip(narrow) {
                assert!(w.to_bits() == n.to_bits(), "gelu({x}): {w:e} vs {n:e}");
            }
        }
    }
}
