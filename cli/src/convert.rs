//! `uniaudio convert`: a released torch checkpoint to a model directory.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use uniaudio::convert_bundle::{convert_bundle, CodecSource, LmSource};
use uniaudio_codec::encode::convert::EncoderSources;
use uniaudio_lm::convert::{convert, ConvertOptions};
use uniaudio_lm::llm_yaml::LlmYaml;
use uniaudio_lm::LmConfig;
use uniaudio_runtime::DType;

use crate::progress;

#[derive(Args)]
pub struct ConvertArgs {
    /// The `torch.save` checkpoint (e.g. llm_ep3.checkpoint); only its `model` entry is read.
    #[arg(long)]
    checkpoint: PathBuf,
    /// The released llm_config.yaml: special ids, and stack presets by llm_name / local_model.
    #[arg(long)]
    llm_config: Option<PathBuf>,
    /// A config.json in the LM schema, for custom or test models (overrides the presets).
    #[arg(long)]
    config: Option<PathBuf>,
    /// New model directory (must not exist or be empty).
    #[arg(long, required_unless_present = "bundle")]
    out: Option<PathBuf>,
    /// Write one bundle instead (lm/, codec/, tokenizer.json, uniaudio.json): --checkpoint and
    /// --llm-config for the LM, --codec-checkpoint and --codec-config (with --sqcodec,
    /// --whisper, --wavlm, --music-ssl as the codec needs) for the codec, and --tokenizer.
    #[arg(long, conflicts_with_all = ["out", "codec"], requires = "tokenizer")]
    bundle: Option<PathBuf>,
    /// ReasoningCodec.checkpoint (with --bundle).
    #[arg(long, requires = "bundle")]
    codec_checkpoint: Option<PathBuf>,
    /// The codec's config.json (with --bundle).
    #[arg(long, requires = "codec_checkpoint")]
    codec_config: Option<PathBuf>,
    /// Stored dtype of the output: bf16, f16, f32, q8 or q4 (8-bit or 4-bit blocks for the LM's
    /// projections, audio heads included, and the codec flow's linears, bf16 for embeddings,
    /// norms and the codec's other decoder tensors); default: the checkpoint's.
    #[arg(long)]
    dtype: Option<String>,
    /// Copy this tokenizer.json into the model directory.
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Maximum shard size in MiB.
    #[arg(long, default_value_t = 2048)]
    shard_size_mib: usize,
    /// Convert the codec instead: --checkpoint is ReasoningCodec.checkpoint, --config the codec
    /// config.json; its decoder sections take the decode subset (and need --sqcodec), its
    /// encoder sections the encoder (from the checkpoint, else --whisper, --wavlm, --music-ssl).
    #[arg(long)]
    codec: bool,
    /// sqcodec.pth (with --codec, for the decoder).
    #[arg(long)]
    sqcodec: Option<PathBuf>,
    /// whisper-medium/ Hugging Face folder (with --codec, where the checkpoint lacks Whisper).
    #[arg(long)]
    whisper: Option<PathBuf>,
    /// wavlm/ Hugging Face folder (with --codec, where the checkpoint lacks WavLM).
    #[arg(long)]
    wavlm: Option<PathBuf>,
    /// music_ssl.pt fairseq checkpoint (with --codec, where the checkpoint lacks MusicFM).
    #[arg(long)]
    music_ssl: Option<PathBuf>,
}

pub fn run(args: ConvertArgs) -> Result<()> {
    if args.codec {
        return run_codec(&args);
    }
    let out = match (&args.bundle, &args.out) {
        (Some(bundle), _) => return run_bundle(&args, bundle),
        (None, Some(out)) => out,
        (None, None) => bail!("pass --out DIR (or --bundle DIR)"),
    };
    let (config, opts) = lm_source(&args)?;
    progress::with_bytes("converting", |report| convert(&args.checkpoint, &config, out, &opts, report))?;
    eprintln!("wrote {}", out.display());
    Ok(())
}

/// The LM's config (from --config, or the presets llm_config.yaml names) and conversion options.
fn lm_source(args: &ConvertArgs) -> Result<(LmConfig, ConvertOptions)> {
    let dtype = output_dtype(args)?;
    if args.shard_size_mib == 0 {
        bail!("--shard-size-mib must be at least 1");
    }
    let config = match (&args.config, &args.llm_config) {
        (Some(path), yaml) => {
            let config = LmConfig::from_file(path)?;
            if let Some(y) = yaml {
                check_ids_agree(&config, &LlmYaml::from_file(y)?, y)?;
            }
            config
        }
        (None, Some(y)) => LlmYaml::from_file(y)?.to_config(y)?,
        (None, None) => bail!("pass --llm-config llm_config.yaml (or --config config.json for a custom model)"),
    };
    if let Some(t) = &args.tokenizer {
        // Fail before the long conversion if the tokenizer is unusable.
        uniaudio_lm::tokenizer::TextTokenizer::from_file(t)?;
    }
    let opts = ConvertOptions { dtype, shard_bytes: args.shard_size_mib << 20, tokenizer: args.tokenizer.clone() };
    Ok((config, opts))
}

