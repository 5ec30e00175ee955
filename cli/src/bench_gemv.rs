//! `uniaudio bench-gemv`: the CPU decode GEMV on matrices larger than the caches, reported
//! as GB/s and as a fraction of the read bandwidth measured in the same run.

use anyhow::{bail, Context, Result};
use clap::Args;
use uniaudio_runtime::bench::{median, GemvCase, GemvWorkload};
use uniaudio_runtime::cpu::bandwidth::measure_read_bandwidth;
use uniaudio_runtime::{Cpu, DType};

#[derive(Args)]
pub struct BenchGemvArgs {
    /// Weight dtype: bf16, f16, f32, q8 or q4 (q8 and q4 read the audio heads transposed, in rows of blocks).
    #[arg(long, default_value = "bf16")]
    dtype: String,
    /// Timed passes per case (the median is reported).
    #[arg(long, default_value_t = 10)]
    reps: usize,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

pub fn run(args: BenchGemvArgs) -> Result<()> {
    let Some(dtype) = DType::parse(&args.dtype).filter(|d| d.is_float() || d.is_quantized()) else {
        bail!("--dtype: expected bf16, f16, f32, q8 or q4, got `{}`", args.dtype);
    };
    if args.reps == 0 {
        bail!("--reps must be at least 1");
    }
    crate::output::check_report_path(args.json.as_deref())?;
    let backend = Cpu::with_precision(crate::backend::precision());
    println!("backend cpu ({} threads, {}, {} precision)", backend.threads(), backend.isa().name(), backend.precision().name());
    // The read probe runs before and after the cases and the faster counts: on a shared
    // machine one probe alone can under-read and put a case above 100 %.
    let before = measure_read_bandwidth(1 << 30, 5);
    let mut timed = Vec::new();
    for case in GemvCase::standard(dtype) {
        let work = GemvWorkload::new(&backend, &case).with_context(|| format!("allocating {}", case.name))?;
        let mut times = work.time_passes(&backend, args.reps)?;
        let best = times.iter().copied().fold(f64::INFINITY, f64::min);
        timed.push((case, median(&mut times), best));
    }
    let after = measure_read_bandwidth(1 << 30, 5);
    let bw = before.gb_per_s().max(after.gb_per_s());
    println!("measured read bandwidth: {bw:.2} GB/s (best of 10 passes over 1 GiB, 5 before and 5 after the cases)\n");
    println!("{:<10} {:>5} {:>16} {:>9} {:>10} {:>10} {:>9} {:>10}", "case", "dtype", "shape", "MB/pass", "median ms", "best ms", "GB/s", "% of bw");
    let mut rows = Vec::new();
    let mut above_probe = false;
    for (case, med, best) in timed {
        let gbs = case.weight_bytes() as f64 / med / 1e9;
        let pct = crate::bench_codec::share_of_bandwidth(gbs, bw);
        above_probe |= pct.is_none();
        let shape = format!("{}x{}x{}", case.layers, case.rows, case.cols);
        println!(
            "{:<10} {:>5} {:>16} {:>9.1} {:>10.2} {:>10.2} {:>9.2} {}",
            case.name, case.dtype, shape, case.weight_bytes() as f64 / 1e6, med * 1e3, best * 1e3, gbs, crate::bench_codec::bandwidth_cell(gbs, bw, 10)
        );
        rows.push(serde_json::json!({
            "case": case.name, "dtype": case.dtype.name(), "layers": case.layers, "rows": case.rows, "cols": case.cols,
            "bytes_per_pass": case.weight_bytes(), "median_ms": med * 1e3, "best_ms": best * 1e3,
            "gb_per_s": gbs, "percent_of_read_bandwidth": pct,
        }));
    }
    if above_probe {
        println!("{}", crate::bench_codec::ABOVE_PROBE_NOTE);
    }
    if let Some(path) = args.json {
        let report = serde_json::json!({
            "backend": "cpu", "threads": backend.threads(), "isa": backend.isa().name(),
            "read_bandwidth_gb_per_s": bw, "gemv": rows,
        });
        crate::output::write_atomically(&path, &serde_json::to_string_pretty(&report)?)?;
    }
    Ok(())
}
