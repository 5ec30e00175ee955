//! The AVX-512 levels' products of a few dozen rows (a prefill) with bf16 weights stored
//! along K (out-in): out[M, N] (+)= x[M, K] · Wᵀ with f32 sums, in bf16 operands
//! (`vdpbf16ps`, the fast precision) or in f32 arithmetic (the exact one).
//!
//! Both operands already lie along K, so nothing is packed: x is laid out once into rows
//! padded to whole 32-element chunks (rounded to bf16, or f32 in even/odd order), and each
//! register tile takes 32 inner indices of four x rows and six (bf16) or five (f32) weight
//! rows per step, straight from where they lie: 24 `vdpbf16ps`, or 40 FMAs. Each sum is 16
//! lanes reduced once at the end, so a result depends only on its x row and weight row,
//! never on M or on the tile it fell in. For few rows the packed GEMMs (`gemm_bf16.rs`,
//! `gemm.rs`) spend more on packing weights than on products.
//!
//! Q8_0 and Q4_0 weights (the fast precision) take the bf16 path too: each column tile's
//! weight rows are widened once into the task's buffer, exactly as the packed GEMM widens
//! them (scale × integer in f32, rounded to bf16), so the widening is paid once per weight
//! and row chunk, not once per row tile.
//!
//! A task owns a block of column tiles and a chunk of rows; for each column tile (its
//! weight rows, L2-resident) it sweeps its row tiles, whose x rows stay in L2 across the
//! column tiles.

use std::cell::RefCell;

use rayon::prelude::*;

use super::simd::Isa;
use super::view::{SharedOut, WeightSlice};

/// x rows per register tile.
const RM: usize = 4;
/// Weight rows (output columns) per register tile: bf16 products, f32 products.
const RN_BF16: usize = 6;
const RN_F32: usize = 5;
/// Inner indices per step: one 64-byte load of bf16.
const CHUNK: usize = 32;
/// The most bytes of x a task sweeps per column tile (within a core's L2 beside the
/// weight rows).
const X_CHUNK_BYTES: usize = 512 << 10;
/// The largest x rows buffer a thread keeps between calls; larger ones are freed.
const KEPT_BYTES: usize = 32 << 20;

thread_local! {
    /// The last product's x rows, kept: fresh pages cost a fault and a clear each call.
    static BF16_ROWS: RefCell<Vec<u16>> = const { RefCell::new(Vec::new()) };
    static F32_ROWS: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    /// A task's widened block-weight rows (RN rows of K: at most 96 KiB for K = 8192).
    static STAGED: RefCell<Vec<u16>> = const { RefCell::new(Vec::new()) };
}

/// Rows up to which these products run, measured on a 2-core Zen 4 against the packed
/// GEMMs. bf16: 1.17x-1.22x at 64 rows (3B prefill shapes), 1.08x at 128 from K = 3072
/// and level from 8192; from 192 rows the packed GEMM leads (1.0x-1.06x, 1.15x-1.19x at
/// 384 x 3072 from 8192: these products' x and weight rows stream from L2 at every step).
/// f32: 1.05x-1.17x at 64 rows, level at 128, 0.92x-0.97x at 256 (the packed f32 tile
/// reaches 90 % of the FMA peak there).
pub(super) const MAX_ROWS_BF16: usize = 128;
pub(super) const MAX_ROWS_F32: usize = 128;
/// Rows up to which Q8_0 and Q4_0 weights take the bf16 rows product, measured the same
/// way against the packed bf16 GEMM (which widens them into its panels): 1.14x-1.39x at 64
/// rows, 1.04x-1.10x at 128, level at 192, 0.95x-0.98x at 256 and 512.
pub(super) const MAX_ROWS_BLOCKS: usize = 192;

