//! Cache-blocked GEMM for many rows: out[M, N] (+)= x[M, K] · W.
//!
//! BLIS-style: the x rows are packed once into micro-panels of MR rows per block of KC
//! inner indices ([KC][MR], zero padded). Each parallel task owns NR output columns (two
//! panels, 2·NR, on AVX-512): per K block it packs its weights into [KC][NR] micro-panels
//! (16 KiB each, L1-resident) and sweeps all row panels with a register tile (AVX2: MR x NR,
//! per inner index two 8-lane loads of W, MR broadcasts of x, 2·MR FMAs into 12
//! accumulators; AVX-512: 2·MR x 2·NR, 24 accumulators, `gemm_avx512::tile_f32`),
//! keeping its accumulators until K is done so the output is written once. Every sum
//! takes its products in K order whatever the tile, so the levels agree to the bit.

use rayon::prelude::*;

use super::gemm_pack::{pack_cols, pack_rows};
use super::simd::Isa;
use super::view::{SharedOut, WeightSlice};
use crate::op::WeightLayout;

pub(crate) const MR: usize = 6;
pub(crate) const NR: usize = 16;
pub(crate) const KC: usize = 256;
/// The fast (bf16) product is used from this many output columns on. From 64 on, it
/// doubled the LM fixtures' worst logit error (1.2e-2 to 4.6e-2: attention's P·V and the
/// narrow products in bf16 too) for about 5 % of the codec's time. The many-query
/// attention applies it to its keys (`attention_bf16.rs`: P·V in bf16 from 256 keys).
const FAST_MIN_COLUMNS: usize = 256;

/// Whether a `vdpbf16ps` product (`gemm_bf16.rs`, or `gemm_bf16_rows.rs` for a prefill's
/// bf16 weights) computes a product of `n` output columns at this level: the fast levels'
/// policy, for plain and gathered rows alike.
pub(super) fn bf16_product(isa: Isa, n: usize) -> bool {
    isa.bf16_dot() && n >= FAST_MIN_COLUMNS
}

/// The kernel that computes a many-row product: `gemm`'s routing, which `Linear` asks
/// too (it fuses its epilogue into the packed bf16 and the AMX GEMMs' stores).
#[derive(Clone, Copy, Debug)]
pub(super) enum Route<'a> {
    /// AMX tiles (`gemm_amx.rs`).
    Amx,
    /// Up to a few hundred rows (a prefill), bf16 weights along K read in place
    /// (`gemm_bf16_rows.rs`), in bf16 products or f32 ones by the fast policy.
    RowsBf16(&'a [u16]),
    RowsF32(&'a [u16]),
    /// As many rows, 8- or 4-bit weights widened a column tile at a time.
    RowsBlocks,
    /// The packed bf16 GEMM (`gemm_bf16.rs`).
    PackedBf16,
    /// The f32 packed GEMM, in passes of rows.
    Passes,
}

pub(super) fn route<'a>(isa: Isa, m: usize, k: usize, w: WeightSlice<'a>, layout: WeightLayout, n: usize) -> Route<'a> {
    // The fast levels' policy: bf16 operands from FAST_MIN_COLUMNS columns on.
    let bf16 = bf16_product(isa, n);
    if isa.amx() && n >= FAST_MIN_COLUMNS {
        return Route::Amx;
    }
    if layout == WeightLayout::OutIn && isa.avx512() {
        use super::gemm_bf16_rows as rows;
        match w {
            WeightSlice::BF16(w) if bf16 && m <= rows::MAX_ROWS_BF16 => return Route::RowsBf16(w),
            WeightSlice::BF16(w) if !bf16 && m <= rows::MAX_ROWS_F32 => return Route::RowsF32(w),
            WeightSlice::Q8_0(_) | WeightSlice::Q4_0(_) if bf16 && m <= rows::MAX_ROWS_BLOCKS && k.is_multiple_of(crate::dtype::Q8_BLOCK) => return Route::RowsBlocks,
            _ => {}
        }
    }
    // The packed bf16 GEMM packs all rows at once (the pass sizes are not its to tune).
    // The pair tile's route (x rows of pairs read in place, weights paired once per call,
    // as the convolutions do) measured 0.86x-0.99x of it on two of the codec's 1000-row
    // linears and 0.97x-1.10x on the third: pairing a 1536 x 6144 weight per call costs
    // about what the tile gains.
    if bf16 {
        return Route::PackedBf16;
    }
    Route::Passes
}

