//! Writes a model directory of synthetic weights (`uniaudio synth`): config.json plus
//! model.safetensors, generated tensor by tensor so memory stays at one tensor.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use uniaudio_runtime::dtype::f32_to_bytes;
use uniaudio_runtime::weights::{SafetensorsWriter, TensorSpec};
use uniaudio_runtime::DType;

use crate::config::LmConfig;
use crate::error::{LmError, Result};
use crate::stored_dtype::{stored_dtype, stored_shape, to_stored_order};
use crate::synth::{model_tensors, InitSpec};

/// Writes `config` with weights from `init` to the new directory `out` (which must not
/// exist or be empty). Files appear under `out` only once complete.
/// `progress(done_bytes, total_bytes)` is called after each tensor.
pub fn write_synthetic_model(config: &LmConfig, init: &InitSpec, dtype: DType, out: &Path, progress: &mut dyn FnMut(u64, u64)) -> Result<PathBuf> {
    // Fail before generating anything if the destination is taken.
    uniaudio_runtime::out_dir::check_empty(out)?;
    let tensors = model_tensors(config);
    let names: Vec<String> = tensors.iter().map(|(n, _)| n.clone()).collect();
    let unknown = init.unknown_patch_targets(&names);
    if !unknown.is_empty() {
        return Err(LmError::Invalid(format!("init.patches name tensors this config does not have: {}", unknown.join(", "))));
    }
    uniaudio_runtime::out_dir::write_atomically(out, |tmp| write_into(config, init, dtype, tmp, &tensors, progress))?;
    Ok(out.to_path_buf())
}

fn write_into(config: &LmConfig, init: &InitSpec, dtype: DType, dir: &Path, tensors: &[(String, Vec<usize>)], progress: &mut dyn FnMut(u64, u64)) -> Result<()> {
    let mut json = serde_json::to_value(config).expect("serialisable config");
    json["init"] = serde_json::json!({"version": 1, "seed": init.seed, "scale": init.scale, "unit": init.unit,
        "patches": init.patches.iter().map(|p| serde_json::json!({"tensor": p.tensor, "offset": p.offset, "values": p.values})).collect::<Vec<_>>()});
    let config_path = dir.join("config.json");
    std::fs::write(&config_path, serde_json::to_string_pretty(&json).expect("json")).map_err(|e| LmError::Io { path: config_path, cause: e })?;
    let dtypes: Vec<DType> = tensors.iter().map(|(n, s)| stored_dtype(n, s, dtype)).collect();
    let specs: Vec<TensorSpec> = tensors.iter().zip(&dtypes).map(|((n, s), &d)| TensorSpec::new(n.clone(), d, &stored_shape(n, s, d))).collect();
    let total: u64 = specs.iter().map(|s| s.size_bytes() as u64).sum();
    let metadata = BTreeMap::from([("format".to_string(), "pt".to_string())]);
    let mut writer = SafetensorsWriter::create(dir.join("model.safetensors"), specs, &metadata)?;
    let mut done = 0u64;
    for ((name, shape), &dtype) in tensors.iter().zip(&dtypes) {
        let n: usize = shape.iter().product();
        let values = to_stored_order(name, shape, dtype, init.tensor(name, n).map_err(LmError::Invalid)?);
        let bytes = f32_to_bytes(&values, dtype);
        writer.write_tensor(name, &bytes)?;
        done += bytes.len() as u64;
        progress(done, total);
    }
    writer.finish()?;
    Ok(())
}
