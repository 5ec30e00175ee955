//! The fast precision's 6 x 64 register tile over bf16 pairs with x broadcast straight
//! from rows of pairs (the packed GEMM's tile reads them interleaved): per pair, four
//! weight loads and six 4-byte broadcasts feed 24 `vdpbf16ps`. Operands that already lie
//! in rows need no packing: the attention's queries and probabilities, a convolution's
//! time-major input (each output frame's window is a row, its taps runs within it).

use std::ops::Range;

use rayon::prelude::*;

use super::gemm::{MR, NR};
use super::gemm_bf16::GROUPS;
use super::simd::Isa;
use super::view::WeightSlice;
use crate::aligned::AlignedVec;

/// Output columns of one tile.
pub(super) const COLS: usize = GROUPS * NR;

/// Where a row's pairs lie: `count` runs of `pairs` consecutive pairs, each `step` pairs
/// after the one before (one run for plain rows; a dilated convolution's taps, a 2-D
/// kernel's rows). The b operand holds the runs' pairs back to back.
#[derive(Clone, Copy, Debug)]
pub(super) struct Runs {
    pub count: usize,
    pub pairs: usize,
    pub step: usize,
}

impl Runs {
    /// `pairs` consecutive pairs.
    pub fn plain(pairs: usize) -> Runs {
        Runs { count: 1, pairs, step: 0 }
    }

    /// Pairs of a row from its first to past its last read.
    fn span(self) -> usize {
        if self.count == 0 || self.pairs == 0 {
            0
        } else {
            (self.count - 1) * self.step + self.pairs
        }
    }
}

/// out[r][..64] = a[r] · b for the MR rows: a rows of pairs read as `runs` says, b GROUPS
/// panels [runs.count · runs.pairs][NR] `stride` apart. `isa` must have bf16 dot products.
pub(super) fn tile<'o>(runs: Runs, a: [&[u32]; MR], b: &[u32], stride: usize, out: impl Iterator<Item = &'o mut [f32]>) {
    let mut out = out;
    let out: [&mut [f32]; MR] = std::array::from_fn(|_| out.next().expect("pair tile outputs: one row per tile row"));
    // No runs, or runs of no pairs: the sums are zero (and no row pointer moves).
    let runs = if runs.pairs == 0 { Runs::plain(0) } else { runs };
    let inner = runs.count * runs.pairs;
    assert!(out.iter().all(|o| o.len() >= COLS), "pair tile outputs");
    assert!(a.iter().all(|r| r.len() >= runs.span()) && (inner == 0 || b.len() >= (GROUPS - 1) * stride + inner * NR), "pair tile operands");
    let out: [*mut f32; MR] = out.map(|o| o.as_mut_ptr());
    // SAFETY: reached from the bf16 attention and convolution only, which assert
    // AVX512-BF16; bounds asserted above, and each output row is a distinct mutable borrow.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        kernel::tile(runs, a.map(|r| r.as_ptr()), b.as_ptr(), stride, out)
    };
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("AVX512-BF16 exists only on x86-64 ({runs:?}, {stride}, {})", a.len() + b.len() + out.len());
}

/// The most input bytes a task's rows span (in a core's L2 beside one column group's
/// weights, which every row of the task meets).
const TASK_INPUT_BYTES: usize = 384 << 10;

/// The a operand of a product on the tile: in each of `batches` spans of `per_batch`
/// pairs of `input`, `batch_step` pairs apart (spans may overlap: a 2-D convolution's
/// output lines share input lines), `count` rows, row j starting `j · step` pairs in and
/// read as `runs` says (a convolution's windows, which overlap too).
pub(super) struct Rows<'a> {
    pub input: &'a [u32],
    pub batches: usize,
    pub batch_step: usize,
    pub per_batch: usize,
    pub count: usize,
    pub step: usize,
    pub runs: Runs,
}

