//! MusicFM (BEST-RQ): Conv2d subsampling (two Res2d modules, BatchNorm folded at load)
//! and rotary conformer layers, up to the hidden states the codec reads.
//!
//! Activations are channels-last with time leading: the mel is [T, F, 1] and the front
//! end ends at [T/4, F/4, C]; `conv.linear`'s columns (torch order c·F/4 + f) are permuted
//! at load to that (f, c) order, so the rearrange costs nothing.

use uniaudio_runtime::{ops, Backend, Conv2dParams, ConvParams, DType, Epilogue, Tensor, UnaryFn};

use super::config::EncoderConfig;
use super::layers::{fold_batch_norm, positions, self_attention, EncoderWeights, Lin, Ln};
use super::tensors::{musicfm_freq_rows, musicfm_layers_needed, MUSICFM_MELS};
use crate::error::Result;

/// One 3×3 convolution with its BatchNorm folded: w [C_out, 3 (time), 3 (freq), C_in].
struct Conv<B: Backend> {
    w: Tensor<B>,
    b: Tensor<B>,
}

struct Res2d<B: Backend> {
    conv1: Conv<B>,
    conv2: Conv<B>,
    conv3: Conv<B>,
}

struct Layer<B: Backend> {
    ffn1_ln: Ln<B>,
    ffn1_up: Lin<B>,
    ffn1_down: Lin<B>,
    att_ln: Ln<B>,
    q: Lin<B>,
    k: Lin<B>,
    v: Lin<B>,
    out: Lin<B>,
    conv_ln: Ln<B>,
    pw1: Lin<B>,
    dw_w: Tensor<B>,
    dw_b: Tensor<B>,
    pw2: Lin<B>,
    ffn2_ln: Ln<B>,
    ffn2_up: Lin<B>,
    ffn2_down: Lin<B>,
    final_ln: Ln<B>,
}

pub struct MusicFm<B: Backend> {
    front: [Res2d<B>; 2],
    proj: Lin<B>,
    layers: Vec<Layer<B>>,
    inv_freq: Vec<f32>,
    heads: usize,
    kernel: usize,
    half: Tensor<B>,
    ones: Tensor<B>,
}

/// The conformer's hidden states the codec uses: [T/4, encoder_dim] each.
pub struct MusicFmStreams<B: Backend> {
    pub acoustic: Tensor<B>,
    pub semantic: Tensor<B>,
}

