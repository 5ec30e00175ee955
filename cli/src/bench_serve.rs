//! `uniaudio bench-serve`: a local server under 1, 4, 16, 64... concurrent streaming
//! clients: sustained requests/s, frames and audio seconds per wall second, latency and
//! time to the first streamed frame.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use uniaudio_lm::bench::text_prompt;
use uniaudio_lm::presets::Preset;
use uniaudio_lm::EngineOptions;
use uniaudio_runtime::DType;
use uniaudio_server::load::run_load;
use uniaudio_server::ServeOptions;

use crate::backend::BackendChoice;

#[derive(Args)]
pub struct BenchServeArgs {
    /// A bundle or LM directory; default: the synthesized `small` preset of `uniaudio bench`.
    #[arg(long)]
    model: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "auto")]
    backend: BackendChoice,
    /// Concurrent clients to measure at.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16,64")]
    clients: Vec<usize>,
    /// Requests per run (at least the number of clients).
    #[arg(long, default_value_t = 64)]
    requests: usize,
    /// Audio frames per request.
    #[arg(long, default_value_t = 16)]
    frames: usize,
    /// Prompt length in text frames.
    #[arg(long, default_value_t = 32)]
    prompt_len: usize,
    /// Rows the engine decodes per step.
    #[arg(long, default_value_t = 64)]
    max_batch: usize,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

pub fn run(args: BenchServeArgs) -> Result<()> {
    if args.clients.iter().any(|&c| c == 0 || c > 1024) || args.frames == 0 || args.prompt_len < 2 {
        bail!("--clients must be 1..=1024, --frames >= 1, --prompt-len >= 2");
    }
    crate::output::check_report_path(args.json.as_deref())?;
    let dir = match &args.model {
        Some(d) => d.clone(),
        None => crate::bench::preset_model(Preset::Small, DType::BF16)?,
    };
    let paths = uniaudio::ModelPaths::resolve(Some(&dir), None, None)?;
    let backend = args.backend.open()?;
    let described = backend.describe();
    let opts = ServeOptions { port: 0, queue_limit: 4096, engine: EngineOptions { max_batch: args.max_batch, kv_budget: None }, ..Default::default() };
    let server = uniaudio_server::start(paths, backend, opts).context("starting the server")?;
    let t = Instant::now();
    while !server.shared().is_ready() {
        if let Some(e) = server.shared().failure() {
            bail!("the server failed to load the model: {e}");
        }
        if t.elapsed() > Duration::from_secs(600) {
            bail!("the model did not load within 10 minutes");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    println!("model {} on {described}, engine batch {} rows, {} frames per request", dir.display(), args.max_batch, args.frames);
    let frames: Vec<serde_json::Value> = text_prompt(args.prompt_len, 7)
        .into_iter()
        .map(|f| match f {
            uniaudio_lm::Frame::Text(id) => serde_json::json!({"text": id}),
            uniaudio_lm::Frame::Audio(c) => serde_json::json!({"audio": c}),
        })
        .collect();
    let request = serde_json::json!({"frames": frames, "output_kind": "audio", "top_k": 50, "temperature": 0.9, "seed": 1, "max_steps": args.frames});
    // Warm-up: pages weights in, compiles kernels.
    run_load(server.addr(), 1, 1, &request, None)?;
    println!("{:>7} {:>8} {:>8} {:>10} {:>10} {:>12} {:>10} {:>10} {:>12} {:>12}", "clients", "requests", "failed", "req/s", "frames/s", "audio s/s", "p50 ms", "p99 ms", "first p50", "first p99");
    let mut reports = Vec::new();
    for &c in &args.clients {
        let r = run_load(server.addr(), c, args.requests.max(c), &request, None)?;
        println!(
            "{:>7} {:>8} {:>8} {:>10.2} {:>10.2} {:>12.3} {:>10.0} {:>10.0} {:>12.0} {:>12.0}",
            r.clients, r.requests, r.failed, r.requests_per_second, r.frames_per_second, r.audio_seconds_per_second, r.latency_p50_ms, r.latency_p99_ms, r.first_event_p50_ms, r.first_event_p99_ms
        );
        reports.push(r);
    }
    server.stop()?;
    if let Some(path) = &args.json {
        let json = serde_json::json!({"model": dir, "backend": described, "max_batch": args.max_batch, "frames_per_request": args.frames, "runs": reports});
        crate::output::write_atomically(path, &serde_json::to_string_pretty(&json)?)?;
    }
    Ok(())
}
