//! Counts every answer by route and status, with its latency to the end of its body: a
//! streamed answer is timed to its last event, not to its head. A client that leaves
//! before the last byte of its answer was handed to the connection counts as status 499
//! (nginx's "client closed request"); a body that fails midway counts as 500.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http_body::{Body as _, Frame, SizeHint};

use crate::routes::AppState;

pub async fn record(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let endpoint = request.extensions().get::<MatchedPath>().map_or_else(|| "other".to_string(), |p| p.as_str().to_string());
    let mut pending = Pending { state, endpoint, t: Instant::now(), status: 499 };
    let response = next.run(request).await;
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
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.state.shared.observe_request(&self.endpoint, self.status, self.t.elapsed().as_secs_f64());
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
