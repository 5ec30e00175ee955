//! `uniaudio bench`: synthesizes (once, cached) a model of the UniAudio 2.0 architecture,
//! then times prefill, audio frames and text tokens and relates them to the measured
//! memory bandwidth: batch-1 decode is bandwidth-bound, so that is its roofline.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use uniaudio_lm::bench::{run as run_bench, BenchOptions, BenchReport, FRAMES_PER_AUDIO_SECOND};
use uniaudio_lm::bench_batch::run_batched;
use uniaudio_lm::presets::Preset;
use uniaudio_lm::synth::InitSpec;
use uniaudio_lm::synth_dir::write_synthetic_model;
use uniaudio_lm::{LmConfig, UniAudioLm};
use uniaudio_runtime::cpu::bandwidth::measure_read_bandwidth;
use uniaudio_runtime::{cache_dir, Backend, DType};

use crate::backend::{BackendChoice, Opened};
use crate::{progress, system};

#[derive(Args)]
pub struct BenchArgs {
    /// full (the released architecture), medium, small, or auto (the largest that fits).
    #[arg(long, default_value = "auto")]
    preset: String,
    /// Weight dtype of the synthesized LM and codec: bf16, f16, f32, q8 or q4 (8-bit or 4-bit
    /// projections and codec flow linears).
    #[arg(long, default_value = "bf16")]
    dtype: String,
    /// Benchmark an existing bundle or LM directory instead of a synthesized preset.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Prompt length in text frames.
    #[arg(long, default_value_t = 64)]
    prompt_len: usize,
    #[arg(long, default_value_t = 16)]
    audio_frames: usize,
    #[arg(long, default_value_t = 16)]
    text_tokens: usize,
    #[arg(long, value_enum, default_value = "auto")]
    backend: BackendChoice,
    /// Also run the batched-decode scaling table at these batch sizes (e.g. 1,2,4,8,16,32).
    #[arg(long, value_delimiter = ',')]
    batch: Vec<usize>,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Run everything twice: with this device's tuned table, then with the built-in
    /// defaults (`uniaudio tune` makes the table), so the gain shows in one sitting.
    #[arg(long)]
    compare_defaults: bool,
    #[command(flatten)]
    codec: crate::bench_codec::CodecBenchArgs,
    #[command(flatten)]
    encoder: crate::bench_encoder::EncoderBenchArgs,
}

/// The largest preset whose weights fit in memory (with room for caches) and on disk.
fn auto_preset(dtype: DType, dir: &Path) -> Preset {
    let mem = system::available_memory().unwrap_or(0);
    let disk = system::free_disk(dir).unwrap_or(0);
    for p in Preset::ALL {
        let bytes = dtype.bytes(p.parameters()) as u64;
        if bytes + bytes / 4 + (2 << 30) <= mem && bytes + (1 << 30) <= disk {
            return p;
        }
    }
    Preset::Small
}

/// Where the preset's model is cached.
fn preset_dir(preset: Preset, dtype: DType) -> PathBuf {
    // v2 of the block-quantized models: their audio heads are stored in blocks too; v3 (v2
    // of the float ones): whole-line tensors start on cache lines of the file.
    let version = if dtype.is_quantized() { 3 } else { 2 };
    cache_dir().join(format!("bench-{}-{}-v{version}", preset.name(), dtype))
}

/// The preset's model directory, synthesized on first use and reused afterwards.
pub(crate) fn preset_model(preset: Preset, dtype: DType) -> Result<PathBuf> {
    let config = preset.config();
    let dir = preset_dir(preset, dtype);
    if let Ok(existing) = LmConfig::from_file(&dir.join("config.json")) {
        if existing == config && dir.join("model.safetensors").is_file() {
            return Ok(dir);
        }
    }
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing stale {}", dir.display()))?;
    }
    crate::bench_codec::remove_older_versions(&dir);
    let what = format!("synthesizing {} model", preset.name());
    progress::with_bytes(&what, |report| write_synthetic_model(&config, &InitSpec::with_seed(0x5eed), dtype, &dir, report))?;
    Ok(dir)
}

