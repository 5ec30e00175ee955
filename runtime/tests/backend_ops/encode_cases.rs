//! Cases for the codec encoder's ops: channels-last Conv2d (MusicFM's front end), GroupNorm
//! over time (WavLM's first conv), GLU, FiLM, the residual-VQ search and WavLM's
//! relative-position attention. References in f64.

use uniaudio_runtime::{ops, Backend, Conv2dParams, DType, Result, Tensor};

use crate::cases::{Case, F32_NMSE};
use crate::harness::{compare_f32, compare_u32, Rng, Verdict};
use crate::reference as r;

/// Output size of a padded, strided window: ⌊(n + 2p − k) / s⌋ + 1.
fn out_len(n: usize, k: usize, s: usize, p: usize) -> usize {
    (n + 2 * p - k) / s + 1
}

pub fn cases() -> Vec<Case> {
    use Case::*;
    let mut cases = Vec::new();
    // MusicFM's stride-2 first conv (C_in = 1), a stride-1 conv with residual + ReLU,
    // odd sizes, a non-square kernel with uneven strides and padding.
    for (batch, h, w, c_in, c_out, kh, kw, stride, pad, relu, accumulate) in [
        (1, 9, 7, 1, 5, 3, 3, [2, 2], [1, 1], true, false),
        (2, 8, 6, 4, 6, 3, 3, [1, 1], [1, 1], true, true),
        (1, 13, 10, 16, 8, 3, 3, [2, 2], [1, 1], false, false),
        (1, 6, 5, 3, 7, 2, 3, [1, 2], [0, 1], false, true),
        (1, 40, 17, 20, 33, 3, 3, [2, 2], [1, 1], true, false),
        // Even C_in from 64 output channels: the fast level's direct bf16 convolution
        // (partial column groups and row panels, two images).
        (2, 11, 9, 6, 70, 3, 3, [2, 2], [1, 1], true, false),
        (1, 8, 13, 10, 66, 3, 3, [1, 1], [1, 1], true, true),
        (1, 7, 12, 4, 64, 2, 3, [1, 2], [0, 1], false, true),
    ] {
        let (oh, ow) = (out_len(h, kh, stride[0], pad[0]), out_len(w, kw, stride[1], pad[1]));
        cases.push(Conv2d { batch, h, w, c_in, c_out, kh, kw, stride, pad, oh, ow, relu, accumulate });
    }
    for (batch, t, c, groups) in [(1, 50, 8, 8), (2, 33, 12, 3), (1, 1000, 5, 1), (2, 7, 130, 130)] {
        cases.push(GroupNorm { batch, t, c, groups });
    }
    for (rows, f) in [(1, 1), (7, 33), (3, 1024)] {
        cases.push(Glu { rows, f });
    }
    for (rows, c, in_place) in [(5, 33, false), (3, 96, true), (1, 1000, false)] {
        cases.push(Film { rows, c, in_place });
    }
    for (n, d, levels, k, dtype) in [(7, 16, 8, 256, DType::F32), (3, 32, 6, 1000, DType::BF16), (130, 8, 1, 33, DType::F32), (5, 64, 2, 4096, DType::F16)] {
        cases.push(RvqEncode { n, d, levels, k, dtype });
    }
    for (t, heads, d) in [(1, 1, 8), (17, 4, 8), (50, 3, 64), (130, 2, 32), (7, 12, 64), (260, 2, 32)] {
        cases.push(RelPosAttention { t, heads, d });
    }
    cases
}

