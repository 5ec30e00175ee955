//! Matrix products with weights in their stored dtype.
//! Decode (M = 1, or any M with `RowOrder::Invariant`) is a bandwidth-bound GEMV that
//! streams each weight byte once and computes every row exactly as it would alone, and so
//! are products of a few rows; prefill is the GEMM of `gemm` (packed and cache-blocked,
//! or, for bf16 weights on the AVX-512 levels, reading them in place).

use rayon::prelude::*;

use super::elementwise::silu_mul;
use super::simd::{axpy4, dot4, dot4x2, dot4x4, GemvX, Isa};
use super::view::WeightSlice;
use crate::op::{RowOrder, WeightLayout};

/// K-major GEMV: output columns per task (a 2 KiB accumulator stays in L1).
const COLUMN_BLOCK: usize = 512;

/// out[M, N] (+)= x[M, K] · W, W stored as `layout`.
#[allow(clippy::too_many_arguments)]
pub fn matmul(isa: Isa, x: &[f32], k: usize, w: WeightSlice, layout: WeightLayout, out: &mut [f32], accumulate: bool, rows: RowOrder) {
    let m = x.len().checked_div(k).unwrap_or(0);
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
    let gemv = as_gemv(m, rows);
    match layout {
        WeightLayout::OutIn if gemv => gemv_out_in(isa, x, k, w, out, accumulate),
        WeightLayout::InOut if gemv => gemv_in_out(isa, x, k, w, n, out, accumulate),
        _ => super::gemm::gemm(isa, x, m, k, w, layout, n, out, accumulate),
    }
}

/// out[M, F] = silu(x · w_gateᵀ) · (x · w_upᵀ). Decode (and a few rows) streams both
/// matrices in one pass over shared x; prefill runs the two GEMMs.
pub fn gate_up(isa: Isa, x: &[f32], k: usize, w_gate: WeightSlice, w_up: WeightSlice, out: &mut [f32], rows: RowOrder) {
    let m = x.len().checked_div(k).unwrap_or(0);
    if m == 0 || out.is_empty() {
        out.fill(0.0);
        return;
    }
    if as_gemv(m, rows) {
        let xs = gemv_inputs(x, k, super::tune::q8_prefetch_bytes());
        let tasks = super::tune::gemv_tasks_per_thread(out.len() / m);
        for_each_row_group(out, m, k, tasks, |starts, row, outs| {
            let gate = dots(isa, w_gate, starts, &xs, row, outs.len());
            let up = dots(isa, w_up, starts, &xs, row, outs.len());
            for (m, out) in outs.iter_mut().enumerate() {
                for (i, o) in out.iter_mut().enumerate() {
                    *o = silu_mul(gate[m][i], up[m][i]);
                }
            }
        });
    } else {
        let mut up = vec![0f32; out.len()];
        matmul(isa, x, k, w_gate, WeightLayout::OutIn, out, false, rows);
        matmul(isa, x, k, w_up, WeightLayout::OutIn, &mut up, false, rows);
        out.par_iter_mut().zip(up.par_iter()).for_each(|(g, &u)| *g = silu_mul(*g, u));
    }
}

/// Products of up to this many rows run as GEMVs: packing a weight panel for a few rows
/// costs more than reading each weight group once for all of them (prefill on the 3B
/// shape, measured at 2, 4, 6, 8 and 12 tokens: 2 tokens 2.2x faster in bf16, 1.7x in q8;
/// 4 tokens 1.4x and 1.14x; at 6, one full row panel of the GEMM's tiles, the GEMM won
/// for q8, and bf16 gained 1.08x-1.27x up to 8, which this shared bound leaves).
const GEMV_MAX_ROWS: usize = 4;

/// Whether an M-row product runs as the GEMV (a row-invariant product always does).
pub(super) fn as_gemv(m: usize, rows: RowOrder) -> bool {
    m <= GEMV_MAX_ROWS || rows == RowOrder::Invariant
}

