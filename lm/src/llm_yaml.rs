//! The released `llm_config.yaml` (training arguments) and the stack presets its
//! `llm_name` / `local_model` select.

use std::path::Path;

use serde::Deserialize;

use crate::config::{LmConfig, RopeScaling, SpecialIds, StackConfig, Stacks};
use crate::error::{LmError, Result};

#[derive(Clone, Debug, Deserialize)]
pub struct LlmYaml {
    #[serde(flatten)]
    pub ids: SpecialIds,
    #[serde(default)]
    pub parallel_number: Option<usize>,
    #[serde(default)]
    pub llm_name: Option<String>,
    #[serde(default)]
    pub local_model: Option<String>,
}

impl LlmYaml {
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| LmError::Io { path: path.to_path_buf(), cause: e })?;
        let y: LlmYaml = serde_norway::from_str(&text).map_err(|e| LmError::config(path, format!("invalid llm_config.yaml: {e}")))?;
        if let Some(n) = y.parallel_number {
            if n != 9 {
                return Err(LmError::config(path, format!("parallel_number {n} is not supported (UniAudio 2.0 uses 9 streams)")));
            }
        }
        Ok(y)
    }

    /// The LM config these training arguments describe, with stacks from the named presets.
    pub fn to_config(&self, path: &Path) -> Result<LmConfig> {
        let need = |field: &Option<String>, key: &str| {
            field.clone().ok_or_else(|| LmError::config(path, format!("`{key}` is missing; pass --config config.json for custom models")))
        };
        let llm = need(&self.llm_name, "llm_name")?;
        let local = need(&self.local_model, "local_model")?;
        let backbone = stack_preset(&llm).ok_or_else(|| unknown(path, "llm_name", &llm))?;
        let decoder = stack_preset(&local).ok_or_else(|| unknown(path, "local_model", &local))?;
        let expert = |n_layer| StackConfig { n_layer, vocab_size: None, ..stack_preset("Llama-3.2-3B").expect("built-in preset") };
        let config = LmConfig {
            ids: self.ids.clone(),
            max_seq_len: 2048,
            stacks: Stacks {
                backbone: StackConfig { vocab_size: Some(128_256), ..backbone },
                understanding: expert(3),
                generation: expert(2),
                decoder: StackConfig { vocab_size: None, ..decoder },
            },
        };
        config.validate().map_err(|e| LmError::config(path, e))?;
        Ok(config)
    }
}

fn unknown(path: &Path, key: &str, name: &str) -> LmError {
    LmError::config(
        path,
        format!("unknown {key} `{name}` (known: Llama-3.2-3B, Llama-3.2-1B, Llama-3.2-300M, Llama-3.2-4Layer); pass --config config.json for custom models"),
    )
}

/// litgpt's Llama 3.2 entries (and the reference's custom small ones). Matches the name
/// after any `org/` prefix, case-insensitively.
pub fn stack_preset(name: &str) -> Option<StackConfig> {
    let base = name.rsplit('/').next().unwrap_or(name).to_ascii_lowercase();
    let s = |n_layer, n_embd, n_head, head_size| StackConfig {
        n_layer,
        n_embd,
        n_head,
        n_query_groups: 8,
        head_size,
        intermediate_size: 8192,
        vocab_size: Some(128_256),
        rope_base: 500_000.0,
        rope_scaling: Some(RopeScaling::LLAMA3),
        norm_eps: 1e-5,
    };
    match base.as_str() {
        "llama-3.2-3b" | "llama-3.2-3b-instruct" | "llama3.2-3b" => Some(s(28, 3072, 24, 128)),
        "llama-3.2-1b" | "llama-3.2-1b-instruct" | "llama3.2-1b" => Some(s(16, 2048, 32, 64)),
        "llama-3.2-300m" | "llama-3.2-4layer" | "llama-300m" => Some(s(4, 2048, 32, 64)),
        "llama-3.2-understanding" => Some(StackConfig { n_layer: 3, ..s(28, 3072, 24, 128) }),
        "llama-3.2-generation" => Some(StackConfig { n_layer: 2, ..s(28, 3072, 24, 128) }),
        _ => None,
    }
}
