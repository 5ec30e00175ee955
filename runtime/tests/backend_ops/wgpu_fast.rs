//! wgpu's `fast` precision really takes f16 operands in the tiled GEMM: a linear matches a
//! float64 reference over the f16-rounded operands far closer than the unrounded product
//! (which `exact` matches instead).

use uniaudio_runtime::{ops, Backend, DType, Epilogue, Precision, Wgpu, WgpuOptions};

use crate::harness::{nmse, Rng};

/// x [m, k] . w [n, k]^T in float64, each operand first passed through `round`.
fn reference(x: &[f32], w: &[f32], (m, n, k): (usize, usize, usize), round: fn(f32) -> f64) -> Vec<f64> {
    let mut out = vec![0f64; m * n];
    for i in 0..m {
        for j in 0..n {
            out[i * n + j] = (0..k).map(|c| round(x[i * k + c]) * round(w[j * k + c])).sum();
        }
    }
    out
}

#[test]
fn wgpu_fast_rounds_gemm_operands_to_f16() {
    let open = |precision| Wgpu::with_options(WgpuOptions { precision, ..WgpuOptions::from_env() });
    let fast = match open(Precision::Fast) {
        Ok(gpu) if gpu.precision() == Precision::Fast => gpu,
        Ok(gpu) => return println!("SKIPPED wgpu fast precision: {} lacks SHADER_F16", gpu.describe()),
        Err(e) => return super::skip_wgpu(&e.to_string()),
    };
    let exact = open(Precision::Exact).expect("the adapter opened once");
    // Partial tiles and a K tail.
    let (m, n, k) = (37, 70, 83);
    let mut rng = Rng::new(7);
    let (x, w) = (rng.vec(m * k, 1.0), rng.vec(n * k, 1.0));
    let f16 = |v: f32| half::f16::from_f32(v).to_f64();
    let rounded = reference(&x, &w, (m, n, k), f16);
    let unrounded = reference(&x, &w, (m, n, k), |v| v as f64);
    let run = |gpu: &Wgpu| {
        let xt = ops::upload_f32(gpu, &[m, k], &x, DType::F32).unwrap();
        let wt = ops::upload_f32(gpu, &[n, k], &w, DType::F32).unwrap();
        let out = gpu.alloc(DType::F32, &[m, n]).unwrap();
        ops::linear(gpu, &xt, &wt, None, &out, Epilogue::Store).unwrap();
        ops::download_f32(gpu, &out).unwrap()
    };
    let (got_fast, got_exact) = (run(&fast), run(&exact));
    let (fast_rounded, fast_unrounded) = (nmse(&got_fast, &rounded), nmse(&got_fast, &unrounded));
    println!("{}: NMSE to the f16 / f64 references: fast {fast_rounded:.2e} / {fast_unrounded:.2e}", fast.describe());
    assert!(fast_rounded * 100.0 < fast_unrounded, "fast: NMSE {fast_rounded:.2e} to the f16 reference, {fast_unrounded:.2e} to the f64 one");
    let (exact_rounded, exact_unrounded) = (nmse(&got_exact, &rounded), nmse(&got_exact, &unrounded));
    assert!(exact_unrounded * 100.0 < exact_rounded, "exact: NMSE {exact_rounded:.2e} to the f16 reference, {exact_unrounded:.2e} to the f64 one");
}
