//! The GEMV dot products with 16-lane registers (the layout and tails of `avx2`).

use std::arch::x86_64::*;

macro_rules! load16 {
    (f32, $p:expr) => {
        _mm512_loadu_ps($p)
    };
    (f16, $p:expr) => {
        _mm512_cvtph_ps(_mm256_loadu_si256($p as *const __m256i))
    };
}

/// Requests, into L2, the line at element `i` of the next group's rows (4·k elements after
/// each of `rows`, consecutive rows of k elements). On a 2-core Zen 4 the four row streams
/// of a group left the hardware prefetchers short of DRAM: fetched a group ahead, the bf16
/// GEMV read 1.15x-1.3x more per second (3B text head and FFN stack, alternating in one
/// process; 1.05x-1.24x in `bench-gemv` runs alternating with the build before). Into L1
/// (`T0`, what the AVX2 kernels do) it gained nothing there, nor did fixed distances of
/// 4-8 KiB. A hint: it never faults, past the matrix included.
#[inline(always)]
unsafe fn prefetch_next_group<T>(rows: &[*const T; 4], k: usize, i: usize) {
    for r in rows {
        _mm_prefetch::<_MM_HINT_T1>(r.wrapping_add(4 * k + i) as *const i8);
    }
}

macro_rules! scalar {
    (f32, $v:expr) => {
        $v
    };
    (f16, $v:expr) => {
        half::f16::from_bits($v).to_f32()
    };
}

macro_rules! dot4 {
    ($name:ident, $t:ty, $kind:tt) => {
        #[target_feature(enable = "avx512f,avx2,fma,f16c")]
        pub unsafe fn $name(rows: [*const $t; 4], x: *const f32, k: usize) -> [f32; 4] {
            let mut acc = [[_mm512_setzero_ps(); 2]; 4];
            let mut i = 0;
            // 32 elements per step: two 64-byte lines of f32 rows, one of f16.
            let lines = std::mem::size_of::<$t>() / 2;
            while i + 32 <= k {
                for l in 0..lines {
                    prefetch_next_group(&rows, k, i + 16 * l);
                }
                let x0 = _mm512_loadu_ps(x.add(i));
                let x1 = _mm512_loadu_ps(x.add(i + 16));
                for r in 0..4 {
                    acc[r][0] = _mm512_fmadd_ps(load16!($kind, rows[r].add(i)), x0, acc[r][0]);
                    acc[r][1] = _mm512_fmadd_ps(load16!($kind, rows[r].add(i + 16)), x1, acc[r][1]);
                }
                i += 32;
            }
            let mut out = [0f32; 4];
            for r in 0..4 {
                let mut s = _mm512_reduce_add_ps(_mm512_add_ps(acc[r][0], acc[r][1]));
                for j in i..k {
                    s += scalar!($kind, *rows[r].add(j)) * *x.add(j);
                }
                out[r] = s;
            }
            out
        }
    };
}
dot4!(dot4_f32, f32, f32);
dot4!(dot4_f16, u16, f16);

/// `dot4_*` for two inputs at once: per input the same accumulators, FMA order,
/// reduction and tail as `dot4_*`, with each weight vector loaded once for both.
macro_rules! dot4x2 {
    ($name:ident, $t:ty, $kind:tt) => {
        #[target_feature(enable = "avx512f,avx2,fma,f16c")]
        pub unsafe fn $name(rows: [*const $t; 4], x: [*const f32; 2], k: usize) -> [[f32; 4]; 2] {
            let mut acc = [[[_mm512_setzero_ps(); 2]; 4]; 2];
            let mut i = 0;
            let lines = std::mem::size_of::<$t>() / 2;
            while i + 32 <= k {
                for l in 0..lines {
                    prefetch_next_group(&rows, k, i + 16 * l);
                }
                let x0 = [_mm512_loadu_ps(x[0].add(i)), _mm512_loadu_ps(x[1].add(i))];
                let x1 = [_mm512_loadu_ps(x[0].add(i + 16)), _mm512_loadu_ps(x[1].add(i + 16))];
                for r in 0..4 {
                    let w0 = load16!($kind, rows[r].add(i));
                    let w1 = load16!($kind, rows[r].add(i + 16));
                    for m in 0..2 {
                        acc[m][r][0] = _mm512_fmadd_ps(w0, x0[m], acc[m][r][0]);
                        acc[m][r][1] = _mm512_fmadd_ps(w1, x1[m], acc[m][r][1]);
                    }
                }
                i += 32;
            }
            finish_pair(&acc, i, k, |m, r, j| scalar!($kind, *rows[r].add(j)) * *x[m].add(j))
        }
    };
}
dot4x2!(dot4x2_f32, f32, f32);
dot4x2!(dot4x2_f16, u16, f16);

