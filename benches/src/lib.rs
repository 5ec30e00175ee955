//! Criterion benchmarks live in `benches/`; workloads come from `uniaudio_runtime::bench`.
//! `timed` is the measurement both per-kernel benches share.

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};

/// Runs `f` under criterion (10 samples) with `sync` after each batch, and returns the
/// best seconds per call it saw (None when a filter skipped the benchmark).
pub fn timed(c: &mut Criterion, name: &str, throughput: Throughput, measure: Duration, mut f: impl FnMut(), sync: impl Fn()) -> Option<f64> {
    let mut group = c.benchmark_group(name);
    group.sample_size(10).measurement_time(measure).warm_up_time(Duration::from_millis(500));
    group.throughput(throughput);
    let mut best = f64::INFINITY;
    group.bench_function("call", |bch| {
        bch.iter_custom(|iters| {
            let t = Instant::now();
            for _ in 0..iters {
                f();
            }
            sync();
            let e = t.elapsed();
            best = best.min(e.as_secs_f64() / iters as f64);
            e
        })
    });
    group.finish();
    best.is_finite().then_some(best)
}
