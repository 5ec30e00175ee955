//! The model directory's `config.json`: special ids and the four stacks' sizes.
//! Unknown fields (such as a fixture's `init` block) are ignored.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{LmError, Result};

/// Audio codebooks per frame.
pub const CODEBOOKS: usize = 8;
/// Text id that ends every segment and stops text generation.
pub const END_OF_TEXT: u32 = 128_001;
/// Depth-decoder positions per frame (one per codebook).
pub const DECODER_POSITIONS: usize = CODEBOOKS;

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct RopeScaling {
    pub factor: f64,
    pub low_freq_factor: f64,
    pub high_freq_factor: f64,
    pub original_max_seq_len: f64,
}

impl RopeScaling {
    /// Llama 3's values.
    pub const LLAMA3: RopeScaling = RopeScaling { factor: 32.0, low_freq_factor: 1.0, high_freq_factor: 4.0, original_max_seq_len: 8192.0 };
}

/// One Llama stack.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StackConfig {
    pub n_layer: usize,
    pub n_embd: usize,
    pub n_head: usize,
    pub n_query_groups: usize,
    pub head_size: usize,
    pub intermediate_size: usize,
    /// Text vocabulary (backbone only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vocab_size: Option<usize>,
    pub rope_base: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_scaling: Option<RopeScaling>,
    pub norm_eps: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stacks {
    pub backbone: StackConfig,
    pub understanding: StackConfig,
    pub generation: StackConfig,
    pub decoder: StackConfig,
}

/// Codebook sizes and special ids, as both `config.json` and the released
/// `llm_config.yaml` spell them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SpecialIds {
    pub audio_reason_card: usize,
    pub audio_semantic_card: usize,
    pub reason_bos: u32,
    pub reason_eos: u32,
    pub reason_pad_token: u32,
    pub semantic_bos: u32,
    pub semantic_eos: u32,
    pub semantic_pad_token: u32,
    pub text_pad_token: u32,
}

/// The longest context a config may ask for (the position tables are built for all of
/// it up front; Llama 3.2 was trained to 131072).
pub const MAX_SEQ_LEN: usize = 1 << 20;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LmConfig {
    #[serde(flatten)]
    pub ids: SpecialIds,
    pub max_seq_len: usize,
    pub stacks: Stacks,
}

impl StackConfig {
    pub fn q_dim(&self) -> usize {
        self.n_head * self.head_size
    }
    pub fn kv_dim(&self) -> usize {
        self.n_query_groups * self.head_size
    }
    pub fn qkv_rows(&self) -> usize {
        (self.n_head + 2 * self.n_query_groups) * self.head_size
    }

    fn validate(&self, name: &str) -> std::result::Result<(), String> {
        let fields = [
            ("n_layer", self.n_layer),
            ("n_embd", self.n_embd),
            ("n_head", self.n_head),
            ("n_query_groups", self.n_query_groups),
            ("head_size", self.head_size),
            ("intermediate_size", self.intermediate_size),
        ];
        if let Some((f, _)) = fields.iter().find(|(_, v)| *v == 0) {
            return Err(format!("stacks.{name}.{f} must be positive"));
        }
        if !self.n_head.is_multiple_of(self.n_query_groups) {
            return Err(format!("stacks.{name}: n_head {} is not a multiple of n_query_groups {}", self.n_head, self.n_query_groups));
        }
        if !self.head_size.is_multiple_of(2) {
            return Err(format!("stacks.{name}.head_size {} must be even (rotate-half RoPE)", self.head_size));
        }
        if !(self.rope_base.is_finite() && self.rope_base > 1.0) {
            return Err(format!("stacks.{name}.rope_base must be > 1, got {}", self.rope_base));
        }
        if !(self.norm_eps.is_finite() && self.norm_eps >= 0.0) {
            return Err(format!("stacks.{name}.norm_eps must be >= 0, got {}", self.norm_eps));
        }
        if let Some(s) = self.rope_scaling {
            let ok = s.factor > 0.0 && s.high_freq_factor > s.low_freq_factor && s.original_max_seq_len > 0.0;
            if !ok || ![s.factor, s.low_freq_factor, s.high_freq_factor, s.original_max_seq_len].iter().all(|v| v.is_finite()) {
                return Err(format!("stacks.{name}.rope_scaling is inconsistent: {s:?}"));
            }
        }
        Ok(())
    }
}

