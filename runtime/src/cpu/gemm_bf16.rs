//! The `Avx512Bf16` level's many-row GEMM: out[M, N] (+)= x[M, K] · W with bf16 operands
//! and f32 sums (`vdpbf16ps`), the fast precision's arithmetic.
//!
//! x is rounded once per call into bf16 pairs of consecutive inner indices, all rows
//! (packing in passes of rows, as the f32 GEMM does, would pack the weights again for
//! every pass): per sub-block of 64 pairs, the row panels one after another, each row's
//! pairs in a line, so a sweep over the rows reads one sequential run. Each row run's
//! sub-block is rounded by the first task that meets it, from rows asked into L2 while
//! its sub-block before ran, so the rounding is no pass of its own through memory.
//! (A convolution's packed rows arrive interleaved, [KC/2][MR] per panel; the tile reads
//! either.)
//! Each task owns 128 output columns (two parts of four 16-column weight panels) and a run
//! of row panels; it packs its weights as pairs once, over all of K (K · 256 bytes). Per
//! sub-block of 64 pairs (16 KiB of weights per part) it sweeps its rows, each row
//! panel's pairs meeting both parts while in L1, with a 6 x 64 register tile: per pair,
//! four weight loads and six broadcasts of x feed 24 `vdpbf16ps`, so the loads never
//! limit the dot products. The sums live in a per-task buffer across sub-blocks, and the
//! output is written once (with `Linear`'s bias, activation or gated residual applied on
//! the way, in registers for all but the rarer activations). Weights kept paired
//! (`PairedWeight`) skip the per-task pairing.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU8, Ordering};

use rayon::prelude::*;

use super::gemm::{store_row, PackedRows, KC, MR, NR};
#[cfg(not(target_arch = "x86_64"))]
use super::gemm_pack::bf16_pairs_out_in;
use super::gemm_pack::pack_cols;
use super::simd::Isa;
use super::store::Store;
use super::view::{SharedOut, WeightSlice};
use crate::op::WeightLayout;

/// Weight panels per part (one register tile), and the output columns they cover.
pub(super) const GROUPS: usize = 4;
const COLS: usize = GROUPS * NR;
/// Output columns per task: two register tiles' worth, so each pair of x read from cache
/// feeds two tiles.
const TASK_COLS: usize = 2 * COLS;
/// Pairs of inner indices per sub-block: per part, four weight panels of 64 x 16 pairs
/// (16 KiB).
const KP: usize = 64;
/// The fewest row panels a task sweeps, so packing its weights stays a small share.
const MIN_RUN: usize = 16;
/// The most: 3 KiB of sums per row panel, so a task's sums stay within about a core's L2.
const MAX_RUN: usize = 256;
/// Row panels per task when the weights come paired (`PairedWeight`): short enough that a
/// task's sums (144 KiB) and a sub-block's x lines (72 KiB) stay in L2, long enough that
/// reading the task's weights once per run stays cheap. On 2000-row products of the
/// flow's shapes 48 ran 1.03x-1.09x faster than 16; 84 to one run were level with 48
/// within the noise, at 1000 rows too.
const PAIRED_RUN: usize = 48;
/// The largest x-pairs buffer a thread keeps between calls (32 MiB); larger ones are
/// freed, their products long enough to amortise the pages.
const KEPT_PAIRS: usize = 8 << 20;

/// One row panel's sums over one part's four weight panels.
pub(super) type Tile = [[[f32; NR]; MR]; GROUPS];

/// A task's buffers: f32 staging for one weight micro-panel, its weight pairs over all of
/// K, its sums.
#[derive(Default)]
struct TaskBuffers {
    staging: Vec<f32>,
    weights: Vec<u32>,
    sums: Vec<Tile>,
}

thread_local! {
    /// The pairs of the last product's x, kept: a fresh buffer of tens of MiB is pages
    /// the kernel must fault in and zero on every call. A nested call (a task of this
    /// thread's own parallel loop) finds it taken and allocates its own.
    static PAIRS: RefCell<Option<Vec<u32>>> = const { RefCell::new(None) };
    /// Each thread's task buffers (about K · 256 bytes of weights and 3 KiB of sums per
    /// row panel), kept for the same reason.
    static TASK: RefCell<Option<TaskBuffers>> = const { RefCell::new(None) };
}

/// out[M, N] (+)= x[M, K] · W; `isa` has bf16 dot products.
#[allow(clippy::too_many_arguments)]
pub(super) fn gemm(isa: Isa, x: &[f32], m: usize, k: usize, w: WeightSlice, layout: WeightLayout, n: usize, out: &mut [f32], accumulate: bool) {
    gemm_with(isa, x, m, k, Weights::PerCall(w, layout), n, out, Store::Sums { accumulate });
}