fn read_codec_config(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let config: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("{}: invalid JSON", path.display()))?;
    // Checked here, so that a bad field is reported against this file, before any weights are read.
    uniaudio_codec::config::codec_parts(&config).with_context(|| path.display().to_string())?;
    Ok(config)
}

fn encoder_sources(args: &ConvertArgs) -> EncoderSources {
    EncoderSources { whisper: args.whisper.clone(), wavlm: args.wavlm.clone(), music_ssl: args.music_ssl.clone() }
}

fn run_bundle(args: &ConvertArgs, bundle: &Path) -> Result<()> {
    let (config, options) = lm_source(args)?;
    let tokenizer = args.tokenizer.as_deref().context("--bundle needs --tokenizer tokenizer.json")?;
    let codec_config = match (&args.codec_checkpoint, &args.codec_config) {
        (Some(_), None) => bail!("--codec-checkpoint needs --codec-config with the codec's config.json"),
        (_, Some(path)) => Some(read_codec_config(path)?),
        (None, None) => None,
    };
    if let Some(c) = &codec_config {
        let has_decoder = uniaudio_codec::config::DECODER_SECTIONS.iter().any(|s| c.get(s).is_some());
        if has_decoder && args.sqcodec.is_none() {
            bail!("the codec config has a decoder: pass --sqcodec sqcodec.pth");
        }
    } else {
        eprintln!("note: no --codec-checkpoint: the bundle holds the LM and tokenizer only; every task also needs the codec (pass --codec DIR when running)");
    }
    let codec = match (&args.codec_checkpoint, &codec_config) {
        (Some(checkpoint), Some(config)) => Some(CodecSource { checkpoint, sqcodec: args.sqcodec.as_deref(), config, encoder: encoder_sources(args) }),
        _ => None,
    };
    let lm = LmSource { checkpoint: &args.checkpoint, config: &config, options };
    let bar = progress::steps(0, "converting");
    let result = convert_bundle(bundle, lm, codec, tokenizer, &mut |stage, done, total| {
        bar.set_message(stage.to_string());
        bar.set_length(total);
        bar.set_position(done);
    });
    bar.finish_and_clear();
    result?;
    eprintln!("wrote bundle {}", bundle.display());
    Ok(())
}

fn check_ids_agree(c: &LmConfig, y: &LlmYaml, path: &std::path::Path) -> Result<()> {
    let pairs = [
        ("audio_reason_card", c.ids.audio_reason_card as u64, y.ids.audio_reason_card as u64),
        ("audio_semantic_card", c.ids.audio_semantic_card as u64, y.ids.audio_semantic_card as u64),
        ("reason_bos", c.ids.reason_bos as u64, y.ids.reason_bos as u64),
        ("reason_eos", c.ids.reason_eos as u64, y.ids.reason_eos as u64),
        ("semantic_bos", c.ids.semantic_bos as u64, y.ids.semantic_bos as u64),
        ("semantic_eos", c.ids.semantic_eos as u64, y.ids.semantic_eos as u64),
    ];
    for (name, a, b) in pairs {
        if a != b {
            bail!("{name} is {a} in --config but {b} in {}", path.display());
        }
    }
    Ok(())
}

/// `--dtype`, parsed (None: keep the checkpoint's).
fn output_dtype(args: &ConvertArgs) -> Result<Option<DType>> {
    match &args.dtype {
        None => Ok(None),
        Some(s) => match DType::parse(s).filter(|d| d.is_float() || d.is_quantized()) {
            Some(d) => Ok(Some(d)),
            None => bail!("--dtype: expected bf16, f16, f32, q8 or q4, got `{s}`"),
        },
    }
}

fn run_codec(args: &ConvertArgs) -> Result<()> {
    let dtype = output_dtype(args)?;
    let Some(config_path) = &args.config else { bail!("--codec needs --config with the codec's config.json") };
    let Some(out) = &args.out else { bail!("--codec needs --out DIR") };
    let config = read_codec_config(config_path)?;
    let has_decoder = uniaudio_codec::config::DECODER_SECTIONS.iter().any(|s| config.get(s).is_some());
    if has_decoder && args.sqcodec.is_none() {
        bail!("--codec with a decoder config needs --sqcodec sqcodec.pth");
    }
    let sources = encoder_sources(args);
    let bar = progress::steps(0, "converting codec tensors");
    let result = uniaudio_runtime::out_dir::write_atomically(out, |dir| {
        uniaudio_codec::convert::convert_as(&args.checkpoint, args.sqcodec.as_deref(), &config, &sources, dtype, dir, &mut |done, total| {
            bar.set_length(total);
            bar.set_position(done);
        })
    });
    bar.finish_and_clear();
    result?;
    eprintln!("wrote {}", out.display());
    Ok(())
}
