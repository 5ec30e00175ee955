//! The fast precision's 6 x 64 register tile over bf16 pairs with x broadcast straight
//! from rows of pairs (the packed GEMM's tile reads them interleaved): per pair, four
//! weight loads and six 4-byte broadcasts feed 24 `vdpbf16ps`. Operands that already lie
//! in rows need no packing: the attention's queries and probabilities, a convolution's
//! time-major input (each output frame's window is a row, its taps runs within it).

use super::gemm::{MR, NR};
use super::gemm_bf16::GROUPS;

/// Output columns of one tile.
pub(super) const COLS: usize = GROUPS * NR;

/// Where a row's pairs lie: `count` runs of `pairs` consecutive pairs, each `step` pairs
/// after the one before (one run for plain rows; a dilated convolution's taps). The b
/// operand holds the runs' pairs back to back.
#[derive(Clone, Copy, Debug)]
pub(super) struct Runs {
    pub count: usize,
    pub pairs: usize,
    pub step: usize,
}

impl Runs {
    /// `pairs` consecutive pairs.
    pub fn plain(pairs: usize) -> Runs {
        Runs { count: 1, pairs, step: 0 }
    }

    /// Pairs of a row from its first to past its last read.
    fn span(self) -> usize {
        if self.count == 0 || self.pairs == 0 {
            0
        } else {
            (self.count - 1) * self.step + self.pairs
        }
    }
}

/// out[r][..64] = a[r] · b for the MR rows: a rows of pairs read as `runs` says, b GROUPS
/// panels [runs.count · runs.pairs][NR] `stride` apart. `isa` must have bf16 dot products.
pub(super) fn tile<'o>(runs: Runs, a: [&[u32]; MR], b: &[u32], stride: usize, out: impl Iterator<Item = &'o mut [f32]>) {
    let mut out: Vec<&mut [f32]> = out.collect();
    let inner = runs.count * runs.pairs;
    assert!(out.len() >= MR && out.iter().all(|o| o.len() >= COLS), "pair tile outputs");
    assert!(a.iter().all(|r| r.len() >= runs.span()) && (inner == 0 || b.len() >= (GROUPS - 1) * stride + inner * NR), "pair tile operands");
    let out: [*mut f32; MR] = std::array::from_fn(|r| out[r].as_mut_ptr());
    // SAFETY: reached from the bf16 attention and convolution only, which assert
    // AVX512-BF16; bounds asserted above, and each output row is a distinct mutable borrow.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        kernel::tile(runs, a.map(|r| r.as_ptr()), b.as_ptr(), stride, out)
    };
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("AVX512-BF16 exists only on x86-64 ({runs:?}, {stride}, {})", a.len() + b.len() + out.len());
}

/// `src` rounded to bf16 pairs of consecutive elements into `dst` (whole 16-pair chunks,
/// zero past `src`): each pair is the u32 of two consecutive bf16 values.
pub(super) fn round_pairs(src: &[f32], dst: &mut [u32]) {
    assert!(dst.len().is_multiple_of(16) && 2 * dst.len() >= src.len(), "pairs of {} values into {}", src.len(), dst.len());
    // SAFETY: u32 storage viewed as twice as many u16 (alignment 4 ≥ 2); little-endian
    // x86-64 puts the lower index in the low half, the pair layout of `vdpbf16ps`.
    let halves = unsafe { std::slice::from_raw_parts_mut(dst.as_mut_ptr() as *mut u16, 2 * dst.len()) };
    super::gemm_bf16_rows::round_row(src, halves);
}

#[cfg(target_arch = "x86_64")]
mod kernel {
    use std::arch::x86_64::*;

    use super::{Runs, GROUPS, MR, NR};

    /// The tile from zero, each row's 64 sums stored to its own output row.
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    pub(super) unsafe fn tile(runs: Runs, a: [*const u32; MR], b: *const u32, stride: usize, out: [*mut f32; MR]) {
        let mut acc = [[_mm512_setzero_ps(); GROUPS]; MR];
        for run in 0..runs.count {
            let (a, b) = (a.map(|r| r.add(run * runs.step)), b.add(run * runs.pairs * NR));
            for kk in 0..runs.pairs {
                let bv: [__m512bh; GROUPS] = std::array::from_fn(|g| std::mem::transmute(_mm512_loadu_si512(b.add(g * stride + kk * NR) as *const _)));
                for (i, row) in acc.iter_mut().enumerate() {
                    let x: __m512bh = std::mem::transmute(_mm512_set1_epi32(*a[i].add(kk) as i32));
                    for (v, bg) in row.iter_mut().zip(bv) {
                        *v = _mm512_dpbf16_ps(*v, x, bg);
                    }
                }
            }
        }
        for (row, o) in acc.iter().zip(out) {
            for (g, v) in row.iter().enumerate() {
                _mm512_storeu_ps(o.add(g * NR), *v);
            }
        }
    }
}
