//! Channels-last 2-D convolution as an implicit GEMM: each block of output positions
//! gathers its KH·KW·C_in input taps straight into the GEMM's packed row layout and
//! multiplies by the weights [C_out, KH·KW·C_in].

use rayon::prelude::*;

use super::gemm::{gemm_gathered, PackedRows};
use super::simd::Isa;
use super::view::{SharedOut, WeightSlice};
use crate::op::Conv2dParams;

/// The floor on output positions per task.
const MIN_ROWS: usize = 16;

/// Sizes of a `Conv2d`: x [B, H, W, C_in], w [C_out, KH, KW, C_in], out [B, OH, OW, C_out].
#[derive(Clone, Copy)]
pub struct Conv2dDims {
    pub batch: usize,
    pub h: usize,
    pub w: usize,
    pub c_in: usize,
    pub oh: usize,
    pub ow: usize,
    pub c_out: usize,
    pub kh: usize,
    pub kw: usize,
}

pub fn conv2d(isa: Isa, x: &[f32], w: WeightSlice, bias: Option<WeightSlice>, out: &mut [f32], d: Conv2dDims, p: Conv2dParams) {
    let positions = d.batch * d.oh * d.ow;
    if positions == 0 || d.c_out == 0 {
        return;
    }
    let bias: Vec<f32> = (0..d.c_out).map(|o| bias.map_or(0.0, |b| b.get(o))).collect();
    if super::conv2d_bf16::applies(isa, d) {
        return super::conv2d_bf16::conv2d(isa, x, w, &bias, out, d, p);
    }
    let kc = d.kh * d.kw * d.c_in;
    let by_budget = PackedRows::rows_kept(kc).max(MIN_ROWS);
    let by_balance = positions.div_ceil(rayon::current_num_threads() * 4).max(MIN_ROWS);
    let per = by_budget.min(by_balance);
    let out_ptr = SharedOut::new(out);
    let starts: Vec<usize> = (0..positions).step_by(per).collect();
    starts.par_iter().for_each(|&first| {
        let count = per.min(positions - first);
        let mut y = super::scratch::take(count * d.c_out);
        gemm_gathered(isa, count, kc, |r, row| gather(x, d, p, first + r, row), w, d.c_out, &mut y);
        for (r, yrow) in y.chunks(d.c_out).enumerate() {
            // SAFETY: output position first + r belongs to this task only, and its C_out
            // outputs lie within out.
            let dst = unsafe { out_ptr.slice((first + r) * d.c_out, d.c_out) };
            bias_relu_store(dst, yrow, &bias, p.accumulate, p.relu);
        }
    });
}

/// dst = sums + bias (+ dst), then ReLU: the residual block's epilogue. The options are
/// loop-invariant, so it vectorises.
pub(super) fn bias_relu_store(dst: &mut [f32], sums: &[f32], bias: &[f32], accumulate: bool, relu: bool) {
    for ((o, &s), &b) in dst.iter_mut().zip(sums).zip(bias) {
        let mut v = s + b;
        if accumulate {
            v += *o;
        }
        *o = if relu { v.max(0.0) } else { v };
    }
}

/// The im2col row of output position `pos` (flattened over [B, OH, OW]): taps in
/// (p, q, c) order, zeros outside the input.
fn gather(x: &[f32], d: Conv2dDims, p: Conv2dParams, pos: usize, row: &mut [f32]) {
    let (b, rest) = (pos / (d.oh * d.ow), pos % (d.oh * d.ow));
    let (i, j) = (rest / d.ow, rest % d.ow);
    for kp in 0..d.kh {
        let hi = (i * p.stride[0] + kp).checked_sub(p.pad[0]).filter(|&v| v < d.h);
        for kq in 0..d.kw {
            let dst = &mut row[(kp * d.kw + kq) * d.c_in..][..d.c_in];
            let wi = (j * p.stride[1] + kq).checked_sub(p.pad[1]).filter(|&v| v < d.w);
            match (hi, wi) {
                (Some(hi), Some(wi)) => dst.copy_from_slice(&x[((b * d.h + hi) * d.w + wi) * d.c_in..][..d.c_in]),
                _ => dst.fill(0.0),
            }
        }
    }
}
