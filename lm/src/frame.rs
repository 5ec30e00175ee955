//! 9-stream frames: each position is a text step (stream 8) or an audio step (streams 0..7).

use crate::config::{LmConfig, CODEBOOKS};
use crate::error::{LmError, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frame {
    /// A text id in stream 8; audio streams hold 0 and are masked off.
    Text(u32),
    /// Raw codebook ids as placed in the sequence (reconstruction ids include +rc).
    Audio([u32; CODEBOOKS]),
}

impl Frame {
    pub fn is_audio(&self) -> bool {
        matches!(self, Frame::Audio(_))
    }

    /// Checks the ids against the model's vocabularies; `index` names the position in errors.
    pub fn validate(&self, config: &LmConfig, index: usize) -> Result<()> {
        match *self {
            Frame::Text(id) if id as usize >= config.text_vocab() => {
                Err(LmError::Prompt(format!("frame {index}: text id {id} is outside the text vocabulary of {}", config.text_vocab())))
            }
            Frame::Audio(codes) => match codes.iter().position(|&c| c as usize >= config.audio_vocab()) {
                Some(k) => Err(LmError::Prompt(format!(
                    "frame {index}: audio id {} of codebook {k} is outside 0..{} (audio_reason_card + audio_semantic_card)",
                    codes[k],
                    config.audio_vocab()
                ))),
                None => Ok(()),
            },
            Frame::Text(_) => Ok(()),
        }
    }
}

/// Parses `{"frames": [{"text": ID} | {"audio": [c0..c7]}, ...]}` (or a bare list).
pub fn parse_frames(text: &str) -> Result<Vec<Frame>> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| LmError::Prompt(format!("not valid JSON: {e}")))?;
    frames_from_value(&value)
}

/// `parse_frames` of an already parsed JSON value (the object or the bare list).
pub fn frames_from_value(value: &serde_json::Value) -> Result<Vec<Frame>> {
    let list = match value {
        serde_json::Value::Object(o) => o.get("frames").ok_or_else(|| LmError::Prompt("missing the `frames` list".into()))?,
        other => other,
    };
    let items = list.as_array().ok_or_else(|| LmError::Prompt("`frames` must be a list".into()))?;
    items.iter().enumerate().map(|(i, item)| parse_frame(item, i)).collect()
}

fn parse_frame(item: &serde_json::Value, i: usize) -> Result<Frame> {
    let bad = |what: &str| LmError::Prompt(format!("frame {i}: {what}"));
    let obj = item.as_object().ok_or_else(|| bad("expected {\"text\": ID} or {\"audio\": [8 ids]}"))?;
    if obj.len() != 1 {
        return Err(bad("expected exactly one of `text` or `audio`"));
    }
    let id = |v: &serde_json::Value| v.as_u64().filter(|&x| x <= u32::MAX as u64).map(|x| x as u32);
    if let Some(t) = obj.get("text") {
        return id(t).map(Frame::Text).ok_or_else(|| bad(&format!("text id must be a non-negative integer, got {t}")));
    }
    if let Some(a) = obj.get("audio") {
        let codes = a.as_array().ok_or_else(|| bad("`audio` must be a list of 8 ids"))?;
        if codes.len() != CODEBOOKS {
            return Err(bad(&format!("audio frame has {} codes, expected {CODEBOOKS}", codes.len())));
        }
        let mut out = [0u32; CODEBOOKS];
        for (k, c) in codes.iter().enumerate() {
            out[k] = id(c).ok_or_else(|| bad(&format!("code {k} must be a non-negative integer, got {c}")))?;
        }
        return Ok(Frame::Audio(out));
    }
    Err(bad("expected {\"text\": ID} or {\"audio\": [8 ids]}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_kinds_and_names_bad_positions() {
        let f = parse_frames(r#"{"frames": [{"text": 128000}, {"audio": [1,2,3,4,5,6,7,8]}]}"#).unwrap();
        assert_eq!(f, vec![Frame::Text(128000), Frame::Audio([1, 2, 3, 4, 5, 6, 7, 8])]);
        let err = parse_frames(r#"{"frames": [{"text": 1}, {"audio": [1,2,3]}]}"#).unwrap_err().to_string();
        assert!(err.contains("frame 1") && err.contains("3 codes"), "{err}");
        let err = parse_frames(r#"{"frames": [{"text": -4}]}"#).unwrap_err().to_string();
        assert!(err.contains("frame 0"), "{err}");
        let err = parse_frames(r#"{"frames": [{"txt": 4}]}"#).unwrap_err().to_string();
        assert!(err.contains("frame 0"), "{err}");
        assert!(parse_frames("{").is_err());
        assert!(parse_frames(r#"{"frames": 3}"#).is_err());
    }
}
