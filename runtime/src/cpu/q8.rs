//! Dot products of Q8_0 weight rows (blocks of an f16 scale and 32 int8) with f32 inputs.
//!
//! `exact`: each weight is widened to f32 as scale × int8, which is exact (11 + 8
//! significant bits), and the products are accumulated exactly as the f32 kernels of
//! `simd` do for the same ISA (same lanes, same order), so a Q8_0 product gives the same
//! bits as the f32 product over the dequantized weights: only the weight traffic shrinks
//! (34 bytes per 32 weights instead of 64 for bf16).
//!
//! `fast` (the `avx2int8` level, and the AVX-512 fast levels with AVX512-VNNI): the input
//! is rounded to 8-bit blocks of 32 too (scale max|x| / 127, as llama.cpp does for its
//! Q8_0 products) and each block pair is summed exactly in int32 (`vpdpbusd`, or
//! `vpmaddubsw` + `vpmaddwd` on AVX2); the four rows' int32 sums of a block are folded
//! into one vector, so the conversion, scaling and accumulation run once per four rows.

/// An input vector in 8-bit blocks of 32 with f32 scales (a partial last block is
/// padded with zeros; Q8_0 rows hold whole blocks, so it is never read).
pub struct QuantizedX {
    pub q: Vec<i8>,
    pub scales: Vec<f32>,
}

impl QuantizedX {
    pub fn new(x: &[f32]) -> QuantizedX {
        let blocks = x.len().div_ceil(32);
        let (mut q, mut scales) = (vec![0i8; blocks * 32], Vec::with_capacity(blocks));
        for (b, chunk) in x.chunks(32).enumerate() {
            let amax = chunk.iter().fold(0f32, |m, v| m.max(v.abs()));
            let d = amax / 127.0;
            let inv = if d != 0.0 { 1.0 / d } else { 0.0 };
            for (o, v) in q[b * 32..].iter_mut().zip(chunk) {
                *o = (v * inv).round() as i8;
            }
            scales.push(d);
        }
        QuantizedX { q, scales }
    }
}

/// The f16 scale at the start of the block at `p`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn scale_bits(p: *const u8) -> i16 {
    i16::from_le_bytes([*p, *p.add(1)])
}

#[cfg(target_arch = "x86_64")]
pub mod avx512 {
    use std::arch::x86_64::*;

    use crate::dtype::Q8_BLOCK_BYTES;

    /// The 32 weights of the block at `p` as two 16-lane f32 vectors.
    #[inline(always)]
    unsafe fn block(p: *const u8) -> (__m512, __m512) {
        // Broadcast, then widen: no scalar round trip (whose register merge would chain
        // every block on an accumulator).
        let d = _mm512_cvtph_ps(_mm256_set1_epi16(super::scale_bits(p)));
        let lo = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(p.add(2) as *const __m128i)));
        let hi = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(p.add(18) as *const __m128i)));
        (_mm512_mul_ps(lo, d), _mm512_mul_ps(hi, d))
    }

    /// Four rows of `k` (a multiple of 32) weights, each starting at a block, against `x`:
    /// the accumulators and order of `simd::avx512::dot4_f32`.
    #[target_feature(enable = "avx512f,avx512bw,avx2,fma,f16c")]
    pub unsafe fn dot4(rows: [*const u8; 4], x: *const f32, k: usize) -> [f32; 4] {
        let mut acc = [[_mm512_setzero_ps(); 2]; 4];
        for b in 0..k / 32 {
            let x0 = _mm512_loadu_ps(x.add(32 * b));
            let x1 = _mm512_loadu_ps(x.add(32 * b + 16));
            for r in 0..4 {
                let (w0, w1) = block(rows[r].add(b * Q8_BLOCK_BYTES));
                acc[r][0] = _mm512_fmadd_ps(w0, x0, acc[r][0]);
                acc[r][1] = _mm512_fmadd_ps(w1, x1, acc[r][1]);
            }
        }
        acc.map(|a| _mm512_reduce_add_ps(_mm512_add_ps(a[0], a[1])))
    }

    /// `dot4` for two inputs, each block widened once for both; per input the same
    /// accumulators and order as `dot4`, so each result is bit-identical to it.
    #[target_feature(enable = "avx512f,avx512bw,avx2,fma,f16c")]
    pub unsafe fn dot4x2(rows: [*const u8; 4], x: [*const f32; 2], k: usize) -> [[f32; 4]; 2] {
        let mut acc = [[[_mm512_setzero_ps(); 2]; 4]; 2];
        for b in 0..k / 32 {
            let x0 = [_mm512_loadu_ps(x[0].add(32 * b)), _mm512_loadu_ps(x[1].add(32 * b))];
            let x1 = [_mm512_loadu_ps(x[0].add(32 * b + 16)), _mm512_loadu_ps(x[1].add(32 * b + 16))];
            for r in 0..4 {
                let (w0, w1) = block(rows[r].add(b * Q8_BLOCK_BYTES));
                for m in 0..2 {
                    acc[m][r][0] = _mm512_fmadd_ps(w0, x0[m], acc[m][r][0]);
                    acc[m][r][1] = _mm512_fmadd_ps(w1, x1[m], acc[m][r][1]);
                }
            }
        }
        acc.map(|input| input.map(|a| _mm512_reduce_add_ps(_mm512_add_ps(a[0], a[1]))))
    }
}

