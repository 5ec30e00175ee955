//! The fast precision's channels-last 2-D convolution on the AVX512-BF16 levels, direct
//! on the pair tile (`pair_tile.rs`), as `conv_bf16.rs` runs the 1-D ones: each image is
//! rounded once into bf16 pairs with its padding as zero pixels, and each output position's
//! window is a row of the tile read where it lies, its KH kernel rows runs of KW · C_in
//! values one padded input line apart. One output line is a batch of the tile's rows;
//! the implicit GEMM (`conv2d.rs`) copied every window into an f32 im2col block first.

use rayon::prelude::*;

use super::conv2d::{bias_relu_store, Conv2dDims};
use super::pair_tile::{round_pairs, sweep, weight_pairs, Rows, Runs};
use super::simd::Isa;
use super::view::{SharedOut, WeightSlice};
use crate::aligned::AlignedVec;
use crate::op::Conv2dParams;

/// Output channels from which the tile runs the convolution (as for 1-D convolutions).
const MIN_OUT_CHANNELS: usize = 64;

/// Whether this level runs the convolution here: bf16 dot products and an even input
/// channel count (every window starts on a whole pair).
pub(super) fn applies(isa: Isa, d: Conv2dDims) -> bool {
    isa.bf16_dot() && d.c_in.is_multiple_of(2) && d.c_in > 0 && d.kh > 0 && d.kw > 0 && d.c_out >= MIN_OUT_CHANNELS
}

/// Conv2d: x [B, H, W, C_in], w [C_out, KH, KW, C_in], out [B, OH, OW, C_out]: sum + bias,
/// plus what out held with `accumulate`, then ReLU with `relu`.
pub(super) fn conv2d(isa: Isa, x: &[f32], w: WeightSlice, bias: &[f32], out: &mut [f32], d: Conv2dDims, p: Conv2dParams) {
    assert!(applies(isa, d), "the bf16 2-D convolution does not apply at {} to {} -> {} channels", isa.key(), d.c_in, d.c_out);
    assert!(
        x.len() >= d.batch * d.h * d.w * d.c_in && out.len() >= d.batch * d.oh * d.ow * d.c_out && w.len() >= d.c_out * d.kh * d.kw * d.c_in && bias.len() >= d.c_out,
        "2-D convolution operands for batch {}, {} x {} -> {} x {}, {} -> {} channels, kernel {} x {}",
        d.batch,
        d.h,
        d.w,
        d.oh,
        d.ow,
        d.c_in,
        d.c_out,
        d.kh,
        d.kw
    );
    if d.batch * d.oh * d.ow == 0 {
        return;
    }
    let c2 = d.c_in / 2;
    // Padded lines and pixels the windows cover, from (−pad, −pad).
    let (lines, pixels) = ((d.oh - 1) * p.stride[0] + d.kh, (d.ow - 1) * p.stride[1] + d.kw);
    let line = pixels * c2;
    let weights = weight_pairs(w, d.c_out, d.kh * d.kw * d.c_in);
    let runs = Runs { count: d.kh, pairs: d.kw * c2, step: line };
    // Aligned: a line of whole 16-pair steps starts cache lines, as AMX tile rows should.
    let mut image = AlignedVec::<u32>::zeroed(lines * line);
    let shared = SharedOut::new(out);
    for b in 0..d.batch {
        padded_image(&x[b * d.h * d.w * d.c_in..][..d.h * d.w * d.c_in], d, p, pixels, &mut image);
        let rows = Rows { input: &image, batches: d.oh, batch_step: p.stride[0] * line, per_batch: d.kh * line, count: d.ow, step: p.stride[1] * c2, runs };
        sweep(isa, &rows, &weights, d.c_out, |i, j, c0, sums| {
            // SAFETY: `sweep` hands each (output position, column group) to one task only;
            // in bounds (asserted above).
            let dst = unsafe { shared.slice(((b * d.oh + i) * d.ow + j) * d.c_out + c0, sums.len()) };
            bias_relu_store(dst, sums, &bias[c0..], p.accumulate, p.relu);
        });
    }
}

