//! Compute-bound CPU GEMMs at the codec's shapes (f32 weights, both CFG rows of a 20 s
//! window = 1000 frames) at every level the CPU has: GFLOP/s against the measured peak of
//! the instruction each level's GEMM runs on. Then Q8_0 weights at the `fast` level (the
//! LM's prefill projections and a codec linear) against the peak of the products it runs,
//! bf16 weights the same way (and the flow's linears as the codec keeps them), and
//! attention over many queries.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use uniaudio_runtime::cpu::peak::{measure_fma_peak, measure_gemm_peak};
use uniaudio_runtime::cpu::Isa;
use uniaudio_runtime::weights::WeightView;
use uniaudio_runtime::{ops, Backend, ConvParams, Cpu, DType, Epilogue, Precision, Tensor};

fn random(b: &Cpu, shape: &[usize], seed: u32) -> Tensor<Cpu> {
    let n: usize = shape.iter().product();
    let values: Vec<f32> = (0..n).map(|i| (uniaudio_runtime::rng::hash32(seed ^ i as u32) >> 8) as f32 / 8_388_608.0 - 1.0).collect();
    ops::upload_f32(b, shape, &values, DType::F32).expect("upload")
}

/// The compute peak the percentages use: measured before the shapes, and again whenever a
/// kernel beats it (a busy neighbour on a shared host can slow every pass of one probe),
/// the best measurement kept.
struct Peak {
    gflops: f64,
    probe: Box<dyn Fn() -> f64>,
}

impl Peak {
    fn measure(probe: impl Fn() -> f64 + 'static) -> Peak {
        Peak { gflops: probe(), probe: Box::new(probe) }
    }

    /// `achieved` as a share of the peak; never above 100%.
    fn share(&mut self, achieved: f64) -> String {
        if achieved > self.gflops {
            self.gflops = self.gflops.max((self.probe)());
        }
        if achieved > self.gflops {
            return format!("above the {:.1} GFLOP/s peak measured twice (the probe ran slow; no percentage)", self.gflops);
        }
        format!("{:.1}% of the {:.1} GFLOP/s peak", 100.0 * achieved / self.gflops, self.gflops)
    }
}

fn report(c: &mut Criterion, name: &str, flops: f64, peak: &mut Peak, f: impl FnMut()) {
    if let Some(best) = uniaudio_benches::timed(c, name, Throughput::Elements(flops as u64), Duration::from_secs(5), f, || {}) {
        let gflops = flops / best / 1e9;
        println!("{name}: best {:.2} ms, {gflops:.1} GFLOP/s = {}", best * 1e3, peak.share(gflops));
    }
}

/// Every level this CPU has, at the precision each runs: exact f32, then the fast levels
/// (bf16 operands: `vdpbf16ps`, then AMX tiles).
fn gemm(c: &mut Criterion) {
    for isa in [Isa::detect(), Isa::Avx512Bf16, Isa::Amx] {
        if !isa.available() || (isa != Isa::detect() && isa <= Isa::detect()) {
            println!("SKIPPED {}: this CPU lacks it", isa.key());
            continue;
        }
        let b = Cpu::with_isa(isa);
        let mut peak = Peak::measure(move || measure_fma_peak(isa, 5));
        println!(
            "measured peak: {:.1} GFLOP/s ({} threads, {}, {} precision)",
            peak.gflops,
            b.threads(),
            isa.name(),
            isa.precision().name()
        );
        gemm_shapes(c, &b, &mut peak);
    }
}

fn gemm_shapes(c: &mut Criterion, b: &Cpu, peak: &mut Peak) {
    let level = b.isa().key();
    let m = 1000;
    // The DiT's projections: attention (D x D), FFN up (4D x D) with GELU, FFN down with the gated residual.
    for (name, n, k) in [
        ("linear_1000x1536x1536", 1536, 1536),
        ("linear_gelu_1000x1536x6144", 6144, 1536),
        ("linear_gated_1000x6144x1536", 1536, 6144),
    ] {
        let x = random(b, &[m, k], 1);
        let w = random(b, &[n, k], 2);
        let bias = random(b, &[n], 3);
        let gate = random(b, &[n], 4);
        let out = b.alloc(DType::F32, &[m, n]).unwrap();
        let flops = 2.0 * (m * n * k) as f64;
        report(c, &format!("{level}/{name}"), flops, peak, || {
            let epilogue = match name {
                n if n.contains("gelu") => Epilogue::Act(uniaudio_runtime::UnaryFn::GeluTanh),
                n if n.contains("gated") => Epilogue::GatedAdd { gate: &gate },
                _ => Epilogue::Store,
            };
            ops::linear(b, &x, &w, Some(&bias), &out, epilogue).unwrap()
        });
    }
    // An SQ-decoder residual conv (k = 7, dilation 3, causal) on 128 channels x 24000
    // frames; WavLM's strided feature-encoder conv (512 channels, k = 3, stride 2); Whisper's
    // second conv (1280 channels, k = 3, stride 2, one 30 s window).
    for (name, frames, c_in, c_out, k, stride, dilation, pad_left) in [
        ("conv1d_k7_128ch_24000", 24000, 128, 128, 7, 1, 3, 18),
        ("conv1d_k3s2_512ch_6000", 6000, 512, 512, 3, 2, 1, 0),
        ("conv1d_k3s2_1280ch_1500", 1500, 1280, 1280, 3, 2, 1, 1),
    ] {
        let l_in = (frames - 1) * stride + (k - 1) * dilation + 1 - pad_left;
        let x = random(b, &[1, l_in, c_in], 5);
        let w = random(b, &[c_out, k, c_in], 6);
        let out = b.alloc(DType::F32, &[1, frames, c_out]).unwrap();
        let conv = ConvParams { stride, dilation, pad_left, ..ConvParams::plain() };
        report(c, &format!("{level}/{name}"), 2.0 * (frames * c_in * c_out * k) as f64, peak, || ops::conv1d(b, &x, &w, None, &out, conv).unwrap());
    }
}

