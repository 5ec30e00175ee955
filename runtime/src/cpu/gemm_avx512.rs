//! AVX-512 micro-kernels: the f32 tile of the cache-blocked GEMM (`gemm.rs`), up to two
//! row panels against up to two column panels (12 rows x 32 columns, 24 zmm accumulators;
//! 12 x 16 where a column panel is left over, still enough independent FMA chains to hide
//! the latency); and for `Avx512Bf16` (`gemm_bf16.rs`) the converters of x
//! and W into bf16 pairs along K and the 6 x 64 tile that sums each pair's two products
//! into f32 with `vdpbf16ps`.

use super::gemm::{KC, MR, NR};

/// f32 -> bf16 bits, rounding to nearest even (NaN stays NaN).
#[inline]
pub(crate) fn bf16(x: f32) -> u32 {
    let b = x.to_bits();
    if x.is_nan() {
        return (b >> 16) | 0x40;
    }
    (b + 0x7fff + ((b >> 16) & 1)) >> 16
}

/// A pair of consecutive K entries as bf16 (the lower index in the low half), the operand
/// layout of `vdpbf16ps`.
#[inline]
pub(super) fn pair(lo: f32, hi: f32) -> u32 {
    bf16(lo) | (bf16(hi) << 16)
}

/// x micro-panels [..][KC][MR] f32 -> [..][KC/2][MR] bf16 pairs, in a scratch buffer
/// (each u32 stored as an f32 bit pattern).
pub fn x_pairs(isa: super::Isa, apack: &[f32]) -> super::scratch::Scratch {
    use rayon::prelude::*;
    let panels = apack.len() / (KC * MR);
    let mut out = super::scratch::take(panels * KC / 2 * MR);
    apack.par_chunks_exact(KC * MR).zip(out.par_chunks_exact_mut(KC / 2 * MR)).for_each(|(src, dst)| {
        let dst: &mut [u32] = bytemuck::cast_slice_mut(dst);
        #[cfg(target_arch = "x86_64")]
        if isa.bf16_dot() {
            // SAFETY: the level was detected; both panels are whole.
            return unsafe { x_panel_pairs_avx512(src, dst) };
        }
        let _ = isa;
        x_panel_pairs(src, dst);
    });
    out
}

/// One x micro-panel [KC][MR] -> [KC/2][MR] pairs (the portable twin of
/// `x_panel_pairs_avx512`).
pub(super) fn x_panel_pairs(src: &[f32], dst: &mut [u32]) {
    for kk in 0..KC / 2 {
        for i in 0..MR {
            dst[kk * MR + i] = pair(src[2 * kk * MR + i], src[(2 * kk + 1) * MR + i]);
        }
    }
}

/// One x micro-panel to pairs: per pair of inner indices, their 2·MR values (contiguous in
/// the panel) are rounded together and interleaved by one permute.
///
/// # Safety
/// AVX-512 F, BW, VL and BF16 must be available; `src` holds KC·MR and `dst` KC/2·MR values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
unsafe fn x_panel_pairs_avx512(src: &[f32], dst: &mut [u32]) {
    use std::arch::x86_64::*;
    const _: () = assert!(MR == 6);
    assert!(src.len() >= KC * MR && dst.len() >= KC / 2 * MR, "micro-panel bounds");
    // Output halves 2i and 2i+1 take row i of the lower and of the upper inner index.
    let idx = _mm256_setr_epi16(0, 6, 1, 7, 2, 8, 3, 9, 4, 10, 5, 11, 0, 0, 0, 0);
    for kk in 0..KC / 2 {
        let values = _mm512_maskz_loadu_ps(0x0fff, src.as_ptr().add(2 * kk * MR));
        let halves: __m256i = std::mem::transmute(_mm512_cvtneps_pbh(values));
        _mm256_mask_storeu_epi16(dst.as_mut_ptr().add(kk * MR) as *mut i16, 0x0fff, _mm256_permutexvar_epi16(idx, halves));
    }
}

