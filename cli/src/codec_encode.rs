//! `uniaudio codec encode`: an audio file to reasoning and reconstruction tokens.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use uniaudio_audio::Downmix;
use uniaudio_codec::encode::{Encoder, EncoderConfig, Tokens};
use uniaudio_runtime::Backend;

use crate::backend::{BackendChoice, Opened};
use crate::output::Target;
use crate::progress;

#[derive(Args)]
pub struct EncodeArgs {
    /// Codec directory: config.json with the encoder sections, codec.safetensors with the encoder tensors.
    #[arg(long)]
    pub codec: Option<PathBuf>,
    /// A bundle whose codec to use (default: $UNIAUDIO_MODEL).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Audio file: WAV (PCM 8/16/24/32-bit or float), FLAC, MP3 or Ogg/Vorbis, any rate and channel count.
    #[arg(long)]
    pub input: PathBuf,
    /// Output TOKENS.json: {"reasoning": [[8 codes], ...], "reconstruction": [[8 codes], ...]}.
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, value_enum, default_value = "auto")]
    pub backend: BackendChoice,
    /// Replace an existing output file.
    #[arg(long)]
    pub force: bool,
}

pub fn run(args: EncodeArgs) -> Result<()> {
    let target = Target::prepare(&args.out, args.force)?;
    let paths = uniaudio::ModelPaths::resolve(args.model.as_deref(), args.codec.as_deref(), None)?;
    let dir = paths.require(uniaudio::Part::Encoder, "codec encode")?;
    let tokens = encode(dir, &args.input, args.backend)?;
    target.write(serde_json::to_string(&tokens)?.as_bytes())?;
    eprintln!("wrote {} ({} reasoning frames, {} reconstruction frames)", args.out.display(), tokens.reasoning.len(), tokens.reconstruction.len());
    Ok(())
}

/// Encodes an audio file with the codec in `dir`.
pub fn encode(dir: &Path, input: &Path, backend: BackendChoice) -> Result<Tokens> {
    // The config first: a codec directory without an encoder fails before any audio work.
    let config = EncoderConfig::load(&dir.join(uniaudio_codec::synth::CONFIG_FILE)).with_context(|| format!("codec {}", dir.display()))?;
    let samples = read_24k(input)?;
    let opened = backend.open()?;
    eprintln!("backend: {}", opened.describe());
    match &opened {
        Opened::Cpu(b) => encode_on(b, dir, config, &samples),
        Opened::Wgpu(b) => encode_on(b, dir, config, &samples),
        Opened::Cuda(b) => encode_on(b, dir, config, &samples),
    }
}

/// As `encode`, as the LM's frames.
pub fn encode_file(dir: &Path, input: &Path, backend: BackendChoice) -> Result<uniaudio_lm::tasks::AudioTokens> {
    uniaudio::run::audio_tokens(encode(dir, input, backend)?)
}

/// Reads any supported audio file as 24 kHz mono, saying what was done to it.
pub fn read_24k(path: &Path) -> Result<Vec<f32>> {
    let audio = uniaudio_audio::read_audio(path)?;
    if let Downmix::Mean(n) = audio.downmix {
        eprintln!("note: {}: {n} channels averaged to mono (the reference only downmixes stereo)", path.display());
    }
    if audio.sample_rate != 24_000 {
        eprintln!("resampling {} Hz -> 24000 Hz", audio.sample_rate);
    }
    Ok(uniaudio_audio::resample(&audio.samples, audio.sample_rate, 24_000))
}

fn encode_on<B: Backend>(b: &B, dir: &Path, config: EncoderConfig, samples: &[f32]) -> Result<Tokens> {
    let encoder = Encoder::load_with(b, config, &dir.join(uniaudio_codec::synth::CODEC_FILE)).with_context(|| format!("loading encoder {}", dir.display()))?;
    Ok(progress::with_steps("encoding chunks", |report| encoder.encode(b, samples, report))?)
}
