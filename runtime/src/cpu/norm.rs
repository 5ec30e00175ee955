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
