//! The bundle's layout (`lm/`, `codec/`, `tokenizer.json`, `uniaudio.json`) and the
//! manifest that describes a directory laid out so.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{Context, Result};
use uniaudio_runtime::weights::ModelWeights;

use crate::manifest::{describe, Manifest, PartEntry};

/// The LM's directory in a bundle.
pub const LM_DIR: &str = "lm";
/// The codec's directory in a bundle.
pub const CODEC_DIR: &str = "codec";
/// The tokenizer's file in a bundle.
pub const TOKENIZER_FILE: &str = "tokenizer.json";

/// Hashes every file of the parts present under `root` and returns their manifest.
/// `progress(done_bytes, total_bytes)`.
pub fn manifest_of(root: &Path, progress: &mut dyn FnMut(u64, u64)) -> Result<Manifest> {
    let total = dir_bytes(root);
    let mut done = 0u64;
    let mut manifest = Manifest::new();
    let mut hash = |rel: &str| -> Result<Vec<crate::manifest::FileEntry>> {
        let base = done;
        let files = describe(root, rel, &mut |d| progress(base + d, total))?;
        done += files.iter().map(|f| f.bytes).sum::<u64>();
        Ok(files)
    };
    if root.join(LM_DIR).is_dir() {
        let files = hash(LM_DIR)?;
        let dtype = Some(weight_dtypes(&ModelWeights::open(root.join(LM_DIR))?));
        let what = "UniAudio 2.0 unified LM (understanding expert, backbone, generation expert, depth decoder)".into();
        manifest.parts.insert("lm".into(), PartEntry { path: LM_DIR.into(), what, dtype, features: vec![], files });
    }
    if root.join(CODEC_DIR).is_dir() {
        let config_path = root.join(CODEC_DIR).join(uniaudio_codec::synth::CONFIG_FILE);
        let text = std::fs::read_to_string(&config_path).with_context(|| format!("{}: cannot read", config_path.display()))?;
        let value: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("{}: invalid JSON", config_path.display()))?;
        let (decoder, encoder) = uniaudio_codec::config::codec_parts(&value).with_context(|| config_path.display().to_string())?;
        let mut features = Vec::new();
        if decoder.is_some() {
            features.push("decoder".to_string());
        }
        if encoder.is_some() {
            features.push("encoder".to_string());
        }
        let files = hash(CODEC_DIR)?;
        let weights = ModelWeights::from_file(&root.join(CODEC_DIR).join(uniaudio_codec::synth::CODEC_FILE))?;
        let what = "ReasoningCodec: encoder (audio -> reasoning and reconstruction tokens) and/or decoder (reconstruction tokens -> 24 kHz audio)".into();
        manifest.parts.insert("codec".into(), PartEntry { path: CODEC_DIR.into(), what, dtype: Some(weight_dtypes(&weights)), features, files });
    }
    if root.join(TOKENIZER_FILE).is_file() {
        let files = hash(TOKENIZER_FILE)?;
        let what = "Llama 3.2 text tokenizer (Hugging Face tokenizer.json)".into();
        manifest.parts.insert("tokenizer".into(), PartEntry { path: TOKENIZER_FILE.into(), what, dtype: None, features: vec![], files });
    }
    Ok(manifest)
}

/// The stored dtypes of a weight set, e.g. `bf16` or `bf16+f32`.
fn weight_dtypes(w: &ModelWeights) -> String {
    let set: BTreeSet<&str> = w.names().filter_map(|n| w.get(n).ok()).map(|v| v.dtype().name()).collect();
    set.into_iter().collect::<Vec<_>>().join("+")
}

fn dir_bytes(p: &Path) -> u64 {
    match std::fs::metadata(p) {
        Ok(m) if m.is_file() => m.len(),
        Ok(m) if m.is_dir() => std::fs::read_dir(p).map(|d| d.filter_map(|e| e.ok()).map(|e| dir_bytes(&e.path())).sum()).unwrap_or(0),
        _ => 0,
    }
}
