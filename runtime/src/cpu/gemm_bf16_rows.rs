//! The `Avx512Bf16` level's product of a few dozen rows (a prefill) with bf16 weights stored
//! along K (out-in): out[M, N] (+)= x[M, K] · Wᵀ, bf16 operands and f32 sums.
//!
//! Both operands already lie along K, so nothing is packed: x is rounded once into bf16
//! rows (zero padded to whole 32-element chunks), and each 4 x 6 register tile takes 32
//! inner indices of four x rows and six weight rows per step, straight from where they lie,
//! into 24 `vdpbf16ps`. Each sum is 16 lanes reduced once at the end, so a result depends
//! only on its x row and weight row, never on M or on the tile it fell in. For few rows the
//! packed GEMM (`gemm_bf16.rs`) spends more on gathering weight pairs than on products.
//!
//! A task owns a block of six-column tiles and a chunk of rows; for each column tile (six
//! weight rows, 6 · K · 2 bytes, L2-resident) it sweeps its row tiles, whose x rows stay in
//! L2 across the column tiles.

use std::cell::RefCell;

use rayon::prelude::*;

use super::view::SharedOut;

/// x rows per register tile.
const RM: usize = 4;
/// Weight rows (output columns) per register tile.
const RN: usize = 6;
/// Inner indices per step: one 64-byte load of bf16.
const CHUNK: usize = 32;
/// The most bytes of bf16 x a task sweeps per column tile (within a core's L2 beside the
/// weight rows).
const X_CHUNK_BYTES: usize = 512 << 10;

thread_local! {
    /// The last product's bf16 x, kept: fresh pages cost a fault and a clear each call.
    static ROWS: RefCell<Vec<u16>> = const { RefCell::new(Vec::new()) };
}

/// Rows up to which this product runs at the fast level. Measured on a 2-core Zen 4
/// against the packed GEMM: 1.6x at 64 rows (3B prefill shapes), 1.03x-1.17x at 200-512,
/// level or behind at 1000 (the codec's linears).
pub(super) const MAX_ROWS: usize = 512;

/// out[M, N] (+)= x[M, K] · Wᵀ for bf16 `w` [N, K]. The caller checked AVX512-BF16.
#[allow(clippy::too_many_arguments)]
pub(super) fn gemm(x: &[f32], m: usize, k: usize, w: &[u16], n: usize, out: &mut [f32], accumulate: bool) {
    assert!(x.len() >= m * k && w.len() >= n * k && out.len() >= m * n, "gemm operand sizes for {m} x {k} x {n}");
    if m == 0 || n == 0 {
        return;
    }
    let kp = k.next_multiple_of(CHUNK).max(CHUNK);
    let mut rows = ROWS.with(|r| std::mem::take(&mut *r.borrow_mut()));
    if rows.len() < m * kp {
        rows.resize(m * kp, 0);
    }
    rows[..m * kp].par_chunks_mut(kp).zip(x.par_chunks(k)).for_each(|(dst, src)| round_row(src, dst));
    run(&rows[..m * kp], m, k, kp, w, n, out, accumulate);
    ROWS.with(|r| *r.borrow_mut() = rows);
}

/// A row of x as bf16 (round to nearest even), zero padded to `dst.len()`.
fn round_row(src: &[f32], dst: &mut [u16]) {
    debug_assert!(dst.len() >= src.len() && dst.len().is_multiple_of(CHUNK));
    // SAFETY: the caller dispatches here only on a level with AVX512-BF16.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        kernel::round_row(src, dst)
    };
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("AVX512-BF16 exists only on x86-64 ({})", src.len() + dst.len());
}

