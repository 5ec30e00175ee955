//! `uniaudio prompt`: builds the FRAMES.json of a task for `uniaudio generate`.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use uniaudio_lm::tasks::{build_prompt, AudioTokens, Task};
use uniaudio_lm::tokenizer::TextTokenizer;
use uniaudio_lm::{Frame, LmConfig, OutputKind};

use crate::text_inputs::TextInputArgs;

#[derive(Args)]
pub struct PromptArgs {
    /// TTS, Yue_TTS, TTA, TTM, LTS (song), InstructTTS, speech_s2s, ASR, Yue_ASR,
    /// audio_caption, music_caption, lyric_recognition, speech_s2t, audio_understanding.
    #[arg(long)]
    task: String,
    /// Bundle or LM directory: its config.json gives the special ids, its tokenizer.json the
    /// text tokenizer (default: $UNIAUDIO_MODEL).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Codec directory to encode --audio with, instead of the bundle's.
    #[arg(long)]
    codec: Option<PathBuf>,
    /// config.json to use instead of the model directory's.
    #[arg(long)]
    config: Option<PathBuf>,
    #[command(flatten)]
    inputs: TextInputArgs,
    /// Question (audio_understanding).
    #[arg(long)]
    question: Option<String>,
    /// Input audio as codec tokens: {"reasoning": [[8 codes], ...], "reconstruction": [[...], ...]}.
    #[arg(long, conflicts_with = "audio")]
    audio_tokens: Option<PathBuf>,
    /// Input audio file (WAV, FLAC, MP3, Ogg/Vorbis), encoded with the codec.
    #[arg(long)]
    audio: Option<PathBuf>,
    /// Backend for encoding --audio.
    #[arg(long, value_enum, default_value = "auto")]
    backend: crate::backend::BackendChoice,
    #[arg(long, default_value_t = 888)]
    seed: u64,
    /// Output file (default: stdout).
    #[arg(long)]
    out: Option<PathBuf>,
}

fn frame_json(f: &Frame) -> serde_json::Value {
    match f {
        Frame::Text(t) => serde_json::json!({ "text": t }),
        Frame::Audio(c) => serde_json::json!({ "audio": c }),
    }
}

pub fn run(args: PromptArgs) -> Result<()> {
    let Some(task) = Task::parse(&args.task) else {
        let names: Vec<_> = Task::ALL.iter().map(|t| t.name()).collect();
        bail!("--task: unknown task `{}` (one of {})", args.task, names.join(", "));
    };
    let paths = uniaudio::ModelPaths::resolve(args.model.as_deref(), args.codec.as_deref(), args.inputs.tokenizer.as_deref())?;
    let config_path = match (&args.config, &paths.lm) {
        (Some(c), _) => c.clone(),
        (None, Some(m)) => m.join("config.json"),
        (None, None) => bail!("pass --model BUNDLE (or --config config.json) for the model's special ids"),
    };
    let config = LmConfig::from_file(&config_path)?;
    crate::output::check_report_path(args.out.as_deref())?;
    let tok_path = paths.require(uniaudio::Part::Tokenizer, task.name())?;
    let tok = TextTokenizer::from_file(tok_path)?;
    // The task runner's checks, before any audio is encoded: each text flag the task reads
    // is given and not blank, and no other is.
    let text = uniaudio::TaskText { question: args.question.clone(), ..args.inputs.task_text() };
    uniaudio::request::check_text_inputs(task, &text)?;
    let audio = match (&args.audio_tokens, &args.audio) {
        (Some(p), _) => {
            let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            Some(serde_json::from_str::<AudioTokens>(&text).with_context(|| format!("{}: expected {{\"reasoning\": [[8 codes]...], \"reconstruction\": [[8 codes]...]}}", p.display()))?)
        }
        (None, Some(p)) => {
            let dir = paths.require(uniaudio::Part::Encoder, task.name())?;
            Some(crate::codec_encode::encode_file(dir, p, args.backend)?)
        }
        (None, None) => None,
    };
    let inputs = args.inputs.task_inputs(args.question, audio);
    let built = build_prompt(&config, &tok, task, &inputs, args.seed)?;
    let json = serde_json::json!({
        "task": task.name(),
        "instruction": built.instruction,
        "output_kind": match built.output_kind { OutputKind::Audio => "audio", OutputKind::Text => "text" },
        "top_k": built.top_k,
        "temperature": built.temperature,
        "frames": built.frames.iter().map(frame_json).collect::<Vec<_>>(),
    });
    let text = serde_json::to_string(&json)?;
    match &args.out {
        None => println!("{text}"),
        Some(path) => crate::output::write_atomically(path, &text)?,
    }
    Ok(())
}
