//! Dot products of Q8_0 weight rows (blocks of an f16 scale and 32 int8) with f32 inputs.
//! The widening (`exact`) kernels are written over `BlockFormat` and serve Q4_0 rows too
//! (`q4.rs`); Q4_0's `fast` GEMV is its own (`q4::int8`).
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
//! `vpmaddubsw` + `vpmaddwd` on AVX2), then scaled by both blocks' scales into f32
//! accumulators. Rows are summed one after the other, each a single sequential stream.

/// An input vector in 8-bit blocks of 32 with f32 scales (a partial last block is
/// padded with zeros; Q8_0 rows hold whole blocks, so it is never read).
pub struct QuantizedX {
    pub q: Vec<i8>,
    pub scales: Vec<f32>,
    /// How far ahead of the block being summed the fast kernels prefetch each weight
    /// row, in bytes (0: no prefetch): the tuned `cpu.q8.prefetch_bytes`.
    prefetch: usize,
}

/// Every f16 bit pattern widened to f32 (256 KiB; a layer's weight scales share a few
/// exponents, 4 KiB of the table each, so the lookups stay in a small part of it).
static F16_TO_F32: std::sync::OnceLock<Box<[f32]>> = std::sync::OnceLock::new();

pub(crate) fn f16_table() -> &'static [f32] {
    F16_TO_F32.get_or_init(|| (0..=u16::MAX).map(|h| half::f16::from_bits(h).to_f32()).collect())
}

impl QuantizedX {
    /// `x` in blocks; the fast kernels prefetch each weight row `prefetch` bytes ahead.
    pub fn new(x: &[f32], prefetch: usize) -> QuantizedX {
        let blocks = x.len().div_ceil(32);
        let (mut q, mut scales) = (vec![0i8; blocks * 32], vec![0f32; blocks]);
        quantize_into(x, &mut q, &mut scales);
        QuantizedX { q, scales, prefetch }
    }

    /// The prefetch distance the fast kernels use with this input, in bytes.
    pub(crate) fn prefetch(&self) -> usize {
        self.prefetch
    }
}

/// `x` in 8-bit blocks of 32 into `q` (whole blocks, a partial last one zero padded) and
/// `scales`: d = max|x| / 127, q = round(x / d) (halves away from zero).
pub(crate) fn quantize_into(x: &[f32], q: &mut [i8], scales: &mut [f32]) {
    let blocks = x.len().div_ceil(32);
    assert!(q.len() >= blocks * 32 && scales.len() >= blocks, "quantized block bounds");
    let whole = x.len() / 32;
    #[cfg(target_arch = "x86_64")]
    if whole > 0 && std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 detected; `whole` blocks of x, q and scales are in bounds (asserted).
        let odd = unsafe { avx2::quantize_blocks(x.as_ptr(), whole, q.as_mut_ptr(), scales.as_mut_ptr()) };
        // Blocks the vector path leaves (NaN or infinite values, or a scale too small to
        // invert) take the scalar rounding, whose saturating casts define those cases.
        for b in odd.into_iter().flatten() {
            quantize_scalar(&x[b * 32..(b + 1) * 32], &mut q[b * 32..(b + 1) * 32], &mut scales[b..b + 1]);
        }
        return quantize_scalar(&x[whole * 32..], &mut q[whole * 32..], &mut scales[whole..]);
    }
    quantize_scalar(x, q, scales)
}

fn quantize_scalar(x: &[f32], q: &mut [i8], scales: &mut [f32]) {
    for (b, chunk) in x.chunks(32).enumerate() {
        let amax = chunk.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let inv = if d != 0.0 { 1.0 / d } else { 0.0 };
        for (o, v) in q[b * 32..].iter_mut().zip(chunk) {
            *o = (v * inv).round() as i8;
        }
        q[b * 32 + chunk.len()..(b + 1) * 32].fill(0);
        scales[b] = d;
    }
}

/// The f16 scale at the start of the block at `p`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) unsafe fn scale_bits(p: *const u8) -> i16 {
    i16::from_le_bytes([*p, *p.add(1)])
}

