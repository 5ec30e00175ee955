//! `uniaudio tune`: time every tunable kernel family's candidates on this machine, print
//! the table and store the choices in the per-device cache that later runs load.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;
use uniaudio_lm::config::LmConfig;
use uniaudio_lm::presets::Preset;
use uniaudio_runtime::cpu::peak::measure_fma_peak;
use uniaudio_runtime::cpu::tune as cpu_tune;
use uniaudio_runtime::cpu::Isa;
use uniaudio_runtime::cuda::launch::KernelDevice;
use uniaudio_runtime::cuda::tune as cuda_tune;
use uniaudio_runtime::tune::{ProbeTuning, Timing, TuneCache, TuneMode};
use uniaudio_runtime::wgpu::tune as wgpu_tune;
use uniaudio_runtime::{Cuda, DType, Wgpu};

use crate::backend::{BackendChoice, Opened};

#[derive(Args)]
pub struct TuneArgs {
    /// Backend to tune.
    #[arg(long, value_enum, default_value = "cpu")]
    backend: BackendChoice,
    /// Timed runs per candidate (after one warm-up); the median counts.
    #[arg(long, default_value_t = 5)]
    reps: usize,
    /// Time on the projections of this LM preset's backbone (full, medium, small) instead
    /// of the built-in probes (the 3B backbone's and a 20 s codec window's shapes).
    #[arg(long, conflicts_with = "model")]
    preset: Option<String>,
    /// Time on the projections of this model's backbone (a bundle or an LM directory).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Tune only this family (e.g. `wgpu.gemv.rows`); all of the backend's by default.
    #[arg(long)]
    family: Option<String>,
}

/// Whether `family` is selected by `--family`, which must name one of `known`.
fn selected(wanted: &Option<String>, known: &[&str], family: &str) -> Result<bool> {
    match wanted {
        Some(w) if !known.contains(&w.as_str()) => bail!("--family: this backend's families are {}, got `{w}`", known.join(", ")),
        Some(w) => Ok(w == family),
        None => Ok(true),
    }
}

/// The backbone projections (inner size, outputs) of the model being tuned for.
struct Projections {
    label: String,
    shapes: Vec<(usize, usize)>,
}

impl Projections {
    fn of(args: &TuneArgs) -> Result<Option<Projections>> {
        let (label, config) = match (&args.preset, &args.model) {
            (Some(name), _) => {
                let Some(p) = Preset::parse(name) else { bail!("--preset: expected full, medium or small, got `{name}`") };
                (format!("preset {name}"), p.config())
            }
            (None, Some(dir)) => {
                let paths = uniaudio::ModelPaths::resolve(Some(dir), None, None)?;
                let lm = paths.require(uniaudio::Part::Lm, "tune")?;
                (format!("model {}", dir.display()), LmConfig::from_file(&lm.join("config.json"))?)
            }
            (None, None) => return Ok(None),
        };
        let b = &config.stacks.backbone;
        let shapes = vec![(b.n_embd, b.qkv_rows()), (b.q_dim(), b.n_embd), (b.n_embd, b.intermediate_size), (b.intermediate_size, b.n_embd)];
        Ok(Some(Projections { label, shapes }))
    }

    /// The largest projection whose inner size `fits`, as an (m, k, n) probe.
    fn probe(&self, m: usize, fits: impl Fn(usize) -> bool) -> Option<(usize, usize, usize)> {
        self.shapes.iter().filter(|(k, _)| fits(*k)).max_by_key(|(k, n)| k * n).map(|&(k, n)| (m, k, n))
    }
}

/// Where a class's probe comes from, for the table.
fn probe_source(model: &Option<Projections>, from_model: bool) -> &str {
    match model {
        Some(p) if from_model => &p.label,
        Some(_) => "built-in probe (the model has no such shape)",
        None => "built-in probe",
    }
}