fn f32_in<B: Backend>(b: &B, shape: &[usize], v: &[f32]) -> Result<Tensor<B>> {
    ops::upload_f32(b, shape, v, DType::F32)
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

pub fn run<B: Backend>(case: &Case, b: &B, rng: &mut Rng) -> Result<Verdict> {
    Ok(match *case {
        Case::Conv2d { batch, h, w, c_in, c_out, kh, kw, stride, pad, oh, ow, relu, accumulate } => {
            let x = rng.vec(batch * h * w * c_in, 1.0);
            let wt = rng.vec(c_out * kh * kw * c_in, 1.0);
            let bias = rng.vec(c_out, 1.0);
            let init = rng.vec(batch * oh * ow * c_out, 1.0);
            let out = f32_in(b, &[batch, oh, ow, c_out], &init)?;
            let conv = Conv2dParams { stride, pad, accumulate, relu };
            ops::conv2d(b, &f32_in(b, &[batch, h, w, c_in], &x)?, &f32_in(b, &[c_out, kh, kw, c_in], &wt)?, Some(&f32_in(b, &[c_out], &bias)?), &out, conv)?;
            let mut want = vec![0f64; init.len()];
            for bi in 0..batch {
                for i in 0..oh {
                    for j in 0..ow {
                        for o in 0..c_out {
                            let mut s = bias[o] as f64;
                            for p in 0..kh {
                                for q in 0..kw {
                                    let (hi, wi) = ((i * stride[0] + p) as isize - pad[0] as isize, (j * stride[1] + q) as isize - pad[1] as isize);
                                    if hi < 0 || wi < 0 || hi >= h as isize || wi >= w as isize {
                                        continue;
                                    }
                                    for c in 0..c_in {
                                        s += wt[((o * kh + p) * kw + q) * c_in + c] as f64 * x[((bi * h + hi as usize) * w + wi as usize) * c_in + c] as f64;
                                    }
                                }
                            }
                            let idx = ((bi * oh + i) * ow + j) * c_out + o;
                            if accumulate {
                                s += init[idx] as f64;
                            }
                            want[idx] = if relu { s.max(0.0) } else { s };
                        }
                    }
                }
            }
            compare_f32(&ops::download_f32(b, &out)?, &want, F32_NMSE)
        }
        Case::GroupNorm { batch, t, c, groups } => {
            let x: Vec<f32> = rng.vec(batch * t * c, 2.0).iter().map(|v| v + 0.3).collect();
            let (w, bias) = (rng.vec(c, 1.5), rng.vec(c, 1.0));
            let out = b.alloc(DType::F32, &[batch, t, c])?;
            ops::group_norm(b, &f32_in(b, &[batch, t, c], &x)?, &f32_in(b, &[c], &w)?, &f32_in(b, &[c], &bias)?, &out, groups, 1e-5)?;
            let cg = c / groups;
            let mut want = vec![0f64; x.len()];
            for bi in 0..batch {
                for g in 0..groups {
                    let idx = |f: usize, j: usize| (bi * t + f) * c + g * cg + j;
                    let vals: Vec<f64> = (0..t).flat_map(|f| (0..cg).map(move |j| (f, j))).map(|(f, j)| x[idx(f, j)] as f64).collect();
                    let mean = vals.iter().sum::<f64>() / vals.len() as f64;
                    let var = vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / vals.len() as f64;
                    for f in 0..t {
                        for j in 0..cg {
                            let ch = g * cg + j;
                            want[idx(f, j)] = (x[idx(f, j)] as f64 - mean) / (var + 1e-5).sqrt() * w[ch] as f64 + bias[ch] as f64;
                        }
                    }
                }
            }
            compare_f32(&ops::download_f32(b, &out)?, &want, F32_NMSE)
        }
        Case::Glu { rows, f } => {
            let x = rng.vec(rows * 2 * f, 4.0);
            let out = b.alloc(DType::F32, &[rows, f])?;
            ops::glu(b, &f32_in(b, &[rows, 2 * f], &x)?, &out)?;
            let want: Vec<f64> = (0..rows * f).map(|i| x[(i / f) * 2 * f + i % f] as f64 * sigmoid(x[(i / f) * 2 * f + f + i % f] as f64)).collect();
            compare_f32(&ops::download_f32(b, &out)?, &want, F32_NMSE)
        }
        Case::Film { rows, c, in_place } => {
            let (x, p) = (rng.vec(rows * c, 2.0), rng.vec(rows * 2 * c, 3.0));
            let xt = f32_in(b, &[rows, c], &x)?;
            let out = if in_place { xt.clone() } else { b.alloc(DType::F32, &[rows, c])? };
            ops::film(b, &xt, &f32_in(b, &[rows, 2 * c], &p)?, &out, 0.1)?;
            let want: Vec<f64> = (0..rows * c)
                .map(|i| {
                    let (r, j) = (i / c, i % c);
                    (1.0 + 0.1 * (p[r * 2 * c + j] as f64).tanh()) * x[i] as f64 + p[r * 2 * c + c + j] as f64
                })
                .collect();
            compare_f32(&ops::download_f32(b, &out)?, &want, F32_NMSE)
        }
        Case::RvqEncode { n, d, levels, k, dtype } => {
            // Level l's codebook is scaled by 4^-l and each row is the sum of one planted
            // code per level plus faint noise, so every level's nearest code wins by a wide
            // margin; row 0's level-0 code has an exact twin right after it (the first
            // index must win the tie).
            let scaled: Vec<f32> = rng.vec(levels * k * d, 1.0).iter().enumerate().map(|(i, v)| v * 0.25f32.powi((i / (k * d)) as i32)).collect();
            let mut books = r::round_to(&scaled, dtype);
            let planted: Vec<usize> = (0..n * levels).map(|_| rng.below(k - 1)).collect();
            let twin = planted[0];
            let src: Vec<f32> = books[twin * d..][..d].to_vec();
            books[(twin + 1) * d..][..d].copy_from_slice(&src);
            let mut x = rng.vec(n * d, 1e-3);
            for row in 0..n {
                for l in 0..levels {
                    let e = &books[(l * k + planted[row * levels + l]) * d..][..d];
                    for j in 0..d {
                        x[row * d + j] += e[j];
                    }
                }
            }
            let codes = b.alloc(DType::U32, &[n, levels])?;
            let quantized = b.alloc(DType::F32, &[n, d])?;
            ops::rvq_encode(b, &f32_in(b, &[n, d], &x)?, &ops::upload_f32(b, &[levels, k, d], &books, dtype)?, &codes, &quantized)?;
            let (want_codes, want_q) = rvq_reference(&x, &books, n, d, levels, k);
            match compare_u32(&ops::download_u32(b, &codes)?, &want_codes) {
                Verdict::Pass => compare_f32(&ops::download_f32(b, &quantized)?, &want_q, F32_NMSE),
                fail => fail,
            }
        }
        Case::RelPosAttention { t, heads, d } => {
            let (q, k, v) = (rng.vec(t * heads * d, 1.0), rng.vec(t * heads * d, 1.0), rng.vec(t * heads * d, 1.0));
            let (gate, gc, rel) = (rng.vec(t * heads * 8, 1.0), rng.vec(heads, 1.0), rng.vec(heads * (2 * t - 1), 2.0));
            let out = b.alloc(DType::F32, &[t, heads, d])?;
            let s3 = [t, heads, d];
            ops::rel_pos_attention(
                b,
                &f32_in(b, &s3, &q)?,
                &f32_in(b, &s3, &k)?,
                &f32_in(b, &s3, &v)?,
                &f32_in(b, &[t, heads, 8], &gate)?,
                &f32_in(b, &[heads], &gc)?,
                &f32_in(b, &[heads, 2 * t - 1], &rel)?,
                &out,
            )?;
            let mut want = vec![0f64; t * heads * d];
            for i in 0..t {
                for h in 0..heads {
                    let z: Vec<f64> = gate[(i * heads + h) * 8..][..8].iter().map(|&v| v as f64).collect();
                    let g = sigmoid(z[..4].iter().sum()) * (sigmoid(z[4..].iter().sum()) * gc[h] as f64 - 1.0) + 2.0;
                    let logits: Vec<f64> = (0..t)
                        .map(|j| {
                            let dot: f64 = (0..d).map(|e| q[(i * heads + h) * d + e] as f64 * k[(j * heads + h) * d + e] as f64).sum();
                            dot / (d as f64).sqrt() + g * rel[h * (2 * t - 1) + j + t - 1 - i] as f64
                        })
                        .collect();
                    let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let p: Vec<f64> = logits.iter().map(|l| (l - max).exp()).collect();
                    let sum: f64 = p.iter().sum();
                    for e in 0..d {
                        want[(i * heads + h) * d + e] = (0..t).map(|j| p[j] / sum * v[(j * heads + h) * d + e] as f64).sum();
                    }
                }
            }
            compare_f32(&ops::download_f32(b, &out)?, &want, F32_NMSE)
        }
        _ => unreachable!("not an encoder case"),
    })
}

/// The residual search in f64: first index of the smallest distance per level.
fn rvq_reference(x: &[f32], books: &[f32], n: usize, d: usize, levels: usize, k: usize) -> (Vec<u32>, Vec<f64>) {
    let mut codes = Vec::with_capacity(n * levels);
    let mut quantized = vec![0f64; n * d];
    for row in 0..n {
        let mut r: Vec<f64> = x[row * d..][..d].iter().map(|&v| v as f64).collect();
        for l in 0..levels {
            let dist = |i: usize| -> f64 { (0..d).map(|j| (r[j] - books[(l * k + i) * d + j] as f64).powi(2)).sum() };
            let best = (1..k).fold(0, |best, i| if dist(i) < dist(best) { i } else { best });
            for j in 0..d {
                let e = books[(l * k + best) * d + j] as f64;
                r[j] -= e;
                quantized[row * d + j] += e;
            }
            codes.push(best as u32);
        }
    }
    (codes, quantized)
}
