//! The CPU's tunable kernel families, their candidates, and the tuned values in use.
//!
//! `cpu.gemm.pass_bytes`: how many bytes of packed x rows one GEMM pass holds, per class
//! of inner size K. Larger passes reuse each packed weight panel for more rows; smaller
//! ones keep x in cache. Every candidate gives bit-identical results (the K order of each
//! output is unchanged), so tuning never changes what a model computes; the decode GEMV
//! (the batch-invariant path) has no tunables.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

use crate::op::WeightLayout;
use crate::tune::{pick, Choice, DeviceKey, Timing, TuneCache, TuneMode};

use super::simd::Isa;
use super::view::WeightSlice;

/// The family's name in the cache.
pub const GEMM_PASS: &str = "cpu.gemm.pass_bytes";
/// Candidate pass sizes.
pub const GEMM_PASS_CANDIDATES: [usize; 5] = [1 << 20, 2 << 20, 4 << 20, 8 << 20, 16 << 20];
/// The built-in default.
pub const GEMM_PASS_DEFAULT: usize = 4 << 20;

/// A class of GEMM shapes that share one tuned value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShapeClass {
    /// Name in the cache (`family/name`).
    pub name: &'static str,
    /// The largest K in the class.
    pub max_k: usize,
    /// The shape timed for the class: (rows, K, output columns).
    pub probe: (usize, usize, usize),
}

/// Narrow and wide inner sizes (attention and codec linears vs FFN down-projections).
pub const GEMM_CLASSES: [ShapeClass; 2] = [
    ShapeClass { name: "k<=2048", max_k: 2048, probe: (1000, 1536, 1536) },
    ShapeClass { name: "k>2048", max_k: usize::MAX, probe: (1000, 6144, 1536) },
];

static PASS_BYTES: [AtomicUsize; 2] = [AtomicUsize::new(GEMM_PASS_DEFAULT), AtomicUsize::new(GEMM_PASS_DEFAULT)];
static LOADED: OnceLock<String> = OnceLock::new();

fn class_of(k: usize) -> usize {
    GEMM_CLASSES.iter().position(|c| k <= c.max_k).unwrap_or(GEMM_CLASSES.len() - 1)
}

/// The pass size in use for inner size `k`.
pub fn gemm_pass_bytes(k: usize) -> usize {
    PASS_BYTES[class_of(k)].load(Ordering::Relaxed)
}

/// Sets the pass size of a class (tuning and benchmarks; results do not change).
pub fn set_gemm_pass_bytes(class: usize, bytes: usize) {
    PASS_BYTES[class].store(bytes, Ordering::Relaxed);
}

/// Restores the built-in defaults.
pub fn use_defaults() {
    for c in 0..GEMM_CLASSES.len() {
        set_gemm_pass_bytes(c, GEMM_PASS_DEFAULT);
    }
}

/// This CPU as a cache key: model name, instruction set and thread count.
pub fn device_key() -> DeviceKey {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| t.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split_once(':')).map(|(_, v)| v.trim().to_string()))
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    DeviceKey::new("cpu", &model, &format!("{}, {} threads", Isa::detect().name(), rayon::current_num_threads()))
}

/// The cache directory for tuning files.
pub fn cache_dir() -> std::path::PathBuf {
    crate::cache_dir().join("tune")
}

/// Applies the cached choices of `cache`; returns how many classes were set.
pub fn apply(cache: &TuneCache) -> usize {
    let mut applied = 0;
    for (c, class) in GEMM_CLASSES.iter().enumerate() {
        let chosen = cache.get(&format!("{GEMM_PASS}/{}", class.name)).and_then(|ch| ch.candidate.parse::<usize>().ok());
        if let Some(bytes) = chosen.filter(|b| GEMM_PASS_CANDIDATES.contains(b)) {
            set_gemm_pass_bytes(c, bytes);
            applied += 1;
        }
    }
    applied
}

