//! A request's named fields, whether they came as a JSON body or a multipart form, and
//! the settings every route with audio output reads from them.

use std::collections::HashMap;

use serde_json::{Map, Value};
use uniaudio::{CodecSettings, Sampling};

use crate::ApiError;

/// Euler steps of the codec's flow model a request may ask for.
pub(crate) const MAX_CODEC_STEPS: u64 = 100;

/// Typed access to a request's fields; a missing field (or JSON null, or a blank form
/// field where a number is read) is None, a field of the wrong type a 400 naming it.
pub(crate) trait Fields {
    fn text(&self, name: &str) -> Result<Option<String>, ApiError>;
    fn uint(&self, name: &str) -> Result<Option<u64>, ApiError>;
    fn number(&self, name: &str) -> Result<Option<f64>, ApiError>;
}

/// A JSON body's object.
impl Fields for Map<String, Value> {
    fn text(&self, name: &str) -> Result<Option<String>, ApiError> {
        field(self, name).map(|v| v.as_str().map(str::to_string).ok_or_else(|| ApiError::bad_request(format!("`{name}` must be a string")))).transpose()
    }

    fn uint(&self, name: &str) -> Result<Option<u64>, ApiError> {
        field(self, name).map(|v| v.as_u64().ok_or_else(|| ApiError::bad_request(format!("`{name}` must be a non-negative integer")))).transpose()
    }

    fn number(&self, name: &str) -> Result<Option<f64>, ApiError> {
        field(self, name).map(|v| v.as_f64().ok_or_else(|| ApiError::bad_request(format!("`{name}` must be a number")))).transpose()
    }
}

/// A multipart form's text fields.
impl Fields for HashMap<String, String> {
    fn text(&self, name: &str) -> Result<Option<String>, ApiError> {
        Ok(self.get(name).cloned())
    }

    fn uint(&self, name: &str) -> Result<Option<u64>, ApiError> {
        numeral(self, name).map(|v| v.parse::<u64>().map_err(|_| ApiError::bad_request(format!("`{name}` must be a non-negative integer, got `{v}`")))).transpose()
    }

    fn number(&self, name: &str) -> Result<Option<f64>, ApiError> {
        numeral(self, name).map(|v| v.parse::<f64>().map_err(|_| ApiError::bad_request(format!("`{name}` must be a number, got `{v}`")))).transpose()
    }
}

/// A JSON field, null read as missing.
pub(crate) fn field<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    obj.get(name).filter(|v| !v.is_null())
}

/// A form field read as a number: trimmed, blank read as missing.
fn numeral<'a>(form: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
    form.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
}

/// How a request with audio output wants it: `response_format` (wav | pcm), the codec's
/// `steps`, and the sampler fields (`seed`, `top_k`, `temperature`, `max_steps`, the last
/// capped by the server's `--max-steps-limit`, which also lowers the task's default cap).
pub(crate) struct AudioOutput {
    pub format: String,
    pub codec: CodecSettings,
    pub sampling: Sampling,
}

/// Reads and checks the audio-output fields before any work is admitted or decoded.
pub(crate) fn audio_output(fields: &impl Fields, max_steps_limit: usize) -> Result<AudioOutput, ApiError> {
    let format = fields.text("response_format")?.unwrap_or_else(|| "wav".into());
    if format != "wav" && format != "pcm" {
        return Err(ApiError::bad_request(format!("`response_format` must be wav or pcm, got `{format}`")));
    }
    let steps = fields.uint("steps")?.unwrap_or(CodecSettings::default().steps as u64);
    if steps == 0 || steps > MAX_CODEC_STEPS {
        return Err(ApiError::bad_request(format!("`steps` must be 1..={MAX_CODEC_STEPS}")));
    }
    let max_steps = fields.uint("max_steps")?.map(|n| n as usize);
    if max_steps.is_some_and(|n| n > max_steps_limit) {
        return Err(ApiError::bad_request(format!("`max_steps` is above this server's limit of {max_steps_limit}")));
    }
    if max_steps == Some(0) {
        return Err(ApiError::bad_request("`max_steps` must be at least 1"));
    }
    let temperature = match fields.number("temperature")? {
        Some(t) if !(t.is_finite() && t > 0.0) => return Err(ApiError::bad_request(format!("`temperature` must be a number above 0, got `{t}`"))),
        t => t.map(|t| t as f32),
    };
    let sampling = Sampling {
        top_k: fields.uint("top_k")?.map(|k| k as usize),
        temperature,
        seed: fields.uint("seed")?.unwrap_or(888),
        max_steps,
        cfg_scale: None,
        step_limit: Some(max_steps_limit),
    };
    Ok(AudioOutput { format, codec: CodecSettings { steps: steps as usize, ..Default::default() }, sampling })
}