/// Every row's sums with `n` weight columns (`weights` from `weight_pairs`), handed to
/// `store(batch, row, first column, sums)` once per row and group of 64 columns (the
/// sums of columns first..first + len, len ≤ 64). Tasks own runs of rows (or whole
/// batches of few rows) and sweep every column group over them, each group's weights
/// (L2-resident) meeting all of the task's rows; a row's sums never depend on the split.
/// On the AMX level, at least 16 rows whose runs are whole tile steps go 16 at a time
/// through AMX tiles (`gemm_amx::rows_product`); `store` then runs inside the task's tile
/// state and must not run rayon work (`gemm_amx::with_tiles`).
pub(super) fn sweep(isa: Isa, rows: &Rows, weights: &[u32], n: usize, store: impl Fn(usize, usize, usize, &[f32]) + Sync) {
    let inner = rows.runs.count * rows.runs.pairs;
    let groups = n.div_ceil(COLS);
    assert!(weights.len() >= groups * GROUPS * inner * NR, "weight pairs for {n} columns of {inner} pairs");
    assert!(rows.batches == 0 || rows.input.len() >= (rows.batches - 1) * rows.batch_step + rows.per_batch, "input pairs for {} batches of {}", rows.batches, rows.per_batch);
    assert!(rows.count == 0 || (rows.count - 1) * rows.step + rows.runs.span() <= rows.per_batch, "rows past their batch's pairs");
    if isa.amx() && rows.runs.pairs.is_multiple_of(AMX_ROWS) && rows.count >= AMX_ROWS {
        return sweep_tiles(rows, weights, n, store);
    }
    tasks(rows, MR).into_par_iter().for_each(|(batches, js)| {
        let mut sums = [0f32; MR * COLS];
        for (group, panel) in weights.chunks_exact(GROUPS * inner * NR).take(groups).enumerate() {
            let (c0, cols) = (group * COLS, (n - group * COLS).min(COLS));
            for b in batches.clone() {
                let input = &rows.input[b * rows.batch_step..][..rows.per_batch];
                for j in js.clone().step_by(MR) {
                    let count = (js.end - j).min(MR);
                    // A short panel repeats its last row; those sums are not stored.
                    let a: [&[u32]; MR] = std::array::from_fn(|r| &input[(j + r.min(count - 1)) * rows.step..]);
                    tile(rows.runs, a, panel, inner * NR, sums.chunks_exact_mut(COLS));
                    for (r, row) in sums.chunks_exact(COLS).take(count).enumerate() {
                        store(b, j + r, c0, &row[..cols]);
                    }
                }
            }
        }
    });
}

/// Rows of an AMX tile.
const AMX_ROWS: usize = 16;

/// The tasks, as (batches, rows of each): runs of rows of one batch, as many as keep the
/// task's input in L2 and few enough for eight tasks a thread (a multiple of `panel`); or,
/// where a batch holds no more than half that (a 2-D convolution's output lines), whole
/// batches that make as many rows, so each column group's weights meet them all.
fn tasks(rows: &Rows, panel: usize) -> Vec<(Range<usize>, Range<usize>)> {
    let by_cache = TASK_INPUT_BYTES / (4 * rows.step).max(1);
    let by_balance = (rows.batches * rows.count).div_ceil(8 * rayon::current_num_threads());
    let per = by_cache.min(by_balance).max(4 * MR).next_multiple_of(panel);
    if rows.count > 0 && 2 * rows.count <= per {
        let batches = per / rows.count;
        return (0..rows.batches).step_by(batches).map(|b0| (b0..(b0 + batches).min(rows.batches), 0..rows.count)).collect();
    }
    (0..rows.batches).flat_map(|b| (0..rows.count).step_by(per).map(move |j0| (b..b + 1, j0..(j0 + per).min(rows.count)))).collect()
}

/// `sweep` on AMX tiles (at least 16 rows, runs of whole 16-pair steps): panels of 16
/// rows, the tile state held for each task. A task's last panel, when short, starts early
/// enough to hold 16 rows and stores only those not stored before; every row's sums are
/// the same whichever panel computes them.
fn sweep_tiles(rows: &Rows, weights: &[u32], n: usize, store: impl Fn(usize, usize, usize, &[f32]) + Sync) {
    let inner = rows.runs.count * rows.runs.pairs;
    tasks(rows, AMX_ROWS).into_par_iter().for_each(|(batches, js)| {
        let mut sums = AlignedVec::<f32>::zeroed(AMX_ROWS * COLS);
        super::gemm_amx::with_tiles(|| {
            for (group, panel) in weights.chunks_exact(GROUPS * inner * NR).take(n.div_ceil(COLS)).enumerate() {
                let (c0, cols) = (group * COLS, (n - group * COLS).min(COLS));
                for b in batches.clone() {
                    let input = &rows.input[b * rows.batch_step..][..rows.per_batch];
                    for j in js.clone().step_by(AMX_ROWS) {
                        // js.end ≥ 16: tasks hold at least 16 rows, or end at the count (≥ 16).
                        let first = j.min(js.end - AMX_ROWS);
                        // SAFETY: inside `with_tiles`; rows first..first + 16 lie in the
                        // batch's pairs, each reading its runs' span within them (asserted
                        // by `sweep`); the panel holds GROUPS panels of `inner` rows of NR
                        // pairs, `sums` 16 rows of COLS.
                        unsafe { super::gemm_amx::rows_product(input[first * rows.step..].as_ptr(), rows.step, rows.runs, panel.as_ptr(), inner * NR, sums.as_mut_ptr(), COLS) };
                        for (r, row) in sums.chunks_exact(COLS).enumerate().skip(j - first) {
                            store(b, first + r, c0, &row[..cols]);
                        }
                    }
                }
            }
        });
    });
}

