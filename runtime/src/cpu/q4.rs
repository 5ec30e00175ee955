//! Q4_0 weight blocks (an f16 scale, then 16 bytes: weights 0..16 in the low nibbles,
//! 16..32 in the high ones, each stored plus 8). Unpacked, a block is 32 integers in
//! -8..=7 times its scale, exact in f32 like Q8_0's, so `exact` runs the widening kernels
//! of `q8.rs` over them and keeps the bits of the f32 product over the dequantized weights.
//!
//! `fast` (every level with 8-bit products) has its own kernel, `int8`: the input in the
//! same 8-bit blocks as for Q8_0, laid out in pairs of blocks (`PairedX`) so that one
//! 32-byte register of nibbles serves two weight blocks, the nibbles multiplied unsigned
//! (0..=15, `vpmaddubsw`) and the 8 · Σx of the stored offset subtracted in int32.

pub(crate) struct Q4;

impl super::q8::BlockFormat for Q4 {
    const BYTES: usize = crate::dtype::Q4_BLOCK_BYTES;

    fn int(block: &[u8], j: usize) -> i32 {
        super::view::q4_weight(block, j)
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn sixteen_i16(p: *const u8, half: usize) -> std::arch::x86_64::__m256i {
        use std::arch::x86_64::*;
        let packed = _mm_loadu_si128(p.add(2) as *const __m128i);
        let nibbles = if half == 0 { packed } else { _mm_srli_epi16::<4>(packed) };
        _mm256_sub_epi16(_mm256_cvtepu8_epi16(_mm_and_si128(nibbles, _mm_set1_epi8(15))), _mm256_set1_epi16(8))
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn eight(p: *const u8, e: usize) -> std::arch::x86_64::__m256i {
        use std::arch::x86_64::*;
        let bytes = _mm256_cvtepu8_epi32(_mm_loadl_epi64(p.add(2 + e % 16) as *const __m128i));
        let nibbles = if e < 16 { _mm256_and_si256(bytes, _mm256_set1_epi32(15)) } else { _mm256_srli_epi32::<4>(bytes) };
        _mm256_sub_epi32(nibbles, _mm256_set1_epi32(8))
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn sixteens(p: *const u8) -> (std::arch::x86_64::__m512i, std::arch::x86_64::__m512i) {
        use std::arch::x86_64::*;
        let bytes = _mm512_cvtepu8_epi32(_mm_loadu_si128(p.add(2) as *const __m128i));
        let eight = _mm512_set1_epi32(8);
        (_mm512_sub_epi32(_mm512_and_si512(bytes, _mm512_set1_epi32(15)), eight), _mm512_sub_epi32(_mm512_srli_epi32::<4>(bytes), eight))
    }
}

/// A quantized input in the layout of the Q4_0 `fast` kernel: per pair of 32-element
/// blocks, the 64 bytes that meet one 32-byte register of nibbles (both blocks' low and
/// high partners); per quad of whole pairs (8 blocks), each block's 8 · Σx (the stored +8
/// taken off) and scale, in the lane order of the kernel's block sums; and, for the pairs
/// after the last whole quad, the same per pair and lane. An odd last block pairs with a
/// zero block.
pub struct PairedX {
    /// Per pair: 32 bytes [x_b[0..16], x_b+1[0..16]], then 32 bytes [x_b[16..32], x_b+1[16..32]].
    q: Vec<i8>,
    /// Per quad, 8 lanes: the first blocks of pairs 0..4 in lanes 0..4, their second
    /// blocks in lanes 4..8; 8 · Σx of the block.
    quad_offsets: Vec<i32>,
    /// Per quad, 8 lanes (as `quad_offsets`): the block's scale.
    quad_scales: Vec<f32>,
    /// Per pair, 8 lanes: 8 · (Σ of the lane's 4 low and 4 high partners). The kernel
    /// reads only the pairs after the last whole quad (filled for all: it is cheap).
    offsets: Vec<i32>,
    /// Per pair, 8 lanes: block b's scale in lanes 0..4, block b + 1's in 4..8 (as
    /// `offsets`, read for the tail only).
    scales: Vec<f32>,
    /// Blocks of 32 elements in the input.
    blocks: usize,
    /// How far ahead the kernel prefetches each weight row, in bytes (0: none).
    prefetch: usize,
}

impl PairedX {
    pub(crate) fn new(x: &super::q8::QuantizedX) -> PairedX {
        let blocks = x.scales.len();
        let pairs = blocks.div_ceil(2);
        let quads = blocks / 8;
        let (mut q, mut offsets, mut scales) = (vec![0i8; pairs * 64], vec![0i32; pairs * 8], vec![0f32; pairs * 8]);
        let (mut quad_offsets, mut quad_scales) = (vec![0i32; quads * 8], vec![0f32; quads * 8]);
        for b in 0..blocks {
            let (pair, side) = (b / 2, b % 2);
            let src = &x.q[32 * b..32 * b + 32];
            q[64 * pair + 16 * side..][..16].copy_from_slice(&src[..16]);
            q[64 * pair + 32 + 16 * side..][..16].copy_from_slice(&src[16..]);
            let mut block_offset = 0;
            for lane in 0..4 {
                let sum: i32 = (0..4).map(|j| src[4 * lane + j] as i32 + src[16 + 4 * lane + j] as i32).sum();
                offsets[8 * pair + 4 * side + lane] = 8 * sum;
                scales[8 * pair + 4 * side + lane] = x.scales[b];
                block_offset += 8 * sum;
            }
            if b < 8 * quads {
                let lane = 8 * (pair / 4) + 4 * side + pair % 4;
                quad_offsets[lane] = block_offset;
                quad_scales[lane] = x.scales[b];
            }
        }
        PairedX { q, quad_offsets, quad_scales, offsets, scales, blocks, prefetch: x.prefetch() }
    }

    fn blocks(&self) -> usize {
        self.blocks
    }
}

#[cfg(target_arch = "x86_64")]
pub mod int8 {
    use std::arch::x86_64::*;

    use super::PairedX;
    use crate::cpu::q8::int8::prefetch;
    use crate::cpu::simd::avx2::hsum;
    use crate::dtype::Q4_BLOCK_BYTES;

    /// The 16 bytes of nibbles of block `b` of the row at `row`.
    #[inline(always)]
    unsafe fn nibbles(row: *const u8, b: usize) -> __m128i {
        _mm_loadu_si128(row.add(b * Q4_BLOCK_BYTES + 2) as *const __m128i)
    }

    /// Weight blocks `b` and `b + 1` of the row at `row` (the second only if `two`, else
    /// zeros) as unsigned nibbles: (low, high), block b's in the low 128 bits of each.
    #[inline(always)]
    unsafe fn unpack_pair(row: *const u8, b: usize, two: bool) -> (__m256i, __m256i) {
        let first = nibbles(row, b);
        let packed = if two { _mm256_inserti128_si256::<1>(_mm256_castsi128_si256(first), nibbles(row, b + 1)) } else { _mm256_zextsi128_si256(first) };
        let mask = _mm256_set1_epi8(15);
        (_mm256_and_si256(packed, mask), _mm256_and_si256(_mm256_srli_epi16::<4>(packed), mask))
    }

    /// An unpacked weight pair against pair `pair` of the input: per 16-bit lane, the sum
    /// of 4 products (at most 4 · 15 · 128 = 7680 in magnitude: the nibbles are unsigned,
    /// <= 15, and an input is -128 at worst, where a block's largest value is subnormal),
    /// block b's in the low 128 bits, block b + 1's in the high.
    #[inline(always)]
    unsafe fn products((lo, hi): (__m256i, __m256i), x: &PairedX, pair: usize) -> __m256i {
        let xq = x.q.as_ptr().add(64 * pair);
        _mm256_add_epi16(_mm256_maddubs_epi16(lo, _mm256_loadu_si256(xq as *const __m256i)), _mm256_maddubs_epi16(hi, _mm256_loadu_si256(xq.add(32) as *const __m256i)))
    }

    /// `products` of weight blocks `b` and `b + 1` (the second only if `two`).
    #[inline(always)]
    unsafe fn pair_products(row: *const u8, b: usize, two: bool, x: &PairedX, pair: usize) -> __m256i {
        products(unpack_pair(row, b, two), x, pair)
    }

    /// One pair (`pair_products`) scaled and added to `acc`: the tail after the quads.
    #[inline(always)]
    unsafe fn pair_fma(row: *const u8, b: usize, two: bool, x: &PairedX, pair: usize, table: *const f32, acc: __m256) -> __m256 {
        let sums = _mm256_sub_epi32(_mm256_madd_epi16(pair_products(row, b, two, x, pair), _mm256_set1_epi16(1)), _mm256_loadu_si256(x.offsets.as_ptr().add(8 * pair) as *const __m256i));
        let d0 = _mm_broadcast_ss(&*table.add(super::super::q8::scale_bits(row.add(b * Q4_BLOCK_BYTES)) as u16 as usize));
        let d1 = if two { _mm_broadcast_ss(&*table.add(super::super::q8::scale_bits(row.add((b + 1) * Q4_BLOCK_BYTES)) as u16 as usize)) } else { _mm_setzero_ps() };
        let d = _mm256_mul_ps(_mm256_set_m128(d1, d0), _mm256_loadu_ps(x.scales.as_ptr().add(8 * pair)));
        _mm256_fmadd_ps(_mm256_cvtepi32_ps(sums), d, acc)
    }

    /// The f16 scales of the 8 blocks at `p` as f32, in the order of a quad's block sums
    /// (blocks 0, 2, 4, 6, then 1, 3, 5, 7). With 18-byte blocks, block i's scale is word
    /// i of the 16 bytes at p + 16i: 8 loads and a tree of word blends, one conversion.
    #[inline(always)]
    unsafe fn quad_scales(p: *const u8) -> __m256 {
        let at = p as *const __m128i;
        let (w0, w1, w2, w3) = (_mm_loadu_si128(at), _mm_loadu_si128(at.add(1)), _mm_loadu_si128(at.add(2)), _mm_loadu_si128(at.add(3)));
        let (w4, w5, w6, w7) = (_mm_loadu_si128(at.add(4)), _mm_loadu_si128(at.add(5)), _mm_loadu_si128(at.add(6)), _mm_loadu_si128(at.add(7)));
        let (s01, s23) = (_mm_blend_epi16::<0b0000_0010>(w0, w1), _mm_blend_epi16::<0b0000_1000>(w2, w3));
        let (s45, s67) = (_mm_blend_epi16::<0b0010_0000>(w4, w5), _mm_blend_epi16::<0b1000_0000>(w6, w7));
        let all = _mm_blend_epi16::<0b1111_0000>(_mm_blend_epi16::<0b0000_1100>(s01, s23), _mm_blend_epi16::<0b1100_0000>(s45, s67));
        _mm256_cvtph_ps(_mm_shuffle_epi8(all, _mm_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15)))
    }

    /// Four pairs' `products` (16-bit lanes) as the 8 blocks' integer sums in the lane
    /// order of `quad_scales`: two levels of 16-bit pairwise adds (at most 4 · 7680 =
    /// 30720 < 2^15, no overflow), then one 32-bit pairwise add, so the 8 blocks cost one
    /// `vpmaddwd` instead of 4; less the stored offsets' 8 · Σx.
    /// (`halves`: the first level, pairs 0 and 1 and pairs 2 and 3.)
    #[inline(always)]
    unsafe fn block_sums(halves: [__m256i; 2], x: &PairedX, quad: usize) -> __m256i {
        let sixteen = _mm256_hadd_epi16(halves[0], halves[1]);
        _mm256_sub_epi32(_mm256_madd_epi16(sixteen, _mm256_set1_epi16(1)), _mm256_loadu_si256(x.quad_offsets.as_ptr().add(8 * quad) as *const __m256i))
    }

    /// Quad `quad` (whole pairs 4·quad..4·quad + 4) of the row: its 8 blocks' sums.
    #[inline(always)]
    unsafe fn quad_sums(row: *const u8, quad: usize, x: &PairedX) -> __m256i {
        // (No closures here: they would not inherit the caller's target features.)
        let (b, pair) = (8 * quad, 4 * quad);
        let (p0, p1) = (pair_products(row, b, true, x, pair), pair_products(row, b + 2, true, x, pair + 1));
        let (p2, p3) = (pair_products(row, b + 4, true, x, pair + 2), pair_products(row, b + 6, true, x, pair + 3));
        block_sums([_mm256_hadd_epi16(p0, p1), _mm256_hadd_epi16(p2, p3)], x, quad)
    }

    /// `quad_sums` for N inputs, each weight pair loaded and unpacked once. (One input
    /// keeps its own `quad_sums` and `dot1`: this kernel at N = 1 read the text head
    /// 5-15 % slower.)
    #[inline(always)]
    unsafe fn quad_sums_n<const N: usize>(row: *const u8, quad: usize, x: [&PairedX; N]) -> [__m256i; N] {
        let (b, pair) = (8 * quad, 4 * quad);
        let (w0, w1) = (unpack_pair(row, b, true), unpack_pair(row, b + 2, true));
        let mut low = [_mm256_setzero_si256(); N];
        for i in 0..N {
            low[i] = _mm256_hadd_epi16(products(w0, x[i], pair), products(w1, x[i], pair + 1));
        }
        let (w2, w3) = (unpack_pair(row, b + 4, true), unpack_pair(row, b + 6, true));
        let mut sums = [_mm256_setzero_si256(); N];
        for i in 0..N {
            let high = _mm256_hadd_epi16(products(w2, x[i], pair + 2), products(w3, x[i], pair + 3));
            sums[i] = block_sums([low[i], high], x[i], quad);
        }
        sums
    }

    /// The quads' sums `sums` times the weight scales `dw` and the input's scales, added to
    /// the even or odd accumulator.
    #[inline(always)]
    unsafe fn quad_fma(sums: __m256i, dw: __m256, x: &PairedX, quad: usize, even: &mut __m256, odd: &mut __m256) {
        let d = _mm256_mul_ps(dw, _mm256_loadu_ps(x.quad_scales.as_ptr().add(8 * quad)));
        let sums = _mm256_cvtepi32_ps(sums);
        if quad.is_multiple_of(2) {
            *even = _mm256_fmadd_ps(sums, d, *even);
        } else {
            *odd = _mm256_fmadd_ps(sums, d, *odd);
        }
    }

    /// The pairs after the last whole quad and an odd last block, into `tail`.
    #[inline(always)]
    unsafe fn tail(row: *const u8, x: &PairedX, blocks: usize, table: *const f32) -> __m256 {
        let mut tail = _mm256_setzero_ps();
        for pair in 4 * (blocks / 8)..blocks / 2 {
            tail = pair_fma(row, 2 * pair, true, x, pair, table, tail);
        }
        if blocks % 2 == 1 {
            tail = pair_fma(row, blocks - 1, false, x, blocks / 2, table, tail);
        }
        tail
    }

    /// One row of `blocks` weight blocks against the input in one sequential stream: whole
    /// quads of 8 blocks (two accumulators, even and odd quads), then `tail`.
    #[inline(always)]
    unsafe fn dot1(row: *const u8, x: &PairedX, blocks: usize, table: *const f32) -> f32 {
        let (mut even, mut odd) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        for quad in 0..blocks / 8 {
            let p = row.add(8 * quad * Q4_BLOCK_BYTES);
            prefetch(p, x.prefetch);
            prefetch(p.wrapping_add(4 * Q4_BLOCK_BYTES), x.prefetch);
            quad_fma(quad_sums(row, quad, x), quad_scales(p), x, quad, &mut even, &mut odd);
        }
        hsum(_mm256_add_ps(_mm256_add_ps(even, odd), tail(row, x, blocks, table)))
    }

    /// `dot1` for N inputs, each quad's weights loaded, unpacked and scaled once; each
    /// result is bit-identical to `dot1` on its input alone (the same integer sums, the
    /// same f32 operations in the same order).
    #[inline(always)]
    unsafe fn dot1_n<const N: usize>(row: *const u8, x: [&PairedX; N], blocks: usize, table: *const f32) -> [f32; N] {
        let (mut even, mut odd) = ([_mm256_setzero_ps(); N], [_mm256_setzero_ps(); N]);
        for quad in 0..blocks / 8 {
            let p = row.add(8 * quad * Q4_BLOCK_BYTES);
            prefetch(p, x[0].prefetch);
            prefetch(p.wrapping_add(4 * Q4_BLOCK_BYTES), x[0].prefetch);
            let sums = quad_sums_n(row, quad, x);
            let dw = quad_scales(p);
            for i in 0..N {
                quad_fma(sums[i], dw, x[i], quad, &mut even[i], &mut odd[i]);
            }
        }
        let mut out = [0f32; N];
        for i in 0..N {
            out[i] = hsum(_mm256_add_ps(_mm256_add_ps(even[i], odd[i]), tail(row, x[i], blocks, table)));
        }
        out
    }

    /// Four Q4_0 rows of `k` (a multiple of 32) weights, one after the other. Safety: each
    /// row holds k / 32 whole blocks; the input's blocks are checked here (the kernel reads
    /// them by index).
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) unsafe fn dot4(rows: [*const u8; 4], x: &PairedX, k: usize) -> [f32; 4] {
        let (table, blocks) = (super::super::q8::f16_table().as_ptr(), k / 32);
        assert!(x.blocks() >= blocks, "q4_0 input of {} blocks for rows of {blocks}", x.blocks());
        rows.map(|row| dot1(row, x, blocks, table))
    }

    /// `dot4` for N inputs (2 or 4: the batched decode's groups); each result is
    /// bit-identical to `dot4` on its input alone.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) unsafe fn dot4_n<const N: usize>(rows: [*const u8; 4], x: [&PairedX; N], k: usize) -> [[f32; 4]; N] {
        let (table, blocks) = (super::super::q8::f16_table().as_ptr(), k / 32);
        assert!(x.iter().all(|x| x.blocks() >= blocks), "q4_0 inputs shorter than rows of {blocks} blocks");
        let mut out = [[0f32; 4]; N];
        for (r, &row) in rows.iter().enumerate() {
            let d = dot1_n(row, x, blocks, table);
            for i in 0..N {
                out[i][r] = d[i];
            }
        }
        out
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use std::arch::x86_64::*;

    use super::super::q8::BlockFormat;
    use super::Q4;

    /// A block holding every nibble value in both halves, and its weights' integers.
    fn block() -> ([u8; 18], [i32; 32]) {
        let mut b = [0u8; 18];
        b[..2].copy_from_slice(&half::f16::from_f32(0.5).to_le_bytes());
        let mut want = [0i32; 32];
        for j in 0..16 {
            let (lo, hi) = (j as u8, (15 - j as u8 + 3) % 16);
            b[2 + j] = lo | hi << 4;
            want[j] = lo as i32 - 8;
            want[j + 16] = hi as i32 - 8;
        }
        (b, want)
    }

    #[test]
    fn every_unpacking_gives_the_stored_integers_in_order() {
        let (b, want) = block();
        for (j, &w) in want.iter().enumerate() {
            assert_eq!(crate::cpu::view::q4_weight(&b, j), w, "q4_weight {j}");
        }
        if !std::arch::is_x86_feature_detected!("avx2") {
            return println!("SKIPPED the vector unpacking: this CPU lacks AVX2");
        }
        // SAFETY: AVX2 was detected.
        let (eights, sixteens) = unsafe { avx2_unpack(&b) };
        for (i, lanes) in eights.iter().enumerate() {
            assert_eq!(lanes[..], want[8 * i..8 * i + 8], "eight at {}", 8 * i);
        }
        for (half, lanes) in sixteens.iter().enumerate() {
            assert_eq!(lanes.map(i32::from)[..], want[16 * half..16 * half + 16], "sixteen_i16, half {half}");
        }
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: AVX-512F was detected.
            let (lo, hi) = unsafe { sixteens_of(&b) };
            assert_eq!(lo, want[..16], "sixteens, low");
            assert_eq!(hi, want[16..], "sixteens, high");
        } else {
            println!("SKIPPED the AVX-512 unpacking: this CPU lacks AVX-512F");
        }
    }

