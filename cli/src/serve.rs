//! `uniaudio serve`: the HTTP service (see the `uniaudio-server` crate).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use uniaudio_lm::EngineOptions;
use uniaudio_server::ServeOptions;

use crate::backend::BackendChoice;

#[derive(Args)]
pub struct ServeArgs {
    /// A bundle or LM directory (or UNIAUDIO_MODEL).
    #[arg(long)]
    model: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "auto")]
    backend: BackendChoice,
    /// Address to listen on; 127.0.0.1 keeps the server local.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Most rows decoded per step (a guided request takes two).
    #[arg(long, default_value_t = 16)]
    max_batch: usize,
    /// KV-cache bytes for all running requests (K/M/G suffixes; default: half the free memory).
    #[arg(long, value_parser = crate::requests::parse_bytes)]
    kv_budget: Option<usize>,
    /// Requests accepted at once, waiting or running; beyond it, 429 with Retry-After.
    #[arg(long, default_value_t = 256)]
    queue_limit: usize,
    /// Seconds a request may take before it is cancelled with 504 (0: no deadline).
    #[arg(long, default_value_t = 600)]
    timeout: u64,
    /// Require `Authorization: Bearer KEY` on every route but /health (or UNIAUDIO_API_KEY).
    #[arg(long, env = "UNIAUDIO_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Largest upload body in MiB (the JSON routes take less: /v1/generate 4 MiB,
    /// /v1/audio/speech 256 KiB); larger bodies get 413 before they are read.
    #[arg(long, default_value_t = 32)]
    max_body_mib: usize,
    /// Largest `max_steps` a request may ask for; task requests that leave it out run at
    /// most this many steps too.
    #[arg(long, default_value_t = 1500)]
    max_steps_limit: usize,
    /// Longest uploaded audio in seconds (longer: 413). Transcriptions past one prompt are
    /// cut into windows of at most 30 s at quiet moments, run as one batch, and joined.
    #[arg(long, default_value_t = 600)]
    max_audio_seconds: u64,
    /// Seconds of uploaded audio held at once across accepted requests (96 kB each);
    /// beyond it, 429. At least --max-audio-seconds.
    #[arg(long, default_value_t = 3600)]
    max_queued_audio_seconds: u64,
    /// MiB of upload bodies held in memory at once across accepted requests (received, not
    /// yet decoded); beyond it, 429. At least --max-body-mib.
    #[arg(long, default_value_t = 1024)]
    max_upload_buffer_mib: usize,
    /// Write no access log (by default, one line per answered request on stderr: time,
    /// method, path, status, latency, request id, and a 5xx answer's message).
    #[arg(long)]
    no_access_log: bool,
    /// Seconds in-flight requests may take to finish after SIGTERM/SIGINT.
    #[arg(long, default_value_t = 30)]
    drain_timeout: u64,
}

pub fn run(args: ServeArgs) -> Result<()> {
    let paths = uniaudio::ModelPaths::resolve(args.model.as_deref(), None, None)?;
    let lm_dir = paths.require(uniaudio::Part::Lm, "serve")?.to_path_buf();
    if args.api_key.as_deref().is_some_and(str::is_empty) {
        anyhow::bail!("--api-key: the key is empty");
    }
    if args.max_upload_buffer_mib < args.max_body_mib {
        anyhow::bail!("--max-upload-buffer-mib {} is below --max-body-mib {}: an upload that large could never be received", args.max_upload_buffer_mib, args.max_body_mib);
    }
    if args.max_queued_audio_seconds < args.max_audio_seconds {
        anyhow::bail!("--max-queued-audio-seconds {} is below --max-audio-seconds {}: an upload that long could never be accepted", args.max_queued_audio_seconds, args.max_audio_seconds);
    }
    let backend = args.backend.open()?;
    let described = backend.describe();
    let opts = ServeOptions {
        host: args.host.clone(),
        port: args.port,
        engine: EngineOptions { max_batch: args.max_batch, kv_budget: args.kv_budget },
        queue_limit: args.queue_limit,
        timeout: (args.timeout > 0).then(|| Duration::from_secs(args.timeout)),
        api_key: args.api_key.clone(),
        max_body_bytes: args.max_body_mib.max(1) << 20,
        max_steps_limit: args.max_steps_limit,
        max_audio_seconds: args.max_audio_seconds.max(1),
        max_queued_audio_seconds: args.max_queued_audio_seconds.max(1),
        max_upload_buffer_bytes: args.max_upload_buffer_mib.max(1) << 20,
        drain_timeout: Duration::from_secs(args.drain_timeout),
        model_name: lm_dir.file_name().map_or("uniaudio-2.0".into(), |n| n.to_string_lossy().into_owned()),
        access_log: !args.no_access_log,
        fault_injection: false,
    };
    let server = uniaudio_server::start_with_signals(paths, backend, opts).context("starting the server")?;
    eprintln!("serving {} on http://{} ({described}); /health turns ok once the model is loaded", lm_dir.display(), server.addr());
    server.join()?;
    eprintln!("stopped");
    Ok(())
}
