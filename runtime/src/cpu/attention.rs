//! KV-cache append and grouped-query attention (one or many queries, causal or not).

use rayon::prelude::*;

use super::simd::{axpy_f32, dot_f32, Isa};
use crate::{Error, Result};

/// k, v [T, G, D] -> caches [G, capacity, D] at rows positions[t]; K rotated with the
/// RoPE table [P, D] (cos | sin) when one is given.
#[allow(clippy::too_many_arguments)]
pub fn kv_append(k: &[f32], v: &[f32], positions: &[u32], kv_heads: usize, capacity: usize, k_cache: &mut [f32], v_cache: &mut [f32], rope: Option<&[f32]>) -> Result<()> {
    let t = positions.len();
    if t == 0 || kv_heads == 0 {
        return Ok(());
    }
    let d = k.len() / (t * kv_heads);
    for (i, &p) in positions.iter().enumerate() {
        let p = p as usize;
        if p >= capacity {
            return Err(Error::invalid("kv_append", format!("position {p} of row {i} is outside the cache of {capacity} positions")));
        }
        if let Some(table) = rope {
            let rows = table.len() / d.max(1);
            if p >= rows {
                return Err(Error::invalid("kv_append", format!("position {p} of row {i} is outside the RoPE table of {rows} positions")));
            }
        }
    }
    // Each head's slice of the caches is its own: heads in parallel for a prompt or a
    // window (a decode step's one row stays on this thread).
    let head = |(g, (k_cache, v_cache)): (usize, (&mut [f32], &mut [f32]))| {
        for (i, &p) in positions.iter().enumerate() {
            let p = p as usize;
            let (src, dst) = ((i * kv_heads + g) * d, p * d);
            match rope {
                Some(table) => {
                    let (cos, sin) = table[p * d..(p + 1) * d].split_at(d / 2);
                    let half = d / 2;
                    for j in 0..half {
                        let (a, b) = (k[src + j], k[src + j + half]);
                        k_cache[dst + j] = a * cos[j] - b * sin[j];
                        k_cache[dst + j + half] = b * cos[j] + a * sin[j];
                    }
                }
                None => k_cache[dst..dst + d].copy_from_slice(&k[src..src + d]),
            }
            v_cache[dst..dst + d].copy_from_slice(&v[src..src + d]);
        }
    };
    let (kc, vc) = (&mut k_cache[..kv_heads * capacity * d], &mut v_cache[..kv_heads * capacity * d]);
    if t * kv_heads * d >= PARALLEL_APPEND {
        kc.par_chunks_mut(capacity * d).zip(vc.par_chunks_mut(capacity * d)).enumerate().for_each(head);
    } else {
        kc.chunks_mut(capacity * d).zip(vc.chunks_mut(capacity * d)).enumerate().for_each(head);
    }
    Ok(())
}

/// Values appended from which the heads are spread over threads.
const PARALLEL_APPEND: usize = 1 << 16;

#[derive(Clone, Copy)]
pub struct AttnShape {
    queries: usize,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    capacity: usize,
    kv_len: usize,
    causal: bool,
}

impl AttnShape {
    /// From validated shapes: q [T, H, D], cache [G, capacity, D].
    pub fn new(q: &[usize], cache: &[usize], kv_len: usize, causal: bool) -> Self {
        AttnShape { queries: q[0], heads: q[1], kv_heads: cache[0], head_dim: q[2], capacity: cache[1], kv_len, causal }
    }
}

/// out[t, h] = softmax(q[t, h] · K[g]ᵀ / √D) · V[g], g = h / (H / G).
pub fn attention(isa: Isa, q: &[f32], k_cache: &[f32], v_cache: &[f32], out: &mut [f32], s: AttnShape) {
    let d = s.head_dim;
    if d == 0 || s.queries == 0 || s.heads == 0 {
        return;
    }
    let group = s.heads / s.kv_heads;
    let scale = 1.0 / (d as f32).sqrt();
    out.par_chunks_mut(d).enumerate().for_each_init(Vec::new, |scores: &mut Vec<f32>, (row, out)| {
        let (t, h) = (row / s.heads, row % s.heads);
        let g = h / group;
        let visible = if s.causal { s.kv_len - s.queries + t + 1 } else { s.kv_len };
        let qv = &q[row * d..(row + 1) * d];
        let base = g * s.capacity * d;
        scores.clear();
        scores.extend((0..visible).map(|j| dot_f32(isa, qv, &k_cache[base + j * d..base + (j + 1) * d]) * scale));
        let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0f32;
        for sc in scores.iter_mut() {
            *sc = (*sc - max).exp();
            sum += *sc;
        }
        out.fill(0.0);
        for (j, &p) in scores.iter().enumerate() {
            axpy_f32(isa, out, p / sum, &v_cache[base + j * d..base + (j + 1) * d]);
        }
    });
}

/// Queries from which `attention_blocked` (GEMM-based) takes over from the streaming kernel.
pub const BLOCKED_FROM: usize = 16;

/// `attention` for many queries, through `attention_blocked`.
pub fn attention_blocked(isa: Isa, q: &[f32], k_cache: &[f32], v_cache: &[f32], out: &mut [f32], s: AttnShape) {
    let d = s.head_dim;
    let group = s.heads / s.kv_heads.max(1);
    let rows = |h: usize| (h / group) * s.capacity * d..((h / group) * s.capacity + s.kv_len) * d;
    let k = |h: usize| &k_cache[rows(h)];
    let v = |h: usize| &v_cache[rows(h)];
    let visible = |t: usize| if s.causal { s.kv_len - s.queries + t + 1 } else { s.kv_len };
    let p = super::attention_blocked::Problem { queries: s.queries, heads: s.heads, d, q, k: &k, v: &v, visible: &visible, bias: None };
    super::attention_blocked::attention(isa, &p, out);
}
