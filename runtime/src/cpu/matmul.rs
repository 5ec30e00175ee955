//! Matrix products with weights in their stored dtype.
//! Decode (M = 1) is a bandwidth-bound GEMV that streams each weight byte once;
//! prefill (M > 1) is the packed, cache-blocked GEMM of `gemm`.

use rayon::prelude::*;

use super::elementwise::silu_mul;
use super::simd::{axpy4, dot4, GemvX, Isa};
use super::view::WeightSlice;
use crate::op::WeightLayout;

/// K-major GEMV: output columns per task (a 2 KiB accumulator stays in L1).
const COLUMN_BLOCK: usize = 512;

/// out[M, N] (+)= x[M, K] · W, W stored as `layout`.
pub fn matmul(isa: Isa, x: &[f32], k: usize, w: WeightSlice, layout: WeightLayout, out: &mut [f32], accumulate: bool) {
    let m = if k == 0 { 0 } else { x.len() / k };
    if k == 0 {
        if !accumulate {
            out.fill(0.0);
        }
        return;
    }
    if m == 0 || out.is_empty() {
        return;
    }
    let n = out.len() / m;
    match (m, layout) {
        (1, WeightLayout::OutIn) => gemv_out_in(isa, x, w, out, accumulate),
        (1, WeightLayout::InOut) => gemv_in_out(isa, x, w, n, out, accumulate),
        _ => super::gemm::gemm(isa, x, m, k, w, layout, n, out, accumulate),
    }
}

/// out[M, F] = silu(x · w_gateᵀ) · (x · w_upᵀ). Decode streams both matrices in one pass
/// over shared x; prefill runs the two GEMMs.
pub fn gate_up(isa: Isa, x: &[f32], k: usize, w_gate: WeightSlice, w_up: WeightSlice, out: &mut [f32]) {
    let m = if k == 0 { 0 } else { x.len() / k };
    if m == 0 || out.is_empty() {
        out.fill(0.0);
        return;
    }
    if m == 1 {
        let xv = GemvX::new(x);
        for_each_row_group(out, k, |starts, out| {
            let gate = dot4(isa, w_gate, starts, &xv);
            let up = dot4(isa, w_up, starts, &xv);
            for (i, o) in out.iter_mut().enumerate() {
                *o = silu_mul(gate[i], up[i]);
            }
        });
    } else {
        let mut up = vec![0f32; out.len()];
        matmul(isa, x, k, w_gate, WeightLayout::OutIn, out, false);
        matmul(isa, x, k, w_up, WeightLayout::OutIn, &mut up, false);
        out.par_iter_mut().zip(up.par_iter()).for_each(|(g, &u)| *g = silu_mul(*g, u));
    }
}

#[inline(always)]
fn store(dst: &mut f32, v: f32, accumulate: bool) {
    if accumulate {
        *dst += v
    } else {
        *dst = v
    }
}

/// Rows per rayon task: a few tasks per thread for balance, whole groups of 4.
fn rows_per_task(n: usize) -> usize {
    let tasks = rayon::current_num_threads() * 16;
    n.div_ceil(tasks).next_multiple_of(4).max(4)
}

/// Splits the outputs of a row-major [N, k] weight into parallel tasks and calls `f` with
/// the element offsets of four consecutive rows and their (up to four) outputs.
fn for_each_row_group(out: &mut [f32], k: usize, f: impl Fn([usize; 4], &mut [f32]) + Sync) {
    let chunk = rows_per_task(out.len());
    out.par_chunks_mut(chunk).enumerate().for_each(|(c, out)| {
        let row0 = c * chunk;
        for (g, out) in out.chunks_mut(4).enumerate() {
            let first = row0 + g * 4;
            let last = first + out.len() - 1;
            // A short final group repeats its last row rather than reading past the matrix.
            f([0, 1, 2, 3].map(|r| (first + r).min(last) * k), out);
        }
    });
}

/// out[n] = W[n, :] · x, four rows per inner loop so each x load feeds four FMAs.
fn gemv_out_in(isa: Isa, x: &[f32], w: WeightSlice, out: &mut [f32], accumulate: bool) {
    let k = x.len();
    let x = GemvX::new(x);
    for_each_row_group(out, k, |starts, out| {
        let dots = dot4(isa, w, starts, &x);
        for (o, d) in out.iter_mut().zip(dots) {
            store(o, d, accumulate);
        }
    });
}

/// K-major GEMV over [K, N] weights in storage order: each task streams a contiguous band
/// of rows (the access the hardware prefetchers serve best; column blocks of strided rows
/// reached ~60% of the read bandwidth) into its own accumulator, then the bands' partial
/// sums are added per column block.
fn gemv_in_out(isa: Isa, x: &[f32], w: WeightSlice, n: usize, out: &mut [f32], accumulate: bool) {
    let k = x.len();
    let bands = (rayon::current_num_threads() * 2).min(k.div_ceil(4)).max(1);
    let band_rows = k.div_ceil(bands).next_multiple_of(4);
    let starts: Vec<usize> = (0..k).step_by(band_rows).collect();
    let partials: Vec<Vec<f32>> = starts
        .into_par_iter()
        .map(|k0| {
            let k1 = (k0 + band_rows).min(k);
            let mut acc = vec![0f32; n];
            for r0 in (k0..k1).step_by(4) {
                // Missing rows of the last group get a zero coefficient on a valid row.
                let a = [0, 1, 2, 3].map(|r| if r0 + r < k1 { x[r0 + r] } else { 0.0 });
                let rows = [0, 1, 2, 3].map(|r| (r0 + r).min(k1 - 1) * n);
                axpy4(isa, &mut acc, a, w, rows);
            }
            acc
        })
        .collect();
    out.par_chunks_mut(COLUMN_BLOCK).enumerate().for_each(|(c, out)| {
        let col0 = c * COLUMN_BLOCK;
        for (j, o) in out.iter_mut().enumerate() {
            store(o, partials.iter().map(|p| p[col0 + j]).sum(), accumulate);
        }
    });
}
