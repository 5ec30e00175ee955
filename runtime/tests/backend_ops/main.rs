//! test-backend-ops: every op, on many shapes, on every backend, against a scalar
//! reference. A backend joins by adding one line to `backend_ops_all_backends`.

mod candidates;
mod cases;
mod codec_cases;
mod encode_cases;
mod harness;
mod reference;
mod wgpu_fast;

use uniaudio_runtime::cpu::Isa;
use uniaudio_runtime::{Backend, Cpu, Cuda, CudaOptions, DType, Precision, Wgpu, WgpuOptions};

use harness::Report;

fn run_all<B: Backend>(label: &str, backend: &B, report: &mut Report) {
    run_some(label, backend, report, |_| true)
}

fn run_some<B: Backend>(label: &str, backend: &B, report: &mut Report, wanted: impl Fn(&cases::Case) -> bool) {
    for (i, case) in cases::all_cases().iter().enumerate() {
        if !wanted(case) {
            continue;
        }
        harness::set_int8_inputs(cases::quantized_weights(case));
        match cases::run(case, backend, 0x5eed_0000 + i as u64) {
            Ok(Some(verdict)) => report.record(label, case, verdict),
            Ok(None) => report.unsupported(label, case),
            Err(e) => report.record(label, case, harness::Verdict::Fail(format!("error: {e}"))),
        }
    }
    harness::set_int8_inputs(false);
}

/// No adapter: a loud skip, or a failure where CI promised one (UNIAUDIO_REQUIRE_WGPU=1).
fn skip_wgpu(reason: &str) {
    if std::env::var("UNIAUDIO_REQUIRE_WGPU").is_ok_and(|v| v == "1") {
        panic!("wgpu backend required but unavailable: {reason}");
    }
    println!("SKIPPED wgpu backend: {reason}");
}

#[test]
fn backend_ops_all_backends() {
    let mut report = Report::default();
    // Every instruction-set level the machine has; the fast one at its stated tolerance.
    for isa in Isa::ALL {
        if !isa.available() {
            println!("SKIPPED cpu/{}: this CPU lacks it", isa.key());
            continue;
        }
        if isa == Isa::Avx2Int8 {
            // Its 8-bit products (at the int8 bound) differ from `avx2`'s.
            harness::set_int8_fast(true);
            run_all(&format!("cpu/{}", isa.name()), &Cpu::with_isa(isa), &mut report);
            harness::set_int8_fast(false);
            continue;
        }
        harness::set_reduced_precision(isa.precision() == Precision::Fast);
        run_all(&format!("cpu/{}", isa.name()), &Cpu::with_isa(isa), &mut report);
        harness::set_reduced_precision(false);
    }
    // The adapter's features on, then forced off (the UNIAUDIO_WGPU_NO_* switches).
    let variants = [
        WgpuOptions { max_binding: None, subgroups: true, shader_f16: true, precision: Precision::Exact },
        WgpuOptions { max_binding: None, subgroups: false, shader_f16: false, precision: Precision::Exact },
    ];
    for options in variants {
        match Wgpu::with_options(options) {
            Ok(gpu) => run_all(&format!("wgpu/{}", gpu.describe()), &gpu, &mut report),
            Err(e) => skip_wgpu(&e.to_string()),
        }
    }
    // `fast`: f16 operands in the tiled GEMMs and convolutions, at the stated tolerance;
    // only the ops that reach them run again.
    match Wgpu::with_options(WgpuOptions { precision: Precision::Fast, ..variants[0] }) {
        Ok(gpu) if gpu.precision() == Precision::Fast => {
            harness::set_reduced_precision(true);
            run_some(&format!("wgpu/{}", gpu.describe()), &gpu, &mut report, cases::reaches_gemm_tiles);
            harness::set_reduced_precision(false);
        }
        Ok(gpu) => println!("SKIPPED wgpu fast precision: {} lacks SHADER_F16", gpu.describe()),
        Err(e) => skip_wgpu(&e.to_string()),
    }
    // Tensor-core kernels on (where the device has them), then forced off; then `fast`
    // (bf16 tensor-core GEMMs) on the ops that reach them, at the stated tolerance.
    for (tensor_cores, precision) in [(true, Precision::Exact), (false, Precision::Exact), (true, Precision::Fast)] {
        match Cuda::with_options(CudaOptions { tensor_cores, graphs: false, precision }) {
            Ok(gpu) if gpu.precision() != precision => println!("SKIPPED cuda fast precision: {} has no tensor cores", gpu.describe()),
            Ok(gpu) if precision == Precision::Fast => {
                harness::set_reduced_precision(true);
                run_some(&format!("cuda/{}", gpu.describe()), &gpu, &mut report, cases::reaches_gemm_tiles);
                harness::set_reduced_precision(false);
            }
            Ok(gpu) => run_all(&format!("cuda/{}", gpu.describe()), &gpu, &mut report),
            Err(e) => {
                println!("SKIPPED (no CUDA device): {e}");
                break;
            }
        }
    }
    println!("backend ops: {} passed, {} failed, {} unsupported", report.passed, report.failed.len(), report.unsupported);
    assert!(report.passed > 0, "no case ran");
    assert!(report.failed.is_empty(), "{} cases failed:\n{}", report.failed.len(), report.failed.join("\n"));
}