/// `store`(x[M, K] · Wᵀ) into out[M, N] for out-in W, from its paired copy when it has one;
/// `isa` has bf16 dot products.
#[allow(clippy::too_many_arguments)]
pub(super) fn linear(isa: Isa, x: &[f32], m: usize, k: usize, w: WeightSlice, pairs: Option<&PairedWeight>, n: usize, out: &mut [f32], store: Store) {
    let w = match pairs {
        Some(p) => {
            assert_eq!(p.shape(), (n, k), "the paired copy's shape");
            Weights::Paired(p)
        }
        None => Weights::PerCall(w, WeightLayout::OutIn),
    };
    gemm_with(isa, x, m, k, w, n, out, store);
}

#[allow(clippy::too_many_arguments)]
fn gemm_with(isa: Isa, x: &[f32], m: usize, k: usize, w: Weights, n: usize, out: &mut [f32], store: Store) {
    assert!(x.len() >= m * k, "gemm input holds {} floats, {m} x {k} needed", x.len());
    let mut pairs = PAIRS.with(|p| p.borrow_mut().take()).unwrap_or_default();
    let len = pairs_len(m, k);
    // Every line a tile reads is rounded first; only growth clears.
    if pairs.len() < len {
        pairs.resize(len, 0);
    }
    run(isa, X::Rows { x, lines: &mut pairs[..len] }, m, k, w, n, out, store);
    if pairs.capacity() <= KEPT_PAIRS {
        PAIRS.with(|p| *p.borrow_mut() = Some(pairs));
    }
}

/// out[rows, n] (+)= x · W for rows already packed by `gemm.rs` (a convolution's im2col).
pub(super) fn gemm_packed(isa: Isa, x: &PackedRows, w: WeightSlice, layout: WeightLayout, n: usize, out: &mut [f32], accumulate: bool) {
    let pairs = super::gemm_avx512::x_pairs(isa, &x.data);
    run(isa, X::Packed(bytemuck::cast_slice(&pairs)), x.rows, x.k, Weights::PerCall(w, layout), n, out, Store::Sums { accumulate });
}

/// Sub-blocks of KP pairs per K block.
const SUBS: usize = KC / 2 / KP;
const _: () = assert!((KC / 2).is_multiple_of(KP), "whole sub-blocks per K block");

/// The pairs of x [m, k], rows to whole panels and K to whole blocks.
fn pairs_len(m: usize, k: usize) -> usize {
    m.div_ceil(MR) * k.div_ceil(KC) * KC / 2 * MR
}

/// Sub-block `sub` (inner indices sub·2·KP.., K blocks back to back) of x [m, k]'s row
/// panels `panels` as bf16 pairs, each row's in a line of KP: `lines` [panel][MR][KP],
/// zero past the last row and inner index. x's pairs are these lines for every sub-block
/// and row panel, [sub-block][row panel][MR][KP]: the tile broadcasts a row's pairs from
/// where they lie, and a sub-block's sweep over the row panels reads one sequential run.
fn round_lines(isa: Isa, x: &[f32], m: usize, k: usize, sub: usize, panels: std::ops::Range<usize>, lines: &mut [u32]) {
    let k0 = sub * 2 * KP;
    let kc = k.saturating_sub(k0).min(2 * KP);
    for (rp, panel) in panels.zip(lines.chunks_exact_mut(KP * MR)) {
        let rows = m.saturating_sub(rp * MR).min(MR);
        for (r, line) in panel.chunks_exact_mut(KP).enumerate() {
            if r < rows && kc > 0 {
                row_pairs(isa, &x[(rp * MR + r) * k + k0..][..kc], line);
            } else {
                line.fill(0);
            }
        }
    }
}

/// One row's inner indices as pairs (an odd tail pairs with 0; the rest of `out` 0).
fn row_pairs(isa: Isa, src: &[f32], out: &mut [u32]) {
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if isa.bf16_dot() {
        done = src.len() / 32 * 32;
        // SAFETY: the level was detected; `done` ≤ src.len() and done / 2 ≤ out.len()
        // (callers pass out with room for every pair of src).
        unsafe { super::gemm_avx512::row_pairs_avx512(&src[..done], &mut out[..done / 2]) };
    }
    let _ = isa;
    for (kk, o) in out.iter_mut().enumerate().skip(done / 2) {
        let (lo, hi) = (src.get(2 * kk).copied().unwrap_or(0.0), src.get(2 * kk + 1).copied().unwrap_or(0.0));
        *o = super::gemm_avx512::pair(lo, hi);
    }
}

