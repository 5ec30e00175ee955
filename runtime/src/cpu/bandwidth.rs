//! Measures this machine's memory read bandwidth: the roofline every CPU benchmark
//! reports against. All threads stream a buffer much larger than the caches.

use std::time::Instant;

use rayon::prelude::*;

use super::simd::{sum_f32, Isa};
use crate::aligned::AlignedBytes;

#[derive(Clone, Copy, Debug)]
pub struct Bandwidth {
    pub bytes: usize,
    pub best_seconds: f64,
}

impl Bandwidth {
    pub fn gb_per_s(&self) -> f64 {
        self.bytes as f64 / self.best_seconds / 1e9
    }
}

/// Streams `bytes` (rounded to whole f32s) `reps` times with every rayon thread and
/// keeps the fastest pass. The buffer is allocated as the weights are (huge pages where
/// the kernel grants them), so the roofline is what the best-mapped weights can reach.
pub fn measure_read_bandwidth(bytes: usize, reps: usize) -> Bandwidth {
    let isa = Isa::detect();
    let n = bytes / 4;
    let buffer = AlignedBytes::f32s_filled_in_parallel(n, |i| (i % 7) as f32).expect("allocating the bandwidth probe's buffer");
    let data: &[f32] = bytemuck::cast_slice(buffer.as_slice());
    let chunk = n.div_ceil(rayon::current_num_threads() * 4).max(1 << 12);
    let mut best = f64::INFINITY;
    let mut sink = 0f32;
    for _ in 0..reps.max(1) {
        let t = Instant::now();
        sink += data.par_chunks(chunk).map(|c| sum_f32(isa, c)).sum::<f32>();
        best = best.min(t.elapsed().as_secs_f64());
    }
    std::hint::black_box(sink);
    Bandwidth { bytes: n * 4, best_seconds: best }
}
