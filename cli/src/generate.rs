//! `uniaudio generate`: run the LM on a prompt of frames and print the result as JSON.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use uniaudio_lm::{frame::parse_frames, generate, GenerateOptions, OutputKind, StopReason, UniAudioLm};
use uniaudio_runtime::Backend;

use crate::backend::{BackendChoice, Opened};
use crate::progress;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Kind {
    Audio,
    Text,
}

#[derive(Args)]
pub struct GenerateArgs {
    /// Bundle, or LM directory (config.json plus model.safetensors or shards with an index);
    /// default: $UNIAUDIO_MODEL.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Prompt file: {"frames": [{"text": ID} | {"audio": [c0, ..., c7]}, ...]}.
    #[arg(long)]
    prompt: PathBuf,
    /// What the model generates.
    #[arg(long, value_enum)]
    output_kind: Kind,
    /// Keep the K most likely ids (1 = greedy, 0 = all).
    #[arg(long, default_value_t = 50)]
    top_k: usize,
    #[arg(long, default_value_t = 0.9)]
    temperature: f32,
    #[arg(long, default_value_t = 888)]
    seed: u64,
    /// Maximum model evaluations after the prompt.
    #[arg(long, default_value_t = 500)]
    max_steps: usize,
    #[arg(long, value_enum, default_value = "auto")]
    backend: BackendChoice,
    /// Classifier-free guidance scale l_u + s·(l_c − l_u) against a padded negative
    /// prompt. Off by default, as in the reference.
    #[arg(long)]
    cfg_scale: Option<f32>,
}

pub fn run(args: GenerateArgs) -> Result<()> {
    let text = std::fs::read_to_string(&args.prompt).with_context(|| format!("reading prompt {}", args.prompt.display()))?;
    let prompt = parse_frames(&text).with_context(|| format!("prompt {}", args.prompt.display()))?;
    let kind = match args.output_kind {
        Kind::Audio => OutputKind::Audio,
        Kind::Text => OutputKind::Text,
    };
    let opts = GenerateOptions {
        kind,
        top_k: args.top_k,
        temperature: args.temperature,
        seed: args.seed,
        max_steps: args.max_steps,
        cfg_scale: args.cfg_scale,
    };
    match args.backend.open()? {
        Opened::Cpu(b) => run_on(&b, &args, &prompt, &opts),
        Opened::Wgpu(b) => run_on(&b, &args, &prompt, &opts),
        Opened::Cuda(b) => run_on(&b, &args, &prompt, &opts),
    }
}

fn run_on<B: Backend>(backend: &B, args: &GenerateArgs, prompt: &[uniaudio_lm::Frame], opts: &GenerateOptions) -> Result<()> {
    let paths = uniaudio::ModelPaths::resolve(args.model.as_deref(), None, None)?;
    let dir = paths.require(uniaudio::Part::Lm, "generate")?;
    let lm = UniAudioLm::load(backend, dir).with_context(|| format!("loading model {}", dir.display()))?;
    uniaudio_lm::generate::check_request(&lm.config, prompt, opts).with_context(|| format!("prompt {}", args.prompt.display()))?;
    let bar = progress::steps(opts.max_steps as u64, "generating");
    let out = generate(&lm, backend, prompt, opts, &mut |done, _| bar.set_position(done as u64))?;
    bar.finish_and_clear();
    let stopped_by = match out.stopped_by {
        Some(StopReason::Eos) => "eos",
        _ => "max_steps",
    };
    let json = match opts.kind {
        OutputKind::Audio => serde_json::json!({
            "frames": out.frames, "reasoning": out.reasoning, "reconstruction": out.reconstruction, "stopped_by": stopped_by,
        }),
        OutputKind::Text => serde_json::json!({"text_ids": out.text_ids, "stopped_by": stopped_by}),
    };
    println!("{json}");
    Ok(())
}
