//! Many-row GEMM on AMX tiles (the `Amx` level): out[M, N] (+)= x[M, K] · W with bf16
//! operands and f32 sums (`tdpbf16ps`), the fast precision's arithmetic.
//!
//! Computed transposed, outᵀ = W · xᵀ, so a first-operand tile is 16 weight rows of 32
//! inner indices: for bf16 out-in weights whose rows start cache lines (or, where a row
//! chunk holds few x tiles, any bf16 out-in weights) that is the weights themselves,
//! loaded with the row stride and never packed (others are copied a panel at a time into
//! aligned memory). x is packed once per call into second-operand tiles
//! (16 pair rows of 16 x rows, each a bf16 pair of consecutive inner indices). Each task
//! owns 32 output columns (two weight tiles) and sweeps every row two x tiles at a time
//! into four accumulator tiles, so one weight panel meets all of x from cache.
//! x86-64 only: `cpu/mod.rs` gives other targets a stub whose level is never available.

use rayon::prelude::*;

use super::gemm_bf16_rows::{round_row, widen_row_bf16};
use super::pair_tile::Runs;
use super::store::{Act, Store};
use super::view::{SharedOut, WeightSlice};
use crate::aligned::AlignedVec;
use crate::op::WeightLayout;

/// Rows of a tile, and bf16 inner indices per tile row (64 bytes).
const ROWS: usize = 16;
const TK: usize = 32;
/// Output columns per task: two weight tiles.
const COLS: usize = 2 * ROWS;
/// Most pairs of x tiles per chunk for which a misaligned bf16 weight is still read in
/// place. Measured on an AMX Xeon (2 threads, bf16 3072 x 3072, rows 16 bytes off a line):
/// in place was 1.26-1.56x the copy at 64 rows, 1.15-1.55x at 128 (prefill), about even at
/// 5 pairs a chunk, 0.80-0.92x at 10 (1000 rows from 1536).
const UNALIGNED_IN_PLACE_PAIRS: usize = 4;
/// u16 elements of one packed x tile.
const X_TILE: usize = ROWS * TK;
/// Packed x per row chunk: about half a core's L2.
const X_CHUNK_BYTES: usize = 1 << 20;

/// Whether this CPU has AMX-TILE and AMX-BF16 and the kernel grants this process the
/// tile state (Linux hands it out on request; without the grant the instructions fault).
pub fn available() -> bool {
    static GRANTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *GRANTED.get_or_init(|| {
        #[cfg(target_os = "linux")]
        {
            #[allow(unused_unsafe)]
            // SAFETY: CPUID leaf 7 exists on every x86-64 CPU this code runs on.
            let leaf = unsafe { std::arch::x86_64::__cpuid_count(7, 0) };
            let (amx_bf16, amx_tile) = ((leaf.edx >> 22) & 1 == 1, (leaf.edx >> 24) & 1 == 1);
            if !(amx_bf16 && amx_tile) {
                return false;
            }
            const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
            const XFEATURE_XTILEDATA: libc::c_long = 18;
            // SAFETY: a plain system call with integer arguments.
            unsafe {
                libc::syscall(
                    libc::SYS_arch_prctl,
                    ARCH_REQ_XCOMP_PERM,
                    XFEATURE_XTILEDATA,
                ) == 0
            }
        }
        #[cfg(not(target_os = "linux"))]
        {
            false
        }
    })
}

/// out[M, N] (+)= x[M, K] · W (any weight dtype and layout; bf16 out-in weights with K a
/// multiple of 32 are read in place where their start is aligned or a row chunk holds at
/// most `UNALIGNED_IN_PLACE_PAIRS` pairs of x tiles, others are converted one 32-column
/// panel at a time).
#[allow(clippy::too_many_arguments)]
pub fn gemm(
    x: &[f32],
    m: usize,
    k: usize,
    w: WeightSlice,
    layout: WeightLayout,
    n: usize,
    out: &mut [f32],
    accumulate: bool,
) {
    gemm_in_chunks(x, m, k, w, layout, n, out, &Store::Sums { accumulate }, X_CHUNK_BYTES)
}

