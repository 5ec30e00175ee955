//! Attention for many queries as GEMMs: per (head, block of query rows) the scores
//! S = Q·Kᵀ/√D come from the packed GEMM, are biased, masked and softmaxed row by row,
//! and O = P·V is a second GEMM: prefill and the encoders (750-1500 positions) at the
//! exact levels, and under 256 keys at the bf16 ones, which run longer problems through
//! `attention_bf16.rs`. Single-query decode keeps the streaming kernel.

use rayon::prelude::*;

use super::gemm::gemm;
use super::simd::Isa;
use super::view::{SharedOut, WeightSlice};
use crate::op::WeightLayout;

/// Adds a bias to the scores of (head, query) over keys 0..row.len().
pub type ScoreBias<'a> = &'a (dyn Fn(usize, usize, &mut [f32]) + Sync);

/// One attention problem: per head h, keys/values [keys, D] contiguous.
pub struct Problem<'a> {
    pub queries: usize,
    pub heads: usize,
    pub d: usize,
    /// q [T, H, D]; out [T, H, D].
    pub q: &'a [f32],
    /// K and V rows of head h: [keys, D].
    pub k: &'a (dyn Fn(usize) -> &'a [f32] + Sync),
    pub v: &'a (dyn Fn(usize) -> &'a [f32] + Sync),
    /// Keys query t sees: 0..visible(t).
    pub visible: &'a (dyn Fn(usize) -> usize + Sync),
    pub bias: Option<ScoreBias<'a>>,
}

/// The attention with the tuned query rows per task (`cpu.attention.block_rows`, per
/// causal or bidirectional problem; timed here on first use).
pub fn attention(isa: Isa, p: &Problem, out: &mut [f32]) {
    let (t, h, d) = (p.queries, p.heads, p.d);
    if t * h * d == 0 {
        return;
    }
    // Causal when later queries see more keys.
    let causal = (p.visible)(t - 1) > (p.visible)(0);
    // The fast levels' bf16 products from FAST_MIN_COLUMNS keys on: one fused kernel.
    if super::gemm::bf16_product(isa, (p.visible)(t - 1).max((p.visible)(0))) {
        return super::attention_bf16::attention(isa, p, out);
    }
    let mut scratch = Vec::new();
    super::tune::tune_attention_on_first_use(causal, t, h, |rows| {
        scratch.resize(out.len(), 0.0);
        attention_in_blocks(isa, p, &mut scratch, rows);
    });
    attention_in_blocks(isa, p, out, super::tune::attention_block_rows(causal));
}

/// `attention` with `block` query rows per task.
pub(crate) fn attention_in_blocks(isa: Isa, p: &Problem, out: &mut [f32], block: usize) {
    let (t, h, d) = (p.queries, p.heads, p.d);
    if t * h * d == 0 {
        return;
    }
    let block = block.max(1);
    let scale = 1.0 / (d as f32).sqrt();
    let out_ptr = SharedOut::new(out);
    let tasks: Vec<(usize, usize)> = (0..h).flat_map(|hd| (0..t).step_by(block).map(move |t0| (hd, t0))).collect();
    tasks.par_iter().for_each(|&(hd, t0)| {
        let rows = block.min(t - t0);
        let keys = (t0..t0 + rows).map(|i| (p.visible)(i)).max().unwrap_or(0);
        let mut qb = super::scratch::take(rows * d);
        for r in 0..rows {
            let src = &p.q[((t0 + r) * h + hd) * d..][..d];
            for (dst, &v) in qb[r * d..(r + 1) * d].iter_mut().zip(src) {
                *dst = v * scale;
            }
        }
        let k = &(p.k)(hd)[..keys * d];
        let v = &(p.v)(hd)[..keys * d];
        // The products overwrite their outputs whole (accumulate = false).
        let mut s = super::scratch::take(rows * keys);
        gemm(isa, &qb, rows, d, WeightSlice::F32(k), WeightLayout::OutIn, keys, &mut s, false);
        for (r, row) in s.chunks_mut(keys).enumerate() {
            let seen = (p.visible)(t0 + r);
            if let Some(bias) = p.bias {
                bias(hd, t0 + r, &mut row[..seen]);
            }
            super::vexp::softmax_prefix(isa, row, seen);
        }
        let mut o = super::scratch::take(rows * d);
        gemm(isa, &s, rows, keys, WeightSlice::F32(v), WeightLayout::InOut, d, &mut o, false);
        for (r, orow) in o.chunks(d).enumerate() {
            let base = ((t0 + r) * h + hd) * d;
            for (e, &val) in orow.iter().enumerate() {
                // SAFETY: (query t0 + r, head hd) belongs to this task only.
                unsafe { *out_ptr.at(base + e) = val };
            }
        }
    });
}

/// [T, H, D] -> [H, T, D] (per-head contiguous keys or values).
pub fn head_major(x: &[f32], t: usize, h: usize, d: usize) -> Vec<f32> {
    let mut out = vec![0f32; x.len()];
    for i in 0..t {
        for hd in 0..h {
            out[(hd * t + i) * d..][..d].copy_from_slice(&x[(i * h + hd) * d..][..d]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every block candidate computes the same bits at an exact level, causal (keys
    /// beyond a block's last query masked) and bidirectional with a bias.
    #[test]
    fn every_block_candidate_gives_identical_results() {
        let (t, h, d) = (150, 3, 40);
        let q: Vec<f32> = (0..t * h * d).map(|i| ((i * 7919) % 1013) as f32 / 1013.0 - 0.5).collect();
        let kv: Vec<f32> = (0..h * t * d).map(|i| ((i * 104_729) % 997) as f32 / 997.0 - 0.5).collect();
        let k = |hd: usize| &kv[hd * t * d..(hd + 1) * t * d];
        let causal = |i: usize| i + 1;
        let all = |_: usize| t;
        let bias = |hd: usize, i: usize, row: &mut [f32]| row.iter_mut().enumerate().for_each(|(j, v)| *v += ((hd + i + j) % 5) as f32 * 0.1);
        for (visible, bias) in [(&causal as &(dyn Fn(usize) -> usize + Sync), None), (&all, Some(&bias as ScoreBias))] {
            let p = Problem { queries: t, heads: h, d, q: &q, k: &k, v: &k, visible, bias };
            let mut want = vec![0f32; t * h * d];
            attention_in_blocks(Isa::detect(), &p, &mut want, 64);
            for rows in crate::cpu::tune::ATTENTION_BLOCK_CANDIDATES {
                let mut got = vec![f32::NAN; t * h * d];
                attention_in_blocks(Isa::detect(), &p, &mut got, rows);
                assert!(got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()), "{rows} rows per task differ");
            }
        }
    }
}
