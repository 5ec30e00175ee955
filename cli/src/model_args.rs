//! The arguments every task command shares: where the model is, and how to sample.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use uniaudio::{ModelPaths, Sampling};

use crate::backend::BackendChoice;

#[derive(Args, Clone)]
pub struct ModelArgs {
    /// Model bundle (a directory with uniaudio.json), or an LM directory for experts;
    /// default: $UNIAUDIO_MODEL.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Codec directory, instead of the bundle's.
    #[arg(long)]
    pub codec: Option<PathBuf>,
    /// tokenizer.json, instead of the bundle's (or the LM directory's).
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
}

impl ModelArgs {
    pub fn resolve(&self) -> Result<ModelPaths> {
        ModelPaths::resolve(self.model.as_deref(), self.codec.as_deref(), self.tokenizer.as_deref())
    }
}

#[derive(Args, Clone)]
pub struct SamplingArgs {
    /// Keep the K most likely ids (default: the task's; 1 = greedy).
    #[arg(long)]
    pub top_k: Option<usize>,
    /// Sampling temperature (default: the task's).
    #[arg(long)]
    pub temperature: Option<f32>,
    #[arg(long, default_value_t = 888)]
    pub seed: u64,
    /// Maximum LM steps after the prompt (default: the task's cap, 500 text tokens or 1500
    /// audio frames, reduced to what the context holds).
    #[arg(long)]
    pub max_steps: Option<usize>,
    /// Classifier-free guidance scale (off by default, as in the reference).
    #[arg(long)]
    pub cfg_scale: Option<f32>,
    #[arg(long, value_enum, default_value = "auto")]
    pub backend: BackendChoice,
}

impl SamplingArgs {
    pub fn sampling(&self) -> Sampling {
        Sampling { top_k: self.top_k, temperature: self.temperature, seed: self.seed, max_steps: self.max_steps, cfg_scale: self.cfg_scale, step_limit: None }
    }
}