impl<B: Backend> MusicFm<B> {
    pub fn load(l: &EncoderWeights<B>, c: &EncoderConfig) -> Result<Self> {
        let m = &c.musicfm;
        let (p, ch, e, eps) = (&m.prefix, m.conv_dim, m.encoder_dim, m.layer_norm_eps);
        let conv = |module: usize, name: &str, bn: &str, c_in: usize| -> Result<Conv<B>> {
            let b = format!("{p}conv.conv.{module}.");
            let w = l.host(&format!("{b}{name}.weight"), &[ch, c_in, 3, 3])?;
            let mut bias = l.host(&format!("{b}{name}.bias"), &[ch])?;
            // torch [C_out, C_in, F, T] -> [C_out, T, F, C_in].
            let mut wt = vec![0f32; w.len()];
            for o in 0..ch {
                for i in 0..c_in {
                    for f in 0..3 {
                        for t in 0..3 {
                            wt[((o * 3 + t) * 3 + f) * c_in + i] = w[((o * c_in + i) * 3 + f) * 3 + t];
                        }
                    }
                }
            }
            let bn = |part: &str| l.host(&format!("{b}{bn}.{part}"), &[ch]);
            fold_batch_norm(&mut wt, &mut bias, &bn("weight")?, &bn("bias")?, &bn("running_mean")?, &bn("running_var")?, m.batch_norm_eps);
            Ok(Conv { w: l.upload(&[ch, 3, 3, c_in], &wt)?, b: l.upload(&[ch], &bias)? })
        };
        let module = |i: usize, c_in: usize| -> Result<Res2d<B>> {
            Ok(Res2d { conv1: conv(i, "conv1", "bn1", c_in)?, conv2: conv(i, "conv2", "bn2", ch)?, conv3: conv(i, "conv3", "bn3", c_in)? })
        };
        let front = [module(0, 1)?, module(1, ch)?];
        let f = musicfm_freq_rows();
        let w = l.host(&format!("{p}conv.linear.weight"), &[e, ch * f])?;
        let mut wp = vec![0f32; w.len()];
        for o in 0..e {
            for c_ in 0..ch {
                for fr in 0..f {
                    wp[o * ch * f + fr * ch + c_] = w[o * ch * f + c_ * f + fr];
                }
            }
        }
        let proj = Lin::from_host(l, &wp, Some(&l.host(&format!("{p}conv.linear.bias"), &[e])?), e, ch * f)?;
        let k = m.conv_depthwise_kernel_size;
        let mut layers = Vec::new();
        for i in 0..musicfm_layers_needed(c) {
            let b = format!("{p}conformer.layers.{i}.");
            let lin = |n: &str, out: usize, inp: usize| l.linear(&format!("{b}{n}"), out, inp, true);
            let ln = |n: &str| l.layer_norm(&format!("{b}{n}"), e, eps);
            let pw = |n: &str, out: usize| -> Result<Lin<B>> {
                let w = l.host(&format!("{b}conv_module.{n}.weight"), &[out, e, 1])?;
                Lin::from_host(l, &w, None, out, e)
            };
            // Depthwise conv [E, 1, K] with its BatchNorm folded -> [E, K, 1].
            let mut dw = l.host(&format!("{b}conv_module.depthwise_conv.weight"), &[e, 1, k])?;
            let mut dw_b = vec![0f32; e];
            let bn = |part: &str| l.host(&format!("{b}conv_module.batch_norm.{part}"), &[e]);
            fold_batch_norm(&mut dw, &mut dw_b, &bn("weight")?, &bn("bias")?, &bn("running_mean")?, &bn("running_var")?, m.batch_norm_eps);
            layers.push(Layer {
                ffn1_ln: ln("ffn1_layer_norm")?,
                ffn1_up: lin("ffn1.intermediate_dense", m.intermediate_size, e)?,
                ffn1_down: lin("ffn1.output_dense", e, m.intermediate_size)?,
                att_ln: ln("self_attn_layer_norm")?,
                q: lin("self_attn.linear_q", e, e)?,
                k: lin("self_attn.linear_k", e, e)?,
                v: lin("self_attn.linear_v", e, e)?,
                out: lin("self_attn.linear_out", e, e)?,
                conv_ln: ln("conv_module.layer_norm")?,
                pw1: pw("pointwise_conv1", 2 * e)?,
                dw_w: l.upload(&[e, k, 1], &dw)?,
                dw_b: l.upload(&[e], &dw_b)?,
                pw2: pw("pointwise_conv2", e)?,
                ffn2_ln: ln("ffn2_layer_norm")?,
                ffn2_up: lin("ffn2.intermediate_dense", m.intermediate_size, e)?,
                ffn2_down: lin("ffn2.output_dense", e, m.intermediate_size)?,
                final_ln: ln("final_layer_norm")?,
            });
        }
        let inv_name = format!("{p}conformer.embed_positions.inv_freq");
        let half = m.head_dim / 2;
        let inv_freq = if l.contains(&inv_name) { l.host(&inv_name, &[half])? } else { inv_freq(m.head_dim, m.rotary_embedding_base) };
        Ok(MusicFm { front, proj, layers, inv_freq, heads: m.heads, kernel: k, half: l.fill(e, 0.5)?, ones: l.fill(e, 1.0)? })
    }