/// The scale of the block at `p` in all 8 lanes, read from `F16_TO_F32` (at `table`) by a
/// broadcasting load: converting it in registers, with a scalar round trip, costs more
/// than a block's integer products.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn table_scale(table: *const f32, p: *const u8) -> std::arch::x86_64::__m256 {
    std::arch::x86_64::_mm256_broadcast_ss(&*table.add(scale_bits(p) as u16 as usize))
}

/// A format of 32-weight blocks after an f16 scale whose weights are small integers
/// (scale × integer is exact in f32): how the kernels read a block's integers. The
/// kernels below, and `gemm_q8`'s, are written once over it.
///
/// # Safety
/// The `unsafe` methods read the whole block at `p` (`BYTES` bytes, scale first), which
/// must be readable, and run AVX2 instructions (`sixteens`: AVX-512F), which the CPU must
/// have: callers are `target_feature` functions that inline them.
pub(crate) trait BlockFormat {
    /// Bytes per block, scale included.
    const BYTES: usize;
    /// Weight `j` (below 32) of `block` as its integer.
    fn int(block: &[u8], j: usize) -> i32;
    /// Weights `e..e + 8` (`e` a multiple of 8 below 32) of the block at `p` in 8 int32
    /// lanes (AVX2).
    #[cfg(target_arch = "x86_64")]
    unsafe fn eight(p: *const u8, e: usize) -> std::arch::x86_64::__m256i;
    /// Weights `16 · half .. 16 · half + 16` of the block at `p` in 16 int16 lanes (AVX2).
    #[cfg(target_arch = "x86_64")]
    unsafe fn sixteen_i16(p: *const u8, half: usize) -> std::arch::x86_64::__m256i;
    /// Weights 0..16 and 16..32 of the block in 16 int32 lanes each (AVX-512).
    #[cfg(target_arch = "x86_64")]
    unsafe fn sixteens(p: *const u8) -> (std::arch::x86_64::__m512i, std::arch::x86_64::__m512i);
}

/// Q8_0: 34-byte blocks, the integers stored as int8.
pub(crate) struct Q8;

impl BlockFormat for Q8 {
    const BYTES: usize = crate::dtype::Q8_BLOCK_BYTES;

