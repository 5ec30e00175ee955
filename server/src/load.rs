//! A load generator for `uniaudio bench-serve`: C concurrent clients send streamed
//! generation requests to a server and time each one (time to the first streamed event,
//! time to the whole answer).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;

/// One run at one concurrency.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LoadReport {
    pub clients: usize,
    pub requests: usize,
    pub failed: usize,
    pub seconds: f64,
    pub requests_per_second: f64,
    /// Frames streamed back per wall second, all clients together.
    pub frames_per_second: f64,
    /// Seconds of audio those frames hold (17.5 frames per second) per wall second.
    pub audio_seconds_per_second: f64,
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    pub first_event_p50_ms: f64,
    pub first_event_p99_ms: f64,
}

struct Timed {
    first_event: f64,
    total: f64,
    frames: usize,
}

/// One streamed request: time to the first event, time to the end, frames received.
fn one(addr: SocketAddr, body: &[u8], api_key: Option<&str>) -> Result<Timed> {
    let t = Instant::now();
    let mut s = TcpStream::connect(addr).context("connecting")?;
    s.set_read_timeout(Some(Duration::from_secs(600)))?;
    let auth = api_key.map_or(String::new(), |k| format!("authorization: Bearer {k}\r\n"));
    let head = format!("POST /v1/generate HTTP/1.1\r\nhost: bench\r\nconnection: close\r\ncontent-type: application/json\r\n{auth}content-length: {}\r\n\r\n", body.len());
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 << 10];
    let mut first_event = None;
    loop {
        let n = s.read(&mut buf)?;
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
        if first_event.is_none() && raw.windows(6).any(|w| w == b"event:") {
            first_event = Some(t.elapsed().as_secs_f64());
        }
    }
    let total = t.elapsed().as_secs_f64();
    let text = String::from_utf8_lossy(&raw);
    if !text.starts_with("HTTP/1.1 200") {
        bail!("{}", text.lines().next().unwrap_or("no answer"));
    }
    if !text.contains("event: done") {
        bail!("the stream ended without its final event");
    }
    let frames = text.matches("event: frame").count();
    Ok(Timed { first_event: first_event.unwrap_or(total), total, frames })
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// `clients` threads send `requests` copies of `request` (a /v1/generate object; it is
/// sent with `"stream": true`) as fast as answers come back.
pub fn run_load(addr: SocketAddr, clients: usize, requests: usize, request: &Value, api_key: Option<&str>) -> Result<LoadReport> {
    let mut body = request.clone();
    body["stream"] = Value::Bool(true);
    let body = body.to_string().into_bytes();
    let next = AtomicUsize::new(0);
    let start = Instant::now();
    let results: Vec<Result<Timed>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients.max(1))
            .map(|_| {
                s.spawn(|| {
                    let mut out = Vec::new();
                    while next.fetch_add(1, Ordering::Relaxed) < requests {
                        out.push(one(addr, &body, api_key));
                    }
                    out
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap_or_default()).collect()
    });
    let seconds = start.elapsed().as_secs_f64();
    let ok: Vec<&Timed> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    if let Some(Err(e)) = results.iter().find(|r| r.is_err()) {
        eprintln!("note: {} of {requests} requests failed, e.g.: {e:#}", results.len() - ok.len());
    }
    let mut latency: Vec<f64> = ok.iter().map(|t| t.total * 1e3).collect();
    let mut first: Vec<f64> = ok.iter().map(|t| t.first_event * 1e3).collect();
    latency.sort_by(f64::total_cmp);
    first.sort_by(f64::total_cmp);
    let frames: usize = ok.iter().map(|t| t.frames).sum();
    Ok(LoadReport {
        clients,
        requests,
        failed: results.len() - ok.len(),
        seconds,
        requests_per_second: ok.len() as f64 / seconds,
        frames_per_second: frames as f64 / seconds,
        audio_seconds_per_second: frames as f64 / 17.5 / seconds,
        latency_p50_ms: percentile(&latency, 0.5),
        latency_p99_ms: percentile(&latency, 0.99),
        first_event_p50_ms: percentile(&first, 0.5),
        first_event_p99_ms: percentile(&first, 0.99),
    })
}
