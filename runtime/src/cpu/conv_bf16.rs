//! The fast precision's 1-D convolution on the AVX512-BF16 levels, direct: the input is
//! rounded once into time-major bf16 pairs, its padding as zero frames, and each output
//! frame's window is a row of the 6 x 64 pair tile (`pair_tile.rs`; of a 16-row AMX tile on
//! the AMX level where the window's runs are whole tile steps and there are at least 16
//! frames), read where it lies
//! (a dilated window's taps are runs within it). An upsampled input (each frame repeated,
//! the SQ decoder's post-processor) is laid out repeated, so its windows are rows too; a
//! transposed convolution is one plain convolution per output phase, its taps reversed.
//! The implicit GEMM (`conv.rs`) copies
//! every window into an f32 im2col block and converts that again, which cost as much as
//! the products at 128 channels; and under 256 output channels it ran in f32.
//!
//! A frame's outputs depend only on its window, never on the task split.

use std::cell::RefCell;

use rayon::prelude::*;

use super::conv::{bias_prelu_store, phase_taps, ConvDims};
use super::pair_tile::{round_pairs, sweep, weight_pairs, Rows, Runs};
use super::simd::Isa;
use super::view::{SharedOut, WeightSlice};
use crate::aligned::AlignedVec;
use crate::op::ConvParams;

/// Output channels from which a convolution takes the tile: the fast precision's policy
/// for convolutions (below it, most of a 64-column tile would be zeros).
const MIN_OUT_CHANNELS: usize = 64;
/// Values rounded per parallel piece of the input.
const PIECE: usize = 8192;
/// The largest input buffer a thread keeps between calls (32 MiB); larger ones are freed.
const KEPT_PAIRS: usize = 8 << 20;

thread_local! {
    /// The last call's input pairs, kept: fresh pages cost a fault and a clear each call.
    /// Aligned, so AMX tile rows of whole cache lines start on them.
    static INPUT: RefCell<AlignedVec<u32>> = RefCell::new(AlignedVec::default());
}

/// Whether this level runs the convolution here: bf16 dot products, one group, an even
/// input channel count (so every window starts on a whole pair).
pub(super) fn applies(isa: Isa, d: ConvDims, p: ConvParams) -> bool {
    isa.bf16_dot() && p.groups == 1 && p.upsample >= 1 && d.c_in.is_multiple_of(2) && d.c_in > 0 && d.k > 0 && d.c_out >= MIN_OUT_CHANNELS
}

/// Conv1d: x [B, L_in, C_in], w [C_out, K, C_in], out [B, L_out, C_out], bias per output
/// channel, then PReLU and store or accumulate as `p` says.
pub(super) fn conv1d(isa: Isa, x: &[f32], w: WeightSlice, bias: &[f32], out: &mut [f32], d: ConvDims, p: ConvParams) {
    assert!(applies(isa, d, p), "the bf16 convolution does not apply at {} to {} x {} channels, groups {}", isa.key(), d.c_in, d.c_out, p.groups);
    if !has_outputs(x, w, bias, out, d) {
        return;
    }
    let c2 = d.c_in / 2;
    let inner = d.k * c2;
    // Input frames the windows cover, from position −pad_left.
    let span = (d.l_out - 1) * p.stride + (d.k - 1) * p.dilation + 1;
    // Each batch's frames, then slack for the rounding's whole 32-value chunks.
    let per_batch = span * c2 + 16;
    let weights = weight_pairs(w, d.c_out, d.k * d.c_in);
    let mut input = INPUT.with(|i| std::mem::take(&mut *i.borrow_mut()));
    input_pairs(x, d, p, span, per_batch, &mut input);
    let runs = if p.dilation == 1 { Runs::plain(inner) } else { Runs { count: d.k, pairs: c2, step: p.dilation * c2 } };

    let slope = p.prelu.map(|s| s.get());
    let shared = SharedOut::new(out);
    let rows = Rows { input: &input, batches: d.batch, batch_step: per_batch, per_batch, count: d.l_out, step: p.stride * c2, runs };
    sweep(isa, &rows, &weights, d.c_out, |b, j, c0, sums| {
        // SAFETY: `sweep` hands each (frame, column group) to one task only; in bounds
        // (asserted above).
        let dst = unsafe { shared.slice((b * d.l_out + j) * d.c_out + c0, sums.len()) };
        bias_prelu_store(dst, sums, &bias[c0..], slope, p.accumulate);
    });
    if input.len() <= KEPT_PAIRS {
        INPUT.with(|i| *i.borrow_mut() = input);
    }
}

