//! The encoder's tensors from the released files: `ReasoningCodec.checkpoint` first (under
//! `strict=False` its entries override the separately loaded models), and wherever it lacks
//! a sub-model, `whisper-medium/` and `wavlm/` (Hugging Face folders: `model.safetensors`
//! or `pytorch_model.bin`) and `music_ssl.pt` (a fairseq checkpoint). Every file is read
//! with the restricted readers: only tensors are taken, nothing is executed, and entries
//! that map to no needed tensor are never inspected.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use uniaudio_runtime::torch::{TorchCheckpoint, TorchTensor};
use uniaudio_runtime::weights::SafetensorsFile;
use uniaudio_runtime::DType;

use super::config::EncoderConfig;
use super::tensors::{encoder_tensors, POS_CONV_G, POS_CONV_V};
use crate::error::{CodecError, Result};

/// The separately released sub-models (each optional when the codec checkpoint holds it).
#[derive(Clone, Debug, Default)]
pub struct EncoderSources {
    /// whisper-medium/ (Hugging Face WhisperModel or WhisperForConditionalGeneration).
    pub whisper: Option<PathBuf>,
    /// wavlm/ (Hugging Face WavLMModel).
    pub wavlm: Option<PathBuf>,
    /// music_ssl.pt (fairseq; MusicFM under `model.`).
    pub music_ssl: Option<PathBuf>,
}

enum Store {
    Torch(TorchCheckpoint),
    Safetensors(SafetensorsFile),
}

/// One opened file and the codec names it can provide (codec name -> its own name).
pub struct Source {
    label: String,
    store: Store,
    torch: BTreeMap<String, TorchTensor>,
    names: BTreeMap<String, String>,
}

/// Where one tensor comes from.
pub struct Origin<'a> {
    source: &'a Source,
    name: String,
    pub dtype: DType,
}

impl Origin<'_> {
    pub fn read(&self) -> Result<Vec<u8>> {
        match &self.source.store {
            Store::Torch(c) => Ok(c.read(&self.source.torch[&self.name])?),
            Store::Safetensors(f) => Ok(f.view(&self.name)?.bytes().to_vec()),
        }
    }
}

impl Source {
    fn shape(&self, codec_name: &str) -> Option<(&str, Vec<usize>, DType)> {
        let own = self.names.get(codec_name)?;
        match &self.store {
            Store::Torch(_) => self.torch.get(own).map(|t| (own.as_str(), t.shape.clone(), t.dtype)),
            Store::Safetensors(f) => {
                let view = f.view(own).ok()?;
                Some((own.as_str(), view.shape().to_vec(), view.dtype()))
            }
        }
    }

    /// A torch checkpoint's state dict under `key` (or its top level), renamed by `rename`.
    fn torch(path: &Path, key: Option<&str>, wanted: &dyn Fn(&str) -> bool, rename: &dyn Fn(&str) -> Option<String>) -> Result<Self> {
        let ckpt = TorchCheckpoint::open(path)?;
        let keep = |n: &str| rename(n).is_some_and(|c| wanted(&c));
        let list = match key {
            Some(k) => ckpt.state_dict_where(k, &keep)?,
            None => ckpt.root_state_dict_where(&keep)?,
        };
        let mut names = BTreeMap::new();
        let mut torch = BTreeMap::new();
        for t in list {
            if let Some(c) = rename(&t.name) {
                names.insert(c, t.name.clone());
            }
            torch.insert(t.name.clone(), t);
        }
        Ok(Source { label: path.display().to_string(), store: Store::Torch(ckpt), torch, names })
    }

    /// A Hugging Face folder: `model.safetensors`, else `pytorch_model.bin`.
    fn hf_folder(dir: &Path, wanted: &dyn Fn(&str) -> bool, rename: &dyn Fn(&str) -> Option<String>) -> Result<Self> {
        let st = dir.join("model.safetensors");
        if st.is_file() {
            let file = SafetensorsFile::open(&st)?;
            let names = file.names().filter_map(|n| rename(n).filter(|c| wanted(c)).map(|c| (c, n.to_string()))).collect();
            return Ok(Source { label: st.display().to_string(), store: Store::Safetensors(file), torch: BTreeMap::new(), names });
        }
        let bin = dir.join("pytorch_model.bin");
        if bin.is_file() {
            return Source::torch(&bin, None, wanted, rename);
        }
        Err(CodecError::Invalid(format!("{}: neither model.safetensors nor pytorch_model.bin", dir.display())))
    }
}

