//! The `avx2int8` level's many-row product with Q8_0 (or Q4_0) weights: out[M, N] (+)=
//! x[M, K] · Wᵀ, W stored [N, K] in blocks of an f16 scale and 32 int8 (or 4-bit) weights,
//! read through `q8::BlockFormat`.
//!
//! Each row of x is rounded to 8-bit blocks of 32 exactly as the GEMV rounds it
//! (`q8::quantize_into`), and each block pair's products are summed exactly in int32 as
//! there; the f32 scaling and accumulation differ (the GEMV scales eight partial lane
//! sums per block, this kernel one per output column), so the two agree to f32 rounding.
//!
//! Both operands are widened to int16 pairs along K and multiplied by `vpmaddwd` (two
//! products summed per int32 lane; exact, as |w| <= 127 (Q4_0: 8), |x| <= 127), output
//! columns in lanes:
//! per pair of inner indices one broadcast of each row's input pair meets two 8-column
//! weight vectors, 16 products per instruction against the 8 of an f32 FMA. After each
//! 32-index block the int32 sums are scaled by the columns' weight scales times the row's
//! input scale into f32 accumulators.
//!
//! Blocked as `gemm`: each task owns NR output columns, packs their weights per K block
//! ([KC/2][NR] int16 pairs and [KC/32][NR] f32 scales, 9 KiB, L1-resident) and sweeps all
//! row panels of MR rows, keeping its accumulators until K is done.

use rayon::prelude::*;

use super::gemm::{KC, MR, NR};
use super::q8::BlockFormat;
use super::view::SharedOut;
use crate::dtype::Q8_BLOCK;

/// Pairs of inner indices per block.
const PAIRS: usize = Q8_BLOCK / 2;

/// Rows of x in 8-bit blocks, widened to int16 pairs: `pairs` as [row panel][k block]
/// [KC/2][MR], `scales` as [row panel][K/32][MR], zero padded.
struct QuantizedRows {
    pairs: Vec<u32>,
    scales: Vec<f32>,
    row_panels: usize,
}

/// Two int8 values as the int16 pair `vpmaddwd` reads (first in the low half).
fn pair(lo: i8, hi: i8) -> u32 {
    lo as i16 as u16 as u32 | (hi as i16 as u16 as u32) << 16
}

/// Each row panel quantized and packed by its own task.
fn quantize_rows(x: &[f32], m: usize, k: usize) -> QuantizedRows {
    let row_panels = m.div_ceil(MR);
    let (k_blocks, blocks) = (k.div_ceil(KC), k / Q8_BLOCK);
    let mut pairs = vec![0u32; row_panels * k_blocks * MR * KC / 2];
    let mut scales = vec![0f32; row_panels * blocks * MR];
    pairs.par_chunks_mut(k_blocks * MR * KC / 2).zip(scales.par_chunks_mut(blocks * MR)).enumerate().for_each(|(rp, (pairs, scales))| {
        let (mut q, mut d) = (vec![0i8; k], vec![0f32; blocks]);
        for i in 0..MR.min(m - rp * MR) {
            let row = rp * MR + i;
            super::q8::quantize_into(&x[row * k..(row + 1) * k], &mut q, &mut d);
            for (b, &d) in d.iter().enumerate() {
                scales[b * MR + i] = d;
            }
            for (p, two) in q.chunks_exact(2).enumerate() {
                pairs[p * MR + i] = pair(two[0], two[1]);
            }
        }
    });
    QuantizedRows { pairs, scales, row_panels }
}

