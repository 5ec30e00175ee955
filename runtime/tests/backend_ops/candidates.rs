//! Every candidate of every tunable kernel family passes the op harness cases its kernel
//! runs (the defaults run in the main harness).

use uniaudio_runtime::{Backend, Cpu, Precision, WeightLayout, Wgpu};

use crate::cases::{self, Case};
use crate::harness::{self, Report};
use crate::skip_wgpu;

/// Runs `cases` on `backend` under `label`; an unsupported case is a failure here, since
/// a candidate must cover everything its default does.
fn run_cases<B: Backend>(label: &str, backend: &B, cases: &[Case], seed: u64, report: &mut Report) {
    for (i, case) in cases.iter().enumerate() {
        match cases::run(case, backend, seed + i as u64) {
            Ok(Some(v)) => report.record(label, case, v),
            Ok(None) => report.record(label, case, harness::Verdict::Fail("unsupported".into())),
            Err(e) => report.record(label, case, harness::Verdict::Fail(format!("error: {e}"))),
        }
    }
}

/// The cases a decode GEMV runs: out-in products, the gated MLP input, row invariance.
fn gemv_cases() -> Vec<Case> {
    cases::all_cases()
        .into_iter()
        .filter(|c| {
            matches!(
                c,
                Case::MatMul {
                    layout: WeightLayout::OutIn,
                    ..
                } | Case::GateUp { .. }
                    | Case::InvariantRows {
                        layout: WeightLayout::OutIn,
                        ..
                    }
            )
        })
        .collect()
}

fn check(family: &str, report: &Report, min_cases: usize) {
    println!(
        "{family} candidates: {} passed, {} failed",
        report.passed,
        report.failed.len()
    );
    assert!(report.failed.is_empty(), "{}", report.failed.join("\n"));
    assert!(
        report.passed >= min_cases,
        "only {} {family} cases ran",
        report.passed
    );
}

/// `wgpu.gemm.tile`: linears, many-row products, convolutions.
#[test]
fn wgpu_gemm_tile_candidates_pass_the_op_harness() {
    use uniaudio_runtime::wgpu::tune::{GEMM_CLASSES, GEMM_TILE_CANDIDATES, GEMM_TILE_DEFAULT};
    let gpu = match Wgpu::new() {
        Ok(g) => g,
        Err(e) => return skip_wgpu(&e.to_string()),
    };
    let tiled_cases: Vec<Case> = cases::all_cases()
        .into_iter()
        .filter(|c| {
            matches!(
                c,
                Case::MatMul {
                    layout: WeightLayout::OutIn,
                    m: 16..,
                    ..
                } | Case::Linear { .. }
                    | Case::Conv1d { .. }
                    | Case::Conv2d { .. }
            )
        })
        .collect();
    let mut report = Report::default();
    for &tile in GEMM_TILE_CANDIDATES.iter().filter(|&&t| t != GEMM_TILE_DEFAULT) {
        for class in 0..GEMM_CLASSES.len() {
            gpu.set_gemm_tile(class, tile).unwrap();
        }
        run_cases(
            &format!("wgpu/gemm tile {tile}"),
            &gpu,
            &tiled_cases,
            0x7e3_0000,
            &mut report,
        );
    }
    check("wgpu.gemm.tile", &report, 2 * 20);
}

/// `cpu.gemv.tasks`.
#[test]
fn cpu_gemv_task_candidates_pass_the_op_harness() {
    use uniaudio_runtime::cpu::tune::{
        set_gemv_tasks, GEMV_CLASSES, GEMV_TASKS_CANDIDATES, GEMV_TASKS_DEFAULT,
    };
    // The backend first: loading the tuning table would reset the values set below.
    let cpu = Cpu::with_precision(Precision::Exact);
    let cases = gemv_cases();
    let mut report = Report::default();
    for &tasks in GEMV_TASKS_CANDIDATES
        .iter()
        .filter(|&&t| t != GEMV_TASKS_DEFAULT)
    {
        (0..GEMV_CLASSES.len()).for_each(|class| set_gemv_tasks(class, tasks));
        run_cases(
            &format!("cpu/gemv {tasks} tasks per thread"),
            &cpu,
            &cases,
            0x7a5_0000,
            &mut report,
        );
    }
    (0..GEMV_CLASSES.len()).for_each(|class| set_gemv_tasks(class, GEMV_TASKS_DEFAULT));
    check("cpu.gemv.tasks", &report, 4 * 20);
}

