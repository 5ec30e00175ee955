//! The Whisper encoder on the log-mel of a 30 s chunk: conv stem (erf-GELU), the
//! positional table, pre-LN layers (K without bias) and the final LayerNorm.

use uniaudio_runtime::{ops, Backend, ConvParams, DType, Epilogue, Tensor, UnaryFn};

use super::config::EncoderConfig;
use super::layers::{positions, self_attention, EncoderWeights, Lin, Ln};
use super::tensors::{WHISPER_FRAMES, WHISPER_POSITIONS};
use crate::error::Result;
use crate::load::conv_to_runtime;

struct Layer<B: Backend> {
    ln1: Ln<B>,
    q: Lin<B>,
    k: Lin<B>,
    v: Lin<B>,
    out: Lin<B>,
    ln2: Ln<B>,
    fc1: Lin<B>,
    fc2: Lin<B>,
}

pub struct Whisper<B: Backend> {
    heads: usize,
    conv1_w: Tensor<B>,
    conv1_b: Tensor<B>,
    conv2_w: Tensor<B>,
    conv2_b: Tensor<B>,
    pos: Tensor<B>,
    layers: Vec<Layer<B>>,
    ln_post: Ln<B>,
    ones: Tensor<B>,
}

impl<B: Backend> Whisper<B> {
    pub fn load(l: &EncoderWeights<B>, c: &EncoderConfig) -> Result<Self> {
        let w = &c.whisper;
        let (p, d, mels, eps) = (&w.prefix, w.d_model, w.feature_extractor.n_mels, w.layer_norm_eps);
        let conv = |name: &str, c_in: usize| -> Result<(Tensor<B>, Tensor<B>)> {
            let wt = l.host(&format!("{p}{name}.weight"), &[d, c_in, 3])?;
            Ok((l.upload(&[d, 3, c_in], &conv_to_runtime(&wt, d, c_in, 3))?, l.tensor(&format!("{p}{name}.bias"), &[d])?))
        };
        let (conv1_w, conv1_b) = conv("conv1", mels)?;
        let (conv2_w, conv2_b) = conv("conv2", d)?;
        let mut layers = Vec::new();
        for i in 0..w.layers {
            let b = format!("{p}layers.{i}.");
            layers.push(Layer {
                ln1: l.layer_norm(&format!("{b}self_attn_layer_norm"), d, eps)?,
                q: l.linear(&format!("{b}self_attn.q_proj"), d, d, true)?,
                k: l.linear(&format!("{b}self_attn.k_proj"), d, d, false)?,
                v: l.linear(&format!("{b}self_attn.v_proj"), d, d, true)?,
                out: l.linear(&format!("{b}self_attn.out_proj"), d, d, true)?,
                ln2: l.layer_norm(&format!("{b}final_layer_norm"), d, eps)?,
                fc1: l.linear(&format!("{b}fc1"), w.ffn_dim, d, true)?,
                fc2: l.linear(&format!("{b}fc2"), d, w.ffn_dim, true)?,
            });
        }
        Ok(Whisper {
            heads: w.heads,
            conv1_w,
            conv1_b,
            conv2_w,
            conv2_b,
            pos: l.tensor(&format!("{p}embed_positions.weight"), &[WHISPER_POSITIONS, d])?,
            layers,
            ln_post: l.layer_norm(&format!("{p}layer_norm"), d, eps)?,
            ones: l.fill(d, 1.0)?,
        })
    }

    /// mel [B·3000, n_mels] (time-major, B chunks) -> last_hidden_state [B·1500, d_model].
    pub fn forward(&self, bk: &B, mel: &Tensor<B>) -> Result<Tensor<B>> {
        let d = self.conv1_b.numel();
        let batch = mel.rows() / WHISPER_FRAMES;
        let x = mel.reshape(&[batch, WHISPER_FRAMES, mel.dim_back(0)])?;
        let same = ConvParams { pad_left: 1, ..ConvParams::plain() };
        let h1 = bk.alloc(DType::F32, &[batch, WHISPER_FRAMES, d])?;
        ops::conv1d(bk, &x, &self.conv1_w, Some(&self.conv1_b), &h1, same)?;
        ops::unary(bk, &h1, &h1, UnaryFn::GeluErf)?;
        let h2 = bk.alloc(DType::F32, &[batch, WHISPER_POSITIONS, d])?;
        ops::conv1d(bk, &h1, &self.conv2_w, Some(&self.conv2_b), &h2, ConvParams { stride: 2, ..same })?;
        ops::unary(bk, &h2, &h2, UnaryFn::GeluErf)?;
        let h = h2.reshape(&[batch * WHISPER_POSITIONS, d])?;
        for b in 0..batch {
            let rows = h.narrow(b * WHISPER_POSITIONS, WHISPER_POSITIONS)?;
            ops::add(bk, &rows, &self.pos, &rows)?;
        }
        let pos = positions(bk, 1, WHISPER_POSITIONS)?;
        let residual = Epilogue::GatedAdd { gate: &self.ones };
        for layer in &self.layers {
            let a = layer.ln1.apply(bk, &h)?;
            let q = layer.q.apply(bk, &a, Epilogue::Store)?;
            let k = layer.k.apply(bk, &a, Epilogue::Store)?;
            let v = layer.v.apply(bk, &a, Epilogue::Store)?;
            let att = self_attention(bk, &q, &k, &v, self.heads, batch, &pos)?;
            layer.out.run(bk, &att, &h, residual)?;
            let a = layer.ln2.apply(bk, &h)?;
            let f = layer.fc1.apply(bk, &a, Epilogue::Act(UnaryFn::GeluErf))?;
            layer.fc2.run(bk, &f, &h, residual)?;
        }
        self.ln_post.apply(bk, &h)
    }
}