/// Consecutive inner indices of one row as pairs: 32 values per two-vector conversion,
/// whose bf16 halves already lie in pair order.
///
/// # Safety
/// AVX-512 F and BF16 must be available; `src` holds a multiple of 32 values, `out` half as
/// many.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
pub unsafe fn row_pairs_avx512(src: &[f32], out: &mut [u32]) {
    use std::arch::x86_64::*;
    assert!(src.len().is_multiple_of(32) && out.len() >= src.len() / 2, "row bounds");
    for j in 0..src.len() / 32 {
        let lo = _mm512_loadu_ps(src.as_ptr().add(32 * j));
        let hi = _mm512_loadu_ps(src.as_ptr().add(32 * j + 16));
        let halves: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(hi, lo));
        _mm512_storeu_si512(out.as_mut_ptr().add(16 * j) as *mut _, halves);
    }
}

/// bf16 W [N, K]'s columns n0..n0+nb over k0..k0+kc as [kc/2][NR] pairs along K: per 16
/// pairs, each column's 32 values are one load (the pairs already lie along K) and a
/// 16 x 16 transpose of 32-bit lanes turns the columns into rows (per-pair gathers cost a
/// twentieth of the codec's products). An odd tail pairs with 0, missing columns are 0.
///
/// # Safety
/// AVX-512 F and BW must be available; rows n0..n0+nb of `w` hold k0..k0+kc, `out` holds
/// `kc.div_ceil(2)·NR`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn bf16_pairs_out_in_avx512(w: &[u16], k: usize, k0: usize, kc: usize, n0: usize, nb: usize, out: &mut [u32]) {
    use std::arch::x86_64::*;
    const _: () = assert!(NR == 16);
    assert!(nb <= NR && (nb == 0 || (n0 + nb - 1) * k + k0 + kc <= w.len()) && out.len() >= kc.div_ceil(2) * NR, "weight panel bounds");
    for kk0 in (0..kc.div_ceil(2)).step_by(16) {
        // Masked past kc: an odd tail's upper half and the pairs past it read as 0.
        let values = (kc - 2 * kk0).min(32);
        let mask: __mmask32 = if values == 32 { u32::MAX } else { (1u32 << values) - 1 };
        let columns: [__m512i; 16] = std::array::from_fn(|j| {
            if j < nb {
                _mm512_maskz_loadu_epi16(mask, w.as_ptr().add((n0 + j) * k + k0 + 2 * kk0) as *const i16)
            } else {
                _mm512_setzero_si512()
            }
        });
        let rows = transpose_16x16(columns);
        for (kk, row) in (kk0..kc.div_ceil(2)).zip(rows) {
            _mm512_storeu_si512(out.as_mut_ptr().add(kk * NR) as *mut _, row);
        }
    }
}

/// The 16 x 16 transpose of 32-bit lanes: element j of result i is element i of input j.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn transpose_16x16(r: [std::arch::x86_64::__m512i; 16]) -> [std::arch::x86_64::__m512i; 16] {
    use std::arch::x86_64::*;
    // Per 128-bit lane L, t[2i] holds (r[2i][4L], r[2i+1][4L], r[2i][4L+1], r[2i+1][4L+1])
    // and t[2i+1] the same of elements 4L+2 and 4L+3.
    let t: [__m512i; 16] = std::array::from_fn(|i| {
        let (a, b) = (r[i & !1], r[i | 1]);
        if i % 2 == 0 { _mm512_unpacklo_epi32(a, b) } else { _mm512_unpackhi_epi32(a, b) }
    });
    // u[4g + c], lane L: element 4L + c of inputs 4g..4g+4.
    let u: [__m512i; 16] = std::array::from_fn(|i| {
        let (g, c) = (i / 4, i % 4);
        let (a, b) = (t[4 * g + c / 2], t[4 * g + 2 + c / 2]);
        if c % 2 == 0 { _mm512_unpacklo_epi64(a, b) } else { _mm512_unpackhi_epi64(a, b) }
    });
    // Result 4L + c gathers lane L of u[c], u[4 + c], u[8 + c], u[12 + c]: lanes (0, 2)
    // and (1, 3) of each two, then of the two halves.
    let mut out = [_mm512_setzero_si512(); 16];
    for c in 0..4 {
        let v0 = _mm512_shuffle_i32x4::<0x88>(u[c], u[4 + c]);
        let v1 = _mm512_shuffle_i32x4::<0xdd>(u[c], u[4 + c]);
        let w0 = _mm512_shuffle_i32x4::<0x88>(u[8 + c], u[12 + c]);
        let w1 = _mm512_shuffle_i32x4::<0xdd>(u[8 + c], u[12 + c]);
        out[c] = _mm512_shuffle_i32x4::<0x88>(v0, w0);
        out[8 + c] = _mm512_shuffle_i32x4::<0xdd>(v0, w0);
        out[4 + c] = _mm512_shuffle_i32x4::<0x88>(v1, w1);
        out[12 + c] = _mm512_shuffle_i32x4::<0xdd>(v1, w1);
    }
    out
}