pub fn run(args: TuneArgs) -> Result<()> {
    if TuneMode::from_env().map_err(anyhow::Error::msg)? == TuneMode::Off {
        bail!("UNIAUDIO_TUNE=off: tuning is disabled (unset it, or set it to force)");
    }
    if args.reps == 0 || args.reps > 100 {
        bail!("--reps: expected 1..=100, got {}", args.reps);
    }
    let model = Projections::of(&args)?;
    let opened = args.backend.open()?;
    match &opened {
        Opened::Cpu(cpu) => {
            let known = [cpu_tune::GEMM_PASS, cpu_tune::GEMV_TASKS, cpu_tune::Q8_PREFETCH, cpu_tune::ATTENTION_BLOCK];
            let families = [
                selected(&args.family, &known, known[0])?,
                selected(&args.family, &known, known[1])?,
                selected(&args.family, &known, known[2])?,
                selected(&args.family, &known, known[3])?,
            ];
            tune_cpu(cpu.isa(), args.reps, &model, families)
        }
        Opened::Wgpu(gpu) => {
            let known = [wgpu_tune::GEMV_ROWS, wgpu_tune::GEMM_TILE];
            let families = [selected(&args.family, &known, known[0])?, selected(&args.family, &known, known[1])?];
            tune_wgpu(gpu, args.reps, &model, families)
        }
        Opened::Cuda(gpu) => {
            selected(&args.family, &[cuda_tune::GEMV_WARPS], cuda_tune::GEMV_WARPS)?;
            tune_cuda(gpu, args.reps, &model)
        }
    }
}

/// `families`: whether to tune the GEMM pass size, the GEMV tasks per thread, the 8-bit
/// GEMV's prefetch distance and the attention's query rows per task.
fn tune_cpu(isa: Isa, reps: usize, model: &Option<Projections>, families: [bool; 4]) -> Result<()> {
    let key = cpu_tune::device_key();
    println!("device   {} ({}), runtime {}", key.device, key.driver, key.runtime);
    let mut cache = TuneCache::open(&cpu_tune::cache_dir(), key, &mut |w| eprintln!("warning: {w}"));
    if families[0] {
        tune_cpu_gemm(isa, reps, model, &mut cache);
    }
    if families[1] {
        tune_cpu_gemv(isa, reps, model, &mut cache);
    }
    if families[2] {
        tune_cpu_q8(reps, model, &mut cache);
    }
    if families[3] {
        tune_cpu_attention(isa, reps, &mut cache);
    }
    cache.save().map_err(|e| anyhow::anyhow!("{}: cannot write the tuning cache: {e}", cache.path().display()))?;
    println!("\nsaved    {}", cache.path().display());
    Ok(())
}

fn tune_cpu_gemm(isa: Isa, reps: usize, model: &Option<Projections>, cache: &mut TuneCache) {
    let peak = measure_fma_peak(isa, 3);
    println!("peak     {peak:.1} GFLOP/s ({} FMA, best of 3 passes)", isa.name());
    println!();
    print_header("of peak");
    for (c, class) in cpu_tune::GEMM_CLASSES.iter().enumerate() {
        // A prefill of 256 rows through the model's projections of this class.
        let min_k = cpu_tune::GEMM_CLASSES[..c].last().map_or(0, |p| p.max_k);
        let probe = model.as_ref().and_then(|p| p.probe(256, |k| k > min_k && k <= class.max_k));
        let (m, k, n) = probe.unwrap_or(class.probe);
        let (best, timings) = cpu_tune::tune_gemm_pass(isa, c, Some((m, k, n)), 1, reps);
        let flops = 2.0 * (m * k * n) as f64;
        let rate = |s: f64| {
            let gflops = flops / s / 1e9;
            (
                format!("{gflops:.1} GFLOP/s"),
                100.0 * (gflops / peak).min(1.0),
            )
        };
        let mib = |c: &str| format!("{} MiB", c.parse::<usize>().unwrap_or(0) >> 20);
        let table = Table {
            family: cpu_tune::GEMM_PASS,
            class: class.name,
            timings: &timings,
            best,
            default: cpu_tune::GEMM_PASS_DEFAULT,
        };
        table.print_rows(mib, rate);
        table.print_gain(&format!(
            "probe {m}x{k}x{n} f32 ({})",
            probe_source(model, probe.is_some())
        ));
        table.record(cache);
    }
}