/// A 64-token prefill's projections on the 3B backbone (attention, MLP up, MLP down) and a
/// codec linear with 8-bit weights, at the `fast` level (8-bit inputs where it has integer
/// products).
fn prefill_q8(c: &mut Criterion) {
    prefill(c, DType::Q8_0, Precision::Fast);
}

/// The same products with bf16 weights (the LM's stored dtype), in both precisions.
fn prefill_bf16(c: &mut Criterion) {
    prefill(c, DType::BF16, Precision::Fast);
    prefill(c, DType::BF16, Precision::Exact);
}

fn prefill(c: &mut Criterion, dtype: DType, precision: Precision) {
    let isa = Isa::for_precision(precision);
    if precision == Precision::Fast && dtype == DType::BF16 && isa == Isa::for_precision(Precision::Exact) {
        println!("SKIPPED fast bf16 prefill: this CPU's fast level is its exact one ({})", isa.key());
        return;
    }
    let b = Cpu::with_isa(isa);
    let mut peak = Peak::measure(move || measure_gemm_peak(isa, dtype, 5));
    println!("measured peak of {} ({} precision) with {} weights: {:.1} GFLOP/s ({} threads)", isa.name(), precision.name(), dtype.name(), peak.gflops, b.threads());
    // The prefill's 64 rows on the backbone's shapes, then the codec's 1000 rows (its flow
    // linears are stored in bf16 or 8 bits).
    for (m, n, k) in [(64, 3072, 3072), (64, 8192, 3072), (64, 3072, 8192), (1000, 1536, 1536), (1000, 6144, 1536), (1000, 1536, 6144)] {
        let x = random(&b, &[m, k], 7);
        let values: Vec<f32> = (0..n * k).map(|i| (uniaudio_runtime::rng::hash32(8 ^ i as u32) >> 8) as f32 / 8_388_608.0 - 1.0).collect();
        let w = ops::upload_f32(&b, &[n, k], &values, dtype).expect("upload");
        let out = b.alloc(DType::F32, &[m, n]).unwrap();
        report(c, &format!("{}/prefill_{}_{m}x{n}x{k}", isa.key(), if dtype == DType::Q8_0 { "q8" } else { dtype.name() }), 2.0 * (m * n * k) as f64, &mut peak, || ops::linear(&b, &x, &w, None, &out, Epilogue::Store).unwrap());
    }
    if dtype != DType::BF16 || precision != Precision::Fast {
        return;
    }
    // The flow's linears on both CFG rows of a 20 s window, as a plain weight and as the
    // codec keeps them (`Backend::upload_gemm_weight`: paired once for the packed GEMM).
    for (m, n, k) in [(1000, 1536, 1536), (1000, 6144, 1536), (1000, 1536, 6144)] {
        let x = random(&b, &[m, k], 7);
        let values: Vec<f32> = (0..n * k).map(|i| (uniaudio_runtime::rng::hash32(8 ^ i as u32) >> 8) as f32 / 8_388_608.0 - 1.0).collect();
        let bytes = uniaudio_runtime::dtype::f32_to_bytes(&values, dtype);
        let view = WeightView::from_bytes("w", dtype, &[n, k], &bytes).expect("weight");
        let out = b.alloc(DType::F32, &[m, n]).unwrap();
        for (how, w) in [("", b.upload_weight(&view)), ("kept_", b.upload_gemm_weight(&view))] {
            let w = w.expect("upload");
            report(c, &format!("{}/prefill_bf16_{how}{m}x{n}x{k}", isa.key()), 2.0 * (m * n * k) as f64, &mut peak, || ops::linear(&b, &x, &w, None, &out, Epilogue::Store).unwrap());
        }
    }
}

/// Attention over a 30 s Whisper window (1500 positions, 20 heads of 64, bidirectional)
/// and a 512-token causal prefill of the 3B backbone (24 heads over 8 KV heads of 128),
/// at the exact and the fast level (their softmax exponentials differ).
fn attention_prefill(c: &mut Criterion) {
    let mut levels = vec![Isa::detect()];
    let fast = Isa::for_precision(uniaudio_runtime::Precision::Fast);
    if fast != levels[0] {
        levels.push(fast);
    }
    for isa in levels {
        let b = Cpu::with_isa(isa);
        let mut peak = Peak::measure(move || measure_fma_peak(isa, 5));
        for (t, heads, kv_heads, d, causal) in [(1500, 20, 20, 64, false), (512, 24, 8, 128, true)] {
            let q = random(&b, &[t, heads, d], 9);
            let kc = random(&b, &[kv_heads, t, d], 10);
            let vc = random(&b, &[kv_heads, t, d], 11);
            let out = b.alloc(DType::F32, &[t, heads, d]).unwrap();
            // Q·Kᵀ and P·V over every (query, key) pair a query sees.
            let pairs = if causal { t * (t + 1) / 2 } else { t * t };
            let flops = 4.0 * (pairs * heads * d) as f64;
            report(c, &format!("{}/attention_{t}x{heads}x{d}{}", isa.key(), if causal { "_causal" } else { "" }), flops, &mut peak, || ops::attention(&b, &q, &kc, &vc, &out, t, causal).unwrap());
        }
    }
}

criterion_group!(benches, gemm, prefill_q8, prefill_bf16, attention_prefill);
criterion_main!(benches);
