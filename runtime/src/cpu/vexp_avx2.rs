//! `vexp`'s kernels in 8 AVX2 lanes, for every SIMD level without the 16-lane ones (`avx2`,
//! `avx2int8`, `exact` on AVX-512) and the erf GELU everywhere. The exponential takes the same steps as the 16-lane one: the
//! same reduction and polynomial, and 2^n applied as two exact power-of-two factors
//! (each normal for the clamped range), so the only rounding is the last product's, as
//! with `vscalefps`: each lane's e^x equals the AVX-512 kernel's bit for bit.

use std::arch::x86_64::*;

// The 16-lane kernel's constants, shared so that the two stay bit-identical.
use super::vexp::x86::{EXP_C7, EXP_POLY, LN2_HI, LN2_LO, LOG2E};

/// 2^n for integer-valued n in [-126, 127] (n + 127 is the biased exponent).
#[inline(always)]
unsafe fn pow2(n: __m256i) -> __m256 {
    _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(n, _mm256_set1_epi32(127))))
}

/// e^x per lane. Below -104 the result is 0, above 88.7 it is +inf as expf gives.
#[inline(always)]
pub(super) unsafe fn exp8(x: __m256) -> __m256 {
    let x = _mm256_max_ps(x, _mm256_set1_ps(-104.0));
    let x = _mm256_min_ps(x, _mm256_set1_ps(89.0));
    let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm256_mul_ps(x, _mm256_set1_ps(LOG2E)));
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_HI), x);
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_LO), r);
    // 1 + r + r²/2! + … + r⁷/7! on |r| ≤ ln2/2 (truncation error below 5e-9).
    let mut p = _mm256_set1_ps(EXP_C7);
    for c in EXP_POLY {
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
    }
    // n in [-150, 128]: halves in [-75, 64], each 2^half a normal float, and p · 2^hi
    // stays normal, so only the second product rounds (to a subnormal or to inf).
    let n = _mm256_cvtps_epi32(n);
    let hi = _mm256_srai_epi32::<1>(n);
    let lo = _mm256_sub_epi32(n, hi);
    _mm256_mul_ps(_mm256_mul_ps(p, pow2(hi)), pow2(lo))
}

/// Lanes 0..len of a row's last partial chunk.
#[inline(always)]
unsafe fn tail_mask(len: usize) -> __m256i {
    _mm256_cmpgt_epi32(_mm256_set1_epi32(len as i32), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))
}

/// row[..seen] = softmax(row[..seen]) (the caller zeroes the rest).
#[target_feature(enable = "avx2,fma")]
pub unsafe fn softmax_prefix(row: &mut [f32], seen: usize) {
    assert!(seen <= row.len());
    let p = row.as_mut_ptr();
    let whole = seen / 8 * 8;
    let mask = tail_mask(seen - whole);
    let neg_inf = _mm256_set1_ps(f32::NEG_INFINITY);
    let mut max = neg_inf;
    for i in (0..whole).step_by(8) {
        max = _mm256_max_ps(max, _mm256_loadu_ps(p.add(i)));
    }
    let tail = _mm256_blendv_ps(neg_inf, _mm256_maskload_ps(p.add(whole), mask), _mm256_castsi256_ps(mask));
    max = _mm256_max_ps(max, tail);
    let mut lanes = [0f32; 8];
    _mm256_storeu_ps(lanes.as_mut_ptr(), max);
    let max = _mm256_set1_ps(lanes.iter().copied().fold(f32::NEG_INFINITY, f32::max));
    let mut sum = _mm256_setzero_ps();
    for i in (0..whole).step_by(8) {
        let e = exp8(_mm256_sub_ps(_mm256_loadu_ps(p.add(i)), max));
        _mm256_storeu_ps(p.add(i), e);
        sum = _mm256_add_ps(sum, e);
    }
    let e = _mm256_and_ps(exp8(_mm256_sub_ps(tail, max)), _mm256_castsi256_ps(mask));
    _mm256_maskstore_ps(p.add(whole), mask, e);
    sum = _mm256_add_ps(sum, e);
    let inv = _mm256_set1_ps(1.0 / crate::cpu::simd::avx2::hsum(sum));
    for i in (0..whole).step_by(8) {
        _mm256_storeu_ps(p.add(i), _mm256_mul_ps(_mm256_loadu_ps(p.add(i)), inv));
    }
    _mm256_maskstore_ps(p.add(whole), mask, _mm256_mul_ps(e, inv));
}

/// The activations with 8-lane kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Act8 {
    /// x / (1 + e^-x).
    Silu,
    /// As `unary_fn`: 0.5·x·(1 + tanh(β(x + 0.044715x³))), tanh through one exp.
    GeluTanh,
    /// 0.5·x·(1 + erf(x/√2)) (`verf_avx2`).
    GeluErf,
}

impl Act8 {
    /// The kernel of `f`, where one exists.
    pub fn of(f: crate::op::UnaryFn) -> Option<Act8> {
        use crate::op::UnaryFn;
        match f {
            UnaryFn::Silu => Some(Act8::Silu),
            UnaryFn::GeluTanh => Some(Act8::GeluTanh),
            UnaryFn::GeluErf => Some(Act8::GeluErf),
            _ => None,
        }
    }
}

