//! An error answer: a status and a message, as `{"error": {"message", "type"}}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
}

impl ApiError {
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        ApiError { status, message: message.into() }
    }

    pub fn bad_request(m: impl Into<String>) -> Self {
        ApiError::new(400, m)
    }

    pub fn internal(m: impl Into<String>) -> Self {
        ApiError::new(500, m)
    }

    /// A library error with the status its kind deserves: the client's input (400), a part
    /// this model lacks (501), work stopped at the request's deadline (504), or the
    /// server's own failure (500).
    pub fn from_library(e: anyhow::Error) -> Self {
        let e = uniaudio::Error::from(e);
        let status = match e {
            // The engine thread stops a request's codec work at its deadline (or when its
            // client left, and then nobody reads the answer).
            uniaudio::Error::Cancelled(_) => return ApiError::timeout(),
            uniaudio::Error::InvalidInput(_) | uniaudio::Error::Audio(_) => 400,
            uniaudio::Error::MissingPart(_) => 501,
            _ => 500,
        };
        ApiError::new(status, e.message())
    }

    pub fn unavailable(m: impl Into<String>) -> Self {
        ApiError::new(503, m)
    }

    pub fn timeout() -> Self {
        ApiError::new(504, "the request passed its deadline (--timeout) and was cancelled")
    }

    fn kind(&self) -> &'static str {
        match self.status {
            400 | 413 | 422 => "invalid_request_error",
            401 => "authentication_error",
            429 => "rate_limit_error",
            501 => "not_implemented",
            503 => "unavailable",
            504 => "timeout",
            _ => "server_error",
        }
    }
}

/// A body that could not be read: over its route's limit (413, the case for a body
/// without a Content-Length that streams past it), or cut off.
impl From<axum::extract::rejection::BytesRejection> for ApiError {
    fn from(e: axum::extract::rejection::BytesRejection) -> Self {
        match e.status().as_u16() {
            413 => ApiError::new(413, format!("the body is larger than this route takes ({})", e.body_text())),
            status => ApiError::new(status, format!("the body could not be read: {}", e.body_text())),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::json!({"error": {"message": self.message, "type": self.kind()}});
        let mut r = (status, axum::Json(body)).into_response();
        r.extensions_mut().insert(crate::access_log::ErrorMessage(self.message));
        if self.status == 429 {
            r.headers_mut().insert("retry-after", axum::http::HeaderValue::from_static("1"));
        }
        r
    }
}
