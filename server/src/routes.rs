//! The HTTP surface: routes, limits and the raw-engine endpoint.

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_stream::StreamExt;
use uniaudio::generate_json::{request_from_value, RequestDefaults, MAX_REQUEST_BYTES};
use uniaudio_lm::GenerateOptions;

use crate::worker::{Fault, Job, Reply, Sink};
use crate::{ApiError, ServeOptions, Shared};

pub struct AppState {
    pub jobs: Mutex<std::sync::mpsc::Sender<Job>>,
    pub shared: Arc<Shared>,
    pub opts: ServeOptions,
    /// Uploads decoding at once (one per core).
    pub decodes: Arc<tokio::sync::Semaphore>,
}

pub fn router(state: Arc<AppState>) -> Router {
    let max_body = state.opts.max_body_bytes;
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/v1/models", get(models))
        // A JSON body is held whole before it is parsed: far less than an upload.
        .route("/v1/generate", limited(post(generate), MAX_REQUEST_BYTES, max_body))
        .route("/v1/audio/speech", limited(post(crate::tasks::speech), crate::tasks::MAX_SPEECH_BODY_BYTES, max_body))
        .route("/v1/audio/transcriptions", limited(post(crate::tasks::transcriptions), max_body, max_body))
        .route("/v1/audio/answer", limited(post(crate::tasks::answer), max_body, max_body))
        .route("/v1/audio/reply", limited(post(crate::tasks::reply), max_body, max_body))
        .layer(middleware::from_fn_with_state(state.clone(), crate::auth::require_key))
        .layer(middleware::from_fn_with_state(state.clone(), crate::record::record))
        .with_state(state)
}

/// A route's body limit: at most `bytes`, and never more than `--max-body-mib`.
#[derive(Clone, Copy)]
struct BodyLimit {
    bytes: usize,
    /// Whether the limit is `--max-body-mib` itself (the message then names the flag).
    is_flag: bool,
}

/// `route` with its body limit: a declared Content-Length above it is refused before the
/// body is read, and a body without one is cut off at the limit as it streams in.
fn limited(route: MethodRouter<Arc<AppState>>, bytes: usize, max_body: usize) -> MethodRouter<Arc<AppState>> {
    let limit = BodyLimit { bytes: bytes.min(max_body), is_flag: bytes >= max_body };
    route.layer(DefaultBodyLimit::max(limit.bytes)).layer(middleware::from_fn_with_state(limit, refuse_large_bodies))
}

async fn refuse_large_bodies(State(limit): State<BodyLimit>, request: Request, next: Next) -> Response {
    let declared = request.headers().get("content-length").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if let Some(n) = declared.filter(|&n| n > limit.bytes as u64) {
        let flag = if limit.is_flag { " (--max-body-mib)" } else { "" };
        let mut r = ApiError::new(413, format!("the body is {n} bytes; {} takes at most {}{flag}", request.uri().path(), limit.bytes)).into_response();
        // The unread body would otherwise be parsed as the next request.
        r.headers_mut().insert("connection", axum::http::HeaderValue::from_static("close"));
        return r;
    }
    next.run(request).await
}

async fn health(State(state): State<Arc<AppState>>) -> Response {
    let s = &state.shared;
    if let Some(msg) = s.failure() {
        return (axum::http::StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "failed", "error": msg}))).into_response();
    }
    if !s.is_ready() {
        return (axum::http::StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "loading"}))).into_response();
    }
    Json(json!({"status": "ok"})).into_response()
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    ([("content-type", "text/plain; version=0.0.4")], state.shared.render()).into_response()
}

async fn models(State(state): State<Arc<AppState>>) -> Json<Value> {
    Json(json!({"object": "list", "data": [{"id": state.opts.model_name, "object": "model", "owned_by": "uniaudio"}]}))
}

/// An accepted request: counted in flight, with the uploaded audio it holds, until dropped.
pub(crate) struct InFlight {
    shared: Arc<Shared>,
    audio_samples: usize,
    /// When the request must be answered by (`--timeout` after its admission).
    deadline: Option<Instant>,
}