/// The 16 rows of `src` ([rows, d] f32) from `row0` as a [d/2][16] panel of bf16 pairs
/// (rows past `rows` 0, an odd d's last entry paired with 0): per 16 pairs, each row
/// rounded into one vector of pairs, then the 16 x 16 block transposed in registers. The
/// bf16 attention's Kᵀ panels and the AMX GEMM's x tiles.
/// # Safety
/// AVX-512 F and AVX512-BF16 must be available.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
pub(super) unsafe fn row_pair_panel(src: &[f32], d: usize, rows: usize, row0: usize, dst: &mut [u32]) {
    use std::arch::x86_64::*;
    let d2 = d.div_ceil(2);
    assert!(row0 < rows && rows * d <= src.len() && dst.len() >= d2 * NR, "row pair panel bounds");
    let live = (rows - row0).min(NR);
    for b in 0..d2.div_ceil(NR) {
        let f0 = 2 * NR * b;
        let mask = |from: usize| super::vexp::x86::tail_mask((d - f0).saturating_sub(from).min(16));
        let vectors: [__m512i; NR] = std::array::from_fn(|i| match i < live {
            true => {
                let row = src.as_ptr().add((row0 + i) * d + f0);
                let (lo, hi) = (_mm512_maskz_loadu_ps(mask(0), row), _mm512_maskz_loadu_ps(mask(16), row.wrapping_add(16)));
                std::mem::transmute::<__m512bh, __m512i>(_mm512_cvtne2ps_pbh(hi, lo))
            }
            false => _mm512_setzero_si512(),
        });
        let cols = transpose_16x16(vectors);
        for (j, col) in cols.iter().enumerate().take(d2 - NR * b) {
            _mm512_storeu_si512(dst.as_mut_ptr().add((NR * b + j) * NR) as *mut _, *col);
        }
    }
}

/// One weight micro-panel [kc][NR] f32 -> [kc/2][NR] bf16 pairs (an odd tail pairs with 0):
/// per pair of rows one two-vector conversion and one interleaving permute.
///
/// # Safety
/// AVX-512 F, BW and BF16 must be available; `bpack` holds `kc·NR`, `out` `kc.div_ceil(2)·NR`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
pub unsafe fn w_pairs_avx512(kc: usize, bpack: &[f32], out: &mut [u32]) {
    use std::arch::x86_64::*;
    const _: () = assert!(NR == 16);
    assert!(bpack.len() >= kc * NR && out.len() >= kc.div_ceil(2) * NR, "micro-panel bounds");
    let idx = _mm512_set_epi16(
        31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0,
    );
    for kk in 0..kc.div_ceil(2) {
        let lo = _mm512_loadu_ps(bpack.as_ptr().add(2 * kk * NR));
        let hi = if 2 * kk + 1 < kc { _mm512_loadu_ps(bpack.as_ptr().add((2 * kk + 1) * NR)) } else { _mm512_setzero_ps() };
        let halves: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(hi, lo));
        _mm512_storeu_si512(out.as_mut_ptr().add(kk * NR) as *mut _, _mm512_permutexvar_epi16(idx, halves));
    }
}