#[cfg(target_arch = "x86_64")]
pub mod avx2 {
    use std::arch::x86_64::*;

    use crate::dtype::Q8_BLOCK_BYTES;

    #[inline(always)]
    unsafe fn eight(p: *const u8, d: __m256) -> __m256 {
        _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(p as *const __m128i))), d)
    }

    use crate::cpu::simd::avx2::hsum;

    /// Four rows of `k` (a multiple of 32) weights against `x`: the accumulators and order
    /// of `simd::avx2::dot4_f32` (16 elements per step, two 8-lane accumulators).
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot4(rows: [*const u8; 4], x: *const f32, k: usize) -> [f32; 4] {
        let mut acc = [[_mm256_setzero_ps(); 2]; 4];
        for b in 0..k / 32 {
            for half in 0..2 {
                let i = 32 * b + 16 * half;
                let x0 = _mm256_loadu_ps(x.add(i));
                let x1 = _mm256_loadu_ps(x.add(i + 8));
                for r in 0..4 {
                    let p = rows[r].add(b * Q8_BLOCK_BYTES);
                    let d = _mm256_cvtph_ps(_mm_set1_epi16(super::scale_bits(p)));
                    let q = p.add(2 + 16 * half);
                    acc[r][0] = _mm256_fmadd_ps(eight(q, d), x0, acc[r][0]);
                    acc[r][1] = _mm256_fmadd_ps(eight(q.add(8), d), x1, acc[r][1]);
                }
            }
        }
        acc.map(|a| hsum(_mm256_add_ps(a[0], a[1])))
    }
}

#[cfg(target_arch = "x86_64")]
pub mod int8 {
    //! The fast levels' 8-bit products: `_vnni` sums a block pair with `vpdpbusd`
    //! (AVX512-VNNI), `_avx2` with `vpmaddubsw` + `vpmaddwd` (AVX2). Both leave the same
    //! int32 lanes (four consecutive byte products each; |w|, |x| <= 127 cannot saturate
    //! the 16-bit pair sums), so the two give identical results.
    use std::arch::x86_64::*;

    use super::QuantizedX;
    use crate::dtype::Q8_BLOCK_BYTES;

    /// Σ w·x over one block pair in 8 int32 lanes: both instructions multiply unsigned by
    /// signed bytes, so |w| meets x with w's sign moved onto it.
    #[inline(always)]
    unsafe fn block_dot<const VNNI: bool>(w: *const u8, xq: __m256i) -> __m256i {
        let wq = _mm256_loadu_si256(w as *const __m256i);
        let (aw, sx) = (_mm256_sign_epi8(wq, wq), _mm256_sign_epi8(xq, wq));
        if VNNI {
            _mm256_dpbusd_epi32(_mm256_setzero_si256(), aw, sx)
        } else {
            _mm256_madd_epi16(_mm256_maddubs_epi16(aw, sx), _mm256_set1_epi16(1))
        }
    }

