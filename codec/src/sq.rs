//! The SQ-Codec decoder (`ScalarModel.decode`): round(9x)/9, a look-ahead conv, upsampling
//! blocks (transposed conv + dilated residual units with scalar PReLU), the optional
//! PostProcessor and the output conv. Activations are time-major [1, L, C].

use uniaudio_runtime::{ops, Backend, ConvParams, DType, PreluSlope, Tensor, UnaryFn};

use crate::config::{CodecConfig, SqConfig};
use crate::error::{CodecError, Result};
use crate::load::{conv_to_runtime, conv_transpose_to_runtime, fold_weight_norm, Loader};
use crate::tensors::sq_tail_indices;

struct Conv<B: Backend> {
    w: Tensor<B>, // [C_out, K, C_in]
    b: Tensor<B>,
    k: usize,
    c_out: usize,
}

struct ResUnit<B: Backend> {
    conv1: Conv<B>,
    conv2: Conv<B>,
    slope1: f32,
    slope2: f32,
    dilation: usize,
}

struct UpBlock<B: Backend> {
    up: Conv<B>,
    stride: usize,
    units: Vec<ResUnit<B>>,
}

pub struct SqDecoder<B: Backend> {
    cfg: SqConfig,
    first: Conv<B>,
    blocks: Vec<UpBlock<B>>,
    post: Option<(Conv<B>, f32)>,
    last: Conv<B>,
}

fn wn_conv<B: Backend>(l: &Loader<B>, name: &str, c_out: usize, c_in: usize, k: usize) -> Result<Conv<B>> {
    let g = l.host(&format!("{name}.weight_g"), &[c_out, 1, 1])?;
    let v = l.host(&format!("{name}.weight_v"), &[c_out, c_in, k])?;
    let w = conv_to_runtime(&fold_weight_norm(&g, &v), c_out, c_in, k);
    Ok(Conv { w: l.upload(&[c_out, k, c_in], &w)?, b: l.upload(&[c_out], &l.host(&format!("{name}.bias"), &[c_out])?)?, k, c_out })
}

impl<B: Backend> SqDecoder<B> {
    pub fn load(l: &Loader<B>, c: &CodecConfig) -> Result<Self> {
        let q = c.sq_decoder.clone();
        let ch = q.channels();
        let first = wn_conv(l, "decoder.0", ch[0], q.latent_hidden_dim, q.delay_kernel_size)?;
        let mut blocks = Vec::new();
        for (i, (&s, &k)) in q.upsample_factors.iter().zip(&q.upsample_kernel_sizes).enumerate() {
            let (cin, cout) = (ch[i], ch[i + 1]);
            let name = format!("decoder.{}.up_conv.layer", i + 1);
            // Transposed conv: weight norm per *input* channel (v is [C_in, C_out, K]).
            let g = l.host(&format!("{name}.weight_g"), &[cin, 1, 1])?;
            let v = l.host(&format!("{name}.weight_v"), &[cin, cout, k])?;
            let w = conv_transpose_to_runtime(&fold_weight_norm(&g, &v), cin, cout, k);
            let up = Conv { w: l.upload(&[cout, k, cin], &w)?, b: l.upload(&[cout], &l.host(&format!("{name}.bias"), &[cout])?)?, k, c_out: cout };
            let mut units = Vec::new();
            for (j, &dilation) in q.residual_dilations.iter().enumerate() {
                let u = format!("decoder.{}.convs.{j}", i + 1);
                units.push(ResUnit {
                    conv1: wn_conv(l, &format!("{u}.conv1"), cout, cout, q.res_kernel_size)?,
                    conv2: wn_conv(l, &format!("{u}.conv2"), cout, cout, 1)?,
                    slope1: l.scalar(&format!("{u}.activation1.weight"))?,
                    slope2: l.scalar(&format!("{u}.activation2.weight"))?,
                    dilation,
                });
            }
            blocks.push(UpBlock { up, stride: s, units });
        }
        let (post_idx, last_idx) = sq_tail_indices(c);
        let init = q.init_channel;
        let post = match post_idx {
            Some(p) => {
                let k = q.default_kernel_size;
                let w = l.host(&format!("decoder.{p}.conv.weight"), &[init, init, k])?;
                let conv = Conv {
                    w: l.upload(&[init, k, init], &conv_to_runtime(&w, init, init, k))?,
                    b: l.upload(&[init], &l.host(&format!("decoder.{p}.conv.bias"), &[init])?)?,
                    k,
                    c_out: init,
                };
                Some((conv, l.scalar(&format!("decoder.{p}.activation.weight"))?))
            }
            None => None,
        };
        let last = wn_conv(l, &format!("decoder.{last_idx}"), 1, init, q.default_kernel_size)?;
        Ok(SqDecoder { cfg: q, first, blocks, post, last })
    }