impl InFlight {
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// The server's shared state (its counters and budgets).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Counts an upload's decoded samples against the server's budget for uploaded audio
    /// held at once (`--max-queued-audio-seconds`), or refuses with 429.
    pub fn hold_audio(&mut self, samples: usize, budget_samples: usize) -> Result<(), ApiError> {
        if !self.shared.try_hold_audio(samples, budget_samples) {
            let rate = crate::upload::UPLOAD_RATE as usize;
            return Err(ApiError::new(
                429,
                format!("the server holds {} s of uploaded audio already; this upload's {} s would pass its budget of {} s (--max-queued-audio-seconds); retry later", self.shared.audio_held() / rate, samples / rate, budget_samples / rate),
            ));
        }
        self.audio_samples += samples;
        Ok(())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.shared.release_audio(self.audio_samples);
        self.shared.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Admits one more request or refuses with 429 (queue full) or 503 (not loaded).
pub(crate) fn admit(state: &AppState) -> Result<InFlight, ApiError> {
    let s = &state.shared;
    if let Some(m) = s.failure() {
        return Err(ApiError::unavailable(format!("the server failed: {m}")));
    }
    if !s.is_ready() {
        return Err(ApiError::unavailable("the model is still loading; retry when /health says ok"));
    }
    let limit = state.opts.queue_limit;
    if s.in_flight.fetch_add(1, Ordering::AcqRel) >= limit {
        s.in_flight.fetch_sub(1, Ordering::AcqRel);
        return Err(ApiError::new(429, format!("the server has {limit} requests in flight (--queue-limit); retry later")));
    }
    Ok(InFlight { shared: s.clone(), audio_samples: 0, deadline: state.opts.timeout.map(|t| Instant::now() + t) })
}

/// Hands an admitted request's job, with its deadline, to the engine thread; the replies
/// come on the returned channel.
pub(crate) fn enqueue(state: &AppState, guard: &InFlight, job: impl FnOnce(Sink, Option<Instant>) -> Job) -> Result<UnboundedReceiver<Reply>, ApiError> {
    let (sink, replies) = tokio::sync::mpsc::unbounded_channel();
    state.jobs.lock().unwrap_or_else(|p| p.into_inner()).send(job(sink, guard.deadline)).map_err(|_| ApiError::unavailable("the server is shutting down"))?;
    Ok(replies)
}

/// `POST /v1/generate`: one request object of `generate --requests`; the answer is the
/// object `uniaudio generate` prints, or with `"stream": true` Server-Sent Events (`frame`
/// or `text` per step, then `done` with the whole object, or `error`).
async fn generate(State(state): State<Arc<AppState>>, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    // A prompt is at most a few thousand frames: its body is limited to MAX_REQUEST_BYTES
    // (`body_limit`) before it is parsed.
    let body = body?;
    let value: Value = serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("the body is not JSON: {e}")))?;
    let obj = value.as_object().ok_or_else(|| ApiError::bad_request("the body must be a JSON object"))?;
    let stream = match obj.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(ApiError::bad_request("`stream` must be true or false")),
    };
    let fault = match (state.opts.fault_injection, obj.get("test_fault").and_then(Value::as_str)) {
        (true, Some("error")) => Some(Fault::Error),
        (true, Some("panic")) => Some(Fault::Panic),
        (true, Some("step_panic")) => Some(Fault::StepPanic),
        (true, Some("prefill_panic")) => Some(Fault::PrefillPanic),
        _ => None,
    };
    // An absent `max_steps` takes the default capped to this server's limit; only one the
    // client asked for is refused above it.
    let mut options = GenerateOptions::default();
    options.max_steps = options.max_steps.min(state.opts.max_steps_limit);
    let defaults = RequestDefaults { kind: None, options };
    let (frames, opts) = request_from_value(&value, &defaults).map_err(|e| ApiError::bad_request(format!("{e:#}")))?;
    if opts.max_steps > state.opts.max_steps_limit {
        return Err(ApiError::bad_request(format!("`max_steps` {} is above this server's limit of {}", opts.max_steps, state.opts.max_steps_limit)));
    }
    let max_len = state.shared.max_seq_len();
    if max_len > 0 && frames.len() > max_len {
        return Err(ApiError::new(413, format!("`frames` holds {} frames; the model's context is {max_len} positions", frames.len())));
    }
    let guard = admit(&state)?;
    let mut replies = enqueue(&state, &guard, |sink, deadline| Job::Generate { frames, opts, sink, deadline, fault })?;
    if stream {
        let events = UnboundedReceiverStream::new(replies).map(move |reply| {
            let _held = &guard;
            Ok::<_, Infallible>(match reply {
                Reply::Frame(codes) => Event::default().event("frame").data(json!({"frame": codes}).to_string()),
                Reply::Text(token) => Event::default().event("text").data(json!({"token": token}).to_string()),
                Reply::Done(Ok(v)) => Event::default().event("done").data(v.to_string()),
                Reply::Done(Err(e)) | Reply::Task(Err(e)) => Event::default().event("error").data(json!({"status": e.status, "message": e.message}).to_string()),
                Reply::Task(Ok(_)) => Event::default().event("error").data(json!({"status": 500, "message": "unexpected task reply"}).to_string()),
            })
        });
        return Ok(Sse::new(events).into_response());
    }
    // Streamed pieces are not needed here; the final object carries them.
    while let Some(reply) = replies.recv().await {
        if let Reply::Done(result) = reply {
            drop(guard);
            return result.map(|v| Json(v).into_response());
        }
    }
    drop(guard);
    Err(ApiError::internal("the engine stopped before answering"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accepted(shared: &Arc<Shared>) -> InFlight {
        shared.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight { shared: shared.clone(), audio_samples: 0, deadline: None }
    }

    #[test]
    fn uploaded_audio_is_held_within_the_budget_until_its_request_ends() {
        let shared = Arc::new(Shared::default());
        let second = crate::upload::UPLOAD_RATE as usize;
        let budget = 3 * second;
        let mut first = accepted(&shared);
        first.hold_audio(2 * second, budget).unwrap();
        let mut other = accepted(&shared);
        let e = other.hold_audio(2 * second, budget).unwrap_err();
        assert_eq!(e.status, 429);
        assert!(e.message.contains("holds 2 s") && e.message.contains("--max-queued-audio-seconds"), "{}", e.message);
        // A refused hold takes nothing; what fits still does.
        other.hold_audio(second, budget).unwrap();
        assert_eq!(shared.audio_held(), 3 * second);
        drop(first);
        other.hold_audio(2 * second, budget).unwrap();
        assert_eq!(shared.audio_held(), 3 * second);
        drop(other);
        assert_eq!((shared.audio_held(), shared.in_flight.load(Ordering::Acquire)), (0, 0));
    }
}
