//! Cases for the codec's ops: linear with bias and epilogues, modulated LayerNorm,
//! convolutions (dilated, padded, upsampled, transposed), and the sampler's updates.

use uniaudio_runtime::weights::WeightView;
use uniaudio_runtime::{ops, Backend, ConvParams, DType, Epilogue, PreluSlope, Result, Tensor, UnaryFn};

use crate::cases::{Case, F32_NMSE};
use crate::harness::{compare_f32, Rng, Verdict};
use crate::reference as r;

/// Which epilogue a `Linear` case exercises.
#[derive(Clone, Copy, Debug)]
pub enum Epi {
    Store,
    Gelu,
    Silu,
    GatedAdd,
    GeluErf,
}

pub fn cases() -> Vec<Case> {
    use Case::*;
    let mut cases = Vec::new();
    for dtype in [DType::F32, DType::F16, DType::BF16] {
        for (m, k, n, bias, epi) in [
            (1, 7, 5, true, Epi::Store),
            (3, 33, 17, true, Epi::Gelu),
            (5, 64, 130, false, Epi::Silu),
            (9, 128, 64, true, Epi::GatedAdd),
            (1, 130, 33, true, Epi::GatedAdd),
            (17, 96, 257, true, Epi::Store),
            (70, 33, 65, true, Epi::Gelu),
            (130, 64, 17, true, Epi::GatedAdd),
            (64, 128, 64, false, Epi::Silu),
            (33, 48, 70, true, Epi::GeluErf),
        ] {
            cases.push(Linear { m, k, n, bias, epi, dtype, reused: false });
        }
        cases.push(Conv1d { batch: 2, l_in: 9, c_in: 5, c_out: 7, k: 3, stride: 1, groups: 1, dilation: 1, pad_left: 1, upsample: 1, l_out: 9, prelu: false, accumulate: false, dtype });
        cases.push(Conv1d { batch: 1, l_in: 19, c_in: 6, c_out: 9, k: 4, stride: 3, groups: 3, dilation: 1, pad_left: 2, upsample: 1, l_out: 7, prelu: false, accumulate: false, dtype });
        cases.push(ConvTranspose1d { l_in: 5, c_in: 6, c_out: 4, k: 12, stride: 6, padding: 0, l_out: 30, dtype });
    }
    // Over 128 rows and 256 columns (the CPU's fast level applies the epilogue in its
    // packed GEMM's store): weights kept in the GEMM's layout too (paired once there) or
    // not; a partial row panel, two K blocks with an odd K, a partial column task. Then
    // a few rows from a kept weight, and a q8 weight, kept as it is.
    for (m, k, n, bias, epi, dtype, reused) in [
        (134, 261, 260, true, Epi::GatedAdd, DType::BF16, true),
        (134, 261, 260, true, Epi::Gelu, DType::BF16, true),
        (150, 96, 270, false, Epi::GatedAdd, DType::BF16, false),
        (140, 70, 300, false, Epi::Silu, DType::BF16, false),
        (5, 64, 300, true, Epi::Store, DType::BF16, true),
        (134, 64, 260, true, Epi::Store, DType::Q8_0, true),
    ] {
        cases.push(Linear { m, k, n, bias, epi, dtype, reused });
    }
    // 8-bit and 4-bit weights (bias in bf16).
    for (m, k, n, bias, epi) in [(1, 64, 5, true, Epi::Store), (9, 128, 64, true, Epi::GatedAdd), (70, 32, 65, true, Epi::Gelu), (17, 96, 257, false, Epi::Silu)] {
        cases.push(Linear { m, k, n, bias, epi, dtype: DType::Q8_0, reused: false });
    }
    for (m, k, n, bias, epi) in [(1, 96, 5, true, Epi::Store), (17, 64, 130, true, Epi::Gelu)] {
        cases.push(Linear { m, k, n, bias, epi, dtype: DType::Q4_0, reused: false });
    }
    for (rows, cols) in [(1, 1), (3, 7), (2, 1000)] {
        for f in [UnaryFn::Silu, UnaryFn::GeluTanh, UnaryFn::RoundToLevels(9.0), UnaryFn::GeluErf, UnaryFn::Relu] {
            cases.push(Unary { rows, cols, f, in_place: false });
        }
        cases.push(Blend { rows, cols, in_place: true });
        cases.push(EulerCfg { rows, cols });
    }
    cases.push(Unary { rows: 3, cols: 65, f: UnaryFn::GeluTanh, in_place: true });
    for (rows, cols) in [(1, 4), (5, 128), (2, 1536), (7, 33)] {
        cases.push(LayerNormModulate { rows, cols });
    }
    let f32 = DType::F32;
    // Causal dilated residual conv, "same" conv, upsampled PostProcessor conv, 1x1 with
    // PReLU and accumulate, odd channel counts, long outputs split across tasks.
    for (batch, l_in, c_in, c_out, k, dilation, pad_left, upsample, l_out, prelu, accumulate) in [
        (1, 40, 8, 8, 7, 3, 18, 1, 40, true, false),
        (1, 23, 3, 5, 5, 1, 2, 1, 23, false, false),
        (1, 11, 4, 4, 7, 1, 6, 2, 22, true, false),
        (1, 50, 16, 16, 1, 1, 0, 1, 50, true, true),
        (2, 300, 33, 17, 3, 9, 9, 1, 300, false, true),
        (1, 7, 5, 3, 4, 2, 1, 1, 12, false, false),
        (2, 90, 20, 70, 3, 1, 1, 1, 90, true, true),
        (1, 33, 4, 1, 7, 1, 6, 2, 66, false, false),
        // 260 output channels: the fast level's bf16 product.
        (1, 30, 7, 260, 3, 1, 1, 1, 30, false, true),
        // Even C_in from 64 output channels: the fast level's direct bf16 convolution
        // (a dilated residual conv with a partial column group; two batches and PReLU
        // over a partial row panel, padding past both ends).
        (1, 70, 12, 96, 7, 3, 18, 1, 70, true, false),
        (2, 29, 34, 130, 4, 1, 5, 1, 33, true, true),
        // Upsampled (the SQ decoder's post-processor) on the direct bf16 convolution.
        (2, 13, 16, 64, 7, 1, 6, 2, 26, true, false),
        // Whole 16-pair tile steps: the AMX level's tiles (dilated runs; upsampled).
        (2, 40, 32, 64, 3, 3, 6, 1, 40, true, true),
        (1, 21, 32, 70, 5, 1, 4, 2, 42, false, false),
    ] {
        cases.push(Conv1d { batch, l_in, c_in, c_out, k, stride: 1, groups: 1, dilation, pad_left, upsample, l_out, prelu, accumulate, dtype: f32 });
    }
    // Strided (Whisper's conv2, WavLM's feature encoder incl. C_in = 1), grouped (WavLM's
    // positional conv with an even kernel: one extra frame dropped), depthwise "same".
    for (batch, l_in, c_in, c_out, k, stride, groups, pad_left, l_out, accumulate) in [
        (1, 30, 8, 12, 3, 2, 1, 1, 15, false),
        (2, 101, 1, 16, 10, 5, 1, 0, 19, false),
        (1, 64, 20, 20, 2, 2, 1, 0, 32, true),
        (2, 37, 24, 24, 16, 1, 4, 8, 37, false),
        (1, 50, 32, 32, 31, 1, 32, 15, 50, true),
        (1, 45, 130, 130, 7, 1, 130, 3, 45, false),
        (2, 29, 40, 40, 5, 2, 40, 2, 15, false),
        (1, 40, 32, 48, 12, 1, 2, 6, 40, true),
        (2, 33, 64, 64, 8, 2, 4, 4, 16, false),
        // The direct bf16 convolution, strided, two columns into its second group.
        (1, 61, 16, 66, 3, 2, 1, 1, 30, true),
    ] {
        cases.push(Conv1d { batch, l_in, c_in, c_out, k, stride, groups, dilation: 1, pad_left, upsample: 1, l_out, prelu: false, accumulate, dtype: f32 });
    }
    // Depthwise, dilated, upsampled, with PReLU and accumulate.
    cases.push(Conv1d { batch: 2, l_in: 17, c_in: 24, c_out: 24, k: 5, stride: 1, groups: 24, dilation: 2, pad_left: 4, upsample: 2, l_out: 34, prelu: true, accumulate: true, dtype: f32 });
    // Causal (K = 2s, last s dropped), non-causal with padding ⌊(K − s)/2⌋ at full length
    // (odd stride: one extra frame), and K not a multiple of s.
    for (l_in, c_in, c_out, k, stride, padding, l_out) in [
        (7, 8, 4, 10, 5, 0, 35),
        (6, 5, 3, 6, 3, 1, 19),
        (9, 4, 6, 8, 4, 2, 36),
        (4, 3, 2, 7, 3, 0, 16),
        (33, 16, 8, 2, 1, 0, 34),
        // From 64 output channels and even C_in: the fast level's direct bf16 route (one
        // plain convolution per phase), K < s among them.
        (9, 16, 66, 8, 4, 2, 36),
        (5, 6, 64, 3, 4, 0, 19),
    ] {
        cases.push(ConvTranspose1d { l_in, c_in, c_out, k, stride, padding, l_out, dtype: f32 });
    }
    cases
}