    /// Normalised mels [B·T, 128] (time-major, B chunks of `t` frames) -> the acoustic and
    /// semantic hidden states [B·T/4, encoder_dim].
    pub fn forward(&self, bk: &B, mel: &Tensor<B>, t: usize, streams: (usize, usize)) -> Result<MusicFmStreams<B>> {
        let batch = mel.rows() / t;
        let mut x = mel.reshape(&[batch, t, MUSICFM_MELS, 1])?;
        for module in &self.front {
            x = res2d(bk, module, &x)?;
        }
        let [_, t4, f4, ch] = [x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]];
        let mut h = self.proj.apply(bk, &x.reshape(&[batch * t4, f4 * ch])?, Epilogue::Store)?;
        let e = h.dim_back(0);
        let pos = positions(bk, 1, t4)?;
        let rope_pos = positions(bk, batch, t4)?;
        let table = ops::upload_f32(bk, &[t4, 2 * self.inv_freq.len()], &ops::rope_table(&self.inv_freq, t4), DType::F32)?;
        let (mut acoustic, mut semantic) = (None, None);
        for (i, layer) in self.layers.iter().enumerate() {
            if i == streams.0 {
                acoustic = Some(h.clone());
            }
            if i == streams.1 {
                semantic = Some(h.clone());
            }
            h = self.layer(bk, layer, h, (&pos, &rope_pos), &table, e, batch)?;
        }
        let last = self.layers.len();
        let pick = |slot: Option<Tensor<B>>, k: usize| if k == last { h.clone() } else { slot.expect("stream index below the layers run") };
        Ok(MusicFmStreams { acoustic: pick(acoustic, streams.0), semantic: pick(semantic, streams.1) })
    }

    /// One conformer layer; returns a new tensor (the input is kept as a hidden state).
    #[allow(clippy::too_many_arguments)]
    fn layer(&self, bk: &B, l: &Layer<B>, x: Tensor<B>, pos: (&Tensor<B>, &Tensor<B>), table: &Tensor<B>, e: usize, batch: usize) -> Result<Tensor<B>> {
        let (pos, rope_pos) = pos;
        let t = x.rows();
        let h = bk.alloc(DType::F32, &[t, e])?;
        ops::blend(bk, &x, &x, 1.0, 0.0, &h)?;
        let half = Epilogue::GatedAdd { gate: &self.half };
        let residual = Epilogue::GatedAdd { gate: &self.ones };
        let f = l.ffn1_up.apply(bk, &l.ffn1_ln.apply(bk, &h)?, Epilogue::Act(UnaryFn::Silu))?;
        l.ffn1_down.run(bk, &f, &h, half)?;
        // RoPE rotates the normed input per head before the q/k projections; v reads it unrotated.
        let a = l.att_ln.apply(bk, &h)?;
        let hd = e / self.heads;
        let rot = bk.alloc(DType::F32, &[t, self.heads, hd])?;
        ops::rope(bk, &a.reshape(&[t, self.heads, hd])?, rope_pos, table, &rot)?;
        let rot = rot.reshape(&[t, e])?;
        let q = l.q.apply(bk, &rot, Epilogue::Store)?;
        let k = l.k.apply(bk, &rot, Epilogue::Store)?;
        let v = l.v.apply(bk, &a, Epilogue::Store)?;
        let att = self_attention(bk, &q, &k, &v, self.heads, batch, pos)?;
        l.out.run(bk, &att, &h, residual)?;
        // Convolution module: LN, pointwise to 2E, GLU, depthwise (BatchNorm folded), SiLU, pointwise.
        let u = l.pw1.apply(bk, &l.conv_ln.apply(bk, &h)?, Epilogue::Store)?;
        let g = bk.alloc(DType::F32, &[batch, t / batch, e])?;
        ops::glu(bk, &u, &g.reshape(&[t, e])?)?;
        let dw = bk.alloc(DType::F32, &[batch, t / batch, e])?;
        let same = ConvParams { groups: e, pad_left: (self.kernel - 1) / 2, ..ConvParams::plain() };
        ops::conv1d(bk, &g, &l.dw_w, Some(&l.dw_b), &dw, same)?;
        ops::unary(bk, &dw, &dw, UnaryFn::Silu)?;
        l.pw2.run(bk, &dw.reshape(&[t, e])?, &h, residual)?;
        let f = l.ffn2_up.apply(bk, &l.ffn2_ln.apply(bk, &h)?, Epilogue::Act(UnaryFn::Silu))?;
        l.ffn2_down.run(bk, &f, &h, half)?;
        l.final_ln.apply(bk, &h)
    }
}

/// y = ReLU(BN3(conv3(x)) + BN2(conv2(ReLU(BN1(conv1(x)))))), strides (2, 2).
fn res2d<B: Backend>(bk: &B, m: &Res2d<B>, x: &Tensor<B>) -> Result<Tensor<B>> {
    let (batch, t, f) = (x.shape()[0], x.shape()[1], x.shape()[2]);
    let ch = m.conv1.b.numel();
    let down = |n: usize| (n + 2 - 3) / 2 + 1;
    let shape = [batch, down(t), down(f), ch];
    let strided = Conv2dParams { stride: [2, 2], pad: [1, 1], accumulate: false, relu: true };
    let a = bk.alloc(DType::F32, &shape)?;
    ops::conv2d(bk, x, &m.conv1.w, Some(&m.conv1.b), &a, strided)?;
    let y = bk.alloc(DType::F32, &shape)?;
    ops::conv2d(bk, x, &m.conv3.w, Some(&m.conv3.b), &y, Conv2dParams { relu: false, ..strided })?;
    ops::conv2d(bk, &a, &m.conv2.w, Some(&m.conv2.b), &y, Conv2dParams { stride: [1, 1], pad: [1, 1], accumulate: true, relu: true })?;
    Ok(y)
}

/// 1 / base^(2i/d) in f32, as torch computes `inv_freq`.
pub fn inv_freq(dim: usize, base: f32) -> Vec<f32> {
    (0..dim / 2).map(|i| 1.0 / base.powf((2 * i) as f32 / dim as f32)).collect()
}