/// `Linear`'s product: out = store(x · wᵀ) for out-in weights, the store's bias,
/// activation or gated residual applied as the tiles are written (`store.in_registers()`
/// must give its activation a vector form).
pub(super) fn linear(x: &[f32], m: usize, k: usize, w: WeightSlice, n: usize, out: &mut [f32], store: &Store) {
    gemm_in_chunks(x, m, k, w, WeightLayout::OutIn, n, out, store, X_CHUNK_BYTES)
}

/// The product stored by `store`, with x in row chunks of about `chunk_bytes` packed
/// (results do not depend on it).
#[allow(clippy::too_many_arguments)]
fn gemm_in_chunks(
    x: &[f32],
    m: usize,
    k: usize,
    w: WeightSlice,
    layout: WeightLayout,
    n: usize,
    out: &mut [f32],
    store: &Store,
    chunk_bytes: usize,
) {
    assert!(
        available(),
        "the AMX level is only constructed where the CPU has it"
    );
    assert!(
        x.len() >= m * k && out.len() >= m * n && w.len() >= n * k,
        "gemm bounds"
    );
    store.assert_covers(n);
    let act = store.in_registers().expect("an activation with a vector form");
    let steps = k.div_ceil(TK);
    let pairs = m.div_ceil(2 * ROWS);
    let xpack = pack_x(x, m, k, 2 * pairs, steps);
    // Rows in chunks whose packed x stays in a core's L2 while the weight panels pass by.
    let chunk_pairs = (chunk_bytes / (2 * ROWS * steps * TK * 2)).clamp(1, pairs.max(1));
    // Read in place where each tile row is a cache line of the weight's (K a multiple of
    // 32 and an aligned start), or where a panel serves few x tiles, so a copy would not
    // pay for its split-line reads; other weights are copied a task's panel at a time.
    let direct = match (w, layout) {
        (WeightSlice::BF16(s), WeightLayout::OutIn)
            if k.is_multiple_of(TK) && ((s.as_ptr() as usize).is_multiple_of(64) || chunk_pairs <= UNALIGNED_IN_PLACE_PAIRS) =>
        {
            Some(s)
        }
        _ => None,
    };
    let chunks = pairs.div_ceil(chunk_pairs);
    let blocks = n.div_ceil(COLS);
    let shared = SharedOut::new(out);
    // Chunk-major tasks: a thread's contiguous run of tasks keeps its x chunk.
    (0..chunks * blocks).into_par_iter().for_each_init(
        || (AlignedVec::<u16>::zeroed(0), vec![0f32; 4 * ROWS * ROWS], Vec::<f32>::new()),
        |(panel, tiles, row), task| {
            let (chunk, b) = (task / blocks, task % blocks);
            let n0 = b * COLS;
            let nb = (n - n0).min(COLS);
            // The weight panel: 32 rows of `steps·32` bf16 inner indices.
            let (wp, stride) = match direct {
                Some(s) if nb == COLS => (s[n0 * k..].as_ptr(), k),
                _ => {
                    if panel.len() != COLS * steps * TK {
                        *panel = AlignedVec::zeroed(COLS * steps * TK);
                    }
                    fill_panel(w, layout, k, n, n0, nb, steps * TK, panel, row);
                    (panel.as_ptr(), steps * TK)
                }
            };
            with_tiles(|| {
                for p in chunk * chunk_pairs..((chunk + 1) * chunk_pairs).min(pairs) {
                    // SAFETY: inside `with_tiles`; the panel holds 32 rows of `stride` ≥
                    // steps·32 elements and xpack 2·pairs tiles per step.
                    unsafe {
                        let x0 = (xpack.as_ptr() as *const u16).add(2 * p * steps * X_TILE);
                        tile_block(wp, stride, x0, x0.add(steps * X_TILE), steps, tiles);
                    }
                    store_tiles(tiles, &shared, m, n, 2 * p * ROWS, n0, nb, store, act);
                }
            });
        },
    );
}

