//! `uniaudio serve`: JSON over HTTP on one continuously batched engine.
//!
//! One process serves one device: a dedicated engine thread owns the backend, the model
//! and the engine; HTTP handlers (axum on tokio) validate requests, hand them to the
//! engine thread and wait for its replies. Admission is bounded (`queue_limit`: beyond
//! it, 429 with Retry-After), bodies are size-limited before they are read, a client that
//! goes away cancels its sequence, and requests past `timeout` get 504.

mod access_log;
mod api_error;
mod auth;
mod fields;
pub mod load;
pub mod metrics;
mod record;
mod routes;
mod tasks;
mod upload;
mod windows;
mod worker;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use uniaudio::{AnyBackend, ModelPaths};
use uniaudio_lm::EngineOptions;

pub use api_error::ApiError;
pub use metrics::Shared;
pub use worker::Fault;

/// How the server runs.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// Address to listen on (127.0.0.1 unless told otherwise).
    pub host: String,
    /// Port (0: any free port).
    pub port: u16,
    /// The batch and KV budget of the engine.
    pub engine: EngineOptions,
    /// Requests accepted at once (waiting and running); beyond it, 429.
    pub queue_limit: usize,
    /// Per-request deadline; past it, 504 and the sequence is cancelled.
    pub timeout: Option<Duration>,
    /// Required as `Authorization: Bearer KEY` on every route but /health.
    pub api_key: Option<String>,
    /// Largest upload body, bytes (larger: 413 before the body is read); the JSON routes
    /// take less (`/v1/generate` 4 MiB, `/v1/audio/speech` 256 KiB), and never more.
    pub max_body_bytes: usize,
    /// Largest `max_steps` a request may ask for.
    pub max_steps_limit: usize,
    /// Longest uploaded audio, seconds (longer: 413). ASR and lyrics past one prompt are
    /// transcribed in windows of at most 30 s, batched together.
    pub max_audio_seconds: u64,
    /// Uploaded audio the server holds at once across accepted requests, seconds (beyond
    /// it, 429); at least `max_audio_seconds`. Uploads are held at 24 kHz, 96 kB a second.
    pub max_queued_audio_seconds: u64,
    /// Bytes of upload bodies the server holds in memory at once (received, not yet
    /// decoded) across accepted requests; beyond it, 429. At least `max_body_bytes`.
    pub max_upload_buffer_bytes: usize,
    /// How long in-flight requests may take to finish after a shutdown signal.
    pub drain_timeout: Duration,
    /// The name `/v1/models` reports.
    pub model_name: String,
    /// One line per answered request on stderr: time, method, path, status, latency, id
    /// (and a 5xx answer's message).
    pub access_log: bool,
    /// Lets a request carry `"test_fault": "error"|"panic"|"step_panic"|"prefill_panic"`,
    /// or a transcription the multipart field `test_fault=window_error` (tests only; never
    /// from the CLI).
    pub fault_injection: bool,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            host: "127.0.0.1".into(),
            port: 8080,
            engine: EngineOptions::default(),
            queue_limit: 256,
            timeout: Some(Duration::from_secs(600)),
            api_key: None,
            max_body_bytes: 32 << 20,
            max_steps_limit: 1500,
            max_audio_seconds: 600,
            max_queued_audio_seconds: 3600,
            max_upload_buffer_bytes: 1 << 30,
            drain_timeout: Duration::from_secs(30),
            model_name: "uniaudio-2.0".into(),
            access_log: false,
            fault_injection: false,
        }
    }
}

/// A running server (see `start`).
pub struct ServerHandle {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<()>>>,
}

impl ServerHandle {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its live state (readiness, queue, KV use).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Stops accepting, lets in-flight requests finish (up to the drain timeout), and
    /// waits for the engine thread to exit.
    pub fn stop(mut self) -> Result<()> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.join()
    }

    /// Waits until the server exits (after a signal, with `start_with_signals`).
    pub fn join(mut self) -> Result<()> {
        match self.thread.take() {
            Some(t) => t.join().map_err(|_| anyhow::anyhow!("the server thread panicked"))?,
            None => Ok(()),
        }
    }
}