/// Draws from many RNG streams must follow softmax(l / T) over the top-k set.
fn sampling_distribution<B: Backend>(backend: &B) {
    use uniaudio_runtime::{ops, SampleParams};
    let logits = [0.3f32, 2.0, -1.0, 1.5, 1.9, -3.0, 0.0, 1.0, 0.5, 1.2];
    let (top_k, temperature, draws) = (4usize, 0.9f32, 20_000usize);
    // Top 4 by value: ids 1, 4, 3, 9.
    let kept = [1usize, 4, 3, 9];
    let z: f64 = kept.iter().map(|&i| (logits[i] as f64 / temperature as f64).exp()).sum();
    let rows: Vec<f32> = (0..draws).flat_map(|_| logits).collect();
    let x = ops::upload_f32(backend, &[draws, logits.len()], &rows, DType::F32).unwrap();
    let out = backend.alloc(DType::U32, &[draws]).unwrap();
    let params = SampleParams { top_k, temperature, forbid_below: 0, seed: 42, counter: 0 };
    ops::top_k_sample(backend, &x, &out, params).unwrap();
    let ids = ops::download_u32(backend, &out).unwrap();
    let mut counts = [0usize; 10];
    for id in ids {
        counts[id as usize] += 1;
    }
    for (i, &c) in counts.iter().enumerate() {
        let freq = c as f64 / draws as f64;
        let p = if kept.contains(&i) { (logits[i] as f64 / temperature as f64).exp() / z } else { 0.0 };
        // 4.5 standard deviations of a binomial proportion.
        let tol = 4.5 * (p * (1.0 - p) / draws as f64).sqrt() + 1e-12;
        assert!((freq - p).abs() <= tol, "[{}] id {i}: frequency {freq:.4}, expected {p:.4} ± {tol:.4}", B::NAME);
    }
}

#[test]
fn sampling_follows_softmax_of_top_k() {
    sampling_distribution(&Cpu::new());
    sampling_distribution(&Cpu::with_isa(Isa::Scalar));
    match Wgpu::new() {
        Ok(gpu) => sampling_distribution(&gpu),
        Err(e) => skip_wgpu(&e.to_string()),
    }
    match Cuda::new() {
        Ok(gpu) => sampling_distribution(&gpu),
        Err(e) => println!("SKIPPED (no CUDA device): {e}"),
    }
}