    /// The fast kernel against the integer sums (every nibble value, odd and even block
    /// counts), and each input of a pair or a group of four against its own `dot4`.
    #[test]
    fn int8_products_match_the_integer_sums_and_pairs_match_singles() {
        if !crate::cpu::Isa::Avx2.available() {
            return println!("SKIPPED: this CPU lacks AVX2/FMA/F16C");
        }
        // Whole quads of 8 blocks, the pairs after them, an odd last block.
        for blocks in [1, 2, 3, 4, 7, 8, 9, 10, 11, 15, 16, 17, 23, 96] {
            let k = 32 * blocks;
            let mut rows = vec![0u8; 4 * blocks * 18];
            for (i, block) in rows.chunks_mut(18).enumerate() {
                block[..2].copy_from_slice(&half::f16::from_f32(0.01 + (i % 7) as f32 * 0.003).to_le_bytes());
                for (j, b) in block[2..].iter_mut().enumerate() {
                    *b = ((i * 16 + j) * 37 % 256) as u8;
                }
            }
            let x: Vec<f32> = (0..k).map(|i| ((i * 7919) % 211) as f32 * 0.013 - 1.3).collect();
            let y: Vec<f32> = x.iter().rev().map(|v| v * 0.7).collect();
            let (xq, yq) = (crate::cpu::q8::QuantizedX::new(&x, 64), crate::cpu::q8::QuantizedX::new(&y, 0));
            let (xp, yp) = (super::PairedX::new(&xq), super::PairedX::new(&yq));
            let ptrs = [0, 1, 2, 3].map(|r| rows[r * blocks * 18..].as_ptr());
            // SAFETY: AVX2 was detected; each row holds `blocks` whole blocks.
            let (got, pair, alone) = unsafe { (super::int8::dot4(ptrs, &xp, k), super::int8::dot4_n(ptrs, [&xp, &yp], k), super::int8::dot4(ptrs, &yp, k)) };
            let z: Vec<f32> = x.iter().map(|v| v.sin() * 3.0).collect();
            let zp = super::PairedX::new(&crate::cpu::q8::QuantizedX::new(&z, 0));
            // SAFETY: as above.
            let (four, z_alone) = unsafe { (super::int8::dot4_n(ptrs, [&yp, &zp, &xp, &zp], k), super::int8::dot4(ptrs, &zp, k)) };
            for r in 0..4 {
                let mut want = 0f64;
                for b in 0..blocks {
                    let block = &rows[(r * blocks + b) * 18..][..18];
                    let d = half::f16::from_le_bytes([block[0], block[1]]).to_f64();
                    let sum: i64 = (0..32).map(|j| crate::cpu::view::q4_weight(block, j) as i64 * xq.q[32 * b + j] as i64).sum();
                    want += d * xq.scales[b] as f64 * sum as f64;
                }
                // Exact int32 block sums; only the f32 scaling and accumulation round.
                assert!((got[r] as f64 - want).abs() <= 1e-5 * want.abs().max(1.0), "{blocks} blocks, row {r}: {} vs {want}", got[r]);
                assert_eq!(pair[0][r].to_bits(), got[r].to_bits(), "dot4_n::<2> row {r}, first input");
                assert_eq!(pair[1][r].to_bits(), alone[r].to_bits(), "dot4_n::<2> row {r}, second input");
                for (i, want) in [alone[r], z_alone[r], got[r], z_alone[r]].into_iter().enumerate() {
                    assert_eq!(four[i][r].to_bits(), want.to_bits(), "dot4_n::<4> row {r}, input {i}");
                }
            }
        }
    }

