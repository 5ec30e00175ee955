//! `uniaudio tune`: time every tunable kernel family's candidates on this machine, print
//! the table and store the choices in the per-device cache that later runs load.

use anyhow::{bail, Result};
use clap::Args;
use uniaudio_runtime::cpu::peak::measure_fma_peak;
use uniaudio_runtime::cpu::tune as cpu_tune;
use uniaudio_runtime::cpu::Isa;
use uniaudio_runtime::tune::{TuneCache, TuneMode};
use uniaudio_runtime::wgpu::tune as wgpu_tune;
use uniaudio_runtime::{DType, Wgpu};

use crate::backend::{BackendChoice, Opened};

#[derive(Args)]
pub struct TuneArgs {
    /// Backend to tune (the CPU and wgpu have tunable families so far).
    #[arg(long, value_enum, default_value = "cpu")]
    backend: BackendChoice,
    /// Timed runs per candidate (after one warm-up); the median counts.
    #[arg(long, default_value_t = 5)]
    reps: usize,
}

pub fn run(args: TuneArgs) -> Result<()> {
    if TuneMode::from_env().map_err(anyhow::Error::msg)? == TuneMode::Off {
        bail!("UNIAUDIO_TUNE=off: tuning is disabled (unset it, or set it to force)");
    }
    if args.reps == 0 || args.reps > 100 {
        bail!("--reps: expected 1..=100, got {}", args.reps);
    }
    let opened = args.backend.open()?;
    match &opened {
        Opened::Cpu(cpu) => tune_cpu(cpu.isa(), args.reps),
        Opened::Wgpu(gpu) => tune_wgpu(gpu, args.reps),
        other => bail!("{}: no tunable kernel families on this backend yet; its kernels run with built-in parameters", other.describe()),
    }
}

fn tune_cpu(isa: Isa, reps: usize) -> Result<()> {
    let key = cpu_tune::device_key();
    println!("device   {} ({}), runtime {}", key.device, key.driver, key.runtime);
    let peak = measure_fma_peak(isa, 3);
    println!("peak     {peak:.1} GFLOP/s ({} FMA, best of 3 passes)", isa.name());
    let mut cache = TuneCache::open(&cpu_tune::cache_dir(), key, &mut |w| eprintln!("warning: {w}"));
    println!();
    println!("{:<22} {:<9} {:>9} {:>10} {:>9} {:>8}  chosen", "family", "class", "candidate", "median ms", "GFLOP/s", "of peak");
    for (c, class) in cpu_tune::GEMM_CLASSES.iter().enumerate() {
        let (best, timings) = cpu_tune::tune_gemm_pass(isa, c, None, 1, reps);
        let flops = cpu_tune::probe_flops(c);
        for (i, t) in timings.iter().enumerate() {
            let s = t.median.as_secs_f64();
            let gflops = flops / s / 1e9;
            let bytes: usize = t.candidate.parse().unwrap_or(0);
            let default = if bytes == cpu_tune::GEMM_PASS_DEFAULT { " (default)" } else { "" };
            let mark = if i == best { "*" } else { "" };
            println!("{:<22} {:<9} {:>6} MiB {:>10.2} {:>9.1} {:>7.1}%  {mark}{default}", cpu_tune::GEMM_PASS, class.name, bytes >> 20, s * 1e3, gflops, 100.0 * (gflops / peak).min(1.0));
        }
        let default = timings.iter().find(|t| t.candidate == cpu_tune::GEMM_PASS_DEFAULT.to_string()).map(|t| t.median.as_secs_f64());
        if let Some(d) = default {
            println!("{:<22} {:<9} tuned {:.2} ms vs default {:.2} ms: {:.3}x", "", class.name, timings[best].median.as_secs_f64() * 1e3, d * 1e3, d / timings[best].median.as_secs_f64());
        }
        cache.insert(&format!("{}/{}", cpu_tune::GEMM_PASS, class.name), cpu_tune::choice(best, &timings));
    }
    cache.save().map_err(|e| anyhow::anyhow!("{}: cannot write the tuning cache: {e}", cache.path().display()))?;
    println!("\nsaved    {}", cache.path().display());
    Ok(())
}

fn tune_wgpu(gpu: &Wgpu, reps: usize) -> Result<()> {
    let key = gpu.tune_key();
    println!("device   {} ({}), runtime {}", key.device, key.driver, key.runtime);
    let bandwidth = gpu.measure_copy_bandwidth(64 << 20, 3)?;
    println!("limit    {bandwidth:.1} GB/s (buffer copy, best of 3)");
    let mut cache = TuneCache::open(&cpu_tune::cache_dir(), key, &mut |w| eprintln!("warning: {w}"));
    println!();
    println!("{:<16} {:<15} {:>9} {:>10} {:>9} {:>8}  chosen", "family", "class", "candidate", "median ms", "GB/s", "of limit");
    for (c, (class, (m, k, n))) in wgpu_tune::GEMV_CLASSES.iter().enumerate() {
        let run = gpu.tune_gemv_probe(c, None, DType::BF16, 1, reps)?;
        for (i, t) in run.timings.iter().enumerate() {
            let s = t.median.as_secs_f64();
            let gbs = run.bytes_per_timing / s / 1e9;
            let default = if t.candidate == "8" { " (default)" } else { "" };
            let mark = if i == run.best { "*" } else { "" };
            println!("{:<16} {:<15} {:>4} rows {:>10.3} {:>9.1} {:>7.1}%  {mark}{default}", wgpu_tune::GEMV_ROWS, class, t.candidate, s * 1e3, gbs, 100.0 * (gbs / bandwidth).min(1.0));
        }
        if let Some(d) = run.timings.iter().find(|t| t.candidate == "8").map(|t| t.median.as_secs_f64()) {
            let best = run.timings[run.best].median.as_secs_f64();
            println!("{:<16} {:<15} probe {m}x{k}x{n} bf16: tuned {:.3} ms vs default {:.3} ms: {:.3}x", "", class, best * 1e3, d * 1e3, d / best);
        }
        cache.insert(&format!("{}/{class}", wgpu_tune::GEMV_ROWS), cpu_tune::choice(run.best, &run.timings));
    }
    cache.save().map_err(|e| anyhow::anyhow!("{}: cannot write the tuning cache: {e}", cache.path().display()))?;
    println!("\nsaved    {}", cache.path().display());
    Ok(())
}

/// One line on what a backend runs with: a tuned table or the built-in defaults.
pub fn status(opened: &Opened) -> String {
    match opened {
        Opened::Cpu(_) => cpu_tune::status(),
        Opened::Wgpu(gpu) => gpu.tune_status().to_string(),
        _ => "built-in parameters (no tunable families on this backend yet)".into(),
    }
}