/// Weights [n, len] (out-in) as bf16 pairs of the tile's b operand: per group of 64
/// columns, GROUPS panels [len / 2][NR] (an odd last value pairs with 0), zero past the
/// last column.
pub(super) fn weight_pairs(w: WeightSlice, n: usize, len: usize) -> AlignedVec<u32> {
    let inner = len.div_ceil(2);
    let mut pairs = AlignedVec::zeroed(n.div_ceil(COLS) * GROUPS * inner * NR);
    pairs.par_chunks_mut(inner * NR).enumerate().for_each(|(panel, dst)| {
        let (mut row, mut tmp) = (vec![0f32; len], vec![0u32; len.div_ceil(32) * 16]);
        for c in 0..NR {
            let o = panel * NR + c;
            if o >= n {
                break;
            }
            w.widen_into(o * len, &mut row);
            round_pairs(&row, &mut tmp);
            for (kk, &pair) in tmp[..inner].iter().enumerate() {
                dst[kk * NR + c] = pair;
            }
        }
    });
    pairs
}

/// `src` rounded to bf16 pairs of consecutive elements into `dst` (whole 16-pair chunks,
/// zero past `src`): each pair is the u32 of two consecutive bf16 values.
pub(super) fn round_pairs(src: &[f32], dst: &mut [u32]) {
    assert!(dst.len().is_multiple_of(16) && 2 * dst.len() >= src.len(), "pairs of {} values into {}", src.len(), dst.len());
    // SAFETY: u32 storage viewed as twice as many u16 (alignment 4 ≥ 2); little-endian
    // x86-64 puts the lower index in the low half, the pair layout of `vdpbf16ps`.
    let halves = unsafe { std::slice::from_raw_parts_mut(dst.as_mut_ptr() as *mut u16, 2 * dst.len()) };
    super::gemm_bf16_rows::round_row(src, halves);
}

/// Operands of the tile's users' tests: values in [−scale/2, scale/2) that vary in every
/// bf16 bit, and the f64 value of an operand's bf16 rounding.
#[cfg(test)]
pub(super) mod test_operands {
    pub fn values(n: usize, seed: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|i| (((i * 7919 + seed * 104_729) % 1013) as f32 / 1013.0 - 0.5) * scale).collect()
    }

    pub fn bf16(v: f32) -> f64 {
        half::bf16::from_f32(v).to_f64()
    }

    /// The levels with bf16 products that this CPU has (each one missing said so).
    pub fn levels() -> Vec<crate::cpu::Isa> {
        [crate::cpu::Isa::Avx512Bf16, crate::cpu::Isa::Amx]
            .into_iter()
            .filter(|isa| {
                isa.available() || {
                    eprintln!("skipped {}: this CPU lacks it", isa.key());
                    false
                }
            })
            .collect()
    }
}

#[cfg(target_arch = "x86_64")]
mod kernel {
    use std::arch::x86_64::*;

    use super::{Runs, GROUPS, MR, NR};

    /// The tile from zero, each row's 64 sums stored to its own output row.
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    pub(super) unsafe fn tile(runs: Runs, a: [*const u32; MR], b: *const u32, stride: usize, out: [*mut f32; MR]) {
        let mut acc = [[_mm512_setzero_ps(); GROUPS]; MR];
        for run in 0..runs.count {
            let (a, b) = (a.map(|r| r.add(run * runs.step)), b.add(run * runs.pairs * NR));
            for kk in 0..runs.pairs {
                let bv: [__m512bh; GROUPS] = std::array::from_fn(|g| std::mem::transmute(_mm512_loadu_si512(b.add(g * stride + kk * NR) as *const _)));
                for (i, row) in acc.iter_mut().enumerate() {
                    let x: __m512bh = std::mem::transmute(_mm512_set1_epi32(*a[i].add(kk) as i32));
                    for (v, bg) in row.iter_mut().zip(bv) {
                        *v = _mm512_dpbf16_ps(*v, x, bg);
                    }
                }
            }
        }
        for (row, o) in acc.iter().zip(out) {
            for (g, v) in row.iter().enumerate() {
                _mm512_storeu_ps(o.add(g * NR), *v);
            }
        }
    }
}