impl LmConfig {
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| LmError::Io { path: path.to_path_buf(), cause: e })?;
        Self::from_json(&text).map_err(|msg| LmError::config(path, msg))
    }

    pub fn from_json(text: &str) -> std::result::Result<Self, String> {
        let config: LmConfig = serde_json::from_str(text).map_err(|e| format!("invalid config: {e}"))?;
        config.validate()?;
        Ok(config)
    }

    /// V_a: ids per codebook stream (reasoning space then reconstruction space).
    pub fn audio_vocab(&self) -> usize {
        self.ids.audio_reason_card + self.ids.audio_semantic_card
    }

    pub fn text_vocab(&self) -> usize {
        self.stacks.backbone.vocab_size.unwrap_or(0)
    }

    /// Raw id (as placed in the sequence) of the all-`semantic_eos` stop frame.
    pub fn stop_code(&self) -> u32 {
        self.ids.semantic_eos + self.ids.audio_reason_card as u32
    }

    pub fn validate(&self) -> std::result::Result<(), String> {
        let s = &self.stacks;
        for (name, stack) in [("backbone", &s.backbone), ("understanding", &s.understanding), ("generation", &s.generation), ("decoder", &s.decoder)] {
            stack.validate(name)?;
        }
        let d = s.backbone.n_embd;
        for (name, stack) in [("understanding", &s.understanding), ("generation", &s.generation)] {
            if stack.n_embd != d {
                return Err(format!("stacks.{name}.n_embd {} must equal the backbone's {d}", stack.n_embd));
            }
        }
        // Test models may cut the text vocabulary; text generation then never meets
        // the end-of-text id and runs to max_steps.
        match s.backbone.vocab_size {
            Some(v) if v > 0 => {}
            Some(_) => return Err("stacks.backbone.vocab_size must be positive".into()),
            None => return Err("stacks.backbone.vocab_size is missing".into()),
        }
        if self.max_seq_len == 0 || self.max_seq_len > MAX_SEQ_LEN {
            return Err(format!("max_seq_len must be 1..={MAX_SEQ_LEN}, got {}", self.max_seq_len));
        }
        let rc = self.ids.audio_reason_card as u64;
        for (name, id) in [("reason_bos", self.ids.reason_bos), ("reason_eos", self.ids.reason_eos), ("reason_pad_token", self.ids.reason_pad_token)] {
            if id as u64 >= rc {
                return Err(format!("{name} {id} must be below audio_reason_card {rc}"));
            }
        }
        let sc = self.ids.audio_semantic_card as u64;
        for (name, id) in [("semantic_bos", self.ids.semantic_bos), ("semantic_eos", self.ids.semantic_eos), ("semantic_pad_token", self.ids.semantic_pad_token)] {
            if id as u64 >= sc {
                return Err(format!("{name} {id} must be below audio_semantic_card {sc}"));
            }
        }
        if self.ids.text_pad_token as usize >= self.text_vocab() {
            return Err(format!("text_pad_token {} is outside the text vocabulary", self.ids.text_pad_token));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{LmConfig, MAX_SEQ_LEN};
    use crate::presets::Preset;

    #[test]
    fn max_seq_len_must_be_positive_and_bounded() {
        let mut v = serde_json::to_value(Preset::Small.config()).unwrap();
        for (len, ok) in [(0, false), (1, true), (MAX_SEQ_LEN, true), (MAX_SEQ_LEN + 1, false), (usize::MAX >> 8, false)] {
            v["max_seq_len"] = len.into();
            match LmConfig::from_json(&v.to_string()) {
                Ok(c) => assert!(ok && c.max_seq_len == len, "max_seq_len {len} was accepted"),
                Err(e) => assert!(!ok && e.contains("max_seq_len"), "max_seq_len {len}: {e}"),
            }
        }
    }
}