/// x [m, k] as tiles [m tile][step][16 pairs][16 rows] of bf16 pairs (one u32 each),
/// zero padded to `tiles` row tiles and `steps·32` inner indices. Each tile row is a cache
/// line of its own: a tile load whose rows straddle lines ran 3x slower.
fn pack_x(x: &[f32], m: usize, k: usize, tiles: usize, steps: usize) -> AlignedVec<u32> {
    let mut packed = AlignedVec::zeroed(tiles * steps * X_TILE / 2);
    packed
        .par_chunks_mut(steps * X_TILE / 2)
        .enumerate()
        .take(m.div_ceil(ROWS))
        // SAFETY: the AMX level implies AVX-512 F and AVX512-BF16; a row tile's steps hold
        // the panel's k/2 pairs of 16 rows.
        .for_each(|(t, dst)| unsafe { super::gemm_avx512::row_pair_panel(x, k, m, t * ROWS, dst) });
    packed
}

/// Weight rows n0..n0+nb as a [32][kp] bf16 panel (missing rows and inner indices 0).
#[allow(clippy::too_many_arguments)]
fn fill_panel(w: WeightSlice, layout: WeightLayout, k: usize, n: usize, n0: usize, nb: usize, kp: usize, panel: &mut [u16], row: &mut Vec<f32>) {
    assert_eq!(panel.len(), COLS * kp, "a weight panel of 32 rows");
    match layout {
        WeightLayout::OutIn => {
            for (j, dst) in panel.chunks_exact_mut(kp).enumerate() {
                if j >= nb {
                    dst.fill(0);
                    continue;
                }
                match w {
                    WeightSlice::BF16(s) => {
                        dst[..k].copy_from_slice(&s[(n0 + j) * k..][..k]);
                        dst[k..].fill(0);
                    }
                    // Rounded from where it lies (no widened copy first).
                    WeightSlice::F32(s) => round_row(&s[(n0 + j) * k..][..k], dst),
                    // Whole blocks (K a multiple of 32) straight to bf16.
                    WeightSlice::Q8_0(_) | WeightSlice::Q4_0(_) if k.is_multiple_of(TK) => {
                        widen_row_bf16(w, (n0 + j) * k, &mut dst[..k]);
                        dst[k..].fill(0);
                    }
                    _ => {
                        row.resize(k, 0.0);
                        w.widen_into((n0 + j) * k, row);
                        round_row(row, dst);
                    }
                }
            }
        }
        WeightLayout::InOut => {
            panel.fill(0);
            row.resize(nb, 0.0);
            let mut bits = [0u16; COLS];
            for kk in 0..k {
                w.widen_into(kk * n + n0, row);
                round_row(row, &mut bits);
                for (j, &b) in bits[..nb].iter().enumerate() {
                    panel[j * kp + kk] = b;
                }
            }
        }
    }
}

/// Writes the four accumulator tiles into `out` by `store`: tile t = 2·(weight tile) +
/// (x tile) holds outᵀ, element [j][i] being out[m0 + 16·xt + i][n0 + 16·wt + j].
#[allow(clippy::too_many_arguments)]
fn store_tiles(tiles: &[f32], out: &SharedOut, m: usize, n: usize, m0: usize, n0: usize, nb: usize, store: &Store, act: Act) {
    for t in 0..4 {
        let (wt, xt) = (t / 2, t % 2);
        let (r0, c0) = (m0 + xt * ROWS, n0 + wt * ROWS);
        let rows = ROWS.min(m.saturating_sub(r0));
        let cols = ROWS.min(nb.saturating_sub(wt * ROWS));
        if rows == 0 || cols == 0 {
            continue;
        }
        // SAFETY: AVX-512 F (the AMX level implies it); rows r0..r0 + rows and columns
        // c0..c0 + cols lie in `out` (r0 + rows ≤ m, c0 + cols ≤ n0 + nb ≤ n) and belong
        // to this task alone; the bias and gate cover n columns (asserted by the caller).
        unsafe { store_transposed(&tiles[t * ROWS * ROWS..][..ROWS * ROWS], out.ptr(r0 * n + c0), n, rows, c0, cols, store, act) };
    }
}

