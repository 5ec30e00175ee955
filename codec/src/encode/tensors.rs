//! The encoder's tensors in codec.safetensors, named as upstream, with their shapes: what
//! `Encoder::load` requires (only the layers whose outputs are used), what `codec synth`
//! writes, and what `convert --codec` gathers from the released files.

use super::config::EncoderConfig;
use crate::tensors::TensorList;

/// The Whisper encoder reads exactly 3000 mel frames and has 1500 positions.
pub const WHISPER_FRAMES: usize = 3000;
pub const WHISPER_POSITIONS: usize = 1500;
/// MusicFM's mel has 128 bands; its two stride-2 Res2d modules leave 32.
pub const MUSICFM_MELS: usize = 128;

/// Frequency rows after MusicFM's two stride-2 3×3 convolutions (padding 1).
pub fn musicfm_freq_rows() -> usize {
    let half = |n: usize| (n + 2 - 3) / 2 + 1;
    half(half(MUSICFM_MELS))
}

/// The largest activation one chunk makes, in bytes (f32): WavLM's first convolution,
/// MusicFM's first Res2d output, Whisper's conv stem or an FFN's hidden layer.
pub fn largest_activation_bytes(c: &EncoderConfig) -> u64 {
    let wavlm_first = (c.chunking.chunk_samples * 2 / 3 + 160 - c.wavlm.conv_kernel[0]) / c.wavlm.conv_stride[0] + 1;
    let candidates = [
        wavlm_first * c.wavlm.conv_dim[0],
        (WHISPER_FRAMES / 2) * (MUSICFM_MELS / 2) * c.musicfm.conv_dim,
        WHISPER_FRAMES * c.whisper.d_model,
        WHISPER_POSITIONS * c.whisper.ffn_dim.max(3 * c.whisper.d_model),
        wavlm_first / 2 * c.wavlm.conv_dim[0],
    ];
    4 * candidates.into_iter().max().unwrap_or(0) as u64
}

/// WavLM layers whose outputs feed `hidden_states_mean` (hidden_states[k] = output of layer k − 1).
pub fn wavlm_layers_needed(c: &EncoderConfig) -> usize {
    c.wavlm.hidden_states_mean.iter().copied().max().unwrap_or(0)
}

/// Conformer layers run: hidden_states[k] is the input of layer k.
pub fn musicfm_layers_needed(c: &EncoderConfig) -> usize {
    c.musicfm.hidden_states.acoustic.max(c.musicfm.hidden_states.semantic)
}

/// The weight-norm spellings of WavLM's positional conv: (g, v), new then old.
pub const POS_CONV_G: [&str; 2] = ["encoder.pos_conv_embed.conv.parametrizations.weight.original0", "encoder.pos_conv_embed.conv.weight_g"];
pub const POS_CONV_V: [&str; 2] = ["encoder.pos_conv_embed.conv.parametrizations.weight.original1", "encoder.pos_conv_embed.conv.weight_v"];

struct List(TensorList);

impl List {
    fn push(&mut self, name: String, shape: &[usize]) {
        self.0.push((name, shape.to_vec()));
    }
    /// `{name}.weight` [out, in] and `{name}.bias` [out].
    fn linear(&mut self, name: &str, out: usize, inp: usize) {
        self.push(format!("{name}.weight"), &[out, inp]);
        self.push(format!("{name}.bias"), &[out]);
    }
    fn norm(&mut self, name: &str, dim: usize) {
        self.push(format!("{name}.weight"), &[dim]);
        self.push(format!("{name}.bias"), &[dim]);
    }
    fn batch_norm(&mut self, name: &str, dim: usize) {
        for part in ["weight", "bias", "running_mean", "running_var"] {
            self.push(format!("{name}.{part}"), &[dim]);
        }
    }
    /// A weight-normed (dim 0) linear: g [out, 1], v [out, in], optional bias.
    fn weight_normed(&mut self, name: &str, out: usize, inp: usize, bias: bool) {
        self.push(format!("{name}.parametrizations.weight.original0"), &[out, 1]);
        self.push(format!("{name}.parametrizations.weight.original1"), &[out, inp]);
        if bias {
            self.push(format!("{name}.bias"), &[out]);
        }
    }
}

