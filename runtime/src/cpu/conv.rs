//! 1-D convolutions as implicit GEMMs on time-major activations. At the bf16 levels most
//! run direct on the pair tile instead (`conv_bf16.rs`, `applies`).
//!
//! Each block of output frames gathers its input taps into an im2col matrix
//! [frames, taps · C_in], written directly in the GEMM's packed row layout, and runs the
//! packed GEMM against weights laid out [C_out, taps · C_in]. Transposed convolutions are split into `stride` phases
//! (polyphase): output frame j only meets the taps k ≡ j + padding (mod stride), so each
//! phase is an ordinary GEMM with ⌈K / stride⌉ taps and no scatter.

use rayon::prelude::*;

use super::gemm::{gemm_gathered, PackedRows};
use super::simd::Isa;
use super::view::{SharedOut, WeightSlice};
use crate::op::ConvParams;

/// The floor on frames per task.
const MIN_FRAMES: usize = 16;

/// Channel counts and lengths shared by both convolutions.
#[derive(Clone, Copy)]
pub struct ConvDims {
    pub batch: usize,
    pub l_in: usize,
    pub c_in: usize,
    pub l_out: usize,
    pub c_out: usize,
    pub k: usize,
}

/// Output frames, possibly strided, that one task computes: j = first + i·step for i < count.
#[derive(Clone, Copy)]
struct Frames {
    batch: usize,
    first: usize,
    step: usize,
    count: usize,
}

/// Frames per task: enough tasks to balance the threads, im2col within what the scratch
/// pool keeps.
fn frames_per_task(total: usize, row_floats: usize) -> usize {
    let by_budget = PackedRows::rows_kept(row_floats).max(MIN_FRAMES);
    let by_balance = total.div_ceil(rayon::current_num_threads() * 4).max(MIN_FRAMES);
    by_budget.min(by_balance)
}

fn prelu(y: f32, slope: Option<f32>) -> f32 {
    match slope {
        Some(a) if y < 0.0 => a * y,
        _ => y,
    }
}

/// dst (+)= PReLU(sums + bias), element by element. The options are settled outside the
/// loops so they vectorise: a branch per element on the sign of a random sum cost a
/// convolution at 128 channels about as much as its products.
pub(super) fn bias_prelu_store(dst: &mut [f32], sums: &[f32], bias: &[f32], slope: Option<f32>, accumulate: bool) {
    #[inline(always)]
    fn each(dst: &mut [f32], sums: &[f32], bias: &[f32], accumulate: bool, f: impl Fn(f32) -> f32) {
        let values = sums.iter().zip(bias).map(|(&s, &b)| f(s + b));
        if accumulate {
            dst.iter_mut().zip(values).for_each(|(o, v)| *o += v);
        } else {
            dst.iter_mut().zip(values).for_each(|(o, v)| *o = v);
        }
    }
    match slope {
        Some(a) => each(dst, sums, bias, accumulate, |v| if v < 0.0 { a * v } else { v }),
        None => each(dst, sums, bias, accumulate, |v| v),
    }
}

/// Runs `gather` (fills one im2col row per frame) and the GEMM for every task, then
/// applies bias/PReLU and stores or accumulates.
#[allow(clippy::too_many_arguments)]
fn run_tasks(
    isa: Isa,
    tasks: &[(Frames, usize)],
    weights: &[WeightSlice],
    taps: &[usize],
    d: ConvDims,
    bias: &[f32],
    slope: Option<f32>,
    accumulate: bool,
    out: &mut [f32],
    gather: impl Fn(usize, usize, usize, &mut [f32]) + Sync,
) {
    let out_ptr = SharedOut::new(out);
    tasks.par_iter().for_each(|&(f, phase)| {
        let kc = taps[phase] * d.c_in;
        let mut y = super::scratch::take(f.count * d.c_out);
        gemm_gathered(isa, f.count, kc, |i, row| gather(f.batch, f.first + i * f.step, phase, row), weights[phase], d.c_out, &mut y);
        for (i, yrow) in y.chunks(d.c_out).enumerate() {
            let j = f.first + i * f.step;
            // SAFETY: frame j of batch f.batch belongs to this task only, and its C_out
            // outputs lie within out.
            let dst = unsafe { out_ptr.slice((f.batch * d.l_out + j) * d.c_out, d.c_out) };
            bias_prelu_store(dst, yrow, bias, slope, accumulate);
        }
    });
}