/// row = act(row + bias).
///
/// # Safety
/// The CPU has AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn act_row(act: Act8, bias: Option<&[f32]>, row: &mut [f32]) {
    assert!(bias.is_none_or(|b| b.len() >= row.len()), "bias shorter than the row");
    let p = row.as_mut_ptr();
    // Plain loads and stores for whole vectors: masked stores are microcoded on AMD cores
    // (the GELU pass after a 1000x6144 product took 3x longer with them throughout).
    let whole = row.len() / 8 * 8;
    for i in (0..whole).step_by(8) {
        let mut x = _mm256_loadu_ps(p.add(i));
        if let Some(b) = bias {
            x = _mm256_add_ps(x, _mm256_loadu_ps(b.as_ptr().add(i)));
        }
        _mm256_storeu_ps(p.add(i), act8(act, x));
    }
    if whole < row.len() {
        let mask = tail_mask(row.len() - whole);
        let mut x = _mm256_maskload_ps(p.add(whole), mask);
        if let Some(b) = bias {
            x = _mm256_add_ps(x, _mm256_maskload_ps(b.as_ptr().add(whole), mask));
        }
        _mm256_maskstore_ps(p.add(whole), mask, act8(act, x));
    }
}

/// The activation of eight lanes.
#[inline(always)]
unsafe fn act8(act: Act8, x: __m256) -> __m256 {
    const BETA: f32 = std::f32::consts::SQRT_2 * std::f32::consts::FRAC_2_SQRT_PI * 0.5;
    let one = _mm256_set1_ps(1.0);
    match act {
        Act8::GeluErf => super::verf_avx2::gelu_erf8(x),
        Act8::Silu => _mm256_div_ps(x, _mm256_add_ps(one, exp8(_mm256_sub_ps(_mm256_setzero_ps(), x)))),
        Act8::GeluTanh => {
            let x3 = _mm256_mul_ps(_mm256_mul_ps(x, x), x);
            let inner = _mm256_mul_ps(_mm256_set1_ps(BETA), _mm256_fmadd_ps(_mm256_set1_ps(0.044715), x3, x));
            // tanh(u) = (e^2u − 1) / (e^2u + 1); beyond |u| = 15 it is ±1.
            let e = exp8(_mm256_add_ps(inner, inner));
            let t = _mm256_div_ps(_mm256_sub_ps(e, one), _mm256_add_ps(e, one));
            let abs = _mm256_andnot_ps(_mm256_set1_ps(-0.0), inner);
            let big = _mm256_cmp_ps::<_CMP_GT_OQ>(abs, _mm256_set1_ps(15.0));
            let negative = _mm256_cmp_ps::<_CMP_LT_OQ>(inner, _mm256_setzero_ps());
            let sign = _mm256_blendv_ps(one, _mm256_set1_ps(-1.0), negative);
            let t = _mm256_blendv_ps(t, sign, big);
            _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(0.5), x), _mm256_add_ps(one, t))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Arguments across the clamped range, where results turn subnormal, zero and inf.
    fn arguments() -> Vec<f32> {
        let mut xs: Vec<f32> = (-1100..=900).map(|i| i as f32 * 0.0987).collect();
        xs.extend([-200.0, -104.0, -103.9, -103.3, -100.0, -87.5, -0.0, 0.0, 88.7, 88.72, 89.0, 100.0, f32::NEG_INFINITY, f32::INFINITY]);
        xs
    }

    fn exp8_of(xs: &[f32]) -> Vec<f32> {
        let mut out = vec![0f32; xs.len().next_multiple_of(8)];
        let mut padded = xs.to_vec();
        padded.resize(out.len(), 0.0);
        for (src, dst) in padded.chunks_exact(8).zip(out.chunks_exact_mut(8)) {
            // SAFETY: AVX2/FMA detected by the callers.
            unsafe { _mm256_storeu_ps(dst.as_mut_ptr(), exp8(_mm256_loadu_ps(src.as_ptr()))) };
        }
        out.truncate(xs.len());
        out
    }

    #[test]
    fn exp8_is_within_2_ulp_of_the_rounded_exponential() {
        if !is_x86_feature_detected!("avx2") || !is_x86_feature_detected!("fma") {
            return println!("SKIPPED: this CPU lacks AVX2/FMA");
        }
        let xs = arguments();
        for (&x, got) in xs.iter().zip(exp8_of(&xs)) {
            let want = (x as f64).exp() as f32;
            let ulps = (got.to_bits() as i64 - want.to_bits() as i64).abs();
            assert!(ulps <= 2, "e^{x}: {got:e} vs {want:e} ({ulps} ulp)");
        }
    }

    #[test]
    fn exp8_equals_the_avx512_kernel_bit_for_bit() {
        if !is_x86_feature_detected!("avx512f") || !is_x86_feature_detected!("avx2") || !is_x86_feature_detected!("fma") {
            return println!("SKIPPED: this CPU lacks AVX-512 F (the 16-lane kernel)");
        }
        let mut xs = arguments();
        xs.resize(xs.len().next_multiple_of(16), 1.0);
        let got = exp8_of(&xs);
        for (x16, g16) in xs.chunks_exact(16).zip(got.chunks_exact(16)) {
            let mut want = [0f32; 16];
            // SAFETY: AVX-512 F detected above.
            unsafe { _mm512_storeu_ps(want.as_mut_ptr(), crate::cpu::vexp::x86::exp16(_mm512_loadu_ps(x16.as_ptr()))) };
            for ((x, g), w) in x16.iter().zip(g16).zip(want) {
                assert_eq!(g.to_bits(), w.to_bits(), "e^{x}: 8 lanes {g:e}, 16 lanes {w:e}");
            }
        }
    }
}
