//! The codec encoder's row-wise ops: GLU, FiLM, GroupNorm over time, the residual-VQ
//! nearest-code search and attention with WavLM's gated relative position bias.

use rayon::prelude::*;

use super::attention_blocked::{attention as blocked, head_major, Problem};
use super::simd::{axpy_f32, dot_f32, Isa};
use super::view::WeightSlice;

#[inline(always)]
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// out = x[:, :F] · sigmoid(x[:, F:]); x [R, 2F], out [R, F].
pub fn glu(x: &[f32], out: &mut [f32], f: usize) {
    if f == 0 {
        return;
    }
    out.par_chunks_mut(f).zip(x.par_chunks(2 * f)).for_each(|(o, x)| {
        let (a, g) = x.split_at(f);
        for ((o, &a), &g) in o.iter_mut().zip(a).zip(g) {
            *o = a * sigmoid(g);
        }
    });
}

/// out = (1 + s·tanh(p[:, :C])) · x + p[:, C:], in place when `x` is None (out holds x).
pub fn film(x: Option<&[f32]>, p: &[f32], out: &mut [f32], c: usize, s: f32) {
    if c == 0 {
        return;
    }
    out.par_chunks_mut(c).zip(p.par_chunks(2 * c)).enumerate().for_each(|(r, (o, p))| {
        let (dg, beta) = p.split_at(c);
        for j in 0..c {
            let xv = x.map_or(o[j], |x| x[r * c + j]);
            o[j] = (1.0 + s * dg[j].tanh()) * xv + beta[j];
        }
    });
}

/// GroupNorm over x [B, T, C]: statistics per (batch, group) over T frames × C/groups
/// channels (f64 sums, biased variance), then per-channel affine.
#[allow(clippy::too_many_arguments)]
pub fn group_norm(x: &[f32], weight: WeightSlice, bias: WeightSlice, out: &mut [f32], t: usize, c: usize, groups: usize, eps: f32) {
    let batch = x.len().checked_div(t * c).unwrap_or(0);
    let cg = c.checked_div(groups).unwrap_or(0);
    if batch == 0 || cg == 0 {
        return;
    }
    let n = (t * cg) as f64;
    // Per-channel means and reciprocal deviations of each batch item, every channel
    // repeating its group's.
    let mut mean = vec![0f32; batch * c];
    let mut rstd = vec![0f32; batch * c];
    for b in 0..batch {
        let rows = &x[b * t * c..][..t * c];
        let per_group = |sums: Vec<f64>| -> Vec<f64> { sums.chunks(cg).map(|g| g.iter().sum::<f64>()).collect() };
        let group_mean: Vec<f64> = per_group(channel_sums(rows, c, |_, v| v as f64)).into_iter().map(|s| s / n).collect();
        let group_var: Vec<f64> = per_group(channel_sums(rows, c, |j, v| (v as f64 - group_mean[j / cg]).powi(2))).into_iter().map(|s| s / n).collect();
        for j in 0..c {
            mean[b * c + j] = group_mean[j / cg] as f32;
            rstd[b * c + j] = (1.0 / (group_var[j / cg] + eps as f64).sqrt()) as f32;
        }
    }
    let (w, bv): (Vec<f32>, Vec<f32>) = (0..c).map(|j| (weight.get(j), bias.get(j))).unzip();
    out.par_chunks_mut(c).zip(x.par_chunks(c)).enumerate().for_each(|(row, (o, x))| {
        let b = row / t;
        let (mean, rstd) = (&mean[b * c..][..c], &rstd[b * c..][..c]);
        for j in 0..c {
            o[j] = ((x[j] - mean[j]) * rstd[j]) * w[j] + bv[j];
        }
    });
}

/// Σ over the rows of `rows` [T, C] of term(channel, value), per channel, in f64. Rows are
/// read in order (a strided walk per channel misses the cache on every frame) in fixed
/// blocks summed in order, so the result does not depend on the thread count.
fn channel_sums(rows: &[f32], c: usize, term: impl Fn(usize, f32) -> f64 + Sync) -> Vec<f64> {
    const BLOCK_ROWS: usize = 256;
    let partial: Vec<Vec<f64>> = rows
        .par_chunks(BLOCK_ROWS * c)
        .map(|block| {
            let mut sums = vec![0f64; c];
            for row in block.chunks_exact(c) {
                for (j, (s, &v)) in sums.iter_mut().zip(row).enumerate() {
                    *s += term(j, v);
                }
            }
            sums
        })
        .collect();
    let mut total = vec![0f64; c];
    for p in partial {
        for (t, v) in total.iter_mut().zip(p) {
            *t += v;
        }
    }
    total
}

