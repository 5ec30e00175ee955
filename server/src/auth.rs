//! `--api-key`: every route but /health needs `Authorization: Bearer KEY`.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::routes::AppState;
use crate::ApiError;

/// Equal in time that depends only on the lengths, not on where the bytes differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub async fn require_key(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let Some(key) = state.opts.api_key.as_deref() else { return next.run(request).await };
    if request.uri().path() == "/health" {
        return next.run(request).await;
    }
    let given = request.headers().get("authorization").and_then(|v| v.to_str().ok()).and_then(bearer_token);
    match given {
        Some(g) if constant_time_eq(g.as_bytes(), key.as_bytes()) => next.run(request).await,
        _ => {
            let mut r = ApiError::new(401, "missing or wrong API key (send Authorization: Bearer KEY)").into_response();
            r.headers_mut().insert("www-authenticate", axum::http::HeaderValue::from_static("Bearer"));
            r
        }
    }
}

/// The token of an `Authorization: Bearer TOKEN` value; the scheme name is
/// case-insensitive (RFC 7235).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim_start_matches(' '))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        assert_eq!(super::bearer_token("Bearer k1"), Some("k1"));
        assert_eq!(super::bearer_token("bearer k1"), Some("k1"));
        assert_eq!(super::bearer_token("BEARER  k1"), Some("k1"));
        assert_eq!(super::bearer_token("Basic k1"), None);
        assert_eq!(super::bearer_token("Bearerk1"), None);
    }

    #[test]
    fn compares_whole_keys() {
        assert!(super::constant_time_eq(b"secret", b"secret"));
        assert!(!super::constant_time_eq(b"secret", b"secreT"));
        assert!(!super::constant_time_eq(b"secret", b"secret2"));
        assert!(!super::constant_time_eq(b"", b"x"));
    }
}