/// Asserts the operands hold what `d` says; false when there are no outputs.
fn has_outputs(x: &[f32], w: WeightSlice, bias: &[f32], out: &[f32], d: ConvDims) -> bool {
    assert!(
        x.len() >= d.batch * d.l_in * d.c_in && out.len() >= d.batch * d.l_out * d.c_out && w.len() >= d.c_out * d.k * d.c_in && bias.len() >= d.c_out,
        "convolution operands for batch {}, {} -> {} frames, {} -> {} channels, kernel {}",
        d.batch,
        d.l_in,
        d.l_out,
        d.c_in,
        d.c_out,
        d.k
    );
    d.batch * d.l_out > 0
}

/// Whether this level runs the transposed convolution here (the same conditions).
pub(super) fn applies_transpose(isa: Isa, d: ConvDims) -> bool {
    applies(isa, d, ConvParams::plain())
}

/// ConvTranspose1d: x [B, L_in, C_in], w [C_out, K, C_in], out [B, L_out, C_out], plus
/// bias. Output frame j has phase φ = (j + padding) mod s and sums taps φ, φ + s, … over
/// input frames base, base − 1, … (base = (j + padding − φ) / s). With a phase's taps
/// reversed its windows ascend, so the outputs of one residue of j mod s are rows one
/// input frame apart of a plain convolution over the input, padded with zero frames.
#[allow(clippy::too_many_arguments)]
pub(super) fn conv_transpose1d(isa: Isa, x: &[f32], w: WeightSlice, bias: &[f32], out: &mut [f32], d: ConvDims, stride: usize, padding: usize) {
    assert!(applies_transpose(isa, d) && stride > 0, "the bf16 transposed convolution does not apply at {} to {} x {} channels, stride {stride}", isa.key(), d.c_in, d.c_out);
    if !has_outputs(x, w, bias, out, d) {
        return;
    }
    let (s, c2) = (stride, d.c_in / 2);
    let taps = |phase: usize| phase_taps(d.k, s, phase);
    // Zero frames before the input (a window may start up to taps − 1 frames early) and
    // after it, up to the last output's base.
    let lead = taps(0) - 1;
    let frames = lead + ((d.l_out - 1 + padding) / s + 1).max(d.l_in);
    let per_batch = frames * c2 + 16;
    let mut input = INPUT.with(|i| std::mem::take(&mut *i.borrow_mut()));
    input_pairs(x, d, ConvParams { pad_left: lead, ..ConvParams::plain() }, frames, per_batch, &mut input);
    let shared = SharedOut::new(out);
    let mut reversed = Vec::new();
    for r in 0..s.min(d.l_out) {
        let (phase, count) = ((r + padding) % s, (d.l_out - r).div_ceil(s));
        let t = taps(phase);
        if t == 0 {
            // No tap lands on this phase: the bias alone.
            for j in (r..d.l_out).step_by(s) {
                for b in 0..d.batch {
                    // SAFETY: no task runs; in bounds (asserted above).
                    unsafe { shared.slice((b * d.l_out + j) * d.c_out, d.c_out) }.copy_from_slice(&bias[..d.c_out]);
                }
            }
            continue;
        }
        // The phase's taps, last first: [C_out][t][C_in].
        reversed.clear();
        reversed.resize(d.c_out * t * d.c_in, 0.0);
        for (o, taps_o) in reversed.chunks_exact_mut(t * d.c_in).enumerate() {
            for (i, dst) in taps_o.chunks_exact_mut(d.c_in).enumerate() {
                w.widen_into((o * d.k + phase + (t - 1 - i) * s) * d.c_in, dst);
            }
        }
        let weights = weight_pairs(WeightSlice::F32(&reversed), d.c_out, t * d.c_in);
        let first = ((r + padding - phase) / s + lead + 1 - t) * c2;
        let rows = Rows { input: &input[first..], batches: d.batch, batch_step: per_batch, per_batch: per_batch - first, count, step: c2, runs: Runs::plain(t * c2) };
        sweep(isa, &rows, &weights, d.c_out, |b, i, c0, sums| {
            // SAFETY: `sweep` hands each (frame, column group) to one task only, and the
            // residues' frames are disjoint; in bounds (asserted above).
            let dst = unsafe { shared.slice((b * d.l_out + r + i * s) * d.c_out + c0, sums.len()) };
            bias_prelu_store(dst, sums, &bias[c0..], None, false);
        });
    }
    if input.len() <= KEPT_PAIRS {
        INPUT.with(|i| *i.borrow_mut() = input);
    }
}

