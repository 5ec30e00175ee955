//! test-backend-ops for the CUDA backend without a GPU: every case of the runtime's op
//! harness through the CUDA op mapping and kernels on the CPU emulator, with the
//! tensor-core kernels on and off, and the `fast` precision's bf16 tensor-core kernels.

#[path = "../../runtime/tests/backend_ops/cases.rs"]
mod cases;
#[path = "../../runtime/tests/backend_ops/codec_cases.rs"]
mod codec_cases;
#[path = "../../runtime/tests/backend_ops/encode_cases.rs"]
mod encode_cases;
#[path = "../../runtime/tests/backend_ops/harness.rs"]
mod harness;
#[path = "../../runtime/tests/backend_ops/reference.rs"]
mod reference;

use uniaudio_cuda_emu::{CudaEmu, EmuOptions};
use uniaudio_runtime::Precision;

/// Whether the CUDA mapping may pick a tensor-core kernel for `case` (`cuda::launch`:
/// out-in products of free rows and linears with 16-bit weights, convolutions, attention).
fn reaches_tensor_cores(case: &cases::Case) -> bool {
    use cases::Case::*;
    use uniaudio_runtime::WeightLayout;
    match case {
        MatMul { layout: WeightLayout::OutIn, dtype, .. } | Linear { dtype, .. } => !dtype.is_quantized(),
        _ => matches!(case, Conv1d { .. } | ConvTranspose1d { .. } | Conv2d { .. } | Attention { .. } | RelPosAttention { .. }),
    }
}

/// Whether the `fast` precision may pick a bf16 tensor-core kernel for `case`: the GEMMs
/// and implicit-GEMM convolutions with float weights (attention and the 8-bit products
/// stay exact).
fn reaches_fast_kernels(case: &cases::Case) -> bool {
    cases::reaches_gemm_tiles(case) && !cases::quantized_weights(case)
}

/// Row-invariance cases the emulator leaves to the other dtypes: the GEMV's row handling
/// does not depend on the weight dtype, and the 16-bit loads run in every other GEMV, gated
/// MLP and linear case; f32, Q8_0 and Q4_0 (whose loads differ most) keep the invariance
/// cases.
/// The emulator runs each such case thread by thread, seconds per case.
fn invariance_case_left_to_other_dtypes(case: &cases::Case) -> bool {
    use uniaudio_runtime::DType;
    matches!(case, cases::Case::InvariantRows { dtype: DType::F16 | DType::BF16, .. })
}

#[test]
fn cuda_kernels_pass_the_op_harness_on_the_emulator() {
    let mut report = harness::Report::default();
    let passes = [(true, Precision::Exact), (false, Precision::Exact), (true, Precision::Fast)];
    for (tensor_cores, precision) in passes {
        let emu = CudaEmu::new(EmuOptions { tensor_cores, sm_count: 4, precision });
        let label = emu.describe();
        // `fast` at its stated tolerance (harness::FAST_NMSE).
        harness::set_reduced_precision(precision == Precision::Fast);
        for (i, case) in cases::all_cases().iter().enumerate() {
            // Only GEMMs, convolutions and attention have tensor-core kernels, and only
            // GEMMs and convolutions bf16 ones; every other op maps to the same kernel
            // either way and runs once, with them on in `exact`.
            let runs = match (tensor_cores, precision) {
                (true, Precision::Exact) => true,
                (false, _) => reaches_tensor_cores(case),
                (true, Precision::Fast) => reaches_fast_kernels(case),
            };
            if !runs || invariance_case_left_to_other_dtypes(case) {
                continue;
            }
            let t = std::time::Instant::now();
            match cases::run(case, &emu, 0x5eed_0000 + i as u64) {
                Ok(Some(verdict)) => report.record(&label, case, verdict),
                Ok(None) => report.record(&label, case, harness::Verdict::Fail("unsupported by the CUDA mapping".into())),
                Err(e) => report.record(&label, case, harness::Verdict::Fail(format!("error: {e}"))),
            }
            let s = t.elapsed().as_secs_f64();
            if s > 1.0 {
                println!("slow: {case:?} {s:.1} s");
            }
        }
    }
    harness::set_reduced_precision(false);
    let left = cases::all_cases().iter().filter(|c| invariance_case_left_to_other_dtypes(c)).count();
    println!("cuda on the emulator: {} passed, {} failed, {} unsupported ({left} 16-bit row-invariance cases left to f32, q8_0 and q4_0)", report.passed, report.failed.len(), report.unsupported);
    assert!(report.failed.is_empty(), "{} cases failed:\n{}", report.failed.len(), report.failed.join("\n"));
}

/// Every `cuda.gemv.warps` candidate passes the cases the GEMV kernels run (the default
/// runs in the test above): out-in products of up to 8 rows and the gated MLP input. (The
/// row-invariance cases and the larger shapes run the same kernels; each output is one
/// warp's whatever the block, so they are left to the default: seconds each here.)
#[test]
fn every_gemv_warps_candidate_passes_the_gemv_cases() {
    use uniaudio_runtime::cuda::tune::{set_gemv_warps, GEMV_CLASSES, GEMV_WARPS_CANDIDATES, GEMV_WARPS_DEFAULT};
    use uniaudio_runtime::WeightLayout;
    let gemv_cases: Vec<cases::Case> = cases::all_cases()
        .into_iter()
        .filter(|c| {
            // Shapes of up to 1100 outputs: the emulator runs every warp as host threads.
            match *c {
                cases::Case::MatMul { layout: WeightLayout::OutIn, m, n, .. } => m <= 8 && m * n <= 1100,
                cases::Case::GateUp { m, f, .. } => m * f <= 1100,
                _ => false,
            }
        })
        .collect();
    let mut report = harness::Report::default();
    for &warps in GEMV_WARPS_CANDIDATES.iter().filter(|&&w| w != GEMV_WARPS_DEFAULT) {
        let emu = CudaEmu::new(EmuOptions { tensor_cores: true, sm_count: 4, precision: Precision::Exact });
        for class in 0..GEMV_CLASSES.len() {
            set_gemv_warps(&emu, class, warps).unwrap();
        }
        let label = format!("cuda-emu/gemv {warps} warps");
        for (i, case) in gemv_cases.iter().enumerate() {
            match cases::run(case, &emu, 0x6e4_0000 + i as u64) {
                Ok(Some(verdict)) => report.record(&label, case, verdict),
                Ok(None) => report.record(&label, case, harness::Verdict::Fail("unsupported".into())),
                Err(e) => report.record(&label, case, harness::Verdict::Fail(format!("error: {e}"))),
            }
        }
    }
    println!("cuda.gemv.warps candidates: {} passed, {} failed", report.passed, report.failed.len());
    assert!(report.failed.is_empty(), "{}", report.failed.join("\n"));
    assert!(report.passed >= 3 * 15, "only {} cases ran", report.passed);
}
