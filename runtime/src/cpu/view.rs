//! Typed slices over CPU tensors.
//!
//! Soundness: `Op::validate` guarantees every view lies inside its buffer, is aligned
//! for its dtype (buffers are 64-byte aligned, weights are copied when misaligned) and
//! that outputs do not overlap inputs (elementwise ops handle exact in-place aliasing
//! themselves). `Cpu` holds its lock for the whole op, so no other op writes meanwhile.

use super::Cpu;
use super::q4::Q4;
use super::q8::{BlockFormat, Q8};
use crate::dtype::{Q4_BLOCK_BYTES, Q8_BLOCK, Q8_BLOCK_BYTES};
use crate::{DType, Error, Result, Tensor};

/// Rows of a weight in its stored dtype (f16/bf16 as raw bits, Q8_0 and Q4_0 as their
/// blocks).
#[derive(Clone, Copy)]
pub enum WeightSlice<'a> {
    F32(&'a [f32]),
    F16(&'a [u16]),
    BF16(&'a [u16]),
    Q8_0(&'a [u8]),
    Q4_0(&'a [u8]),
}

impl WeightSlice<'_> {
    /// Number of weights.
    pub fn len(&self) -> usize {
        match self {
            WeightSlice::F32(s) => s.len(),
            WeightSlice::F16(s) | WeightSlice::BF16(s) => s.len(),
            WeightSlice::Q8_0(b) => b.len() / Q8_BLOCK_BYTES * Q8_BLOCK,
            WeightSlice::Q4_0(b) => b.len() / Q4_BLOCK_BYTES * Q8_BLOCK,
        }
    }

    /// Element `i` widened to f32 (for Q8_0 and Q4_0 its scale times its integer, exact in
    /// f32).
    #[inline(always)]
    pub fn get(&self, i: usize) -> f32 {
        match self {
            WeightSlice::F32(s) => s[i],
            WeightSlice::F16(s) => half::f16::from_bits(s[i]).to_f32(),
            WeightSlice::BF16(s) => crate::dtype::bf16_bits_to_f32(s[i]),
            WeightSlice::Q8_0(b) => block_weight::<Q8>(b, i),
            WeightSlice::Q4_0(b) => block_weight::<Q4>(b, i),
        }
    }

    /// Elements `start..start + len`, widened into `dst`.
    pub fn widen_into(&self, start: usize, dst: &mut [f32]) {
        let len = dst.len();
        match self {
            WeightSlice::F32(s) => dst.copy_from_slice(&s[start..start + len]),
            WeightSlice::F16(s) => super::simd::widen_f16(&s[start..start + len], dst),
            WeightSlice::BF16(s) => super::simd::widen_bf16(&s[start..start + len], dst),
            WeightSlice::Q8_0(b) => {
                assert!(start + len <= self.len(), "widen_into out of bounds");
                widen_blocks::<Q8>(b, start, dst)
            }
            WeightSlice::Q4_0(b) => {
                assert!(start + len <= self.len(), "widen_into out of bounds");
                widen_blocks::<Q4>(b, start, dst)
            }
        }
    }
}

/// Element `i` of blocks of format F, widened (exact in f32).
#[inline(always)]
fn block_weight<F: BlockFormat>(blocks: &[u8], i: usize) -> f32 {
    let block = &blocks[i / Q8_BLOCK * F::BYTES..][..F::BYTES];
    q8_scale(block) * F::int(block, i % Q8_BLOCK) as f32
}

/// Elements `start..start + dst.len()` of blocks of format F, widened a block at a time.
fn widen_blocks<F: BlockFormat>(blocks: &[u8], start: usize, dst: &mut [f32]) {
    let mut i = 0;
    while i < dst.len() {
        let e = start + i;
        let block = &blocks[e / Q8_BLOCK * F::BYTES..][..F::BYTES];
        let d = q8_scale(block);
        let take = (Q8_BLOCK - e % Q8_BLOCK).min(dst.len() - i);
        for (j, o) in dst[i..i + take].iter_mut().enumerate() {
            *o = d * F::int(block, e % Q8_BLOCK + j) as f32;
        }
        i += take;
    }
}

/// Weight `j` (0..32) of a Q4_0 block as its integer: a low nibble for 0..16, a high one
/// for 16..32, stored plus 8.
#[inline(always)]
pub fn q4_weight(block: &[u8], j: usize) -> i32 {
    let byte = block[2 + j % 16];
    (if j < 16 { byte & 15 } else { byte >> 4 }) as i32 - 8
}

/// The f16 scale of a Q8_0 or Q4_0 block, widened.
#[inline(always)]
pub fn q8_scale(block: &[u8]) -> f32 {
    half::f16::from_bits(u16::from_le_bytes([block[0], block[1]])).to_f32()
}

unsafe fn raw<T>(t: &Tensor<Cpu>) -> *const T {
    t.buffer().base_ptr().add(t.byte_offset()) as *const T
}

pub fn f32s(t: &Tensor<Cpu>) -> &[f32] {
    debug_assert_eq!(t.dtype(), DType::F32);
    // SAFETY: see the module comment.
    unsafe { std::slice::from_raw_parts(raw::<f32>(t), t.numel()) }
}

pub fn u32s(t: &Tensor<Cpu>) -> &[u32] {
    debug_assert_eq!(t.dtype(), DType::U32);
    // SAFETY: see the module comment.
    unsafe { std::slice::from_raw_parts(raw::<u32>(t), t.numel()) }
}

#[allow(clippy::mut_from_ref)]
pub fn f32s_mut(t: &Tensor<Cpu>) -> Result<&mut [f32]> {
    debug_assert_eq!(t.dtype(), DType::F32);
    let base = t.buffer().base_ptr_mut().ok_or(Error::ReadOnly { op: "cpu op" })?;
    // SAFETY: see the module comment; owned buffers are writable.
    Ok(unsafe { std::slice::from_raw_parts_mut(base.add(t.byte_offset()) as *mut f32, t.numel()) })
}

#[allow(clippy::mut_from_ref)]
pub fn u32s_mut(t: &Tensor<Cpu>) -> Result<&mut [u32]> {
    debug_assert_eq!(t.dtype(), DType::U32);
    let base = t.buffer().base_ptr_mut().ok_or(Error::ReadOnly { op: "cpu op" })?;
    // SAFETY: as for f32s_mut.
    Ok(unsafe { std::slice::from_raw_parts_mut(base.add(t.byte_offset()) as *mut u32, t.numel()) })
}

/// A weight's paired copy, when `t` views all of it (a narrowed view reads `weight_rows`).
pub fn paired(t: &Tensor<Cpu>) -> Option<&super::gemm_bf16::PairedWeight> {
    let pairs = t.buffer().pairs()?;
    let (n, k) = pairs.shape();
    (t.byte_offset() == 0 && t.shape() == [n, k]).then_some(pairs)
}

pub fn weight_rows(t: &Tensor<Cpu>) -> WeightSlice<'_> {
    // SAFETY: see the module comment.
    unsafe {
        match t.dtype() {
            DType::F32 => WeightSlice::F32(std::slice::from_raw_parts(raw::<f32>(t), t.numel())),
            DType::F16 => WeightSlice::F16(std::slice::from_raw_parts(raw::<u16>(t), t.numel())),
            DType::BF16 => WeightSlice::BF16(std::slice::from_raw_parts(raw::<u16>(t), t.numel())),
            DType::Q8_0 => WeightSlice::Q8_0(std::slice::from_raw_parts(raw::<u8>(t), t.size_bytes())),
            DType::Q4_0 => WeightSlice::Q4_0(std::slice::from_raw_parts(raw::<u8>(t), t.size_bytes())),
            DType::U32 => unreachable!("validated ops never pass u32 weights"),
        }
    }
}

/// A raw f32 output pointer shared by parallel tasks that write disjoint elements.
#[derive(Clone, Copy)]
pub struct SharedOut(*mut f32);
// SAFETY: users give every task a disjoint set of elements to write (see each call site).
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

impl SharedOut {
    pub fn new(out: &mut [f32]) -> Self {
        SharedOut(out.as_mut_ptr())
    }

    /// # Safety
    /// `i` must be in bounds of the slice this came from and written by no other task.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn at(&self, i: usize) -> &mut f32 {
        &mut *self.0.add(i)
    }

    /// Element `i` as a pointer, for kernels that write a block through it.
    /// # Safety
    /// `i` must be in bounds of the slice this came from; what is written through the
    /// pointer must be too, and written by no other task.
    pub unsafe fn ptr(&self, i: usize) -> *mut f32 {
        self.0.add(i)
    }

    /// # Safety
    /// `start..start + len` must be in bounds of the slice this came from and written by no
    /// other task.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn slice(&self, start: usize, len: usize) -> &mut [f32] {
        std::slice::from_raw_parts_mut(self.0.add(start), len)
    }
}