/// How x's pairs lie (KC/2 · MR pairs per K block and row panel either way).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum XPanels {
    /// [sub-block][row panel][MR][KP]: each row's pairs of a sub-block in a line
    /// (`round_lines`).
    Lines,
    /// [KC/2][MR]: the rows of each pair side by side (pairs of `gemm.rs`'s packed rows).
    Interleaved,
}

/// Where a product's x pairs come from.
enum X<'a> {
    /// Rounded ahead, interleaved (a convolution's packed rows).
    Packed(&'a [u32]),
    /// Rows [m, k] of f32, rounded into `lines` (in `XPanels::Lines` order) as the tasks
    /// first meet them.
    Rows { x: &'a [f32], lines: &'a mut [u32] },
}

/// A row run's sub-block of x lines: not yet rounded, being rounded, ready, or left
/// half-made by a panicking task.
const TODO: u8 = 0;
const BUSY: u8 = 1;
const READY: u8 = 2;
const POISONED: u8 = 3;

/// x's lines rounded on first use, per (row run, sub-block), by whichever task meets
/// them first; a task that meets them while another rounds them waits the moment it takes.
/// Sub-block s of the product is x's sub-block s (every K block but the last has SUBS).
struct LazyLines<'a> {
    x: &'a [f32],
    m: usize,
    k: usize,
    lines: *mut u32,
    _lines: std::marker::PhantomData<&'a mut [u32]>,
    row_panels: usize,
    run_len: usize,
    subs: usize,
    state: Vec<AtomicU8>,
}

// SAFETY: each (run, sub-block)'s lines (disjoint from every other's) are written by the
// one task that moved its state from TODO to BUSY, and read only after READY is seen with
// Acquire ordering.
unsafe impl Sync for LazyLines<'_> {}

impl<'a> LazyLines<'a> {
    /// x [m, k] rounded into `lines` for `subs` sub-blocks, in runs of `run_len` row panels.
    fn new(x: &'a [f32], m: usize, k: usize, lines: &'a mut [u32], run_len: usize, subs: usize) -> Self {
        let (row_panels, run_len) = (m.div_ceil(MR), run_len.max(1));
        assert!(x.len() >= m * k && lines.len() >= pairs_len(m, k) && subs <= k.div_ceil(KC) * SUBS, "x rows of {} floats and {} line pairs for {m} x {k}", x.len(), lines.len());
        let state = (0..row_panels.div_ceil(run_len) * subs).map(|_| AtomicU8::new(TODO)).collect();
        LazyLines { x, m, k, lines: lines.as_mut_ptr(), _lines: std::marker::PhantomData, row_panels, run_len, subs, state }
    }

    fn ready(&self, run: usize, s: usize) -> bool {
        self.state[run * self.subs + s].load(Ordering::Acquire) == READY
    }

    /// The lines of sub-block `s` of row run `run`'s panels, rounded by this task unless
    /// another did (or does) it.
    fn get(&self, isa: Isa, run: usize, s: usize) -> &[u32] {
        let panels = run * self.run_len..((run + 1) * self.run_len).min(self.row_panels);
        let start = (s * self.row_panels + panels.start) * KP * MR;
        let len = panels.len() * KP * MR;
        let state = &self.state[run * self.subs + s];
        if state.compare_exchange(TODO, BUSY, Ordering::Acquire, Ordering::Acquire).is_ok() {
            /// Marks the lines poisoned if the rounding panics, so no task waits forever.
            struct Poison<'s>(&'s AtomicU8);
            impl Drop for Poison<'_> {
                fn drop(&mut self) {
                    if std::thread::panicking() {
                        self.0.store(POISONED, Ordering::Release);
                    }
                }
            }
            let _poison = Poison(state);
            // SAFETY: within the lines (s < subs ≤ the sub-blocks `new` checked room for,
            // panels within the row panels); this task alone moved the state to BUSY, so
            // no other task reads or writes these lines until READY.
            let dst = unsafe { std::slice::from_raw_parts_mut(self.lines.add(start), len) };
            round_lines(isa, self.x, self.m, self.k, s, panels, dst);
            state.store(READY, Ordering::Release);
        } else {
            // Rounding a unit takes microseconds; past a few thousand spins the rounding
            // thread is likely descheduled, so give it the core.
            let mut spins = 0u32;
            loop {
                match state.load(Ordering::Acquire) {
                    READY => break,
                    POISONED => panic!("rounding x's lines panicked in another task"),
                    _ if spins < 4096 => {
                        spins += 1;
                        std::hint::spin_loop();
                    }
                    _ => std::thread::yield_now(),
                }
            }
        }
        // SAFETY: as above; READY was seen (Acquire), and nothing writes them any more.
        unsafe { std::slice::from_raw_parts(self.lines.add(start), len) }
    }
}