fn bias_vec(bias: Option<WeightSlice>, n: usize) -> Vec<f32> {
    bias.map_or_else(|| vec![0.0; n], |b| (0..n).map(|i| b.get(i)).collect())
}

/// Conv1d: x [B, L_in, C_in], w [C_out, K, C_in / groups], out [B, L_out, C_out].
pub fn conv1d(isa: Isa, x: &[f32], w: WeightSlice, bias: Option<WeightSlice>, out: &mut [f32], d: ConvDims, p: ConvParams) {
    if out.is_empty() {
        return;
    }
    if p.groups > 1 {
        return grouped_conv1d(isa, x, w, &bias_vec(bias, d.c_out), out, d, p);
    }
    if super::conv_bf16::applies(isa, d, p) {
        return super::conv_bf16::conv1d(isa, x, w, &bias_vec(bias, d.c_out), out, d, p);
    }
    let per = frames_per_task(d.l_out, d.k * d.c_in);
    let tasks: Vec<(Frames, usize)> = (0..d.batch)
        .flat_map(|b| (0..d.l_out).step_by(per).map(move |j0| (Frames { batch: b, first: j0, step: 1, count: per.min(d.l_out - j0) }, 0)))
        .collect();
    let virtual_len = d.l_in * p.upsample;
    let gather = |b: usize, j: usize, _phase: usize, row: &mut [f32]| {
        for (k, dst) in row.chunks_mut(d.c_in).enumerate() {
            let u = (j * p.stride + k * p.dilation).checked_sub(p.pad_left).filter(|&u| u < virtual_len);
            match u {
                Some(u) => dst.copy_from_slice(&x[(b * d.l_in + u / p.upsample) * d.c_in..][..d.c_in]),
                None => dst.fill(0.0),
            }
        }
    };
    let bias = bias_vec(bias, d.c_out);
    run_tasks(isa, &tasks, &[w], &[d.k], d, &bias, p.prelu.map(|s| s.get()), p.accumulate, out, gather);
}

/// Taps φ, φ + s, … below `k`: those of a transposed convolution's output phase φ.
pub(super) fn phase_taps(k: usize, stride: usize, phase: usize) -> usize {
    k.saturating_sub(phase).div_ceil(stride)
}

/// ConvTranspose1d: x [B, L_in, C_in], w [C_out, K, C_in], out [B, L_out, C_out].
#[allow(clippy::too_many_arguments)]
pub fn conv_transpose1d(isa: Isa, x: &[f32], w: WeightSlice, bias: Option<WeightSlice>, out: &mut [f32], d: ConvDims, stride: usize, padding: usize) {
    if out.is_empty() {
        return;
    }
    if super::conv_bf16::applies_transpose(isa, d) {
        return super::conv_bf16::conv_transpose1d(isa, x, w, &bias_vec(bias, d.c_out), out, d, stride, padding);
    }
    let s = stride;
    // Phase φ (= (j + padding) mod s) uses taps φ, φ + s, …; pack them as one matrix.
    let taps: Vec<usize> = (0..s).map(|phi| phase_taps(d.k, s, phi)).collect();
    let packed: Vec<Vec<f32>> = (0..s)
        .map(|phi| {
            let kc = taps[phi] * d.c_in;
            let mut m = vec![0f32; d.c_out * kc];
            for o in 0..d.c_out {
                for t in 0..taps[phi] {
                    let k = phi + t * s;
                    w.widen_into((o * d.k + k) * d.c_in, &mut m[o * kc + t * d.c_in..][..d.c_in]);
                }
            }
            m
        })
        .collect();
    let weights: Vec<WeightSlice> = packed.iter().map(|m| WeightSlice::F32(m)).collect();
    // Output frames of one residue r = j mod s share a phase; split each residue into tasks.
    let per = frames_per_task(d.l_out.div_ceil(s), d.k.div_ceil(s) * d.c_in);
    let mut tasks = Vec::new();
    for b in 0..d.batch {
        for r in 0..s.min(d.l_out) {
            let phase = (r + padding) % s;
            let count = (d.l_out - r).div_ceil(s);
            for i0 in (0..count).step_by(per) {
                tasks.push((Frames { batch: b, first: r + i0 * s, step: s, count: per.min(count - i0) }, phase));
            }
        }
    }
    let gather = |b: usize, j: usize, phase: usize, row: &mut [f32]| {
        // Tap t is k = phase + t·s, reading input frame (j + padding − k) / s.
        let base = (j + padding - phase) / s;
        for (t, dst) in row.chunks_mut(d.c_in).enumerate() {
            match base.checked_sub(t).filter(|&i| i < d.l_in) {
                Some(i) => dst.copy_from_slice(&x[(b * d.l_in + i) * d.c_in..][..d.c_in]),
                None => dst.fill(0.0),
            }
        }
    };
    let bias = bias_vec(bias, d.c_out);
    run_tasks(isa, &tasks, &weights, &taps, d, &bias, None, false, out, gather);
}