/// Every tensor the encoder reads (WavLM's positional conv in the new spelling; rotary
/// `inv_freq` buffers are optional and not listed).
pub fn encoder_tensors(c: &EncoderConfig) -> TensorList {
    let mut l = List(Vec::new());
    whisper(&mut l, c);
    wavlm(&mut l, c);
    musicfm(&mut l, c);
    thinking(&mut l, c);
    reconstruction(&mut l, c);
    l.0
}

fn whisper(l: &mut List, c: &EncoderConfig) {
    let w = &c.whisper;
    let (p, d) = (&w.prefix, w.d_model);
    l.push(format!("{p}conv1.weight"), &[d, w.feature_extractor.n_mels, 3]);
    l.push(format!("{p}conv1.bias"), &[d]);
    l.push(format!("{p}conv2.weight"), &[d, d, 3]);
    l.push(format!("{p}conv2.bias"), &[d]);
    l.push(format!("{p}embed_positions.weight"), &[WHISPER_POSITIONS, d]);
    for i in 0..w.layers {
        let b = format!("{p}layers.{i}.");
        l.linear(&format!("{b}self_attn.q_proj"), d, d);
        l.push(format!("{b}self_attn.k_proj.weight"), &[d, d]);
        l.linear(&format!("{b}self_attn.v_proj"), d, d);
        l.linear(&format!("{b}self_attn.out_proj"), d, d);
        l.norm(&format!("{b}self_attn_layer_norm"), d);
        l.linear(&format!("{b}fc1"), w.ffn_dim, d);
        l.linear(&format!("{b}fc2"), d, w.ffn_dim);
        l.norm(&format!("{b}final_layer_norm"), d);
    }
    l.norm(&format!("{p}layer_norm"), d);
}

fn wavlm(l: &mut List, c: &EncoderConfig) {
    let w = &c.wavlm;
    let (p, h) = (&w.prefix, w.hidden_size);
    let mut c_in = 1;
    for (i, (&dim, &k)) in w.conv_dim.iter().zip(&w.conv_kernel).enumerate() {
        l.push(format!("{p}feature_extractor.conv_layers.{i}.conv.weight"), &[dim, c_in, k]);
        c_in = dim;
    }
    l.norm(&format!("{p}feature_extractor.conv_layers.0.layer_norm"), w.conv_dim[0]);
    l.norm(&format!("{p}feature_projection.layer_norm"), c_in);
    l.linear(&format!("{p}feature_projection.projection"), h, c_in);
    let k = w.num_conv_pos_embeddings;
    l.push(format!("{p}{}", POS_CONV_G[0]), &[1, 1, k]);
    l.push(format!("{p}{}", POS_CONV_V[0]), &[h, h / w.num_conv_pos_embedding_groups, k]);
    l.push(format!("{p}encoder.pos_conv_embed.conv.bias"), &[h]);
    l.norm(&format!("{p}encoder.layer_norm"), h);
    l.push(format!("{p}encoder.layers.0.attention.rel_attn_embed.weight"), &[w.num_buckets, w.heads]);
    for i in 0..wavlm_layers_needed(c) {
        let b = format!("{p}encoder.layers.{i}.");
        for proj in ["q_proj", "k_proj", "v_proj", "out_proj"] {
            l.linear(&format!("{b}attention.{proj}"), h, h);
        }
        l.push(format!("{b}attention.gru_rel_pos_const"), &[1, w.heads, 1, 1]);
        l.linear(&format!("{b}attention.gru_rel_pos_linear"), 8, w.head_dim);
        l.norm(&format!("{b}layer_norm"), h);
        l.linear(&format!("{b}feed_forward.intermediate_dense"), w.intermediate_size, h);
        l.linear(&format!("{b}feed_forward.output_dense"), h, w.intermediate_size);
        l.norm(&format!("{b}final_layer_norm"), h);
    }
}