/// Rows 0..rows of `out` (row stride `ld`, from column c0) = the first `cols` entries of
/// the 16x16 `tile`'s columns 0..rows, written by `store`: four rounds of two-source
/// permutes swap ever smaller blocks across the diagonal.
/// # Safety
/// AVX-512 F; `dst` starts `rows` rows of `cols` writable f32 at stride `ld`; the store's
/// bias and gate cover columns c0..c0 + cols.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f")]
unsafe fn store_transposed(tile: &[f32], dst: *mut f32, ld: usize, rows: usize, c0: usize, cols: usize, store: &Store, act: Act) {
    use std::arch::x86_64::*;
    assert!(tile.len() >= ROWS * ROWS && rows <= ROWS && cols <= ROWS);
    let mut r = [_mm512_setzero_ps(); ROWS];
    for (i, v) in r.iter_mut().enumerate() {
        *v = _mm512_loadu_ps(tile.as_ptr().add(i * ROWS));
    }
    for (round, (lo, hi)) in TRANSPOSE.iter().enumerate() {
        let g = 8 >> round;
        let (lo, hi) = (
            _mm512_loadu_si512(lo.as_ptr() as *const _),
            _mm512_loadu_si512(hi.as_ptr() as *const _),
        );
        for i in 0..ROWS {
            if i & g != 0 {
                continue;
            }
            let (a, b) = (r[i], r[i + g]);
            r[i] = _mm512_permutex2var_ps(a, lo, b);
            r[i + g] = _mm512_permutex2var_ps(a, hi, b);
        }
    }
    let mask = super::vexp::x86::tail_mask(cols);
    for (i, v) in r.iter().enumerate().take(rows) {
        super::store::x86::store16(store, act, c0, mask, *v, dst.add(i * ld));
    }
}

/// Per round (block sizes 8, 4, 2, 1) the lanes of the new rows i and i + g: within each
/// 2g-lane block, row i takes the first g lanes of a then of b, row i + g the second g.
const TRANSPOSE: [([u32; 16], [u32; 16]); 4] = {
    let mut out = [([0u32; 16], [0u32; 16]); 4];
    let mut round = 0;
    while round < 4 {
        let g = 8 >> round;
        let mut l = 0;
        while l < 16 {
            let (base, off) = (l / (2 * g) * (2 * g), l % (2 * g));
            let (src, o) = if off < g { (0, off) } else { (16, off - g) };
            out[round].0[l] = (src + base + o) as u32;
            out[round].1[l] = (src + base + g + o) as u32;
            l += 1;
        }
        round += 1;
    }
    out
};

/// Palette 1 with all eight tiles 16 rows of 64 bytes.
#[repr(C, align(64))]
struct TileConfig([u8; 64]);

const CONFIG: TileConfig = {
    let mut c = [0u8; 64];
    c[0] = 1;
    let mut t = 0;
    while t < 8 {
        c[16 + 2 * t] = 64;
        c[48 + t] = ROWS as u8;
        t += 1;
    }
    TileConfig(c)
};

/// # Safety
/// AMX must be granted (`available`).
#[inline]
unsafe fn load_config() {
    std::arch::asm!("ldtilecfg [{}]", in(reg) CONFIG.0.as_ptr(), options(nostack, readonly, preserves_flags));
}

