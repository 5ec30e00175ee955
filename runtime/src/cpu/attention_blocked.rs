//! Attention for many queries as GEMMs: per (head, block of query rows) the scores
//! S = Q·Kᵀ/√D come from the packed GEMM, are biased, masked and softmaxed row by row,
//! and O = P·V is a second GEMM. Encoders (1500 bidirectional positions) and prefill spend
//! most of their attention time here; single-query decode keeps the streaming kernel.

use rayon::prelude::*;

use super::gemm::gemm;
use super::simd::Isa;
use super::view::{SharedOut, WeightSlice};
use crate::op::WeightLayout;

/// Query rows per task.
const BLOCK: usize = 64;

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

pub fn attention(isa: Isa, p: &Problem, out: &mut [f32]) {
    let (t, h, d) = (p.queries, p.heads, p.d);
    if t * h * d == 0 {
        return;
    }
    let scale = 1.0 / (d as f32).sqrt();
    let out_ptr = SharedOut::new(out);
    let tasks: Vec<(usize, usize)> = (0..h).flat_map(|hd| (0..t).step_by(BLOCK).map(move |t0| (hd, t0))).collect();
    tasks.par_iter().for_each(|&(hd, t0)| {
        let rows = BLOCK.min(t - t0);
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
        for buf in [qb, s, o] {
            super::scratch::give(buf);
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
