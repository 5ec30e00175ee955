//! The machine's measured arithmetic throughput at a kernel level: the compute roofline
//! that GEMM results are reported against (register-only loops on every worker thread,
//! no memory traffic; best of several passes). For `Avx512Bf16` it is the `vdpbf16ps`
//! rate, the instruction the fast GEMM runs on; for `Amx` the `tdpbf16ps` tile rate.

use std::time::Instant;

use rayon::prelude::*;

use super::simd::Isa;

/// Independent accumulator chains: enough to cover FMA latency times issue width, few
/// enough to stay in registers (16 ymm for AVX2, 32 zmm for AVX-512).
const CHAINS: usize = 12;
const AVX2_CHAINS: usize = 10;
/// The int8 probe's chains: `vpmaddwd` (latency up to 5) then an add, two per cycle.
const INT8_CHAINS: usize = 12;

/// Best GFLOP/s of `reps` passes (a multiply-add counts 2 flops).
pub fn measure_fma_peak(isa: Isa, reps: usize) -> f64 {
    let threads = rayon::current_num_threads();
    // A tile product is 16 cycles of 16·16·32 multiply-adds: far fewer rounds suffice.
    let iters = if isa == Isa::Amx {
        200_000
    } else {
        10_000_000usize
    };
    let mut best = 0f64;
    for _ in 0..reps.max(3) {
        let t = Instant::now();
        let sink: f32 = (0..threads).into_par_iter().map(|i| fma_loop(isa, iters, i as f32)).sum();
        let secs = t.elapsed().as_secs_f64();
        std::hint::black_box(sink);
        let flops = threads as f64 * iters as f64 * flops_per_iter(isa);
        best = best.max(flops / secs / 1e9);
    }
    best
}

/// The peak of the products a GEMM with `weights` runs at `isa`: `measure_fma_peak`,
/// except for Q8_0 and Q4_0 weights at `Avx2Int8`, whose GEMM sums int16 pairs with
/// `vpmaddwd` (16 multiply-adds per instruction, 32 ops counted as flops) and adds them in
/// int32.
pub fn measure_gemm_peak(isa: Isa, weights: crate::dtype::DType, reps: usize) -> f64 {
    if isa != Isa::Avx2Int8 || !weights.is_quantized() {
        return measure_fma_peak(isa, reps);
    }
    let threads = rayon::current_num_threads();
    let iters = 10_000_000usize;
    let mut best = 0f64;
    for _ in 0..reps.max(3) {
        let t = Instant::now();
        // SAFETY: `Avx2Int8` is only selected when the CPU has AVX2.
        #[cfg(target_arch = "x86_64")]
        let sink: i64 = (0..threads).into_par_iter().map(|i| unsafe { x86::madd_loop(iters, i as i32) }).sum();
        #[cfg(not(target_arch = "x86_64"))]
        let sink = 0;
        let secs = t.elapsed().as_secs_f64();
        std::hint::black_box(sink);
        best = best.max(threads as f64 * iters as f64 * (INT8_CHAINS * 32) as f64 / secs / 1e9);
    }
    best
}

fn flops_per_iter(isa: Isa) -> f64 {
    let chains = CHAINS as f64;
    match isa {
        Isa::Amx => super::gemm_amx::PEAK_FLOPS_PER_ITER,
        // Each lane of vdpbf16ps does two multiply-adds.
        Isa::Avx512Bf16 => chains * 16.0 * 4.0,
        Isa::Avx512 => chains * 16.0 * 2.0,
        // The int8 level's GEMMs are Avx2's f32 ones.
        Isa::Avx2 | Isa::Avx2Int8 => AVX2_CHAINS as f64 * 8.0 * 2.0,
        Isa::Scalar => 8.0 * 2.0,
    }
}

fn fma_loop(isa: Isa, iters: usize, seed: f32) -> f32 {
    match isa {
        Isa::Amx => super::gemm_amx::peak_loop(iters),
        // SAFETY: each level is only selected when the CPU reports its features.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512Bf16 => unsafe { x86::bf16_loop(iters, seed) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { x86::avx512_loop(iters, seed) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 | Isa::Avx2Int8 => unsafe { x86::avx2_loop(iters, seed) },
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
mod x86 {
    use std::arch::x86_64::*;

    use super::{AVX2_CHAINS, CHAINS, INT8_CHAINS};

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn avx2_loop(iters: usize, seed: f32) -> f32 {
        let (m, c) = (_mm256_set1_ps(0.999_999), _mm256_set1_ps(1e-7));
        let mut acc = [_mm256_set1_ps(seed); AVX2_CHAINS];
        for _ in 0..iters {
            for a in acc.iter_mut() {
                *a = _mm256_fmadd_ps(*a, m, c);
            }
        }
        let mut out = [0f32; 8];
        _mm256_storeu_ps(out.as_mut_ptr(), acc.iter().fold(_mm256_setzero_ps(), |s, &a| _mm256_add_ps(s, a)));
        out.iter().sum()
    }

    /// The int8 GEMM's inner step, a `vpmaddwd` and an int32 add, chained through each
    /// accumulator (so neither can be hoisted; the sums wrap harmlessly).
    #[target_feature(enable = "avx2")]
    pub unsafe fn madd_loop(iters: usize, seed: i32) -> i64 {
        let (x, w) = (_mm256_set1_epi32(0x0003_0001), _mm256_set1_epi32(0x0001_0002));
        let mut acc = [_mm256_set1_epi32(seed); INT8_CHAINS];
        for _ in 0..iters {
            for a in acc.iter_mut() {
                *a = _mm256_add_epi32(_mm256_madd_epi16(*a, w), x);
            }
        }
        let mut out = [0i32; 8];
        _mm256_storeu_si256(out.as_mut_ptr() as *mut __m256i, acc.iter().fold(_mm256_setzero_si256(), |s, &a| _mm256_add_epi32(s, a)));
        out.iter().map(|&v| v as i64).sum()
    }

    #[target_feature(enable = "avx512f")]
    pub unsafe fn avx512_loop(iters: usize, seed: f32) -> f32 {
        let (m, c) = (_mm512_set1_ps(0.999_999), _mm512_set1_ps(1e-7));
        let mut acc = [_mm512_set1_ps(seed); CHAINS];
        for _ in 0..iters {
            for a in acc.iter_mut() {
                *a = _mm512_fmadd_ps(*a, m, c);
            }
        }
        _mm512_reduce_add_ps(acc.iter().fold(_mm512_setzero_ps(), |s, &a| _mm512_add_ps(s, a)))
    }

    #[target_feature(enable = "avx512f,avx512bf16")]
    pub unsafe fn bf16_loop(iters: usize, seed: f32) -> f32 {
        // Pairs of small bf16 values: the sums stay finite for any iteration count.
        let x: __m512bh = std::mem::transmute(_mm512_set1_epi32(0x3380_3380));
        let y: __m512bh = std::mem::transmute(_mm512_set1_epi32(0x3380_3380));
        let mut acc = [_mm512_set1_ps(seed); CHAINS];
        for _ in 0..iters {
            for a in acc.iter_mut() {
                *a = _mm512_dpbf16_ps(*a, x, y);
            }
        }
        _mm512_reduce_add_ps(acc.iter().fold(_mm512_setzero_ps(), |s, &a| _mm512_add_ps(s, a)))
    }
}