/// Each row of x as a GEMV input (`q8_prefetch`: the 8-bit products' prefetch distance).
fn gemv_inputs(x: &[f32], k: usize, q8_prefetch: usize) -> Vec<GemvX<'_>> {
    x.chunks_exact(k).map(|row| GemvX::new(row, q8_prefetch)).collect()
}

/// `out` shared by tasks that write disjoint elements.
struct SharedOut(*mut f32);

// SAFETY: tasks write disjoint index sets (asserted by construction in the callers).
unsafe impl Sync for SharedOut {}
unsafe impl Send for SharedOut {}

#[inline(always)]
fn store(dst: &mut f32, v: f32, accumulate: bool) {
    if accumulate {
        *dst += v
    } else {
        *dst = v
    }
}

/// Rows per rayon task: `tasks_per_thread` tasks per thread (tuned: `cpu.gemv.tasks`),
/// whole groups of 4.
fn rows_per_task(n: usize, tasks_per_thread: usize) -> usize {
    let tasks = rayon::current_num_threads() * tasks_per_thread.max(1);
    n.div_ceil(tasks).next_multiple_of(4).max(4)
}

/// The four-row group's dot products with input rows `row..row + count` (count 1 to 4;
/// the rows of a group share its weight loads).
fn dots(isa: Isa, w: WeightSlice, starts: [usize; 4], xs: &[GemvX], row: usize, count: usize) -> [[f32; 4]; 4] {
    match count {
        4 => dot4x4(isa, w, starts, [&xs[row], &xs[row + 1], &xs[row + 2], &xs[row + 3]]),
        3 => {
            let [a, b] = dot4x2(isa, w, starts, &xs[row], &xs[row + 1]);
            [a, b, dot4(isa, w, starts, &xs[row + 2]), [0.0; 4]]
        }
        2 => {
            let [a, b] = dot4x2(isa, w, starts, &xs[row], &xs[row + 1]);
            [a, b, [0.0; 4], [0.0; 4]]
        }
        _ => [dot4(isa, w, starts, &xs[row]), [0.0; 4], [0.0; 4], [0.0; 4]],
    }
}

/// Splits the N outputs per row of a row-major [N, k] weight into parallel tasks and
/// calls `f` with the element offsets of four consecutive weight rows, the first of up
/// to four input rows, and those rows' (up to four) outputs each. All input rows of a
/// group run back to back, so the group's weights come from memory once and from cache
/// for the other rows.
fn for_each_row_group(out: &mut [f32], m: usize, k: usize, tasks_per_thread: usize, f: impl Fn([usize; 4], usize, &mut [&mut [f32]]) + Sync) {
    let n = out.len() / m;
    let chunk = rows_per_task(n, tasks_per_thread);
    let shared = SharedOut(out.as_mut_ptr());
    (0..n.div_ceil(chunk)).into_par_iter().for_each(|c| {
        let shared = &shared;
        let end = ((c + 1) * chunk).min(n);
        for first in (c * chunk..end).step_by(4) {
            let last = (first + 4).min(end) - 1;
            // A short final group repeats its last row rather than reading past the matrix.
            let starts = [0, 1, 2, 3].map(|r| (first + r).min(last) * k);
            let mut row = 0;
            while row < m {
                let count = (m - row).min(4);
                // SAFETY: task c alone writes columns c·chunk..end of every row; the rows
                // differ, and `(row + count - 1) · n + last < m · n = out.len()`.
                let slice = |r: usize| unsafe { std::slice::from_raw_parts_mut(shared.0.add(r * n + first), last - first + 1) };
                match count {
                    4 => f(starts, row, &mut [slice(row), slice(row + 1), slice(row + 2), slice(row + 3)]),
                    3 => f(starts, row, &mut [slice(row), slice(row + 1), slice(row + 2)]),
                    2 => f(starts, row, &mut [slice(row), slice(row + 1)]),
                    _ => f(starts, row, &mut [slice(row)]),
                }
                row += count;
            }
        }
    });
}

