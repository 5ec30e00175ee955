//! The fast precision's GEMM with out-in weights on the AVX512-BF16 levels, on the 6 x 64
//! pair tile (`pair_tile.rs`): out[M, N] (+)= x[M, K] · Wᵀ. x is rounded once into rows of
//! bf16 pairs, which the tile broadcasts from where they lie; the weights are rounded into
//! the tile's pair panels once per call. The packed GEMM (`gemm_bf16.rs`) interleaves x
//! into row panels and sums per 64-pair sub-block through a buffer; on the codec flow's
//! 1000-row linears this ran them 1.04x-1.18x faster (the gated 6144 -> 1536 one 1.10x).
//! Up to a few hundred rows, bf16 and 8-bit weights take the rows product
//! (`gemm_bf16_rows.rs`) instead.

use std::cell::RefCell;

use rayon::prelude::*;

use super::pair_tile::{round_pairs, sweep, weight_pairs, Rows, Runs};
use super::simd::Isa;
use super::view::{SharedOut, WeightSlice};

/// The largest x-pairs buffer a thread keeps between calls (32 MiB); larger ones are freed.
const KEPT_PAIRS: usize = 8 << 20;

thread_local! {
    /// The last product's x pairs, kept: fresh pages cost a fault and a clear each call.
    static ROWS: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
}

/// out[M, N] (+)= x[M, K] · Wᵀ for out-in weights `w` [N, K] of any dtype (widened, then
/// rounded to bf16); `isa` must have bf16 dot products.
#[allow(clippy::too_many_arguments)]
pub(super) fn gemm(isa: Isa, x: &[f32], m: usize, k: usize, w: WeightSlice, n: usize, out: &mut [f32], accumulate: bool) {
    assert!(isa.bf16_dot(), "the pair-tile GEMM needs AVX512-BF16, not {}", isa.key());
    assert!(x.len() >= m * k && out.len() >= m * n && w.len() >= n * k, "gemm operands for {m} x {k} x {n}");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            out[..m * n].fill(0.0);
        }
        return;
    }
    // Pairs per row: whole 16-pair chunks, zero past K.
    let kp = k.div_ceil(32) * 16;
    let mut rows = ROWS.with(|r| std::mem::take(&mut *r.borrow_mut()));
    if rows.len() < m * kp {
        // Fresh zeroed pages (calloc), not a memset over the pages a resize would fault in.
        rows = vec![0; m * kp];
    }
    rows[..m * kp].par_chunks_mut(kp).zip(x[..m * k].par_chunks(k)).for_each(|(dst, src)| round_pairs(src, dst));
    let weights = weight_pairs(w, n, k);
    let shared = SharedOut::new(out);
    let a = Rows { input: &rows[..m * kp], batches: 1, per_batch: m * kp, count: m, step: kp, runs: Runs::plain(k.div_ceil(2)) };
    sweep(&a, &weights, n, |_, i, c0, sums| {
        // SAFETY: `sweep` hands each (row, column group) to one task only; in bounds
        // (asserted above).
        let dst = unsafe { shared.slice(i * n + c0, sums.len()) };
        if accumulate {
            dst.iter_mut().zip(sums).for_each(|(d, s)| *d += s);
        } else {
            dst.copy_from_slice(sums);
        }
    });
    if rows.len() <= KEPT_PAIRS {
        ROWS.with(|r| *r.borrow_mut() = rows);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against f64 sums of the bf16-rounded operands (only the f32 sums' order differs): an
    /// odd K, a partial column group and row panel, f32 and bf16 weights, the accumulate
    /// path; and every split into tasks gives the same bits.
    #[test]
    fn matches_the_rounded_sums_and_ignores_the_task_split() {
        if !Isa::Avx512Bf16.available() {
            return eprintln!("skipped avx512bf16: this CPU lacks it");
        }
        let (m, k, n) = (53usize, 301usize, 130usize);
        let x: Vec<f32> = (0..m * k).map(|i| ((i * 7919 % 1013) as f32 - 506.0) / 331.0).collect();
        let wf: Vec<f32> = (0..n * k).map(|i| ((i * 104_729 % 997) as f32 - 498.0) / 401.0).collect();
        let wb: Vec<u16> = wf.iter().map(|&v| half::bf16::from_f32(v).to_bits()).collect();
        let r = |v: f32| half::bf16::from_f32(v).to_f64();
        for w in [WeightSlice::F32(&wf), WeightSlice::BF16(&wb)] {
            let before: Vec<f32> = (0..m * n).map(|i| (i % 7) as f32 - 3.0).collect();
            let mut out = before.clone();
            gemm(Isa::Avx512Bf16, &x, m, k, w, n, &mut out, true);
            for i in 0..m {
                for c in 0..n {
                    let want = before[i * n + c] as f64 + (0..k).map(|j| r(x[i * k + j]) * r(wf[c * k + j])).sum::<f64>();
                    let got = out[i * n + c] as f64;
                    assert!((got - want).abs() <= 1e-4 * (1.0 + want.abs()), "row {i} column {c}: {got} vs {want}");
                }
            }
            let mut stored = vec![f32::NAN; m * n];
            gemm(Isa::Avx512Bf16, &x, m, k, w, n, &mut stored, false);
            for threads in [1, 3] {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                let mut again = vec![f32::NAN; m * n];
                pool.install(|| gemm(Isa::Avx512Bf16, &x, m, k, w, n, &mut again, false));
                assert!(again.iter().zip(&stored).all(|(a, b)| a.to_bits() == b.to_bits()), "{threads} threads differ");
            }
            let one_row = &mut vec![0f32; n];
            gemm(Isa::Avx512Bf16, &x[7 * k..8 * k], 1, k, w, n, one_row, false);
            assert!(one_row.iter().zip(&stored[7 * n..8 * n]).all(|(a, b)| a.to_bits() == b.to_bits()), "a row alone differs");
        }
    }
}
