//! Decode GEMV on the CPU backend: the 128256 x 3072 text head and a stack of 16
//! [8192 x 3072] matrices (both far larger than the caches), in bf16 and f32.
//! Besides criterion's own report, prints achieved GB/s as a fraction of the read
//! bandwidth measured in the same run.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use uniaudio_runtime::bench::{GemvCase, GemvWorkload};
use uniaudio_runtime::cpu::bandwidth::measure_read_bandwidth;
use uniaudio_runtime::{Cpu, DType};

fn gemv(c: &mut Criterion) {
    let backend = Cpu::new();
    let bw = measure_read_bandwidth(1 << 30, 5).gb_per_s();
    println!("read bandwidth baseline: {bw:.2} GB/s");
    let mut summary = Vec::new();
    let mut group = c.benchmark_group("gemv/cpu");
    group.sample_size(10).measurement_time(Duration::from_secs(8)).warm_up_time(Duration::from_secs(1));
    for dtype in [DType::BF16, DType::F32] {
        for case in GemvCase::standard(dtype) {
            let work = GemvWorkload::new(&backend, &case).expect("allocate workload");
            let per_pass = RefCell::new(Vec::new());
            group.throughput(Throughput::Bytes(case.weight_bytes() as u64));
            let id = format!("{}/{}/{}x{}x{}", case.name, dtype, case.layers, case.rows, case.cols);
            group.bench_function(&id, |b| {
                b.iter_custom(|iters| {
                    let t = Instant::now();
                    for _ in 0..iters {
                        work.run_pass(&backend).expect("gemv pass");
                    }
                    let elapsed = t.elapsed();
                    per_pass.borrow_mut().push(elapsed.as_secs_f64() / iters as f64);
                    elapsed
                })
            });
            let mut times = per_pass.into_inner();
            let med = uniaudio_runtime::bench::median(&mut times);
            let gbs = case.weight_bytes() as f64 / med / 1e9;
            summary.push(format!("{id:<32} {gbs:7.2} GB/s  {:5.1}% of {bw:.2} GB/s read bandwidth", 100.0 * gbs / bw));
        }
    }
    group.finish();
    println!("\nGEMV summary (median per pass):");
    for line in summary {
        println!("  {line}");
    }
}

criterion_group!(benches, gemv);
criterion_main!(benches);