/// out[m, n] = W[n, :] · x[m, :], four weight rows per inner loop so each x load feeds
/// four FMAs. A row's result does not depend on how many rows there are.
fn gemv_out_in(isa: Isa, x: &[f32], k: usize, w: WeightSlice, out: &mut [f32], accumulate: bool) {
    let (len, n) = (out.len(), out.len() / (x.len() / k));
    let mut scratch = Vec::new();
    let prefetch = super::tune::q8_prefetch_bytes();
    super::tune::tune_gemv_on_first_use(n, k, |tasks| {
        scratch.resize(len, 0.0);
        gemv_out_in_with(isa, x, k, w, &mut scratch, false, tasks, prefetch);
    });
    let tasks = super::tune::gemv_tasks_per_thread(n);
    // The distance is tuned on Q8_0 weights; the Q4_0 kernel takes the same one (measured
    // within noise of it from 0 to 4 KiB on the 3B text head).
    if isa.int8_dot() && matches!(w, WeightSlice::Q8_0(b) if b.len() >= super::tune::Q8_PREFETCH_MIN_BYTES) {
        super::tune::tune_q8_prefetch_on_first_use(n, k, |prefetch| {
            scratch.resize(len, 0.0);
            gemv_out_in_with(isa, x, k, w, &mut scratch, false, tasks, prefetch);
        });
    }
    gemv_out_in_with(isa, x, k, w, out, accumulate, tasks, super::tune::q8_prefetch_bytes());
}

/// `gemv_out_in` with `tasks_per_thread` tasks per thread and the 8-bit products'
/// prefetch distance `q8_prefetch` (results depend on neither).
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemv_out_in_with(isa: Isa, x: &[f32], k: usize, w: WeightSlice, out: &mut [f32], accumulate: bool, tasks_per_thread: usize, q8_prefetch: usize) {
    let m = x.len() / k;
    let xs = gemv_inputs(x, k, q8_prefetch);
    for_each_row_group(out, m, k, tasks_per_thread, |starts, row, outs| {
        let d = dots(isa, w, starts, &xs, row, outs.len());
        for (out, d) in outs.iter_mut().zip(d) {
            for (o, v) in out.iter_mut().zip(d) {
                store(o, v, accumulate);
            }
        }
    });
}

/// K-major GEMV over [K, N] weights in storage order: each task streams a contiguous band
/// of rows (the access the hardware prefetchers serve best; column blocks of strided rows
/// reached ~60% of the read bandwidth) into its own accumulator, then the bands' partial
/// sums are added per column block.
/// The band split depends on K and the thread count only, never on M, so each row is
/// summed exactly as it would be alone.
fn gemv_in_out(isa: Isa, x: &[f32], k: usize, w: WeightSlice, n: usize, out: &mut [f32], accumulate: bool) {
    let m = x.len() / k;
    let bands = (rayon::current_num_threads() * 2).min(k.div_ceil(4)).max(1);
    let band_rows = k.div_ceil(bands).next_multiple_of(4);
    let starts: Vec<usize> = (0..k).step_by(band_rows).collect();
    // partials[band][row · n + j]
    let partials: Vec<Vec<f32>> = starts
        .into_par_iter()
        .map(|k0| {
            let k1 = (k0 + band_rows).min(k);
            let mut acc = vec![0f32; m * n];
            for r0 in (k0..k1).step_by(4) {
                let rows = [0, 1, 2, 3].map(|r| (r0 + r).min(k1 - 1) * n);
                for (row, acc) in acc.chunks_exact_mut(n).enumerate() {
                    let x = &x[row * k..(row + 1) * k];
                    // Missing rows of the last group get a zero coefficient on a valid row.
                    let a = [0, 1, 2, 3].map(|r| if r0 + r < k1 { x[r0 + r] } else { 0.0 });
                    axpy4(isa, acc, a, w, rows);
                }
            }
            acc
        })
        .collect();
    out.par_chunks_mut(COLUMN_BLOCK).enumerate().for_each(|(c, out)| {
        let start = c * COLUMN_BLOCK;
        for (j, o) in out.iter_mut().enumerate() {
            store(o, partials.iter().map(|p| p[start + j]).sum(), accumulate);
        }
    });
}