    /// One block of four rows: the four int32 sums folded into one vector (lanes r and
    /// 4 + r hold row r's halves) so the conversion, scaling and accumulation run once
    /// for the four rows instead of once per row.
    /// (No closures here: code outside the `target_feature` functions, such as
    /// `array::map`'s, would call the intrinsics out of line.)
    #[inline(always)]
    unsafe fn four_rows<const VNNI: bool>(p: [*const u8; 4], xq: __m256i, dx: __m256, acc: __m256) -> __m256 {
        let (s0, s1) = (block_dot::<VNNI>(p[0].add(2), xq), block_dot::<VNNI>(p[1].add(2), xq));
        let (s2, s3) = (block_dot::<VNNI>(p[2].add(2), xq), block_dot::<VNNI>(p[3].add(2), xq));
        let folded = _mm256_hadd_epi32(_mm256_hadd_epi32(s0, s1), _mm256_hadd_epi32(s2, s3));
        let (b0, b1, b2, b3) = (super::scale_bits(p[0]), super::scale_bits(p[1]), super::scale_bits(p[2]), super::scale_bits(p[3]));
        let d = _mm256_cvtph_ps(_mm_setr_epi16(b0, b1, b2, b3, b0, b1, b2, b3));
        _mm256_fmadd_ps(_mm256_cvtepi32_ps(folded), _mm256_mul_ps(d, dx), acc)
    }

    /// The four rows' pointers advanced to block `b`.
    #[inline(always)]
    unsafe fn at_block(rows: &[*const u8; 4], b: usize) -> [*const u8; 4] {
        let o = b * Q8_BLOCK_BYTES;
        [rows[0].add(o), rows[1].add(o), rows[2].add(o), rows[3].add(o)]
    }