fn musicfm(l: &mut List, c: &EncoderConfig) {
    let m = &c.musicfm;
    let (p, ch, e) = (&m.prefix, m.conv_dim, m.encoder_dim);
    for (module, c_in) in [(0, 1), (1, ch)] {
        let b = format!("{p}conv.conv.{module}.");
        for (conv, cin) in [("conv1", c_in), ("conv2", ch), ("conv3", c_in)] {
            l.push(format!("{b}{conv}.weight"), &[ch, cin, 3, 3]);
            l.push(format!("{b}{conv}.bias"), &[ch]);
        }
        for bn in ["bn1", "bn2", "bn3"] {
            l.batch_norm(&format!("{b}{bn}"), ch);
        }
    }
    l.linear(&format!("{p}conv.linear"), e, ch * musicfm_freq_rows());
    for i in 0..musicfm_layers_needed(c) {
        let b = format!("{p}conformer.layers.{i}.");
        for ffn in ["ffn1", "ffn2"] {
            l.norm(&format!("{b}{ffn}_layer_norm"), e);
            l.linear(&format!("{b}{ffn}.intermediate_dense"), m.intermediate_size, e);
            l.linear(&format!("{b}{ffn}.output_dense"), e, m.intermediate_size);
        }
        l.norm(&format!("{b}self_attn_layer_norm"), e);
        for proj in ["linear_q", "linear_k", "linear_v", "linear_out"] {
            l.linear(&format!("{b}self_attn.{proj}"), e, e);
        }
        l.norm(&format!("{b}conv_module.layer_norm"), e);
        l.push(format!("{b}conv_module.pointwise_conv1.weight"), &[2 * e, e, 1]);
        l.push(format!("{b}conv_module.depthwise_conv.weight"), &[e, 1, m.conv_depthwise_kernel_size]);
        l.batch_norm(&format!("{b}conv_module.batch_norm"), e);
        l.push(format!("{b}conv_module.pointwise_conv2.weight"), &[e, e, 1]);
        l.norm(&format!("{b}final_layer_norm"), e);
    }
}

fn thinking(l: &mut List, c: &EncoderConfig) {
    let t = &c.audio_thinking;
    let (p, d) = (&t.prefix, t.dim);
    let (dw, dm) = (c.whisper.d_model, c.musicfm.encoder_dim);
    l.push(format!("{p}cls_token"), &[1, d]);
    l.push(format!("{p}down_sampling_layer_whisper.weight"), &[dw, dw, 2]);
    l.push(format!("{p}down_sampling_layer_whisper.bias"), &[dw]);
    l.linear(&format!("{p}semantic_merge_proj"), d, dw + dm);
    for i in 0..t.depth {
        let b = format!("{p}encoder_transformers.{i}.");
        l.weight_normed(&format!("{b}self_attn.to_qkv"), 3 * d, d, false);
        l.weight_normed(&format!("{b}self_attn.to_out"), d, d, false);
        l.norm(&format!("{b}self_attn.q_norm"), t.head_dim);
        l.norm(&format!("{b}self_attn.k_norm"), t.head_dim);
        l.push(format!("{b}self_attn_scale.scale"), &[d]);
        l.push(format!("{b}ff_scale.scale"), &[d]);
        l.weight_normed(&format!("{b}ff.ff.0.proj"), 2 * t.ff_inner, d, true);
        l.weight_normed(&format!("{b}ff.ff.2"), d, t.ff_inner, true);
    }
    let v = &c.reasoning_vq;
    l.linear(&format!("{}project_in", v.prefix), v.codebook_dim, d);
    l.linear(&format!("{}project_out", v.prefix), d, v.codebook_dim);
    for q in 0..v.levels {
        l.push(format!("{}layers.{q}._codebook.embed", v.prefix), &[1, v.codebook_size, v.codebook_dim]);
    }
}

fn reconstruction(l: &mut List, c: &EncoderConfig) {
    let r = &c.reconstruction;
    let (dw, dm, hw, cd) = (c.whisper.d_model, c.musicfm.encoder_dim, c.wavlm.hidden_size, r.codec_dim);
    for (name, ch, k) in [("d_conv_whisper", dw, 4), ("d_conv_wavlm", hw, 4), ("d_conv_embedding_semantic", dm, 2), ("d_conv_embedding_acoustic", dm, 2)] {
        l.push(format!("{name}.weight"), &[ch, ch, k]);
        l.push(format!("{name}.bias"), &[ch]);
    }
    l.linear("reason_adaptor", cd, c.audio_thinking.dim);
    l.linear("cond_fusion_layer_phone", cd, hw);
    l.linear("cond_fusion_layer_semantic", cd, dm);
    l.linear("cond_fusion_layer_acoustic", cd, dm + dw);
    for film in ["time_film_phone", "time_film_semantic", "time_film_acoustic"] {
        l.linear(film, 2 * cd, cd);
    }
    for g in &r.groups {
        l.linear(&format!("{}.project_in", g.module), r.vq.codebook_dim, cd);
        for q in 0..g.levels {
            l.push(format!("{}.layers.{q}._codebook.embed", g.module), &[1, r.vq.codebook_size, r.vq.codebook_dim]);
        }
    }
}
