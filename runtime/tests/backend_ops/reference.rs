//! Plain scalar references, written from the op definitions (f64 accumulation).

/// Weight values as the device sees them: rounded to their storage dtype.
pub fn round_to(values: &[f32], dtype: uniaudio_runtime::DType) -> Vec<f32> {
    use uniaudio_runtime::dtype::{bytes_to_f32, f32_to_bytes};
    bytes_to_f32(&f32_to_bytes(values, dtype), dtype)
}

pub fn matmul(x: &[f32], w: &[f32], m: usize, k: usize, n: usize, in_out: bool, init: Option<&[f32]>) -> Vec<f64> {
    let mut out = vec![0f64; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut s = init.map_or(0.0, |v| v[i * n + j] as f64);
            for p in 0..k {
                let wv = if in_out { w[p * n + j] } else { w[j * k + p] };
                s += x[i * k + p] as f64 * wv as f64;
            }
            out[i * n + j] = s;
        }
    }
    out
}

pub fn rms_norm(x: &[f32], w: &[f32], eps: f32) -> Vec<f64> {
    let c = w.len();
    let mut out = Vec::with_capacity(x.len());
    for row in x.chunks(c) {
        let ms = row.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / c as f64;
        let r = 1.0 / (ms + eps as f64).sqrt();
        out.extend(row.iter().zip(w).map(|(&v, &wv)| v as f64 * r * wv as f64));
    }
    out
}

pub fn rope(x: &[f32], t: usize, h: usize, d: usize, pos: &[u32], inv_freq: &[f32]) -> Vec<f64> {
    let half = d / 2;
    let mut out = vec![0f64; x.len()];
    for ti in 0..t {
        for hi in 0..h {
            let base = (ti * h + hi) * d;
            for j in 0..half {
                // The angle is formed in f32, as torch builds its tables.
                let angle = (pos[ti] as f32 * inv_freq[j]) as f64;
                let (s, c) = angle.sin_cos();
                let (a, b) = (x[base + j] as f64, x[base + j + half] as f64);
                out[base + j] = a * c - b * s;
                out[base + j + half] = b * c + a * s;
            }
        }
    }
    out
}

/// q [T, H, D]; caches [G, cap, D].
#[allow(clippy::too_many_arguments)]
pub fn attention(q: &[f32], kc: &[f32], vc: &[f32], t: usize, h: usize, g: usize, d: usize, cap: usize, kv_len: usize, causal: bool) -> Vec<f64> {
    let mut out = vec![0f64; t * h * d];
    let scale = 1.0 / (d as f64).sqrt();
    for ti in 0..t {
        let visible = if causal { kv_len - t + ti + 1 } else { kv_len };
        for hi in 0..h {
            let gi = hi / (h / g);
            let qv = &q[(ti * h + hi) * d..][..d];
            let scores: Vec<f64> = (0..visible)
                .map(|j| (0..d).map(|e| qv[e] as f64 * kc[(gi * cap + j) * d + e] as f64).sum::<f64>() * scale)
                .collect();
            let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let exps: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
            let sum: f64 = exps.iter().sum();
            for e in 0..d {
                out[(ti * h + hi) * d + e] = (0..visible).map(|j| exps[j] / sum * vc[(gi * cap + j) * d + e] as f64).sum();
            }
        }
    }
    out
}

pub fn softmax(x: &[f32], cols: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(x.len());
    for row in x.chunks(cols) {
        let max = row.iter().map(|&v| v as f64).fold(f64::NEG_INFINITY, f64::max);
        let exps: Vec<f64> = row.iter().map(|&v| (v as f64 - max).exp()).collect();
        let sum: f64 = exps.iter().sum();
        out.extend(exps.iter().map(|e| e / sum));
    }
    out
}

pub fn silu_mul(g: f32, u: f32) -> f64 {
    let g = g as f64;
    g / (1.0 + (-g).exp()) * u as f64
}

/// The documented sampling rule, written independently of the kernels.
pub fn top_k_sample(logits: &[f32], top_k: usize, temperature: f32, forbid_below: usize, seed: u64, counter: u64) -> u32 {
    use uniaudio_runtime::rng::{stream_key, uniform};
    let scaled: Vec<(usize, f32)> = logits
        .iter()
        .enumerate()
        .skip(forbid_below)
        .map(|(i, &l)| (i, if l.is_nan() { f32::NEG_INFINITY } else { l / temperature }))
        .collect();
    if top_k == 1 {
        let mut best = scaled[0];
        for &(i, v) in &scaled[1..] {
            if v > best.1 {
                best = (i, v);
            }
        }
        return best.0 as u32;
    }
    let mut sorted: Vec<f32> = scaled.iter().map(|p| p.1).collect();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let threshold = if top_k == 0 || top_k >= sorted.len() { f32::NEG_INFINITY } else { sorted[top_k - 1] };
    let key = stream_key(seed, counter);
    let mut best = (forbid_below, f32::NEG_INFINITY);
    for (i, l) in scaled {
        if l >= threshold && l > f32::NEG_INFINITY {
            let score = l - (-uniform(key, i as u32).ln()).ln();
            if score > best.1 {
                best = (i, score);
            }
        }
    }
    best.0 as u32
}

/// tanh-approximated GELU.
pub fn gelu_tanh(x: f64) -> f64 {
    0.5 * x * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x)).tanh())
}

/// Exact (erf) GELU.
pub fn gelu_erf(x: f64) -> f64 {
    0.5 * x * (1.0 + libm::erf(x / std::f64::consts::SQRT_2))
}