    /// Left padding and output length of a stride-1 conv over `len` frames: causal pads
    /// d·(k−1) on the left; non-causal pads ⌊d·(k−1)/2⌋ on both sides.
    fn padding(&self, causal: bool, len: usize, k: usize, d: usize) -> (usize, usize) {
        let span = d * (k - 1);
        if causal {
            (span, len)
        } else {
            let p = span / 2;
            (p, len + 2 * p - span)
        }
    }

    /// Output length of the transposed conv of block `i` over `len` frames.
    fn up_len(&self, len: usize, k: usize, s: usize) -> usize {
        if self.cfg.causal {
            (len - 1) * s + k - s
        } else {
            let p = (k - s) / 2;
            (len - 1) * s + k - 2 * p
        }
    }

    /// Samples produced for `frames` latent frames.
    pub fn output_len(&self, frames: usize) -> usize {
        let mut len = frames;
        for blk in &self.blocks {
            len = self.up_len(len, blk.up.k, blk.stride);
        }
        len * self.cfg.num_samples.max(1)
    }

    /// Multiply-adds ×2 of decoding `frames` latent frames, for GFLOP/s.
    pub fn flops(&self, frames: usize) -> f64 {
        let q = &self.cfg;
        let ch = q.channels();
        let mut len = frames;
        let mut total = (frames * ch[0] * q.latent_hidden_dim * q.delay_kernel_size) as f64;
        for (i, blk) in self.blocks.iter().enumerate() {
            let out = self.up_len(len, blk.up.k, blk.stride);
            total += (len * ch[i] * ch[i + 1] * blk.up.k) as f64;
            total += (out * ch[i + 1] * ch[i + 1] * (q.res_kernel_size + 1) * blk.units.len()) as f64;
            len = out;
        }
        let samples = len * q.num_samples.max(1);
        total += (samples * q.init_channel * q.default_kernel_size * (q.init_channel + 1)) as f64;
        2.0 * total
    }

    /// latent [T, latent_dim] (device) -> waveform samples.
    pub fn decode(&self, b: &B, latent: &Tensor<B>) -> Result<Vec<f32>> {
        let q = &self.cfg;
        let frames = latent.shape()[0];
        let rounded = b.alloc(DType::F32, latent.shape())?;
        ops::unary(b, latent, &rounded, UnaryFn::RoundToLevels(q.quantize_levels as f32))?;
        // The look-ahead conv is always "same" (non-causal).
        let (pad, len) = self.padding(false, frames, self.first.k, 1);
        let mut x = b.alloc(DType::F32, &[1, len, self.first.c_out])?;
        let same = ConvParams { pad_left: pad, ..ConvParams::plain() };
        ops::conv1d(b, &rounded.reshape(&[1, frames, q.latent_hidden_dim])?, &self.first.w, Some(&self.first.b), &x, same)?;
        for blk in &self.blocks {
            let len = x.shape()[1];
            let out_len = self.up_len(len, blk.up.k, blk.stride);
            let y = b.alloc(DType::F32, &[1, out_len, blk.up.c_out])?;
            let padding = if q.causal { 0 } else { (blk.up.k - blk.stride) / 2 };
            ops::conv_transpose1d(b, &x, &blk.up.w, Some(&blk.up.b), &y, blk.stride, padding)?;
            x = y;
            let tmp = b.alloc(DType::F32, x.shape())?;
            for u in &blk.units {
                let (pad, len1) = self.padding(q.causal, out_len, u.conv1.k, u.dilation);
                if len1 != out_len {
                    return Err(CodecError::Invalid(format!("residual unit with kernel {} and dilation {} changes the length", u.conv1.k, u.dilation)));
                }
                let p1 = ConvParams { dilation: u.dilation, pad_left: pad, prelu: Some(PreluSlope::new(u.slope1)), ..ConvParams::plain() };
                ops::conv1d(b, &x, &u.conv1.w, Some(&u.conv1.b), &tmp, p1)?;
                let p2 = ConvParams { prelu: Some(PreluSlope::new(u.slope2)), accumulate: true, ..ConvParams::plain() };
                ops::conv1d(b, &tmp, &u.conv2.w, Some(&u.conv2.b), &x, p2)?;
            }
        }
        if let Some((conv, slope)) = &self.post {
            let ns = q.num_samples;
            let len = x.shape()[1] * ns;
            let (pad, out_len) = self.padding(q.causal, len, conv.k, 1);
            let y = b.alloc(DType::F32, &[1, out_len, conv.c_out])?;
            let p = ConvParams { pad_left: pad, upsample: ns, prelu: Some(PreluSlope::new(*slope)), ..ConvParams::plain() };
            ops::conv1d(b, &x, &conv.w, Some(&conv.b), &y, p)?;
            x = y;
        }
        let len = x.shape()[1];
        let (pad, out_len) = self.padding(q.causal, len, self.last.k, 1);
        let y = b.alloc(DType::F32, &[1, out_len, 1])?;
        ops::conv1d(b, &x, &self.last.w, Some(&self.last.b), &y, ConvParams { pad_left: pad, ..ConvParams::plain() })?;
        Ok(ops::download_f32(b, &y)?)
    }
}
