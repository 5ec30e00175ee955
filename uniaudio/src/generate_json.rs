//! The raw-generation contract shared by `uniaudio generate --requests` and the server's
//! `POST /v1/generate`: one request object in, one output object out.
//!
//! A request is `{"frames": [...], "output_kind": "audio"|"text", "top_k", "temperature",
//! "seed", "max_steps", "cfg_scale"}`; a missing field takes the caller's default.

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use uniaudio_lm::frame::frames_from_value;
use uniaudio_lm::{Frame, GenerateOptions, GenerateOutput, OutputKind, StopReason};

/// A request line is refused above this size without parsing (a prompt is at most a few
/// thousand frames).
pub const MAX_REQUEST_BYTES: usize = 4 << 20;

/// Defaults for the fields a request leaves out.
#[derive(Clone, Debug)]
pub struct RequestDefaults {
    /// `output_kind` when absent (None: the field is required).
    pub kind: Option<OutputKind>,
    /// Sampler defaults.
    pub options: GenerateOptions,
}

impl Default for RequestDefaults {
    /// `output_kind` required; the sampler's defaults (top_k 50, temperature 0.9, seed 888,
    /// max_steps 500), as `uniaudio generate` has them.
    fn default() -> Self {
        RequestDefaults { kind: None, options: GenerateOptions::default() }
    }
}

/// Parses one request object (a JSON text).
pub fn parse_request(text: &str, defaults: &RequestDefaults) -> Result<(Vec<Frame>, GenerateOptions)> {
    if text.len() > MAX_REQUEST_BYTES {
        bail!("{} bytes is longer than the {MAX_REQUEST_BYTES}-byte limit", text.len());
    }
    let v: Value = serde_json::from_str(text).context("not a JSON object")?;
    request_from_value(&v, defaults)
}

/// Reads a parsed request object.
pub fn request_from_value(v: &Value, defaults: &RequestDefaults) -> Result<(Vec<Frame>, GenerateOptions)> {
    let obj = v.as_object().context("expected a JSON object")?;
    let frames = obj.get("frames").context("missing `frames`")?;
    if !frames.is_array() {
        bail!("`frames` must be a list");
    }
    let frames = frames_from_value(frames)?;
    let d = &defaults.options;
    let kind = match obj.get("output_kind").map(|k| k.as_str()) {
        None => defaults.kind.context("missing `output_kind`")?,
        Some(Some("audio")) => OutputKind::Audio,
        Some(Some("text")) => OutputKind::Text,
        Some(_) => bail!("`output_kind` must be \"audio\" or \"text\""),
    };
    let uint = |name: &str, default: u64| -> Result<u64> {
        match obj.get(name) {
            None => Ok(default),
            Some(x) => x.as_u64().with_context(|| format!("`{name}` must be a non-negative integer")),
        }
    };
    let float = |name: &str| -> Result<Option<f64>> {
        match obj.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(x) => x.as_f64().map(Some).with_context(|| format!("`{name}` must be a number")),
        }
    };
    let opts = GenerateOptions {
        kind,
        top_k: uint("top_k", d.top_k as u64)? as usize,
        temperature: float("temperature")?.map_or(d.temperature, |t| t as f32),
        seed: uint("seed", d.seed)?,
        max_steps: uint("max_steps", d.max_steps as u64)? as usize,
        cfg_scale: if obj.contains_key("cfg_scale") { float("cfg_scale")?.map(|c| c as f32) } else { d.cfg_scale },
    };
    Ok((frames, opts))
}

/// The output object: `{"frames", "reasoning", "reconstruction", "stopped_by"}` for audio,
/// `{"text_ids", "stopped_by"}` for text.
pub fn output_json(kind: OutputKind, out: &GenerateOutput) -> Value {
    let stopped_by = match out.stopped_by {
        Some(StopReason::Eos) => "eos",
        _ => "max_steps",
    };
    match kind {
        OutputKind::Audio => json!({
            "frames": out.frames, "reasoning": out.reasoning, "reconstruction": out.reconstruction, "stopped_by": stopped_by,
        }),
        OutputKind::Text => json!({"text_ids": out.text_ids, "stopped_by": stopped_by}),
    }
}

/// Runs request objects (JSON texts, one `--requests` line each) through the batched
/// engine, up to `max_batch` rows per step. One output object per request, in order: what
/// `uniaudio generate` prints for it, or `{"error": message}` for a request that was
/// refused or failed (the others still run). Fails as a whole only when the model cannot
/// generate at all (no LM).
pub fn run_batch(model: &mut crate::Model, requests: &[&str], max_batch: usize, defaults: &RequestDefaults) -> crate::Result<Vec<Value>> {
    run_batch_until(model, requests, max_batch, defaults, &|| false)
}

/// `run_batch`, ending early with [`Error::Cancelled`](crate::Error::Cancelled) once
/// `stop` returns true (asked before each batched step).
pub fn run_batch_until(model: &mut crate::Model, requests: &[&str], max_batch: usize, defaults: &RequestDefaults, stop: &dyn Fn() -> bool) -> crate::Result<Vec<Value>> {
    let mut outputs: Vec<Option<Value>> = vec![None; requests.len()];
    let mut runnable = Vec::new();
    let mut slots = Vec::new();
    for (i, text) in requests.iter().enumerate() {
        match parse_request(text, defaults) {
            Ok(request) => {
                runnable.push(request);
                slots.push(i);
            }
            Err(e) => outputs[i] = Some(json!({"error": format!("{e:#}")})),
        }
    }
    let results = model.generate_batch_until(&runnable, max_batch, stop)?;
    for ((slot, (_, options)), result) in slots.into_iter().zip(&runnable).zip(results) {
        outputs[slot] = Some(match result {
            Ok(out) => output_json(options.kind, &out),
            Err(e) => json!({"error": e.to_string()}),
        });
    }
    Ok(outputs.into_iter().map(|o| o.unwrap_or_else(|| json!({"error": "not run"}))).collect())
}
