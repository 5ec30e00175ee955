//! The encoder's sections of the codec directory's config.json (the schema of the encoder
//! fixture: `chunking`, `whisper`, `wavlm`, `musicfm`, `audio_thinking`, `reasoning_vq`,
//! `reconstruction`), every relation validated once with the field named.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{CodecError, Result};


#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EncoderConfig {
    pub chunking: ChunkingConfig,
    pub whisper: WhisperConfig,
    pub wavlm: WavlmConfig,
    pub musicfm: MusicFmConfig,
    pub audio_thinking: ThinkingConfig,
    pub reasoning_vq: VqConfig,
    pub reconstruction: ReconstructionConfig,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ChunkingConfig {
    /// Samples per chunk at 24 kHz (720240).
    pub chunk_samples: usize,
    /// Samples that count as one chunk's 30 s (720000).
    pub min_samples: usize,
    pub reasoning_frames_per_chunk: usize,
    pub reconstruction_frames_per_chunk: usize,
    /// Chunks per batch in the reference (the port batches as it sees fit).
    #[serde(default = "default_batch")]
    pub batch_size: usize,
}

fn default_batch() -> usize {
    6
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MelBins {
    pub n_mels: usize,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WhisperConfig {
    pub prefix: String,
    pub feature_extractor: MelBins,
    pub d_model: usize,
    pub layers: usize,
    pub heads: usize,
    pub head_dim: usize,
    pub ffn_dim: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f32,
}

fn default_eps() -> f32 {
    1e-5
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WavlmConfig {
    pub prefix: String,
    pub conv_dim: Vec<usize>,
    pub conv_kernel: Vec<usize>,
    pub conv_stride: Vec<usize>,
    pub hidden_size: usize,
    pub layers: usize,
    pub heads: usize,
    pub head_dim: usize,
    pub intermediate_size: usize,
    pub num_conv_pos_embeddings: usize,
    pub num_conv_pos_embedding_groups: usize,
    pub num_buckets: usize,
    pub max_bucket_distance: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f32,
    /// The hidden states (0 = after the positional conv, i = output of layer i − 1) averaged.
    pub hidden_states_mean: Vec<usize>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MusicFmStreams {
    pub acoustic: usize,
    pub semantic: usize,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MusicFmConfig {
    pub prefix: String,
    pub conv_dim: usize,
    pub encoder_dim: usize,
    pub encoder_depth: usize,
    pub heads: usize,
    pub head_dim: usize,
    pub intermediate_size: usize,
    pub conv_depthwise_kernel_size: usize,
    #[serde(default = "default_rope_base")]
    pub rotary_embedding_base: f32,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f32,
    #[serde(default = "default_eps")]
    pub batch_norm_eps: f32,
    /// hidden_states[k] = the input of conformer layer k.
    pub hidden_states: MusicFmStreams,
}

fn default_rope_base() -> f32 {
    10000.0
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ThinkingConfig {
    pub prefix: String,
    pub dim: usize,
    pub depth: usize,
    pub heads: usize,
    pub head_dim: usize,
    pub rotary_dim: usize,
    #[serde(default = "default_rope_base")]
    pub rotary_base: f32,
    pub ff_inner: usize,
    /// Frames per query token (5).
    pub interval: usize,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct VqConfig {
    pub prefix: String,
    pub codebook_size: usize,
    pub codebook_dim: usize,
    pub levels: usize,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CodebookShape {
    pub codebook_size: usize,
    pub codebook_dim: usize,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReconstructionGroup {
    pub name: String,
    pub module: String,
    pub levels: usize,
    pub rows: Vec<usize>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FilmConfig {
    pub gamma: f32,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReconstructionConfig {
    pub codec_dim: usize,
    pub vq: CodebookShape,
    /// phone, structure, acoustic, in token-row order.
    pub groups: Vec<ReconstructionGroup>,
    #[serde(default = "default_film")]
    pub film: FilmConfig,
}

fn default_film() -> FilmConfig {
    FilmConfig { gamma: 0.1 }
}

/// The branch names `fetch_codes_batch` wires, in token-row order.
pub const BRANCHES: [&str; 3] = ["phone", "structure", "acoustic"];

impl EncoderConfig {
    /// The sections `codec encode` needs; a config.json without them cannot encode.
    pub const SECTIONS: [&'static str; 7] = ["chunking", "whisper", "wavlm", "musicfm", "audio_thinking", "reasoning_vq", "reconstruction"];

    /// Reads the encoder sections of `path`; a missing section is an error naming it.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| CodecError::Io { path: path.into(), cause: e })?;
        let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| CodecError::config(path, format!("invalid JSON: {e}")))?;
        Self::from_value(&value).map_err(|msg| CodecError::config(path, msg))
    }

    pub fn from_value(value: &serde_json::Value) -> std::result::Result<Self, String> {
        let missing: Vec<&str> = Self::SECTIONS.iter().copied().filter(|s| value.get(s).is_none()).collect();
        if !missing.is_empty() {
            return Err(format!("no encoder in this codec config: missing section(s) {}", missing.join(", ")));
        }
        let config: EncoderConfig = serde_json::from_value(value.clone()).map_err(|e| format!("invalid encoder config: {e}"))?;
        config.validate()?;
        Ok(config)
    }

    /// Total token rows (8): the reconstruction groups' levels.
    pub fn reconstruction_rows(&self) -> usize {
        self.reconstruction.groups.iter().map(|g| g.levels).sum()
    }

    pub fn validate(&self) -> std::result::Result<(), String> {
        let positive = [
            ("chunking.chunk_samples", self.chunking.chunk_samples),
            ("chunking.min_samples", self.chunking.min_samples),
            ("chunking.reasoning_frames_per_chunk", self.chunking.reasoning_frames_per_chunk),
            ("chunking.reconstruction_frames_per_chunk", self.chunking.reconstruction_frames_per_chunk),
            ("whisper.feature_extractor.n_mels", self.whisper.feature_extractor.n_mels),
            ("whisper.d_model", self.whisper.d_model),
            ("whisper.heads", self.whisper.heads),
            ("whisper.ffn_dim", self.whisper.ffn_dim),
            ("wavlm.hidden_size", self.wavlm.hidden_size),
            ("wavlm.heads", self.wavlm.heads),
            ("wavlm.intermediate_size", self.wavlm.intermediate_size),
            ("wavlm.num_conv_pos_embeddings", self.wavlm.num_conv_pos_embeddings),
            ("wavlm.num_conv_pos_embedding_groups", self.wavlm.num_conv_pos_embedding_groups),
            ("wavlm.num_buckets", self.wavlm.num_buckets),
            ("wavlm.max_bucket_distance", self.wavlm.max_bucket_distance),
            ("musicfm.conv_dim", self.musicfm.conv_dim),
            ("musicfm.encoder_dim", self.musicfm.encoder_dim),
            ("musicfm.heads", self.musicfm.heads),
            ("musicfm.intermediate_size", self.musicfm.intermediate_size),
            ("musicfm.conv_depthwise_kernel_size", self.musicfm.conv_depthwise_kernel_size),
            ("audio_thinking.dim", self.audio_thinking.dim),
            ("audio_thinking.heads", self.audio_thinking.heads),
            ("audio_thinking.ff_inner", self.audio_thinking.ff_inner),
            ("audio_thinking.interval", self.audio_thinking.interval),
            ("reasoning_vq.codebook_size", self.reasoning_vq.codebook_size),
            ("reasoning_vq.codebook_dim", self.reasoning_vq.codebook_dim),
            ("reasoning_vq.levels", self.reasoning_vq.levels),
            ("reconstruction.codec_dim", self.reconstruction.codec_dim),
            ("reconstruction.vq.codebook_size", self.reconstruction.vq.codebook_size),
            ("reconstruction.vq.codebook_dim", self.reconstruction.vq.codebook_dim),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(format!("{name} must be > 0"));
        }
        let floats = [
            ("whisper.layer_norm_eps", self.whisper.layer_norm_eps),
            ("wavlm.layer_norm_eps", self.wavlm.layer_norm_eps),
            ("musicfm.layer_norm_eps", self.musicfm.layer_norm_eps),
            ("musicfm.batch_norm_eps", self.musicfm.batch_norm_eps),
            ("musicfm.rotary_embedding_base", self.musicfm.rotary_embedding_base),
            ("audio_thinking.rotary_base", self.audio_thinking.rotary_base),
        ];
        if let Some((name, v)) = floats.iter().find(|(_, v)| !(v.is_finite() && *v > 0.0)) {
            return Err(format!("{name} must be finite and > 0, got {v}"));
        }
        let heads = |name: &str, width: usize, heads: usize, head_dim: usize| {
            if heads * head_dim != width {
                Err(format!("{name}: heads {heads} x head_dim {head_dim} != width {width}"))
            } else if !head_dim.is_multiple_of(2) || head_dim > 256 {
                Err(format!("{name}.head_dim must be even and <= 256, got {head_dim}"))
            } else {
                Ok(())
            }
        };
        heads("whisper", self.whisper.d_model, self.whisper.heads, self.whisper.head_dim)?;
        heads("wavlm", self.wavlm.hidden_size, self.wavlm.heads, self.wavlm.head_dim)?;
        heads("musicfm", self.musicfm.encoder_dim, self.musicfm.heads, self.musicfm.head_dim)?;
        let t = &self.audio_thinking;
        heads("audio_thinking", t.dim, t.heads, t.head_dim)?;
        if !t.rotary_dim.is_multiple_of(2) || t.rotary_dim > t.head_dim {
            return Err(format!("audio_thinking.rotary_dim {} must be even and <= head_dim {}", t.rotary_dim, t.head_dim));
        }
        let w = &self.wavlm;
        if w.conv_dim.is_empty() || w.conv_kernel.len() != w.conv_dim.len() || w.conv_stride.len() != w.conv_dim.len() {
            return Err("wavlm.conv_dim, conv_kernel and conv_stride must be non-empty and of one length".into());
        }
        for (name, values) in [("wavlm.conv_dim", &w.conv_dim), ("wavlm.conv_kernel", &w.conv_kernel), ("wavlm.conv_stride", &w.conv_stride)] {
            if values.contains(&0) {
                return Err(format!("{name} entries must be > 0, got {values:?}"));
            }
        }
        if !w.hidden_size.is_multiple_of(w.num_conv_pos_embedding_groups) {
            return Err(format!("wavlm.num_conv_pos_embedding_groups {} must divide hidden_size {}", w.num_conv_pos_embedding_groups, w.hidden_size));
        }
        if !w.num_buckets.is_multiple_of(2) || w.num_buckets < 4 || w.max_bucket_distance <= w.num_buckets / 4 {
            return Err(format!("wavlm.num_buckets {} must be even (>= 4) and max_bucket_distance {} > num_buckets / 4", w.num_buckets, w.max_bucket_distance));
        }
        if w.hidden_states_mean.is_empty() || w.hidden_states_mean.iter().any(|&k| k > w.layers) {
            return Err(format!("wavlm.hidden_states_mean {:?} must be non-empty indices <= layers {}", w.hidden_states_mean, w.layers));
        }
        let m = &self.musicfm;
        let deepest = m.hidden_states.acoustic.max(m.hidden_states.semantic);
        if deepest > m.encoder_depth {
            return Err(format!("musicfm.hidden_states index {deepest} exceeds encoder_depth {}", m.encoder_depth));
        }
        if m.conv_depthwise_kernel_size.is_multiple_of(2) {
            return Err(format!("musicfm.conv_depthwise_kernel_size must be odd (\"same\" padding), got {}", m.conv_depthwise_kernel_size));
        }
        let c = &self.chunking;
        if c.reconstruction_frames_per_chunk * 2 != c.reasoning_frames_per_chunk * 5 {
            return Err(format!(
                "chunking: reconstruction_frames_per_chunk {} must be 2.5 x reasoning_frames_per_chunk {}",
                c.reconstruction_frames_per_chunk, c.reasoning_frames_per_chunk
            ));
        }
        if c.chunk_samples < c.min_samples {
            return Err(format!("chunking.chunk_samples {} < min_samples {}", c.chunk_samples, c.min_samples));
        }
        // WavLM's convolutions run over a chunk at 16 kHz plus 160 zeros: each kernel must
        // fit the frames the layers before it leave.
        let mut frames = c.chunk_samples * 2 / 3 + 160;
        for (i, (&k, &stride)) in w.conv_kernel.iter().zip(&w.conv_stride).enumerate() {
            if k > frames {
                return Err(format!("wavlm.conv_kernel[{i}] {k} is longer than the {frames} frames a chunk of chunking.chunk_samples {} leaves it", c.chunk_samples));
            }
            frames = (frames - k) / stride + 1;
        }
        let r = &self.reconstruction;
        let names: Vec<&str> = r.groups.iter().map(|g| g.name.as_str()).collect();
        if names != BRANCHES {
            return Err(format!("reconstruction.groups must be {BRANCHES:?} in that order, got {names:?}"));
        }
        for g in &r.groups {
            if g.levels == 0 || g.rows.len() != g.levels {
                return Err(format!("reconstruction group {}: {} rows for {} levels", g.name, g.rows.len(), g.levels));
            }
        }
        // The rows index each frame's token row: together they must be a permutation.
        let rows: Vec<usize> = r.groups.iter().flat_map(|g| g.rows.iter().copied()).collect();
        let mut sorted = rows.clone();
        sorted.sort_unstable();
        if sorted != (0..self.reconstruction_rows()).collect::<Vec<_>>() {
            return Err(format!("reconstruction.groups rows {rows:?} must cover rows 0..{} once each", self.reconstruction_rows()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::encode::presets::EncoderPreset;

    /// The small preset's config with `edit` applied, validated.
    fn edited(edit: impl FnOnce(&mut serde_json::Value)) -> std::result::Result<EncoderConfig, String> {
        let mut v = EncoderPreset::Small.config_json();
        edit(&mut v);
        EncoderConfig::from_value(&v)
    }

    fn expect_err(edit: impl FnOnce(&mut serde_json::Value), what: &str) {
        match edited(edit) {
            Err(e) => assert!(e.contains(what), "error `{e}` should name `{what}`"),
            Ok(_) => panic!("a config with a bad `{what}` was accepted"),
        }
    }

    #[test]
    fn reconstruction_rows_must_cover_every_token_row_once() {
        // Rows may be assigned to the groups in any order.
        edited(|v| {
            v["reconstruction"]["groups"][0]["rows"] = json!([1]);
            v["reconstruction"]["groups"][1]["rows"] = json!([0]);
        })
        .unwrap();
        for rows in [json!([2, 3, 4, 5, 6, 99]), json!([2, 3, 4, 5, 6, 6]), json!([1, 3, 4, 5, 6, 7])] {
            expect_err(|v| v["reconstruction"]["groups"][2]["rows"] = rows, "reconstruction.groups rows");
        }
    }

    #[test]
    fn conv_dims_and_float_constants_must_be_positive() {
        expect_err(|v| v["wavlm"]["conv_dim"][3] = json!(0), "wavlm.conv_dim");
        expect_err(|v| v["wavlm"]["conv_stride"][0] = json!(0), "wavlm.conv_stride");
        // A kernel longer than what reaches it (the chunk through the layers before).
        expect_err(|v| v["wavlm"]["conv_kernel"][0] = json!(10_000_000), "wavlm.conv_kernel[0]");
        expect_err(|v| v["wavlm"]["conv_stride"][0] = json!(100_000_000), "wavlm.conv_kernel[1]");
        for (section, field) in [
            ("whisper", "layer_norm_eps"),
            ("wavlm", "layer_norm_eps"),
            ("musicfm", "layer_norm_eps"),
            ("musicfm", "batch_norm_eps"),
            ("musicfm", "rotary_embedding_base"),
            ("audio_thinking", "rotary_base"),
        ] {
            // 1e300 does not fit an f32: it reads as infinity.
            for bad in [json!(0.0), json!(-1e-5), json!(1e300)] {
                expect_err(|v| v[section][field] = bad, &format!("{section}.{field}"));
            }
            edited(|v| v[section][field] = json!(1e-6)).unwrap();
        }
    }
}
