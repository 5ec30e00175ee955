//! WavLM: the convolutional feature encoder (GroupNorm over time after conv 0), feature
//! projection, the weight-normed grouped positional convolution and post-LN layers with
//! the gated relative position bias; returns the mean of the configured hidden states.

use uniaudio_runtime::{ops, Backend, ConvParams, DType, Epilogue, Tensor, UnaryFn};

use super::config::EncoderConfig;
use super::layers::{EncoderWeights, Lin, Ln};
use super::tensors::{wavlm_layers_needed, POS_CONV_G, POS_CONV_V};
use crate::error::Result;
use crate::load::conv_to_runtime;

struct Layer<B: Backend> {
    q: Lin<B>,
    k: Lin<B>,
    v: Lin<B>,
    out: Lin<B>,
    gate: Lin<B>,
    gate_const: Tensor<B>,
    ln: Ln<B>,
    ff_up: Lin<B>,
    ff_down: Lin<B>,
    final_ln: Ln<B>,
}

pub struct Wavlm<B: Backend> {
    convs: Vec<(Tensor<B>, usize)>,
    gn_w: Tensor<B>,
    gn_b: Tensor<B>,
    proj_ln: Ln<B>,
    proj: Lin<B>,
    pos_w: Tensor<B>,
    pos_b: Tensor<B>,
    pos_groups: usize,
    pos_kernel: usize,
    enc_ln: Ln<B>,
    /// rel_attn_embed [num_buckets, heads] on the host: the bias table depends on T.
    rel_embed: Vec<f32>,
    num_buckets: usize,
    max_distance: usize,
    layers: Vec<Layer<B>>,
    heads: usize,
    mean_of: Vec<usize>,
    ones: Tensor<B>,
}

impl<B: Backend> Wavlm<B> {
    pub fn load(l: &EncoderWeights<B>, c: &EncoderConfig) -> Result<Self> {
        let w = &c.wavlm;
        let (p, h, eps) = (&w.prefix, w.hidden_size, w.layer_norm_eps);
        let mut convs = Vec::new();
        let mut c_in = 1;
        for (i, ((&dim, &k), &s)) in w.conv_dim.iter().zip(&w.conv_kernel).zip(&w.conv_stride).enumerate() {
            let wt = l.host(&format!("{p}feature_extractor.conv_layers.{i}.conv.weight"), &[dim, c_in, k])?;
            convs.push((l.upload(&[dim, k, c_in], &conv_to_runtime(&wt, dim, c_in, k))?, s));
            c_in = dim;
        }
        let gn = |part: &str| l.tensor(&format!("{p}feature_extractor.conv_layers.0.layer_norm.{part}"), &[w.conv_dim[0]]);
        let (k, groups) = (w.num_conv_pos_embeddings, w.num_conv_pos_embedding_groups);
        let cg = h / groups;
        let pick = |names: [&str; 2]| if l.contains(&format!("{p}{}", names[0])) { format!("{p}{}", names[0]) } else { format!("{p}{}", names[1]) };
        let g = l.host(&pick(POS_CONV_G), &[1, 1, k])?;
        let v = l.host(&pick(POS_CONV_V), &[h, cg, k])?;
        let pos_w = conv_to_runtime(&fold_weight_norm_per_tap(&g, &v, k), h, cg, k);
        let mut layers = Vec::new();
        for i in 0..wavlm_layers_needed(c) {
            let b = format!("{p}encoder.layers.{i}.");
            let lin = |n: &str, out: usize, inp: usize| l.linear(&format!("{b}{n}"), out, inp, true);
            layers.push(Layer {
                q: lin("attention.q_proj", h, h)?,
                k: lin("attention.k_proj", h, h)?,
                v: lin("attention.v_proj", h, h)?,
                out: lin("attention.out_proj", h, h)?,
                gate: lin("attention.gru_rel_pos_linear", 8, w.head_dim)?,
                gate_const: l.upload(&[w.heads], &l.host(&format!("{b}attention.gru_rel_pos_const"), &[1, w.heads, 1, 1])?)?,
                ln: l.layer_norm(&format!("{b}layer_norm"), h, eps)?,
                ff_up: lin("feed_forward.intermediate_dense", w.intermediate_size, h)?,
                ff_down: lin("feed_forward.output_dense", h, w.intermediate_size)?,
                final_ln: l.layer_norm(&format!("{b}final_layer_norm"), h, eps)?,
            });
        }
        Ok(Wavlm {
            convs,
            gn_w: gn("weight")?,
            gn_b: gn("bias")?,
            proj_ln: l.layer_norm(&format!("{p}feature_projection.layer_norm"), c_in, eps)?,
            proj: l.linear(&format!("{p}feature_projection.projection"), h, c_in, true)?,
            pos_w: l.upload(&[h, k, cg], &pos_w)?,
            pos_b: l.tensor(&format!("{p}encoder.pos_conv_embed.conv.bias"), &[h])?,
            pos_groups: groups,
            pos_kernel: k,
            enc_ln: l.layer_norm(&format!("{p}encoder.layer_norm"), h, eps)?,
            rel_embed: l.host(&format!("{p}encoder.layers.0.attention.rel_attn_embed.weight"), &[w.num_buckets, w.heads])?,
            num_buckets: w.num_buckets,
            max_distance: w.max_bucket_distance,
            layers,
            heads: w.heads,
            mean_of: w.hidden_states_mean.clone(),
            ones: l.fill(h, 1.0)?,
        })
    }