/// `cpu.attention.block_rows`: the many-query attention cases (plain and with WavLM's
/// relative-position bias) at the exact level and at the level `fast` runs.
#[test]
fn cpu_attention_block_candidates_pass_the_op_harness() {
    use uniaudio_runtime::cpu::tune::{set_attention_block_rows, ATTENTION_BLOCK_CANDIDATES, ATTENTION_BLOCK_DEFAULT, ATTENTION_CLASSES};
    use uniaudio_runtime::cpu::Isa;
    let cases: Vec<Case> = cases::all_cases().into_iter().filter(|c| matches!(c, Case::Attention { t, .. } if *t >= 16) || matches!(c, Case::RelPosAttention { .. })).collect();
    let mut report = Report::default();
    let (exact, fast) = (Isa::detect(), Isa::for_precision(Precision::Fast));
    let levels = if fast == exact { vec![exact] } else { vec![exact, fast] };
    for isa in levels {
        // The backend first: loading the tuning table would reset the values set below.
        let cpu = Cpu::with_isa(isa);
        harness::set_reduced_precision(isa.precision() == Precision::Fast && isa != Isa::Avx2Int8);
        for &rows in ATTENTION_BLOCK_CANDIDATES.iter().filter(|&&r| r != ATTENTION_BLOCK_DEFAULT) {
            (0..ATTENTION_CLASSES.len()).for_each(|class| set_attention_block_rows(class, rows));
            run_cases(&format!("cpu/{} attention {rows} rows per task", isa.name()), &cpu, &cases, 0xa77_0000, &mut report);
        }
        harness::set_reduced_precision(false);
    }
    (0..ATTENTION_CLASSES.len()).for_each(|class| set_attention_block_rows(class, ATTENTION_BLOCK_DEFAULT));
    check("cpu.attention.block_rows", &report, 3 * cases.len());
}

/// `cpu.q8.prefetch_bytes`: the 8-bit cases at the level `fast` runs on this CPU, when it
/// has 8-bit products.
#[test]
fn cpu_q8_prefetch_candidates_pass_the_op_harness() {
    use uniaudio_runtime::cpu::tune::{set_q8_prefetch_bytes, Q8_PREFETCH_CANDIDATES, Q8_PREFETCH_DEFAULT};
    use uniaudio_runtime::cpu::Isa;
    let isa = Isa::for_precision(Precision::Fast);
    if !isa.int8_dot() {
        return println!("SKIPPED cpu.q8.prefetch_bytes candidates: {} has no 8-bit products", isa.name());
    }
    // The backend first: loading the tuning table would reset the values set below.
    let cpu = Cpu::with_isa(isa);
    let cases: Vec<Case> = cases::all_cases().into_iter().filter(cases::quantized_weights).collect();
    let mut report = Report::default();
    harness::set_int8_fast(true);
    harness::set_reduced_precision(isa.precision() == Precision::Fast && isa != Isa::Avx2Int8);
    for &bytes in Q8_PREFETCH_CANDIDATES.iter().filter(|&&b| b != Q8_PREFETCH_DEFAULT) {
        set_q8_prefetch_bytes(bytes);
        harness::set_int8_inputs(true);
        run_cases(&format!("cpu/{} q8 prefetch {bytes} bytes", isa.name()), &cpu, &cases, 0x9f0_0000, &mut report);
        harness::set_int8_inputs(false);
    }
    harness::set_reduced_precision(false);
    harness::set_int8_fast(false);
    set_q8_prefetch_bytes(Q8_PREFETCH_DEFAULT);
    check("cpu.q8.prefetch_bytes", &report, 3 * cases.len());
}

/// `wgpu.gemv.rows`.
#[test]
fn wgpu_gemv_candidates_pass_the_op_harness() {
    use uniaudio_runtime::wgpu::tune::{GEMV_CLASSES, GEMV_ROWS_CANDIDATES, GEMV_ROWS_DEFAULT};
    let gpu = match Wgpu::new() {
        Ok(g) => g,
        Err(e) => return skip_wgpu(&e.to_string()),
    };
    let cases = gemv_cases();
    let mut report = Report::default();
    for &rows in GEMV_ROWS_CANDIDATES.iter().filter(|&&r| r != GEMV_ROWS_DEFAULT) {
        for class in 0..GEMV_CLASSES.len() {
            gpu.set_gemv_rows(class, rows).unwrap();
        }
        run_cases(
            &format!("wgpu/gemv rows {rows}"),
            &gpu,
            &cases,
            0x6e3_0000,
            &mut report,
        );
    }
    check("wgpu.gemv.rows", &report, 3 * 20);
}

/// `cuda.gemv.warps` on a GPU (the emulator runs the same in `uniaudio-cuda-emu`).
#[test]
fn cuda_gemv_warps_candidates_pass_the_op_harness() {
    use uniaudio_runtime::cuda::tune::{set_gemv_warps, GEMV_CLASSES, GEMV_WARPS_CANDIDATES, GEMV_WARPS_DEFAULT};
    let gpu = match uniaudio_runtime::Cuda::new() {
        Ok(g) => g,
        Err(e) => return println!("SKIPPED cuda.gemv.warps candidates (no CUDA device): {e}"),
    };
    let cases = gemv_cases();
    let mut report = Report::default();
    for &warps in GEMV_WARPS_CANDIDATES.iter().filter(|&&w| w != GEMV_WARPS_DEFAULT) {
        for class in 0..GEMV_CLASSES.len() {
            set_gemv_warps(&gpu, class, warps).unwrap();
        }
        run_cases(&format!("cuda/gemv {warps} warps"), &gpu, &cases, 0x6e5_0000, &mut report);
    }
    check("cuda.gemv.warps", &report, 3 * 20);
}