/// Where a product's weight pairs come from.
#[derive(Clone, Copy)]
enum Weights<'a> {
    /// Paired by each task for its columns, every call.
    PerCall(WeightSlice<'a>, WeightLayout),
    /// Paired once, ahead of time.
    Paired(&'a PairedWeight),
}

impl Store<'_> {
    /// Row `i` of one part's sums into `dst`, its columns n0..n0 + dst.len().
    fn part(&self, isa: Isa, n0: usize, tile: &Tile, i: usize, dst: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if isa.bf16_dot() && dst.len() <= COLS {
            let Some(act) = self.in_registers() else {
                return self.part_in_passes(isa, n0, tile, i, dst);
            };
            // SAFETY: the level has AVX-512 F; the bias and gate cover dst's columns (`run`
            // asserts that they cover every column), and dst holds at most one part's.
            return unsafe { x86::store_part(self, act, n0, tile, i, dst) };
        }
        self.part_in_passes(isa, n0, tile, i, dst);
    }

    /// `part` as a copy or gated sum per 16 columns, then the bias and activation over
    /// the row.
    fn part_in_passes(&self, isa: Isa, n0: usize, tile: &Tile, i: usize, dst: &mut [f32]) {
        let nb = dst.len();
        for (g, dst) in dst.chunks_mut(NR).enumerate() {
            let sums = &tile[g][i];
            match *self {
                Store::Sums { accumulate } => store_row(dst, sums, accumulate),
                Store::Act { .. } => store_row(dst, sums, false),
                Store::GatedAdd { bias, gate } => {
                    let j0 = n0 + g * NR;
                    let cols = j0..j0 + dst.len();
                    super::linear::gated_add(dst, sums, &gate[cols.clone()], bias.map(|b| &b[cols]));
                }
            }
        }
        if let Store::Act { bias, act } = *self {
            if bias.is_some() || act.is_some() {
                super::vexp::act_row(isa, act, bias.map(|b| &b[n0..n0 + nb]), dst);
            }
        }
    }
}

