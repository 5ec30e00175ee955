//! The strided polyphase convolution behind the resampler (torch's
//! `conv1d(padded[:, None], kernel, stride=orig)` with the phases interleaved).
//!
//! Each output is a fused multiply-add chain over its taps in kernel order, because that is
//! how torch's CPU conv1d accumulates: with it the 24 kHz -> 16 kHz output is bit-identical to
//! the reference (a plain multiply-then-add chain differs in ~40 % of the samples, in the
//! last bit). Eight outputs of one phase run side by side for instruction-level parallelism.

use rayon::prelude::*;

/// One kernel row: `taps` apply to padded input `[block * orig + start, ..)`.
pub(crate) struct Phase {
    pub start: usize,
    pub taps: Vec<f32>,
}

/// Output `block * new + j` = Σ taps of phase j · padded at `block * orig + start_j`, for
/// `blocks` blocks. Requires `(blocks - 1) * orig + start_j + taps_j.len() <= padded.len()`.
pub(crate) fn convolve(padded: &[f32], phases: &[Phase], orig: usize, blocks: usize) -> Vec<f32> {
    let new = phases.len();
    let mut out = vec![0.0f32; blocks * new];
    if new == 0 {
        return out;
    }
    // About 8k output samples per task: enough to amortise rayon, enough tasks to balance.
    let blocks_per_task = (8192 / new).max(1);
    let fma = has_fma();
    out.par_chunks_mut(blocks_per_task * new)
        .enumerate()
        .for_each(|(task, chunk)| {
            let first = task * blocks_per_task;
            #[cfg(target_arch = "x86_64")]
            if fma {
                // SAFETY: the CPU supports FMA (checked by `has_fma`).
                unsafe { blocks_fma(padded, phases, orig, first, chunk) };
                return;
            }
            let _ = fma;
            blocks_generic(padded, phases, orig, first, chunk);
        });
    out
}

fn has_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The same loop compiled with hardware FMA (`mul_add` is otherwise a libm call).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "fma")]
unsafe fn blocks_fma(padded: &[f32], phases: &[Phase], orig: usize, first: usize, out: &mut [f32]) {
    blocks_generic(padded, phases, orig, first, out)
}

/// Fills `out` = blocks `first..first + out.len() / new`, all phases.
#[inline(always)]
fn blocks_generic(padded: &[f32], phases: &[Phase], orig: usize, first: usize, out: &mut [f32]) {
    const LANES: usize = 8;
    let new = phases.len();
    let n_blocks = out.len() / new;
    for (j, phase) in phases.iter().enumerate() {
        let taps = &phase.taps[..];
        let mut b = 0;
        while b + LANES <= n_blocks {
            let at = (first + b) * orig + phase.start;
            let src = &padded[at..at + (LANES - 1) * orig + taps.len()];
            let mut acc = [0.0f32; LANES];
            for (i, &h) in taps.iter().enumerate() {
                for (l, a) in acc.iter_mut().enumerate() {
                    *a = src[l * orig + i].mul_add(h, *a);
                }
            }
            for (l, a) in acc.iter().enumerate() {
                out[(b + l) * new + j] = *a;
            }
            b += LANES;
        }
        for b in b..n_blocks {
            let at = (first + b) * orig + phase.start;
            let src = &padded[at..at + taps.len()];
            out[b * new + j] = src
                .iter()
                .zip(taps)
                .fold(0.0f32, |a, (&x, &h)| x.mul_add(h, a));
        }
    }
}
