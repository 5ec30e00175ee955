//! `uniaudio tts | tta | ttm | song`: prompt building, the LM and the codec decoder in one
//! process, ending in a WAV file.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use uniaudio_codec::{Codec, DecodeOptions, Noise, StitchMode};
use uniaudio_lm::tasks::{build_prompt, Task};
use uniaudio_lm::tokenizer::TextTokenizer;
use uniaudio_lm::{frame::parse_frames, generate, GenerateOptions, LmConfig, OutputKind, UniAudioLm};
use uniaudio_runtime::Backend;

use crate::backend::{BackendChoice, Opened};
use crate::progress;
use crate::text_inputs::TextInputArgs;
use crate::wav::WavTarget;

#[derive(Args)]
pub struct PipelineArgs {
    /// LM directory (config.json, weights, tokenizer.json).
    #[arg(long)]
    model: PathBuf,
    /// Codec directory (config.json, codec.safetensors, sqcodec.safetensors).
    #[arg(long)]
    codec: PathBuf,
    /// Output WAV file.
    #[arg(short, long)]
    out: PathBuf,
    #[command(flatten)]
    inputs: TextInputArgs,
    /// Use these prompt frames (FRAMES.json, as `uniaudio prompt` writes) instead of
    /// building them from the text.
    #[arg(long)]
    prompt: Option<PathBuf>,
    /// LM sampling: keep the K most likely ids (default: the task's).
    #[arg(long)]
    top_k: Option<usize>,
    /// LM sampling temperature (default: the task's).
    #[arg(long)]
    temperature: Option<f32>,
    #[arg(long, default_value_t = 888)]
    seed: u64,
    /// Maximum LM evaluations after the prompt.
    #[arg(long, default_value_t = 1500)]
    max_steps: usize,
    /// Codec Euler steps (the reference CLI's default is 50).
    #[arg(long, default_value_t = 50)]
    steps: usize,
    /// Codec window stitching: reference or fixed.
    #[arg(long, default_value = "reference")]
    mode: String,
    #[arg(long, value_enum, default_value = "auto")]
    backend: BackendChoice,
    #[arg(long)]
    pcm16: bool,
    /// Replace an existing output file.
    #[arg(long)]
    force: bool,
}

pub fn run(task: Task, args: PipelineArgs) -> Result<()> {
    let mode: StitchMode = args.mode.parse().map_err(|e: String| anyhow::anyhow!("--mode: {e}"))?;
    if args.steps == 0 {
        bail!("--steps must be >= 1");
    }
    let target = WavTarget::prepare(&args.out, args.force)?;
    let config = LmConfig::from_file(&args.model.join("config.json"))?;
    let tok = TextTokenizer::locate(args.inputs.tokenizer.as_deref(), Some(&args.model))?;
    let inputs = args.inputs.task_inputs(None, None);
    let mut prompt = build_prompt(&config, &tok, task, &inputs, args.seed)?;
    if let Some(path) = &args.prompt {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading prompt {}", path.display()))?;
        prompt.frames = parse_frames(&text).with_context(|| format!("prompt {}", path.display()))?;
    }
    let opts = GenerateOptions {
        kind: OutputKind::Audio,
        top_k: args.top_k.unwrap_or(prompt.top_k),
        temperature: args.temperature.unwrap_or(prompt.temperature),
        seed: args.seed,
        max_steps: args.max_steps,
        cfg_scale: None,
    };
    let decode = DecodeOptions { steps: args.steps, mode, noise: Noise::Seeded(args.seed) };
    let opened = args.backend.open()?;
    eprintln!("backend: {}", opened.describe());
    let (audio, rate) = match &opened {
        Opened::Cpu(b) => run_on(b, &args, &prompt.frames, &opts, &decode)?,
        Opened::Wgpu(b) => run_on(b, &args, &prompt.frames, &opts, &decode)?,
        Opened::Cuda(b) => run_on(b, &args, &prompt.frames, &opts, &decode)?,
    };
    target.write(&audio, rate, args.pcm16)?;
    eprintln!("wrote {} ({:.2} s)", args.out.display(), audio.len() as f64 / rate as f64);
    Ok(())
}

fn run_on<B: Backend>(b: &B, args: &PipelineArgs, prompt: &[uniaudio_lm::Frame], opts: &GenerateOptions, decode: &DecodeOptions) -> Result<(Vec<f32>, u32)> {
    // Load the codec first: its errors come before minutes of generation.
    let codec = Codec::load(b, &args.codec).with_context(|| format!("loading codec {}", args.codec.display()))?;
    let frames = {
        let lm = UniAudioLm::load(b, &args.model).with_context(|| format!("loading model {}", args.model.display()))?;
        uniaudio_lm::generate::check_request(&lm.config, prompt, opts)?;
        let bar = progress::steps(opts.max_steps as u64, "generating");
        let out = generate(&lm, b, prompt, opts, &mut |done, _| bar.set_position(done as u64))?;
        bar.finish_and_clear();
        out.reconstruction
    };
    if frames.is_empty() {
        bail!("the LM produced no reconstruction frames within --max-steps {}", opts.max_steps);
    }
    let rows: Vec<Vec<u32>> = (0..frames[0].len()).map(|r| frames.iter().map(|f| f[r]).collect()).collect();
    let out = crate::codec::decode_with_progress(&codec, b, &rows, decode).context("decoding the generated tokens")?;
    Ok((out.audio, codec.config.sample_rate))
}
