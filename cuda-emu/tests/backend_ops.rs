//! test-backend-ops for the CUDA backend without a GPU: every case of the runtime's op
//! harness through the CUDA op mapping and kernels on the CPU emulator, with the
//! tensor-core kernels on and off.

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

/// Whether the CUDA mapping may pick a tensor-core kernel for `case` (`cuda::launch`:
/// out-in products of free rows and linears with 16-bit weights, convolutions, attention).
fn reaches_tensor_cores(case: &cases::Case) -> bool {
    use cases::Case::*;
    use uniaudio_runtime::{DType, WeightLayout};
    match case {
        MatMul { layout: WeightLayout::OutIn, dtype, .. } | Linear { dtype, .. } => *dtype != DType::Q8_0,
        _ => matches!(case, Conv1d { .. } | ConvTranspose1d { .. } | Conv2d { .. } | Attention { .. } | RelPosAttention { .. }),
    }
}

/// Cases the CUDA mapping leaves to other backends: 8-bit linears with a bias (the Q8_0
/// GEMM's epilogue reads the bias in the weight's type).
fn left_unsupported(case: &cases::Case) -> bool {
    matches!(case, cases::Case::Linear { dtype: uniaudio_runtime::DType::Q8_0, bias: true, .. })
}

#[test]
fn cuda_kernels_pass_the_op_harness_on_the_emulator() {
    let mut report = harness::Report::default();
    for tensor_cores in [true, false] {
        let emu = CudaEmu::new(EmuOptions { tensor_cores, sm_count: 4 });
        let label = emu.describe();
        for (i, case) in cases::all_cases().iter().enumerate() {
            // Only GEMMs, convolutions and attention have tensor-core kernels; every other
            // op maps to the same kernel either way and runs once, with them on.
            if !tensor_cores && !reaches_tensor_cores(case) {
                continue;
            }
            let t = std::time::Instant::now();
            match cases::run(case, &emu, 0x5eed_0000 + i as u64) {
                Ok(Some(verdict)) => report.record(&label, case, verdict),
                Ok(None) if left_unsupported(case) => report.unsupported(&label, case),
                Ok(None) => report.record(&label, case, harness::Verdict::Fail("unsupported by the CUDA mapping".into())),
                Err(e) => report.record(&label, case, harness::Verdict::Fail(format!("error: {e}"))),
            }
            let s = t.elapsed().as_secs_f64();
            if s > 1.0 {
                println!("slow: {case:?} {s:.1} s");
            }
        }
    }
    println!("cuda on the emulator: {} passed, {} failed, {} unsupported", report.passed, report.failed.len(), report.unsupported);
    assert!(report.failed.is_empty(), "{} cases failed:\n{}", report.failed.len(), report.failed.join("\n"));
    // Each runs once (8-bit weights never reach tensor cores).
    let expected = cases::all_cases().iter().filter(|c| left_unsupported(c)).count();
    assert_eq!(report.unsupported, expected, "cases the CUDA mapping does not support");
}