    /// 16 kHz samples [B, L] (each chunk plus 160 zeros) -> the feature encoder's output
    /// [B·frames, conv_dim] and the mean hidden state [B·frames, hidden].
    pub fn forward(&self, bk: &B, wav16: &Tensor<B>) -> Result<(Tensor<B>, Tensor<B>)> {
        let batch = wav16.shape()[0];
        let mut x = wav16.reshape(&[batch, wav16.shape()[1], 1])?;
        for (i, (w, stride)) in self.convs.iter().enumerate() {
            let (c_out, k) = (w.shape()[0], w.shape()[1]);
            let l_out = (x.shape()[1] - k) / stride + 1;
            let y = bk.alloc(DType::F32, &[batch, l_out, c_out])?;
            ops::conv1d(bk, &x, w, None, &y, ConvParams { stride: *stride, ..ConvParams::plain() })?;
            let y = if i == 0 {
                let z = bk.alloc(DType::F32, y.shape())?;
                ops::group_norm(bk, &y, &self.gn_w, &self.gn_b, &z, c_out, 1e-5)?;
                z
            } else {
                y
            };
            ops::unary(bk, &y, &y, UnaryFn::GeluErf)?;
            x = y;
        }
        let (t, conv_dim) = (x.shape()[1], x.shape()[2]);
        let fe = x.reshape(&[batch * t, conv_dim])?;
        let mut h = self.proj.apply(bk, &self.proj_ln.apply(bk, &fe)?, Epilogue::Store)?;
        let hid = h.dim_back(0);
        let pos = bk.alloc(DType::F32, &[batch, t, hid])?;
        let conv = ConvParams { groups: self.pos_groups, pad_left: self.pos_kernel / 2, ..ConvParams::plain() };
        ops::conv1d(bk, &h.reshape(&[batch, t, hid])?, &self.pos_w, Some(&self.pos_b), &pos, conv)?;
        ops::unary(bk, &pos, &pos, UnaryFn::GeluErf)?;
        ops::add(bk, &h, &pos.reshape(&[batch * t, hid])?, &h)?;
        h = self.enc_ln.apply(bk, &h)?;
        let rel = ops::upload_f32(bk, &[self.heads, 2 * t - 1], &self.rel_bias(t), DType::F32)?;
        let sum = bk.alloc(DType::F32, &[batch * t, hid])?;
        let add_to_mean = |state: &Tensor<B>, index: usize| -> Result<()> {
            for _ in self.mean_of.iter().filter(|&&k| k == index) {
                ops::add(bk, &sum, state, &sum)?;
            }
            Ok(())
        };
        add_to_mean(&h, 0)?;
        for (i, layer) in self.layers.iter().enumerate() {
            h = self.layer(bk, layer, &h, &rel, batch)?;
            add_to_mean(&h, i + 1)?;
        }
        let scale = 1.0 / self.mean_of.len() as f32;
        let mean = bk.alloc(DType::F32, sum.shape())?;
        ops::blend(bk, &sum, &sum, scale, 0.0, &mean)?;
        Ok((fe, mean))
    }