/// One image [H, W, C_in] as bf16 pairs in `image`: `lines` of `pixels` from (−pad, −pad),
/// zero outside the input.
fn padded_image(x: &[f32], d: Conv2dDims, p: Conv2dParams, pixels: usize, image: &mut [u32]) {
    let c2 = d.c_in / 2;
    let lead = p.pad[1].min(pixels);
    let count = d.w.min(pixels - lead);
    // A line's pairs are rounded in whole 16-pair chunks into a task's buffer, so no chunk
    // spills past the line.
    let chunked = (count * d.c_in).div_ceil(32) * 16;
    image.par_chunks_mut(pixels * c2).enumerate().for_each_init(|| vec![0u32; chunked], |tmp, (py, dst)| {
        dst.fill(0);
        let Some(hi) = py.checked_sub(p.pad[0]).filter(|&hi| hi < d.h) else { return };
        if count == 0 {
            return;
        }
        round_pairs(&x[hi * d.w * d.c_in..][..count * d.c_in], tmp);
        dst[lead * c2..][..count * c2].copy_from_slice(&tmp[..count * c2]);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::super::pair_tile::test_operands::{bf16, levels, values};

    /// Against the direct sum in f64 of the bf16-rounded operands: MusicFM's strided and
    /// residual convolutions (stride 2 with padding, stride 1 with accumulate and ReLU), a
    /// non-square kernel with uneven strides, a partial column group and row panel, two
    /// images; the last two on AMX tiles at that level (lines of 16 and 17 outputs, so
    /// tasks take whole lines, and a short last panel); and every split into tasks gives
    /// the same bits.
    #[test]
    fn matches_the_rounded_direct_sum() {
        // (h, w, c_in, c_out, kh, kw, stride, pad, accumulate, relu)
        let cases = [
            (13usize, 11usize, 6usize, 70usize, 3usize, 3usize, [2usize, 2usize], [1usize, 1usize], false, true),
            (9, 10, 8, 64, 3, 3, [1, 1], [1, 1], true, true),
            (7, 12, 4, 66, 2, 3, [1, 2], [0, 1], true, false),
            (40, 16, 32, 64, 3, 3, [1, 1], [1, 1], true, true),
            (30, 33, 32, 70, 3, 3, [2, 2], [1, 1], false, false),
        ];
        for (isa, (h, w, c_in, c_out, kh, kw, stride, pad, accumulate, relu)) in levels().into_iter().flat_map(|isa| cases.map(|c| (isa, c))) {
            let batch = 2;
            let (oh, ow) = ((h + 2 * pad[0] - kh) / stride[0] + 1, (w + 2 * pad[1] - kw) / stride[1] + 1);
            let d = Conv2dDims { batch, h, w, c_in, oh, ow, c_out, kh, kw };
            let p = Conv2dParams { stride, pad, accumulate, relu };
            let (x, wt) = (values(batch * h * w * c_in, 1, 2.0), values(c_out * kh * kw * c_in, 2, 2.0));
            let bias: Vec<f32> = (0..c_out).map(|o| o as f32 * 0.01 - 0.3).collect();
            let before = values(batch * oh * ow * c_out, 3, 2.0);
            let mut out = before.clone();
            conv2d(isa, &x, WeightSlice::F32(&wt), &bias, &mut out, d, p);
            for (idx, &got) in out.iter().enumerate() {
                let (b, i, j, o) = (idx / (oh * ow * c_out), idx / (ow * c_out) % oh, idx / c_out % ow, idx % c_out);
                let mut v = bias[o] as f64;
                for kp in 0..kh {
                    let Some(hi) = (i * stride[0] + kp).checked_sub(pad[0]).filter(|&v| v < h) else { continue };
                    for kq in 0..kw {
                        let Some(wi) = (j * stride[1] + kq).checked_sub(pad[1]).filter(|&v| v < w) else { continue };
                        v += (0..c_in).map(|c| bf16(wt[((o * kh + kp) * kw + kq) * c_in + c]) * bf16(x[((b * h + hi) * w + wi) * c_in + c])).sum::<f64>();
                    }
                }
                if accumulate {
                    v += before[idx] as f64;
                }
                let want = if relu { v.max(0.0) } else { v };
                assert!((got as f64 - want).abs() <= 1e-5 * (1.0 + want.abs()), "{}, c_in {c_in}, output {idx}: {got} vs {want}", isa.key());
            }
            for threads in [1, 3] {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                let mut again = before.clone();
                pool.install(|| conv2d(isa, &x, WeightSlice::F32(&wt), &bias, &mut again, d, p));
                assert!(again.iter().zip(&out).all(|(a, b)| a.to_bits() == b.to_bits()), "{}, c_in {c_in}: {threads} threads differ", isa.key());
            }
        }
    }
}