/// `prefix` + the part of `name` after any of `strip` (tried in order; "" keeps it whole).
fn under(prefix: &'static str, strip: &'static [&'static str]) -> impl Fn(&str) -> Option<String> {
    move |name: &str| strip.iter().find_map(|s| name.strip_prefix(s)).map(|rest| format!("{prefix}{rest}"))
}

/// Every encoder tensor of `config`, each with the file it comes from. Missing or
/// mis-shaped tensors are listed together, each with the file that should hold it.
pub fn plan<'a>(config: &EncoderConfig, sources: &'a [Source]) -> Result<Vec<(String, Vec<usize>, Origin<'a>)>> {
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for (name, shape) in encoder_tensors(config) {
        let wavlm_p = &config.wavlm.prefix;
        // WavLM's positional weight norm may be spelled either way; keep the file's spelling.
        let spellings: Vec<String> = [POS_CONV_G, POS_CONV_V]
            .iter()
            .find(|pair| name == format!("{wavlm_p}{}", pair[0]))
            .map_or_else(|| vec![name.clone()], |pair| pair.iter().map(|s| format!("{wavlm_p}{s}")).collect());
        let found = sources.iter().find_map(|src| spellings.iter().find_map(|n| src.shape(n).map(|(own, s, dt)| (n.clone(), own.to_string(), s, dt, src))));
        match found {
            Some((codec_name, own, s, dtype, src)) => {
                // v of the per-tap weight norm may come as [H, H/groups, K] in either spelling; g as [1, 1, K].
                if s != shape {
                    problems.push(format!("`{codec_name}` in {}: shape {s:?}, the config expects {shape:?}", src.label));
                }
                out.push((codec_name, shape, Origin { source: src, name: own, dtype }));
            }
            None => problems.push(format!("`{name}` is in none of: {}", sources.iter().map(|s| s.label.as_str()).collect::<Vec<_>>().join(", "))),
        }
    }
    if !problems.is_empty() {
        let more = if problems.len() > 8 { format!("\n  ... and {} more", problems.len() - 8) } else { String::new() };
        return Err(CodecError::Invalid(format!(
            "the released files do not hold the encoder the config describes (pass --whisper, --wavlm, --music-ssl for the sub-models the codec checkpoint lacks):\n  {}{more}",
            problems[..problems.len().min(8)].join("\n  ")
        )));
    }
    Ok(out)
}

/// Opens the codec checkpoint and the given sub-model files as sources, in lookup order.
pub fn open_sources(config: &EncoderConfig, checkpoint: &Path, extra: &EncoderSources) -> Result<Vec<Source>> {
    let wanted: std::collections::BTreeSet<String> = encoder_tensors(config)
        .into_iter()
        .map(|(n, _)| n)
        .chain(POS_CONV_G.iter().chain(&POS_CONV_V).map(|s| format!("{}{s}", config.wavlm.prefix)))
        .collect();
    let wanted = |n: &str| wanted.contains(n);
    let mut sources = vec![Source::torch(checkpoint, Some("model"), &wanted, &|n: &str| Some(n.strip_prefix("module.").unwrap_or(n).to_string()))?];
    if let Some(dir) = &extra.whisper {
        let rename = under("whisper_encoder.", &["model.encoder.", "encoder."]);
        sources.push(Source::hf_folder(dir, &wanted, &rename)?);
    }
    if let Some(dir) = &extra.wavlm {
        let rename = under("wavlm_encoder.", &["wavlm.", ""]);
        sources.push(Source::hf_folder(dir, &wanted, &rename)?);
    }
    if let Some(path) = &extra.music_ssl {
        // fairseq's model holds MusicFM as `model`; the codec nests it under pretrained_model.model.
        let rename = under("pretrained_model.model.", &[""]);
        sources.push(Source::torch(path, Some("model"), &wanted, &rename)?);
    }
    Ok(sources)
}