/// `dot4_bf16` for two inputs at once (see `dot4x2!`).
#[target_feature(enable = "avx512f")]
pub unsafe fn dot4x2_bf16(rows: [*const u16; 4], x: [*const f32; 2], even_odd: [*const f32; 2], k: usize) -> [[f32; 4]; 2] {
    let mut acc = [[[_mm512_setzero_ps(); 2]; 4]; 2];
    let high = _mm512_set1_epi32(0xffff_0000u32 as i32);
    let mut i = 0;
    while i + 32 <= k {
        prefetch_next_group(&rows, k, i);
        let xe = [_mm512_loadu_ps(even_odd[0].add(i)), _mm512_loadu_ps(even_odd[1].add(i))];
        let xo = [_mm512_loadu_ps(even_odd[0].add(i + 16)), _mm512_loadu_ps(even_odd[1].add(i + 16))];
        for r in 0..4 {
            let raw = _mm512_loadu_si512(rows[r].add(i) as *const _);
            let even = _mm512_castsi512_ps(_mm512_slli_epi32(raw, 16));
            let odd = _mm512_castsi512_ps(_mm512_and_si512(raw, high));
            for m in 0..2 {
                acc[m][r][0] = _mm512_fmadd_ps(even, xe[m], acc[m][r][0]);
                acc[m][r][1] = _mm512_fmadd_ps(odd, xo[m], acc[m][r][1]);
            }
        }
        i += 32;
    }
    finish_pair(&acc, i, k, |m, r, j| crate::dtype::bf16_bits_to_f32(*rows[r].add(j)) * *x[m].add(j))
}

/// The sums of `dot4x2_*`: per input and weight row, the accumulator pair reduced as
/// `dot4_*` reduces it, then the products of elements `i..k` (`product(input, row,
/// element)`) added one by one in order.
#[target_feature(enable = "avx512f")]
unsafe fn finish_pair(acc: &[[[__m512; 2]; 4]; 2], i: usize, k: usize, product: impl Fn(usize, usize, usize) -> f32) -> [[f32; 4]; 2] {
    let mut out = [[0f32; 4]; 2];
    for m in 0..2 {
        for r in 0..4 {
            let mut s = _mm512_reduce_add_ps(_mm512_add_ps(acc[m][r][0], acc[m][r][1]));
            for j in i..k {
                s += product(m, r, j);
            }
            out[m][r] = s;
        }
    }
    out
}

/// bf16 rows against x in 32-chunk even/odd order: a 64-byte load holds 32 bf16; a
/// shift gives the even elements as f32, a mask the odd ones.
#[target_feature(enable = "avx512f")]
pub unsafe fn dot4_bf16(rows: [*const u16; 4], x: *const f32, even_odd: *const f32, k: usize) -> [f32; 4] {
    let mut acc = [[_mm512_setzero_ps(); 2]; 4];
    let high = _mm512_set1_epi32(0xffff_0000u32 as i32);
    let mut i = 0;
    while i + 32 <= k {
        prefetch_next_group(&rows, k, i);
        let xe = _mm512_loadu_ps(even_odd.add(i));
        let xo = _mm512_loadu_ps(even_odd.add(i + 16));
        for r in 0..4 {
            let raw = _mm512_loadu_si512(rows[r].add(i) as *const _);
            let even = _mm512_castsi512_ps(_mm512_slli_epi32(raw, 16));
            let odd = _mm512_castsi512_ps(_mm512_and_si512(raw, high));
            acc[r][0] = _mm512_fmadd_ps(even, xe, acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(odd, xo, acc[r][1]);
        }
        i += 32;
    }
    let mut out = [0f32; 4];
    for r in 0..4 {
        let mut s = _mm512_reduce_add_ps(_mm512_add_ps(acc[r][0], acc[r][1]));
        for j in i..k {
            s += crate::dtype::bf16_bits_to_f32(*rows[r].add(j)) * *x.add(j);
        }
        out[r] = s;
    }
    out
}
