//! State shared by the handlers and the engine thread, and its Prometheus text form.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use uniaudio_lm::{Engine, LmConfig};

use uniaudio_runtime::Backend;

/// Upper bounds of the latency histogram, seconds.
const LATENCY_BOUNDS: [f64; 10] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0];
/// Upper bounds of the batch-size histogram, rows per step.
const BATCH_BOUNDS: [f64; 8] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0];

#[derive(Default)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, bounds: &[f64], v: f64) {
        if self.counts.len() != bounds.len() {
            self.counts = vec![0; bounds.len()];
        }
        for (c, &b) in self.counts.iter_mut().zip(bounds) {
            if v <= b {
                *c += 1;
            }
        }
        self.sum += v;
        self.count += 1;
    }

    fn write(&self, out: &mut String, name: &str, bounds: &[f64]) {
        for (i, b) in bounds.iter().enumerate() {
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {}", self.counts.get(i).copied().unwrap_or(0));
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}\n{name}_sum {}\n{name}_count {}", self.count, self.sum, self.count);
    }
}

#[derive(Default)]
struct Counters {
    /// (endpoint, status) -> requests.
    requests: BTreeMap<(String, u16), u64>,
    latency: Histogram,
    batch: Histogram,
    frames_per_second: f64,
}

/// Adds `n` to what `held` counts unless that passes `budget` (then nothing is added).
fn hold_within(held: &AtomicUsize, n: usize, budget: usize) -> bool {
    held.fetch_update(Ordering::AcqRel, Ordering::Acquire, |h| h.checked_add(n).filter(|&total| total <= budget)).is_ok()
}

/// What the server knows about itself.
#[derive(Default)]
pub struct Shared {
    ready: AtomicBool,
    failed: Mutex<Option<String>>,
    /// Requests accepted and not yet answered (waiting or running).
    pub in_flight: AtomicUsize,
    /// Accepted requests with a sequence decoding (a long upload's windows count once).
    running: AtomicUsize,
    /// Samples of uploaded audio (24 kHz) held by accepted requests.
    audio_held: AtomicUsize,
    /// Bytes of upload bodies in memory (being received, or waiting to be decoded).
    upload_bytes: AtomicUsize,
    active: AtomicUsize,
    rows: AtomicUsize,
    kv_used: AtomicUsize,
    kv_budget: AtomicUsize,
    max_seq_len: AtomicUsize,
    generated: AtomicU64,
    cancelled: AtomicU64,
    panics: AtomicU64,
    counters: Mutex<Counters>,
}

impl Shared {
    pub fn set_ready(&self, config: &LmConfig, kv_budget: usize) {
        self.max_seq_len.store(config.max_seq_len, Ordering::Relaxed);
        self.kv_budget.store(kv_budget, Ordering::Relaxed);
        self.ready.store(true, Ordering::Release);
    }