/// The decode GEMV's tasks per thread, per output-count class, on one row of bf16 weights.
fn tune_cpu_gemv(isa: Isa, reps: usize, model: &Option<Projections>, cache: &mut TuneCache) {
    let bandwidth = uniaudio_runtime::cpu::bandwidth::measure_read_bandwidth(1 << 30, 3).gb_per_s();
    println!("\nread bandwidth {bandwidth:.2} GB/s (best of 3 passes over 1 GiB)");
    print_header("of bw");
    for (c, &(name, max_n, builtin)) in cpu_tune::GEMV_CLASSES.iter().enumerate() {
        let min_n = cpu_tune::GEMV_CLASSES[..c].last().map_or(0, |p| p.1);
        // The model's largest projection with this many outputs, as (K, N).
        let probe = model.as_ref().and_then(|p| p.shapes.iter().filter(|(_, n)| *n >= min_n && *n < max_n).max_by_key(|(k, n)| k * n).copied());
        let (k, n) = probe.unwrap_or(builtin);
        let (best, timings) = cpu_tune::tune_gemv_tasks(isa, c, Some((k, n)), 1, reps);
        let copies = cpu_tune::gemv_probe_copies(k, n);
        let bytes = 2.0 * (copies * k * n) as f64;
        let rate = |s: f64| {
            let gbs = bytes / s / 1e9;
            (format!("{gbs:.2} GB/s"), 100.0 * (gbs / bandwidth).min(1.0))
        };
        let table = Table {
            family: cpu_tune::GEMV_TASKS,
            class: name,
            timings: &timings,
            best,
            default: cpu_tune::GEMV_TASKS_DEFAULT,
        };
        table.print_rows(|c| format!("{c} tasks"), rate);
        table.print_gain(&format!(
            "probe {copies} x 1x{k}x{n} bf16 ({})",
            probe_source(model, probe.is_some())
        ));
        table.record(cache);
    }
}

/// The many-query attention's rows per task, per class, on the class's built-in problem.
fn tune_cpu_attention(isa: Isa, reps: usize, cache: &mut TuneCache) {
    let peak = measure_fma_peak(isa, 3);
    println!("\npeak     {peak:.1} GFLOP/s ({} FMA, best of 3 passes)", isa.name());
    print_header("of peak");
    for (c, &(name, (t, heads, kv_heads, d))) in cpu_tune::ATTENTION_CLASSES.iter().enumerate() {
        let (best, timings) = cpu_tune::tune_attention_block(isa, c, 1, reps);
        let flops = cpu_tune::attention_probe_flops(c);
        let rate = |s: f64| {
            let gflops = flops / s / 1e9;
            (format!("{gflops:.1} GFLOP/s"), 100.0 * (gflops / peak).min(1.0))
        };
        let table = Table { family: cpu_tune::ATTENTION_BLOCK, class: name, timings: &timings, best, default: cpu_tune::ATTENTION_BLOCK_DEFAULT };
        table.print_rows(|c| format!("{c} rows"), rate);
        table.print_gain(&format!("probe {t} queries x {heads} heads ({kv_heads} KV heads) of {d}, built in"));
        table.record(cache);
    }
}

/// The fast 8-bit GEMV's prefetch distance, at the level `--precision fast` runs on this
/// CPU (the distance only matters there: `exact` widens Q8_0 blocks without prefetching).
fn tune_cpu_q8(reps: usize, model: &Option<Projections>, cache: &mut TuneCache) {
    let isa = Isa::for_precision(uniaudio_runtime::Precision::Fast);
    if !isa.int8_dot() {
        println!("\n{}: skipped, {} has no 8-bit products (AVX2 or AVX512-VNNI with `fast`)", cpu_tune::Q8_PREFETCH, isa.name());
        return;
    }
    let bandwidth = uniaudio_runtime::cpu::bandwidth::measure_read_bandwidth(1 << 30, 3).gb_per_s();
    println!("\nread bandwidth {bandwidth:.2} GB/s (best of 3 passes over 1 GiB); 8-bit products at {}", isa.name());
    print_header("of bw");
    // The model's largest projection, as (K, N); K must hold whole blocks.
    let probe = model.as_ref().and_then(|p| p.shapes.iter().filter(|(k, _)| k % DType::Q8_0.block() == 0).max_by_key(|(k, n)| k * n).copied());
    let (k, n) = probe.unwrap_or(cpu_tune::Q8_PREFETCH_PROBE);
    let (best, timings) = cpu_tune::tune_q8_prefetch(isa, Some((k, n)), 1, reps);
    let copies = cpu_tune::q8_probe_copies(k, n);
    let bytes = (copies * DType::Q8_0.bytes(k * n)) as f64;
    let rate = |s: f64| {
        let gbs = bytes / s / 1e9;
        (format!("{gbs:.2} GB/s"), 100.0 * (gbs / bandwidth).min(1.0))
    };
    let table = Table {
        family: cpu_tune::Q8_PREFETCH,
        class: "q8_0",
        timings: &timings,
        best,
        default: cpu_tune::Q8_PREFETCH_DEFAULT,
    };
    table.print_rows(|c| format!("{c} bytes"), rate);
    table.print_gain(&format!("probe {copies} x 1x{k}x{n} q8_0 ({})", probe_source(model, probe.is_some())));
    table.record(cache);
}