/// Binds, starts loading the model on the engine thread, and serves in the background.
/// `/health` answers 503 until the model is loaded.
pub fn start(model: ModelPaths, backend: AnyBackend, opts: ServeOptions) -> Result<ServerHandle> {
    start_inner(model, backend, opts, false)
}

/// `start`, also stopping gracefully on SIGTERM or SIGINT (the command line's server).
pub fn start_with_signals(model: ModelPaths, backend: AnyBackend, opts: ServeOptions) -> Result<ServerHandle> {
    start_inner(model, backend, opts, true)
}

fn start_inner(model: ModelPaths, backend: AnyBackend, opts: ServeOptions, signals: bool) -> Result<ServerHandle> {
    model.require(uniaudio::Part::Lm, "serve")?;
    if opts.queue_limit == 0 || opts.engine.max_batch == 0 {
        anyhow::bail!("the queue limit and the batch must both be at least 1");
    }
    if opts.max_upload_buffer_bytes < opts.max_body_bytes {
        anyhow::bail!("the upload buffer budget ({} bytes) is below the largest upload body ({} bytes): such an upload could never be received", opts.max_upload_buffer_bytes, opts.max_body_bytes);
    }
    if opts.max_queued_audio_seconds < opts.max_audio_seconds {
        anyhow::bail!("the queued-audio budget ({} s) is below the longest upload ({} s): such an upload could never be accepted", opts.max_queued_audio_seconds, opts.max_audio_seconds);
    }
    let listener = std::net::TcpListener::bind((opts.host.as_str(), opts.port)).with_context(|| format!("listening on {}:{}", opts.host, opts.port))?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let shared = Arc::new(Shared::default());
    let (jobs, receiver) = std::sync::mpsc::channel();
    let engine_thread = {
        let (shared, engine) = (shared.clone(), opts.engine.clone());
        std::thread::Builder::new().name("uniaudio-engine".into()).spawn(move || match backend {
            AnyBackend::Cpu(b) => worker::run(b, model, engine, receiver, shared),
            AnyBackend::Wgpu(b) => worker::run(b, model, engine, receiver, shared),
            AnyBackend::Cuda(b) => worker::run(b, model, engine, receiver, shared),
        })?
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let decodes = Arc::new(tokio::sync::Semaphore::new(std::thread::available_parallelism().map_or(1, |n| n.get())));
    let state = Arc::new(routes::AppState { jobs: std::sync::Mutex::new(jobs), shared: shared.clone(), opts: opts.clone(), decodes });
    let thread = std::thread::Builder::new().name("uniaudio-http".into()).spawn(move || -> Result<()> {
        let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener)?;
            let drain = opts.drain_timeout;
            let (draining_tx, draining_rx) = tokio::sync::oneshot::channel::<()>();
            let shutdown = async move {
                if signals {
                    tokio::select! {
                        _ = stop_rx => {}
                        _ = termination() => eprintln!("shutting down: finishing in-flight requests (up to {} s)", drain.as_secs()),
                    }
                } else {
                    let _ = stop_rx.await;
                }
                let _ = draining_tx.send(());
            };
            let app = routes::router(state);
            let server = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).with_graceful_shutdown(shutdown);
            let deadline = async move {
                let _ = draining_rx.await;
                tokio::time::sleep(drain).await;
            };
            tokio::select! {
                r = server => r.context("serving")?,
                _ = deadline => eprintln!("drain timeout: stopping with requests still in flight"),
            }
            anyhow::Ok(())
        })?;
        // Every job sender is gone with the router: the engine thread drains and exits.
        drop(rt);
        engine_thread.join().map_err(|_| anyhow::anyhow!("the engine thread panicked"))?;
        Ok(())
    })?;
    Ok(ServerHandle { addr, shared, stop: Some(stop_tx), thread: Some(thread) })
}

/// SIGTERM or SIGINT.
async fn termination() {
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
