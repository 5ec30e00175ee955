//! `uniaudio synth --bundle`: a complete bundle of synthetic weights (LM, codec with
//! encoder and decoder, tokenizer, manifest), so every command can be tried offline.

use std::path::Path;

use anyhow::{Context, Result};
use uniaudio_lm::synth::InitSpec;
use uniaudio_lm::synth_dir::write_synthetic_model;
use uniaudio_lm::LmConfig;
use uniaudio_runtime::DType;

use crate::bundle_layout::{manifest_of, CODEC_DIR, LM_DIR, TOKENIZER_FILE};
use crate::bundle_presets::BundlePreset;

/// Writes the bundle `out` (which must not exist or be empty; it appears only once
/// complete). `tokenizer`: a tokenizer.json to copy, else a generated one that covers every
/// text id. `progress(stage, done_bytes, total_bytes)`.
pub fn write_synthetic_bundle(out: &Path, preset: BundlePreset, tokenizer: Option<&Path>, progress: &mut dyn FnMut(&str, u64, u64)) -> Result<()> {
    let tokenizer_json = match tokenizer {
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| format!("{}: cannot read", p.display()))?;
            uniaudio_lm::tokenizer::TextTokenizer::from_json(&text).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
            text
        }
        None => uniaudio_lm::synthetic_tokenizer::synthetic_tokenizer_json(),
    };
    let lm_value = preset.lm_config();
    let lm_config: LmConfig = serde_json::from_value(lm_value.clone()).context("preset LM config")?;
    let init: InitSpec = serde_json::from_value(lm_value["init"].clone()).context("preset LM init block")?;
    let codec_value = preset.codec_config();
    uniaudio_runtime::out_dir::write_atomically(out, |root| -> Result<()> {
        write_synthetic_model(&lm_config, &init, DType::BF16, &root.join(LM_DIR), &mut |d, t| progress("LM weights", d, t))?;
        let codec = root.join(CODEC_DIR);
        std::fs::create_dir(&codec).with_context(|| format!("{}: cannot create", codec.display()))?;
        progress("codec weights", 0, 0);
        uniaudio_codec::synth::write_synthetic(&codec_value, &codec, DType::BF16)?;
        std::fs::write(root.join(TOKENIZER_FILE), tokenizer_json).context("writing tokenizer.json")?;
        manifest_of(root, &mut |d, t| progress("hashing", d, t))?.write(root)
    })
}