/// out[m, n] (+)= x[m, k] · Wᵀ for W [n, k] in blocks of format F (k a multiple of 32), on
/// a CPU with AVX2, FMA and F16C (checked: the kernels need them).
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm<F: BlockFormat>(x: &[f32], m: usize, k: usize, w: &[u8], n: usize, out: &mut [f32], accumulate: bool) {
    let row_bytes = k / Q8_BLOCK * F::BYTES;
    assert!(k.is_multiple_of(Q8_BLOCK) && x.len() == m * k && out.len() == m * n && w.len() >= n * row_bytes, "8-bit GEMM operands: x {} for {m}x{k}, out {} for {m}x{n}, {} weight bytes for {n} rows", x.len(), out.len(), w.len());
    #[cfg(target_arch = "x86_64")]
    assert!(std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") && std::arch::is_x86_feature_detected!("f16c"), "the 8-bit GEMM needs AVX2, FMA and F16C");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            out.fill(0.0);
        }
        return;
    }
    let rows = quantize_rows(x, m, k);
    let row_panels = rows.row_panels;
    let shared = SharedOut::new(out);
    (0..n.div_ceil(NR)).into_par_iter().for_each_init(
        || (vec![0u32; KC / 2 * NR], vec![0f32; KC / Q8_BLOCK * NR], vec![[[0f32; NR]; MR]; row_panels]),
        |(bpairs, bscales, acc), p| {
            let n0 = p * NR;
            let nb = (n - n0).min(NR);
            acc.iter_mut().for_each(|t| *t = [[0f32; NR]; MR]);
            for k0 in (0..k).step_by(KC) {
                let kc = (k - k0).min(KC);
                pack_weights::<F>(w, row_bytes, k0, kc, n0, nb, bpairs, bscales);
                for (rp, c) in acc.iter_mut().enumerate() {
                    // Panel rp's pairs from k0 on ([KC/2][MR] per K block, back to back).
                    let a = &rows.pairs[(rp * k.div_ceil(KC) + k0 / KC) * MR * KC / 2..][..MR * kc / 2];
                    let ascales = &rows.scales[(rp * (k / Q8_BLOCK) + k0 / Q8_BLOCK) * MR..][..kc / Q8_BLOCK * MR];
                    // SAFETY: AVX2/FMA/F16C were checked above; every slice holds the kc / 32
                    // blocks the tile reads (sliced above and in `pack_weights`).
                    unsafe { tile(kc / Q8_BLOCK, a.as_ptr(), ascales.as_ptr(), bpairs.as_ptr(), bscales.as_ptr(), c) };
                }
            }
            // SAFETY: only panel p writes columns n0..n0+nb of the m rows of `out`.
            unsafe { super::gemm::store_tiles(&shared, acc.iter(), m, n, n0, nb, accumulate) };
        },
    );
}

/// Columns n0..n0+nb of W over inner indices k0..k0+kc (whole blocks) as int16 pairs
/// [kc/2][NR] and block scales [kc/32][NR]; missing columns are zero.
#[allow(clippy::too_many_arguments)]
fn pack_weights<F: BlockFormat>(w: &[u8], row_bytes: usize, k0: usize, kc: usize, n0: usize, nb: usize, pairs: &mut [u32], scales: &mut [f32]) {
    let blocks = kc / Q8_BLOCK;
    assert!(pairs.len() >= kc / 2 * NR && scales.len() >= blocks * NR, "weight panel bounds");
    #[cfg(target_arch = "x86_64")]
    if nb == NR {
        let first = n0 * row_bytes + k0 / Q8_BLOCK * F::BYTES;
        assert!(w.len() >= (n0 + NR - 1) * row_bytes + k0 / Q8_BLOCK * F::BYTES + blocks * F::BYTES, "weight panel out of bounds");
        // SAFETY: AVX2/F16C were checked by `gemm`; the last row's blocks are in bounds
        // (asserted), the panel holds kc / 2 pair rows and the scales `blocks` rows.
        return unsafe { pack_avx2::<F>(w[first..].as_ptr(), row_bytes, blocks, pairs.as_mut_ptr(), scales.as_mut_ptr()) };
    }
    for j in 0..NR {
        if j >= nb {
            for q in 0..kc / 2 {
                pairs[q * NR + j] = 0;
            }
            for b in 0..blocks {
                scales[b * NR + j] = 0.0;
            }
            continue;
        }
        let row = &w[(n0 + j) * row_bytes + k0 / Q8_BLOCK * F::BYTES..][..blocks * F::BYTES];
        for (b, block) in row.chunks_exact(F::BYTES).enumerate() {
            scales[b * NR + j] = half::f16::from_le_bytes([block[0], block[1]]).to_f32();
            for t in 0..PAIRS {
                pairs[(b * PAIRS + t) * NR + j] = pair(F::int(block, 2 * t) as i8, F::int(block, 2 * t + 1) as i8);
            }
        }
    }
}

/// `pack_weights` for a whole panel, 8 columns at a time: each column's 16-index half
/// block widened to 8 int16 pairs in a register, the 8 registers transposed into 8 pair
/// rows of the panel.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn pack_avx2<F: BlockFormat>(w: *const u8, row_bytes: usize, blocks: usize, pairs: *mut u32, scales: *mut f32) {
    use std::arch::x86_64::*;
    for group in 0..NR / 8 {
        let col = |c: usize| w.add((8 * group + c) * row_bytes);
        for b in 0..blocks {
            let p = [col(0), col(1), col(2), col(3), col(4), col(5), col(6), col(7)].map(|p| p.add(b * F::BYTES));
            for &p in &p {
                // The next K block's panel (read once from memory): requested now, so its
                // misses overlap this block's products.
                _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(blocks * F::BYTES) as *const i8);
            }
            let bits = p.map(|p| super::q8::scale_bits(p));
            let d = _mm256_cvtph_ps(_mm_setr_epi16(bits[0], bits[1], bits[2], bits[3], bits[4], bits[5], bits[6], bits[7]));
            _mm256_storeu_ps(scales.add(b * NR + 8 * group), d);
            for half in 0..2 {
                let mut rows = [_mm256_setzero_ps(); 8];
                for (r, p) in rows.iter_mut().zip(p) {
                    *r = _mm256_castsi256_ps(F::sixteen_i16(p, half));
                }
                let cols = super::gemm_pack::transpose::transpose8(rows);
                for (t, c) in cols.iter().enumerate() {
                    _mm256_storeu_ps(pairs.add((b * PAIRS + 8 * half + t) * NR + 8 * group) as *mut f32, *c);
                }
            }
        }
    }
}