pub fn run(args: BenchArgs) -> Result<()> {
    let Some(dtype) = DType::parse(&args.dtype).filter(|d| d.is_float() || d.is_quantized()) else {
        bail!("--dtype: expected bf16, f16, f32, q8 or q4, got `{}`", args.dtype);
    };
    if args.prompt_len < 2 || args.audio_frames == 0 || args.text_tokens == 0 {
        bail!("--prompt-len must be >= 2 and --audio-frames, --text-tokens >= 1");
    }
    if args.batch.iter().any(|&b| b == 0 || b > 1024) {
        bail!("--batch: sizes must be between 1 and 1024, got {:?}", args.batch);
    }
    crate::output::check_report_path(args.json.as_deref())?;
    let opened = args.backend.open()?;
    println!("tuning {}", crate::tune::status(&opened));
    if !args.compare_defaults {
        return run_opened(&args, &opened, dtype);
    }
    if args.json.is_some() {
        bail!("--compare-defaults prints two runs; it does not combine with --json");
    }
    println!("\n== run 1 of 2: {}", crate::tune::status(&opened));
    run_opened(&args, &opened, dtype)?;
    match &opened {
        Opened::Wgpu(gpu) => gpu.use_tuning_defaults(),
        Opened::Cuda(gpu) => gpu.use_tuning_defaults(),
        Opened::Cpu(_) => uniaudio_runtime::cpu::tune::use_defaults(),
    }
    println!("\n== run 2 of 2: built-in defaults");
    run_opened(&args, &opened, dtype)
}

/// Every part of the benchmark on an opened backend.
fn run_opened(args: &BenchArgs, opened: &Opened, dtype: DType) -> Result<()> {
    if args.preset == "none" && args.model.is_none() {
        println!("backend {}", opened.describe());
        crate::bench_codec::run(&args.codec, opened, &cache_dir(), dtype)?;
        return crate::bench_encoder::run(&args.encoder, opened, &cache_dir());
    }
    let (label, dir) = match (&args.model, args.preset.as_str()) {
        (Some(dir), _) => {
            // A bundle or an LM directory.
            let paths = uniaudio::ModelPaths::resolve(Some(dir), None, None)?;
            (dir.display().to_string(), paths.require(uniaudio::Part::Lm, "bench")?.to_path_buf())
        }
        (None, "auto") => {
            // Older layouts of every preset go first, so their space counts as free.
            for p in Preset::ALL {
                crate::bench_codec::remove_older_versions(&preset_dir(p, dtype));
            }
            let p = auto_preset(dtype, &cache_dir());
            (p.name().to_string(), preset_model(p, dtype)?)
        }
        (None, name) => {
            let Some(p) = Preset::parse(name) else { bail!("--preset: expected full, medium, small, auto or none, got `{name}`") };
            (p.name().to_string(), preset_model(p, dtype)?)
        }
    };
    let description = opened.describe();
    match opened {
        Opened::Cpu(b) => {
            let peak = || Ok(Some(uniaudio_runtime::cpu::peak::measure_gemm_peak(b.isa(), dtype, 3)));
            let probe = || Ok(measure_read_bandwidth(1 << 30, 5).gb_per_s());
            bench_on(b, &peak, args, &label, &dir, dtype, &description, &probe, "read bandwidth, best of 5 passes over 1 GiB")?
        }
        Opened::Wgpu(g) => {
            let peak = || Ok(Some(g.measure_fma_peak(3)?));
            let probe = || Ok(g.measure_copy_bandwidth(256 << 20, 5)?);
            bench_on(g, &peak, args, &label, &dir, dtype, &description, &probe, "device copy bandwidth, best of 5 copies of 256 MiB")?
        }
        Opened::Cuda(g) => {
            let probe = || Ok(g.measure_copy_bandwidth(1 << 30, 5)?);
            bench_on(g, &|| Ok(None), args, &label, &dir, dtype, &description, &probe, "device copy bandwidth, best of 5 copies of 1 GiB")?
        }
    }
    crate::bench_codec::run(&args.codec, opened, &cache_dir(), dtype)?;
    crate::bench_encoder::run(&args.encoder, opened, &cache_dir())
}

