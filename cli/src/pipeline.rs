//! `uniaudio tts | tta | ttm | song | instruct-tts | s2s`: text (or speech) to a WAV file:
//! prompt, LM and codec decoder in one process.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use uniaudio::{CodecSettings, TaskRequest, TaskText};
use uniaudio_codec::StitchMode;
use uniaudio_lm::frame::parse_frames;
use uniaudio_lm::tasks::Task;

use crate::model_args::{ModelArgs, SamplingArgs};
use crate::wav::WavTarget;

#[derive(Args)]
pub struct PipelineArgs {
    /// Input speech (s2s): WAV, FLAC, MP3 or Ogg/Vorbis, any rate and channel count.
    input: Option<PathBuf>,
    /// Output WAV file.
    #[arg(short, long)]
    out: PathBuf,
    /// Transcript (tts, instruct-tts).
    #[arg(long)]
    text: Option<String>,
    /// Caption (tta, ttm, instruct-tts).
    #[arg(long)]
    caption: Option<String>,
    /// Lyrics (song).
    #[arg(long)]
    lyrics: Option<String>,
    /// Task instruction; by default one of the task's, chosen by --seed.
    #[arg(long)]
    instruction: Option<String>,
    /// Use these prompt frames (FRAMES.json, as `uniaudio prompt` writes) instead of
    /// building them.
    #[arg(long)]
    prompt: Option<PathBuf>,
    /// Codec Euler steps (the reference CLI's default is 50).
    #[arg(long, default_value_t = 50)]
    steps: usize,
    /// Codec window stitching: reference or fixed.
    #[arg(long, default_value = "reference")]
    mode: String,
    #[arg(long)]
    pcm16: bool,
    /// Replace an existing output file.
    #[arg(long)]
    force: bool,
    /// Also print one JSON object (stopped_by, frames, sampler settings, timings) to stdout.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    sampling: SamplingArgs,
}

pub fn run(task: Task, args: PipelineArgs) -> Result<()> {
    let mode: StitchMode = args.mode.parse().map_err(|e: String| anyhow::anyhow!("--mode: {e}"))?;
    if args.steps == 0 {
        bail!("--steps must be >= 1");
    }
    let text = TaskText { text: args.text.clone(), caption: args.caption.clone(), lyrics: args.lyrics.clone(), question: None, instruction: args.instruction.clone() };
    match (uniaudio::request::takes_audio(task), &args.input) {
        (true, None) => bail!("{} needs an input audio file", task.name()),
        (false, Some(p)) => {
            let flags = uniaudio::request::text_inputs(task).iter().map(|f| format!("--{f}")).collect::<Vec<_>>();
            // A positional that names no file was most likely meant as the text.
            let hint = if flags.is_empty() || p.exists() { String::new() } else { format!("; its text goes in {}", flags.join(" and ")) };
            bail!("{} takes no input audio (got {:?}){hint}", task.name(), p.display().to_string())
        }
        _ => {}
    }
    uniaudio::request::check_text_inputs(task, &text)?;
    let paths = args.model.resolve()?;
    paths.require_all(&uniaudio::run::parts_for(task), task.name())?;
    let target = WavTarget::prepare(&args.out, args.force)?;
    let prompt_frames = match &args.prompt {
        None => None,
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading prompt {}", path.display()))?;
            Some(parse_frames(&text).with_context(|| format!("prompt {}", path.display()))?)
        }
    };
    let audio = args.input.as_deref().map(crate::audio_in::read).transpose()?;
    let req = TaskRequest { task, text, audio, sampling: args.sampling.sampling(), codec: CodecSettings { steps: args.steps, mode }, prompt_frames };
    let out = crate::task_run::run(&paths, args.sampling.backend, &req, false)?;
    let audio = out.audio.as_deref().context("no audio was produced")?;
    target.write(audio, out.sample_rate, args.pcm16)?;
    eprintln!("wrote {} ({:.2} s)", args.out.display(), audio.len() as f64 / out.sample_rate as f64);
    if args.json {
        let mut json = uniaudio::task_json::output_json(&out);
        json["out"] = serde_json::json!(args.out);
        json["reasoning"] = serde_json::json!(out.generated.reasoning);
        json["reconstruction"] = serde_json::json!(out.generated.reconstruction);
        json["samples"] = serde_json::json!(audio.len());
        println!("{json}");
    }
    Ok(())
}