/// `families`: whether to tune the GEMV rows and the GEMM tile.
fn tune_wgpu(gpu: &Wgpu, reps: usize, model: &Option<Projections>, families: [bool; 2]) -> Result<()> {
    let key = gpu.tune_key();
    println!("device   {} ({}), runtime {}", key.device, key.driver, key.runtime);
    let bandwidth = gpu.measure_copy_bandwidth(64 << 20, 3)?;
    println!("limit    {bandwidth:.1} GB/s (buffer copy, best of 3)");
    let peak = if families[1] { gpu.measure_fma_peak(3)? } else { f64::NAN };
    if families[1] {
        println!("peak     {peak:.1} GFLOP/s (f32 FMA, best of 3 passes)");
    }
    let mut cache = TuneCache::open(&cpu_tune::cache_dir(), key, &mut |w| eprintln!("warning: {w}"));
    println!();
    print_header("of limit");
    if families[0] {
        let family = GpuGemv { name: wgpu_tune::GEMV_ROWS, default: wgpu_tune::GEMV_ROWS_DEFAULT, unit: "rows", classes: &wgpu_tune::GEMV_CLASSES, gate_up_class: wgpu_tune::GATE_UP_CLASS, matmul_class: wgpu_tune::matmul_class };
        tune_gpu_gemv(&family, model, bandwidth, &mut cache, &|c, probe| Ok(gpu.tune_gemv_probe(c, probe, DType::BF16, 1, reps)?))?;
    }
    for (c, (class, builtin)) in wgpu_tune::GEMM_CLASSES.iter().enumerate().filter(|_| families[1]) {
        let probe = model.as_ref().and_then(|p| if c == 0 { p.probe(64, |_| true) } else { None });
        let run = gpu.tune_gemm_probe(c, probe, DType::BF16, 1, reps)?;
        let rate = |s: f64| {
            let gflops = run.flops_per_timing / s / 1e9;
            (format!("{gflops:.1} GFLOP/s"), 100.0 * (gflops / peak).min(1.0))
        };
        let table = Table {
            family: wgpu_tune::GEMM_TILE,
            class,
            timings: &run.timings,
            best: run.best,
            default: wgpu_tune::GEMM_TILE_DEFAULT,
        };
        table.print_rows(|c| format!("{c} tile"), rate);
        table.print_gain(&probe_label(
            probe.unwrap_or(*builtin),
            probe_source(model, probe.is_some()),
        ));
        table.record(&mut cache);
    }
    cache.save().map_err(|e| anyhow::anyhow!("{}: cannot write the tuning cache: {e}", cache.path().display()))?;
    println!("\nsaved    {}", cache.path().display());
    Ok(())
}

fn tune_cuda(gpu: &Cuda, reps: usize, model: &Option<Projections>) -> Result<()> {
    let key = gpu.tune_key();
    println!("device   {} ({}), runtime {}", key.device, key.driver, key.runtime);
    let bandwidth = gpu.measure_copy_bandwidth(256 << 20, 3)?;
    println!("limit    {bandwidth:.1} GB/s (device copy, best of 3)");
    let mut cache = TuneCache::open(&cpu_tune::cache_dir(), key, &mut |w| eprintln!("warning: {w}"));
    println!();
    print_header("of limit");
    let family = GpuGemv { name: cuda_tune::GEMV_WARPS, default: cuda_tune::GEMV_WARPS_DEFAULT, unit: "warps", classes: &cuda_tune::GEMV_CLASSES, gate_up_class: cuda_tune::GATE_UP_CLASS, matmul_class: cuda_tune::matmul_class };
    tune_gpu_gemv(&family, model, bandwidth, &mut cache, &|c, probe| Ok(cuda_tune::tune_gemv_probe(gpu, c, probe, DType::BF16, 1, reps)?))?;
    cache.save().map_err(|e| anyhow::anyhow!("{}: cannot write the tuning cache: {e}", cache.path().display()))?;
    println!("\nsaved    {}", cache.path().display());
    Ok(())
}

