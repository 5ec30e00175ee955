//! `uniaudio convert`: a released `torch.save` checkpoint to a model directory
//! (safetensors shards + index + config.json), streamed tensor by tensor.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use uniaudio_runtime::dtype::{bytes_to_f32, f32_to_bytes};
use uniaudio_runtime::torch::{TorchCheckpoint, TorchTensor};
use uniaudio_runtime::weights::{SafetensorsWriter, TensorSpec};
use uniaudio_runtime::DType;

use crate::config::{LmConfig, StackConfig};
use crate::error::{LmError, Result};
use crate::stored_dtype::{stored_dtype, stored_shape, to_stored_order};
use crate::synth::model_tensors;

pub struct ConvertOptions {
    /// Output dtype; `None` keeps each tensor's stored dtype.
    pub dtype: Option<DType>,
    /// Shards are cut once they reach this many bytes.
    pub shard_bytes: usize,
    /// A tokenizer.json to copy into the model directory.
    pub tokenizer: Option<PathBuf>,
}

/// One tensor of the output: its checkpoint source and how to rewrite it.
struct Planned {
    name: String,
    source: TorchTensor,
    /// Legacy fused attention (per-group interleaved) to de-interleave into [Q | K | V].
    legacy_qkv: Option<StackConfig>,
    dtype: DType,
}

fn stack_of<'c>(config: &'c LmConfig, name: &str) -> Option<&'c StackConfig> {
    let s = &config.stacks;
    [("backbone.", &s.backbone), ("audio_understanding_expert.", &s.understanding), ("audio_generation_expert.", &s.generation), ("decoder.", &s.decoder)]
        .into_iter()
        .find(|(p, _)| name.starts_with(p))
        .map(|(_, c)| c)
}

/// Maps checkpoint keys to model keys and checks the set and shapes against `config`.
fn plan(ckpt: &TorchCheckpoint, config: &LmConfig, dtype: Option<DType>) -> Result<Vec<Planned>> {
    let expected: BTreeMap<String, Vec<usize>> = model_tensors(config).into_iter().collect();
    let mut planned = Vec::new();
    let mut problems = Vec::new();
    for t in ckpt.state_dict("model")? {
        let stripped = t.name.strip_prefix("module.").unwrap_or(&t.name).to_string();
        let (name, legacy) = match stripped.strip_suffix("attn.attn.weight") {
            Some(p) => (format!("{p}attn.qkv.weight"), true),
            None => (stripped, false),
        };
        let legacy_qkv = if legacy { stack_of(config, &name).cloned() } else { None };
        match expected.get(&name) {
            None => problems.push(format!("`{}` is not a tensor of the configured model", t.name)),
            Some(shape) if *shape != t.shape => problems.push(format!("`{name}`: checkpoint has {:?}, the config expects {shape:?}", t.shape)),
            Some(shape) => {
                let dtype = dtype.map_or(t.dtype, |d| stored_dtype(&name, shape, d));
                planned.push(Planned { name, dtype, source: t, legacy_qkv })
            }
        }
    }
    for name in expected.keys() {
        if !planned.iter().any(|p| &p.name == name) && !problems.iter().any(|p| p.contains(&format!("`{name}`"))) {
            problems.push(format!("`{name}` is missing from the checkpoint"));
        }
    }
    if !problems.is_empty() {
        let more = if problems.len() > 8 { format!("\n  ... and {} more", problems.len() - 8) } else { String::new() };
        return Err(LmError::Invalid(format!(
            "{}: the checkpoint does not match the config:\n  {}{more}",
            ckpt.path().display(),
            problems[..problems.len().min(8)].join("\n  ")
        )));
    }
    Ok(planned)
}

/// Legacy `attn.attn.weight` rows are, per kv group, [q_per_kv Q heads, K head, V head];
/// returns them in [all Q | all K | all V] order.
fn deinterleave_qkv(bytes: &[u8], s: &StackConfig, row_bytes: usize) -> Vec<u8> {
    let (hs, groups) = (s.head_size, s.n_query_groups);
    let q_per_kv = s.n_head / groups;
    let head = hs * row_bytes;
    let group = (q_per_kv + 2) * head;
    let mut out = Vec::with_capacity(bytes.len());
    for g in 0..groups {
        out.extend_from_slice(&bytes[g * group..g * group + q_per_kv * head]);
    }
    for which in [q_per_kv, q_per_kv + 1] {
        for g in 0..groups {
            let start = g * group + which * head;
            out.extend_from_slice(&bytes[start..start + head]);
        }
    }
    out
}

