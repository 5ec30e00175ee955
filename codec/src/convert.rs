//! Released codec checkpoints (`ReasoningCodec.checkpoint`, `sqcodec.pth`, and for the
//! encoder the sub-model files of `encode::convert`) to a codec directory, keeping the
//! decode subset, the encode subset or both (as the config's sections say). Read with the
//! runtime's restricted torch reader: nothing in the files is executed, and entries outside
//! the subsets (EMA buffers, integer counters, unused heads) are never inspected.

use std::collections::BTreeMap;
use std::path::Path;

use uniaudio_runtime::dtype::{bytes_to_f32, f32_to_bytes};
use uniaudio_runtime::torch::{TorchCheckpoint, TorchTensor};
use uniaudio_runtime::weights::{SafetensorsWriter, TensorSpec};
use uniaudio_runtime::DType;

use serde_json::Value;

use crate::config::CodecConfig;
use crate::encode::convert::{open_sources, plan as encoder_plan, EncoderSources};
use crate::error::{CodecError, Result};
use crate::stored_dtype::stored_dtype;
use crate::synth::{CODEC_FILE, CONFIG_FILE, SQ_FILE};
use crate::tensors::{codec_tensors, pos_embed_table, sq_tensors, TensorList, POS_EMBED};

/// Writes codec.safetensors, sqcodec.safetensors and config.json into `dir` (existing, empty).
/// `progress(done, total)` counts tensors.
pub fn convert_codec(checkpoint: &Path, sqcodec: &Path, config: &CodecConfig, dir: &Path, progress: &mut dyn FnMut(u64, u64)) -> Result<()> {
    let mut config = config.clone();
    config.init = None;
    let value = serde_json::to_value(&config).expect("serialisable config");
    convert(checkpoint, Some(sqcodec), &value, &EncoderSources::default(), dir, progress)
}

/// The general conversion: the decoder's tensors when `config` has the decoder's sections
/// (then `sqcodec` is needed), the encoder's when it has the encoder's (from the codec
/// checkpoint and `sources`), both into one codec.safetensors; config.json is `config`.
/// Every tensor keeps the checkpoint's dtype.
pub fn convert(checkpoint: &Path, sqcodec: Option<&Path>, config: &Value, sources: &EncoderSources, dir: &Path, progress: &mut dyn FnMut(u64, u64)) -> Result<()> {
    convert_as(checkpoint, sqcodec, config, sources, None, dir, progress)
}

