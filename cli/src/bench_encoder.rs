//! The encoder part of `uniaudio bench`: a synthesized ReasoningCodec encoder (cached)
//! encodes a seeded signal; reports each stage's time, GFLOP/s against the measured FMA
//! peak (CPU, wgpu) and seconds of audio encoded per second of compute.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use uniaudio_codec::encode::bench::{run as run_encoder_bench, EncoderBenchReport};
use uniaudio_codec::encode::presets::EncoderPreset;
use uniaudio_codec::encode::Encoder;
use uniaudio_runtime::cpu::peak::measure_fma_peak;
use uniaudio_runtime::{Backend, DType};

use crate::backend::Opened;
use crate::bench_codec::{peak_after, PeakProbe};
use crate::progress;

#[derive(Args)]
pub struct EncoderBenchArgs {
    /// Encoder to benchmark: full (the released architecture), small, or none.
    #[arg(long, default_value = "full")]
    encoder: String,
    /// Seconds of audio to encode (30 s is one chunk).
    #[arg(long, default_value_t = 30.0)]
    encoder_seconds: f64,
}

/// The preset's codec directory under the bench cache, synthesized on first use (f32: the
/// encoder computes in f32 as the reference does on the CPU).
fn preset_dir(cache: &Path, preset: EncoderPreset) -> Result<PathBuf> {
    let want = preset.config_json();
    let dir = cache.join(format!("bench-encoder-{}-f32-v2", preset.name()));
    crate::bench_codec::cached_synthesis(&dir, &want, &["codec.safetensors"], &format!("synthesizing {} encoder", preset.name()), |dir| {
        uniaudio_codec::synth::write_synthetic(&want, dir, DType::F32)
    })
}

pub fn run(args: &EncoderBenchArgs, opened: &Opened, cache: &Path) -> Result<()> {
    if args.encoder == "none" {
        return Ok(());
    }
    let Some(preset) = EncoderPreset::parse(&args.encoder) else { bail!("--encoder: expected full, small or none, got `{}`", args.encoder) };
    if !args.encoder_seconds.is_finite() || args.encoder_seconds <= 0.0 {
        bail!("--encoder-seconds must be > 0");
    }
    let dir = preset_dir(cache, preset)?;
    match opened {
        Opened::Cpu(b) => bench_on(b, args, preset, &dir, &|| Ok(Some(measure_fma_peak(b.isa(), 3)))),
        Opened::Wgpu(g) => bench_on(g, args, preset, &dir, &|| Ok(Some(g.measure_fma_peak(3)?))),
        Opened::Cuda(g) => bench_on(g, args, preset, &dir, &|| Ok(None)),
    }
}

fn bench_on<B: Backend>(b: &B, args: &EncoderBenchArgs, preset: EncoderPreset, dir: &Path, probe: &PeakProbe) -> Result<()> {
    let peak = probe()?;
    let encoder = Encoder::load(b, dir).with_context(|| format!("loading {}", dir.display()))?;
    println!();
    println!(
        "encoder {} ({:.1} M parameters, f32): {:.1} s of audio in 30.01 s chunks (only the chunks the crop keeps)",
        preset.name(),
        preset.parameters() as f64 / 1e6,
        args.encoder_seconds
    );
    // Untimed pass over one chunk: page in the weights and warm the kernels.
    run_encoder_bench(&encoder, b, 1.0, &mut |_, _| {})?;
    let r = progress::with_steps("encoding", |report| run_encoder_bench(&encoder, b, args.encoder_seconds, report))?;
    let peak = peak_after(peak, probe)?;
    print_report(&r, peak);
    Ok(())
}

fn print_report(r: &EncoderBenchReport, peak: Option<f64>) {
    let of_peak = |g: f64| crate::bench_codec::of_peak(g, peak);
    let t = &r.times;
    let total = t.total();
    println!("{:<26} {:>9} {:>6} {:>10} {:>10}", "stage", "seconds", "share", "GFLOP", "GFLOP/s");
    println!("{:<26} {:>9.2} {:>5.1}% {:>10} {:>10}  (host FFTs and resampling; not counted)", "mel + resampling", t.mel, 100.0 * t.mel / total, "-", "-");
    let g = &r.gflop;
    for (name, secs, gflop) in [
        ("Whisper", t.whisper, g.whisper),
        ("MusicFM", t.musicfm, g.musicfm),
        ("WavLM", t.wavlm, g.wavlm),
        ("AudioThinking", t.thinking, g.thinking),
        ("RVQ + FiLM branches", t.rvq, g.rvq),
    ] {
        println!("{name:<26} {secs:>9.2} {:>5.1}% {gflop:>10.1} {:>10.1}  {}", 100.0 * secs / total, gflop / secs, of_peak(gflop / secs));
    }
    let all = g.whisper + g.musicfm + g.wavlm + g.thinking + g.rvq;
    println!(
        "{:<26} {total:>9.2} s for {:.2} s of audio ({} chunk(s), {all:.0} GFLOP, {:.1} GFLOP/s): {:.3}x real time (seconds of audio encoded per second of compute)",
        "total",
        r.audio_seconds,
        r.chunks,
        all / total,
        r.speed()
    );
}
