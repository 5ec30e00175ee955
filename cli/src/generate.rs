//! `uniaudio generate`: run the LM on a prompt of frames and print the result as JSON.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use uniaudio_lm::{frame::parse_frames, generate, GenerateOptions, OutputKind, UniAudioLm};
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
    #[arg(long, required_unless_present = "requests", conflicts_with = "requests")]
    prompt: Option<PathBuf>,
    /// Many requests, one JSON object per line: {"frames", "output_kind", "top_k",
    /// "temperature", "seed", "max_steps", "cfg_scale"} (a missing field takes the flag's
    /// value); prints one output object per line, in input order.
    #[arg(long)]
    pub requests: Option<PathBuf>,
    /// Most rows decoded per step with --requests (a guided request takes two).
    #[arg(long, default_value_t = 16)]
    pub max_batch: usize,
    /// Bytes the running requests' KV caches may hold together with --requests (K/M/G
    /// suffixes allowed; default: half the memory the backend reports free).
    #[arg(long, value_parser = crate::requests::parse_bytes)]
    pub kv_budget: Option<usize>,
    /// What the model generates (per request in --requests, where a line does not say).
    #[arg(long, value_enum, required_unless_present = "requests")]
    output_kind: Option<Kind>,
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
    if args.requests.is_some() {
        return crate::requests::run(&args);
    }
    let path = args.prompt.as_ref().context("--prompt FILE is needed")?;
    let text = std::fs::read_to_string(path).with_context(|| format!("reading prompt {}", path.display()))?;
    let prompt = parse_frames(&text).with_context(|| format!("prompt {}", path.display()))?;
    let opts = GenerateOptions {
        kind: args.kind().context("--output-kind is needed")?,
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

impl GenerateArgs {
    pub fn kind(&self) -> Option<OutputKind> {
        self.output_kind.map(|k| match k {
            Kind::Audio => OutputKind::Audio,
            Kind::Text => OutputKind::Text,
        })
    }

    /// The flags' sampler settings (the defaults of a --requests line).
    pub fn defaults(&self) -> (usize, f32, u64, usize, Option<f32>) {
        (self.top_k, self.temperature, self.seed, self.max_steps, self.cfg_scale)
    }

    pub fn backend(&self) -> BackendChoice {
        self.backend
    }

    pub fn load<B: Backend>(&self, backend: &B) -> Result<UniAudioLm<B>> {
        let paths = uniaudio::ModelPaths::resolve(self.model.as_deref(), None, None)?;
        let dir = paths.require(uniaudio::Part::Lm, "generate")?;
        UniAudioLm::load(backend, dir).with_context(|| format!("loading model {}", dir.display()))
    }
}

/// The object `generate` prints for one output.
fn run_on<B: Backend>(backend: &B, args: &GenerateArgs, prompt: &[uniaudio_lm::Frame], opts: &GenerateOptions) -> Result<()> {
    let lm = args.load(backend)?;
    let path = args.prompt.as_deref().unwrap_or(std::path::Path::new("-"));
    uniaudio_lm::generate::check_request(&lm.config, prompt, opts).with_context(|| format!("prompt {}", path.display()))?;
    let bar = progress::steps(opts.max_steps as u64, "generating");
    let out = generate(&lm, backend, prompt, opts, &mut |done, _| bar.set_position(done as u64))?;
    bar.finish_and_clear();
    println!("{}", uniaudio::generate_json::output_json(opts.kind, &out));
    Ok(())
}