/// Weights larger than one storage binding are split by rows, transparently: with a 64 KiB
/// cap, the matmul and embedding cases below need several bound ranges.
#[test]
fn wgpu_splits_weights_larger_than_a_binding() {
    let gpu = match Wgpu::with_options(WgpuOptions { max_binding: Some(64 << 10), ..WgpuOptions::from_env() }) {
        Ok(g) => g,
        Err(e) => return skip_wgpu(&e.to_string()),
    };
    use cases::Case;
    use uniaudio_runtime::WeightLayout;
    let mut report = Report::default();
    for dtype in [DType::F32, DType::BF16] {
        let split_cases = [
            Case::MatMul { m: 1, k: 96, n: 700, layout: WeightLayout::OutIn, dtype, accumulate: false },
            Case::MatMul { m: 3, k: 130, n: 300, layout: WeightLayout::OutIn, dtype, accumulate: true },
            Case::MatMul { m: 1, k: 300, n: 130, layout: WeightLayout::InOut, dtype, accumulate: false },
            Case::MatMul { m: 2, k: 300, n: 130, layout: WeightLayout::InOut, dtype, accumulate: true },
            Case::EmbedRows { vocab: 1000, cols: 33, n: 7, dtype },
            Case::EmbedCodebookSum { codebooks: 8, card: 130, cols: 40, frames: 3, dtype },
        ];
        // 8-bit and 4-bit rows: ranges start on whole blocks (a row of 96 weights is 102 or
        // 54 bytes, so range starts fall between 256-byte boundaries).
        let (q8, q4) = (DType::Q8_0, DType::Q4_0);
        let q8_cases = [
            Case::MatMul { m: 1, k: 96, n: 1500, layout: WeightLayout::OutIn, dtype: q8, accumulate: false },
            Case::MatMul { m: 3, k: 160, n: 700, layout: WeightLayout::OutIn, dtype: q8, accumulate: true },
            Case::MatMul { m: 1, k: 96, n: 2500, layout: WeightLayout::OutIn, dtype: q4, accumulate: false },
        ];
        let q8_cases = if dtype == DType::F32 { &q8_cases[..] } else { &[] };
        for (i, case) in split_cases.iter().chain(q8_cases).enumerate() {
            match cases::run(case, &gpu, 0xb1d_0000 + i as u64) {
                Ok(Some(v)) => report.record("wgpu/64KiB-bindings", case, v),
                Ok(None) => report.record("wgpu/64KiB-bindings", case, harness::Verdict::Fail("unsupported".into())),
                Err(e) => report.record("wgpu/64KiB-bindings", case, harness::Verdict::Fail(format!("error: {e}"))),
            }
        }
    }
    println!("split bindings: {} passed, {} failed", report.passed, report.failed.len());
    assert!(report.failed.is_empty(), "{}", report.failed.join("\n"));
}

/// A repeated step makes no new bind groups; a freed buffer's group leaves at the next miss.
#[test]
fn wgpu_reuses_bind_groups_until_their_buffers_are_freed() {
    use uniaudio_runtime::{ops, DType};
    let gpu = match Wgpu::new() {
        Ok(g) => g,
        Err(e) => return skip_wgpu(&e.to_string()),
    };
    let x = ops::upload_f32(&gpu, &[4, 8], &[1.5; 32], DType::F32).unwrap();
    let y = gpu.alloc(DType::F32, &[4, 8]).unwrap();
    let step = |out: &uniaudio_runtime::Tensor<Wgpu>| {
        ops::add(&gpu, &x, &x, out).unwrap();
        ops::softmax(&gpu, out, out).unwrap();
        ops::download_f32(&gpu, out).unwrap()
    };
    assert_eq!(step(&y), vec![0.125; 32]);
    let after_first = gpu.cached_bind_groups();
    assert!(after_first >= 2, "{after_first} bind groups cached after two dispatches");
    for _ in 0..3 {
        assert_eq!(step(&y), vec![0.125; 32]);
    }
    assert_eq!(gpu.cached_bind_groups(), after_first, "a repeated step made new bind groups");
    let temp = gpu.alloc(DType::F32, &[4, 8]).unwrap();
    step(&temp);
    let with_temp = gpu.cached_bind_groups();
    assert_eq!(with_temp, after_first + 2);
    drop(temp);
    let other = gpu.alloc(DType::F32, &[4, 8]).unwrap();
    step(&other);
    assert_eq!(gpu.cached_bind_groups(), with_temp, "the freed buffer's bind groups stayed");
}
