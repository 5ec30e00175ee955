//! Request ids and the access log: every request gets an id (the client's `X-Request-Id`
//! when it sent a usable one), echoed in the answer's `X-Request-Id`; with the access log
//! on, one line per answered request goes to stderr once its body ends, with the error
//! message of a 5xx answer, so an operator can match a client's report to the server's.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::HeaderMap;

/// The message of an error answer, carried in its response's extensions for the log.
#[derive(Clone)]
pub struct ErrorMessage(pub String);

/// Longest client-sent id kept; longer ones (or ones with spaces or control characters)
/// are replaced by a fresh id.
const MAX_ID_LEN: usize = 128;

/// The client's `X-Request-Id` when it is short, printable ASCII without spaces; a fresh
/// id otherwise.
pub fn request_id(headers: &HeaderMap) -> String {
    let sent = headers.get("x-request-id").and_then(|v| v.to_str().ok()).filter(|v| !v.is_empty() && v.len() <= MAX_ID_LEN && v.bytes().all(|b| b.is_ascii_graphic()));
    match sent {
        Some(id) => id.to_string(),
        None => fresh_id(),
    }
}

/// Unique within a process, and unlikely to repeat across restarts: the start time's low
/// bits, then a counter.
fn fresh_id() -> String {
    static START: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let start = *START.get_or_init(|| SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| (d.as_nanos() as u64 ^ (d.as_secs() << 20)) as u32));
    format!("{start:08x}-{:06}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// What the access log says of one request.
pub struct Entry {
    pub method: String,
    pub path: String,
    pub id: String,
    pub status: u16,
    pub seconds: f64,
    pub error: Option<String>,
}

impl Entry {
    /// `2026-12-06T15:04:05.123Z POST /v1/generate 200 1234.5ms id=...`, then the error's
    /// message (quoted) for a 5xx answer.
    pub fn line(&self, now: SystemTime) -> String {
        let mut out = format!("{} {} {} {} {:.1}ms id={}", utc(now), self.method, self.path, self.status, self.seconds * 1e3, self.id);
        if let Some(e) = self.error.as_ref().filter(|_| self.status >= 500) {
            let _ = write!(out, " error={e:?}");
        }
        out
    }
}

/// RFC 3339 UTC time with milliseconds.
fn utc(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let (y, m, day) = civil_from_days(days);
    format!("{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z", rem / 3600, rem / 60 % 60, rem % 60, d.subsec_millis())
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn dates_are_utc_calendar_dates() {
        let at = |secs: u64, ms: u64| utc(UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(ms));
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000Z");
        // 2000-02-29 (a leap day in a century year divisible by 400), 12:34:56.789.
        assert_eq!(at(951_827_696, 789), "2000-02-29T12:34:56.789Z");
        assert_eq!(at(1_796_601_599, 999), "2026-12-06T23:59:59.999Z");
        assert_eq!(at(4_107_542_400, 0), "2100-03-01T00:00:00.000Z");
    }

    #[test]
    fn a_client_id_is_kept_only_when_it_is_safe_to_log() {
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert("x-request-id", v.parse().unwrap());
            request_id(&h)
        };
        assert_eq!(with("abc-123_XYZ"), "abc-123_XYZ");
        for bad in ["two words", &"x".repeat(129), ""] {
            let id = with(bad);
            assert_ne!(id, bad);
            assert!(id.len() == 15 && id.as_bytes()[8] == b'-', "{id}");
        }
        assert_ne!(request_id(&HeaderMap::new()), request_id(&HeaderMap::new()), "fresh ids differ");
    }

    #[test]
    fn a_line_names_the_request_and_a_server_error() {
        let mut e = Entry { method: "POST".into(), path: "/v1/generate".into(), id: "r1".into(), status: 500, seconds: 0.01234, error: Some("engine \"x\" failed".into()) };
        let t = UNIX_EPOCH + Duration::from_secs(86_400);
        assert_eq!(e.line(t), "1970-01-02T00:00:00.000Z POST /v1/generate 500 12.3ms id=r1 error=\"engine \\\"x\\\" failed\"");
        e.status = 400;
        assert_eq!(e.line(t), "1970-01-02T00:00:00.000Z POST /v1/generate 400 12.3ms id=r1", "client errors are in the metrics, not spelled out");
    }
}