/// out[M, N] (+)= x[M, K] · Wᵀ for bf16 `w` [N, K], x rounded to bf16 (`vdpbf16ps`, the
/// fast precision). `isa` must have bf16 dot products.
#[allow(clippy::too_many_arguments)]
pub(super) fn gemm_bf16(isa: Isa, x: &[f32], m: usize, k: usize, w: &[u16], n: usize, out: &mut [f32], accumulate: bool) {
    assert!(isa.bf16_dot(), "the bf16 rows product needs AVX512-BF16, not {}", isa.key());
    assert!(w.len() >= n * k, "bf16 weights hold {} values, {n} x {k} needed", w.len());
    with_rows(&BF16_ROWS, x, m, k, n, out, accumulate, round_row, |rows, kp, out| run::<u16, RN_BF16>(rows, m, k, kp, &Weights::Bf16(w), n, out, accumulate, tile_bf16));
}

/// `gemm_bf16` for Q8_0 or Q4_0 weights `w` [N, K] (K a multiple of 32, so each row starts
/// at a block), each column tile's rows widened to bf16 once per task.
#[allow(clippy::too_many_arguments)]
pub(super) fn gemm_blocks_bf16(isa: Isa, x: &[f32], m: usize, k: usize, w: WeightSlice, n: usize, out: &mut [f32], accumulate: bool) {
    assert!(isa.bf16_dot(), "the bf16 rows product needs AVX512-BF16, not {}", isa.key());
    assert!(matches!(w, WeightSlice::Q8_0(_) | WeightSlice::Q4_0(_)), "block weights expected");
    assert!(k.is_multiple_of(CHUNK) && w.len() >= n * k, "block weights of {} values for {n} rows of {k} (a multiple of {CHUNK})", w.len());
    with_rows(&BF16_ROWS, x, m, k, n, out, accumulate, round_row, |rows, kp, out| run::<u16, RN_BF16>(rows, m, k, kp, &Weights::Blocks(w), n, out, accumulate, tile_bf16));
}

/// The same product in f32 arithmetic (the exact precision): each bf16 weight widens to
/// its f32 value, so only the order of the f32 sums differs from the packed GEMM. x rows
/// are laid out per 32-element chunk as 16 evens then 16 odds, the lanes a 64-byte load
/// of 32 bf16 weights splits into (a shift and a mask). `isa` must be an AVX-512 level.
#[allow(clippy::too_many_arguments)]
pub(super) fn gemm_f32(isa: Isa, x: &[f32], m: usize, k: usize, w: &[u16], n: usize, out: &mut [f32], accumulate: bool) {
    assert!(isa.avx512(), "the f32 rows product needs AVX-512, not {}", isa.key());
    assert!(w.len() >= n * k, "bf16 weights hold {} values, {n} x {k} needed", w.len());
    with_rows(&F32_ROWS, x, m, k, n, out, accumulate, even_odd_row, |rows, kp, out| run::<f32, RN_F32>(rows, m, k, kp, &Weights::Bf16(w), n, out, accumulate, tile_f32));
}