/// The portable twin of `w_pairs_avx512` (tests).
#[cfg_attr(not(test), allow(dead_code))]
pub fn w_pairs(kc: usize, bpack: &[f32], out: &mut [u32]) {
    for kk in 0..kc.div_ceil(2) {
        for j in 0..NR {
            let hi = if 2 * kk + 1 < kc { bpack[(2 * kk + 1) * NR + j] } else { 0.0 };
            out[kk * NR + j] = pair(bpack[2 * kk * NR + j], hi);
        }
    }
}

/// c[r·C + j] += a[r] · b[j] over `kc` inner indices for R 6-row panels and C 16-column
/// panels (R, C ≤ 2: at most 24 accumulators). Each x value is broadcast once for C
/// products and each weight vector serves 6·R; every sum takes its products in K order,
/// whatever R and C.
///
/// # Safety
/// AVX-512 F must be available; each `a` holds `kc·MR` and each `b` `kc·NR` values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
pub unsafe fn tile_f32<const R: usize, const C: usize>(kc: usize, a: [*const f32; R], b: [*const f32; C], c: &mut [[[f32; NR]; MR]]) {
    use std::arch::x86_64::*;
    assert!(c.len() == R * C && R * C <= 4, "R x C tiles, at most 2 x 2");
    let mut acc = [[[_mm512_setzero_ps(); MR]; C]; R];
    for (t, tile) in c.iter().enumerate() {
        for (v, row) in acc[t / C][t % C].iter_mut().zip(tile) {
            *v = _mm512_loadu_ps(row.as_ptr());
        }
    }
    for kk in 0..kc {
        let bv: [__m512; C] = std::array::from_fn(|j| _mm512_loadu_ps(b[j].add(kk * NR)));
        for (panels, ap) in acc.iter_mut().zip(a) {
            let p = ap.add(kk * MR);
            for i in 0..MR {
                let x = _mm512_set1_ps(*p.add(i));
                for (panel, bj) in panels.iter_mut().zip(bv) {
                    panel[i] = _mm512_fmadd_ps(x, bj, panel[i]);
                }
            }
        }
    }
    for (t, tile) in c.iter_mut().enumerate() {
        for (row, v) in tile.iter_mut().zip(acc[t / C][t % C]) {
            _mm512_storeu_ps(row.as_mut_ptr(), v);
        }
    }
}

