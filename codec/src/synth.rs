//! Writes a codec directory of synthetic weights (config.json, codec.safetensors,
//! sqcodec.safetensors) from a config with an `init` block.

use std::collections::BTreeMap;
use std::path::Path;

use uniaudio_runtime::dtype::f32_to_bytes;
use uniaudio_runtime::synth::InitSpec;
use uniaudio_runtime::weights::{SafetensorsWriter, TensorSpec};
use uniaudio_runtime::DType;

use crate::config::CodecConfig;
use crate::error::{CodecError, Result};
use crate::tensors::{codec_tensors, pos_embed_table, sq_tensors, TensorList, POS_EMBED};

pub const CODEC_FILE: &str = "codec.safetensors";
pub const SQ_FILE: &str = "sqcodec.safetensors";
pub const CONFIG_FILE: &str = "config.json";

/// The `init` block of `config`, parsed.
pub fn init_spec(config: &CodecConfig) -> Result<InitSpec> {
    let init = config.init.clone().ok_or_else(|| CodecError::Invalid("config has no `init` block to generate weights from".into()))?;
    let spec: InitSpec = serde_json::from_value(init).map_err(|e| CodecError::Invalid(format!("invalid init block: {e}")))?;
    if spec.version != 1 {
        return Err(CodecError::Invalid(format!("init.version {} is not supported (only 1)", spec.version)));
    }
    Ok(spec)
}

/// Writes the three files into the existing directory `dir` (each via a temp file + rename),
/// all tensors in f32.
pub fn write_synthetic_codec(config: &CodecConfig, dir: &Path) -> Result<()> {
    write_synthetic_codec_as(config, dir, DType::F32)
}

/// As `write_synthetic_codec`, with codec.safetensors (RVQ and flow) stored as `dtype`
/// (synthetic values are exact in bf16 and f16); the position table and the SQ decoder stay f32.
pub fn write_synthetic_codec_as(config: &CodecConfig, dir: &Path, dtype: DType) -> Result<()> {
    let init = init_spec(config)?;
    let pe_name = format!("{}{POS_EMBED}", config.flow.prefix);
    let codec_dtype = |name: &str| if name == pe_name { DType::F32 } else { dtype };
    write_file(&dir.join(CODEC_FILE), &codec_tensors(config), &init, codec_dtype, |name| {
        (name == pe_name).then(|| pos_embed_table(config.flow.max_positions, config.flow.inner_dim))
    })?;
    write_file(&dir.join(SQ_FILE), &sq_tensors(config), &init, |_| DType::F32, |_| None)?;
    let path = dir.join(CONFIG_FILE);
    let text = serde_json::to_string_pretty(config).expect("serialisable config");
    let tmp = dir.join(".config.json.tmp");
    std::fs::write(&tmp, text).map_err(|e| CodecError::Io { path: tmp.clone(), cause: e })?;
    std::fs::rename(&tmp, &path).map_err(|e| CodecError::Io { path, cause: e })
}

fn write_file(path: &Path, tensors: &TensorList, init: &InitSpec, dtype: impl Fn(&str) -> DType, computed: impl Fn(&str) -> Option<Vec<f32>>) -> Result<()> {
    let specs = tensors.iter().map(|(n, s)| TensorSpec::new(n.clone(), dtype(n), s)).collect();
    let metadata = BTreeMap::from([("format".to_string(), "pt".to_string())]);
    let mut writer = SafetensorsWriter::create(path, specs, &metadata)?;
    for (name, shape) in tensors {
        let n: usize = shape.iter().product();
        let values = match computed(name) {
            Some(v) => v,
            None => init.tensor(name, n).map_err(CodecError::Invalid)?,
        };
        writer.write_tensor(name, &f32_to_bytes(&values, dtype(name)))?;
    }
    writer.finish()?;
    Ok(())
}