#[allow(clippy::too_many_arguments)]
pub fn gemm(
    isa: Isa,
    x: &[f32],
    m: usize,
    k: usize,
    w: WeightSlice,
    layout: WeightLayout,
    n: usize,
    out: &mut [f32],
    accumulate: bool,
) {
    use super::gemm_bf16_rows as rows;
    match route(isa, m, k, w, layout, n) {
        Route::Amx => super::gemm_amx::gemm(x, m, k, w, layout, n, out, accumulate),
        Route::RowsBf16(w) => rows::gemm_bf16(isa, x, m, k, w, n, out, accumulate),
        Route::RowsF32(w) => rows::gemm_f32(isa, x, m, k, w, n, out, accumulate),
        Route::RowsBlocks => rows::gemm_blocks_bf16(isa, x, m, k, w, n, out, accumulate),
        Route::PackedBf16 => super::gemm_bf16::gemm(isa, x, m, k, w, layout, n, out, accumulate),
        Route::Passes => {
            super::tune::tune_on_first_use(isa, x, m, k, w, layout, n);
            let per_pass = super::tune::rows_per_pass(super::tune::gemm_pass_bytes(k), k);
            gemm_in_passes(isa, x, m, k, w, layout, n, out, accumulate, per_pass);
        }
    }
}

/// The GEMM over passes of `per_pass` rows of x, packed once per pass. The pass size
/// (`tune::gemm_pass_bytes`) never changes a result: each output's K order is the same.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_in_passes(isa: Isa, x: &[f32], m: usize, k: usize, w: WeightSlice, layout: WeightLayout, n: usize, out: &mut [f32], accumulate: bool, per_pass: usize) {
    // The avx2int8 level's 8-bit inputs (the GEMV's policy): Q8_0 and Q4_0 weights meet
    // 8-bit blocks of x in integer products.
    let int8 = isa == Isa::Avx2Int8 && layout == WeightLayout::OutIn && k.is_multiple_of(crate::dtype::Q8_BLOCK);
    for m0 in (0..m).step_by(per_pass.max(1)) {
        let mb = (m - m0).min(per_pass);
        let (xs, outs) = (&x[m0 * k..(m0 + mb) * k], &mut out[m0 * n..(m0 + mb) * n]);
        match w {
            WeightSlice::Q8_0(bytes) if int8 => {
                super::gemm_q8::gemm::<super::q8::Q8>(xs, mb, k, bytes, n, outs, accumulate);
                continue;
            }
            WeightSlice::Q4_0(bytes) if int8 => {
                super::gemm_q8::gemm::<super::q4::Q4>(xs, mb, k, bytes, n, outs, accumulate);
                continue;
            }
            _ => {}
        }
        let packed = PackedRows { data: pack_rows(isa, xs, mb, k, mb.div_ceil(MR)), rows: mb, k };
        gemm_packed(isa, &packed, w, layout, n, outs, accumulate);
    }
}

/// Rows of x already in the packed layout ([k block][row panel][KC][MR], zero padded),
/// for callers that build them directly (a convolution's im2col rows).
pub struct PackedRows {
    pub(super) data: super::scratch::Scratch,
    pub(super) rows: usize,
    pub(super) k: usize,
}

impl PackedRows {
    /// `rows` rows of `k` inner indices, row i written by `row(i, dst)` (all of dst), packed
    /// MR rows at a time through an L1-resident staging block (a convolution's im2col rows:
    /// written element by element into the layout, they cost a fifth of the product). The
    /// buffer comes from the thread's scratch pool and goes back when dropped.
    pub fn gather(isa: Isa, rows: usize, k: usize, mut row: impl FnMut(usize, &mut [f32])) -> Self {
        let (row_panels, k_blocks) = (rows.div_ceil(MR), k.div_ceil(KC));
        let mut data = super::scratch::take(k_blocks * row_panels * MR * KC);
        let mut staging = super::scratch::take(MR * k);
        for rp in 0..row_panels {
            let count = (rows - rp * MR).min(MR);
            for i in 0..count {
                row(rp * MR + i, &mut staging[i * k..(i + 1) * k]);
            }
            for kb in 0..k_blocks {
                let k0 = kb * KC;
                let panel = &mut data[(kb * row_panels + rp) * MR * KC..][..MR * KC];
                super::gemm_pack::pack_panel(isa, &staging, k, count, k0, (k - k0).min(KC), panel);
            }
        }
        PackedRows { data, rows, k }
    }