/// Residual VQ search of every row of x [N, D] through codebooks [L, K, D]:
/// codes [N, L], quantized [N, D] = Σ of the chosen code vectors.
#[allow(clippy::too_many_arguments)]
pub fn rvq_encode(isa: Isa, x: &[f32], d: usize, books: WeightSlice, levels: usize, k: usize, codes: &mut [u32], quantized: &mut [f32]) {
    if d == 0 || levels == 0 {
        return;
    }
    let mut e = vec![0f32; levels * k * d];
    books.widen_into(0, &mut e);
    let norms: Vec<f32> = e.par_chunks(d).map(|row| dot_f32(isa, row, row)).collect();
    codes.par_chunks_mut(levels).zip(quantized.par_chunks_mut(d)).zip(x.par_chunks(d)).for_each(|((c, q), xr)| {
        let mut r = xr.to_vec();
        q.fill(0.0);
        for (l, code) in c.iter_mut().enumerate() {
            let rr = dot_f32(isa, &r, &r);
            let mut best = (f32::INFINITY, 0usize);
            for i in 0..k {
                let row = &e[(l * k + i) * d..][..d];
                // The reference's expanded distance, clamped as it clamps before its sqrt.
                let dist = (rr + norms[l * k + i] - 2.0 * dot_f32(isa, &r, row)).max(1e-8);
                if dist < best.0 {
                    best = (dist, i);
                }
            }
            let chosen = &e[(l * k + best.1) * d..][..d];
            for ((rv, qv), &ev) in r.iter_mut().zip(q.iter_mut()).zip(chosen) {
                *rv -= ev;
                *qv += ev;
            }
            *code = best.1 as u32;
        }
    });
}

/// Shapes of a `RelPosAttention`: q, k, v [T, H, D].
#[derive(Clone, Copy)]
pub struct RelPosShape {
    pub t: usize,
    pub heads: usize,
    pub d: usize,
}

/// softmax(q·kᵀ/√D + g·rel) · v per (query, head); g from the 8 gate logits (see `Op`).
#[allow(clippy::too_many_arguments)]
pub fn rel_pos_attention(isa: Isa, q: &[f32], k: &[f32], v: &[f32], gate: &[f32], gate_const: &[f32], rel: &[f32], out: &mut [f32], s: RelPosShape) {
    let (t, h, d) = (s.t, s.heads, s.d);
    if t * h * d == 0 {
        return;
    }
    let gate_of = |row: usize, hd: usize| -> f32 {
        let z = &gate[row * 8..][..8];
        let ga = sigmoid(z[0] + z[1] + z[2] + z[3]);
        let gb = sigmoid(z[4] + z[5] + z[6] + z[7]);
        ga * (gb * gate_const[hd] - 1.0) + 2.0
    };
    if t >= super::attention::BLOCKED_FROM {
        let (kh, vh) = (head_major(k, t, h, d), head_major(v, t, h, d));
        let keys = |hd: usize| &kh[hd * t * d..(hd + 1) * t * d];
        let values = |hd: usize| &vh[hd * t * d..(hd + 1) * t * d];
        let bias = |hd: usize, i: usize, row: &mut [f32]| {
            let g = gate_of(i * h + hd, hd);
            let rel_row = &rel[hd * (2 * t - 1) + t - 1 - i..][..t];
            for (x, &b) in row.iter_mut().zip(rel_row) {
                *x += g * b;
            }
        };
        let p = Problem { queries: t, heads: h, d, q, k: &keys, v: &values, visible: &|_| t, bias: Some(&bias) };
        return blocked(isa, &p, out);
    }
    let scale = 1.0 / (d as f32).sqrt();
    out.par_chunks_mut(d).enumerate().for_each_init(Vec::new, |scores: &mut Vec<f32>, (row, o)| {
        let (i, hd) = (row / h, row % h);
        let g = gate_of(row, hd);
        let qv = &q[row * d..][..d];
        let rel_row = &rel[hd * (2 * t - 1)..][..2 * t - 1];
        scores.clear();
        scores.extend((0..t).map(|j| dot_f32(isa, qv, &k[(j * h + hd) * d..][..d]) * scale + g * rel_row[j + t - 1 - i]));
        let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0f32;
        for sc in scores.iter_mut() {
            *sc = (*sc - max).exp();
            sum += *sc;
        }
        o.fill(0.0);
        for (j, &p) in scores.iter().enumerate() {
            axpy_f32(isa, o, p / sum, &v[(j * h + hd) * d..][..d]);
        }
    });
}