#[allow(clippy::too_many_arguments)]
fn run(rows: &[u16], m: usize, k: usize, kp: usize, w: &[u16], n: usize, out: &mut [f32], accumulate: bool) {
    let (row_tiles, col_tiles) = (m.div_ceil(RM), n.div_ceil(RN));
    let tiles_per_chunk = (X_CHUNK_BYTES / (RM * kp * 2)).max(4);
    let row_chunks = row_tiles.div_ceil(tiles_per_chunk);
    let tiles_per_chunk = row_tiles.div_ceil(row_chunks);
    // Enough column blocks for eight tasks per thread.
    let blocks = (8 * rayon::current_num_threads()).div_ceil(row_chunks).min(col_tiles).max(1);
    let per_block = col_tiles.div_ceil(blocks);
    let blocks = col_tiles.div_ceil(per_block);
    let shared = SharedOut::new(out);
    (0..blocks * row_chunks).into_par_iter().for_each(|task| {
        let (block, chunk) = (task % blocks, task / blocks);
        let (rt0, rt1) = (chunk * tiles_per_chunk, ((chunk + 1) * tiles_per_chunk).min(row_tiles));
        for ct in block * per_block..((block + 1) * per_block).min(col_tiles) {
            let n0 = ct * RN;
            let nb = (n - n0).min(RN);
            // A short tile repeats its last weight row; those sums are not stored.
            let w_rows: [&[u16]; RN] = std::array::from_fn(|j| &w[(n0 + j.min(nb - 1)) * k..][..k]);
            for rt in rt0..rt1 {
                let m0 = rt * RM;
                let mb = (m - m0).min(RM);
                let x_rows: [&[u16]; RM] = std::array::from_fn(|i| &rows[(m0 + i.min(mb - 1)) * kp..][..kp]);
                let sums = tile(x_rows, w_rows, k);
                for (i, row) in sums.iter().enumerate().take(mb) {
                    // SAFETY: only this task writes columns n0..n0 + nb of rows m0..m0 + mb
                    // (its column tile and row chunk); in bounds: out.len() ≥ m · n.
                    let dst = unsafe { shared.slice((m0 + i) * n + n0, nb) };
                    for (d, &s) in dst.iter_mut().zip(row) {
                        *d = if accumulate { *d + s } else { s };
                    }
                }
            }
        }
    });
}