/// `convert`, with the flow and RVQ tensors stored as `dtype` where given (q8_0 or q4_0: the
/// flow's linear weights in 8-bit or 4-bit blocks, the rest of them bf16; see `stored_dtype`); the position
/// table, the SQ decoder and the encoder keep their dtypes.
pub fn convert_as(
    checkpoint: &Path,
    sqcodec: Option<&Path>,
    config: &Value,
    sources: &EncoderSources,
    dtype: Option<DType>,
    dir: &Path,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<()> {
    if let Some(d) = dtype.filter(|d| !d.is_float() && !d.is_quantized()) {
        return Err(CodecError::Invalid(format!("codec dtype {} is not a weight dtype (expected f32, f16, bf16, q8_0 or q4_0)", d.name())));
    }
    let (decoder, encoder) = crate::config::codec_parts(config)?;
    let codec_ckpt = TorchCheckpoint::open(checkpoint)?;
    let sq_ckpt = match (&decoder, sqcodec) {
        (Some(_), Some(p)) => Some(TorchCheckpoint::open(p)?),
        (Some(_), None) => return Err(CodecError::Invalid("the decoder needs the SQ-Codec weights (sqcodec.pth)".into())),
        (None, _) => None,
    };
    let encoder_sources = match &encoder {
        Some(e) => open_sources(e, checkpoint, sources)?,
        None => Vec::new(),
    };
    let mut entries: Vec<Entry> = Vec::new();
    let mut sq_entries: Vec<Entry> = Vec::new();
    if let (Some(c), Some(sq_ckpt)) = (&decoder, &sq_ckpt) {
        let pe_name = format!("{}{POS_EMBED}", c.flow.prefix);
        let mut decoder_plan = plan(&codec_ckpt, "model", &codec_tensors(c), &[pe_name.as_str()])?;
        for (name, shape) in codec_tensors(c) {
            let entry = match decoder_plan.remove(&name) {
                Some(t) => match dtype {
                    Some(d) => {
                        let stored = stored_dtype(&name, &shape, d, Some(&c.flow.prefix));
                        Entry::torch_as(&codec_ckpt, t, name, shape, stored)
                    }
                    None => Entry::torch(&codec_ckpt, t, name, shape),
                },
                None => Entry::computed(name, shape, pos_embed_table(c.flow.max_positions, c.flow.inner_dim)),
            };
            entries.push(entry);
        }
        let sq_list = sq_tensors(c);
        let mut sq_plan = plan(sq_ckpt, "codec_model", &sq_list, &[])?;
        for (name, shape) in sq_list {
            let t = sq_plan.remove(&name).expect("plan checked that every SQ tensor exists");
            sq_entries.push(Entry::torch(sq_ckpt, t, name, shape));
        }
    }
    if let Some(e) = &encoder {
        for (name, shape, origin) in encoder_plan(e, &encoder_sources)? {
            // The reconstruction codebooks are the decoder's too: written once.
            if !entries.iter().any(|x| x.name == name) {
                entries.push(Entry { dtype: origin.dtype, name, shape, read: Box::new(move || origin.read()) });
            }
        }
    }
    let total = (entries.len() + sq_entries.len()) as u64;
    let mut done = 0u64;
    let mut tick = || {
        done += 1;
        progress(done, total)
    };
    write(&dir.join(CODEC_FILE), entries, &mut tick)?;
    if decoder.is_some() {
        write(&dir.join(SQ_FILE), sq_entries, &mut tick)?;
    }
    let mut config = config.clone();
    if let Some(o) = config.as_object_mut() {
        o.remove("init");
    }
    let path = dir.join(CONFIG_FILE);
    std::fs::write(&path, serde_json::to_string_pretty(&config).expect("serialisable config")).map_err(|e| CodecError::Io { path, cause: e })
}

/// One tensor to write: its name, shape, dtype and how to get its bytes.
struct Entry<'a> {
    name: String,
    shape: Vec<usize>,
    dtype: DType,
    read: Box<dyn Fn() -> Result<Vec<u8>> + 'a>,
}

impl<'a> Entry<'a> {
    fn torch(ckpt: &'a TorchCheckpoint, t: TorchTensor, name: String, shape: Vec<usize>) -> Self {
        Entry { name, shape, dtype: t.dtype, read: Box::new(move || Ok(ckpt.read(&t)?)) }
    }
    /// Stored as `dtype` (through f32, exact for widening).
    fn torch_as(ckpt: &'a TorchCheckpoint, t: TorchTensor, name: String, shape: Vec<usize>, dtype: DType) -> Self {
        if dtype == t.dtype {
            return Entry::torch(ckpt, t, name, shape);
        }
        Entry { name, shape, dtype, read: Box::new(move || Ok(f32_to_bytes(&bytes_to_f32(&ckpt.read(&t)?, t.dtype), dtype))) }
    }
    fn computed(name: String, shape: Vec<usize>, values: Vec<f32>) -> Self {
        Entry { name, shape, dtype: DType::F32, read: Box::new(move || Ok(f32_to_bytes(&values, DType::F32))) }
    }
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

fn write(path: &Path, entries: Vec<Entry>, tick: &mut dyn FnMut()) -> Result<()> {
    let specs = entries.iter().map(|e| TensorSpec::new(e.name.clone(), e.dtype, &e.shape)).collect();
    let metadata = BTreeMap::from([("format".to_string(), "pt".to_string())]);
    let mut writer = SafetensorsWriter::create(path, specs, &metadata)?;
    for e in &entries {
        writer.write_tensor(&e.name, &(e.read)()?)?;
        tick();
    }
    writer.finish()?;
    Ok(())
}