/// The product over x pairs in row panels.
#[allow(clippy::too_many_arguments)]
fn run(isa: Isa, x: X, m: usize, k: usize, w: Weights, n: usize, out: &mut [f32], store: Store) {
    assert!(out.len() >= m * n, "gemm output holds {} floats, {m} x {n} needed", out.len());
    store.assert_covers(n);
    let row_panels = m.div_ceil(MR);
    let k_blocks = k.div_ceil(KC);
    // Sub-blocks of KP pairs, each of one K block: the weight panel holds them in order.
    let subs: Vec<(usize, usize, usize)> = (0..k_blocks)
        .flat_map(|kb| {
            let kc2 = (k - kb * KC).min(KC).div_ceil(2);
            (0..kc2).step_by(KP).map(move |h0| (kb, h0, (kc2 - h0).min(KP)))
        })
        .collect();
    let col_tasks = n.div_ceil(TASK_COLS);
    let runs = match w {
        // Row runs: enough tasks to keep every thread busy, each long enough to pay for
        // its weight packing.
        Weights::PerCall(..) => (4 * rayon::current_num_threads()).div_ceil(col_tasks).min(row_panels.div_ceil(MIN_RUN)).max(row_panels.div_ceil(MAX_RUN)).max(1),
        // No packing to pay for: short runs, still enough tasks for every thread.
        Weights::Paired(_) => row_panels.div_ceil(PAIRED_RUN).max((4 * rayon::current_num_threads()).div_ceil(col_tasks)).min(row_panels).max(1),
    };
    let run_len = row_panels.div_ceil(runs);
    let (packed, lazy) = match x {
        X::Packed(pairs) => {
            assert!(pairs.len() >= pairs_len(m, k), "packed pairs of x");
            (pairs, None)
        }
        X::Rows { x, lines } => (&[][..], Some(LazyLines::new(x, m, k, lines, run_len, subs.len()))),
    };
    let panels = if lazy.is_some() { XPanels::Lines } else { XPanels::Interleaved };
    let shared = SharedOut::new(out);
    (0..col_tasks * runs).into_par_iter().for_each(|task| {
        let (c, r) = (task % col_tasks, task / col_tasks);
        let (rp0, rp1) = (r * run_len, ((r + 1) * run_len).min(row_panels));
        if rp0 >= rp1 {
            return;
        }
        let (t0, tb) = (c * TASK_COLS, (n - c * TASK_COLS).min(TASK_COLS));
        // The task's 64-column parts that hold columns: (first column, columns).
        let parts: Vec<(usize, usize)> = (0..tb.div_ceil(COLS)).map(|p| (t0 + p * COLS, (tb - p * COLS).min(COLS))).collect();
        let mut b = TASK.with(|t| t.borrow_mut().take()).unwrap_or_default();
        if let Weights::PerCall(w, layout) = w {
            b.staging.resize(KC * NR, 0.0);
            b.weights.resize(subs.len() * parts.len() * PART_PAIRS, 0);
            for (s, sub) in b.weights.chunks_exact_mut(parts.len() * PART_PAIRS).enumerate() {
                sub_block_pairs(isa, w, layout, k, n, t0, s, &mut b.staging, sub);
            }
        }
        b.sums.clear();
        b.sums.resize((rp1 - rp0) * parts.len(), [[[0f32; NR]; MR]; GROUPS]);
        // Each part's four weight panels of sub-block s.
        let part_weights = |s: usize, p: usize| -> &[u32] {
            match w {
                Weights::PerCall(..) => &b.weights[(s * parts.len() + p) * PART_PAIRS..][..PART_PAIRS],
                Weights::Paired(pw) => pw.part(c, s, p),
            }
        };
        // The next sub-block's weights, asked into L2 a share per row panel while a sweep
        // runs: on a product's first run they come from memory (kept weights not in cache:
        // 1.01x-1.03x on the flow's 1000-row products).
        let share = PART_PAIRS.div_ceil(rp1 - rp0).next_multiple_of(16);
        for (s, &(kb, h0, hp)) in subs.iter().enumerate() {
            let lines = lazy.as_ref().map(|l| l.get(isa, r, s));
            // The rows of the next sub-block, asked into L2 a panel at a time while it is
            // not yet rounded (by the run's first task, as a rule, which rounds it next).
            let next_rows = match &lazy {
                Some(l) if s + 1 < subs.len() && !l.ready(r, s + 1) => Some((l.x, (s + 1) * 2 * KP)),
                _ => None,
            };
            // Each row panel's pairs meet every part while they are in L1.
            for (i, (rp, tiles)) in (rp0..rp1).zip(b.sums.chunks_exact_mut(parts.len())).enumerate() {
                if s + 1 < subs.len() && i * share < PART_PAIRS {
                    for p in 0..parts.len() {
                        super::prefetch::to_l2(&part_weights(s + 1, p)[i * share..][..share.min(PART_PAIRS - i * share)]);
                    }
                }
                if let Some((x, k0)) = next_rows {
                    for row in rp * MR..(rp * MR + MR).min(m) {
                        super::prefetch::to_l2(&x[row * k + k0..][..(k - k0).min(2 * KP)]);
                    }
                }
                // The row panel's pairs h0..h0 + hp of K block kb (h0 a multiple of KP).
                let a = match lines {
                    Some(lines) => &lines[i * KP * MR..][..KP * MR],
                    None => &packed[(kb * row_panels + rp) * KC / 2 * MR + h0 * MR..][..hp * MR],
                };
                for (p, tile) in tiles.iter_mut().enumerate() {
                    tile_6x64(hp, panels, a, part_weights(s, p), tile);
                }
            }
        }
        for (rp, tiles) in (rp0..rp1).zip(b.sums.chunks_exact(parts.len())) {
            for i in 0..(m - rp * MR).min(MR) {
                for (&(n0, nb), tile) in parts.iter().zip(tiles) {
                    // SAFETY: only this task writes columns t0..t0 + tb of its rows.
                    let dst = unsafe { shared.slice((rp * MR + i) * n + n0, nb) };
                    store.part(isa, n0, tile, i, dst);
                }
            }
        }
        TASK.with(|t| *t.borrow_mut() = Some(b));
    });
}

/// Sub-block `s` (pairs s·KP.., as many as K has) of the weights for the column task from
/// column `t0`: per 64-column part in `out`, four panels [KP][NR] in a row (panels past
/// the last column 0, their sums never stored).
#[allow(clippy::too_many_arguments)]
fn sub_block_pairs(isa: Isa, w: WeightSlice, layout: WeightLayout, k: usize, n: usize, t0: usize, s: usize, staging: &mut [f32], out: &mut [u32]) {
    let (k0, kc) = (s * 2 * KP, (k - s * 2 * KP).min(2 * KP));
    for (p, part) in out.chunks_exact_mut(PART_PAIRS).enumerate() {
        let n0 = t0 + p * COLS;
        for (g, panel) in part.chunks_exact_mut(KP * NR).enumerate() {
            match panel_cols(n.saturating_sub(n0), g) {
                0 => panel.fill(0),
                gb => weight_pairs(isa, w, layout, k, n, k0, kc, n0 + g * NR, gb, staging, panel),
            }
        }
    }
}

/// The columns of weight panel g of a part holding `nb` columns (0: past its last).
fn panel_cols(nb: usize, g: usize) -> usize {
    nb.saturating_sub(g * NR).min(NR)
}