/// Loads this device's cache once per process and applies it; says what is in use.
/// `UNIAUDIO_TUNE=off` and `force` leave the built-in defaults (with `force` no stored
/// choice is trusted until `uniaudio tune` re-times and rewrites the table).
pub(crate) fn load_once() -> &'static str {
    LOADED.get_or_init(|| match TuneMode::from_env() {
        Ok(TuneMode::Off) => "off (UNIAUDIO_TUNE=off): built-in defaults".into(),
        Ok(TuneMode::Force) => "built-in defaults (UNIAUDIO_TUNE=force: stored choices are re-timed by `uniaudio tune`, not loaded)".into(),
        Err(e) => {
            eprintln!("warning: {e}; using built-in defaults");
            "built-in defaults".into()
        }
        Ok(TuneMode::On) => {
            let cache = TuneCache::open(&cache_dir(), device_key(), &mut |w| eprintln!("warning: {w}"));
            match apply(&cache) {
                0 => "built-in defaults (no tuned table for this CPU; `uniaudio tune` makes one)".into(),
                n => format!("tuned table {} ({n} entries)", cache.path().display()),
            }
        }
    })
    .as_str()
}

/// What the CPU backend runs with: a tuned table (and where) or the defaults.
pub fn status() -> String {
    load_once().to_string()
}

/// Times every pass-size candidate on `class`'s probe shape (or `probe`, smaller, for
/// tests) and returns the chosen index with every timing. The class's value is left at the
/// winner.
pub fn tune_gemm_pass(isa: Isa, class: usize, probe: Option<(usize, usize, usize)>, warmup: usize, reps: usize) -> (usize, Vec<Timing>) {
    let (m, k, n) = probe.unwrap_or(GEMM_CLASSES[class].probe);
    let x: Vec<f32> = (0..m * k).map(|i| ((i * 7919) % 1013) as f32 / 1013.0 - 0.5).collect();
    let w: Vec<f32> = (0..k * n).map(|i| ((i * 104_729) % 997) as f32 / 997.0 - 0.5).collect();
    let mut out = vec![0f32; m * n];
    let (best, timings) = pick(&GEMM_PASS_CANDIDATES, |b| b.to_string(), warmup, reps, |&bytes| {
        set_gemm_pass_bytes(class, bytes);
        let t = Instant::now();
        super::gemm::gemm(isa, &x, m, k, WeightSlice::F32(&w), WeightLayout::OutIn, n, &mut out, false);
        t.elapsed()
    });
    set_gemm_pass_bytes(class, GEMM_PASS_CANDIDATES[best]);
    (best, timings)
}

/// A choice for the cache from a tuning run.
pub fn choice(best: usize, timings: &[Timing]) -> Choice {
    Choice {
        candidate: timings[best].candidate.clone(),
        medians_us: timings.iter().map(|t| (t.candidate.clone(), t.median.as_secs_f64() * 1e6)).collect(),
    }
}

/// Floating-point operations of a class's probe (for GFLOP/s).
pub fn probe_flops(class: usize) -> f64 {
    let (m, k, n) = GEMM_CLASSES[class].probe;
    2.0 * (m * k * n) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every pass-size candidate computes the same bits, on shapes that need several passes.
    #[test]
    fn every_pass_candidate_gives_identical_results() {
        let (m, k, n) = (700, 3000, 40);
        let x: Vec<f32> = (0..m * k).map(|i| ((i * 31) % 97) as f32 / 97.0 - 0.5).collect();
        let w: Vec<f32> = (0..k * n).map(|i| ((i * 17) % 89) as f32 / 89.0 - 0.5).collect();
        let class = class_of(k);
        let mut reference = None;
        for isa in [Isa::Scalar, Isa::detect()] {
            for &bytes in &GEMM_PASS_CANDIDATES {
                set_gemm_pass_bytes(class, bytes);
                let mut out = vec![0f32; m * n];
                super::super::gemm::gemm(isa, &x, m, k, WeightSlice::F32(&w), WeightLayout::OutIn, n, &mut out, false);
                match &reference {
                    None => reference = Some(out),
                    Some(r) => assert!(r == &out, "{}: pass {bytes} changed the result", isa.name()),
                }
            }
            reference = None;
        }
        use_defaults();
    }
}
