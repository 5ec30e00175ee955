//! The codec directory's config.json: every size the decoder needs, validated once.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::encode::EncoderConfig;
use crate::error::{CodecError, Result};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CodecConfig {
    pub sample_rate: u32,
    /// Tokens per second (12.5).
    pub token_rate: f64,
    pub samples_per_token: usize,
    pub latents_per_token: usize,
    pub num_codebooks: usize,
    pub rvq: RvqConfig,
    pub flow: FlowConfig,
    pub sampler: SamplerConfig,
    pub sq_decoder: SqConfig,
    /// The synthetic-weight block of fixtures (`uniaudio_runtime::synth`), kept verbatim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<serde_json::Value>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RvqConfig {
    pub codebook_size: usize,
    pub codebook_dim: usize,
    pub cond_dim: usize,
    pub groups: Vec<RvqGroup>,
}

/// One residual VQ: its key prefix and the token rows it decodes.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RvqGroup {
    pub name: String,
    pub module: String,
    pub levels: usize,
    pub token_rows: Vec<usize>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FlowConfig {
    pub prefix: String,
    pub n_layer: usize,
    pub n_head: usize,
    pub head_dim: usize,
    pub inner_dim: usize,
    pub ffn_dim: usize,
    pub in_channels: usize,
    pub latent_dim: usize,
    pub out_channels: usize,
    pub max_positions: usize,
    pub norm_eps: f32,
    pub norm_out_eps: f32,
    pub proj_kernel: usize,
    pub timestep_embed_dim: usize,
    pub timestep_scale: f32,
    pub timestep_max_period: f32,
    /// torch's exact fp32 frequencies; computed in f32 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestep_freqs: Option<Vec<f32>>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SamplerConfig {
    pub steps: usize,
    pub cfg_scale: f32,
    pub sigma_min: f32,
    pub window_tokens: usize,
    pub hop_tokens: usize,
    pub overlap_tokens: usize,
    pub incontext_frames: usize,
    pub window_samples: usize,
    pub hop_samples: usize,
    pub overlap_samples: usize,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SqConfig {
    pub causal: bool,
    pub num_samples: usize,
    pub upsample_factors: Vec<usize>,
    pub upsample_kernel_sizes: Vec<usize>,
    pub latent_hidden_dim: usize,
    pub default_kernel_size: usize,
    pub delay_kernel_size: usize,
    pub init_channel: usize,
    pub res_kernel_size: usize,
    #[serde(default = "default_levels")]
    pub quantize_levels: u32,
    #[serde(default = "default_dilations")]
    pub residual_dilations: Vec<usize>,
}

fn default_levels() -> u32 {
    9
}
fn default_dilations() -> Vec<usize> {
    vec![1, 3, 5, 7, 9]
}

impl SqConfig {
    /// C_i = init_channel · 2^(n − i) for i = 0..=n.
    pub fn channels(&self) -> Vec<usize> {
        let n = self.upsample_factors.len();
        (0..=n).map(|i| self.init_channel << (n - i)).collect()
    }

    /// Output samples per latent frame.
    pub fn upsampling(&self) -> usize {
        self.upsample_factors.iter().product::<usize>() * self.num_samples.max(1)
    }
}

impl FlowConfig {
    /// Channels of the μ (conditioning) part of the estimator input.
    pub fn cond_channels(&self) -> usize {
        self.in_channels.saturating_sub(2 * self.latent_dim)
    }
}

impl SamplerConfig {
    pub fn window_latents(&self, latents_per_token: usize) -> usize {
        self.window_tokens * latents_per_token
    }
}

/// The sections `codec decode` needs (a config.json may also hold the encoder's).
pub const DECODER_SECTIONS: [&str; 4] = ["rvq", "flow", "sampler", "sq_decoder"];

/// The decoder and the encoder a codec config.json describes (either may be absent, not
/// both), each validated.
pub fn codec_parts(config: &serde_json::Value) -> Result<(Option<CodecConfig>, Option<EncoderConfig>)> {
    let has = |sections: &[&str]| sections.iter().any(|s| config.get(s).is_some());
    let decoder = if has(&DECODER_SECTIONS) {
        let c: CodecConfig = serde_json::from_value(config.clone()).map_err(|e| CodecError::Invalid(format!("invalid codec config: {e}")))?;
        c.validate().map_err(CodecError::Invalid)?;
        Some(c)
    } else {
        None
    };
    let encoder = if has(&EncoderConfig::SECTIONS) { Some(EncoderConfig::from_value(config).map_err(CodecError::Invalid)?) } else { None };
    if decoder.is_none() && encoder.is_none() {
        return Err(CodecError::Invalid("the config holds neither the decoder's nor the encoder's sections".into()));
    }
    Ok((decoder, encoder))
}

impl CodecConfig {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| CodecError::Io { path: path.into(), cause: e })?;
        let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| CodecError::config(path, format!("invalid JSON: {e}")))?;
        let missing: Vec<&str> = DECODER_SECTIONS.iter().copied().filter(|s| value.get(s).is_none()).collect();
        if !missing.is_empty() {
            return Err(CodecError::config(path, format!("no decoder in this codec config: missing section(s) {}", missing.join(", "))));
        }
        let config: CodecConfig = serde_json::from_value(value).map_err(|e| CodecError::config(path, format!("invalid codec config: {e}")))?;
        config.validate().map_err(|msg| CodecError::config(path, msg))?;
        Ok(config)
    }

    /// Every relation the decoder relies on; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        let f = &self.flow;
        let s = &self.sampler;
        let q = &self.sq_decoder;
        let r = &self.rvq;
        let positive = [
            ("sample_rate", self.sample_rate as usize),
            ("samples_per_token", self.samples_per_token),
            ("latents_per_token", self.latents_per_token),
            ("rvq.codebook_size", r.codebook_size),
            ("rvq.codebook_dim", r.codebook_dim),
            ("rvq.cond_dim", r.cond_dim),
            ("flow.n_layer", f.n_layer),
            ("flow.n_head", f.n_head),
            ("flow.head_dim", f.head_dim),
            ("flow.ffn_dim", f.ffn_dim),
            ("flow.latent_dim", f.latent_dim),
            ("flow.proj_kernel", f.proj_kernel),
            ("sampler.steps", s.steps),
            ("sampler.window_tokens", s.window_tokens),
            ("sampler.hop_tokens", s.hop_tokens),
            ("sq_decoder.init_channel", q.init_channel),
            ("sq_decoder.num_samples", q.num_samples),
            ("sq_decoder.default_kernel_size", q.default_kernel_size),
            ("sq_decoder.delay_kernel_size", q.delay_kernel_size),
            ("sq_decoder.res_kernel_size", q.res_kernel_size),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(format!("{name} must be > 0"));
        }
        if !(self.token_rate.is_finite() && self.token_rate > 0.0) {
            return Err(format!("token_rate must be > 0, got {}", self.token_rate));
        }
        if f.inner_dim != f.n_head * f.head_dim {
            return Err(format!("flow.inner_dim {} != n_head {} x head_dim {}", f.inner_dim, f.n_head, f.head_dim));
        }
        if f.head_dim > 256 {
            return Err(format!("flow.head_dim {} exceeds 256", f.head_dim));
        }
        if f.in_channels != 2 * f.latent_dim + r.cond_dim {
            return Err(format!("flow.in_channels {} != 2 x latent_dim {} + rvq.cond_dim {}", f.in_channels, f.latent_dim, r.cond_dim));
        }
        if f.out_channels != f.latent_dim || q.latent_hidden_dim != f.latent_dim {
            return Err(format!(
                "flow.out_channels {} and sq_decoder.latent_hidden_dim {} must equal flow.latent_dim {}",
                f.out_channels, q.latent_hidden_dim, f.latent_dim
            ));
        }
        if f.proj_kernel.is_multiple_of(2) {
            return Err(format!("flow.proj_kernel must be odd (\"same\" padding), got {}", f.proj_kernel));
        }
        if f.timestep_embed_dim == 0 || !f.timestep_embed_dim.is_multiple_of(2) {
            return Err(format!("flow.timestep_embed_dim must be even and > 0, got {}", f.timestep_embed_dim));
        }
        if let Some(freqs) = &f.timestep_freqs {
            if freqs.len() != f.timestep_embed_dim / 2 {
                return Err(format!("flow.timestep_freqs has {} values, expected {}", freqs.len(), f.timestep_embed_dim / 2));
            }
        }
        let window_latents = s.window_latents(self.latents_per_token);
        if f.max_positions < window_latents {
            return Err(format!("flow.max_positions {} < {} latent frames per window", f.max_positions, window_latents));
        }
        if s.hop_tokens > s.window_tokens || s.overlap_tokens >= s.window_tokens {
            return Err(format!("sampler: hop_tokens {} and overlap_tokens {} must fit in window_tokens {}", s.hop_tokens, s.overlap_tokens, s.window_tokens));
        }
        if s.incontext_frames > window_latents || s.overlap_samples > s.window_samples || s.hop_samples > s.window_samples {
            return Err("sampler: incontext_frames / overlap_samples / hop_samples exceed the window".into());
        }
        let rows: Vec<usize> = r.groups.iter().flat_map(|g| g.token_rows.iter().copied()).collect();
        let mut sorted = rows.clone();
        sorted.sort_unstable();
        if sorted != (0..self.num_codebooks).collect::<Vec<_>>() {
            return Err(format!("rvq.groups token_rows {rows:?} must cover rows 0..{} once each", self.num_codebooks));
        }
        if let Some(g) = r.groups.iter().find(|g| g.levels != g.token_rows.len() || g.levels == 0) {
            return Err(format!("rvq group `{}`: levels {} must equal its {} token rows", g.name, g.levels, g.token_rows.len()));
        }
        if q.upsample_factors.is_empty() || q.upsample_factors.len() != q.upsample_kernel_sizes.len() {
            return Err("sq_decoder.upsample_factors and upsample_kernel_sizes must be non-empty and of equal length".into());
        }
        for (&st, &k) in q.upsample_factors.iter().zip(&q.upsample_kernel_sizes) {
            if st == 0 || k < st {
                return Err(format!("sq_decoder: upsample factor {st} with kernel {k} is not a valid transposed convolution"));
            }
        }
        if q.upsample_factors.len() > 12 {
            return Err("sq_decoder: more than 12 upsampling stages".into());
        }
        if q.residual_dilations.contains(&0) || q.quantize_levels == 0 {
            return Err("sq_decoder: dilations and quantize_levels must be > 0".into());
        }
        Ok(())
    }
}