    /// The most rows of `k` inner indices whose packed block (K padded to whole blocks,
    /// rows to whole panels) the scratch pool keeps, so every task reuses its buffer.
    pub fn rows_kept(k: usize) -> usize {
        super::scratch::KEPT_LEN / k.max(1).next_multiple_of(KC) / MR * MR
    }
}

/// out[rows, n] = X · Wᵀ for W [n, k] and the `rows` rows of X that `row(i, dst)` writes
/// (a convolution's im2col rows), gathered straight into the packed layout; zero when k = 0.
pub fn gemm_gathered(isa: Isa, rows: usize, k: usize, row: impl FnMut(usize, &mut [f32]), w: WeightSlice, n: usize, out: &mut [f32]) {
    if k == 0 {
        return out.fill(0.0);
    }
    let cols = PackedRows::gather(isa, rows, k, row);
    gemm_packed(isa, &cols, w, WeightLayout::OutIn, n, out, false);
}

/// out[rows, n] (+)= x · W for packed x.
pub fn gemm_packed(isa: Isa, x: &PackedRows, w: WeightSlice, layout: WeightLayout, n: usize, out: &mut [f32], accumulate: bool) {
    if bf16_product(isa, n) {
        return super::gemm_bf16::gemm_packed(isa, x, w, layout, n, out, accumulate);
    }
    let (mb, k) = (x.rows, x.k);
    assert!(out.len() >= mb * n, "gemm output holds {} floats, {mb} x {n} needed", out.len());
    let shared = SharedOut::new(out);
    let col_panels = n.div_ceil(NR);
    let k_blocks = k.div_ceil(KC);
    let row_panels = mb.div_ceil(MR);
    let apack = &x.data;
    // On AVX-512 a task owns two column panels, so each x value loaded serves both; its
    // accumulator tiles lie [row panel][column panel].
    let group = if isa.avx512() { 2 } else { 1 };
    (0..col_panels.div_ceil(group)).into_par_iter().for_each_init(
        || (vec![0f32; group * KC * NR], vec![[[0f32; NR]; MR]; group * row_panels]),
        |(bpack, acc), task| {
            let n0 = task * group * NR;
            let panels = (col_panels - task * group).min(group);
            let (bpack, acc) = (&mut bpack[..panels * KC * NR], &mut acc[..panels * row_panels]);
            // The AVX2 and scalar tiles start from zero on the first K block themselves.
            let tiles_start_fresh = !isa.avx512() && k_blocks > 0;
            if !tiles_start_fresh {
                acc.iter_mut().for_each(|t| *t = [[0f32; NR]; MR]);
            }
            for kb in 0..k_blocks {
                let k0 = kb * KC;
                let kc = (k - k0).min(KC);
                let block = &apack[kb * row_panels * MR * KC..];
                for (c, panel) in bpack.chunks_exact_mut(KC * NR).enumerate() {
                    let p0 = n0 + c * NR;
                    pack_cols(isa, w, layout, k, n, k0, kc, p0, (n - p0).min(NR), panel);
                }
                if isa.avx512() {
                    tiles_avx512(kc, block, bpack, acc);
                } else {
                    for (rp, tile) in acc.iter_mut().enumerate() {
                        micro_tile(isa, kc, &block[rp * MR * KC..], bpack, tile, kb == 0);
                    }
                }
            }
            for c in 0..panels {
                let p0 = n0 + c * NR;
                // SAFETY: only this task writes columns p0..p0+NR of the mb rows of `out`.
                unsafe { store_tiles(&shared, acc.iter().skip(c).step_by(panels), mb, n, p0, (n - p0).min(NR), accumulate) };
            }
        },
    );
}