/// x [B, L_in, C_in] as bf16 pairs, `per_batch` pairs per batch: `span` frames of the
/// input upsampled `p.upsample` times, from position −pad_left (zero outside the input),
/// then zeros.
fn input_pairs(x: &[f32], d: ConvDims, p: ConvParams, span: usize, per_batch: usize, input: &mut AlignedVec<u32>) {
    let (c2, pad_left, repeat) = (d.c_in / 2, p.pad_left, p.upsample);
    if input.len() < d.batch * per_batch {
        *input = AlignedVec::zeroed(d.batch * per_batch);
    }
    let lead = pad_left.min(span);
    let frames = (d.l_in * repeat).min(span - lead);
    for (b, dst) in input.chunks_exact_mut(per_batch).take(d.batch).enumerate() {
        let (zeros, rest) = dst.split_at_mut(lead * c2);
        zeros.fill(0);
        let values = frames * d.c_in;
        let (data, tail) = rest.split_at_mut(values.div_ceil(32) * 16);
        tail.fill(0);
        if repeat == 1 {
            let src = &x[b * d.l_in * d.c_in..][..values];
            data.par_chunks_mut(PIECE / 2).zip(src.par_chunks(PIECE)).for_each(|(dst, src)| round_pairs(src, dst));
            continue;
        }
        // Each source frame's pairs once, then copied to its `repeat` frames; the rest of
        // the last whole chunk is zero, as the rounding leaves it.
        data[frames * c2..].fill(0);
        let sources = frames.div_ceil(repeat);
        let mut rounded = vec![0u32; (sources * d.c_in).div_ceil(32) * 16];
        let src = &x[b * d.l_in * d.c_in..][..sources * d.c_in];
        rounded.par_chunks_mut(PIECE / 2).zip(src.par_chunks(PIECE)).for_each(|(dst, src)| round_pairs(src, dst));
        data[..frames * c2].par_chunks_mut(c2 * repeat).zip(rounded.par_chunks(c2)).for_each(|(dst, frame)| {
            for copy in dst.chunks_mut(c2) {
                copy.copy_from_slice(&frame[..copy.len()]);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::super::pair_tile::test_operands::{bf16, levels, values};

    /// A kept input buffer of NaN pairs: a read of pairs the call did not write shows.
    fn poisoned(len: usize) -> AlignedVec<u32> {
        let mut v = AlignedVec::zeroed(len);
        v.fill(0x7fc0_7fc0);
        v
    }

    /// Against the direct sum in f64 of the bf16-rounded operands (so only the f32 sums'
    /// order differs): stride, dilation, padding past both ends, a partial column group and
    /// row panel, two batches, PReLU and accumulate, upsampling (with stride and padding,
    /// ending inside a repeated frame); then every split into tasks gives the same bits (a
    /// kept input buffer from a larger call poisoned first).
    #[test]
    fn matches_the_rounded_direct_sum() {
        // (c_in, c_out, k, stride, dilation, pad_left, l_in, upsample); the AMX level takes
        // the tiles where K·C_in (C_in when dilated) is a multiple of 32: the third, the
        // fourth (upsampled) and the last two (dilated runs, stride).
        let cases = [(6usize, 80usize, 3usize, 1usize, 3usize, 7usize, 41usize, 1usize), (34, 64, 4, 2, 1, 2, 57, 1), (128, 130, 7, 1, 1, 3, 200, 1), (64, 70, 7, 1, 1, 6, 23, 2), (10, 64, 3, 2, 2, 1, 19, 3), (32, 64, 3, 1, 3, 3, 40, 1), (32, 96, 4, 2, 1, 1, 50, 1)];
        for (isa, (c_in, c_out, k, stride, dilation, pad_left, l_in, upsample)) in levels().into_iter().flat_map(|isa| cases.map(|c| (isa, c))) {
            let batch = 2;
            let l_out = (l_in * upsample + 2 * pad_left - dilation * (k - 1) - 1) / stride + 1;
            let d = ConvDims { batch, l_in, c_in, l_out, c_out, k };
            let (x, w) = (values(batch * l_in * c_in, 1, 2.0), values(c_out * k * c_in, 2, 2.0));
            let bias: Vec<f32> = (0..c_out).map(|o| o as f32 * 0.01 - 0.3).collect();
            let before = values(batch * l_out * c_out, 3, 2.0);
            let p = ConvParams { stride, dilation, pad_left, upsample, prelu: Some(crate::op::PreluSlope::new(0.2)), accumulate: true, ..ConvParams::plain() };
            INPUT.with(|i| *i.borrow_mut() = poisoned(1 << 16));
            let mut out = before.clone();
            conv1d(isa, &x, WeightSlice::F32(&w), &bias, &mut out, d, p);
            for (i, &got) in out.iter().enumerate() {
                let (b, j, o) = (i / (l_out * c_out), i / c_out % l_out, i % c_out);
                let mut sum = bias[o] as f64;
                for t in 0..k {
                    let Some(u) = (j * stride + t * dilation).checked_sub(pad_left).filter(|&u| u < l_in * upsample) else { continue };
                    sum += (0..c_in).map(|c| bf16(w[(o * k + t) * c_in + c]) * bf16(x[(b * l_in + u / upsample) * c_in + c])).sum::<f64>();
                }
                let want = before[i] as f64 + if sum < 0.0 { 0.2 * sum } else { sum };
                assert!((got as f64 - want).abs() <= 1e-5 * (1.0 + want.abs()), "{}, c_in {c_in}, output {i}: {got} vs {want}", isa.key());
            }
            for threads in [1, 3] {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                let mut again = before.clone();
                pool.install(|| conv1d(isa, &x, WeightSlice::F32(&w), &bias, &mut again, d, p));
                assert!(again.iter().zip(&out).all(|(a, b)| a.to_bits() == b.to_bits()), "{}, c_in {c_in}: {threads} threads differ", isa.key());
            }
        }
    }

    /// Transposed: against the scatter of every input frame through every tap in f64 of
    /// the bf16-rounded operands: causal (K = 2s, the last s dropped), "same" padding with
    /// an odd stride, K < s (a phase with no tap: bias alone), outputs fewer than s, two
    /// batches, a partial column group; bits equal across task splits.
    #[test]
    fn transposed_matches_the_rounded_scatter() {
        // (c_in, c_out, k, stride, padding, l_in, l_out); the last two take the AMX tiles
        // on that level.
        let cases = [(8usize, 64usize, 8usize, 4usize, 0usize, 7usize, 28usize), (12, 70, 10, 5, 2, 9, 45), (6, 64, 3, 4, 0, 5, 20), (4, 96, 6, 3, 1, 2, 2), (32, 64, 8, 4, 0, 20, 80), (64, 70, 10, 5, 2, 30, 150)];
        for (isa, (c_in, c_out, k, s, padding, l_in, l_out)) in levels().into_iter().flat_map(|isa| cases.map(|c| (isa, c))) {
            let batch = 2;
            let d = ConvDims { batch, l_in, c_in, l_out, c_out, k };
            let (x, w) = (values(batch * l_in * c_in, 4, 2.0), values(c_out * k * c_in, 5, 2.0));
            let bias: Vec<f32> = (0..c_out).map(|o| o as f32 * 0.01 - 0.3).collect();
            let mut want: Vec<f64> = (0..batch * l_out * c_out).map(|i| bias[i % c_out] as f64).collect();
            for b in 0..batch {
                for i in 0..l_in {
                    for t in 0..k {
                        let Some(j) = (i * s + t).checked_sub(padding).filter(|&j| j < l_out) else { continue };
                        for o in 0..c_out {
                            want[(b * l_out + j) * c_out + o] += (0..c_in).map(|c| bf16(w[(o * k + t) * c_in + c]) * bf16(x[(b * l_in + i) * c_in + c])).sum::<f64>();
                        }
                    }
                }
            }
            INPUT.with(|i| *i.borrow_mut() = poisoned(1 << 16));
            let mut out = vec![f32::NAN; batch * l_out * c_out];
            conv_transpose1d(isa, &x, WeightSlice::F32(&w), &bias, &mut out, d, s, padding);
            for (i, (&got, &want)) in out.iter().zip(&want).enumerate() {
                assert!((got as f64 - want).abs() <= 1e-5 * (1.0 + want.abs()), "{}, k {k}, stride {s}, output {i}: {got} vs {want}", isa.key());
            }
            for threads in [1, 3] {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                let mut again = vec![f32::NAN; out.len()];
                pool.install(|| conv_transpose1d(isa, &x, WeightSlice::F32(&w), &bias, &mut again, d, s, padding));
                assert!(again.iter().zip(&out).all(|(a, b)| a.to_bits() == b.to_bits()), "{}, k {k}: {threads} threads differ", isa.key());
            }
        }
    }
}
