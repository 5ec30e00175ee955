//! `uniaudio synth`: a model directory of synthetic weights (the fixtures' initialiser).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use uniaudio_lm::synth::InitSpec;
use uniaudio_lm::synth_dir::write_synthetic_model;
use uniaudio_lm::LmConfig;
use uniaudio_runtime::DType;

use crate::progress;

#[derive(Args)]
pub struct SynthArgs {
    /// config.json in the LM schema; its optional `init` block sets seed, scales and patches.
    #[arg(long)]
    config: PathBuf,
    /// New model directory to write (must not exist or be empty).
    #[arg(long)]
    out: PathBuf,
    /// Stored dtype. Synthetic values have 8 significant bits, so bf16 and f16 are exact.
    #[arg(long, default_value = "f32")]
    dtype: String,
}

pub fn run(args: SynthArgs) -> Result<()> {
    let Some(dtype) = DType::parse(&args.dtype).filter(|d| d.is_float()) else {
        bail!("--dtype: expected f32, f16 or bf16, got `{}`", args.dtype);
    };
    let text = std::fs::read_to_string(&args.config).with_context(|| format!("reading {}", args.config.display()))?;
    let config = LmConfig::from_json(&text).map_err(|e| anyhow::anyhow!("{}: {e}", args.config.display()))?;
    let init = InitSpec::from_config_json(&text)
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.config.display()))?
        .unwrap_or_else(|| InitSpec::with_seed(0));
    progress::with_bytes("synthesizing", |report| write_synthetic_model(&config, &init, dtype, &args.out, report))?;
    eprintln!("wrote {}", args.out.display());
    Ok(())
}
