//! Vector exponentials: exp as a 16-lane polynomial (degree 7 after reduction by ln 2,
//! scaled by `vscalefps`; within 2 ulp of the correctly rounded value), and the same
//! exponential in 8 lanes (`vexp_avx2`, bit-identical per element), where scalar `expf`
//! calls would cost as much as the products around them. The softmax rows of the
//! many-query attention and the GELU-tanh and SiLU activations take them at every SIMD
//! level, `exact` included (f32 arithmetic within 2 ulp, as PyTorch's CPU kernels take
//! SLEEF's vector functions), and so does the exact GELU with its erf in 8 lanes
//! (`verf_avx2`: within 2e-7 of max(|x|, 1), where libm's erff in 0.5·x·(1 + erf) loses
//! the negative tail's bits to cancellation anyway), in 16 at the bf16 levels
//! (`verf_avx512`, the same bits).

use super::elementwise::unary_fn;
use super::simd::Isa;
use crate::op::UnaryFn;

/// Whether `isa` takes the vector form of activation `f` (every SIMD level does, for the
/// activations with an 8-lane kernel).
#[inline]
pub fn vector(isa: Isa, f: UnaryFn) -> bool {
    #[cfg(target_arch = "x86_64")]
    return isa.avx2() && super::vexp_avx2::Act8::of(f).is_some();
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (isa, f);
        false
    }
}

/// row[..seen] = softmax(row[..seen]), row[seen..] = 0.
pub fn softmax_prefix(isa: Isa, row: &mut [f32], seen: usize) {
    #[cfg(target_arch = "x86_64")]
    if isa.avx2() {
        // SAFETY: the levels are only constructed on CPUs with their features (AVX-512 F
        // for the bf16 ones, AVX2/FMA for every level from avx2 on).
        unsafe {
            if isa.bf16_dot() {
                x86::softmax_prefix(row, seen)
            } else {
                super::vexp_avx2::softmax_prefix(row, seen)
            }
        };
        row[seen..].fill(0.0);
        return;
    }
    let _ = isa;
    let max = row[..seen]
        .iter()
        .copied()
        .fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0f32;
    for x in &mut row[..seen] {
        *x = (*x - max).exp();
        sum += *x;
    }
    let inv = 1.0 / sum;
    for x in &mut row[..seen] {
        *x *= inv;
    }
    row[seen..].fill(0.0);
}

/// The bf16 attention's probabilities before normalising: e^(row[j] − max) over
/// j < seen, rounded to bf16 pairs of consecutive keys as `pair_tile::round_pairs` lays
/// them out (0 from `seen` on, through all of `pairs`). Returns 1 / the f32 sum of the
/// exponentials, by which the caller scales the output rows (0 when no key is seen: the
/// output is 0): one pass over the scores fewer than normalising first, and the rounding
/// fused into the exponentials' pass. `isa` must have bf16 dot products.
pub fn softmax_pairs(isa: Isa, row: &[f32], seen: usize, pairs: &mut [u32]) -> f32 {
    assert!(isa.bf16_dot(), "bf16 probabilities need AVX512-BF16, not {}", isa.key());
    if seen == 0 {
        pairs.fill(0);
        return 0.0;
    }
    assert!(seen <= row.len() && pairs.len().is_multiple_of(16) && 2 * pairs.len() >= seen, "probabilities of {seen} of {} scores into {} pairs", row.len(), pairs.len());
    // SAFETY: the bf16 levels are only constructed on CPUs with AVX-512 F and BF16;
    // lengths asserted above.
    #[cfg(target_arch = "x86_64")]
    return unsafe { x86::softmax_pairs(row, seen, pairs) };
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("AVX512-BF16 exists only on x86-64 ({})", row.len() + pairs.len())
}