    /// Rows 0..3 from the folded accumulator (lanes r and 4 + r).
    #[inline(always)]
    unsafe fn unfold(acc: __m256) -> [f32; 4] {
        let mut out = [0f32; 4];
        _mm_storeu_ps(out.as_mut_ptr(), _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1)));
        out
    }

    /// Four rows of `k` (a multiple of 32) weights against the quantized input.
    #[inline(always)]
    unsafe fn dot4<const VNNI: bool>(rows: [*const u8; 4], x: &QuantizedX, k: usize) -> [f32; 4] {
        let mut acc = _mm256_setzero_ps();
        for b in 0..k / 32 {
            let xq = _mm256_loadu_si256(x.q.as_ptr().add(32 * b) as *const __m256i);
            let dx = _mm256_set1_ps(*x.scales.get_unchecked(b));
            acc = four_rows::<VNNI>(at_block(&rows, b), xq, dx, acc);
        }
        unfold(acc)
    }

    /// `dot4` for two inputs, each weight block loaded once; per input the same order.
    #[inline(always)]
    unsafe fn dot4x2<const VNNI: bool>(rows: [*const u8; 4], x: [&QuantizedX; 2], k: usize) -> [[f32; 4]; 2] {
        let mut acc = [_mm256_setzero_ps(); 2];
        for b in 0..k / 32 {
            let p = at_block(&rows, b);
            for m in 0..2 {
                let xq = _mm256_loadu_si256(x[m].q.as_ptr().add(32 * b) as *const __m256i);
                let dx = _mm256_set1_ps(*x[m].scales.get_unchecked(b));
                acc[m] = four_rows::<VNNI>(p, xq, dx, acc[m]);
            }
        }
        [unfold(acc[0]), unfold(acc[1])]
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    pub unsafe fn dot4_vnni(rows: [*const u8; 4], x: &QuantizedX, k: usize) -> [f32; 4] {
        dot4::<true>(rows, x, k)
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    pub unsafe fn dot4x2_vnni(rows: [*const u8; 4], x: [&QuantizedX; 2], k: usize) -> [[f32; 4]; 2] {
        dot4x2::<true>(rows, x, k)
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot4_avx2(rows: [*const u8; 4], x: &QuantizedX, k: usize) -> [f32; 4] {
        dot4::<false>(rows, x, k)
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot4x2_avx2(rows: [*const u8; 4], x: [&QuantizedX; 2], k: usize) -> [[f32; 4]; 2] {
        dot4x2::<false>(rows, x, k)
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;
    use crate::dtype::Q8_BLOCK_BYTES;

    /// Four Q8_0 rows of `k` weights (every int8 value in -127..=127 appears) and their
    /// dot products with `x` in its 8-bit blocks, summed in float64 from the integers.
    fn case(k: usize) -> (Vec<u8>, Vec<f32>, [f64; 4]) {
        let blocks = k / 32;
        let mut rows = vec![0u8; 4 * blocks * Q8_BLOCK_BYTES];
        for (i, block) in rows.chunks_mut(Q8_BLOCK_BYTES).enumerate() {
            let scale = half::f16::from_f32(0.01 + (i % 7) as f32 * 0.003);
            block[..2].copy_from_slice(&scale.to_le_bytes());
            for (j, q) in block[2..].iter_mut().enumerate() {
                *q = (((i * 32 + j) * 37 % 255) as i32 - 127) as i8 as u8;
            }
        }
        let x: Vec<f32> = (0..k).map(|i| ((i * 7919) % 211) as f32 * 0.013 - 1.3).collect();
        let xq = QuantizedX::new(&x);
        let mut want = [0f64; 4];
        for (r, w) in want.iter_mut().enumerate() {
            for b in 0..blocks {
                let block = &rows[(r * blocks + b) * Q8_BLOCK_BYTES..][..Q8_BLOCK_BYTES];
                let d = half::f16::from_le_bytes([block[0], block[1]]).to_f64();
                let sum: i64 = (0..32).map(|j| block[2 + j] as i8 as i64 * xq.q[32 * b + j] as i64).sum();
                *w += d * xq.scales[b] as f64 * sum as f64;
            }
        }
        (rows, x, want)
    }

    #[test]
    fn int8_products_match_the_integer_sums_and_each_other() {
        if !std::arch::is_x86_feature_detected!("avx2") {
            return println!("SKIPPED: this CPU lacks AVX2");
        }
        let k = 32 * 9;
        let (rows, x, want) = case(k);
        let xq = QuantizedX::new(&x);
        let stride = k / 32 * crate::dtype::Q8_BLOCK_BYTES;
        let ptrs = [0, 1, 2, 3].map(|r| rows[r * stride..].as_ptr());
        // SAFETY: AVX2 was detected; each row holds k / 32 whole blocks.
        let got = unsafe { int8::dot4_avx2(ptrs, &xq, k) };
        let pair = unsafe { int8::dot4x2_avx2(ptrs, [&xq, &xq], k) };
        for r in 0..4 {
            // Exact int32 block sums; only the f32 scaling and accumulation round.
            assert!((got[r] as f64 - want[r]).abs() <= 1e-5 * want[r].abs().max(1.0), "row {r}: {} vs {}", got[r], want[r]);
            assert_eq!(pair[0][r].to_bits(), got[r].to_bits(), "dot4x2 row {r}");
        }
        if std::arch::is_x86_feature_detected!("avx512vnni") && std::arch::is_x86_feature_detected!("avx512vl") {
            // SAFETY: AVX512-VNNI and VL were detected.
            let vnni = unsafe { int8::dot4_vnni(ptrs, &xq, k) };
            assert_eq!(vnni.map(f32::to_bits), got.map(f32::to_bits), "vpdpbusd and vpmaddubsw + vpmaddwd differ");
        } else {
            println!("SKIPPED the VNNI comparison: this CPU lacks AVX512-VNNI");
        }
    }
}
