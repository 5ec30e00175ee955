//! `uniaudio asr | caption | music-caption | lyrics | ask | s2t`: an audio file to text.
//! The text is printed as it is generated; `--json` prints one object at the end instead.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use uniaudio::{CodecSettings, TaskRequest, TaskText};
use uniaudio_lm::tasks::Task;

use crate::model_args::{ModelArgs, SamplingArgs};

#[derive(Args)]
pub struct UnderstandArgs {
    /// Audio file: WAV, FLAC, MP3 or Ogg/Vorbis, any rate and channel count.
    input: PathBuf,
    /// The question (ask).
    #[arg(long)]
    question: Option<String>,
    /// Task instruction; by default one of the task's, chosen by --seed.
    #[arg(long)]
    instruction: Option<String>,
    /// Print one JSON object {"text", "text_ids", "stopped_by", "top_k", "temperature", "seed", "timings", ...}
    /// instead of streaming the text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    sampling: SamplingArgs,
}

pub fn run(task: Task, args: UnderstandArgs) -> Result<()> {
    let text = TaskText { question: args.question.clone(), instruction: args.instruction.clone(), ..Default::default() };
    // Flag mistakes and missing parts fail before the audio is read.
    uniaudio::request::check_text_inputs(task, &text)?;
    let paths = args.model.resolve()?;
    paths.require_all(&uniaudio::run::parts_for(task), task.name())?;
    let audio = crate::audio_in::read(&args.input)?;
    let req = TaskRequest { task, text, audio: Some(audio), sampling: args.sampling.sampling(), codec: CodecSettings::default(), prompt_frames: None };
    let out = crate::task_run::run(&paths, args.sampling.backend, &req, !args.json)?;
    if args.json {
        println!("{}", uniaudio::task_json::output_json(&out));
    }
    Ok(())
}
