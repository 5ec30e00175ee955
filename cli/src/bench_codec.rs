//! The codec part of `uniaudio bench`: a synthesized ReasoningCodec (cached) decodes seeded
//! tokens; reports flow and SQ-decoder time, GFLOP/s against the measured compute peak (CPU, wgpu)
//! and seconds of audio per second of compute.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use uniaudio_codec::bench::{run as run_codec_bench, CodecBenchReport};
use uniaudio_codec::presets::CodecPreset;
use uniaudio_codec::{Codec, CodecConfig};
use uniaudio_runtime::cpu::peak::measure_gemm_peak;
use uniaudio_runtime::{Backend, DType};

use crate::backend::Opened;
use crate::progress;

#[derive(Args)]
pub struct CodecBenchArgs {
    /// Codec to benchmark: full (the released flow model), small, or none.
    #[arg(long, default_value = "full")]
    codec: String,
    /// Euler steps (the reference scripts use 10).
    #[arg(long, default_value_t = 10)]
    codec_steps: usize,
    /// Seconds of audio to decode (20 s is one window).
    #[arg(long, default_value_t = 20.0)]
    codec_seconds: f64,
}

/// The preset's directory under the bench cache, synthesized on first use (flow weights in
/// `dtype`; q8_0 or q4_0: the flow's linears 8-bit or 4-bit, the rest bf16).
fn preset_dir(cache: &std::path::Path, preset: CodecPreset, dtype: DType) -> Result<PathBuf> {
    let config = preset.config();
    let want = serde_json::to_value(&config)?;
    let dir = cache.join(format!("bench-codec-{}-{dtype}-v2", preset.name()));
    cached_synthesis(&dir, &want, &["codec.safetensors", "sqcodec.safetensors"], &format!("synthesizing {} codec", preset.name()), |dir| {
        uniaudio_codec::synth::write_synthetic_codec_as(&config, dir, dtype)
    })
}

/// `dir` when its config.json equals `want` and `files` exist; otherwise (stale or absent)
/// it is cleared and `synthesize` writes it anew, under a progress line.
pub fn cached_synthesis(dir: &std::path::Path, want: &serde_json::Value, files: &[&str], what: &str, synthesize: impl FnOnce(&std::path::Path) -> uniaudio_codec::Result<()>) -> Result<PathBuf> {
    let have = std::fs::read_to_string(dir.join("config.json")).ok().and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok());
    if have.as_ref() == Some(want) && files.iter().all(|f| dir.join(f).is_file()) {
        return Ok(dir.to_path_buf());
    }
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("removing stale {}", dir.display()))?;
    }
    remove_older_versions(dir);
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let bar = progress::steps(1, what);
    synthesize(dir)?;
    bar.finish_and_clear();
    Ok(dir.to_path_buf())
}

/// Removes the earlier versions of a `<stem>-v<N>` cache directory (best effort: a model
/// synthesized under an older layout would otherwise stay on disk for good).
pub fn remove_older_versions(dir: &std::path::Path) {
    let Some(name) = dir.file_name().and_then(|n| n.to_str()) else { return };
    let Some((stem, version)) = name.rsplit_once("-v").and_then(|(s, v)| Some((s, v.parse::<u32>().ok()?))) else { return };
    for old in 1..version {
        let old = dir.with_file_name(format!("{stem}-v{old}"));
        if old.is_dir() && std::fs::remove_dir_all(&old).is_ok() {
            eprintln!("removed {} (an older layout of this benchmark's model)", old.display());
        }
    }
}

pub fn run(args: &CodecBenchArgs, opened: &Opened, cache: &std::path::Path, dtype: DType) -> Result<()> {
    if args.codec == "none" {
        return Ok(());
    }
    let Some(preset) = CodecPreset::parse(&args.codec) else { bail!("--codec: expected full, small or none, got `{}`", args.codec) };
    if args.codec_steps == 0 || !args.codec_seconds.is_finite() || args.codec_seconds <= 0.0 {
        bail!("--codec-steps must be >= 1 and --codec-seconds > 0");
    }
    let dir = preset_dir(cache, preset, dtype)?;
    match opened {
        Opened::Cpu(b) => bench_on(b, args, preset, dtype, &dir, &|| Ok(Some(measure_gemm_peak(b.isa(), dtype, 3)))),
        Opened::Wgpu(g) => bench_on(g, args, preset, dtype, &dir, &|| Ok(Some(g.measure_fma_peak(3)?))),
        Opened::Cuda(g) => bench_on(g, args, preset, dtype, &dir, &|| Ok(None)),
    }
}

/// A compute-peak probe (None: none for this backend).
pub type PeakProbe<'a> = dyn Fn() -> Result<Option<f64>> + 'a;

/// The peak probed again after a benchmark, the higher counting (on a shared machine one
/// probe alone can under-read and put a rate above 100 %); says so when they differ.
pub fn peak_after(before: Option<f64>, probe: &PeakProbe) -> Result<Option<f64>> {
    let after = probe()?;
    Ok(match (before, after) {
        (Some(b), Some(a)) => {
            if (a - b).abs() > 0.05 * b.max(a) {
                println!("compute peak {b:.1} GFLOP/s before the run, {a:.1} after (the percentages use {:.1})", b.max(a));
            }
            Some(b.max(a))
        }
        (b, a) => b.or(a),
    })
}

