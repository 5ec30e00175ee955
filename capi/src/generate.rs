//! Raw generation from prompt frames: one request streamed event by event through a
//! callback, or many requests batched together. Requests and outputs are the JSON objects
//! of `uniaudio generate --requests` (one per line).

use std::ffi::{c_char, c_void};

use uniaudio::generate_json::{self, RequestDefaults};
use uniaudio::{Error, GenerateEvent};

use crate::{c_string, guard, non_null, str_arg, Failure, InUse, UniaudioModel, UniaudioStatus};

/// What a generation event carries.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UniaudioEventKind {
    /// A sampled audio frame: `codes` holds its 8 codes.
    Frame = 0,
    /// A sampled text id: `text_id`.
    Text = 1,
}

/// One event of a streamed generation (borrowed for the callback's duration).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct UniaudioEvent {
    pub kind: UniaudioEventKind,
    /// The frame's codes (`kind == UNIAUDIO_EVENT_KIND_FRAME`), else zeros.
    pub codes: [u32; 8],
    /// The text id (`kind == UNIAUDIO_EVENT_KIND_TEXT`), else 0.
    pub text_id: u32,
}

/// Called for every event; return 0 to go on, anything else to stop the generation
/// (the call then returns `UNIAUDIO_STATUS_CANCELLED`). Calls on the same model from the
/// callback are refused (`UNIAUDIO_STATUS_INVALID_INPUT`; `uniaudio_model_free` leaves it).
pub type UniaudioEventFn = Option<unsafe extern "C" fn(user: *mut c_void, event: *const UniaudioEvent) -> i32>;

/// Runs one request (a JSON object: `{"frames": [...], "output_kind": "audio"|"text",
/// "top_k", "temperature", "seed", "max_steps", "cfg_scale"}`; missing sampler fields take
/// `uniaudio generate`'s defaults), calling `on_event` (may be null) with `user` for every
/// sampled frame or text id as it is generated, and stores the output object (the JSON
/// `uniaudio generate` prints) in `*out_json` (free it with `uniaudio_string_free`).
///
/// # Safety
/// `model` is a live model; `request_json` a NUL-terminated string; `out_json` writable;
/// `on_event`, if not null, is callable with `user` for the call's duration.
#[no_mangle]
pub unsafe extern "C" fn uniaudio_generate(model: *mut UniaudioModel, request_json: *const c_char, on_event: UniaudioEventFn, user: *mut c_void, out_json: *mut *mut c_char) -> UniaudioStatus {
    if let Err(s) = non_null("uniaudio_generate", "model, request_json and out_json", &[model.is_null(), request_json.is_null(), out_json.is_null()]) {
        return s;
    }
    guard(|| {
        let text = str_arg(request_json, "request_json")?;
        let (frames, options) = generate_json::parse_request(text, &RequestDefaults::default()).map_err(|e| Error::invalid_input(format!("request_json: {e:#}")))?;
        let mut held = InUse::take(model, "uniaudio_generate")?;
        let (m, abort) = held.model_and_abort();
        if abort.asked() {
            return Err(Error::Cancelled("cancelled".into()).into());
        }
        let mut generation = m.generate(&frames, &options)?;
        while let Some(event) = generation.next_until(&|| abort.asked()) {
            let report = match event? {
                GenerateEvent::Frame(codes) => UniaudioEvent { kind: UniaudioEventKind::Frame, codes, text_id: 0 },
                GenerateEvent::Text(id) => UniaudioEvent { kind: UniaudioEventKind::Text, codes: [0; 8], text_id: id },
                GenerateEvent::Done(out) => {
                    *out_json = c_string(&generate_json::output_json(options.kind, &out).to_string());
                    return Ok(());
                }
            };
            if let Some(f) = on_event {
                if f(user, &report) != 0 {
                    return Err(Failure::Cancelled);
                }
            }
        }
        Err(Error::Internal("the generation ended without its output".into()).into())
    })
}

/// Runs many requests together through the continuously batched engine (up to
/// `max_batch` rows per step; 0 means 8). `requests_jsonl` holds one request object per
/// line (blank lines are skipped); `*out_jsonl` receives one output object per request, in
/// order, each what the request gives alone, or `{"error": "..."}` for one that was
/// refused or failed (free it with `uniaudio_string_free`).
///
/// # Safety
/// `model` is a live model; `requests_jsonl` a NUL-terminated string; `out_jsonl` writable.
#[no_mangle]
pub unsafe extern "C" fn uniaudio_generate_batch(model: *mut UniaudioModel, requests_jsonl: *const c_char, max_batch: usize, out_jsonl: *mut *mut c_char) -> UniaudioStatus {
    if let Err(s) = non_null("uniaudio_generate_batch", "model, requests_jsonl and out_jsonl", &[model.is_null(), requests_jsonl.is_null(), out_jsonl.is_null()]) {
        return s;
    }
    guard(|| {
        let text = str_arg(requests_jsonl, "requests_jsonl")?;
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        let max_batch = if max_batch == 0 { 8 } else { max_batch };
        let mut held = InUse::take(model, "uniaudio_generate_batch")?;
        let (m, abort) = held.model_and_abort();
        let outputs = generate_json::run_batch_until(m, &lines, max_batch, &RequestDefaults::default(), &|| abort.asked())?;
        let mut jsonl = String::new();
        for o in outputs {
            jsonl.push_str(&o.to_string());
            jsonl.push('\n');
        }
        *out_jsonl = c_string(&jsonl);
        Ok(())
    })
}
