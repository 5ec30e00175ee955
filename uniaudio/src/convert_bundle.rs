//! `uniaudio convert --bundle`: the released files (LM checkpoint and its config, codec
//! checkpoint with SQ-Codec and the encoder's sub-models, tokenizer.json) to one bundle.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use uniaudio_codec::encode::convert::EncoderSources;
use uniaudio_lm::convert::ConvertOptions;
use uniaudio_lm::LmConfig;

use crate::bundle_layout::{manifest_of, CODEC_DIR, LM_DIR, TOKENIZER_FILE};

/// The LM's released files.
pub struct LmSource<'a> {
    /// The `torch.save` checkpoint.
    pub checkpoint: &'a Path,
    /// Its configuration (from llm_config.yaml or a config.json).
    pub config: &'a LmConfig,
    /// Output dtype (the codec's decoder tensors take it too) and shard size.
    pub options: ConvertOptions,
}

/// The codec's released files.
pub struct CodecSource<'a> {
    /// ReasoningCodec.checkpoint.
    pub checkpoint: &'a Path,
    /// sqcodec.pth (needed when the config has a decoder).
    pub sqcodec: Option<&'a Path>,
    /// The codec config.json value (decoder and/or encoder sections).
    pub config: &'a serde_json::Value,
    /// The encoder's sub-models the checkpoint lacks.
    pub encoder: EncoderSources,
}

/// Writes the bundle `out` (which must not exist or be empty; it appears only once
/// complete). `progress(stage, done, total)`.
pub fn convert_bundle(out: &Path, lm: LmSource, codec: Option<CodecSource>, tokenizer: &Path, progress: &mut dyn FnMut(&str, u64, u64)) -> Result<()> {
    // The tokenizer first: a bad one fails before the long conversions.
    let tokenizer_text = std::fs::read_to_string(tokenizer).with_context(|| format!("{}: cannot read", tokenizer.display()))?;
    uniaudio_lm::tokenizer::TextTokenizer::from_json(&tokenizer_text).map_err(|e| anyhow::anyhow!("{}: {e}", tokenizer.display()))?;
    uniaudio_runtime::out_dir::write_atomically(out, |root| -> Result<()> {
        let dtype = lm.options.dtype;
        let options = ConvertOptions { tokenizer: None::<PathBuf>, ..lm.options };
        uniaudio_lm::convert::convert(lm.checkpoint, lm.config, &root.join(LM_DIR), &options, &mut |d, t| progress("LM", d, t))
            .with_context(|| format!("converting {}", lm.checkpoint.display()))?;
        if let Some(c) = codec {
            let dir = root.join(CODEC_DIR);
            std::fs::create_dir(&dir).with_context(|| format!("{}: cannot create", dir.display()))?;
            uniaudio_codec::convert::convert_as(c.checkpoint, c.sqcodec, c.config, &c.encoder, dtype, &dir, &mut |d, t| progress("codec tensors", d, t))
                .with_context(|| format!("converting {}", c.checkpoint.display()))?;
        }
        std::fs::write(root.join(TOKENIZER_FILE), &tokenizer_text).context("writing tokenizer.json")?;
        manifest_of(root, &mut |d, t| progress("hashing", d, t))?.write(root)
    })
}
