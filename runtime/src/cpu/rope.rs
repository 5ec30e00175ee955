//! Rotate-half RoPE: angles are p·θ'_j in f32, as torch builds its cos/sin tables.

use rayon::prelude::*;

/// x, out [T, H, D]; positions [T]; inv_freq [D/2].
pub fn rope(x: &[f32], heads: usize, positions: &[u32], inv_freq: &[f32], out: &mut [f32]) {
    let half = inv_freq.len();
    let d = 2 * half;
    if d == 0 || heads == 0 {
        return;
    }
    let row = heads * d;
    out.par_chunks_mut(row).zip(x.par_chunks(row)).zip(positions.par_iter()).for_each(|((out, x), &p)| {
        let (cos, sin): (Vec<f32>, Vec<f32>) = inv_freq
            .iter()
            .map(|&f| {
                let angle = p as f32 * f;
                (angle.cos(), angle.sin())
            })
            .unzip();
        for (out, x) in out.chunks_mut(d).zip(x.chunks(d)) {
            for j in 0..half {
                let (a, b) = (x[j], x[j + half]);
                out[j] = a * cos[j] - b * sin[j];
                out[j + half] = b * cos[j] + a * sin[j];
            }
        }
    });
}
