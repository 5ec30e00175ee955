//! Packing for the GEMM: rows of x into [KC][MR] micro-panels, weight columns into
//! [KC][NR] micro-panels (widened to f32) or bf16 K-pairs.
//!
//! Weights stored [N, K] (`OutIn`, every linear layer) must be transposed into the panel.
//! Done element by element that costs about half as much as the product itself at prefill
//! sizes (64 rows), so on AVX2 it goes 8 x 8 at a time: 8 weights of 8 rows widened into
//! registers, transposed in registers, stored as 8 panel rows. Widening is exact, so both
//! paths give the same panel.

use rayon::prelude::*;

use super::gemm::{KC, MR, NR};
use super::scratch::Scratch;
use super::simd::Isa;
use super::view::WeightSlice;
use crate::op::WeightLayout;

/// `mb` rows of x [mb, k] as [k block][row panel][KC][MR], zero padded.
pub(super) fn pack_rows(isa: Isa, x: &[f32], mb: usize, k: usize, row_panels: usize) -> Scratch {
    let k_blocks = k.div_ceil(KC);
    // Every element is written below (copies, then zero padding), so the buffer is not
    // cleared first: for attention's P·V the clearing cost a twentieth of the product.
    let mut apack = super::scratch::take(k_blocks * row_panels * MR * KC);
    apack.par_chunks_mut(MR * KC).enumerate().for_each(|(idx, panel)| {
        let (kb, rp) = (idx / row_panels, idx % row_panels);
        let k0 = kb * KC;
        let rows = mb.saturating_sub(rp * MR).min(MR);
        pack_panel(isa, &x[rp * MR * k..], k, rows, k0, (k - k0).min(KC), panel);
    });
    apack
}

/// Rows 0..rows (at most MR) of x [rows, k] over k0..k0 + kc into `panel` [KC][MR], every
/// element written: rows past `rows` and inner indices past kc are zero (the bf16 tiles
/// read an odd kc's partner index; the padded rows' products are discarded but must stay
/// finite).
pub(super) fn pack_panel(isa: Isa, x: &[f32], k: usize, rows: usize, k0: usize, kc: usize, panel: &mut [f32]) {
    copy_panel(isa, x, k, rows, k0, kc, panel);
    if rows < MR {
        for kk in 0..kc {
            panel[kk * MR + rows..(kk + 1) * MR].fill(0.0);
        }
    }
    panel[kc * MR..MR * KC].fill(0.0);
}

/// Rows 0..rows of x over k0..k0 + kc into panel [kc][MR] (padding unwritten).
fn copy_panel(isa: Isa, x: &[f32], k: usize, rows: usize, k0: usize, kc: usize, panel: &mut [f32]) {
    assert!(rows <= MR && kc <= KC && panel.len() >= MR * KC, "panel bounds");
    assert!(rows == 0 || x.len() >= (rows - 1) * k + k0 + kc, "rows of x out of range");
    #[cfg(target_arch = "x86_64")]
    if rows > 0 && isa.avx2() {
        // SAFETY: the level implies AVX2; rows 0..rows of x hold k0..k0 + kc and the panel
        // holds [KC][MR] (asserted above).
        return unsafe { transpose::rows_avx2(x.as_ptr(), k, rows, k0, kc, panel.as_mut_ptr()) };
    }
    let _ = isa;
    for i in 0..rows {
        for (kk, &v) in x[i * k + k0..i * k + k0 + kc].iter().enumerate() {
            panel[kk * MR + i] = v;
        }
    }
}

/// bf16 W [N, K]'s columns n0..n0+nb over k0..k0+kc as [kc/2][NR] pairs along K (an odd
/// tail pairs with 0; missing columns are 0), read straight from the weights.
#[allow(clippy::too_many_arguments)]
#[cfg_attr(all(target_arch = "x86_64", not(test)), allow(dead_code))]
pub(super) fn bf16_pairs_out_in(w: &[u16], k: usize, k0: usize, kc: usize, n0: usize, nb: usize, out: &mut [u32]) {
    let pairs = kc.div_ceil(2);
    for j in 0..NR {
        if j >= nb {
            for kk in 0..pairs {
                out[kk * NR + j] = 0;
            }
            continue;
        }
        let row = &w[(n0 + j) * k + k0..][..kc];
        for (kk, p) in row.chunks(2).enumerate() {
            out[kk * NR + j] = p[0] as u32 | (p.get(1).copied().unwrap_or(0) as u32) << 16;
        }
    }
}