/// Where a column tile's weight rows come from.
#[derive(Clone, Copy)]
enum Weights<'a> {
    /// bf16 rows of K, read in place.
    Bf16(&'a [u16]),
    /// Q8_0 or Q4_0 rows of K (a multiple of 32), widened to bf16 into the task's buffer.
    Blocks(WeightSlice<'a>),
}

impl<'a> Weights<'a> {
    /// The RN rows n0..n0 + nb of K (a short tile repeats its last row), from `staged`
    /// (RN · K values, written here) for block weights.
    fn tile<'s, const RN: usize>(self, n0: usize, nb: usize, k: usize, staged: &'s mut [u16]) -> [&'s [u16]; RN]
    where
        'a: 's,
    {
        match self {
            Weights::Bf16(w) => std::array::from_fn(|j| &w[(n0 + j.min(nb - 1)) * k..][..k]),
            Weights::Blocks(w) => {
                for (j, dst) in staged.chunks_exact_mut(k).take(nb).enumerate() {
                    widen_row_bf16(w, (n0 + j) * k, dst);
                }
                let staged = &*staged;
                std::array::from_fn(|j| &staged[j.min(nb - 1) * k..][..k])
            }
        }
    }
}

/// Block weights start..start + dst.len() (whole blocks) as bf16: scale × integer in f32,
/// rounded to nearest even.
pub(super) fn widen_row_bf16(w: WeightSlice, start: usize, dst: &mut [u16]) {
    // SAFETY: reached from `gemm_blocks_bf16` and the AMX GEMM's weight panels only, which
    // assert AVX512-BF16 (the AMX level implies it) and whole blocks; the kernel checks
    // the bounds.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        match w {
            WeightSlice::Q8_0(b) => kernel::widen_blocks_bf16::<super::q8::Q8>(b, start, dst),
            WeightSlice::Q4_0(b) => kernel::widen_blocks_bf16::<super::q4::Q4>(b, start, dst),
            _ => unreachable!("block weights only"),
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("AVX512-BF16 exists only on x86-64 ({start}, {})", w.len() + dst.len());
}

/// x [m, k] as rows of `kp` (k padded to whole chunks) made by `row`, in this thread's
/// kept buffer, passed to `product` with kp and `out` (K = 0: no rows, the sums are 0).
#[allow(clippy::too_many_arguments)]
fn with_rows<X: Copy + Default + Send + Sync + 'static>(
    kept: &'static std::thread::LocalKey<RefCell<Vec<X>>>,
    x: &[f32],
    m: usize,
    k: usize,
    n: usize,
    out: &mut [f32],
    accumulate: bool,
    row: impl Fn(&[f32], &mut [X]) + Sync,
    product: impl FnOnce(&[X], usize, &mut [f32]),
) {
    assert!(x.len() >= m * k && out.len() >= m * n, "gemm operand sizes for {m} x {k} x {n}");
    if k == 0 {
        if !accumulate {
            out[..m * n].fill(0.0);
        }
        return;
    }
    if m == 0 || n == 0 {
        return;
    }
    let kp = k.next_multiple_of(CHUNK);
    let mut rows = kept.with(|r| std::mem::take(&mut *r.borrow_mut()));
    if rows.len() < m * kp {
        rows.resize(m * kp, X::default());
    }
    rows[..m * kp].par_chunks_mut(kp).zip(x.par_chunks(k)).for_each(|(dst, src)| row(src, dst));
    product(&rows[..m * kp], kp, out);
    if rows.capacity() * std::mem::size_of::<X>() <= KEPT_BYTES {
        kept.with(|r| *r.borrow_mut() = rows);
    }
}

/// A row of x, zero padded to whole chunks, each chunk's 16 even elements then 16 odd.
fn even_odd_row(src: &[f32], dst: &mut [f32]) {
    super::simd::even_odd_chunks(CHUNK, src, dst)
}

/// A row of x as bf16 (round to nearest even), zero padded to whole chunks (`dst.len()` a
/// multiple of 32). Only for levels with AVX512-BF16.
pub(super) fn round_row(src: &[f32], dst: &mut [u16]) {
    // SAFETY: reached from `gemm_bf16`, `gemm_blocks_bf16`, the bf16 attention,
    // `pair_tile::round_pairs` (the bf16 convolutions) and the AMX GEMM's weight panels
    // only, which assert AVX512-BF16 (the AMX level implies it).
    #[cfg(target_arch = "x86_64")]
    unsafe {
        kernel::round_row(src, dst)
    };
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("AVX512-BF16 exists only on x86-64 ({})", src.len() + dst.len());
}

/// The 4 x 6 sums of four bf16 x rows (padded to whole chunks) with six weight rows of k.
fn tile_bf16(x: [&[u16]; RM], w: [&[u16]; RN_BF16], k: usize) -> [[f32; RN_BF16]; RM] {
    // SAFETY: reached from `gemm_bf16` and `gemm_blocks_bf16` only, which assert
    // AVX512-BF16; the kernel checks the row lengths.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        kernel::tile_bf16(x, w, k)
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("AVX512-BF16 exists only on x86-64 ({})", x.len() + w.len() + k)
}

/// The 4 x 5 sums of four even/odd f32 x rows (padded to whole chunks) with five weight
/// rows of k.
fn tile_f32(x: [&[f32]; RM], w: [&[u16]; RN_F32], k: usize) -> [[f32; RN_F32]; RM] {
    // SAFETY: reached from `gemm_f32` only, which asserts AVX-512; the kernel checks the
    // row lengths.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        kernel::tile_f32(x, w, k)
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("AVX-512 exists only on x86-64 ({})", x.len() + w.len() + k)
}