/// A GPU backend's decode GEMV family: its candidates' unit, classes (name and built-in
/// probe) and how an out-in product's inner size picks its class.
struct GpuGemv<'a> {
    name: &'a str,
    default: usize,
    unit: &'a str,
    classes: &'a [(&'a str, (usize, usize, usize))],
    gate_up_class: usize,
    matmul_class: fn(usize) -> usize,
}

/// Times every class of a GPU GEMV family on its probe (the model's largest projection of
/// the class where one is given) through `run(class, probe)`, prints the table against the
/// copy bandwidth and records the choices.
fn tune_gpu_gemv(family: &GpuGemv, model: &Option<Projections>, bandwidth: f64, cache: &mut TuneCache, run: &dyn Fn(usize, Option<(usize, usize, usize)>) -> Result<ProbeTuning>) -> Result<()> {
    for (c, (class, builtin)) in family.classes.iter().enumerate() {
        let probe = model.as_ref().and_then(|p| {
            if c == family.gate_up_class {
                p.probe(1, |k| k == p.shapes[2].0)
            } else {
                p.probe(1, |k| (family.matmul_class)(k) == c)
            }
        });
        let run = run(c, probe)?;
        let rate = |s: f64| {
            let gbs = run.bytes_per_timing / s / 1e9;
            (format!("{gbs:.1} GB/s"), 100.0 * (gbs / bandwidth).min(1.0))
        };
        let table = Table { family: family.name, class, timings: &run.timings, best: run.best, default: family.default };
        table.print_rows(|c| format!("{c} {}", family.unit), rate);
        table.print_gain(&probe_label(probe.unwrap_or(*builtin), probe_source(model, probe.is_some())));
        table.record(cache);
    }
    Ok(())
}

fn print_header(share: &str) {
    println!(
        "{:<22} {:<15} {:>12} {:>10} {:>15} {:>7}  chosen",
        "family", "class", "candidate", "median ms", "rate", share
    );
}

fn probe_label((m, k, n): (usize, usize, usize), source: &str) -> String {
    format!("probe {m}x{k}x{n} bf16 ({source})")
}

/// One class's timings, for the table.
struct Table<'a> {
    family: &'a str,
    class: &'a str,
    timings: &'a [Timing],
    best: usize,
    default: usize,
}

impl Table<'_> {
    /// One line per candidate: median, rate and its share of the limit, the winner starred.
    fn print_rows(&self, label: impl Fn(&str) -> String, rate: impl Fn(f64) -> (String, f64)) {
        for (i, t) in self.timings.iter().enumerate() {
            let s = t.median.as_secs_f64();
            let (r, share) = rate(s);
            let default = if t.candidate == self.default.to_string() {
                " (default)"
            } else {
                ""
            };
            let mark = if i == self.best { "*" } else { "" };
            println!(
                "{:<22} {:<15} {:>12} {:>10.3} {r:>15} {share:>6.1}%  {mark}{default}",
                self.family,
                self.class,
                label(&t.candidate),
                s * 1e3
            );
        }
    }

    /// Stores the chosen candidate under `family/class`.
    fn record(&self, cache: &mut TuneCache) {
        cache.insert(&format!("{}/{}", self.family, self.class), cpu_tune::choice(self.best, self.timings));
    }

    /// The tuned-vs-default line.
    fn print_gain(&self, probe: &str) {
        if let Some(d) = self
            .timings
            .iter()
            .find(|t| t.candidate == self.default.to_string())
            .map(|t| t.median.as_secs_f64())
        {
            let best = self.timings[self.best].median.as_secs_f64();
            println!(
                "{:<22} {:<15} {probe}: tuned {:.3} ms vs default {:.3} ms: {:.3}x",
                "",
                self.class,
                best * 1e3,
                d * 1e3,
                d / best
            );
        }
    }
}

/// One line on what a backend runs with: a tuned table or the built-in defaults.
pub fn status(opened: &Opened) -> String {
    match opened {
        Opened::Cpu(_) => cpu_tune::status(),
        Opened::Wgpu(gpu) => gpu.tune_status().to_string(),
        Opened::Cuda(gpu) => gpu.tune_status().to_string(),
    }
}