/// W's columns n0..n0+nb over inner indices k0..k0+kc as [kc/2][NR] bf16 pairs (missing
/// columns and an odd tail 0).
#[allow(clippy::too_many_arguments)]
fn weight_pairs(isa: Isa, w: WeightSlice, layout: WeightLayout, k: usize, n: usize, k0: usize, kc: usize, n0: usize, nb: usize, bpack: &mut [f32], out: &mut [u32]) {
    match (w, layout) {
        // bf16 weights along K already are the pairs: no conversion.
        (WeightSlice::BF16(s), WeightLayout::OutIn) => {
            // SAFETY: the level has AVX-512 (the caller's dispatch); `gemm_pack`'s copy
            // reads the same rows and columns.
            #[cfg(target_arch = "x86_64")]
            unsafe {
                super::gemm_avx512::bf16_pairs_out_in_avx512(s, k, k0, kc, n0, nb, out)
            };
            #[cfg(not(target_arch = "x86_64"))]
            bf16_pairs_out_in(s, k, k0, kc, n0, nb, out)
        }
        _ => {
            pack_cols(isa, w, layout, k, n, k0, kc, n0, nb, bpack);
            // SAFETY: the level was checked by the caller's dispatch; the buffers hold a
            // whole micro-panel.
            #[cfg(target_arch = "x86_64")]
            unsafe {
                super::gemm_avx512::w_pairs_avx512(kc, bpack, out)
            };
        }
    }
}

/// tile += a · b over `kp` pairs of one x row panel, from its first (laid out as `panels`
/// says: MR lines of KP pairs, or kp interleaved pairs); b [GROUPS][KP][NR] pairs of W.
fn tile_6x64(kp: usize, panels: XPanels, a: &[u32], b: &[u32], tile: &mut Tile) {
    let lines = panels == XPanels::Lines;
    assert!(kp <= KP && a.len() >= if lines { MR * KP } else { kp * MR } && b.len() >= GROUPS * KP * NR, "micro-panel bounds");
    // SAFETY: the caller dispatches here only on a level with AVX512-BF16; bounds asserted.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        use super::gemm_avx512::tile_6x64_bf16;
        match panels {
            XPanels::Lines => tile_6x64_bf16::<KP, 1>(kp, a.as_ptr(), b.as_ptr(), KP * NR, tile),
            XPanels::Interleaved => tile_6x64_bf16::<1, MR>(kp, a.as_ptr(), b.as_ptr(), KP * NR, tile),
        }
    };
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("AVX-512 levels exist only on x86-64 ({kp}, {panels:?}, {lines}, {tile:?})");
}

/// A bf16 out-in weight W [N, K] paired once for the packed GEMM, laid out as its tasks
/// read it: per task's 128 columns, per sub-block of 64 pairs, two parts of four panels
/// [KP][NR] (what each task otherwise pairs for itself, every call; an odd K's last pair
/// takes 0, columns past N and pairs past K are 0). For weights that meet many-row products
/// again and again (the codec flow's): pairing per call costs each product a few percent
/// and forces long row runs to pay for itself. Holds the weight's size again in memory.
pub struct PairedWeight {
    n: usize,
    k: usize,
    pairs: Vec<u32>,
}

/// Pairs per sub-block and part: four panels [KP][NR].
const PART_PAIRS: usize = GROUPS * KP * NR;
const PARTS: usize = TASK_COLS / COLS;

impl PairedWeight {
    /// W [n, k] (bf16 bits) paired; `None` where `isa` would not run the packed bf16 GEMM
    /// on it.
    pub(crate) fn new(isa: Isa, w: &[u16], n: usize, k: usize) -> crate::Result<Option<Self>> {
        if !super::gemm::bf16_product(isa, n) || isa.amx() || k == 0 {
            return Ok(None);
        }
        assert_eq!(w.len(), n * k, "a bf16 weight [{n}, {k}]");
        let subs = k.div_ceil(2 * KP);
        let len = n.div_ceil(TASK_COLS) * subs * PARTS * PART_PAIRS;
        let mut pairs = Vec::new();
        pairs.try_reserve_exact(len).map_err(|_| crate::Error::Backend { backend: "cpu", msg: format!("cannot allocate {} bytes for a paired [{n}, {k}] weight", len * 4) })?;
        pairs.resize(len, 0);
        // One column task's sub-block per chunk (bf16 weights need no staging).
        pairs.par_chunks_mut(PARTS * PART_PAIRS).enumerate().for_each(|(i, sub)| {
            sub_block_pairs(isa, WeightSlice::BF16(w), WeightLayout::OutIn, k, n, i / subs * TASK_COLS, i % subs, &mut [], sub);
        });
        Ok(Some(PairedWeight { n, k, pairs }))
    }

    /// Output columns and inner indices.
    pub(crate) fn shape(&self) -> (usize, usize) {
        (self.n, self.k)
    }