/// Returns the tile registers to their initial state (cheaper context switches).
/// # Safety
/// AMX must be granted.
#[inline]
unsafe fn release() {
    std::arch::asm!("tilerelease", options(nostack, nomem, preserves_flags));
}

/// tiles[0..4] = W rows 0..32 (two tiles) · the x tiles at x0, x1, over `steps` steps.
/// # Safety
/// The tile config is loaded; `w` holds 32 rows of `stride` ≥ 32·steps bf16, `x0`, `x1`
/// `steps` packed tiles each; `tiles` 4·256 f32.
unsafe fn tile_block(
    w: *const u16,
    stride: usize,
    x0: *const u16,
    x1: *const u16,
    steps: usize,
    tiles: &mut [f32],
) {
    use std::arch::asm;
    assert!(tiles.len() >= 4 * ROWS * ROWS);
    asm!(
        "tilezero tmm0",
        "tilezero tmm1",
        "tilezero tmm2",
        "tilezero tmm3",
        options(nostack, nomem, preserves_flags)
    );
    let w1 = w.add(ROWS * stride);
    for s in 0..steps {
        // Each product issues as soon as its two tiles are in, so the later loads
        // overlap the first products (1.03x-1.09x over four loads first).
        asm!(
            "tileloadd tmm4, [{w0} + {ws}]",
            "tileloadd tmm6, [{x0} + {xs}]",
            "tdpbf16ps tmm0, tmm4, tmm6",
            "tileloadd tmm7, [{x1} + {xs}]",
            "tdpbf16ps tmm1, tmm4, tmm7",
            "tileloadd tmm5, [{w1} + {ws}]",
            "tdpbf16ps tmm2, tmm5, tmm6",
            "tdpbf16ps tmm3, tmm5, tmm7",
            w0 = in(reg) w.add(s * TK),
            w1 = in(reg) w1.add(s * TK),
            ws = in(reg) stride * 2,
            x0 = in(reg) x0.add(s * X_TILE),
            x1 = in(reg) x1.add(s * X_TILE),
            xs = in(reg) 4 * ROWS,
            options(nostack, readonly, preserves_flags),
        );
    }
    let t = tiles.as_mut_ptr();
    asm!(
        "tilestored [{t0} + {s}], tmm0",
        "tilestored [{t1} + {s}], tmm1",
        "tilestored [{t2} + {s}], tmm2",
        "tilestored [{t3} + {s}], tmm3",
        t0 = in(reg) t,
        t1 = in(reg) t.add(ROWS * ROWS),
        t2 = in(reg) t.add(2 * ROWS * ROWS),
        t3 = in(reg) t.add(3 * ROWS * ROWS),
        s = in(reg) 4 * ROWS,
        options(nostack, preserves_flags),
    );
}

/// Runs `f` with the tile state configured for `tile_block`, `rows_product` and the peak
/// probe (released after, also when `f` panics). `f` must not run rayon work: a task stolen meanwhile could release the
/// state under it.
pub(super) fn with_tiles<R>(f: impl FnOnce() -> R) -> R {
    struct Release;
    impl Drop for Release {
        fn drop(&mut self) {
            // SAFETY: constructed only after the grant was asserted.
            unsafe { release() };
        }
    }
    assert!(available(), "the AMX level is only constructed where the CPU has it");
    // SAFETY: AMX was granted (asserted above).
    unsafe { load_config() };
    let _release = Release;
    f()
}

