//! Per-kernel benchmarks on every available backend (cpu; wgpu when an adapter exists;
//! cuda when a device exists): decode GEMV (an FFN matrix and the 128256-row head), the
//! fused gate/up projection, and decode attention over 512 and 2048 cached positions. Each prints achieved GB/s (bytes each call must read) next to
//! criterion's timing.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use uniaudio_runtime::{ops, Backend, Cpu, Cuda, DType, RowOrder, Tensor, WeightLayout, Wgpu};

fn random<B: Backend>(b: &B, shape: &[usize], dtype: DType, seed: u32) -> Tensor<B> {
    let n: usize = shape.iter().product();
    let values: Vec<f32> = (0..n).map(|i| (uniaudio_runtime::rng::hash32(seed ^ i as u32) >> 8) as f32 / 8_388_608.0 - 1.0).collect();
    ops::upload_f32(b, shape, &values, dtype).expect("upload")
}

/// Times `f` (synchronised) and reports bytes/second through criterion.
fn bench<B: Backend>(c: &mut Criterion, backend: &B, label: &str, name: &str, bytes: usize, f: impl FnMut()) {
    let name = format!("{name}/{label}");
    let best = uniaudio_benches::timed(c, &name, Throughput::Bytes(bytes as u64), Duration::from_secs(3), f, || backend.sync().expect("sync"));
    if let Some(best) = best {
        println!("{name}: best {:.3} ms, {:.2} GB/s", best * 1e3, bytes as f64 / best / 1e9);
    }
}

fn kernels_on<B: Backend>(c: &mut Criterion, b: &B, label: &str) {
    // GEMV: one FFN-sized bf16 matrix.
    let (n, k) = (8192, 3072);
    let w = random(b, &[n, k], DType::BF16, 1);
    let x = random(b, &[1, k], DType::F32, 2);
    let out = b.alloc(DType::F32, &[1, n]).unwrap();
    bench(c, b, label, "gemv_bf16_8192x3072", n * k * 2, || ops::matmul(b, &x, &w, &out, WeightLayout::OutIn, false).unwrap());
    {
        // The text head: 128256 rows (788 MB in bf16; split across bindings on wgpu).
        let vocab = 128_256;
        let head = random(b, &[vocab, k], DType::BF16, 8);
        let logits = b.alloc(DType::F32, &[1, vocab]).unwrap();
        bench(c, b, label, "gemv_bf16_128256x3072", vocab * k * 2, || ops::matmul(b, &x, &head, &logits, WeightLayout::OutIn, false).unwrap());
    }

    // Prefill GEMM: 64 rows against the same matrix (compute-bound: report GFLOP/s).
    let xs = random(b, &[64, k], DType::F32, 7);
    let outs = b.alloc(DType::F32, &[64, n]).unwrap();
    let flops = 2 * 64 * n * k;
    let t = Instant::now();
    let reps = 3;
    for _ in 0..reps {
        ops::matmul(b, &xs, &w, &outs, WeightLayout::OutIn, false).unwrap();
    }
    b.sync().unwrap();
    println!("gemm_bf16_64x3072x8192/{label}: {:.1} GFLOP/s (mean of {reps})", flops as f64 * reps as f64 / t.elapsed().as_secs_f64() / 1e9);

    small_m(b, label, &w, n, k);

    // The fused MLP input: gate and up [8192 x 3072] bf16.
    let w2 = random(b, &[n, k], DType::BF16, 3);
    bench(c, b, label, "gate_up_bf16_8192x3072", 2 * n * k * 2, || ops::gate_up(b, &x, &w, &w2, &out, RowOrder::Free).unwrap());

    // Decode attention: 24 query heads over 8 KV heads of 128, f32 cache.
    for len in [512, 2048] {
        let (h, g, d) = (24, 8, 128);
        let q = random(b, &[1, h, d], DType::F32, 4);
        let kc = random(b, &[g, len, d], DType::F32, 5);
        let vc = random(b, &[g, len, d], DType::F32, 6);
        let att = b.alloc(DType::F32, &[1, h, d]).unwrap();
        bench(c, b, label, &format!("attention_decode_{len}"), 2 * g * len * d * 4, || ops::attention(b, &q, &kc, &vc, &att, len, true).unwrap());
    }
}

/// Batched decode's small-M products against the same matrix: row-invariant (each row as
/// it would be alone; what the engine runs) and free-order (the prefill kernel), with the
/// weight bandwidth and arithmetic rate each reaches. On the CPU, against the read
/// bandwidth and FMA peak measured here.
fn small_m<B: Backend>(b: &B, label: &str, w: &Tensor<B>, n: usize, k: usize) {
    let peaks = (label == "cpu").then(|| {
        let isa = uniaudio_runtime::cpu::Isa::detect();
        (uniaudio_runtime::cpu::bandwidth::measure_read_bandwidth(1 << 30, 3).gb_per_s(), uniaudio_runtime::cpu::peak::measure_fma_peak(isa, 3))
    });
    if let Some((bw, fma)) = peaks {
        println!("small-M/{label}: read bandwidth {bw:.1} GB/s, FMA peak {fma:.0} GFLOP/s");
    }
    for m in [1, 2, 4, 8, 16, 32, 64] {
        let x = random(b, &[m, k], DType::F32, 9);
        let out = b.alloc(DType::F32, &[m, n]).unwrap();
        let time = |order: RowOrder| {
            ops::matmul_rows(b, &x, w, &out, WeightLayout::OutIn, false, order).unwrap();
            b.sync().unwrap();
            let mut best = f64::MAX;
            for _ in 0..5 {
                let t = Instant::now();
                ops::matmul_rows(b, &x, w, &out, WeightLayout::OutIn, false, order).unwrap();
                b.sync().unwrap();
                best = best.min(t.elapsed().as_secs_f64());
            }
            best
        };
        let (inv, free) = (time(RowOrder::Invariant), time(RowOrder::Free));
        let (gb, gflop) = ((n * k * 2) as f64 / inv / 1e9, (2 * m * n * k) as f64 / inv / 1e9);
        let of_peak = peaks.map_or(String::new(), |(bw, fma)| format!(" ({:.0}% of bw, {:.0}% of FMA peak)", 100.0 * gb / bw, 100.0 * gflop / fma));
        println!(
            "small-M/{label} M={m:>2} bf16 {n}x{k}: invariant {:.2} ms, {gb:.1} GB/s, {gflop:.0} GFLOP/s{of_peak}; free-order {:.2} ms; invariant/free time {:.2}",
            inv * 1e3,
            free * 1e3,
            inv / free
        );
    }
}

fn kernels(c: &mut Criterion) {
    kernels_on(c, &Cpu::new(), "cpu");
    match Wgpu::new() {
        Ok(gpu) => {
            println!("wgpu adapter: {}", gpu.describe());
            kernels_on(c, &gpu, "wgpu");
        }
        Err(e) => println!("wgpu benchmarks skipped: {e}"),
    }
    match Cuda::new() {
        Ok(gpu) => {
            println!("cuda device: {}", gpu.describe());
            kernels_on(c, &gpu, "cuda");
        }
        Err(e) => println!("cuda benchmarks skipped (no CUDA device): {e}"),
    }
}

criterion_group!(benches, kernels);
criterion_main!(benches);
