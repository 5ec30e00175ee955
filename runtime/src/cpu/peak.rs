//! The machine's measured f32 FMA throughput: the compute roofline that GEMM results are
//! reported against (a register-only loop on every worker thread, no memory traffic).

use std::time::Instant;

use rayon::prelude::*;

use super::simd::Isa;

/// Best GFLOP/s of `reps` passes (each FMA counts 2 flops).
pub fn measure_fma_peak(isa: Isa, reps: usize) -> f64 {
    let threads = rayon::current_num_threads();
    let iters = 20_000_000usize;
    let mut best = 0f64;
    for _ in 0..reps.max(1) {
        let t = Instant::now();
        let sink: f32 = (0..threads).into_par_iter().map(|i| fma_loop(isa, iters, i as f32)).sum();
        let secs = t.elapsed().as_secs_f64();
        std::hint::black_box(sink);
        let flops = threads as f64 * iters as f64 * flops_per_iter(isa);
        best = best.max(flops / secs / 1e9);
    }
    best
}

fn flops_per_iter(isa: Isa) -> f64 {
    match isa {
        // 10 independent 8-lane FMAs.
        Isa::Avx2 => 10.0 * 8.0 * 2.0,
        Isa::Scalar => 8.0 * 2.0,
    }
}

fn fma_loop(isa: Isa, iters: usize, seed: f32) -> f32 {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: Isa::Avx2 is only selected when the CPU reports AVX2 and FMA.
        Isa::Avx2 => unsafe { avx2_fma_loop(iters, seed) },
        _ => {
            let mut acc = [seed; 8];
            for _ in 0..iters {
                for a in acc.iter_mut() {
                    *a = a.mul_add(0.999_999, 1e-7);
                }
            }
            acc.iter().sum()
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2_fma_loop(iters: usize, seed: f32) -> f32 {
    use std::arch::x86_64::*;
    let m = _mm256_set1_ps(0.999_999);
    let c = _mm256_set1_ps(1e-7);
    let mut acc = [_mm256_set1_ps(seed); 10];
    for _ in 0..iters {
        for a in acc.iter_mut() {
            *a = _mm256_fmadd_ps(*a, m, c);
        }
    }
    let mut sum = _mm256_setzero_ps();
    for a in acc {
        sum = _mm256_add_ps(sum, a);
    }
    let mut out = [0f32; 8];
    _mm256_storeu_ps(out.as_mut_ptr(), sum);
    out.iter().sum()
}