fn convert_bytes(p: &Planned, bytes: Vec<u8>) -> Vec<u8> {
    let bytes = match &p.legacy_qkv {
        Some(s) => deinterleave_qkv(&bytes, s, p.source.shape[1] * p.source.dtype.size_bytes()),
        None => bytes,
    };
    if p.dtype == p.source.dtype {
        bytes
    } else {
        let values = bytes_to_f32(&bytes, p.source.dtype);
        f32_to_bytes(&to_stored_order(&p.name, &p.source.shape, p.dtype, values), p.dtype)
    }
}

/// Converts `checkpoint` (model entry only) into the new directory `out`. Files appear
/// under `out` only when everything is written. `progress(done, total)` counts bytes.
pub fn convert(checkpoint: &Path, config: &LmConfig, out: &Path, opts: &ConvertOptions, progress: &mut dyn FnMut(u64, u64)) -> Result<()> {
    // Fail before reading the checkpoint if the destination is taken.
    uniaudio_runtime::out_dir::check_empty(out)?;
    let ckpt = TorchCheckpoint::open(checkpoint)?;
    let planned = plan(&ckpt, config, opts.dtype)?;
    uniaudio_runtime::out_dir::write_atomically(out, |tmp| write_dir(&ckpt, config, &planned, tmp, opts, progress))
}

fn write_dir(ckpt: &TorchCheckpoint, config: &LmConfig, planned: &[Planned], dir: &Path, opts: &ConvertOptions, progress: &mut dyn FnMut(u64, u64)) -> Result<()> {
    let size = |p: &Planned| p.dtype.bytes(p.source.numel());
    let mut shards: Vec<Vec<&Planned>> = vec![Vec::new()];
    let mut current = 0usize;
    for p in planned {
        if current > 0 && current + size(p) > opts.shard_bytes {
            shards.push(Vec::new());
            current = 0;
        }
        shards.last_mut().expect("non-empty").push(p);
        current += size(p);
    }
    let total: u64 = planned.iter().map(|p| size(p) as u64).sum();
    let names: Vec<String> = if shards.len() == 1 {
        vec!["model.safetensors".into()]
    } else {
        (1..=shards.len()).map(|i| format!("model-{i:05}-of-{:05}.safetensors", shards.len())).collect()
    };
    let metadata = BTreeMap::from([("format".to_string(), "pt".to_string())]);
    let mut weight_map = BTreeMap::new();
    let mut done = 0u64;
    for (shard, file) in shards.iter().zip(&names) {
        let specs = shard.iter().map(|p| TensorSpec::new(p.name.clone(), p.dtype, &stored_shape(&p.name, &p.source.shape, p.dtype))).collect();
        let mut writer = SafetensorsWriter::create(dir.join(file), specs, &metadata)?;
        for p in shard {
            let bytes = convert_bytes(p, ckpt.read(&p.source)?);
            writer.write_tensor(&p.name, &bytes)?;
            weight_map.insert(p.name.clone(), file.clone());
            done += bytes.len() as u64;
            progress(done, total);
        }
        writer.finish()?;
    }
    if names.len() > 1 {
        let index = serde_json::json!({"metadata": {"total_size": total}, "weight_map": weight_map});
        write_file(&dir.join("model.safetensors.index.json"), serde_json::to_string_pretty(&index).expect("json").as_bytes())?;
    }
    write_file(&dir.join("config.json"), serde_json::to_string_pretty(config).expect("json").as_bytes())?;
    if let Some(tok) = &opts.tokenizer {
        std::fs::copy(tok, dir.join("tokenizer.json")).map_err(|e| LmError::Io { path: tok.clone(), cause: e })?;
    }
    Ok(())
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).map_err(|e| LmError::Io { path: path.to_path_buf(), cause: e })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RopeScaling;

    #[test]
    fn legacy_qkv_is_deinterleaved_per_group() {
        let s = StackConfig {
            n_layer: 1,
            n_embd: 2,
            n_head: 4,
            n_query_groups: 2,
            head_size: 2,
            intermediate_size: 1,
            vocab_size: None,
            rope_base: 500000.0,
            rope_scaling: Some(RopeScaling::LLAMA3),
            norm_eps: 1e-5,
        };
        // Rows are 1 byte wide here; each head is 2 rows. Per group: Q Q K V heads.
        let head = |tag: u8| [tag, tag + 1];
        let legacy: Vec<u8> = [10, 20, 30, 40, 50, 60, 70, 80].iter().flat_map(|&t| head(t)).collect();
        let got = deinterleave_qkv(&legacy, &s, 1);
        // g0 = Q0 Q1 K0 V0 = 10 20 30 40; g1 = Q2 Q3 K1 V1 = 50 60 70 80.
        let want: Vec<u8> = [10, 20, 50, 60, 30, 70, 40, 80].iter().flat_map(|&t| head(t)).collect();
        assert_eq!(got, want);
    }
}