/// out[16][64] = a · b for rows already in pairs (the attention's queries and
/// probabilities, a convolution's windows): a 16 rows, `lda` u32 apart, each read as
/// `runs` says (runs of whole 16-pair steps); b four panels [runs' pairs][16] of pairs,
/// `stride` u32 apart; out 16 rows of 64 f32, `ldo` apart. No transpose: a's rows are the
/// first operand's, so the sums lie as out does.
/// # Safety
/// Inside `with_tiles`; the pointers hold what is said above.
pub(super) unsafe fn rows_product(a: *const u32, lda: usize, runs: Runs, b: *const u32, stride: usize, out: *mut f32, ldo: usize) {
    use std::arch::asm;
    debug_assert!(runs.pairs.is_multiple_of(ROWS), "runs of whole tile steps");
    asm!("tilezero tmm0", "tilezero tmm1", "tilezero tmm2", "tilezero tmm3", options(nostack, nomem, preserves_flags));
    let mut b = b;
    for run in 0..runs.count {
        let a = a.add(run * runs.step);
        for s in (0..runs.pairs).step_by(ROWS) {
            asm!(
                "tileloadd tmm4, [{a} + {lda}]",
                "tileloadd tmm5, [{b0} + {bs}]",
                "tdpbf16ps tmm0, tmm4, tmm5",
                "tileloadd tmm6, [{b1} + {bs}]",
                "tdpbf16ps tmm1, tmm4, tmm6",
                "tileloadd tmm7, [{b2} + {bs}]",
                "tdpbf16ps tmm2, tmm4, tmm7",
                "tileloadd tmm5, [{b3} + {bs}]",
                "tdpbf16ps tmm3, tmm4, tmm5",
                a = in(reg) a.add(s),
                lda = in(reg) lda * 4,
                b0 = in(reg) b,
                b1 = in(reg) b.add(stride),
                b2 = in(reg) b.add(2 * stride),
                b3 = in(reg) b.add(3 * stride),
                bs = in(reg) 4 * ROWS,
                options(nostack, readonly, preserves_flags),
            );
            b = b.add(ROWS * ROWS);
        }
    }
    asm!(
        "tilestored [{o0} + {s}], tmm0",
        "tilestored [{o1} + {s}], tmm1",
        "tilestored [{o2} + {s}], tmm2",
        "tilestored [{o3} + {s}], tmm3",
        o0 = in(reg) out,
        o1 = in(reg) out.add(ROWS),
        o2 = in(reg) out.add(2 * ROWS),
        o3 = in(reg) out.add(3 * ROWS),
        s = in(reg) ldo * 4,
        options(nostack, preserves_flags),
    );
}

/// The peak probe's loop: `iters` rounds of four independent `tdpbf16ps` on register
/// tiles (16·16·32 multiply-adds each). Returns one accumulator element.
pub fn peak_loop(iters: usize) -> f32 {
    // Small values keep the sums finite for any iteration count.
    let ones = vec![0x3380u16; X_TILE];
    let mut out = vec![0f32; ROWS * ROWS];
    // SAFETY: inside `with_tiles` (which checks the grant); the sources hold one tile
    // each, `out` one f32 tile.
    with_tiles(|| unsafe {
        use std::arch::asm;
        asm!(
            "tilezero tmm0",
            "tilezero tmm1",
            "tilezero tmm2",
            "tilezero tmm3",
            options(nostack, nomem, preserves_flags)
        );
        asm!("tileloadd tmm4, [{p} + {s}]", "tileloadd tmm5, [{p} + {s}]", p = in(reg) ones.as_ptr(), s = in(reg) 64usize, options(nostack, readonly, preserves_flags));
        for _ in 0..iters {
            asm!(
                "tdpbf16ps tmm0, tmm4, tmm5",
                "tdpbf16ps tmm1, tmm4, tmm5",
                "tdpbf16ps tmm2, tmm4, tmm5",
                "tdpbf16ps tmm3, tmm4, tmm5",
                options(nostack, nomem, preserves_flags),
            );
        }
        asm!("tilestored [{p} + {s}], tmm3", p = in(reg) out.as_mut_ptr(), s = in(reg) 64usize, options(nostack, preserves_flags));
    });
    out[0]
}