    fn int(block: &[u8], j: usize) -> i32 {
        block[2 + j] as i8 as i32
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn sixteen_i16(p: *const u8, half: usize) -> std::arch::x86_64::__m256i {
        use std::arch::x86_64::*;
        _mm256_cvtepi8_epi16(_mm_loadu_si128(p.add(2 + 16 * half) as *const __m128i))
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn eight(p: *const u8, e: usize) -> std::arch::x86_64::__m256i {
        use std::arch::x86_64::*;
        _mm256_cvtepi8_epi32(_mm_loadl_epi64(p.add(2 + e) as *const __m128i))
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn sixteens(p: *const u8) -> (std::arch::x86_64::__m512i, std::arch::x86_64::__m512i) {
        use std::arch::x86_64::*;
        (_mm512_cvtepi8_epi32(_mm_loadu_si128(p.add(2) as *const __m128i)), _mm512_cvtepi8_epi32(_mm_loadu_si128(p.add(18) as *const __m128i)))
    }
}

#[cfg(target_arch = "x86_64")]
pub mod avx512 {
    use std::arch::x86_64::*;

    use super::BlockFormat;

    /// The 32 weights of the block at `p` as two 16-lane f32 vectors.
    #[inline(always)]
    pub(crate) unsafe fn block<F: BlockFormat>(p: *const u8) -> (__m512, __m512) {
        // Broadcast, then widen: no scalar round trip (whose register merge would chain
        // every block on an accumulator).
        let d = _mm512_cvtph_ps(_mm256_set1_epi16(super::scale_bits(p)));
        let (lo, hi) = F::sixteens(p);
        (_mm512_mul_ps(_mm512_cvtepi32_ps(lo), d), _mm512_mul_ps(_mm512_cvtepi32_ps(hi), d))
    }

    /// Four rows of `k` (a multiple of 32) weights, each starting at a block, against `x`:
    /// the accumulators and order of `simd::avx512::dot4_f32`.
    #[target_feature(enable = "avx512f,avx512bw,avx2,fma,f16c")]
    pub(crate) unsafe fn dot4<F: BlockFormat>(rows: [*const u8; 4], x: *const f32, k: usize) -> [f32; 4] {
        let mut acc = [[_mm512_setzero_ps(); 2]; 4];
        for b in 0..k / 32 {
            let x0 = _mm512_loadu_ps(x.add(32 * b));
            let x1 = _mm512_loadu_ps(x.add(32 * b + 16));
            for r in 0..4 {
                let (w0, w1) = block::<F>(rows[r].add(b * F::BYTES));
                acc[r][0] = _mm512_fmadd_ps(w0, x0, acc[r][0]);
                acc[r][1] = _mm512_fmadd_ps(w1, x1, acc[r][1]);
            }
        }
        acc.map(|a| _mm512_reduce_add_ps(_mm512_add_ps(a[0], a[1])))
    }

    /// `dot4` for two inputs, each block widened once for both; per input the same
    /// accumulators and order as `dot4`, so each result is bit-identical to it.
    #[target_feature(enable = "avx512f,avx512bw,avx2,fma,f16c")]
    pub(crate) unsafe fn dot4x2<F: BlockFormat>(rows: [*const u8; 4], x: [*const f32; 2], k: usize) -> [[f32; 4]; 2] {
        let mut acc = [[[_mm512_setzero_ps(); 2]; 4]; 2];
        for b in 0..k / 32 {
            let x0 = [_mm512_loadu_ps(x[0].add(32 * b)), _mm512_loadu_ps(x[1].add(32 * b))];
            let x1 = [_mm512_loadu_ps(x[0].add(32 * b + 16)), _mm512_loadu_ps(x[1].add(32 * b + 16))];
            for r in 0..4 {
                let (w0, w1) = block::<F>(rows[r].add(b * F::BYTES));
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

    use super::BlockFormat;

    /// Weights `e..e + 8` of the block at `p` times the scale `d` (exact in f32).
    #[inline(always)]
    pub(crate) unsafe fn eight<F: BlockFormat>(p: *const u8, e: usize, d: __m256) -> __m256 {
        _mm256_mul_ps(_mm256_cvtepi32_ps(F::eight(p, e)), d)
    }

    use crate::cpu::simd::avx2::hsum;

    /// `quantize_scalar` for `blocks` whole blocks, 8 lanes at a time: the same scale
    /// (max|x| is exact in any order), the same products and the same rounding (truncate,
    /// then step away from zero where the exact remainder is at least a half). Blocks with
    /// a NaN or infinite value, or whose scale has no finite inverse, are left for the
    /// scalar path: their indices are returned (all of them, when there are any, in a Vec
    /// allocated only then).
    #[target_feature(enable = "avx2")]
    pub(crate) unsafe fn quantize_blocks(x: *const f32, blocks: usize, q: *mut i8, scales: *mut f32) -> Option<Vec<usize>> {
        let mut odd: Option<Vec<usize>> = None;
        let sign_bit = _mm256_set1_ps(-0.0);
        let (half, one) = (_mm256_set1_ps(0.5), _mm256_set1_ps(1.0));
        for b in 0..blocks {
            let p = x.add(32 * b);
            let v = [_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8)), _mm256_loadu_ps(p.add(16)), _mm256_loadu_ps(p.add(24))];
            let mut m = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign_bit, v[0]), _mm256_andnot_ps(sign_bit, v[1])), _mm256_max_ps(_mm256_andnot_ps(sign_bit, v[2]), _mm256_andnot_ps(sign_bit, v[3])));
            m = _mm256_max_ps(m, _mm256_permute2f128_ps::<1>(m, m));
            m = _mm256_max_ps(m, _mm256_shuffle_ps::<0b0100_1110>(m, m));
            m = _mm256_max_ps(m, _mm256_shuffle_ps::<0b1011_0001>(m, m));
            let d = _mm_cvtss_f32(_mm256_castps256_ps128(m)) / 127.0;
            let inv = if d != 0.0 { 1.0 / d } else { 0.0 };
            // A NaN lane compares unordered with itself; an infinite value makes d infinite.
            let unordered = _mm256_or_ps(_mm256_or_ps(_mm256_cmp_ps::<_CMP_UNORD_Q>(v[0], v[0]), _mm256_cmp_ps::<_CMP_UNORD_Q>(v[1], v[1])), _mm256_or_ps(_mm256_cmp_ps::<_CMP_UNORD_Q>(v[2], v[2]), _mm256_cmp_ps::<_CMP_UNORD_Q>(v[3], v[3])));
            let nan = _mm256_movemask_ps(unordered) != 0;
            if nan || !d.is_finite() || !inv.is_finite() {
                odd.get_or_insert_with(Vec::new).push(b);
                continue;
            }
            *scales.add(b) = d;
            let inv = _mm256_set1_ps(inv);
            let mut ints = [_mm256_setzero_si256(); 4];
            for (i, &v) in ints.iter_mut().zip(&v) {
                let y = _mm256_mul_ps(v, inv);
                let t = _mm256_round_ps::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(y);
                let away = _mm256_cmp_ps::<_CMP_GE_OQ>(_mm256_andnot_ps(sign_bit, _mm256_sub_ps(y, t)), half);
                let step = _mm256_and_ps(away, _mm256_or_ps(one, _mm256_and_ps(sign_bit, y)));
                *i = _mm256_cvttps_epi32(_mm256_add_ps(t, step));
            }
            // int32 -> int8 (|q| <= 127, no saturation), restoring the order the lane-wise
            // packs interleave.
            let w01 = _mm256_packs_epi32(ints[0], ints[1]);
            let w23 = _mm256_packs_epi32(ints[2], ints[3]);
            let bytes = _mm256_packs_epi16(w01, w23);
            let ordered = _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
            _mm256_storeu_si256(q.add(32 * b) as *mut __m256i, ordered);
        }
        odd
    }

    /// Four rows of `k` (a multiple of 32) weights against `x`: the accumulators and order
    /// of `simd::avx2::dot4_f32` (16 elements per step, two 8-lane accumulators).
    /// (Each block's scale is read once per row from `F16_TO_F32`: converting it in
    /// registers cost a third of the loop's instructions.)
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) unsafe fn dot4<F: BlockFormat>(rows: [*const u8; 4], x: *const f32, k: usize) -> [f32; 4] {
        let table = super::f16_table().as_ptr();
        let mut acc = [[_mm256_setzero_ps(); 2]; 4];
        for b in 0..k / 32 {
            let o = b * F::BYTES;
            let p = [rows[0].add(o), rows[1].add(o), rows[2].add(o), rows[3].add(o)];
            let d = [super::table_scale(table, p[0]), super::table_scale(table, p[1]), super::table_scale(table, p[2]), super::table_scale(table, p[3])];
            for half in 0..2 {
                let i = 32 * b + 16 * half;
                let x0 = _mm256_loadu_ps(x.add(i));
                let x1 = _mm256_loadu_ps(x.add(i + 8));
                for r in 0..4 {
                    let d = d[r];
                    acc[r][0] = _mm256_fmadd_ps(eight::<F>(p[r], 16 * half, d), x0, acc[r][0]);
                    acc[r][1] = _mm256_fmadd_ps(eight::<F>(p[r], 16 * half + 8, d), x1, acc[r][1]);
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
    use crate::cpu::simd::avx2::hsum;

    /// Σ w·x over one block pair in 8 int32 lanes: both instructions multiply unsigned by
    /// signed bytes, so |w| meets x with w's sign moved onto it.
    #[inline(always)]
    unsafe fn block_dot<const VNNI: bool>(wq: __m256i, xq: __m256i) -> __m256i {
        let (aw, sx) = (_mm256_sign_epi8(wq, wq), _mm256_sign_epi8(xq, wq));
        if VNNI {
            _mm256_dpbusd_epi32(_mm256_setzero_si256(), aw, sx)
        } else {
            _mm256_madd_epi16(_mm256_maddubs_epi16(aw, sx), _mm256_set1_epi16(1))
        }
    }

    /// The block at `p` against input block `b`, scaled by both blocks' scales (the
    /// weight's from `F16_TO_F32` at `table`) and added to `acc`.
    #[inline(always)]
    unsafe fn block_fma<const VNNI: bool>(p: *const u8, x: &QuantizedX, b: usize, table: *const f32, acc: __m256) -> __m256 {
        let xq = _mm256_loadu_si256(x.q.as_ptr().add(32 * b) as *const __m256i);
        let s = _mm256_cvtepi32_ps(block_dot::<VNNI>(_mm256_loadu_si256(p.add(2) as *const __m256i), xq));
        let d = _mm256_mul_ps(super::table_scale(table, p), _mm256_broadcast_ss(&*x.scales.as_ptr().add(b)));
        _mm256_fmadd_ps(s, d, acc)
    }

    /// Prefetches the row at `p` + `distance` bytes (none when `distance` is 0): the
    /// hardware prefetcher alone leaves the kernel waiting on memory (the distance is the
    /// tuned `cpu.q8.prefetch_bytes`).
    #[inline(always)]
    pub(crate) unsafe fn prefetch(p: *const u8, distance: usize) {
        if distance != 0 {
            _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(distance) as *const i8);
        }
    }

    /// One row of `k` (a multiple of 32) weights against the quantized input, block by
    /// block in one sequential stream (two accumulators, even and odd blocks).
    #[inline(always)]
    unsafe fn dot1<const VNNI: bool>(row: *const u8, x: &QuantizedX, k: usize, table: *const f32) -> f32 {
        let (mut even, mut odd) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let blocks = k / 32;
        for b in (0..blocks - blocks % 2).step_by(2) {
            prefetch(row.wrapping_add(b * Q8_BLOCK_BYTES), x.prefetch);
            even = block_fma::<VNNI>(row.add(b * Q8_BLOCK_BYTES), x, b, table, even);
            odd = block_fma::<VNNI>(row.add((b + 1) * Q8_BLOCK_BYTES), x, b + 1, table, odd);
        }
        if blocks % 2 == 1 {
            even = block_fma::<VNNI>(row.add((blocks - 1) * Q8_BLOCK_BYTES), x, blocks - 1, table, even);
        }
        hsum(_mm256_add_ps(even, odd))
    }

    /// `dot1` for two inputs, each weight block loaded once; per input the same order.
    #[inline(always)]
    unsafe fn dot1x2<const VNNI: bool>(row: *const u8, x: [&QuantizedX; 2], k: usize, table: *const f32) -> [f32; 2] {
        let (mut even, mut odd) = ([_mm256_setzero_ps(); 2], [_mm256_setzero_ps(); 2]);
        let blocks = k / 32;
        for b in (0..blocks - blocks % 2).step_by(2) {
            let (p, q) = (row.add(b * Q8_BLOCK_BYTES), row.add((b + 1) * Q8_BLOCK_BYTES));
            prefetch(p, x[0].prefetch);
            even[0] = block_fma::<VNNI>(p, x[0], b, table, even[0]);
            even[1] = block_fma::<VNNI>(p, x[1], b, table, even[1]);
            odd[0] = block_fma::<VNNI>(q, x[0], b + 1, table, odd[0]);
            odd[1] = block_fma::<VNNI>(q, x[1], b + 1, table, odd[1]);
        }
        if blocks % 2 == 1 {
            let p = row.add((blocks - 1) * Q8_BLOCK_BYTES);
            even[0] = block_fma::<VNNI>(p, x[0], blocks - 1, table, even[0]);
            even[1] = block_fma::<VNNI>(p, x[1], blocks - 1, table, even[1]);
        }
        [hsum(_mm256_add_ps(even[0], odd[0])), hsum(_mm256_add_ps(even[1], odd[1]))]
    }

    /// Four rows, one after the other.
    #[inline(always)]
    unsafe fn dot4<const VNNI: bool>(rows: [*const u8; 4], x: &QuantizedX, k: usize) -> [f32; 4] {
        let table = super::f16_table().as_ptr();
        [dot1::<VNNI>(rows[0], x, k, table), dot1::<VNNI>(rows[1], x, k, table), dot1::<VNNI>(rows[2], x, k, table), dot1::<VNNI>(rows[3], x, k, table)]
    }

    #[inline(always)]
    unsafe fn dot4x2<const VNNI: bool>(rows: [*const u8; 4], x: [&QuantizedX; 2], k: usize) -> [[f32; 4]; 2] {
        let table = super::f16_table().as_ptr();
        let (r0, r1, r2, r3) = (dot1x2::<VNNI>(rows[0], x, k, table), dot1x2::<VNNI>(rows[1], x, k, table), dot1x2::<VNNI>(rows[2], x, k, table), dot1x2::<VNNI>(rows[3], x, k, table));
        [[r0[0], r1[0], r2[0], r3[0]], [r0[1], r1[1], r2[1], r3[1]]]
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    pub(crate) unsafe fn dot4_vnni(rows: [*const u8; 4], x: &QuantizedX, k: usize) -> [f32; 4] {
        dot4::<true>(rows, x, k)
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    pub(crate) unsafe fn dot4x2_vnni(rows: [*const u8; 4], x: [&QuantizedX; 2], k: usize) -> [[f32; 4]; 2] {
        dot4x2::<true>(rows, x, k)
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) unsafe fn dot4_avx2(rows: [*const u8; 4], x: &QuantizedX, k: usize) -> [f32; 4] {
        dot4::<false>(rows, x, k)
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) unsafe fn dot4x2_avx2(rows: [*const u8; 4], x: [&QuantizedX; 2], k: usize) -> [[f32; 4]; 2] {
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
        let xq = QuantizedX::new(&x, 1024);
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

    /// The vector quantizer gives the scalar one's bytes and scales, ties included.
    #[test]
    fn vector_quantization_matches_the_scalar_rounding() {
        let mut x: Vec<f32> = (0..32 * 7 + 5).map(|i| ((i * 7919) % 1013) as f32 / 97.0 - 5.2).collect();
        // A block whose products land on halves (max 127: x / d = x), one of zeros, one with
        // a single nonzero value, and negative ties.
        for (j, v) in x[32..64].iter_mut().enumerate() {
            *v = if j == 0 { 127.0 } else { j as f32 - 16.5 };
        }
        x[64..96].fill(0.0);
        x[96..128].iter_mut().enumerate().for_each(|(j, v)| *v = if j == 9 { -3.0 } else { 0.0 });
        // Blocks the vector path hands to the scalar one: a scale with no finite inverse
        // (tiny values), a NaN, an infinity.
        x[128..160].iter_mut().enumerate().for_each(|(j, v)| *v = (j as f32 - 16.0) * 1e-39);
        x[160 + 3] = f32::NAN;
        x[192 + 7] = f32::NEG_INFINITY;
        let blocks = x.len().div_ceil(32);
        let (mut q, mut d) = (vec![0i8; blocks * 32], vec![0f32; blocks]);
        let (mut q0, mut d0) = (vec![0i8; blocks * 32], vec![0f32; blocks]);
        quantize_into(&x, &mut q, &mut d);
        quantize_scalar(&x, &mut q0, &mut d0);
        assert_eq!(q, q0);
        assert_eq!(d.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), d0.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
        assert_eq!(q[32 + 1], -16, "-15.5 rounds away from zero");
        assert_eq!(q[32 + 31], 15, "14.5 rounds away from zero");
    }

    #[test]
    fn int8_products_match_the_integer_sums_and_each_other() {
        if !std::arch::is_x86_feature_detected!("avx2") {
            return println!("SKIPPED: this CPU lacks AVX2");
        }
        let k = 32 * 9;
        let (rows, x, want) = case(k);
        let xq = QuantizedX::new(&x, 1024);
        let stride = k / 32 * Q8_BLOCK_BYTES;
        let ptrs = [0, 1, 2, 3].map(|r| rows[r * stride..].as_ptr());
        // SAFETY: AVX2 was detected; each row holds k / 32 whole blocks.
        let got = unsafe { int8::dot4_avx2(ptrs, &xq, k) };
        // The pair with a different second input: each input gets its own `dot4`'s bits.
        let y: Vec<f32> = x.iter().rev().map(|v| v * 0.7).collect();
        let yq = QuantizedX::new(&y, 0);
        let pair = unsafe { int8::dot4x2_avx2(ptrs, [&xq, &yq], k) };
        let alone = unsafe { int8::dot4_avx2(ptrs, &yq, k) };
        for r in 0..4 {
            // Exact int32 block sums; only the f32 scaling and accumulation round.
            assert!((got[r] as f64 - want[r]).abs() <= 1e-5 * want[r].abs().max(1.0), "row {r}: {} vs {}", got[r], want[r]);
            assert_eq!(pair[0][r].to_bits(), got[r].to_bits(), "dot4x2 row {r}, first input");
            assert_eq!(pair[1][r].to_bits(), alone[r].to_bits(), "dot4x2 row {r}, second input");
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