/// row[j] = f(row[j] + bias[j]) (no bias: f(row[j])).
pub fn act_row(isa: Isa, f: Option<UnaryFn>, bias: Option<&[f32]>, row: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if let Some(act) = f.and_then(super::vexp_avx2::Act8::of).filter(|_| isa.avx2()) {
        assert!(bias.is_none_or(|b| b.len() >= row.len()), "bias shorter than the row");
        // SAFETY: the SIMD levels are only constructed on CPUs with AVX2/FMA, the bf16
        // ones with AVX-512 F too; the bias, when given, covers the row.
        if isa.bf16_dot() {
            unsafe { x86::act_row(act, bias, row) };
        } else {
            unsafe { super::vexp_avx2::act_row(act, bias, row) };
        }
        return;
    }
    let _ = isa;
    match (f, bias) {
        (None, None) => {}
        // A bias alone: slices in step, so the sum vectorises.
        (None, Some(bias)) => {
            let bias = &bias[..row.len()];
            row.iter_mut().zip(bias).for_each(|(o, &b)| *o += b);
        }
        (Some(f), _) => {
            for (j, o) in row.iter_mut().enumerate() {
                *o = unary_fn(f, *o + bias.map_or(0.0, |b| b[j]));
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
pub(super) mod x86 {
    use std::arch::x86_64::*;

    pub(in crate::cpu) const LOG2E: f32 = std::f32::consts::LOG2_E;
    /// ln 2 split so that n·LN2_HI is exact for |n| < 2^11.
    pub(in crate::cpu) const LN2_HI: f32 = 0.693_145_75;
    pub(in crate::cpu) const LN2_LO: f32 = 1.428_606_8e-6;
    /// 1/7!, then the Horner coefficients of 1 + r + r²/2! + … + r⁶/6! (highest first).
    pub(in crate::cpu) const EXP_C7: f32 = 1.0 / 5040.0;
    pub(in crate::cpu) const EXP_POLY: [f32; 7] = [1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0];

    /// e^x per lane. Below -104 the result is 0, above 88.7 it is +inf as expf gives.
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub(in crate::cpu) unsafe fn exp16(x: __m512) -> __m512 {
        let x = _mm512_max_ps(x, _mm512_set1_ps(-104.0));
        let x = _mm512_min_ps(x, _mm512_set1_ps(89.0));
        let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
            _mm512_mul_ps(x, _mm512_set1_ps(LOG2E)),
        );
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_HI), x);
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_LO), r);
        // 1 + r + r²/2! + … + r⁷/7! on |r| ≤ ln2/2 (truncation error below 5e-9).
        let mut p = _mm512_set1_ps(EXP_C7);
        for c in EXP_POLY {
            p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
        }
        _mm512_scalef_ps(p, n)
    }

    /// e^x per lane, for values rounded to bf16 next (8 significant bits: a rounding error
    /// up to 2^-8 relative): degree 4 after the reduction (truncation below 4.3e-5
    /// relative on |r| ≤ ln2/2) and one-part ln 2 (below 1.2e-6 more at the smallest
    /// normal result), half the polynomial of `exp16`. Below -104 the result is 0.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn exp16_for_bf16(x: __m512) -> __m512 {
        let x = _mm512_max_ps(x, _mm512_set1_ps(-104.0));
        let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
            _mm512_mul_ps(x, _mm512_set1_ps(LOG2E)),
        );
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(std::f32::consts::LN_2), x);
        let mut p = _mm512_set1_ps(1.0 / 24.0);
        for c in [1.0 / 6.0, 0.5, 1.0, 1.0] {
            p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
        }
        _mm512_scalef_ps(p, n)
    }

    /// The first `len` (at most 16) lanes: a row's last partial chunk.
    #[inline]
    pub(in crate::cpu) fn tail_mask(len: usize) -> __mmask16 {
        ((1u32 << len) - 1) as __mmask16
    }

    #[target_feature(enable = "avx512f")]
    pub unsafe fn softmax_prefix(row: &mut [f32], seen: usize) {
        assert!(seen <= row.len());
        let max = _mm512_set1_ps(max_prefix(row, seen));
        let p = row.as_mut_ptr();
        let whole = seen / 16 * 16;
        let mask = tail_mask(seen - whole);
        let mut sum = _mm512_setzero_ps();
        for i in (0..whole).step_by(16) {
            let e = exp16(_mm512_sub_ps(_mm512_loadu_ps(p.add(i)), max));
            _mm512_storeu_ps(p.add(i), e);
            sum = _mm512_add_ps(sum, e);
        }
        let e = exp16(_mm512_sub_ps(
            _mm512_maskz_loadu_ps(mask, p.add(whole)),
            max,
        ));
        _mm512_mask_storeu_ps(p.add(whole), mask, e);
        sum = _mm512_mask_add_ps(sum, mask, sum, e);
        let inv = _mm512_set1_ps(1.0 / _mm512_reduce_add_ps(sum));
        for i in (0..whole).step_by(16) {
            _mm512_storeu_ps(p.add(i), _mm512_mul_ps(_mm512_loadu_ps(p.add(i)), inv));
        }
        let t = _mm512_maskz_loadu_ps(mask, p.add(whole));
        _mm512_mask_storeu_ps(p.add(whole), mask, _mm512_mul_ps(t, inv));
    }

    /// The largest of row[..seen] (−∞ for none), lanes of a partial last vector masked.
    #[target_feature(enable = "avx512f")]
    unsafe fn max_prefix(row: &[f32], seen: usize) -> f32 {
        let p = row.as_ptr();
        let whole = seen / 16 * 16;
        let mask = tail_mask(seen - whole);
        let mut max = _mm512_set1_ps(f32::NEG_INFINITY);
        for i in (0..whole).step_by(16) {
            max = _mm512_max_ps(max, _mm512_loadu_ps(p.add(i)));
        }
        max = _mm512_mask_max_ps(max, mask, max, _mm512_maskz_loadu_ps(mask, p.add(whole)));
        _mm512_reduce_max_ps(max)
    }

    /// `super::softmax_pairs`; the caller checked the lengths.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub unsafe fn softmax_pairs(row: &[f32], seen: usize, pairs: &mut [u32]) -> f32 {
        let (p, out) = (row.as_ptr(), pairs.as_mut_ptr());
        let max = _mm512_set1_ps(max_prefix(row, seen));
        let mut sum = _mm512_setzero_ps();
        for c in 0..pairs.len() / 16 {
            let i = 32 * c;
            // e^(x − max) in the lanes below `seen`, 0 in the rest.
            let half = |at: usize| {
                let mask = tail_mask(seen.saturating_sub(at).min(16));
                let x = _mm512_maskz_loadu_ps(mask, p.wrapping_add(at));
                _mm512_maskz_mov_ps(mask, exp16_for_bf16(_mm512_sub_ps(x, max)))
            };
            let (lo, hi) = (half(i), half(i + 16));
            sum = _mm512_add_ps(sum, _mm512_add_ps(lo, hi));
            let halves: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(hi, lo));
            _mm512_storeu_si512(out.add(16 * c) as *mut _, halves);
        }
        1.0 / _mm512_reduce_add_ps(sum)
    }

    /// `act` (`act16`, or the exact GELU of `verf_avx512`) of row + bias.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn act_row(act: crate::cpu::vexp_avx2::Act8, bias: Option<&[f32]>, row: &mut [f32]) {
        use crate::cpu::vexp_avx2::Act8;
        let p = row.as_mut_ptr();
        let mut i = 0;
        while i < row.len() {
            let mask = tail_mask((row.len() - i).min(16));
            let mut x = _mm512_maskz_loadu_ps(mask, p.add(i));
            if let Some(b) = bias {
                x = _mm512_add_ps(x, _mm512_maskz_loadu_ps(mask, b.as_ptr().add(i)));
            }
            let y = match act {
                Act8::Silu => act16(true, x),
                Act8::GeluTanh => act16(false, x),
                Act8::GeluErf => crate::cpu::verf_avx512::gelu_erf16(x),
            };
            _mm512_mask_storeu_ps(p.add(i), mask, y);
            i += 16;
        }
    }

    /// GELU-tanh (as `unary_fn`: 0.5·x·(1 + tanh(β(x + 0.044715x³))), as x / (1 + e^-2u))
    /// or SiLU (x / (1 + e^-x)) of 16 lanes.
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub(in crate::cpu) unsafe fn act16(silu: bool, x: __m512) -> __m512 {
        const BETA: f32 = std::f32::consts::SQRT_2 * std::f32::consts::FRAC_2_SQRT_PI * 0.5;
        let one = _mm512_set1_ps(1.0);
        if silu {
            _mm512_div_ps(x, _mm512_add_ps(one, exp16(_mm512_sub_ps(_mm512_setzero_ps(), x))))
        } else {
            // 0.5·x·(1 + tanh(u)) = x / (1 + e^-2u), u = β·x·(1 + 0.044715·x²): one
            // exponential and one division (e^-2u overflows to +inf far below 0, giving -0
            // as the tanh form does).
            let scale = _mm512_fmadd_ps(_mm512_mul_ps(x, x), _mm512_set1_ps(-2.0 * BETA * 0.044715), _mm512_set1_ps(-2.0 * BETA));
            _mm512_div_ps(x, _mm512_add_ps(one, exp16(_mm512_mul_ps(x, scale))))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every SIMD level this CPU has.
    fn simd() -> Vec<Isa> {
        Isa::ALL.into_iter().filter(|l| l.available() && l.avx2()).collect()
    }

    #[test]
    fn vector_softmax_matches_the_scalar_one() {
        if simd().is_empty() {
            return println!("SKIPPED: no SIMD level on this CPU");
        }
        for isa in simd() {
        for (len, seen) in [(37, 37), (37, 20), (64, 64), (5, 1), (300, 299)] {
            let row: Vec<f32> = (0..len)
                .map(|i| ((i * 7919) % 211) as f32 * 0.37 - 30.0)
                .collect();
            let (mut got, mut want) = (row.clone(), row.clone());
            softmax_prefix(isa, &mut got, seen);
            softmax_prefix(Isa::Scalar, &mut want, seen);
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (g - w).abs() <= 4e-7 * w.abs() + 1e-30,
                    "{}: len {len} seen {seen} at {i}: {g} vs {w}",
                    isa.key()
                );
            }
        }
        }
    }

    /// The bf16 attention's probabilities: each value times the returned 1/sum is the
    /// softmax within bf16's rounding (2^-8 relative) and the exponential's 4.3e-5 (in the
    /// value and in the sum), and exactly 0 for a −∞ score, past `seen` through every
    /// pair, and with no key seen.
    #[test]
    fn bf16_probabilities_match_the_softmax() {
        if !Isa::Avx512Bf16.available() {
            return println!("SKIPPED: no AVX512-BF16 on this CPU");
        }
        for (len, seen, pairs) in [(64, 64, 32), (64, 37, 32), (128, 1, 64), (300, 299, 160), (40, 0, 16)] {
            let mut row: Vec<f32> = (0..len).map(|i| ((i * 7919) % 211) as f32 * 0.37 - 30.0).collect();
            if seen > 3 {
                row[2] = f32::NEG_INFINITY;
            }
            let mut want = row.clone();
            softmax_prefix(Isa::Scalar, &mut want, seen);
            let mut got = vec![u32::MAX; pairs];
            let inv = softmax_pairs(Isa::Avx512Bf16, &row, seen, &mut got);
            for (i, half) in got.iter().flat_map(|&pair| [pair & 0xffff, pair >> 16]).enumerate() {
                let (p, w) = (f32::from_bits(half << 16) * inv, want.get(i).copied().unwrap_or(0.0));
                assert!((p - w).abs() <= 4.0e-3 * w, "len {len} seen {seen} at {i}: {p} vs {w}");
            }
        }
    }

    /// Every SIMD level against the scalar path (libm's exp and erf), rows with and without
    /// a partial last vector.
    #[test]
    fn vector_activations_match_the_scalar_ones() {
        if simd().is_empty() {
            return println!("SKIPPED: no SIMD level on this CPU");
        }
        for (isa, len) in simd().into_iter().flat_map(|isa| [(isa, 203), (isa, 200)]) {
            let row: Vec<f32> = (0..len).map(|i| (i as f32 - 101.0) * 0.173).collect();
            let bias: Vec<f32> = (0..len).map(|i| (i % 7) as f32 * 0.01).collect();
            for f in [UnaryFn::GeluTanh, UnaryFn::Silu, UnaryFn::GeluErf] {
                for b in [None, Some(&bias[..])] {
                    let (mut got, mut want) = (row.clone(), row.clone());
                    act_row(isa, Some(f), b, &mut got);
                    act_row(Isa::Scalar, Some(f), b, &mut want);
                    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                        assert!((g - w).abs() <= 1e-6 * (1.0 + w.abs()), "{}: {f:?}, {len} long, at {i}: {g} vs {w}", isa.key());
                    }
                }
            }
        }
    }
}
