//! `uniaudio codec`: decode reconstruction tokens to a WAV file; synthesize a codec directory.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use serde_json::Value;
use uniaudio_codec::{Codec, DecodeOptions, Decoded, Noise, StitchMode};
use uniaudio_runtime::Backend;

use crate::backend::{BackendChoice, Opened};
use crate::progress;
use crate::wav::WavTarget;

#[derive(Subcommand)]
pub enum CodecCommand {
    /// Reconstruction tokens (the `reconstruction` field of `uniaudio generate`) to a 24 kHz WAV.
    Decode(DecodeArgs),
    /// Write a codec directory of synthetic weights (decoder, encoder or both) from a config.json with an `init` block.
    Synth(CodecSynthArgs),
    /// An audio file to reasoning (5 Hz) and reconstruction (12.5 Hz) tokens as TOKENS.json.
    Encode(crate::codec_encode::EncodeArgs),
}

#[derive(Args)]
pub struct DecodeArgs {
    /// Codec directory: config.json, codec.safetensors, sqcodec.safetensors.
    #[arg(long)]
    pub codec: Option<PathBuf>,
    /// A bundle whose codec to use (default: $UNIAUDIO_MODEL).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// JSON with `reconstruction` ([T][8] frames, as `uniaudio generate` prints) or `tokens` ([8][T] rows).
    #[arg(long)]
    pub tokens: PathBuf,
    /// Output WAV file.
    #[arg(long)]
    pub out: PathBuf,
    /// Euler steps (the reference CLI's default is 50).
    #[arg(long, default_value_t = 50)]
    pub steps: usize,
    /// Seed of the initial noise when --noise is not given.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// The reference's Gaussian draws (safetensors, tensors named by draw index).
    #[arg(long)]
    pub noise: Option<PathBuf>,
    /// Window stitching: `reference` reproduces upstream; `fixed` aligns windows after the first.
    #[arg(long, default_value = "reference")]
    pub mode: String,
    #[arg(long, value_enum, default_value = "auto")]
    pub backend: BackendChoice,
    /// Write 16-bit PCM instead of 32-bit float.
    #[arg(long)]
    pub pcm16: bool,
    /// Replace an existing output file.
    #[arg(long)]
    pub force: bool,
}

#[derive(Args)]
pub struct CodecSynthArgs {
    /// Codec config.json (the fixture schema) with an `init` block.
    #[arg(long)]
    config: PathBuf,
    /// New directory to write (must not exist or be empty).
    #[arg(long)]
    out: PathBuf,
}

pub fn run(cmd: CodecCommand) -> Result<()> {
    match cmd {
        CodecCommand::Decode(args) => decode(args),
        CodecCommand::Synth(args) => synth(args),
        CodecCommand::Encode(args) => crate::codec_encode::run(args),
    }
}

/// Token rows [8][T] from a TOKENS.json value.
pub fn parse_tokens(v: &Value, path: &Path) -> Result<Vec<Vec<u32>>> {
    let ids = |row: &Value, what: String| -> Result<Vec<u32>> {
        row.as_array()
            .with_context(|| format!("{}: {what} is not an array", path.display()))?
            .iter()
            .enumerate()
            .map(|(i, x)| {
                x.as_u64().filter(|&n| n <= u32::MAX as u64).map(|n| n as u32).with_context(|| format!("{}: {what}[{i}] is not a token id: {x}", path.display()))
            })
            .collect()
    };
    if let Some(frames) = v.get("reconstruction") {
        let frames = frames.as_array().with_context(|| format!("{}: `reconstruction` is not an array of frames", path.display()))?;
        let frames: Vec<Vec<u32>> = frames.iter().enumerate().map(|(t, f)| ids(f, format!("reconstruction[{t}]"))).collect::<Result<_>>()?;
        if frames.is_empty() {
            bail!("{}: `reconstruction` holds no frames; there is nothing to decode", path.display());
        }
        let width = frames[0].len();
        if width == 0 {
            bail!("{}: reconstruction[0] holds no token ids; a frame has one per codebook", path.display());
        }
        if let Some(t) = frames.iter().position(|f| f.len() != width) {
            bail!("{}: reconstruction[{t}] has {} ids, frame 0 has {width}", path.display(), frames[t].len());
        }
        return Ok((0..width).map(|r| frames.iter().map(|f| f[r]).collect()).collect());
    }
    if let Some(rows) = v.get("tokens") {
        let rows = rows.as_array().with_context(|| format!("{}: `tokens` is not an array of rows", path.display()))?;
        return rows.iter().enumerate().map(|(r, row)| ids(row, format!("tokens[{r}]"))).collect();
    }
    bail!("{}: expected an object with `reconstruction` ([T][8] frames) or `tokens` ([8][T] rows)", path.display())
}