/// W's output columns n0..n0+nb over inner indices k0..k0+kc as [kc][NR], widened to f32.
#[allow(clippy::too_many_arguments)]
pub(super) fn pack_cols(isa: Isa, w: WeightSlice, layout: WeightLayout, k: usize, n: usize, k0: usize, kc: usize, n0: usize, nb: usize, bpack: &mut [f32]) {
    assert!(bpack.len() >= kc * NR && kc <= KC, "micro-panel bounds");
    #[cfg(target_arch = "x86_64")]
    if isa.avx2() && layout == WeightLayout::OutIn && nb == NR && kc.is_multiple_of(8) && k.is_multiple_of(8) && k0.is_multiple_of(8) {
        assert!((n0 + NR) * k <= w.len() && k0 + kc <= k, "weight panel out of bounds");
        // SAFETY: AVX2/F16C detected (every AVX2 level has them); bounds asserted above;
        // every 8 weights read start at a multiple of 8 (k, k0, kc are), so for Q8_0 they
        // share one block.
        return unsafe { transpose::out_in_avx2(w, k, k0, kc, n0, bpack.as_mut_ptr()) };
    }
    let _ = isa;
    if nb < NR {
        bpack[..kc * NR].fill(0.0);
    }
    match layout {
        WeightLayout::OutIn => {
            let mut row = [0f32; KC];
            for j in 0..nb {
                w.widen_into((n0 + j) * k + k0, &mut row[..kc]);
                for (kk, &v) in row[..kc].iter().enumerate() {
                    bpack[kk * NR + j] = v;
                }
            }
        }
        WeightLayout::InOut => {
            for kk in 0..kc {
                w.widen_into((k0 + kk) * n + n0, &mut bpack[kk * NR..kk * NR + nb]);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
pub(super) mod transpose {
    use std::arch::x86_64::*;

    use super::{KC, NR};
    use crate::cpu::q4::Q4;
    use crate::cpu::q8::{self, BlockFormat, Q8};
    use crate::cpu::view::WeightSlice;
    use crate::dtype::Q8_BLOCK;

    const F32: u8 = 0;
    const F16: u8 = 1;
    const BF16: u8 = 2;
    const Q8_0: u8 = 3;
    const Q4_0: u8 = 4;

    /// Weights e..e+8 of blocks of format F at `base`, widened to f32.
    #[inline(always)]
    unsafe fn load8_blocks<F: BlockFormat>(base: *const u8, e: usize) -> __m256 {
        let block = base.add(e / Q8_BLOCK * F::BYTES);
        let d = _mm256_cvtph_ps(_mm_set1_epi16(q8::scale_bits(block)));
        q8::avx2::eight::<F>(block, e % Q8_BLOCK, d)
    }

    /// Weights e..e+8 of `base` (stored as KIND) widened to f32.
    #[inline(always)]
    unsafe fn load8<const KIND: u8>(base: *const u8, e: usize) -> __m256 {
        match KIND {
            F32 => _mm256_loadu_ps((base as *const f32).add(e)),
            F16 => _mm256_cvtph_ps(_mm_loadu_si128((base as *const u16).add(e) as *const __m128i)),
            BF16 => _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((base as *const u16).add(e) as *const __m128i)), 16)),
            Q8_0 => load8_blocks::<Q8>(base, e),
            Q4_0 => load8_blocks::<Q4>(base, e),
            _ => unreachable!("weight kind {KIND}"),
        }
    }

    /// Rows 0..8 of `r` transposed: output t holds element t of every row.
    #[inline(always)]
    pub(in crate::cpu) unsafe fn transpose8(r: [__m256; 8]) -> [__m256; 8] {
        let t0 = _mm256_unpacklo_ps(r[0], r[1]);
        let t1 = _mm256_unpackhi_ps(r[0], r[1]);
        let t2 = _mm256_unpacklo_ps(r[2], r[3]);
        let t3 = _mm256_unpackhi_ps(r[2], r[3]);
        let t4 = _mm256_unpacklo_ps(r[4], r[5]);
        let t5 = _mm256_unpackhi_ps(r[4], r[5]);
        let t6 = _mm256_unpacklo_ps(r[6], r[7]);
        let t7 = _mm256_unpackhi_ps(r[6], r[7]);
        let s0 = _mm256_shuffle_ps::<0x44>(t0, t2);
        let s1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
        let s2 = _mm256_shuffle_ps::<0x44>(t1, t3);
        let s3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
        let s4 = _mm256_shuffle_ps::<0x44>(t4, t6);
        let s5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
        let s6 = _mm256_shuffle_ps::<0x44>(t5, t7);
        let s7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
        [
            _mm256_permute2f128_ps::<0x20>(s0, s4),
            _mm256_permute2f128_ps::<0x20>(s1, s5),
            _mm256_permute2f128_ps::<0x20>(s2, s6),
            _mm256_permute2f128_ps::<0x20>(s3, s7),
            _mm256_permute2f128_ps::<0x31>(s0, s4),
            _mm256_permute2f128_ps::<0x31>(s1, s5),
            _mm256_permute2f128_ps::<0x31>(s2, s6),
            _mm256_permute2f128_ps::<0x31>(s3, s7),
        ]
    }

    #[inline(always)]
    unsafe fn panel<const KIND: u8>(base: *const u8, k: usize, k0: usize, kc: usize, n0: usize, out: *mut f32) {
        for group in 0..NR / 8 {
            let first = (n0 + 8 * group) * k + k0;
            for kk in (0..kc).step_by(8) {
                let e = first + kk;
                let rows = [
                    load8::<KIND>(base, e),
                    load8::<KIND>(base, e + k),
                    load8::<KIND>(base, e + 2 * k),
                    load8::<KIND>(base, e + 3 * k),
                    load8::<KIND>(base, e + 4 * k),
                    load8::<KIND>(base, e + 5 * k),
                    load8::<KIND>(base, e + 6 * k),
                    load8::<KIND>(base, e + 7 * k),
                ];
                let cols = transpose8(rows);
                for (t, c) in cols.iter().enumerate() {
                    _mm256_storeu_ps(out.add((kk + t) * NR + 8 * group), *c);
                }
            }
        }
    }

    /// `rows` (at most MR = 6) rows of x [.., k] from `x`, inner indices k0..k0 + kc, as a
    /// [kc][MR] panel at `out` (rows beyond `rows` zero where kc's whole eights are stored,
    /// unwritten in its tail: `pack_panel` clears them): 8 x 8 register
    /// transposes, each column stored as 4 + 2 lanes. Element by element this cost as much
    /// as the products where N is small (attention's P·V has N = head size).
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn rows_avx2(x: *const f32, k: usize, rows: usize, k0: usize, kc: usize, out: *mut f32) {
        const { assert!(super::MR == 6) };
        let whole = kc / 8 * 8;
        for kk in (0..whole).step_by(8) {
            let mut r = [_mm256_setzero_ps(); 8];
            for (i, ri) in r.iter_mut().enumerate().take(rows) {
                *ri = _mm256_loadu_ps(x.add(i * k + k0 + kk));
            }
            let cols = transpose8(r);
            for (j, c) in cols.iter().enumerate() {
                let dst = out.add((kk + j) * super::MR);
                _mm_storeu_ps(dst, _mm256_castps256_ps128(*c));
                _mm_storel_epi64(dst.add(4) as *mut __m128i, _mm_castps_si128(_mm256_extractf128_ps::<1>(*c)));
            }
        }
        for kk in whole..kc {
            for i in 0..rows {
                *out.add(kk * super::MR + i) = *x.add(i * k + k0 + kk);
            }
        }
    }

    /// W [N, K]'s columns n0..n0+NR over k0..k0+kc (a multiple of 8, at most KC) as
    /// [kc][NR] f32 at `out`.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn out_in_avx2(w: WeightSlice, k: usize, k0: usize, kc: usize, n0: usize, out: *mut f32) {
        debug_assert!(kc.is_multiple_of(8) && kc <= KC);
        match w {
            WeightSlice::F32(s) => panel::<F32>(s.as_ptr() as *const u8, k, k0, kc, n0, out),
            WeightSlice::F16(s) => panel::<F16>(s.as_ptr() as *const u8, k, k0, kc, n0, out),
            WeightSlice::BF16(s) => panel::<BF16>(s.as_ptr() as *const u8, k, k0, kc, n0, out),
            WeightSlice::Q8_0(b) => panel::<Q8_0>(b.as_ptr(), k, k0, kc, n0, out),
            WeightSlice::Q4_0(b) => panel::<Q4_0>(b.as_ptr(), k, k0, kc, n0, out),
        }
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    /// The packed panel that `pack_cols` must produce, from `WeightSlice::get`.
    #[allow(clippy::too_many_arguments)]
    fn expected(w: WeightSlice, layout: WeightLayout, k: usize, n: usize, k0: usize, kc: usize, n0: usize, nb: usize) -> Vec<f32> {
        let mut want = vec![0f32; kc * NR];
        for kk in 0..kc {
            for j in 0..nb {
                let i = match layout {
                    WeightLayout::OutIn => (n0 + j) * k + k0 + kk,
                    WeightLayout::InOut => (k0 + kk) * n + n0 + j,
                };
                want[kk * NR + j] = w.get(i);
            }
        }
        want
    }

    fn assert_same(got: &[f32], want: &[f32], what: &str) {
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert_eq!(g.to_bits(), w.to_bits(), "{what}: k {} column {}: {g} vs {w}", i / NR, i % NR);
        }
    }

    /// Packed rows (the transposing path where the CPU has AVX2) against the layout
    /// element by element: partial row panel, partial K block, K not a multiple of 8.
    /// The pool hands out a NaN-filled buffer first, so padding left unwritten shows.
    #[test]
    fn packed_rows_match_element_by_element_packing() {
        for (mb, k) in [(13usize, 300usize), (6, 256), (1, 9), (20, 517)] {
            let x: Vec<f32> = (0..mb * k).map(|i| (i * 7919 % 1013) as f32 - 506.0).collect();
            let row_panels = mb.div_ceil(MR);
            for isa in [Isa::Scalar, Isa::detect()] {
            // A buffer as large as any below in the pool first, so all of it is poisoned.
            drop(super::super::scratch::take(1 << 15));
            super::super::scratch::poison();
            let got = pack_rows(isa, &x, mb, k, row_panels);
            for kb in 0..k.div_ceil(KC) {
                for rp in 0..row_panels {
                    for kk in 0..KC {
                        for i in 0..MR {
                            let (row, kx) = (rp * MR + i, kb * KC + kk);
                            let want = if row < mb && kx < k { x[row * k + kx] } else { 0.0 };
                            let at = (kb * row_panels + rp) * MR * KC + kk * MR + i;
                            assert_eq!(got[at].to_bits(), want.to_bits(), "{}: {mb}x{k}: row {row}, k {kx}", isa.key());
                        }
                    }
                }
            }
            }
        }
    }

    /// The transposing path (called directly, so it surely runs) and `pack_cols` on the
    /// shapes it must leave to the element path (8 columns, a K block that is not a
    /// multiple of 8, in-out weights), for every weight dtype, off the origin.
    #[test]
    fn transposed_panels_match_element_by_element_packing() {
        if !Isa::Avx2.available() {
            return println!("SKIPPED: this CPU lacks AVX2/FMA/F16C");
        }
        let (n, k) = (40, 384);
        let values: Vec<f32> = (0..n * k).map(|i| ((i * 7919 % 1013) as f32 - 506.0) / 97.0).collect();
        let f16: Vec<u16> = values.iter().map(|&v| half::f16::from_f32(v).to_bits()).collect();
        let bf16: Vec<u16> = values.iter().map(|&v| half::bf16::from_f32(v).to_bits()).collect();
        let q8 = crate::dtype::quantize_q8_0(&values);
        let q4 = crate::dtype::quantize_q4_0(&values);
        let slices = [WeightSlice::F32(&values), WeightSlice::F16(&f16), WeightSlice::BF16(&bf16), WeightSlice::Q8_0(&q8), WeightSlice::Q4_0(&q4)];
        for (w, name) in slices.into_iter().zip(["f32", "f16", "bf16", "q8_0", "q4_0"]) {
            for (k0, n0) in [(0, 0), (KC, 16), (KC, 24)] {
                let kc = (k - k0).min(KC);
                let mut got = vec![f32::NAN; KC * NR];
                // SAFETY: AVX2/F16C detected; columns n0..n0 + 16 <= n, k0 + kc <= k, all multiples of 8.
                unsafe { transpose::out_in_avx2(w, k, k0, kc, n0, got.as_mut_ptr()) };
                let want = expected(w, WeightLayout::OutIn, k, n, k0, kc, n0, NR);
                assert_same(&got[..kc * NR], &want, &format!("{name}: transposed panel k0 {k0} n0 {n0}"));
            }
            let cases = [(WeightLayout::OutIn, 0, KC, 0, NR), (WeightLayout::OutIn, 0, KC, 32, 8), (WeightLayout::OutIn, KC, 124, 16, NR), (WeightLayout::InOut, 0, KC, 8, NR)];
            for (layout, k0, kc, n0, nb) in cases {
                if matches!(w, WeightSlice::Q8_0(_) | WeightSlice::Q4_0(_)) && layout == WeightLayout::InOut {
                    continue;
                }
                let mut got = vec![f32::NAN; KC * NR];
                pack_cols(Isa::Avx2, w, layout, k, n, k0, kc, n0, nb, &mut got);
                let want = expected(w, layout, k, n, k0, kc, n0, nb);
                assert_same(&got[..kc * NR], &want, &format!("{name}: pack_cols {layout:?} k0 {k0} kc {kc} n0 {n0} nb {nb}"));
            }
        }
    }
}