fn bench_on<B: Backend>(b: &B, args: &CodecBenchArgs, preset: CodecPreset, dtype: DType, dir: &std::path::Path, probe: &PeakProbe) -> Result<()> {
    let peak = probe()?;
    let codec = Codec::load(b, dir).with_context(|| format!("loading {}", dir.display()))?;
    let config: &CodecConfig = &codec.config;
    let tokens = ((args.codec_seconds * config.token_rate).round() as usize).max(1);
    println!();
    println!(
        "codec {} ({:.1} M parameters, flow weights {}; the SQ decoder's configuration is assumed, see codec/src/presets.rs): {tokens} tokens, {} Euler steps, CFG batch of 2",
        preset.name(),
        preset.parameters() as f64 / 1e6,
        if dtype.is_quantized() { format!("{dtype} linears, bf16 rest") } else { dtype.to_string() },
        args.codec_steps
    );
    // Untimed pass: page in the weights and warm the kernels.
    run_codec_bench(&codec, b, tokens.min(config.sampler.window_tokens), 1, &mut |_, _| {})?;
    let r = progress::with_steps("decoding", |report| run_codec_bench(&codec, b, tokens, args.codec_steps, report))?;
    let peak = peak_after(peak, probe)?;
    print_report(&r, peak);
    Ok(())
}

/// `gflops` as a share of the compute peak measured in the same run (CPU and wgpu): the
/// FMA rate, or on the fast CPU levels that of the instruction their GEMM runs on. Never
/// above 100%: a rate beyond the peak means the probe ran slow (a busy shared host).
pub fn of_peak(gflops: f64, peak: Option<f64>) -> String {
    match peak {
        None => "(no peak measured for this backend)".to_string(),
        Some(p) if gflops > p => format!("above the {p:.1} GFLOP/s measured peak (the probe ran slow; no percentage)"),
        Some(p) => format!("{:.1}% of the {p:.1} GFLOP/s compute peak", 100.0 * gflops / p),
    }
}

/// `gb_per_s` as a percentage of the read bandwidth `bw` measured in the same run; none
/// above it (the probe under-read, e.g. on a shared host whose bandwidth moves).
pub fn share_of_bandwidth(gb_per_s: f64, bw: f64) -> Option<f64> {
    let pct = 100.0 * gb_per_s / bw;
    (pct <= 100.0).then_some(pct)
}

/// `share_of_bandwidth` as a table cell `width` wide (with its `%`): `>probe` above it.
pub fn bandwidth_cell(gb_per_s: f64, bw: f64, width: usize) -> String {
    match share_of_bandwidth(gb_per_s, bw) {
        Some(pct) => format!("{:>w$.1}%", pct, w = width - 1),
        None => format!("{:>width$}", ">probe"),
    }
}

/// The line that explains a `>probe` cell.
pub const ABOVE_PROBE_NOTE: &str = "`>probe`: read faster than the bandwidth probe measured (before and after), so no percentage";

fn print_report(r: &CodecBenchReport, peak: Option<f64>) {
    let of_peak = |g: f64| of_peak(g, peak);
    println!("{:<24} {:>10} {:>12} {:>12}", "part", "seconds", "GFLOP", "GFLOP/s");
    println!("{:<24} {:>10.2} {:>12.1} {:>12.1}  {}", format!("flow ({} window(s))", r.windows), r.flow_seconds, r.flow_gflop, r.flow_gflops(), of_peak(r.flow_gflops()));
    println!("{:<24} {:>10.2} {:>12.1} {:>12.1}  {}", "SQ decoder", r.sq_seconds, r.sq_gflop, r.sq_gflops(), of_peak(r.sq_gflops()));
    println!(
        "{:<24} {:>10.2} s for {:.2} s of audio: {:.3}x real time (seconds of audio per second of compute); flow {:.0}%, SQ decoder {:.0}%",
        "total",
        r.compute_seconds(),
        r.audio_seconds,
        r.speed(),
        100.0 * r.flow_seconds / r.compute_seconds(),
        100.0 * r.sq_seconds / r.compute_seconds()
    );
}

#[cfg(test)]
mod tests {
    use super::of_peak;

    #[test]
    fn shares_of_the_peak_never_exceed_100_percent() {
        assert_eq!(of_peak(150.0, Some(200.0)), "75.0% of the 200.0 GFLOP/s compute peak");
        assert_eq!(of_peak(200.0, Some(200.0)), "100.0% of the 200.0 GFLOP/s compute peak");
        assert!(of_peak(250.0, Some(200.0)).starts_with("above the 200.0 GFLOP/s measured peak"));
        assert_eq!(of_peak(1.0, None), "(no peak measured for this backend)");
    }

    #[test]
    fn shares_of_the_bandwidth_never_exceed_100_percent() {
        use super::{bandwidth_cell, share_of_bandwidth};
        assert_eq!(share_of_bandwidth(15.0, 20.0), Some(75.0));
        assert_eq!(share_of_bandwidth(20.0, 20.0), Some(100.0));
        assert_eq!(share_of_bandwidth(21.5, 20.0), None);
        assert_eq!(bandwidth_cell(15.0, 20.0, 9), "    75.0%");
        assert_eq!(bandwidth_cell(21.5, 20.0, 9), "   >probe");
    }
}