/// Multiply-adds per `peak_loop` round.
pub const PEAK_FLOPS_PER_ITER: f64 = 4.0 * (ROWS * ROWS * TK) as f64 * 2.0;

#[cfg(test)]
mod tests {
    use super::*;

    /// Against an f64 product of the bf16-rounded operands, with row chunks of one and
    /// of two tile pairs, weights read in place and through panels; partial row and column
    /// tiles, and a K that ends inside a step.
    #[test]
    fn chunked_products_match_the_rounded_reference() {
        if !available() {
            println!("SKIPPED: no AMX on this CPU");
            return;
        }
        let round = |v: f32| f32::from_bits(super::super::gemm_avx512::bf16(v) << 16) as f64;
        for (m, k, n) in [(70, 128, 96), (37, 100, 40), (70, 128, 40), (170, 128, 40)] {
            let x: Vec<f32> = (0..m * k)
                .map(|i| ((i * 7919) % 1013) as f32 / 1013.0 - 0.5)
                .collect();
            let wf: Vec<f32> = (0..n * k)
                .map(|i| ((i * 104_729) % 997) as f32 / 997.0 - 0.5)
                .collect();
            let wb: Vec<u16> = wf
                .iter()
                .map(|&v| super::super::gemm_avx512::bf16(v) as u16)
                .collect();
            let mut want = vec![0f64; m * n];
            for r in 0..m {
                for c in 0..n {
                    want[r * n + c] = (0..k)
                        .map(|i| round(x[r * k + i]) * round(wf[c * k + i]))
                        .sum();
                }
            }
            // bf16 weights on a cache line (read in place where K allows) and 16 bytes past one
            // (in place where a chunk holds at most `UNALIGNED_IN_PLACE_PAIRS` tile pairs,
            // else copied a panel at a time: 170 rows in one chunk), and f32 weights
            // (converted a panel at a time).
            let (mut on_line, mut past_line) = (AlignedVec::<u16>::zeroed(wb.len()), AlignedVec::<u16>::zeroed(wb.len() + 8));
            on_line.copy_from_slice(&wb);
            past_line[8..].copy_from_slice(&wb);
            let pair_bytes = 2 * ROWS * k * 2;
            for w in [WeightSlice::BF16(&on_line), WeightSlice::BF16(&past_line[8..]), WeightSlice::F32(&wf)] {
                for chunk in [pair_bytes, 2 * pair_bytes, X_CHUNK_BYTES] {
                    let mut out = vec![0f32; m * n];
                    gemm_in_chunks(&x, m, k, w, WeightLayout::OutIn, n, &mut out, &Store::Sums { accumulate: false }, chunk);
                    for (i, (&g, &e)) in out.iter().zip(&want).enumerate() {
                        assert!(
                            (g as f64 - e).abs() <= 1e-4 * (1.0 + e.abs()),
                            "chunk {chunk} at {i}: {g} vs {e}"
                        );
                    }
                }
            }
            // Q8_0 and Q4_0 weights (widened to bf16 a panel at a time), against the product
            // of their f32 values as `widen_into` gives them.
            if !k.is_multiple_of(32) {
                continue;
            }
            for dtype in [crate::DType::Q8_0, crate::DType::Q4_0] {
                let bytes = crate::dtype::f32_to_bytes(&wf, dtype);
                let w = match dtype {
                    crate::DType::Q8_0 => WeightSlice::Q8_0(&bytes),
                    _ => WeightSlice::Q4_0(&bytes),
                };
                let mut wq = vec![0f32; n * k];
                w.widen_into(0, &mut wq);
                let mut out = vec![0f32; m * n];
                gemm_in_chunks(&x, m, k, w, WeightLayout::OutIn, n, &mut out, &Store::Sums { accumulate: false }, X_CHUNK_BYTES);
                for r in 0..m {
                    for c in 0..n {
                        let e: f64 = (0..k).map(|i| round(x[r * k + i]) * round(wq[c * k + i])).sum();
                        let g = out[r * n + c] as f64;
                        assert!((g - e).abs() <= 1e-4 * (1.0 + e.abs()), "{dtype} at {r}, {c}: {g} vs {e}");
                    }
                }
            }
        }
    }