/// Writes (or, with `accumulate`, adds) one column panel's accumulator tiles (one per row
/// panel, in order) to columns n0..n0 + nb of rows 0..m of out [m, n].
///
/// # Safety
/// `shared` covers out [m, n], and no other task writes these columns meanwhile.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn store_tiles<'a>(shared: &SharedOut, acc: impl IntoIterator<Item = &'a [[f32; NR]; MR]>, m: usize, n: usize, n0: usize, nb: usize, accumulate: bool) {
    for (rp, tile) in acc.into_iter().enumerate() {
        for (i, row) in tile.iter().enumerate().take(m.saturating_sub(rp * MR).min(MR)) {
            store_row(shared.slice((rp * MR + i) * n + n0, nb), row, accumulate);
        }
    }
}

/// dst (+)= the first dst.len() sums of one accumulator row.
#[inline]
pub(crate) fn store_row(dst: &mut [f32], row: &[f32; NR], accumulate: bool) {
    // Whole rows, so the copy and the sum vectorise (short-K products, attention's scores
    // among them, spent a tenth of their time here element by element).
    let nb = dst.len();
    match <&mut [f32; NR]>::try_from(&mut *dst) {
        // A whole panel's row has a fixed length: a few vector moves, no call.
        Ok(whole) if accumulate => whole.iter_mut().zip(row).for_each(|(d, &v)| *d += v),
        Ok(whole) => *whole = *row,
        Err(_) if accumulate => dst.iter_mut().zip(row).for_each(|(d, &v)| *d += v),
        Err(_) => dst.copy_from_slice(&row[..nb]),
    }
}

/// Every row panel of one K block against the task's one or two column panels (`bpack`
/// holds [panel][KC][NR], `acc` [row panel][panel]), two row panels per AVX-512 tile.
#[cfg(target_arch = "x86_64")]
fn tiles_avx512(kc: usize, block: &[f32], bpack: &[f32], acc: &mut [[[f32; NR]; MR]]) {
    match bpack.len() / (KC * NR) {
        1 => tiles_avx512_panels::<1>(kc, block, bpack, acc),
        2 => tiles_avx512_panels::<2>(kc, block, bpack, acc),
        panels => unreachable!("{panels} column panels in a task"),
    }
}

