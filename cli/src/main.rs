//! `uniaudio`: the command line of the UniAudio 2.0 runtime.

mod audio_in;
mod backend;
mod bench;
mod bench_batch;
mod bench_serve;
mod bench_codec;
mod bench_encoder;
mod bench_gemv;
mod codec;
mod codec_encode;
mod convert;
mod generate;
mod model_args;
mod output;
mod pipeline;
mod progress;
mod prompt;
mod requests;
mod synth;
mod system;
mod task_run;
mod text_inputs;
mod understand;
mod serve;
mod tune;
mod verify;
mod wav;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use uniaudio_lm::tasks::Task;

#[derive(Parser)]
#[command(name = "uniaudio", version, about = "UniAudio 2.0 inference runtime")]
struct Cli {
    /// Arithmetic: `exact` (f32 everywhere, what the reference fixtures test) or `fast`
    /// (16-bit operands into the GEMMs and convolutions, f32 sums: bf16 on CPUs with
    /// AVX512-BF16 and on CUDA tensor cores, f16 on wgpu adapters with SHADER_F16).
    #[arg(long, global = true, default_value = "exact", value_parser = ["exact", "fast"])]
    precision: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate audio frames or text from a prompt of 9-stream frames; prints JSON.
    Generate(generate::GenerateArgs),
    /// Build the prompt frames of a task (TTS, ASR, ...) as FRAMES.json.
    Prompt(prompt::PromptArgs),
    /// Convert released checkpoints into a model directory, a codec directory or one bundle.
    Convert(convert::ConvertArgs),
    /// Write a model directory (or, with --bundle, a whole bundle) of synthetic weights.
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
    /// Instruction TTS: a style caption and a transcript to a WAV file.
    InstructTts(pipeline::PipelineArgs),
    /// Speech to speech: an audio file to a spoken answer as a WAV file.
    S2s(pipeline::PipelineArgs),
    /// Speech recognition: an audio file to its transcript.
    Asr(understand::UnderstandArgs),
    /// Audio captioning: an audio file to a description of its sounds.
    Caption(understand::UnderstandArgs),
    /// Music captioning: a music file to a description.
    MusicCaption(understand::UnderstandArgs),
    /// Lyric recognition: a song to its lyrics.
    Lyrics(understand::UnderstandArgs),
    /// Audio question answering: an audio file and --question to an answer.
    Ask(understand::UnderstandArgs),
    /// Speech to text: a spoken request to a text answer.
    S2t(understand::UnderstandArgs),
    /// Serve the model over HTTP (JSON; continuous batching; /health, /metrics).
    Serve(serve::ServeArgs),
    /// Check every file of a bundle against its manifest (sizes and sha256).
    Verify(verify::VerifyArgs),
    /// ReasoningCodec: encode audio to tokens, decode reconstruction tokens to audio.
    #[command(subcommand)]
    Codec(codec::CodecCommand),
    /// Decode-GEMV benchmark: achieved GB/s against this machine's measured read bandwidth.
    BenchGemv(bench_gemv::BenchGemvArgs),
    /// Serving benchmark: a local server under concurrent streaming clients.
    BenchServe(bench_serve::BenchServeArgs),
    /// Time the tunable kernels' candidates on this machine and cache the fastest per device.
    Tune(tune::TuneArgs),
}

/// Vulkan's window-system layers print `error: XDG_RUNTIME_DIR is invalid` while wgpu
/// probes adapters on a headless machine; a private runtime directory keeps them quiet.
/// Runs first, while the process has one thread.
fn quiet_headless_probing() {
    if std::env::var_os("XDG_RUNTIME_DIR").is_some_and(|d| std::path::Path::new(&d).is_dir()) {
        return;
    }
    // SAFETY: getuid has no preconditions.
    #[cfg(unix)]
    let user = unsafe { libc::getuid() };
    #[cfg(not(unix))]
    let user = 0;
    let dir = std::env::temp_dir().join(format!("uniaudio-runtime-{user}"));
    if std::fs::create_dir_all(&dir).is_ok() {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
        }
        std::env::set_var("XDG_RUNTIME_DIR", &dir);
    }
}

fn main() -> ExitCode {
    quiet_headless_probing();
    let cli = Cli::parse();
    backend::set_precision(uniaudio_runtime::Precision::parse(&cli.precision).unwrap_or_default());
    let result = match cli.command {
        Command::Generate(args) => generate::run(args),
        Command::Prompt(args) => prompt::run(args),
        Command::Convert(args) => convert::run(args),
        Command::Synth(args) => synth::run(args),
        Command::Bench(args) => bench::run(args),
        Command::BenchGemv(args) => bench_gemv::run(args),
        Command::BenchServe(args) => bench_serve::run(args),
        Command::Tune(args) => tune::run(args),
        Command::Codec(cmd) => codec::run(cmd),
        Command::Tts(args) => pipeline::run(Task::Tts, args),
        Command::Tta(args) => pipeline::run(Task::Tta, args),
        Command::Ttm(args) => pipeline::run(Task::Ttm, args),
        Command::Song(args) => pipeline::run(Task::Lts, args),
        Command::InstructTts(args) => pipeline::run(Task::InstructTts, args),
        Command::S2s(args) => pipeline::run(Task::SpeechS2s, args),
        Command::Asr(args) => understand::run(Task::Asr, args),
        Command::Caption(args) => understand::run(Task::AudioCaption, args),
        Command::MusicCaption(args) => understand::run(Task::MusicCaption, args),
        Command::Lyrics(args) => understand::run(Task::LyricRecognition, args),
        Command::Ask(args) => understand::run(Task::AudioUnderstanding, args),
        Command::S2t(args) => understand::run(Task::SpeechS2t, args),
        Command::Serve(args) => serve::run(args),
        Command::Verify(args) => verify::run(args),
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