/// Channels per group from which a grouped convolution runs as one GEMM per group.
const GEMM_GROUP_CHANNELS: usize = 8;

/// Grouped convolution: each output channel reads the C_in / groups channels of its group.
/// Wide groups run as GEMMs; narrow ones (depthwise) as a direct kernel, one task per frame.
fn grouped_conv1d(isa: Isa, x: &[f32], w: WeightSlice, bias: &[f32], out: &mut [f32], d: ConvDims, p: ConvParams) {
    let cg = d.c_in / p.groups;
    let og = d.c_out / p.groups;
    let mut wf = vec![0f32; w.len()];
    w.widen_into(0, &mut wf);
    if cg >= GEMM_GROUP_CHANNELS && og >= GEMM_GROUP_CHANNELS {
        // Wide groups (WavLM's positional conv): one implicit GEMM per group.
        for g in 0..p.groups {
            let xg: Vec<f32> = x.chunks(d.c_in).flat_map(|row| row[g * cg..(g + 1) * cg].to_vec()).collect();
            let mut yg: Vec<f32> = if p.accumulate { out.chunks(d.c_out).flat_map(|row| row[g * og..(g + 1) * og].to_vec()).collect() } else { vec![0f32; d.batch * d.l_out * og] };
            let wg = &wf[g * og * d.k * cg..(g + 1) * og * d.k * cg];
            let dg = ConvDims { c_in: cg, c_out: og, ..d };
            let pg = ConvParams { groups: 1, ..p };
            let bg = &bias[g * og..(g + 1) * og];
            conv1d(isa, &xg, WeightSlice::F32(wg), Some(WeightSlice::F32(bg)), &mut yg, dg, pg);
            for (row, src) in out.chunks_mut(d.c_out).zip(yg.chunks(og)) {
                row[g * og..(g + 1) * og].copy_from_slice(src);
            }
        }
        return;
    }
    if cg == 1 && og == 1 {
        return depthwise_conv1d(x, &wf, bias, out, d, p);
    }
    let virtual_len = d.l_in * p.upsample;
    out.par_chunks_mut(d.c_out).enumerate().for_each(|(row, y)| {
        let (b, j) = (row / d.l_out, row % d.l_out);
        let mut acc = bias.to_vec();
        for k in 0..d.k {
            let Some(u) = (j * p.stride + k * p.dilation).checked_sub(p.pad_left).filter(|&u| u < virtual_len) else { continue };
            let xr = &x[(b * d.l_in + u / p.upsample) * d.c_in..][..d.c_in];
            for (o, a) in acc.iter_mut().enumerate() {
                let xs = &xr[(o / og) * cg..][..cg];
                let ws = &wf[(o * d.k + k) * cg..][..cg];
                *a += xs.iter().zip(ws).map(|(&xv, &wv)| xv * wv).sum::<f32>();
            }
        }
        for (dst, &v) in y.iter_mut().zip(&acc) {
            let v = prelu(v, p.prelu.map(|s| s.get()));
            *dst = if p.accumulate { *dst + v } else { v };
        }
    });
}