#[cfg(target_arch = "x86_64")]
fn tiles_avx512_panels<const C: usize>(kc: usize, block: &[f32], bpack: &[f32], acc: &mut [[[f32; NR]; MR]]) {
    let row_panels = acc.len() / C;
    assert!(row_panels * C == acc.len() && block.len() >= row_panels * MR * KC && bpack.len() >= C * KC * NR && kc <= KC, "micro-panel bounds");
    let b: [*const f32; C] = std::array::from_fn(|j| bpack[j * KC * NR..].as_ptr());
    let mut pairs = acc.chunks_exact_mut(2 * C);
    for (t, tiles) in (&mut pairs).enumerate() {
        let a = block[2 * t * MR * KC..].as_ptr();
        // SAFETY: the level was detected; panel bounds asserted above.
        unsafe { super::gemm_avx512::tile_f32::<2, C>(kc, [a, a.add(MR * KC)], b, tiles) };
    }
    let last = pairs.into_remainder();
    if !last.is_empty() {
        let a = block[(row_panels - 1) * MR * KC..].as_ptr();
        // SAFETY: as above.
        unsafe { super::gemm_avx512::tile_f32::<1, C>(kc, [a], b, last) };
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn tiles_avx512(_: usize, _: &[f32], _: &[f32], _: &mut [[[f32; NR]; MR]]) {
    unreachable!("AVX-512 levels exist only on x86-64")
}

/// c += a · b over `kc` inner indices of one row panel and one column panel (`fresh`:
/// c = a · b, whatever c held).
fn micro_tile(isa: Isa, kc: usize, a: &[f32], b: &[f32], c: &mut [[f32; NR]; MR], fresh: bool) {
    assert!(a.len() >= kc * MR && b.len() >= kc * NR, "micro-panel bounds");
    #[cfg(target_arch = "x86_64")]
    if isa.avx2() {
        // SAFETY: AVX2/FMA detected; panel bounds asserted above.
        return unsafe { avx2_tile(kc, a.as_ptr(), b.as_ptr(), c, fresh) };
    }
    let _ = isa;
    if fresh {
        *c = [[0f32; NR]; MR];
    }
    for kk in 0..kc {
        let bv = &b[kk * NR..kk * NR + NR];
        for (i, row) in c.iter_mut().enumerate() {
            let av = a[kk * MR + i];
            for (cv, &bj) in row.iter_mut().zip(bv) {
                *cv += av * bj;
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2_tile(kc: usize, a: *const f32, b: *const f32, out: &mut [[f32; NR]; MR], fresh: bool) {
    use std::arch::x86_64::*;
    let mut c = [[_mm256_setzero_ps(); 2]; MR];
    if !fresh {
        for (ci, o) in c.iter_mut().zip(out.iter()) {
            ci[0] = _mm256_loadu_ps(o.as_ptr());
            ci[1] = _mm256_loadu_ps(o.as_ptr().add(8));
        }
    }
    for kk in 0..kc {
        let b0 = _mm256_loadu_ps(b.add(kk * NR));
        let b1 = _mm256_loadu_ps(b.add(kk * NR + 8));
        let ap = a.add(kk * MR);
        for (i, ci) in c.iter_mut().enumerate() {
            let av = _mm256_broadcast_ss(&*ap.add(i));
            ci[0] = _mm256_fmadd_ps(av, b0, ci[0]);
            ci[1] = _mm256_fmadd_ps(av, b1, ci[1]);
        }
    }
    for (o, ci) in out.iter_mut().zip(c) {
        _mm256_storeu_ps(o.as_mut_ptr(), ci[0]);
        _mm256_storeu_ps(o.as_mut_ptr().add(8), ci[1]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The AVX-512 tiles (two column panels a task, two row panels a tile, odd panels
    /// left over) give every sum the AVX2 tile's products in the same order, so the two
    /// levels agree to the bit: several K blocks, partial panels, both store modes.
    #[test]
    fn avx512_tiles_equal_the_avx2_tile_bit_for_bit() {
        if !Isa::Avx512.available() {
            return println!("SKIPPED: this CPU lacks AVX-512");
        }
        for (m, n, k) in [(13usize, 40usize, 600usize), (24, 32, 256), (7, 16, 9), (30, 75, 517), (1, 33, 300), (12, 17, 64)] {
            let x: Vec<f32> = (0..m * k).map(|i| ((i * 7919 % 1013) as f32 - 506.0) / 97.0).collect();
            let w: Vec<f32> = (0..n * k).map(|i| ((i * 104729 % 2027) as f32 - 1013.0) / 311.0).collect();
            for accumulate in [false, true] {
                let start: Vec<f32> = (0..m * n).map(|i| (i % 17) as f32 * 0.25).collect();
                let (mut want, mut got) = (start.clone(), start);
                for (isa, out) in [(Isa::Avx2, &mut want), (Isa::Avx512, &mut got)] {
                    gemm_in_passes(isa, &x, m, k, WeightSlice::F32(&w), WeightLayout::OutIn, n, out, accumulate, m);
                }
                for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                    assert_eq!(g.to_bits(), w.to_bits(), "{m}x{n}x{k} accumulate {accumulate} at {i}: {g} vs {w}");
                }
            }
        }
    }

    /// Rows gathered through the staging block land exactly where `pack_rows` puts them
    /// (itself checked element by element), padding included, from a NaN-poisoned pool:
    /// partial row panels, several K blocks, K not a multiple of 8.
    #[test]
    fn gathered_rows_match_packed_rows() {
        for (rows, k) in [(13usize, 300usize), (6, 256), (1, 9), (20, 517), (7, 896)] {
            let x: Vec<f32> = (0..rows * k).map(|i| (i * 7919 % 1013) as f32 - 506.0).collect();
            for isa in [Isa::Scalar, Isa::detect()] {
                drop((super::super::scratch::take(1 << 15), super::super::scratch::take(1 << 15)));
                super::super::scratch::poison();
                let want = super::super::gemm_pack::pack_rows(isa, &x, rows, k, rows.div_ceil(MR)).to_vec();
                super::super::scratch::poison();
                let got = PackedRows::gather(isa, rows, k, |i, dst| dst.copy_from_slice(&x[i * k..(i + 1) * k]));
                assert_eq!(got.data.len(), want.len());
                for (i, (g, w)) in got.data.iter().zip(&want).enumerate() {
                    assert_eq!(g.to_bits(), w.to_bits(), "{}: {rows}x{k} at {i}: {g} vs {w}", isa.key());
                }
            }
        }
    }
}