#[allow(clippy::too_many_arguments)]
fn bench_on<B: Backend>(backend: &B, peak_probe: &crate::bench_codec::PeakProbe, args: &BenchArgs, label: &str, dir: &Path, dtype: DType, description: &str, probe: &dyn Fn() -> Result<f64>, bw_how: &str) -> Result<()> {
    let lm = UniAudioLm::load(backend, dir).with_context(|| format!("loading {}", dir.display()))?;
    let params: usize = uniaudio_lm::synth::model_tensors(&lm.config).iter().map(|(_, s)| s.iter().product::<usize>()).sum();
    println!(
        "model {label}: {:.2} G parameters, {:.2} GB of weights ({})",
        params as f64 / 1e9,
        lm.weights.total_bytes() as f64 / 1e9,
        dir.display()
    );
    println!("backend {description}");
    let before = probe()?;
    println!("memory bandwidth: {before:.2} GB/s ({bw_how})");
    let peak = peak_probe()?;

    let opts = BenchOptions { prompt_len: args.prompt_len, audio_frames: args.audio_frames, text_tokens: args.text_tokens, top_k: 50, temperature: 0.9, seed: 888 };
    let bar = progress::steps((args.audio_frames + args.text_tokens) as u64, "decoding");
    let report = run_bench(&lm, backend, &opts, &mut || bar.inc(1))?;
    bar.finish_and_clear();
    // Probed again after the steps, the faster counts: on a shared machine one probe
    // alone can under-read and put a step above 100 %.
    let after = probe()?;
    let bw = before.max(after);
    println!("memory bandwidth after the steps: {after:.2} GB/s (the percentages use {bw:.2})");
    let peak = crate::bench_codec::peak_after(peak, peak_probe)?;
    let rss = system::peak_rss().unwrap_or(0);
    print_table(&report, bw, rss);
    // The CPU reads the weights where the file is mapped; 2 MiB pages streamed them up to
    // 1.14x faster than 4 KiB ones, so the run says which it had.
    let pages = if B::NAME == "cpu" { uniaudio_runtime::huge_pages::mapped_weight_pages() } else { None };
    if let Some(p) = pages.filter(|p| p.resident > 0) {
        println!(
            "{:<34} {:>9.2} GB   in 2 MiB pages ({:.0}% of the {:.2} GB of weight files resident; see README)",
            "weight pages",
            p.huge as f64 / 1e9,
            100.0 * p.huge as f64 / p.resident as f64,
            p.resident as f64 / 1e9
        );
    }
    println!(
        "prefill projections: {:.1} GFLOP/s, {}",
        report.prefill_gflops,
        crate::bench_codec::of_peak(report.prefill_gflops, peak)
    );
    let batched = if args.batch.is_empty() {
        Vec::new()
    } else {
        let bar = progress::steps((args.batch.len() * (args.audio_frames + args.text_tokens)) as u64, "batched decoding");
        let rows = run_batched(&lm, backend, &args.batch, &opts, &mut || bar.inc(1))?;
        bar.finish_and_clear();
        crate::bench_batch::print_table(&rows, bw);
        rows
    };
    if let Some(path) = &args.json {
        let json = serde_json::json!({
            "model": label, "parameters": params, "weight_bytes": lm.weights.total_bytes(), "dtype": dtype.name(),
            "backend": description, "bandwidth_gb_per_s": bw, "bandwidth_measurement": bw_how, "peak_rss_bytes": rss, "compute_peak_gflops": peak, "results": report,
            "audio_percent_of_bandwidth": crate::bench_codec::share_of_bandwidth(report.audio_gb_per_s, bw),
            "text_percent_of_bandwidth": crate::bench_codec::share_of_bandwidth(report.text_gb_per_s, bw),
            "batch": batched,
            "weight_pages": pages.map(|p| serde_json::json!({"resident_bytes": p.resident, "huge_page_bytes": p.huge})),
        });
        crate::output::write_atomically(path, &serde_json::to_string_pretty(&json)?)?;
    }
    Ok(())
}

fn print_table(r: &BenchReport, bw: f64, peak: u64) {
    println!();
    println!("{:<34} {:>12} {:>10} {:>9}", "metric", "value", "GB/s", "% of bw");
    println!("{:<34} {:>8.1} tok/s", format!("prefill ({} tokens, {:.2} s)", r.prompt_len, r.prefill_seconds), r.prefill_tokens_per_second);
    let cell = |gbs: f64| crate::bench_codec::bandwidth_cell(gbs, bw, 9);
    println!("{:<34} {:>9.2} ms {:>10.2} {}", format!("audio frame (median of {})", r.audio_frames), r.ms_per_audio_frame, r.audio_gb_per_s, cell(r.audio_gb_per_s));
    println!("{:<34} {:>9.2} ms {:>10.2} {}", format!("text token (median of {})", r.text_tokens), r.ms_per_text_token, r.text_gb_per_s, cell(r.text_gb_per_s));
    println!(
        "{:<34} {:>12.3}   ({} frames per second of audio; < 1 is faster than real time)",
        "real-time factor",
        r.real_time_factor,
        FRAMES_PER_AUDIO_SECOND
    );
    println!("{:<34} {:>9.2} GB   (includes the memory-mapped weight pages it touched)", "peak RSS", peak as f64 / 1e9);
    println!(
        "bytes per step: audio frame {:.2} GB, text token {:.2} GB (weights plus KV cache); floor at {bw:.1} GB/s: {:.1} ms / {:.1} ms",
        r.bytes_per_audio_frame / 1e9,
        r.bytes_per_text_token / 1e9,
        r.bytes_per_audio_frame / bw / 1e6,
        r.bytes_per_text_token / bw / 1e6
    );
    if [r.audio_gb_per_s, r.text_gb_per_s].iter().any(|&g| crate::bench_codec::share_of_bandwidth(g, bw).is_none()) {
        println!("{}", crate::bench_codec::ABOVE_PROBE_NOTE);
    }
}