    fn layer(&self, bk: &B, l: &Layer<B>, x: &Tensor<B>, rel: &Tensor<B>, batch: usize) -> Result<Tensor<B>> {
        let (rows, hid) = (x.rows(), x.dim_back(0));
        let (t, hd) = (rows / batch, hid / self.heads);
        let shape = [t, self.heads, hd];
        let q = l.q.apply(bk, x, Epilogue::Store)?;
        let k = l.k.apply(bk, x, Epilogue::Store)?;
        let v = l.v.apply(bk, x, Epilogue::Store)?;
        // The gate logits read each head's slice of the layer input.
        let z = l.gate.apply(bk, &x.reshape(&[rows * self.heads, hd])?, Epilogue::Store)?.reshape(&[rows, self.heads * 8])?;
        let att = bk.alloc(DType::F32, &[rows, hid])?;
        for b in 0..batch {
            let part = |y: &Tensor<B>, shape: &[usize]| -> Result<Tensor<B>> { Ok(y.narrow(b * t, t)?.reshape(shape)?) };
            let (q, k, v, z) = (part(&q, &shape)?, part(&k, &shape)?, part(&v, &shape)?, part(&z, &[t, self.heads, 8])?);
            ops::rel_pos_attention(bk, &q, &k, &v, &z, &l.gate_const, rel, &part(&att, &shape)?)?;
        }
        let h = bk.alloc(DType::F32, &[rows, hid])?;
        ops::blend(bk, x, x, 1.0, 0.0, &h)?;
        l.out.run(bk, &att, &h, Epilogue::GatedAdd { gate: &self.ones })?;
        let h = l.ln.apply(bk, &h)?;
        let f = l.ff_up.apply(bk, &h, Epilogue::Act(UnaryFn::GeluErf))?;
        l.ff_down.run(bk, &f, &h, Epilogue::GatedAdd { gate: &self.ones })?;
        l.final_ln.apply(bk, &h)
    }

    /// rel[h, r + T − 1] = rel_attn_embed[bucket(r), h] for r = j − i in −(T−1)..T.
    fn rel_bias(&self, t: usize) -> Vec<f32> {
        let span = 2 * t - 1;
        let mut rel = vec![0f32; self.heads * span];
        for idx in 0..span {
            let r = idx as i64 - (t as i64 - 1);
            let bucket = relative_bucket(r, self.num_buckets, self.max_distance);
            for h in 0..self.heads {
                rel[h * span + idx] = self.rel_embed[bucket * self.heads + h];
            }
        }
        rel
    }
}

/// transformers' `WavLMAttention._relative_positions_bucket` for r = key − query, in the
/// dtypes it uses (the log branch in f32).
pub fn relative_bucket(r: i64, num_buckets: usize, max_distance: usize) -> usize {
    let half = (num_buckets / 2) as i64;
    let max_exact = half / 2;
    let mut bucket = if r > 0 { half } else { 0 };
    let a = r.abs();
    if a < max_exact {
        bucket += a;
    } else {
        let ratio = (a as f32 / max_exact as f32).ln();
        let scaled = ratio / ((max_distance as f64 / max_exact as f64).ln() as f32) * (half - max_exact) as f32;
        let large = (max_exact as f32 + scaled) as i64;
        bucket += large.min(half - 1);
    }
    bucket as usize
}

/// Weight norm over every dim but the kernel axis (dim = 2):
/// w[:, :, t] = g[t] · v[:, :, t] / ‖v[:, :, t]‖, v [C_out, C_in/groups, K].
fn fold_weight_norm_per_tap(g: &[f32], v: &[f32], k: usize) -> Vec<f32> {
    let mut norms = vec![0f64; k];
    for (i, &x) in v.iter().enumerate() {
        norms[i % k] += (x as f64) * (x as f64);
    }
    let factor: Vec<f32> = (0..k).map(|t| g[t] / (norms[t].sqrt() as f32)).collect();
    v.iter().enumerate().map(|(i, &x)| x * factor[i % k]).collect()
}