    /// Whole and partial tiles, stored and added: each written element is the tile's
    /// transposed one, and nothing past the rows and columns changes.
    #[test]
    fn tiles_store_transposed() {
        if !crate::cpu::Isa::Avx512.available() {
            println!("SKIPPED: no AVX-512 on this CPU");
            return;
        }
        let tile: Vec<f32> = (0..256).map(|v| v as f32).collect();
        for accumulate in [false, true] {
            for (rows, cols) in [(16usize, 16usize), (5, 7), (16, 1), (1, 16)] {
                let ld = 19;
                let mut out = vec![1f32; 16 * ld];
                let store = Store::Sums { accumulate };
                // SAFETY: AVX-512 checked; `out` holds 16 rows at stride 19.
                unsafe { store_transposed(&tile, out.as_mut_ptr(), ld, rows, 0, cols, &store, Act::None) };
                for i in 0..16 {
                    for j in 0..ld {
                        let want = match i < rows && j < cols {
                            true => (j * 16 + i) as f32 + if accumulate { 1.0 } else { 0.0 },
                            false => 1.0,
                        };
                        assert_eq!(out[i * ld + j], want, "{rows} x {cols}: row {i} column {j}");
                    }
                }
            }
        }
    }

    /// `linear`'s store applied to the tiles gives the bits of the product stored as sums,
    /// then the bias and activation or the gated residual in passes (`vexp::act_row`,
    /// `linear::gated_add`): every store kind, over partial row and column tiles.
    #[test]
    fn the_fused_store_matches_the_store_in_passes() {
        if !available() {
            println!("SKIPPED: no AMX on this CPU");
            return;
        }
        use crate::cpu::pair_tile::test_operands::values;
        use crate::op::UnaryFn;
        let isa = crate::cpu::Isa::Amx;
        let (m, k, n) = (70, 96, 100);
        let x = values(m * k, 1, 2.0);
        let w: Vec<u16> = values(n * k, 2, 2.0).iter().map(|&v| half::bf16::from_f32(v).to_bits()).collect();
        let (bias, gate) = (values(n, 3, 4.0), values(n, 4, 2.0));
        let mut sums = vec![0f32; m * n];
        gemm(&x, m, k, WeightSlice::BF16(&w), WeightLayout::OutIn, n, &mut sums, false);
        let stores = [
            Store::Act { bias: None, act: None },
            Store::Act { bias: Some(&bias), act: None },
            Store::Act { bias: Some(&bias), act: Some(UnaryFn::GeluTanh) },
            Store::Act { bias: None, act: Some(UnaryFn::Silu) },
            Store::Act { bias: Some(&bias), act: Some(UnaryFn::GeluErf) },
            Store::GatedAdd { bias: Some(&bias), gate: &gate },
            Store::GatedAdd { bias: None, gate: &gate },
        ];
        for (s, store) in stores.iter().enumerate() {
            let init = values(m * n, 5 + s, 3.0);
            let (mut got, mut want) = (init.clone(), init);
            linear(&x, m, k, WeightSlice::BF16(&w), n, &mut got, store);
            for (row, sums) in want.chunks_mut(n).zip(sums.chunks(n)) {
                match *store {
                    Store::Act { bias, act } => {
                        row.copy_from_slice(sums);
                        crate::cpu::vexp::act_row(isa, act, bias, row);
                    }
                    Store::GatedAdd { bias, gate } => crate::cpu::linear::gated_add(row, sums, gate, bias),
                    Store::Sums { .. } => unreachable!(),
                }
            }
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert!(bits(&got) == bits(&want), "store {s}");
        }
    }
}
