//! Encoder configurations for benchmarks: the released architecture (`full`: whisper-medium,
//! MusicFM-25Hz, WavLM Base, the 5-block AudioThinking) and `small` (the public fixture's sizes).

use serde_json::{json, Value};

use super::config::EncoderConfig;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncoderPreset {
    Full,
    Small,
}

impl EncoderPreset {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "full" => Some(EncoderPreset::Full),
            "small" => Some(EncoderPreset::Small),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            EncoderPreset::Full => "full",
            EncoderPreset::Small => "small",
        }
    }

    /// The config.json value (encoder sections and a synthetic-weight `init` block).
    pub fn config_json(self) -> Value {
        // (whisper d, layers, heads, ffn), (wavlm conv, hidden, layers, heads, ffn),
        // (musicfm conv, dim, heads, ffn), (thinking dim, depth, heads, ff), codebooks.
        let ((wd, wl, wh, wf), (cv, hw, hl, hh, hf), (mc, md, mh, mf), (td, tl, th, tf), (rk, rd, ck, cdim)) = match self {
            EncoderPreset::Full => ((1024, 24, 16, 4096), (512, 768, 12, 12, 3072), (512, 1024, 16, 4096), (768, 5, 6, 3072), (4096, 64, 8192, 32)),
            EncoderPreset::Small => ((48, 2, 4, 96), (32, 32, 10, 4, 64), (8, 32, 2, 64), (96, 2, 2, 384), (256, 16, 512, 16)),
        };
        let head = |d: usize, h: usize| d / h;
        json!({
            "chunking": {"chunk_samples": 720240, "min_samples": 720000, "reasoning_frames_per_chunk": 150, "reconstruction_frames_per_chunk": 375, "batch_size": 6},
            "whisper": {"prefix": "whisper_encoder.", "feature_extractor": {"n_mels": 80}, "d_model": wd, "layers": wl, "heads": wh, "head_dim": head(wd, wh), "ffn_dim": wf},
            "wavlm": {"prefix": "wavlm_encoder.", "conv_dim": vec![cv; 7], "conv_kernel": [10, 3, 3, 3, 3, 2, 2], "conv_stride": [5, 2, 2, 2, 2, 2, 2],
                      "hidden_size": hw, "layers": hl, "heads": hh, "head_dim": head(hw, hh), "intermediate_size": hf,
                      "num_conv_pos_embeddings": 128, "num_conv_pos_embedding_groups": 16, "num_buckets": 320, "max_bucket_distance": 800,
                      "hidden_states_mean": [6, 7, 8, 9]},
            "musicfm": {"prefix": "pretrained_model.model.model.", "conv_dim": mc, "encoder_dim": md, "encoder_depth": 12, "heads": mh, "head_dim": head(md, mh),
                        "intermediate_size": mf, "conv_depthwise_kernel_size": 31, "hidden_states": {"acoustic": 4, "semantic": 11}},
            "audio_thinking": {"prefix": "audio_thinking.", "dim": td, "depth": tl, "heads": th, "head_dim": head(td, th),
                               "rotary_dim": (head(td, th) / 2).max(32), "ff_inner": tf, "interval": 5},
            "reasoning_vq": {"prefix": "audio_thinking.reasoning_vq.", "codebook_size": rk, "codebook_dim": rd, "levels": 8},
            "reconstruction": {"codec_dim": td, "vq": {"codebook_size": ck, "codebook_dim": cdim},
                               "groups": [{"name": "phone", "module": "vq_pronunciation_semantic", "levels": 1, "rows": [0]},
                                          {"name": "structure", "module": "vq_structure_semantic", "levels": 1, "rows": [1]},
                                          {"name": "acoustic", "module": "vq_acoustic", "levels": 6, "rows": [2, 3, 4, 5, 6, 7]}]},
            "init": init_block(),
        })
    }

    pub fn config(self) -> EncoderConfig {
        EncoderConfig::from_value(&self.config_json()).expect("valid preset")
    }

    /// Parameters the encoder reads.
    pub fn parameters(self) -> usize {
        super::encoder_tensors(&self.config()).iter().map(|(_, s)| s.iter().product::<usize>()).sum()
    }
}

/// The public fixture's synthetic-weight rules (uniform values at per-suffix scales 2^e,
/// unit norms and variances), with its own seed.
fn init_block() -> Value {
    json!({
        "version": 1, "seed": 20261202,
        "scale": {"default": -5, "bias": -4, "_codebook.embed": 0, "whisper_encoder.embed_positions.weight": -2,
                  "feature_extractor.conv_layers.0.conv.weight": -1, "parametrizations.weight.original0": 0,
                  "parametrizations.weight.original1": -5, "rel_attn_embed.weight": -1, "gru_rel_pos_const": 0,
                  "conv.conv.0.conv1.weight": -1, "conv.conv.0.conv3.weight": -1, "running_mean": -4,
                  "q_norm.weight": 2, "k_norm.weight": 2, "audio_thinking.cls_token": -4,
                  "self_attn_scale.scale": 0, "ff_scale.scale": 0, "reasoning_vq.project_in.weight": 0},
        "unit": ["layer_norm.weight", "bn1.weight", "bn2.weight", "bn3.weight", "batch_norm.weight", "running_var"]
    })
}