/// Depthwise convolution (one input channel per group, one output channel each: the
/// conformer's): each output frame is bias + Σ taps x[u] ⊙ w[tap], over all channels at
/// once, with the taps laid out [K][C] so the products run along contiguous channels. The
/// same sums in the same order as the general grouped path.
fn depthwise_conv1d(x: &[f32], w: &[f32], bias: &[f32], out: &mut [f32], d: ConvDims, p: ConvParams) {
    let c = d.c_out;
    let mut taps = vec![0f32; d.k * c];
    for (o, row) in w.chunks_exact(d.k).take(c).enumerate() {
        for (t, &v) in row.iter().enumerate() {
            taps[t * c + o] = v;
        }
    }
    let virtual_len = d.l_in * p.upsample;
    let slope = p.prelu.map(|s| s.get());
    out.par_chunks_mut(c).enumerate().for_each_init(
        || vec![0f32; c],
        |acc, (row, y)| {
            let (b, j) = (row / d.l_out, row % d.l_out);
            acc.copy_from_slice(&bias[..c]);
            for (t, wt) in taps.chunks_exact(c).enumerate() {
                let Some(u) = (j * p.stride + t * p.dilation).checked_sub(p.pad_left).filter(|&u| u < virtual_len) else { continue };
                let xr = &x[(b * d.l_in + u / p.upsample) * c..][..c];
                for ((a, &xv), &wv) in acc.iter_mut().zip(xr).zip(wt) {
                    *a += xv * wv;
                }
            }
            for (dst, &v) in y.iter_mut().zip(acc.iter()) {
                let v = prelu(v, slope);
                *dst = if p.accumulate { *dst + v } else { v };
            }
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against the direct sum in f64, with every thread's scratch pool NaN-poisoned first
    /// (the im2col blocks and per-task outputs come from them and must be overwritten
    /// whole): dilation, left padding, a stride, a bias, many tasks, and one K block edge.
    #[test]
    fn convolutions_match_the_direct_sum_from_poisoned_pools() {
        for (c_in, k, stride) in [(5usize, 3usize, 1usize), (70, 4, 2)] {
            let (batch, l_in, c_out, dilation, pad_left) = (2, 211, 7, 2, 3);
            let l_out = (l_in + pad_left - dilation * (k - 1) - 1) / stride + 1;
            let x: Vec<f32> = (0..batch * l_in * c_in).map(|i| ((i * 7919) % 1013) as f32 / 1013.0 - 0.5).collect();
            let w: Vec<f32> = (0..c_out * k * c_in).map(|i| ((i * 104_729) % 997) as f32 / 997.0 - 0.5).collect();
            let bias: Vec<f32> = (0..c_out).map(|o| o as f32 * 0.25 - 1.0).collect();
            let d = ConvDims { batch, l_in, c_in, l_out, c_out, k };
            let p = ConvParams { stride, dilation, pad_left, ..ConvParams::plain() };
            for isa in [Isa::Scalar, Isa::detect()] {
                rayon::broadcast(|_| {
                    drop((super::super::scratch::take(1 << 16), super::super::scratch::take(1 << 16)));
                    super::super::scratch::poison();
                });
                let mut out = vec![f32::NAN; batch * l_out * c_out];
                conv1d(isa, &x, WeightSlice::F32(&w), Some(WeightSlice::F32(&bias)), &mut out, d, p);
                for (i, &got) in out.iter().enumerate() {
                    let (b, j, o) = (i / (l_out * c_out), i / c_out % l_out, i % c_out);
                    let mut want = bias[o] as f64;
                    for t in 0..k {
                        let Some(u) = (j * stride + t * dilation).checked_sub(pad_left).filter(|&u| u < l_in) else { continue };
                        for c in 0..c_in {
                            want += w[(o * k + t) * c_in + c] as f64 * x[(b * l_in + u) * c_in + c] as f64;
                        }
                    }
                    assert!((got as f64 - want).abs() <= 1e-5 * (1.0 + want.abs()), "{}: c_in {c_in}, output {i}: {got} vs {want}", isa.key());
                }
            }
        }
    }
}