/// acc += the `blocks` 32-index blocks of one row panel (`a`: [blocks·16][MR] input pairs,
/// `ascales`: [blocks][MR]) against one column panel (`b`: [blocks·16][NR] weight pairs,
/// `bscales`: [blocks][NR]).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile(blocks: usize, a: *const u32, ascales: *const f32, b: *const u32, bscales: *const f32, acc: &mut [[f32; NR]; MR]) {
    use std::arch::x86_64::*;
    for blk in 0..blocks {
        let mut s = [[_mm256_setzero_si256(); 2]; MR];
        for t in 0..PAIRS {
            let q = blk * PAIRS + t;
            let b0 = _mm256_loadu_si256(b.add(q * NR) as *const __m256i);
            let b1 = _mm256_loadu_si256(b.add(q * NR + 8) as *const __m256i);
            for (i, si) in s.iter_mut().enumerate() {
                let av = _mm256_set1_epi32(*a.add(q * MR + i) as i32);
                si[0] = _mm256_add_epi32(si[0], _mm256_madd_epi16(av, b0));
                si[1] = _mm256_add_epi32(si[1], _mm256_madd_epi16(av, b1));
            }
        }
        let w0 = _mm256_loadu_ps(bscales.add(blk * NR));
        let w1 = _mm256_loadu_ps(bscales.add(blk * NR + 8));
        for (i, (si, c)) in s.iter().zip(acc.iter_mut()).enumerate() {
            let dx = _mm256_broadcast_ss(&*ascales.add(blk * MR + i));
            let c = c.as_mut_ptr();
            _mm256_storeu_ps(c, _mm256_fmadd_ps(_mm256_cvtepi32_ps(si[0]), _mm256_mul_ps(w0, dx), _mm256_loadu_ps(c)));
            _mm256_storeu_ps(c.add(8), _mm256_fmadd_ps(_mm256_cvtepi32_ps(si[1]), _mm256_mul_ps(w1, dx), _mm256_loadu_ps(c.add(8))));
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn tile(_: usize, _: *const u32, _: *const f32, _: *const u32, _: *const f32, _: &mut [[f32; NR]; MR]) {
    unreachable!("the 8-bit GEMM runs on x86-64 only")
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::super::q8::QuantizedX;
    use super::*;

    /// Every output against float64 sums of the same integer blocks (the rounding the
    /// GEMV applies), on shapes with a partial row panel, column panel and K block, for
    /// both block formats.
    #[test]
    fn int8_gemm_matches_the_integer_block_sums() {
        if !std::arch::is_x86_feature_detected!("avx2") || !std::arch::is_x86_feature_detected!("fma") {
            return println!("SKIPPED: this CPU lacks AVX2/FMA");
        }
        check::<super::super::q8::Q8>(crate::DType::Q8_0);
        check::<super::super::q4::Q4>(crate::DType::Q4_0);
    }

    fn check<F: BlockFormat>(dtype: crate::DType) {
        for (m, k, n) in [(13, 544, 37), (1, 32, 16), (6, 256, 16), (64, 96, 70)] {
            let weights: Vec<f32> = (0..n * k).map(|i| ((i * 7919 % 1013) as f32 - 506.0) / 97.0).collect();
            let w = crate::dtype::f32_to_bytes(&weights, dtype);
            let x: Vec<f32> = (0..m * k).map(|i| ((i * 104_729 % 997) as f32 - 498.0) / 211.0).collect();
            let mut out = vec![0.5f32; m * n];
            gemm::<F>(&x, m, k, &w, n, &mut out, true);
            let row_bytes = k / Q8_BLOCK * F::BYTES;
            for r in 0..m {
                let xq = QuantizedX::new(&x[r * k..(r + 1) * k], 0);
                for j in 0..n {
                    let mut want = 0.5f64;
                    for b in 0..k / Q8_BLOCK {
                        let block = &w[j * row_bytes + b * F::BYTES..][..F::BYTES];
                        let d = half::f16::from_le_bytes([block[0], block[1]]).to_f64();
                        let sum: i64 = (0..Q8_BLOCK).map(|t| F::int(block, t) as i64 * xq.q[32 * b + t] as i64).sum();
                        want += d * xq.scales[b] as f64 * sum as f64;
                    }
                    let got = out[r * n + j] as f64;
                    // Exact int32 block sums; only the f32 scaling and accumulation round.
                    assert!((got - want).abs() <= 2e-5 * want.abs().max(1.0), "{dtype} {m}x{k}x{n} row {r} column {j}: {got} vs {want}");
                }
            }
        }
    }
}
