//! RMSNorm with f32 statistics (litgpt: y = (x · rsqrt(mean(x²) + eps)) · w).

use rayon::prelude::*;

use super::view::WeightSlice;

/// x, out [R, C]; weight [C].
pub fn rms_norm(isa: super::simd::Isa, x: &[f32], weight: WeightSlice, out: &mut [f32], eps: f32) {
    let cols = weight.len();
    if cols == 0 {
        return;
    }
    let w: Vec<f32> = (0..cols).map(|i| weight.get(i)).collect();
    out.par_chunks_mut(cols).zip(x.par_chunks(cols)).for_each(|(out, x)| {
        let ss = super::simd::dot_f32(isa, x, x);
        let r = 1.0 / (ss / cols as f32 + eps).sqrt();
        for ((o, &xi), &wi) in out.iter_mut().zip(x).zip(&w) {
            *o = (xi * r) * wi;
        }
    });
}

/// LayerNorm without affine (biased variance, f64 statistics), then n·(1 + scale) + shift.
pub fn layer_norm_modulate(x: &[f32], shift: &[f32], scale: &[f32], out: &mut [f32], eps: f32) {
    let cols = shift.len();
    if cols == 0 {
        return;
    }
    out.par_chunks_mut(cols).zip(x.par_chunks(cols)).for_each(|(out, x)| {
        let mean = sum_f64(x, |v| v as f64) / cols as f64;
        let var = sum_f64(x, |v| (v as f64 - mean).powi(2)) / cols as f64;
        let rstd = (1.0 / (var + eps as f64).sqrt()) as f32;
        let mean = mean as f32;
        for (j, (o, &v)) in out.iter_mut().zip(x).enumerate() {
            *o = ((v - mean) * rstd) * (1.0 + scale[j]) + shift[j];
        }
    });
}

/// Σ f(v) over `x` in f64, in eight independent running sums (one chain of dependent adds
/// made a 1536-wide row's two statistics cost as much as a third of a 1536-column GEMM's
/// row); f64 keeps the order's effect far below f32's rounding.
fn sum_f64(x: &[f32], f: impl Fn(f32) -> f64) -> f64 {
    let mut acc = [0f64; 8];
    let chunks = x.chunks_exact(8);
    let tail: f64 = chunks.remainder().iter().map(|&v| f(v)).sum();
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += f(v);
        }
    }
    acc.iter().sum::<f64>() + tail
}