    /// The four panels of column task `c`'s part `p` over sub-block `s`.
    fn part(&self, c: usize, s: usize, p: usize) -> &[u32] {
        let subs = self.k.div_ceil(2 * KP);
        &self.pairs[((c * subs + s) * PARTS + p) * PART_PAIRS..][..PART_PAIRS]
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{Store, Tile, NR};
    use crate::cpu::store::x86::store16;
    use crate::cpu::store::Act;

    /// `Store::part` 16 columns a vector (`store::x86::store16`). The bias and gate must
    /// cover columns n0..n0 + dst.len().
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn store_part(store: &Store, act: Act, n0: usize, tile: &Tile, i: usize, dst: &mut [f32]) {
        let nb = dst.len();
        // Checked once per product by `run` (here per row, in debug builds).
        let (bias, gate) = store.bias_gate();
        debug_assert!([bias, gate].into_iter().flatten().all(|v| v.len() >= n0 + nb), "bias or gate shorter than column {}", n0 + nb);
        for (g, sums) in tile.iter().enumerate().take(nb.div_ceil(NR)) {
            let (j0, mask) = (g * NR, crate::cpu::vexp::x86::tail_mask((nb - g * NR).min(NR)));
            store16(store, act, n0 + j0, mask, _mm512_loadu_ps(sums[i].as_ptr()), dst.as_mut_ptr().add(j0));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The AVX512-BF16 level, or `None` (said so) where this CPU lacks it.
    fn bf16_level() -> Option<Isa> {
        let isa = Isa::Avx512Bf16;
        isa.available().then_some(isa).or_else(|| {
            println!("SKIPPED: no AVX512-BF16 on this CPU");
            None
        })
    }

    use crate::op::UnaryFn;

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|f| f.to_bits()).collect()
    }

    /// Rows rounded straight into lines equal the f32 packing rounded panel by panel and
    /// laid in lines, at every level (the AVX-512 conversion where the CPU has it): a
    /// partial row panel, several K blocks, odd K, K tails shorter and longer than 32.
    /// Every element is written (the buffer starts as all ones).
    #[test]
    fn direct_pairs_match_packed_rows_rounded() {
        for (m, k) in [(13usize, 300usize), (6, 256), (1, 9), (20, 517), (7, 64)] {
            let x: Vec<f32> = (0..m * k).map(|i| ((i * 7919 % 1013) as f32 - 506.0) / 7.0).collect();
            for isa in [Isa::Scalar, Isa::detect(), Isa::Avx512Bf16] {
                if !isa.available() {
                    continue;
                }
                let row_panels = m.div_ceil(MR);
                let mut got = vec![u32::MAX; k.div_ceil(KC) * SUBS * row_panels * KP * MR];
                for (sub, lines) in got.chunks_exact_mut(row_panels * KP * MR).enumerate() {
                    round_lines(isa, &x, m, k, sub, 0..row_panels, lines);
                }
                let packed = super::super::gemm_pack::pack_rows(Isa::Scalar, &x, m, k, m.div_ceil(MR));
                let mut want = vec![0u32; packed.len() / 2];
                let mut interleaved = [0u32; KC / 2 * MR];
                for (idx, src) in packed.chunks_exact(KC * MR).enumerate() {
                    let (kb, rp) = (idx / row_panels, idx % row_panels);
                    super::super::gemm_avx512::x_panel_pairs(src, &mut interleaved);
                    for (kk, rows) in interleaved.chunks_exact(MR).enumerate() {
                        for (r, &pair) in rows.iter().enumerate() {
                            want[((kb * SUBS + kk / KP) * row_panels + rp) * KP * MR + r * KP + kk % KP] = pair;
                        }
                    }
                }
                assert_eq!(got, want, "{}: {m}x{k}", isa.key());
            }
        }
    }

    /// Rows rounded as the tasks first meet them give the bits of rows rounded ahead (the
    /// interleaved packing a convolution hands in): every tile reads the same pairs. Row
    /// runs of several column tasks each, on every thread of the pool, share the lines;
    /// the thread's lines buffer, reused from the shape before, holds stale pairs.
    #[test]
    fn rows_rounded_on_first_use_match_rows_rounded_ahead() {
        let Some(isa) = bf16_level() else { return };
        use super::super::pair_tile::test_operands::values;
        for (m, k, n) in [(301usize, 517usize, 300usize), (97, 64, 700), (1, 9, 130), (200, 1030, 260)] {
            let x = values(m * k, 4, 2.0);
            let w: Vec<u16> = values(n * k, 5, 2.0).iter().map(|&v| half::bf16::from_f32(v).to_bits()).collect();
            for accumulate in [false, true] {
                let init = values(m * n, 6, 1.0);
                let (mut want, mut got) = (init.clone(), init);
                let packed = PackedRows { data: super::super::gemm_pack::pack_rows(isa, &x, m, k, m.div_ceil(MR)), rows: m, k };
                gemm_packed(isa, &packed, WeightSlice::BF16(&w), WeightLayout::OutIn, n, &mut want, accumulate);
                gemm(isa, &x, m, k, WeightSlice::BF16(&w), WeightLayout::OutIn, n, &mut got, accumulate);
                assert!(bits(&got) == bits(&want), "{m}x{k}x{n}, accumulate {accumulate}");
            }
        }
    }

    /// The store in registers gives the bits of the store in passes, for every kind: sums
    /// stored and added, a bias alone, neither, GELU-tanh and SiLU with and without a
    /// bias, the exact GELU, an activation left to the passes (ReLU), the gated residual with and without
    /// a bias; whole and partial parts, from column 0 and from a later one.
    #[test]
    fn the_store_in_registers_matches_the_store_in_passes() {
        let Some(isa) = bf16_level() else { return };
        use super::super::pair_tile::test_operands::values;
        let sums = values(GROUPS * MR * NR, 11, 12.0);
        let mut tile: Tile = [[[0f32; NR]; MR]; GROUPS];
        for (t, &v) in tile.iter_mut().flatten().flatten().zip(&sums) {
            *t = v;
        }
        let (bias, gate) = (values(200, 12, 4.0), values(200, 13, 2.0));
        let stores = [
            Store::Sums { accumulate: false },
            Store::Sums { accumulate: true },
            Store::Act { bias: Some(&bias), act: None },
            Store::Act { bias: None, act: Some(UnaryFn::GeluTanh) },
            Store::Act { bias: Some(&bias), act: Some(UnaryFn::GeluTanh) },
            Store::Act { bias: Some(&bias), act: Some(UnaryFn::Silu) },
            Store::Act { bias: None, act: Some(UnaryFn::Silu) },
            Store::Act { bias: Some(&bias), act: Some(UnaryFn::GeluErf) },
            Store::Act { bias: None, act: None },
            Store::Act { bias: Some(&bias), act: Some(UnaryFn::Relu) },
            Store::GatedAdd { bias: Some(&bias), gate: &gate },
            Store::GatedAdd { bias: None, gate: &gate },
        ];
        for (k, store) in stores.iter().enumerate() {
            for (nb, n0, i) in [(64usize, 0usize, 0usize), (37, 70, 5), (16, 128, 3), (5, 190, 1)] {
                let init = values(nb, 14 + k, 3.0);
                let (mut got, mut want) = (init.clone(), init);
                store.part(isa, n0, &tile, i, &mut got);
                store.part_in_passes(isa, n0, &tile, i, &mut want);
                assert!(bits(&got) == bits(&want), "store {k}, {nb} columns from {n0}, row {i}: {got:?} vs {want:?}");
            }
        }
    }

    /// A product from the paired copy equals the product pairing per call, bit for bit
    /// (the same pairs meet the same sums in the same order; only the row runs differ):
    /// odd K over several K blocks and a short last sub-block, partial last column task
    /// and row panel, one and several row runs, stored and accumulated.
    #[test]
    fn paired_weights_match_pairing_per_call() {
        let Some(isa) = bf16_level() else { return };
        use super::super::pair_tile::test_operands::values;
        for (m, k, n) in [(301usize, 517usize, 300usize), (7, 130, 256), (200, 64, 400)] {
            let x = values(m * k, 1, 2.0);
            let w: Vec<u16> = values(n * k, 2, 2.0).iter().map(|&v| half::bf16::from_f32(v).to_bits()).collect();
            let paired = PairedWeight::new(isa, &w, n, k).unwrap().expect("a copy at the bf16 level");
            assert_eq!(paired.shape(), (n, k));
            for accumulate in [false, true] {
                let init = values(m * n, 3, 1.0);
                let (mut want, mut got) = (init.clone(), init);
                gemm(isa, &x, m, k, WeightSlice::BF16(&w), WeightLayout::OutIn, n, &mut want, accumulate);
                linear(isa, &x, m, k, WeightSlice::BF16(&w), Some(&paired), n, &mut got, Store::Sums { accumulate });
                assert!(bits(&got) == bits(&want), "{m}x{k}x{n}, accumulate {accumulate}");
            }
        }
        // No copy where the packed bf16 GEMM would not run: too few columns, an exact level.
        let w = vec![0u16; 255 * 8];
        assert!(PairedWeight::new(isa, &w, 255, 8).unwrap().is_none());
        assert!(PairedWeight::new(Isa::Avx512, &w[..8], 1, 8).unwrap().is_none());
    }
}
