//! `uniaudio synth`: a model directory, or a whole bundle, of synthetic weights (the
//! fixtures' initialiser).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use uniaudio::bundle_presets::BundlePreset;
use uniaudio_lm::synth::InitSpec;
use uniaudio_lm::synth_dir::write_synthetic_model;
use uniaudio_lm::LmConfig;
use uniaudio_runtime::DType;

use crate::progress;

#[derive(Args)]
pub struct SynthArgs {
    /// config.json in the LM schema; its optional `init` block sets seed, scales and patches.
    #[arg(long, conflicts_with_all = ["bundle", "preset"], requires = "out")]
    config: Option<PathBuf>,
    /// New model directory to write (must not exist or be empty).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Stored dtype: f32, f16, bf16 (synthetic values have 8 significant bits, so bf16 and
    /// f16 are exact), q8 or q4 (8-bit or 4-bit blocks for the projections, bf16 for the rest).
    #[arg(long, default_value = "f32")]
    dtype: String,
    /// Write a whole bundle instead (LM, codec with encoder and decoder, tokenizer, manifest).
    #[arg(long, conflicts_with = "out")]
    bundle: Option<PathBuf>,
    /// Bundle size: tiny (tests and trials), small, or full (the released architecture).
    #[arg(long, default_value = "tiny", requires = "bundle")]
    preset: String,
    /// tokenizer.json for the bundle (default: a generated one covering every text id).
    #[arg(long, requires = "bundle")]
    tokenizer: Option<PathBuf>,
}

pub fn run(args: SynthArgs) -> Result<()> {
    if let Some(dir) = &args.bundle {
        let Some(preset) = BundlePreset::parse(&args.preset) else { bail!("--preset: expected tiny, small or full, got `{}`", args.preset) };
        let bar = progress::steps(0, "synthesizing");
        let result = uniaudio::synth_bundle::write_synthetic_bundle(dir, preset, args.tokenizer.as_deref(), &mut |stage, done, total| {
            bar.set_message(stage.to_string());
            bar.set_length(total);
            bar.set_position(done);
        });
        bar.finish_and_clear();
        result?;
        eprintln!("wrote bundle {} ({} preset)", dir.display(), preset.name());
        return Ok(());
    }
    let (Some(config_path), Some(out)) = (&args.config, &args.out) else { bail!("pass --config config.json --out DIR (or --bundle DIR [--preset tiny|small|full])") };
    let Some(dtype) = DType::parse(&args.dtype).filter(|d| d.is_float() || d.is_quantized()) else {
        bail!("--dtype: expected f32, f16, bf16, q8 or q4, got `{}`", args.dtype);
    };
    let text = std::fs::read_to_string(config_path).with_context(|| format!("reading {}", config_path.display()))?;
    let config = LmConfig::from_json(&text).map_err(|e| anyhow::anyhow!("{}: {e}", config_path.display()))?;
    let init = InitSpec::from_config_json(&text)
        .map_err(|e| anyhow::anyhow!("{}: {e}", config_path.display()))?
        .unwrap_or_else(|| InitSpec::with_seed(0));
    progress::with_bytes("synthesizing", |report| write_synthetic_model(&config, &init, dtype, out, report))?;
    eprintln!("wrote {}", out.display());
    Ok(())
}
