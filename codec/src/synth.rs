//! Writes a codec directory of synthetic weights (config.json, codec.safetensors,
//! sqcodec.safetensors) from a config with an `init` block.

use std::collections::BTreeMap;
use std::path::Path;

use uniaudio_runtime::dtype::f32_to_bytes;
use uniaudio_runtime::synth::InitSpec;
use uniaudio_runtime::weights::{SafetensorsWriter, TensorSpec};
use uniaudio_runtime::DType;

use crate::config::CodecConfig;
use crate::encode::encoder_tensors;
use crate::error::{CodecError, Result};
use crate::stored_dtype::stored_dtype;
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
/// (synthetic values are exact in bf16 and f16; q8_0 quantizes the flow's linear weights,
/// see `stored_dtype`); the position table and the SQ decoder stay f32.
pub fn write_synthetic_codec_as(config: &CodecConfig, dir: &Path, dtype: DType) -> Result<()> {
    let value = serde_json::to_value(config).expect("serialisable config");
    write_synthetic(&value, dir, dtype)
}

/// Writes a codec directory from a config.json value holding the decoder's sections, the
/// encoder's, or both, and an `init` block: codec.safetensors gets every tensor of the parts
/// present (shared codebooks once), sqcodec.safetensors the SQ decoder when there is one, and
/// config.json the value as given.
pub fn write_synthetic(config: &serde_json::Value, dir: &Path, dtype: DType) -> Result<()> {
    let init: InitSpec = match config.get("init") {
        Some(v) => serde_json::from_value(v.clone()).map_err(|e| CodecError::Invalid(format!("invalid init block: {e}")))?,
        None => return Err(CodecError::Invalid("config has no `init` block to generate weights from".into())),
    };
    if init.version != 1 {
        return Err(CodecError::Invalid(format!("init.version {} is not supported (only 1)", init.version)));
    }
    let (decoder, encoder) = crate::config::codec_parts(config)?;
    let mut tensors = decoder.as_ref().map(codec_tensors).unwrap_or_default();
    for (name, shape) in encoder.as_ref().map(encoder_tensors).unwrap_or_default() {
        match tensors.iter().find(|(n, _)| *n == name) {
            Some((_, s)) if *s != shape => return Err(CodecError::Invalid(format!("{name}: the decoder wants {s:?}, the encoder {shape:?}"))),
            Some(_) => {}
            None => tensors.push((name, shape)),
        }
    }
    let pe_name = decoder.as_ref().map(|c| format!("{}{POS_EMBED}", c.flow.prefix));
    let is_pe = |name: &str| pe_name.as_deref() == Some(name);
    let flow_prefix = decoder.as_ref().map(|c| c.flow.prefix.as_str());
    let shapes: BTreeMap<&str, &[usize]> = tensors.iter().map(|(n, s)| (n.as_str(), s.as_slice())).collect();
    let codec_dtype = |name: &str| if is_pe(name) { DType::F32 } else { stored_dtype(name, shapes[name], dtype, flow_prefix) };
    write_file(&dir.join(CODEC_FILE), &tensors, &init, codec_dtype, |name| {
        let c = decoder.as_ref()?;
        is_pe(name).then(|| pos_embed_table(c.flow.max_positions, c.flow.inner_dim))
    })?;
    if let Some(c) = &decoder {
        write_file(&dir.join(SQ_FILE), &sq_tensors(c), &init, |_| DType::F32, |_| None)?;
    }
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