fn decode(args: DecodeArgs) -> Result<()> {
    let mode: StitchMode = args.mode.parse().map_err(|e: String| anyhow::anyhow!("--mode: {e}"))?;
    if args.steps == 0 {
        bail!("--steps must be >= 1");
    }
    let text = std::fs::read_to_string(&args.tokens).with_context(|| format!("reading {}", args.tokens.display()))?;
    let value: Value = serde_json::from_str(&text).with_context(|| format!("{}: invalid JSON", args.tokens.display()))?;
    let tokens = parse_tokens(&value, &args.tokens)?;
    let paths = uniaudio::ModelPaths::resolve(args.model.as_deref(), args.codec.as_deref(), None)?;
    let codec = paths.require(uniaudio::Part::Decoder, "codec decode")?;
    let target = WavTarget::prepare(&args.out, args.force)?;
    let noise = match &args.noise {
        Some(p) => Noise::from_file(p).with_context(|| format!("--noise {}", p.display()))?,
        None => Noise::Seeded(args.seed),
    };
    let opts = DecodeOptions { steps: args.steps, mode, noise };
    let opened = args.backend.open()?;
    eprintln!("backend: {}", opened.describe());
    let (audio, rate) = match &opened {
        Opened::Cpu(b) => decode_on(b, codec, &tokens, &opts)?,
        Opened::Wgpu(b) => decode_on(b, codec, &tokens, &opts)?,
        Opened::Cuda(b) => decode_on(b, codec, &tokens, &opts)?,
    };
    target.write(&audio, rate, args.pcm16)?;
    eprintln!("wrote {} ({} samples, {:.2} s)", args.out.display(), audio.len(), audio.len() as f64 / rate as f64);
    Ok(())
}

fn decode_on<B: Backend>(b: &B, dir: &Path, tokens: &[Vec<u32>], opts: &DecodeOptions) -> Result<(Vec<f32>, u32)> {
    let codec = Codec::load(b, dir).with_context(|| format!("loading codec {}", dir.display()))?;
    Ok((decode_with_progress(&codec, b, tokens, opts)?.audio, codec.config.sample_rate))
}

/// `codec.decode` with a progress bar over windows x Euler steps.
pub fn decode_with_progress<B: Backend>(codec: &Codec<B>, b: &B, tokens: &[Vec<u32>], opts: &DecodeOptions) -> uniaudio_codec::Result<Decoded> {
    let bar = progress::steps(0, "decoding audio");
    let out = codec.decode(b, tokens, opts, &mut |w, n, s, steps| {
        bar.set_length((n * steps) as u64);
        bar.set_position((w * steps + s) as u64);
    });
    bar.finish_and_clear();
    out
}

fn synth(args: CodecSynthArgs) -> Result<()> {
    let text = std::fs::read_to_string(&args.config).with_context(|| format!("reading {}", args.config.display()))?;
    let config: Value = serde_json::from_str(&text).with_context(|| format!("{}: invalid JSON", args.config.display()))?;
    let write = |dir: &Path| uniaudio_codec::synth::write_synthetic(&config, dir, uniaudio_runtime::DType::F32);
    uniaudio_runtime::out_dir::write_atomically(&args.out, write).with_context(|| format!("{}", args.config.display()))?;
    eprintln!("wrote {}", args.out.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<Vec<u32>>> {
        parse_tokens(&serde_json::from_str(text).unwrap(), Path::new("t.json"))
    }

    #[test]
    fn frames_become_rows_and_bad_token_files_are_named() {
        assert_eq!(parse(r#"{"reconstruction": [[1, 2], [3, 4], [5, 6]]}"#).unwrap(), [vec![1, 3, 5], vec![2, 4, 6]]);
        assert_eq!(parse(r#"{"tokens": [[1, 3], [2, 4]]}"#).unwrap(), [vec![1, 3], vec![2, 4]]);
        for (text, want) in [
            (r#"{"reconstruction": []}"#, "holds no frames"),
            (r#"{"reconstruction": [[]]}"#, "holds no token ids"),
            (r#"{"reconstruction": [[1, 2], [3]]}"#, "reconstruction[1] has 1 ids"),
            (r#"{"reconstruction": [[1, -2]]}"#, "reconstruction[0][1] is not a token id"),
            (r#"[[1, 2]]"#, "expected an object"),
        ] {
            let e = format!("{:#}", parse(text).unwrap_err());
            assert!(e.starts_with("t.json: ") && e.contains(want), "{text}: {e}");
        }
    }
}
