//! Released codec checkpoints (`ReasoningCodec.checkpoint`, `sqcodec.pth`) to a codec
//! directory, keeping only the decode subset. Read with the runtime's restricted torch
//! reader: nothing in the files is executed, and entries outside the subset (encoders,
//! EMA buffers, integer counters) are never inspected.

use std::collections::BTreeMap;
use std::path::Path;

use uniaudio_runtime::dtype::f32_to_bytes;
use uniaudio_runtime::torch::{TorchCheckpoint, TorchTensor};
use uniaudio_runtime::weights::{SafetensorsWriter, TensorSpec};
use uniaudio_runtime::DType;

use crate::config::CodecConfig;
use crate::error::{CodecError, Result};
use crate::synth::{CODEC_FILE, CONFIG_FILE, SQ_FILE};
use crate::tensors::{codec_tensors, pos_embed_table, sq_tensors, TensorList, POS_EMBED};

/// Writes codec.safetensors, sqcodec.safetensors and config.json into `dir` (existing, empty).
/// `progress(done, total)` counts tensors.
pub fn convert_codec(checkpoint: &Path, sqcodec: &Path, config: &CodecConfig, dir: &Path, progress: &mut dyn FnMut(u64, u64)) -> Result<()> {
    let codec_ckpt = TorchCheckpoint::open(checkpoint)?;
    let sq_ckpt = TorchCheckpoint::open(sqcodec)?;
    let codec_list = codec_tensors(config);
    let sq_list = sq_tensors(config);
    let total = (codec_list.len() + sq_list.len()) as u64;
    let pe_name = format!("{}{POS_EMBED}", config.flow.prefix);
    let codec_plan = plan(&codec_ckpt, "model", &codec_list, &[pe_name.as_str()])?;
    let sq_plan = plan(&sq_ckpt, "codec_model", &sq_list, &[])?;
    let mut done = 0u64;
    let pe = || pos_embed_table(config.flow.max_positions, config.flow.inner_dim);
    write(&codec_ckpt, &codec_list, &codec_plan, &dir.join(CODEC_FILE), &pe_name, &pe, &mut || {
        done += 1;
        progress(done, total)
    })?;
    write(&sq_ckpt, &sq_list, &sq_plan, &dir.join(SQ_FILE), "", &pe, &mut || {
        done += 1;
        progress(done, total)
    })?;
    let mut config = config.clone();
    config.init = None;
    let path = dir.join(CONFIG_FILE);
    std::fs::write(&path, serde_json::to_string_pretty(&config).expect("serialisable config")).map_err(|e| CodecError::Io { path, cause: e })
}

/// The checkpoint tensor (if any) for each expected name; `optional` names may be absent.
fn plan(ckpt: &TorchCheckpoint, key: &str, expected: &TensorList, optional: &[&str]) -> Result<BTreeMap<String, TorchTensor>> {
    let want: BTreeMap<&str, &[usize]> = expected.iter().map(|(n, s)| (n.as_str(), s.as_slice())).collect();
    let strip = |n: &str| n.strip_prefix("module.").unwrap_or(n).to_string();
    let found = ckpt.state_dict_where(key, &|n| want.contains_key(strip(n).as_str()))?;
    let mut by_name = BTreeMap::new();
    let mut problems = Vec::new();
    for t in found {
        let name = strip(&t.name);
        let shape = want[name.as_str()];
        if t.shape != shape {
            problems.push(format!("`{name}`: checkpoint has {:?}, the config expects {shape:?}", t.shape));
        }
        by_name.insert(name, t);
    }
    for (name, _) in expected {
        if !by_name.contains_key(name) && !optional.contains(&name.as_str()) {
            problems.push(format!("`{name}` is missing from `{key}`"));
        }
    }
    if !problems.is_empty() {
        let more = if problems.len() > 8 { format!("\n  ... and {} more", problems.len() - 8) } else { String::new() };
        return Err(CodecError::Invalid(format!(
            "{}: the checkpoint does not match the codec config:\n  {}{more}",
            ckpt.path().display(),
            problems[..problems.len().min(8)].join("\n  ")
        )));
    }
    Ok(by_name)
}

#[allow(clippy::too_many_arguments)]
fn write(
    ckpt: &TorchCheckpoint,
    list: &TensorList,
    plan: &BTreeMap<String, TorchTensor>,
    path: &Path,
    computed_name: &str,
    computed: &dyn Fn() -> Vec<f32>,
    tick: &mut dyn FnMut(),
) -> Result<()> {
    let dtype_of = |name: &str| plan.get(name).map_or(DType::F32, |t| t.dtype);
    let specs = list.iter().map(|(n, s)| TensorSpec::new(n.clone(), dtype_of(n), s)).collect();
    let metadata = BTreeMap::from([("format".to_string(), "pt".to_string())]);
    let mut writer = SafetensorsWriter::create(path, specs, &metadata)?;
    for (name, _) in list {
        let bytes = match plan.get(name) {
            Some(t) => ckpt.read(t)?,
            None if name == computed_name => f32_to_bytes(&computed(), DType::F32),
            None => unreachable!("plan checked that `{name}` exists"),
        };
        writer.write_tensor(name, &bytes)?;
        tick();
    }
    writer.finish()?;
    Ok(())
}
