//! Comparison machinery: seeded inputs, NMSE against a scalar reference, reporting.

use std::fmt;
use std::cell::Cell;

/// Deterministic test inputs (splitmix64).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [-1, 1).
    pub fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    pub fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.uniform() * scale).collect()
    }
}

/// Normalised mean squared error Σ(a−b)² / Σb² (absolute when the reference is zero).
pub fn nmse(got: &[f32], want: &[f64]) -> f64 {
    let err: f64 = got.iter().zip(want).map(|(&g, &w)| (g as f64 - w).powi(2)).sum();
    let norm: f64 = want.iter().map(|w| w * w).sum();
    if norm == 0.0 {
        err
    } else {
        err / norm
    }
}

#[derive(Debug)]
pub enum Verdict {
    Pass,
    Fail(String),
}

/// The `fast` precision's bound: GEMM and convolution operands rounded to bf16 (relative
/// error up to 2^-9 each) give an expected NMSE of about 2.5e-6 on random data; 3e-5 leaves
/// a 12x margin while a wrong pairing or a lost term (NMSE ~1e-2 and up) still fails.
pub const FAST_NMSE: f64 = 3e-5;

/// The `fast` level's bound for products with 8-bit weights, whose inputs are rounded to
/// 8-bit blocks too (scale max|x| / 127): an expected NMSE of about 1.6e-5 per product
/// and 3.5e-5 for the gated MLP input; 1.5e-4 leaves a 4x margin while a wrong sign, block
/// or scale (NMSE ~1) fails.
pub const FAST_INT8_NMSE: f64 = 1.5e-4;

// Per test thread: tests run side by side in one binary, each with its own tolerance mode
// (comparisons run on the thread that set it).
thread_local! {
    static REDUCED_PRECISION: Cell<bool> = const { Cell::new(false) };
    static INT8_INPUTS: Cell<bool> = const { Cell::new(false) };
    static INT8_FAST: Cell<bool> = const { Cell::new(false) };
}

/// Raises the tolerance of cases with 8-bit weights (only) to `FAST_INT8_NMSE`, for a
/// level whose only reduced-precision products are the 8-bit ones.
#[allow(dead_code)]
pub fn set_int8_fast(on: bool) {
    INT8_FAST.set(on);
}

/// Raises the tolerance to `FAST_INT8_NMSE` for a case with 8-bit weights while a
/// reduced-precision backend runs.
#[allow(dead_code)]
pub fn set_int8_inputs(on: bool) {
    INT8_INPUTS.set(on);
}

/// Raises every float tolerance to `FAST_NMSE` while a reduced-precision backend runs
/// (the emulator harness shares this file and has none).
#[allow(dead_code)]
pub fn set_reduced_precision(on: bool) {
    REDUCED_PRECISION.set(on);
}

/// Compares float outputs; the failure names the worst element.
pub fn compare_f32(got: &[f32], want: &[f64], max_nmse: f64) -> Verdict {
    let reduced = REDUCED_PRECISION.get();
    let max_nmse = match (reduced || INT8_FAST.get(), INT8_INPUTS.get()) {
        (true, true) => max_nmse.max(FAST_INT8_NMSE),
        _ if reduced => max_nmse.max(FAST_NMSE),
        _ => max_nmse,
    };
    if got.len() != want.len() {
        return Verdict::Fail(format!("length {} vs reference {}", got.len(), want.len()));
    }
    if let Some(i) = got.iter().position(|g| !g.is_finite()) {
        return Verdict::Fail(format!("non-finite output {} at index {i}", got[i]));
    }
    let e = nmse(got, want);
    if e <= max_nmse {
        return Verdict::Pass;
    }
    let (i, d) = got
        .iter()
        .zip(want)
        .map(|(&g, &w)| (g as f64 - w).abs())
        .enumerate()
        .fold((0, 0.0), |best, (i, d)| if d > best.1 { (i, d) } else { best });
    Verdict::Fail(format!("NMSE {e:.3e} > {max_nmse:.0e}; worst index {i}: computed {} vs reference {} (|diff| {d:.3e})", got[i], want[i]))
}

pub fn compare_u32(got: &[u32], want: &[u32]) -> Verdict {
    match got.iter().zip(want).position(|(a, b)| a != b) {
        _ if got.len() != want.len() => Verdict::Fail(format!("length {} vs reference {}", got.len(), want.len())),
        Some(i) => Verdict::Fail(format!("index {i}: computed {} vs reference {}", got[i], want[i])),
        None => Verdict::Pass,
    }
}

/// Collects per-case results and prints a ggml-style report.
#[derive(Default)]
pub struct Report {
    pub passed: usize,
    pub failed: Vec<String>,
    pub unsupported: usize,
}

impl Report {
    pub fn record(&mut self, backend: &str, case: &dyn fmt::Display, verdict: Verdict) {
        match verdict {
            Verdict::Pass => self.passed += 1,
            Verdict::Fail(msg) => {
                let line = format!("[{backend}] {case}: FAIL {msg}");
                println!("{line}");
                self.failed.push(line);
            }
        }
    }

    // (The CUDA emulator's harness expects no unsupported case, so it never calls this.)
    #[allow(dead_code)]
    pub fn unsupported(&mut self, backend: &str, case: &dyn fmt::Display) {
        println!("[{backend}] {case}: UNSUPPORTED");
        self.unsupported += 1;
    }
}
