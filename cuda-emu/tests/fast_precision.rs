//! The `fast` precision's tensor-core kernels really take bf16 operands: their products
//! match a float64 reference over the bf16-rounded operands to f32 summation error, far
//! closer than they match the unrounded product (which `exact` matches instead).

use uniaudio_cuda_emu::{CudaEmu, EmuOptions};
use uniaudio_runtime::{ops, Backend, ConvParams, DType, Epilogue, Precision};

/// bf16 of an f32, round to nearest even (no NaN in these inputs).
fn bf16(v: f32) -> f64 {
    let b = v.to_bits();
    f32::from_bits(((b + 0x7fff + ((b >> 16) & 1)) >> 16) << 16) as f64
}

fn inputs(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn nmse(got: &[f32], want: &[f64]) -> f64 {
    let err: f64 = got.iter().zip(want).map(|(&g, &w)| (g as f64 - w).powi(2)).sum();
    err / want.iter().map(|w| w * w).sum::<f64>()
}

/// x [m, k] . w [n, k]^T in float64, each operand first passed through `round`.
fn reference(x: &[f32], w: &[f32], m: usize, n: usize, k: usize, round: fn(f32) -> f64) -> Vec<f64> {
    let mut out = vec![0f64; m * n];
    for i in 0..m {
        for j in 0..n {
            out[i * n + j] = (0..k).map(|c| round(x[i * k + c]) * round(w[j * k + c])).sum();
        }
    }
    out
}

fn emulator(precision: Precision) -> CudaEmu {
    CudaEmu::new(EmuOptions { tensor_cores: true, sm_count: 4, precision })
}

#[test]
fn fast_linear_rounds_both_operands_to_bf16() {
    // Odd sizes: partial tiles and a K tail that is not a whole 16-deep step.
    let (m, n, k) = (37, 70, 83);
    let (x, w) = (inputs(m * k, 1), inputs(n * k, 2));
    for dtype in [DType::F32, DType::BF16] {
        // The weights as stored (bf16 storage rounds them on upload).
        let stored: Vec<f32> = if dtype == DType::BF16 { w.iter().map(|&v| bf16(v) as f32).collect() } else { w.clone() };
        let rounded = reference(&x, &stored, m, n, k, bf16);
        let unrounded = reference(&x, &stored, m, n, k, |v| v as f64);
        for precision in [Precision::Fast, Precision::Exact] {
            let emu = emulator(precision);
            let xt = ops::upload_f32(&emu, &[m, k], &x, DType::F32).unwrap();
            let wt = ops::upload_f32(&emu, &[n, k], &w, dtype).unwrap();
            let out = emu.alloc(DType::F32, &[m, n]).unwrap();
            ops::linear(&emu, &xt, &wt, None, &out, Epilogue::Store).unwrap();
            let got = ops::download_f32(&emu, &out).unwrap();
            let (to_rounded, to_unrounded) = (nmse(&got, &rounded), nmse(&got, &unrounded));
            let label = format!("{dtype:?} {precision:?}: NMSE {to_rounded:.2e} to the bf16 reference, {to_unrounded:.2e} to the f64 one");
            if precision == Precision::Fast {
                assert!(to_rounded < 1e-11 && to_unrounded > 1e-7, "{label}");
            } else {
                assert!(to_unrounded < 1e-11 && to_rounded > 1e-7, "{label}");
            }
        }
    }
}

#[test]
fn fast_conv1d_runs_on_bf16_tiles() {
    // A pointwise conv1d wide enough for the implicit GEMM: the GEMM x [l, c_in] . w^T.
    let (l, c_in, c_out) = (40, 48, 64);
    let (x, w) = (inputs(l * c_in, 3), inputs(c_out * c_in, 4));
    let rounded = reference(&x, &w, l, c_out, c_in, bf16);
    let emu = emulator(Precision::Fast);
    let xt = ops::upload_f32(&emu, &[1, l, c_in], &x, DType::F32).unwrap();
    let wt = ops::upload_f32(&emu, &[c_out, 1, c_in], &w, DType::F32).unwrap();
    let out = emu.alloc(DType::F32, &[1, l, c_out]).unwrap();
    ops::conv1d(&emu, &xt, &wt, None, &out, ConvParams::plain()).unwrap();
    let got = ops::download_f32(&emu, &out).unwrap();
    let e = nmse(&got, &rounded);
    assert!(e < 1e-11, "conv1d fast: NMSE {e:.2e} to the bf16 reference");
}
