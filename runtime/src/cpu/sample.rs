//! Argmax and top-k / temperature sampling.
//!
//! Sampling rule (the reference's exponential race): scaled logits l/T, ids below
//! `forbid_below` removed, keep every entry >= the k-th largest (ties kept), then pick
//! argmax over kept i of (l_i/T − ln E_i) with E_i = −ln U_i ~ Exp(1), which is
//! argmax p_i / E_i, i.e. a draw from softmax over the kept set. U_i comes from
//! `rng::uniform(stream_key(seed, counter + row), i)`. top_k = 1 is plain argmax.

use rayon::prelude::*;

use crate::op::SampleParams;
use crate::rng::{stream_key, uniform};

/// Index of the first maximum; NaN counts as larger than any number (as torch).
pub fn argmax(x: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in x.iter().enumerate().skip(1) {
        let b = x[best];
        if !b.is_nan() && (v > b || v.is_nan()) {
            best = i;
        }
    }
    best
}

pub fn argmax_rows(x: &[f32], cols: usize, out: &mut [u32]) {
    out.par_iter_mut().enumerate().for_each(|(r, o)| *o = argmax(&x[r * cols..(r + 1) * cols]) as u32);
}

pub fn top_k_rows(logits: &[f32], cols: usize, params: &SampleParams, out: &mut [u32]) {
    out.par_iter_mut().enumerate().for_each(|(r, o)| {
        let key = stream_key(params.seed, params.counter.wrapping_add(r as u64));
        *o = top_k(&logits[r * cols..(r + 1) * cols], params, key) as u32;
    });
}

fn top_k(logits: &[f32], p: &SampleParams, key: u32) -> usize {
    let start = p.forbid_below;
    // NaN never wins a draw.
    let scaled: Vec<f32> = logits[start..].iter().map(|&l| if l.is_nan() { f32::NEG_INFINITY } else { l / p.temperature }).collect();
    if p.top_k == 1 {
        return start + argmax(&scaled);
    }
    let threshold = if p.top_k == 0 || p.top_k >= scaled.len() {
        f32::NEG_INFINITY
    } else {
        let mut sorted = scaled.clone();
        let (_, kth, _) = sorted.select_nth_unstable_by(p.top_k - 1, |a, b| b.total_cmp(a));
        *kth
    };
    let mut best = (start, f32::NEG_INFINITY);
    for (i, &l) in scaled.iter().enumerate() {
        if l >= threshold && l > f32::NEG_INFINITY {
            let id = start + i;
            let e = -uniform(key, id as u32).ln();
            let score = l - e.ln();
            if score > best.1 {
                best = (id, score);
            }
        }
    }
    best.0
}