/// tile += a · b over `kp` pairs of inner indices: x's pair j of row i at
/// `a[i·ROW_STEP + j·PAIR_STEP]` (rows in lines, or interleaved), b GROUPS panels [kp][NR]
/// of W pairs, `stride` pairs apart; 24 accumulators (6 rows x 4 panels).
///
/// # Safety
/// AVX-512 F and BF16 must be available; `a` holds every pair addressed (rows below MR,
/// pairs below kp) and `b` `(GROUPS - 1)·stride + kp·NR`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
pub unsafe fn tile_6x64_bf16<const ROW_STEP: usize, const PAIR_STEP: usize>(kp: usize, a: *const u32, b: *const u32, stride: usize, tile: &mut super::gemm_bf16::Tile) {
    use std::arch::x86_64::*;
    use super::gemm_bf16::GROUPS;
    let mut acc = [[_mm512_setzero_ps(); GROUPS]; MR];
    for (i, row) in acc.iter_mut().enumerate() {
        for (g, v) in row.iter_mut().enumerate() {
            *v = _mm512_loadu_ps(tile[g][i].as_ptr());
        }
    }
    for kk in 0..kp {
        let mut bv: [__m512bh; GROUPS] = std::mem::zeroed();
        for (g, v) in bv.iter_mut().enumerate() {
            *v = std::mem::transmute(_mm512_loadu_si512(b.add(g * stride + kk * NR) as *const _));
        }
        let ap = a.add(kk * PAIR_STEP);
        for (i, row) in acc.iter_mut().enumerate() {
            let x: __m512bh = std::mem::transmute(_mm512_set1_epi32(*ap.add(i * ROW_STEP) as i32));
            for (v, bg) in row.iter_mut().zip(bv) {
                *v = _mm512_dpbf16_ps(*v, x, bg);
            }
        }
    }
    for (i, row) in acc.iter().enumerate() {
        for (g, v) in row.iter().enumerate() {
            _mm512_storeu_ps(tile[g][i].as_mut_ptr(), *v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vector_and_scalar_pairs_agree() {
        if !crate::cpu::Isa::Avx512Bf16.available() {
            println!("SKIPPED: no AVX512-BF16 on this CPU");
            return;
        }
        let b: Vec<f32> = (0..5 * NR).map(|i| (i as f32 * 0.377).sin() * 3.1 + if i == 7 { 1.0 + 1.0 / 256.0 } else { 0.0 }).collect();
        let (mut want, mut got) = (vec![0u32; 3 * NR], vec![0u32; 3 * NR]);
        w_pairs(5, &b, &mut want);
        // SAFETY: the features were checked above; sizes match.
        unsafe { w_pairs_avx512(5, &b, &mut got) };
        assert_eq!(got, want);
    }

    #[test]
    fn vector_and_scalar_x_panels_agree() {
        if !crate::cpu::Isa::Avx512Bf16.available() {
            println!("SKIPPED: no AVX512-BF16 on this CPU");
            return;
        }
        // Ties to even both ways, a NaN, infinities, and values that round up a binade.
        let mut src: Vec<f32> = (0..KC * MR).map(|i| (i as f32 * 0.377).sin() * 3.1e3).collect();
        src[5] = 1.0 + 1.0 / 256.0;
        src[6] = 1.0 + 3.0 / 256.0;
        src[7] = f32::NAN;
        src[8] = f32::INFINITY;
        src[13] = f32::NEG_INFINITY;
        src[KC * MR - 1] = f32::from_bits(0x3fff_ffff);
        let (mut want, mut got) = (vec![0u32; KC / 2 * MR], vec![1u32; KC / 2 * MR]);
        x_panel_pairs(&src, &mut want);
        // SAFETY: the features were checked above; sizes match.
        unsafe { x_panel_pairs_avx512(&src, &mut got) };
        assert_eq!(got, want);
    }

    /// The transposed bf16 pairs equal the element-by-element copy: odd and even K
    /// blocks, an odd start, a partial panel, the last rows of the matrix (an odd tail
    /// must not read past them), all of an odd K.
    #[test]
    fn transposed_bf16_pairs_match_the_copy() {
        if !crate::cpu::Isa::Avx512.available() {
            println!("SKIPPED: no AVX-512 on this CPU");
            return;
        }
        let (n, k) = (37usize, 301usize);
        let w: Vec<u16> = (0..n * k).map(|i| (i * 7919 % 65521) as u16).collect();
        for (k0, kc, n0, nb) in [(0, 256, 0, 16), (256, 45, 16, 16), (3, 128, 21, 16), (256, 45, 32, 5), (0, 1, 0, 3), (100, 0, 0, 16), (0, 301, 21, 16)] {
            let (mut want, mut got) = (vec![7u32; 160 * NR], vec![9u32; 160 * NR]);
            super::super::gemm_pack::bf16_pairs_out_in(&w, k, k0, kc, n0, nb, &mut want);
            // SAFETY: AVX-512 checked above; the rows and columns lie within w.
            unsafe { bf16_pairs_out_in_avx512(&w, k, k0, kc, n0, nb, &mut got) };
            let len = kc.div_ceil(2) * NR;
            assert_eq!(got[..len], want[..len], "k0 {k0} kc {kc} n0 {n0} nb {nb}");
        }
    }

    #[test]
    fn pairs_put_the_lower_index_in_the_low_half() {
        assert_eq!(pair(1.0, 2.0), 0x3f80 | (0x4000 << 16));
        let mut b = vec![0f32; 3 * NR];
        b[2 * NR] = 1.0;
        let mut out = vec![7u32; 2 * NR];
        w_pairs(3, &b, &mut out);
        assert_eq!(out[NR], 0x3f80);
    }
}
