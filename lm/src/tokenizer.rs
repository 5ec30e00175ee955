//! The Llama 3.2 text tokenizer (a Hugging Face `tokenizer.json`), with UniAudio's names
//! for the reserved special tokens, and the reference's `tokenize` framing.

use std::path::Path;

use crate::config::END_OF_TEXT;
use crate::error::{LmError, Result};

pub const BEGIN_OF_TEXT: u32 = 128_000;

/// The model's names for reserved specials (tokenizer_config.json of the reference), so
/// that user text containing them maps to the same ids as upstream.
pub const SPECIAL_NAMES: &[(u32, &str)] = &[
    (128_002, "<think>"),
    (128_003, "</think>"),
    (128_005, "</answer>"),
    (128_011, "<transcription>"),
    (128_012, "</transcription>"),
    (128_013, "<lyric>"),
    (128_014, "</lyric>"),
    (128_015, "<caption>"),
    (128_016, "</caption>"),
    (128_017, "<answer>"),
    (128_018, "<reason_token>"),
    (128_019, "<semantic_token>"),
    (128_020, "<text_pad_token>"),
];

pub struct TextTokenizer {
    inner: tokenizers::Tokenizer,
}

impl TextTokenizer {
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| LmError::Io { path: path.to_path_buf(), cause: e })?;
        Self::from_json(&text).map_err(|e| LmError::config(path, e))
    }

    pub fn from_json(text: &str) -> std::result::Result<Self, String> {
        let mut json: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("invalid tokenizer.json: {e}"))?;
        let added = json
            .get_mut("added_tokens")
            .and_then(|a| a.as_array_mut())
            .ok_or("tokenizer.json has no `added_tokens` list")?;
        for token in added.iter_mut() {
            let id = token.get("id").and_then(|v| v.as_u64());
            if let Some((_, name)) = SPECIAL_NAMES.iter().find(|(sid, _)| Some(*sid as u64) == id) {
                token["content"] = serde_json::Value::String(name.to_string());
            }
        }
        let inner = tokenizers::Tokenizer::from_bytes(json.to_string().as_bytes()).map_err(|e| format!("cannot load tokenizer: {e}"))?;
        Ok(TextTokenizer { inner })
    }

    /// Looks for `tokenizer.json` given explicitly, else in the model directory.
    pub fn locate(explicit: Option<&Path>, model_dir: Option<&Path>) -> Result<Self> {
        match (explicit, model_dir) {
            (Some(p), _) => Self::from_file(p),
            (None, Some(dir)) if dir.join("tokenizer.json").is_file() => Self::from_file(&dir.join("tokenizer.json")),
            (None, Some(dir)) => Err(LmError::Invalid(format!("no tokenizer.json in {}; pass --tokenizer FILE", dir.display()))),
            (None, None) => Err(LmError::Invalid("this task needs a text tokenizer: pass --tokenizer FILE or --model DIR".into())),
        }
    }

    /// Encodes with special tokens, then makes sure the ids start with <|begin_of_text|>
    /// and end with <|end_of_text|> (the reference's `tokenize`).
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self.inner.encode(text, true).map_err(|e| LmError::Invalid(format!("tokenizer: {e}")))?;
        let mut ids = enc.get_ids().to_vec();
        if ids.first() != Some(&BEGIN_OF_TEXT) {
            ids.insert(0, BEGIN_OF_TEXT);
        }
        if ids.last() != Some(&END_OF_TEXT) {
            ids.push(END_OF_TEXT);
        }
        Ok(ids)
    }

    /// Text of `ids`, special tokens skipped.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner.decode(ids, true).map_err(|e| LmError::Invalid(format!("tokenizer: {e}")))
    }
}
