//! Counts every answer by route and status, with its latency to the end of its body: a
//! streamed answer is timed to its last event, not to its head. A client that leaves
//! before the last byte of its answer was handed to the connection counts as status 499
//! (nginx's "client closed request"); a body that fails midway counts as 500. Every
//! answer carries its request's `X-Request-Id`, and is written to the access log when
//! that is on (`access_log`).

use std::io::Write as _;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http_body::{Body as _, Frame, SizeHint};

use crate::access_log::{request_id, Entry, ErrorMessage};
use crate::routes::AppState;

pub async fn record(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let endpoint = request.extensions().get::<MatchedPath>().map_or_else(|| "other".to_string(), |p| p.as_str().to_string());
    let id = request_id(request.headers());
    let entry = state.opts.access_log.then(|| Entry { method: request.method().to_string(), path: request.uri().path().to_string(), id: id.clone(), status: 499, seconds: 0.0, error: None });
    let mut pending = Pending { state, endpoint, t: Instant::now(), status: 499, entry };
    let mut response = next.run(request).await;
    if let Ok(v) = axum::http::HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", v);
    }
    if let (Some(entry), Some(e)) = (pending.entry.as_mut(), response.extensions().get::<ErrorMessage>()) {
        entry.error = Some(e.0.clone());
    }
    let (parts, body) = response.into_parts();
    if body.is_end_stream() {
        pending.status = parts.status.as_u16();
        return Response::from_parts(parts, body);
    }
    // Observed when the body ends; if it is dropped before, the client left: 499.
    let recorded = RecordedBody { inner: body, pending, status: parts.status.as_u16() };
    Response::from_parts(parts, Body::new(recorded))
}

/// One request being answered; observed when dropped, whether answered or abandoned.
struct Pending {
    state: Arc<AppState>,
    endpoint: String,
    t: Instant,
    status: u16,
    /// The access-log line's fields, when the log is on.
    entry: Option<Entry>,
}

impl Drop for Pending {
    fn drop(&mut self) {
        let seconds = self.t.elapsed().as_secs_f64();
        self.state.shared.observe_request(&self.endpoint, self.status, seconds);
        if let Some(mut entry) = self.entry.take() {
            (entry.status, entry.seconds) = (self.status, seconds);
            // A log that cannot be written (stderr closed) must not fail the request.
            let _ = writeln!(std::io::stderr().lock(), "{}", entry.line(std::time::SystemTime::now()));
        }
    }
}

/// A response body that observes its request once the last frame has been taken.
struct RecordedBody {
    inner: Body,
    pending: Pending,
    /// The answer's status, recorded once the body has ended.
    status: u16,
}

impl http_body::Body for RecordedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            // The client got a cut-off answer.
            Poll::Ready(Some(Err(_))) => this.pending.status = 500,
            // Ended, or just handed over its last frame (the connection may never poll
            // again after one, nor after trailers).
            Poll::Ready(None) if this.pending.status == 499 => this.pending.status = this.status,
            Poll::Ready(Some(Ok(frame))) if frame.is_trailers() || this.inner.is_end_stream() => this.pending.status = this.status,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