/// The 4 x 6 sums of four bf16 x rows (padded to whole chunks) with six weight rows of k.
fn tile(x: [&[u16]; RM], w: [&[u16]; RN], k: usize) -> [[f32; RN]; RM] {
    assert!(x.iter().all(|r| r.len() >= k.next_multiple_of(CHUNK)) && w.iter().all(|r| r.len() >= k), "tile rows");
    // SAFETY: the caller dispatches here only on a level with AVX512-BF16; row lengths
    // asserted (x rows cover whole chunks; weight rows are read masked past k).
    #[cfg(target_arch = "x86_64")]
    unsafe {
        kernel::tile_4x6(x.map(|r| r.as_ptr()), w.map(|r| r.as_ptr()), k)
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("AVX512-BF16 exists only on x86-64 ({})", x.len() + w.len() + k)
}

#[cfg(target_arch = "x86_64")]
mod kernel {
    use std::arch::x86_64::*;

    use super::{CHUNK, RM, RN};

    /// `super::round_row` with `vcvtne2ps2bf16`, 32 values at a time (a tail read masked).
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    pub(super) unsafe fn round_row(src: &[f32], dst: &mut [u16]) {
        let (s, d) = (src.as_ptr(), dst.as_mut_ptr());
        let mut i = 0;
        while i < dst.len() {
            let left = src.len().saturating_sub(i);
            let mask = |from: usize| -> u16 {
                let count = left.saturating_sub(from).min(16);
                ((1u32 << count) - 1) as u16
            };
            let lo = _mm512_maskz_loadu_ps(mask(0), s.wrapping_add(i));
            let hi = _mm512_maskz_loadu_ps(mask(16), s.wrapping_add(i + 16));
            let halves: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(hi, lo));
            _mm512_storeu_si512(d.add(i) as *mut _, halves);
            i += CHUNK;
        }
    }

    /// Four 16-lane sums reduced to four scalars (lane order fixed, so results repeat).
    #[inline(always)]
    unsafe fn reduce4(a: __m512, b: __m512, c: __m512, d: __m512) -> [f32; 4] {
        // 128-bit blocks: ab = [a0+a2, a1+a3, b0+b2, b1+b3], cd likewise.
        let ab = _mm512_add_ps(_mm512_shuffle_f32x4::<0x44>(a, b), _mm512_shuffle_f32x4::<0xEE>(a, b));
        let cd = _mm512_add_ps(_mm512_shuffle_f32x4::<0x44>(c, d), _mm512_shuffle_f32x4::<0xEE>(c, d));
        // Blocks: [a, b, c, d], each four lanes left.
        let s = _mm512_add_ps(_mm512_shuffle_f32x4::<0x88>(ab, cd), _mm512_shuffle_f32x4::<0xDD>(ab, cd));
        let s = _mm512_add_ps(s, _mm512_permute_ps::<0xB1>(s));
        let s = _mm512_add_ps(s, _mm512_permute_ps::<0x4E>(s));
        let mut lanes = [0f32; 16];
        _mm512_storeu_ps(lanes.as_mut_ptr(), s);
        [lanes[0], lanes[4], lanes[8], lanes[12]]
    }

    /// `super::tile`: x rows hold whole chunks; weight rows are read masked past `k`.
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    pub(super) unsafe fn tile_4x6(x: [*const u16; RM], w: [*const u16; RN], k: usize) -> [[f32; RN]; RM] {
        let mut acc = [[_mm512_setzero_ps(); RN]; RM];
        let full = k / CHUNK * CHUNK;
        let mut c = 0;
        while c < full {
            let xv: [__m512bh; RM] = std::array::from_fn(|i| std::mem::transmute(_mm512_loadu_si512(x[i].add(c) as *const _)));
            for j in 0..RN {
                let wv: __m512bh = std::mem::transmute(_mm512_loadu_si512(w[j].add(c) as *const _));
                for i in 0..RM {
                    acc[i][j] = _mm512_dpbf16_ps(acc[i][j], xv[i], wv);
                }
            }
            c += CHUNK;
        }
        if full < k {
            let mask = (1u32 << (k - full)) - 1;
            let xv: [__m512bh; RM] = std::array::from_fn(|i| std::mem::transmute(_mm512_loadu_si512(x[i].add(c) as *const _)));
            for j in 0..RN {
                let wv: __m512bh = std::mem::transmute(_mm512_maskz_loadu_epi16(mask, w[j].add(c) as *const i16));
                for i in 0..RM {
                    acc[i][j] = _mm512_dpbf16_ps(acc[i][j], xv[i], wv);
                }
            }
        }
        let mut out = [[0f32; RN]; RM];
        for (i, row) in out.iter_mut().enumerate() {
            let [a, b, c, d] = reduce4(acc[i][0], acc[i][1], acc[i][2], acc[i][3]);
            let [e, f, _, _] = reduce4(acc[i][4], acc[i][5], acc[i][4], acc[i][5]);
            *row = [a, b, c, d, e, f];
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A row's sums do not depend on how many rows share the call or which tile they fall
    /// in (partial row and column tiles, a K tail), and they are the bf16 products summed
    /// in f32 (checked against f64 within f32 rounding).
    #[test]
    fn rows_are_independent_of_the_batch() {
        if !super::super::simd::Isa::Avx512Bf16.available() {
            eprintln!("skipped: this CPU lacks AVX512-BF16");
            return;
        }
        let (m, k, n) = (11usize, 1100usize, 263usize);
        let x: Vec<f32> = (0..m * k).map(|i| ((i * 7919 % 1013) as f32 - 506.0) / 331.0).collect();
        let w: Vec<u16> = (0..n * k).map(|i| half::bf16::from_f32(((i * 104_729 % 997) as f32 - 498.0) / 401.0).to_bits()).collect();
        let mut all = vec![0f32; m * n];
        gemm(&x, m, k, &w, n, &mut all, false);
        for r in [0, 5, 10] {
            let mut one = vec![1f32; n];
            gemm(&x[r * k..(r + 1) * k], 1, k, &w, n, &mut one, false);
            assert_eq!(one, all[r * n..(r + 1) * n], "row {r} alone");
            for c in [0, 131, 262] {
                let want: f64 = (0..k).map(|i| half::bf16::from_f32(x[r * k + i]).to_f64() * crate::dtype::bf16_bits_to_f32(w[c * k + i]) as f64).sum();
                assert!((all[r * n + c] as f64 - want).abs() <= 1e-4 * (1.0 + want.abs()), "row {r} column {c}: {} vs {want}", all[r * n + c]);
            }
        }
        let mut twice = all.clone();
        gemm(&x, m, k, &w, n, &mut twice, true);
        assert!(twice.iter().zip(&all).all(|(t, a)| *t == 2.0 * a), "accumulate adds the sums");
    }
}