    pub fn set_failed(&self, msg: String) {
        eprintln!("error: {msg}");
        *self.failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(msg);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    pub fn failure(&self) -> Option<String> {
        self.failed.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn max_seq_len(&self) -> usize {
        self.max_seq_len.load(Ordering::Relaxed)
    }

    pub fn observe_engine<B: Backend>(&self, e: &Engine<'_, B>) {
        self.active.store(e.active(), Ordering::Relaxed);
        self.rows.store(e.rows(), Ordering::Relaxed);
        self.kv_used.store(e.kv().used(), Ordering::Relaxed);
    }

    /// Accepted requests with a sequence decoding now.
    pub fn observe_running(&self, requests: usize) {
        self.running.store(requests, Ordering::Relaxed);
    }

    /// Holds `samples` more of uploaded audio unless that passes `budget`.
    pub fn try_hold_audio(&self, samples: usize, budget: usize) -> bool {
        hold_within(&self.audio_held, samples, budget)
    }

    pub fn release_audio(&self, samples: usize) {
        self.audio_held.fetch_sub(samples, Ordering::AcqRel);
    }

    /// Samples of uploaded audio held now.
    pub fn audio_held(&self) -> usize {
        self.audio_held.load(Ordering::Acquire)
    }

    /// Holds `bytes` more of upload bodies in memory unless that passes `budget`.
    pub fn try_hold_upload_bytes(&self, bytes: usize, budget: usize) -> bool {
        hold_within(&self.upload_bytes, bytes, budget)
    }

    pub fn release_upload_bytes(&self, bytes: usize) {
        self.upload_bytes.fetch_sub(bytes, Ordering::AcqRel);
    }

    /// Bytes of upload bodies in memory now (being received, or waiting to be decoded).
    pub fn upload_bytes_held(&self) -> usize {
        self.upload_bytes.load(Ordering::Acquire)
    }

    pub fn observe_step(&self, rows: usize, produced: usize, took: Duration) {
        self.generated.fetch_add(produced as u64, Ordering::Relaxed);
        let mut c = self.lock();
        c.batch.observe(&BATCH_BOUNDS, rows as f64);
        c.frames_per_second = produced as f64 / took.as_secs_f64().max(1e-9);
    }

    /// No sequence is running: the throughput gauge reads 0, not the last step's rate.
    pub fn observe_idle(&self) {
        self.lock().frames_per_second = 0.0;
    }

    pub fn observe_request(&self, endpoint: &str, status: u16, seconds: f64) {
        let mut c = self.lock();
        *c.requests.entry((endpoint.to_string(), status)).or_default() += 1;
        c.latency.observe(&LATENCY_BOUNDS, seconds);
    }

    pub fn count_cancelled(&self) {
        self.cancelled.fetch_add(1, Ordering::Relaxed);
    }

    pub fn count_panic(&self) {
        self.panics.fetch_add(1, Ordering::Relaxed);
    }

    /// Sequences running in the engine now.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// KV-cache bytes held now.
    pub fn kv_used(&self) -> usize {
        self.kv_used.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counters> {
        self.counters.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let gauge = |out: &mut String, name: &str, help: &str, v: f64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        };
        let in_flight = self.in_flight.load(Ordering::Relaxed);
        let active = self.active();
        gauge(&mut out, "uniaudio_ready", "1 once the model is loaded", self.is_ready() as u8 as f64);
        let running = self.running.load(Ordering::Relaxed);
        gauge(&mut out, "uniaudio_queue_depth", "Accepted requests without a running sequence (reading their upload, or waiting for room)", in_flight.saturating_sub(running) as f64);
        gauge(&mut out, "uniaudio_active_sequences", "Sequences decoding now", active as f64);
        gauge(&mut out, "uniaudio_uploaded_audio_seconds", "Seconds of uploaded audio held by accepted requests", self.audio_held() as f64 / crate::upload::UPLOAD_RATE as f64);
        gauge(&mut out, "uniaudio_upload_buffer_bytes", "Bytes of upload bodies in memory (being received, or waiting to be decoded)", self.upload_bytes_held() as f64);
        gauge(&mut out, "uniaudio_batch_rows", "Rows in the current step", self.rows.load(Ordering::Relaxed) as f64);
        gauge(&mut out, "uniaudio_kv_used_bytes", "KV-cache bytes held by running sequences", self.kv_used() as f64);
        gauge(&mut out, "uniaudio_kv_budget_bytes", "KV-cache byte budget", self.kv_budget.load(Ordering::Relaxed) as f64);
        let c = self.lock();
        gauge(&mut out, "uniaudio_frames_per_second", "Frames and tokens generated per second in the last step", c.frames_per_second);
        let counter = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
        };
        counter(&mut out, "uniaudio_generated_total", "Frames and text tokens generated", self.generated.load(Ordering::Relaxed));
        counter(&mut out, "uniaudio_cancelled_total", "Requests cancelled because the client went away", self.cancelled.load(Ordering::Relaxed));
        counter(&mut out, "uniaudio_panics_total", "Panics caught: in a request's handling, its prefill, or a batched step (once for all the requests it failed)", self.panics.load(Ordering::Relaxed));
        let _ = writeln!(out, "# HELP uniaudio_requests_total Requests by endpoint and status\n# TYPE uniaudio_requests_total counter");
        for ((endpoint, status), n) in &c.requests {
            let _ = writeln!(out, "uniaudio_requests_total{{endpoint=\"{endpoint}\",status=\"{status}\"}} {n}");
        }
        let _ = writeln!(out, "# HELP uniaudio_request_seconds Request latency\n# TYPE uniaudio_request_seconds histogram");
        c.latency.write(&mut out, "uniaudio_request_seconds", &LATENCY_BOUNDS);
        let _ = writeln!(out, "# HELP uniaudio_batch_size Rows per engine step\n# TYPE uniaudio_batch_size histogram");
        c.batch.write(&mut out, "uniaudio_batch_size", &BATCH_BOUNDS);
        out
    }
}
