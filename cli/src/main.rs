//! `uniaudio`: the command line of the UniAudio 2.0 runtime.

mod backend;
mod bench;
mod bench_codec;
mod bench_encoder;
mod bench_gemv;
mod codec;
mod codec_encode;
mod convert;
mod generate;
mod output;
mod pipeline;
mod progress;
mod prompt;
mod synth;
mod system;
mod text_inputs;
mod wav;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use uniaudio_lm::tasks::Task;

#[derive(Parser)]
#[command(name = "uniaudio", version, about = "UniAudio 2.0 inference runtime")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate audio frames or text from a prompt of 9-stream frames; prints JSON.
    Generate(generate::GenerateArgs),
    /// Build the prompt frames of a task (TTS, ASR, ...) as FRAMES.json.
    Prompt(prompt::PromptArgs),
    /// Convert a released torch checkpoint into a model directory.
    Convert(convert::ConvertArgs),
    /// Write a model directory of synthetic weights from a config.json.
    Synth(synth::SynthArgs),
    /// End-to-end benchmark on synthesized models: LM prefill, audio frames and text tokens,
    /// the codec decoder (flow + SQ decoder), then the codec encoder.
    Bench(bench::BenchArgs),
    /// Text to speech: prompt, LM and codec in one run, to a WAV file.
    Tts(pipeline::PipelineArgs),
    /// Text to audio (a caption) to a WAV file.
    Tta(pipeline::PipelineArgs),
    /// Text to music (a caption) to a WAV file.
    Ttm(pipeline::PipelineArgs),
    /// Lyrics to song to a WAV file.
    Song(pipeline::PipelineArgs),
    /// ReasoningCodec: encode audio to tokens, decode reconstruction tokens to audio.
    #[command(subcommand)]
    Codec(codec::CodecCommand),
    /// Decode-GEMV benchmark: achieved GB/s against this machine's measured read bandwidth.
    BenchGemv(bench_gemv::BenchGemvArgs),
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Generate(args) => generate::run(args),
        Command::Prompt(args) => prompt::run(args),
        Command::Convert(args) => convert::run(args),
        Command::Synth(args) => synth::run(args),
        Command::Bench(args) => bench::run(args),
        Command::BenchGemv(args) => bench_gemv::run(args),
        Command::Codec(cmd) => codec::run(cmd),
        Command::Tts(args) => pipeline::run(Task::Tts, args),
        Command::Tta(args) => pipeline::run(Task::Tta, args),
        Command::Ttm(args) => pipeline::run(Task::Ttm, args),
        Command::Song(args) => pipeline::run(Task::Lts, args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line with the whole cause chain; no backtrace for user errors.
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
