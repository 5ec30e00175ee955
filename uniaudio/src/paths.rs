//! Where a command finds its parts: a bundle (a directory with `uniaudio.json`), named by
//! `--model` or `UNIAUDIO_MODEL`, or, for experts, an LM directory with separate codec and
//! tokenizer paths. A part a task needs but the bundle lacks is an error naming the part.

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::error::missing;

use crate::manifest::{Manifest, MANIFEST_FILE};

/// The environment variable naming the default bundle.
pub const MODEL_ENV: &str = "UNIAUDIO_MODEL";

/// A part of a bundle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// The LM directory.
    Lm,
    /// tokenizer.json.
    Tokenizer,
    /// The codec's encoder sections and tensors (audio in).
    Encoder,
    /// The codec's decoder sections and tensors (audio out).
    Decoder,
}

impl Part {
    /// The part in words, with where it lives in a bundle.
    pub fn describe(self) -> &'static str {
        match self {
            Part::Lm => "the LM (lm/)",
            Part::Tokenizer => "the text tokenizer (tokenizer.json)",
            Part::Encoder => "the codec encoder (codec/ with the encoder sections)",
            Part::Decoder => "the codec decoder (codec/ with the decoder sections and sqcodec.safetensors)",
        }
    }

    fn flag(self) -> &'static str {
        match self {
            Part::Lm => "--model LM_DIR",
            Part::Tokenizer => "--tokenizer tokenizer.json",
            Part::Encoder | Part::Decoder => "--codec CODEC_DIR",
        }
    }
}

/// The resolved locations of a model's parts.
#[derive(Clone, Debug, Default)]
pub struct ModelPaths {
    /// The bundle root, when the model is a bundle.
    pub bundle: Option<PathBuf>,
    /// The bundle's manifest.
    pub manifest: Option<Manifest>,
    /// The LM directory.
    pub lm: Option<PathBuf>,
    /// The codec directory.
    pub codec: Option<PathBuf>,
    /// tokenizer.json.
    pub tokenizer: Option<PathBuf>,
}

impl ModelPaths {
    /// `model` is a bundle or an LM directory (else `UNIAUDIO_MODEL`, if set); `codec` and
    /// `tokenizer` override the bundle's parts.
    pub fn resolve(model: Option<&Path>, codec: Option<&Path>, tokenizer: Option<&Path>) -> Result<Self> {
        let env = std::env::var_os(MODEL_ENV).filter(|v| !v.is_empty()).map(PathBuf::from);
        let (model, from_env) = match model {
            Some(m) => (Some(m.to_path_buf()), false),
            None => (env, true),
        };
        let mut paths = ModelPaths::default();
        if let Some(m) = &model {
            let origin = if from_env { format!("{MODEL_ENV}={}", m.display()) } else { format!("--model {}", m.display()) };
            if !m.is_dir() {
                return Err(crate::Error::Model(format!("{origin}: no such directory")).into());
            }
            if m.join(MANIFEST_FILE).is_file() {
                let manifest = Manifest::read(m)?;
                let part = |name: &str| manifest.parts.get(name).map(|p| m.join(&p.path));
                paths.lm = part("lm");
                paths.codec = part("codec");
                paths.tokenizer = part("tokenizer");
                paths.bundle = Some(m.clone());
                paths.manifest = Some(manifest);
            } else if m.join("config.json").is_file() {
                paths.lm = Some(m.clone());
                let t = m.join("tokenizer.json");
                paths.tokenizer = t.is_file().then_some(t);
            } else {
                return Err(crate::Error::Model(format!("{origin}: neither a bundle ({MANIFEST_FILE}) nor an LM directory (config.json)")).into());
            }
        }
        if let Some(c) = codec {
            paths.codec = Some(c.to_path_buf());
        }
        if let Some(t) = tokenizer {
            paths.tokenizer = Some(t.to_path_buf());
        }
        Ok(paths)
    }

    /// Checks that every one of `parts` is there, naming the first that is not.
    pub fn require_all(&self, parts: &[Part], what: &str) -> Result<()> {
        for &part in parts {
            self.require(part, what)?;
        }
        Ok(())
    }

    /// The path of `part`, or an error naming what is missing and how to provide it.
    pub fn require(&self, part: Part, task: &str) -> Result<&Path> {
        let path = match part {
            Part::Lm => self.lm.as_deref(),
            Part::Tokenizer => self.tokenizer.as_deref(),
            Part::Encoder | Part::Decoder => self.codec.as_deref(),
        };
        if let (Some(path), Some(manifest), Some(root)) = (path, &self.manifest, &self.bundle) {
            // A bundle says what its codec can do; trust an expert's --codec to say so at load.
            let feature = match part {
                Part::Encoder => Some("encoder"),
                Part::Decoder => Some("decoder"),
                _ => None,
            };
            let from_bundle = self.codec.as_deref().is_some_and(|c| manifest.parts.get("codec").is_some_and(|p| root.join(&p.path) == c));
            if let (Some(f), true) = (feature, from_bundle) {
                if !manifest.parts["codec"].features.iter().any(|x| x == f) {
                    missing!("{task} needs {}, which the bundle {} lacks (its codec has: {}); convert the codec with its {f} or pass {}",
                        part.describe(), root.display(), manifest.parts["codec"].features.join(", "), part.flag());
                }
            }
            return Ok(path);
        }
        match (path, &self.bundle) {
            (Some(p), _) => Ok(p),
            (None, Some(root)) => missing!("{task} needs {}, which the bundle {} lacks; add it (uniaudio convert --bundle) or pass {}", part.describe(), root.display(), part.flag()),
            (None, None) if part == Part::Lm || self.lm.is_none() => {
                missing!("{task} needs a model: pass --model BUNDLE (or set {MODEL_ENV})")
            }
            (None, None) => missing!("{task} needs {}: pass {} (or use a bundle with --model BUNDLE)", part.describe(), part.flag()),
        }
    }
}