fn f32_in<B: Backend>(b: &B, shape: &[usize], v: &[f32]) -> Result<Tensor<B>> {
    ops::upload_f32(b, shape, v, DType::F32)
}

pub fn run<B: Backend>(case: &Case, b: &B, rng: &mut Rng) -> Result<Verdict> {
    Ok(match *case {
        Case::Linear { m, k, n, bias, epi, dtype, reused } => {
            let x = rng.vec(m * k, 1.0);
            let w = r::round_to(&rng.vec(n * k, 1.0), dtype);
            // Biases stay in a float dtype when the weights are 8-bit or 4-bit.
            let bias_dtype = if dtype.is_quantized() { DType::BF16 } else { dtype };
            let bv = r::round_to(&rng.vec(n, 1.0), bias_dtype);
            let init = rng.vec(m * n, 1.0);
            let gate = rng.vec(n, 1.0);
            let out = f32_in(b, &[m, n], &init)?;
            let wt = if reused {
                let view = WeightView::from_bytes("w", dtype, &[n, k], &uniaudio_runtime::dtype::f32_to_bytes(&w, dtype))?;
                b.upload_gemm_weight(&view)?
            } else {
                ops::upload_f32(b, &[n, k], &w, dtype)?
            };
            let bt = ops::upload_f32(b, &[n], &bv, bias_dtype)?;
            let gt = f32_in(b, &[n], &gate)?;
            let epilogue = match epi {
                Epi::Store => Epilogue::Store,
                Epi::Gelu => Epilogue::Act(UnaryFn::GeluTanh),
                Epi::Silu => Epilogue::Act(UnaryFn::Silu),
                Epi::GatedAdd => Epilogue::GatedAdd { gate: &gt },
                Epi::GeluErf => Epilogue::Act(UnaryFn::GeluErf),
            };
            ops::linear(b, &f32_in(b, &[m, k], &x)?, &wt, bias.then_some(&bt), &out, epilogue)?;
            let y = r::matmul(&x, &w, m, k, n, false, None);
            let want: Vec<f64> = y
                .iter()
                .enumerate()
                .map(|(i, &v)| {
                    let v = v + if bias { bv[i % n] as f64 } else { 0.0 };
                    match epi {
                        Epi::Store => v,
                        Epi::Gelu => r::gelu_tanh(v),
                        Epi::Silu => v / (1.0 + (-v).exp()),
                        Epi::GatedAdd => init[i] as f64 + gate[i % n] as f64 * v,
                        Epi::GeluErf => r::gelu_erf(v),
                    }
                })
                .collect();
            compare_f32(&ops::download_f32(b, &out)?, &want, F32_NMSE)
        }
        Case::Unary { rows, cols, f, in_place } => {
            let mut x = rng.vec(rows * cols, 4.0);
            if let UnaryFn::RoundToLevels(l) = f {
                // Plant exact ties (k + 0.5) / levels: half-to-even decides them.
                for (i, v) in x.iter_mut().enumerate().step_by(3) {
                    *v = ((i % 7) as f32 - 3.0 + 0.5) / l;
                }
            }
            let xt = f32_in(b, &[rows, cols], &x)?;
            let out = if in_place { xt.clone() } else { b.alloc(DType::F32, &[rows, cols])? };
            ops::unary(b, &xt, &out, f)?;
            let (want, tol): (Vec<f64>, f64) = match f {
                UnaryFn::Silu => (x.iter().map(|&v| v as f64 / (1.0 + (-v as f64).exp())).collect(), F32_NMSE),
                UnaryFn::GeluTanh => (x.iter().map(|&v| r::gelu_tanh(v as f64)).collect(), F32_NMSE),
                // Exact: the product is rounded to f32 first, as torch.round(9 * x) does.
                UnaryFn::RoundToLevels(l) => (x.iter().map(|&v| ((l * v).round_ties_even() / l) as f64).collect(), 0.0),
                UnaryFn::GeluErf => (x.iter().map(|&v| r::gelu_erf(v as f64)).collect(), F32_NMSE),
                UnaryFn::Relu => (x.iter().map(|&v| v.max(0.0) as f64).collect(), 0.0),
            };
            compare_f32(&ops::download_f32(b, &out)?, &want, tol)
        }
        Case::LayerNormModulate { rows, cols } => {
            let x: Vec<f32> = rng.vec(rows * cols, 3.0).iter().map(|v| v + 0.7).collect();
            let (shift, scale) = (rng.vec(cols, 1.0), rng.vec(cols, 1.0));
            let out = b.alloc(DType::F32, &[rows, cols])?;
            ops::layer_norm_modulate(b, &f32_in(b, &[rows, cols], &x)?, &f32_in(b, &[cols], &shift)?, &f32_in(b, &[cols], &scale)?, &out, 1e-6)?;
            let mut want = Vec::new();
            for row in x.chunks(cols) {
                let mean = row.iter().map(|&v| v as f64).sum::<f64>() / cols as f64;
                let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / cols as f64;
                let rstd = 1.0 / (var + 1e-6).sqrt();
                want.extend(row.iter().enumerate().map(|(j, &v)| (v as f64 - mean) * rstd * (1.0 + scale[j] as f64) + shift[j] as f64));
            }
            compare_f32(&ops::download_f32(b, &out)?, &want, F32_NMSE)
        }
        Case::Conv1d { batch, l_in, c_in, c_out, k, stride, groups, dilation, pad_left, upsample, l_out, prelu, accumulate, dtype } => {
            let x = rng.vec(batch * l_in * c_in, 1.0);
            let cg = c_in / groups;
            let w = r::round_to(&rng.vec(c_out * k * cg, 1.0), dtype);
            let bias = r::round_to(&rng.vec(c_out, 1.0), dtype);
            let init = rng.vec(batch * l_out * c_out, 1.0);
            let slope = prelu.then(|| rng.uniform() * 0.25);
            let out = f32_in(b, &[batch, l_out, c_out], &init)?;
            let conv = ConvParams { stride, groups, dilation, pad_left, upsample, prelu: slope.map(PreluSlope::new), accumulate };
            let (wt, bt) = (ops::upload_f32(b, &[c_out, k, cg], &w, dtype)?, ops::upload_f32(b, &[c_out], &bias, dtype)?);
            ops::conv1d(b, &f32_in(b, &[batch, l_in, c_in], &x)?, &wt, Some(&bt), &out, conv)?;
            let mut want = vec![0f64; batch * l_out * c_out];
            for bi in 0..batch {
                for j in 0..l_out {
                    for o in 0..c_out {
                        let mut s = bias[o] as f64;
                        for kk in 0..k {
                            let u = (j * stride + kk * dilation) as isize - pad_left as isize;
                            if u < 0 || u >= (l_in * upsample) as isize {
                                continue;
                            }
                            let t = u as usize / upsample;
                            let g = o / (c_out / groups);
                            for i in 0..cg {
                                s += w[(o * k + kk) * cg + i] as f64 * x[(bi * l_in + t) * c_in + g * cg + i] as f64;
                            }
                        }
                        if let Some(a) = slope {
                            if s < 0.0 {
                                s *= a as f64;
                            }
                        }
                        let idx = (bi * l_out + j) * c_out + o;
                        want[idx] = if accumulate { init[idx] as f64 + s } else { s };
                    }
                }
            }
            compare_f32(&ops::download_f32(b, &out)?, &want, F32_NMSE)
        }
        Case::ConvTranspose1d { l_in, c_in, c_out, k, stride, padding, l_out, dtype } => {
            let x = rng.vec(l_in * c_in, 1.0);
            let w = r::round_to(&rng.vec(c_out * k * c_in, 1.0), dtype);
            let bias = r::round_to(&rng.vec(c_out, 1.0), dtype);
            let out = b.alloc(DType::F32, &[1, l_out, c_out])?;
            let (wt, bt) = (ops::upload_f32(b, &[c_out, k, c_in], &w, dtype)?, ops::upload_f32(b, &[c_out], &bias, dtype)?);
            ops::conv_transpose1d(b, &f32_in(b, &[1, l_in, c_in], &x)?, &wt, Some(&bt), &out, stride, padding)?;
            let mut want: Vec<f64> = (0..l_out * c_out).map(|i| bias[i % c_out] as f64).collect();
            for t in 0..l_in {
                for kk in 0..k {
                    let j = (t * stride + kk) as isize - padding as isize;
                    if j < 0 || j >= l_out as isize {
                        continue;
                    }
                    for o in 0..c_out {
                        for i in 0..c_in {
                            want[j as usize * c_out + o] += w[(o * k + kk) * c_in + i] as f64 * x[t * c_in + i] as f64;
                        }
                    }
                }
            }
            compare_f32(&ops::download_f32(b, &out)?, &want, F32_NMSE)
        }
        Case::EulerCfg { rows, cols } => {
            let (x, c, u) = (rng.vec(rows * cols, 2.0), rng.vec(rows * cols, 2.0), rng.vec(rows * cols, 2.0));
            let (scale, dt) = (1.5f32, 0.3333f32);
            let xt = f32_in(b, &[rows, cols], &x)?;
            ops::euler_cfg(b, &xt, &f32_in(b, &[rows, cols], &c)?, &f32_in(b, &[rows, cols], &u)?, scale, dt)?;
            let want: Vec<f64> = (0..x.len()).map(|i| x[i] as f64 + dt as f64 * (u[i] as f64 + scale as f64 * (c[i] as f64 - u[i] as f64))).collect();
            compare_f32(&ops::download_f32(b, &xt)?, &want, F32_NMSE)
        }
        Case::Blend { rows, cols, in_place } => {
            let (x, y) = (rng.vec(rows * cols, 2.0), rng.vec(rows * cols, 2.0));
            let (wa, wb) = (0.75f32, -0.3f32);
            let (xt, yt) = (f32_in(b, &[rows, cols], &x)?, f32_in(b, &[rows, cols], &y)?);
            let out = if in_place { xt.clone() } else { b.alloc(DType::F32, &[rows, cols])? };
            ops::blend(b, &xt, &yt, wa, wb, &out)?;
            let want: Vec<f64> = x.iter().zip(&y).map(|(&a, &c)| wa as f64 * a as f64 + wb as f64 * c as f64).collect();
            compare_f32(&ops::download_f32(b, &out)?, &want, F32_NMSE)
        }
        _ => unreachable!("not a codec case"),
    })
}