/// Splits the product into tasks and runs `tile` on each RM x RN register tile.
#[allow(clippy::too_many_arguments)]
fn run<X: Sync, const RN: usize>(
    rows: &[X],
    m: usize,
    k: usize,
    kp: usize,
    w: &Weights,
    n: usize,
    out: &mut [f32],
    accumulate: bool,
    tile: impl Fn([&[X]; RM], [&[u16]; RN], usize) -> [[f32; RN]; RM] + Sync,
) {
    assert!(out.len() >= m * n && rows.len() >= m * kp && kp >= k.next_multiple_of(CHUNK), "gemm output or rows for {m} x {k} x {n}");
    let (row_tiles, col_tiles) = (m.div_ceil(RM), n.div_ceil(RN));
    let tiles_per_chunk = (X_CHUNK_BYTES / (RM * kp * std::mem::size_of::<X>())).max(4);
    let row_chunks = row_tiles.div_ceil(tiles_per_chunk);
    let tiles_per_chunk = row_tiles.div_ceil(row_chunks);
    // Enough column blocks for eight tasks per thread.
    let blocks = (8 * rayon::current_num_threads()).div_ceil(row_chunks).min(col_tiles).max(1);
    let per_block = col_tiles.div_ceil(blocks);
    let blocks = col_tiles.div_ceil(per_block);
    let shared = SharedOut::new(out);
    let staged_len = if matches!(w, Weights::Blocks(_)) { RN * k } else { 0 };
    (0..blocks * row_chunks).into_par_iter().for_each(|task| {
        let (block, chunk) = (task % blocks, task / blocks);
        let (rt0, rt1) = (chunk * tiles_per_chunk, ((chunk + 1) * tiles_per_chunk).min(row_tiles));
        let mut staged = STAGED.with(|s| std::mem::take(&mut *s.borrow_mut()));
        staged.resize(staged.len().max(staged_len), 0);
        for ct in block * per_block..((block + 1) * per_block).min(col_tiles) {
            let n0 = ct * RN;
            let nb = (n - n0).min(RN);
            // A short tile repeats its last weight row; those sums are not stored.
            let w_rows: [&[u16]; RN] = w.tile(n0, nb, k, &mut staged);
            for rt in rt0..rt1 {
                let m0 = rt * RM;
                let mb = (m - m0).min(RM);
                let x_rows: [&[X]; RM] = std::array::from_fn(|i| &rows[(m0 + i.min(mb - 1)) * kp..][..kp]);
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
        if staged.len() * 2 <= KEPT_BYTES {
            STAGED.with(|s| *s.borrow_mut() = staged);
        }
    });
}

#[cfg(target_arch = "x86_64")]
mod kernel {
    use std::arch::x86_64::*;

    use super::{CHUNK, RM, RN_BF16, RN_F32};

    /// A row of x as bf16 (round to nearest even), zero padded to `dst.len()` (a multiple
    /// of 32): `vcvtne2ps2bf16`, 32 values at a time, a tail read masked.
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    pub(super) unsafe fn round_row(src: &[f32], dst: &mut [u16]) {
        assert!(dst.len() >= src.len() && dst.len().is_multiple_of(CHUNK), "bf16 row of {} into {}", src.len(), dst.len());
        let (s, d) = (src.as_ptr(), dst.as_mut_ptr());
        let mut i = 0;
        while i < dst.len() {
            let left = src.len().saturating_sub(i);
            let mask = |from: usize| crate::cpu::vexp::x86::tail_mask(left.saturating_sub(from).min(16));
            let lo = _mm512_maskz_loadu_ps(mask(0), s.wrapping_add(i));
            let hi = _mm512_maskz_loadu_ps(mask(16), s.wrapping_add(i + 16));
            let halves: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(hi, lo));
            _mm512_storeu_si512(d.add(i) as *mut _, halves);
            i += CHUNK;
        }
    }

    /// Blocks of format F holding elements start..start + dst.len() (whole blocks) as bf16:
    /// each block widened as the 8-bit GEMV widens it (`q8::avx512::block`), then rounded.
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16,avx2,fma,f16c")]
    pub(super) unsafe fn widen_blocks_bf16<F: crate::cpu::q8::BlockFormat>(blocks: &[u8], start: usize, dst: &mut [u16]) {
        let count = dst.len() / CHUNK;
        assert!(start.is_multiple_of(CHUNK) && dst.len().is_multiple_of(CHUNK), "whole blocks");
        assert!((start / CHUNK + count) * F::BYTES <= blocks.len(), "block weights {start}..{} of {} bytes", start + dst.len(), blocks.len());
        let src = blocks.as_ptr().add(start / CHUNK * F::BYTES);
        for b in 0..count {
            let (lo, hi) = crate::cpu::q8::avx512::block::<F>(src.add(b * F::BYTES));
            let halves: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(hi, lo));
            _mm512_storeu_si512(dst.as_mut_ptr().add(b * CHUNK) as *mut _, halves);
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

    /// Calls `step(c, mask)` for each 32-element chunk of k: whole chunks with every lane,
    /// then a partial one with the lanes below k.
    #[inline(always)]
    fn for_each_chunk(k: usize, mut step: impl FnMut(usize, u32)) {
        let full = k / CHUNK * CHUNK;
        let mut c = 0;
        while c < full {
            step(c, u32::MAX);
            c += CHUNK;
        }
        if full < k {
            step(full, (1u32 << (k - full)) - 1);
        }
    }

    /// A row of sums reduced per output (RN ≤ 8).
    #[inline(always)]
    unsafe fn reduce_row<const RN: usize>(acc: &[__m512; RN]) -> [f32; RN] {
        let v = |j: usize| acc[j.min(RN - 1)];
        let [a, b, c, d] = reduce4(v(0), v(1), v(2), v(3));
        let [e, f, g, h] = reduce4(v(4), v(5), v(6), v(7));
        let all = [a, b, c, d, e, f, g, h];
        std::array::from_fn(|j| all[j])
    }

    /// The 4 x 6 sums of four bf16 x rows (padded to whole chunks) with six bf16 weight
    /// rows of k, read masked past k.
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    pub(super) unsafe fn tile_bf16(x: [&[u16]; RM], w: [&[u16]; RN_BF16], k: usize) -> [[f32; RN_BF16]; RM] {
        assert!(x.iter().all(|r| r.len() >= k.next_multiple_of(CHUNK)) && w.iter().all(|r| r.len() >= k), "tile rows");
        let (x, w) = (x.map(|r| r.as_ptr()), w.map(|r| r.as_ptr()));
        let mut acc = [[_mm512_setzero_ps(); RN_BF16]; RM];
        let step = |c: usize, mask: u32, acc: &mut [[__m512; RN_BF16]; RM]| {
            let xv: [__m512bh; RM] = std::array::from_fn(|i| std::mem::transmute(_mm512_loadu_si512(x[i].add(c) as *const _)));
            for j in 0..RN_BF16 {
                let wv: __m512bh = std::mem::transmute(_mm512_maskz_loadu_epi16(mask, w[j].add(c) as *const i16));
                for i in 0..RM {
                    acc[i][j] = _mm512_dpbf16_ps(acc[i][j], xv[i], wv);
                }
            }
        };
        for_each_chunk(k, |c, mask| step(c, mask, &mut acc));
        acc.map(|row| reduce_row(&row))
    }

    /// The 4 x 5 sums of four f32 x rows in even/odd chunk order (padded to whole chunks)
    /// with five bf16 weight rows of k, read masked past k: per chunk and weight row, one
    /// load, a shift (evens) and a mask (odds), then two FMAs per x row.
    #[target_feature(enable = "avx512f,avx512bw")]
    pub(super) unsafe fn tile_f32(x: [&[f32]; RM], w: [&[u16]; RN_F32], k: usize) -> [[f32; RN_F32]; RM] {
        assert!(x.iter().all(|r| r.len() >= k.next_multiple_of(CHUNK)) && w.iter().all(|r| r.len() >= k), "tile rows");
        let (x, w) = (x.map(|r| r.as_ptr()), w.map(|r| r.as_ptr()));
        let high = _mm512_set1_epi32(0xffff_0000u32 as i32);
        let mut acc = [[_mm512_setzero_ps(); RN_F32]; RM];
        let step = |c: usize, mask: u32, acc: &mut [[__m512; RN_F32]; RM]| {
            let xe: [__m512; RM] = std::array::from_fn(|i| _mm512_loadu_ps(x[i].add(c)));
            let xo: [__m512; RM] = std::array::from_fn(|i| _mm512_loadu_ps(x[i].add(c + 16)));
            for j in 0..RN_F32 {
                let raw = _mm512_maskz_loadu_epi16(mask, w[j].add(c) as *const i16);
                let even = _mm512_castsi512_ps(_mm512_slli_epi32::<16>(raw));
                let odd = _mm512_castsi512_ps(_mm512_and_si512(raw, high));
                for i in 0..RM {
                    acc[i][j] = _mm512_fmadd_ps(odd, xo[i], _mm512_fmadd_ps(even, xe[i], acc[i][j]));
                }
            }
        };
        for_each_chunk(k, |c, mask| step(c, mask, &mut acc));
        acc.map(|row| reduce_row(&row))
    }
}

#[cfg(test)]
mod tests {
    use super::super::simd::Isa;
    use super::*;

    type Product = fn(Isa, &[f32], usize, usize, &[u16], usize, &mut [f32], bool);
    /// A product, the level it needs, and the value it gives an element of x.
    type Case<'a> = (Isa, Product, &'a dyn Fn(f32) -> f64);

    /// A row's sums do not depend on how many rows share the call or which tile they fall
    /// in (partial row and column tiles, a K tail), and they are the products of x (as the
    /// product rounds it) and the weights, summed in f32 (checked against f64 sums).
    #[test]
    fn rows_are_independent_of_the_batch() {
        let bf16_x = |v: f32| half::bf16::from_f32(v).to_f64();
        let f32_x = |v: f32| v as f64;
        let products: [Case; 2] = [(Isa::Avx512Bf16, gemm_bf16, &bf16_x), (Isa::Avx512, gemm_f32, &f32_x)];
        for (isa, product, x_value) in products {
            if !isa.available() {
                eprintln!("skipped {}: this CPU lacks it", isa.key());
                continue;
            }
            let (m, k, n) = (11usize, 1100usize, 263usize);
            let x: Vec<f32> = (0..m * k).map(|i| ((i * 7919 % 1013) as f32 - 506.0) / 331.0).collect();
            let w: Vec<u16> = (0..n * k).map(|i| half::bf16::from_f32(((i * 104_729 % 997) as f32 - 498.0) / 401.0).to_bits()).collect();
            let mut all = vec![0f32; m * n];
            product(isa, &x, m, k, &w, n, &mut all, false);
            for r in [0, 5, 10] {
                let mut one = vec![1f32; n];
                product(isa, &x[r * k..(r + 1) * k], 1, k, &w, n, &mut one, false);
                assert_eq!(one, all[r * n..(r + 1) * n], "{}: row {r} alone", isa.key());
                for c in [0, 131, 262] {
                    let want: f64 = (0..k).map(|i| x_value(x[r * k + i]) * crate::dtype::bf16_bits_to_f32(w[c * k + i]) as f64).sum();
                    let got = all[r * n + c] as f64;
                    assert!((got - want).abs() <= 1e-4 * (1.0 + want.abs()), "{}: row {r} column {c}: {got} vs {want}", isa.key());
                }
            }
            let mut twice = all.clone();
            product(isa, &x, m, k, &w, n, &mut twice, true);
            assert!(twice.iter().zip(&all).all(|(t, a)| *t == 2.0 * a), "{}: accumulate adds the sums", isa.key());
        }
    }

    /// Q8_0 and Q4_0 weights give, bit for bit, the bf16 product over their widened
    /// values rounded to bf16 (the packed GEMM's operands): partial row and column tiles,
    /// a scale per block, the accumulate path.
    #[test]
    fn block_weights_equal_their_bf16_rounding() {
        if !Isa::Avx512Bf16.available() {
            return eprintln!("skipped avx512bf16: this CPU lacks it");
        }
        let (m, k, n) = (11usize, 1088usize, 263usize);
        let x: Vec<f32> = (0..m * k).map(|i| ((i * 7919 % 1013) as f32 - 506.0) / 331.0).collect();
        let blocks = n * k / 32;
        // Scales vary by block (f16 bits of 0.004..0.06); the integers fill each format's range.
        let scale = |b: usize| half::f16::from_f32(0.004 + (b * 37 % 101) as f32 * 5.5e-4).to_bits().to_le_bytes();
        let q8: Vec<u8> = (0..blocks).flat_map(|b| scale(b).into_iter().chain((0..32).map(move |j| ((b * 131 + j * 29) % 255) as u8))).collect();
        let q4: Vec<u8> = (0..blocks).flat_map(|b| scale(b).into_iter().chain((0..16).map(move |j| ((b * 97 + j * 53) % 256) as u8))).collect();
        for w in [WeightSlice::Q8_0(&q8), WeightSlice::Q4_0(&q4)] {
            let rounded: Vec<u16> = (0..n * k).map(|i| half::bf16::from_f32(w.get(i)).to_bits()).collect();
            assert!(rounded.iter().any(|&b| half::bf16::from_bits(b).to_f32() < 0.0), "negative weights exercised");
            let mut want = vec![0f32; m * n];
            gemm_bf16(Isa::Avx512Bf16, &x, m, k, &rounded, n, &mut want, false);
            let mut got = vec![f32::NAN; m * n];
            gemm_blocks_bf16(Isa::Avx512Bf16, &x, m, k, w, n, &mut got, false);
            let differ = got.iter().zip(&want).position(|(g, w)| g.to_bits() != w.to_bits());
            assert_eq!(differ, None, "{}: first differing output", if matches!(w, WeightSlice::Q8_0(_)) { "q8" } else { "q4" });
            gemm_blocks_bf16(Isa::Avx512Bf16, &x, m, k, w, n, &mut got, true);
            assert!(got.iter().zip(&want).all(|(g, w)| *g == 2.0 * w), "accumulate adds the sums");
        }
    }

    /// K = 0: the sums are 0 (stored, or added to what was there).
    #[test]
    fn empty_inner_dimension_gives_zero_sums() {
        for (isa, product) in [(Isa::Avx512Bf16, gemm_bf16 as Product), (Isa::Avx512, gemm_f32)] {
            if !isa.available() {
                continue;
            }
            let mut out = vec![3f32; 15];
            product(isa, &[], 3, 0, &[], 5, &mut out, true);
            assert_eq!(out, vec![3f32; 15], "{}: accumulate", isa.key());
            product(isa, &[], 3, 0, &[], 5, &mut out, false);
            assert_eq!(out, vec![0f32; 15], "{}: store", isa.key());
        }
    }

    /// The f32 rows' even/odd order, with a zero-padded tail chunk.
    #[test]
    fn even_odd_rows_interleave_each_chunk() {
        let src: Vec<f32> = (0..35).map(|i| i as f32 + 1.0).collect();
        let mut dst = vec![-1f32; 64];
        even_odd_row(&src, &mut dst);
        let want: Vec<f32> = (0..2)
            .flat_map(|c| (0..16).map(move |l| (c, 2 * l)).chain((0..16).map(move |l| (c, 2 * l + 1))))
            .map(|(c, i)| src.get(c * 32 + i).copied().unwrap_or(0.0))
            .collect();
        assert_eq!(dst, want);
        assert_eq!(&dst[..4], &[1.0, 3.0, 5.0, 7.0]);
        assert_eq!(&dst[16..18], &[2.0, 4.0]);
        assert_eq!(&dst[32..36], &[33.0, 35.0, 0.0, 0.0]);
    }
}