    /// The largest 16-bit partial sums a quad can form (every nibble 15 or 0, every input
    /// ±127) stay exact: the sums are 8 blocks of 32 · 7 · 127 or 32 · -8 · 127.
    #[test]
    fn extreme_blocks_sum_without_overflow() {
        if !crate::cpu::Isa::Avx2.available() {
            return println!("SKIPPED: this CPU lacks AVX2/FMA/F16C");
        }
        let blocks = 16;
        for (nibbles, level) in [(0xffu8, 7i64), (0x00, -8)] {
            for sign in [1f32, -1.0] {
                let mut rows = vec![nibbles; 4 * blocks * 18];
                for block in rows.chunks_mut(18) {
                    block[..2].copy_from_slice(&half::f16::from_f32(1.0).to_le_bytes());
                }
                let x = vec![sign * 2.0; 32 * blocks];
                let xq = crate::cpu::q8::QuantizedX::new(&x, 0);
                assert!(xq.q.iter().all(|&q| q as f32 == sign * 127.0));
                let ptrs = [0, 1, 2, 3].map(|r| rows[r * blocks * 18..].as_ptr());
                // SAFETY: AVX2 was detected; each row holds `blocks` whole blocks.
                let got = unsafe { super::int8::dot4(ptrs, &super::PairedX::new(&xq), 32 * blocks) };
                let want = (blocks as i64 * 32 * level * 127) as f64 * sign as f64 * xq.scales[0] as f64;
                for g in got {
                    assert!((g as f64 - want).abs() <= 1e-6 * want.abs(), "nibbles {nibbles:#x}, sign {sign}: {g} vs {want}");
                }
            }
        }
    }

    #[target_feature(enable = "avx2")]
    unsafe fn avx2_unpack(b: &[u8; 18]) -> ([[i32; 8]; 4], [[i16; 16]; 2]) {
        let mut eights = [[0i32; 8]; 4];
        for (i, lanes) in eights.iter_mut().enumerate() {
            _mm256_storeu_si256(lanes.as_mut_ptr() as *mut __m256i, Q4::eight(b.as_ptr(), 8 * i));
        }
        let mut sixteens = [[0i16; 16]; 2];
        for (half, lanes) in sixteens.iter_mut().enumerate() {
            _mm256_storeu_si256(lanes.as_mut_ptr() as *mut __m256i, Q4::sixteen_i16(b.as_ptr(), half));
        }
        (eights, sixteens)
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn sixteens_of(b: &[u8; 18]) -> ([i32; 16], [i32; 16]) {
        let (lo, hi) = Q4::sixteens(b.as_ptr());
        let (mut a, mut c) = ([0i32; 16], [0i32; 16]);
        _mm512_storeu_si512(a.as_mut_ptr() as *mut _, lo);
        _mm512_storeu_si512(c.as_mut_ptr() as *mut _, hi);
        (a, c)
    }
}
