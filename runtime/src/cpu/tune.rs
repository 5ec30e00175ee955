//! The CPU's tunable kernel families, their candidates, and the tuned values in use.
//!
//! `cpu.gemm.pass_bytes`: how many bytes of packed x rows one GEMM pass holds, per class
//! of inner size K. Larger passes reuse each packed weight panel for more rows; smaller
//! ones keep x in cache. Every candidate gives bit-identical results (the K order of each
//! output is unchanged), so tuning never changes what a model computes.
//!
//! `cpu.gemv.tasks`: how many tasks per thread the decode GEMV (and the gated MLP input)
//! splits its output rows into, per class of output count: more tasks balance threads
//! that run at different speeds, fewer keep each thread on longer sequential streams. A
//! row's products never depend on its task (rows are computed one by one, in groups of
//! four aligned the same way), so the batch-invariant decode path keeps its bits.
//!
//! `cpu.q8.prefetch_bytes`: how far ahead the fast levels' 8-bit GEMV prefetches each
//! weight row (0: none). The kernel's loop is short enough that the hardware prefetcher
//! alone leaves it waiting on memory, and the best distance depends on the core and its
//! memory. A prefetch never changes a result.
//!
//! `cpu.attention.block_rows`: query rows per task of the blocked (many-query) attention,
//! per class (causal, bidirectional). Larger blocks pack each head's keys and values for
//! more rows; smaller ones give more tasks and, when causal, skip more masked keys. At the
//! exact levels every candidate computes the same bits (a row's scores and weighted sums
//! do not depend on the rows beside it; masked keys add exact zeros).

use std::sync::{LazyLock, OnceLock};
use std::time::Instant;

use crate::op::WeightLayout;
use crate::tune::table::{self, Family, Tuned};
use crate::tune::{pick, Choice, DeviceKey, Timing, TuneMode};

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
    /// The shape `uniaudio tune` times for the class: (rows, K, output columns).
    pub probe: (usize, usize, usize),
}

/// Narrow and wide inner sizes (attention and codec linears vs FFN down-projections).
pub const GEMM_CLASSES: [ShapeClass; 2] = [
    ShapeClass { name: "k<=2048", max_k: 2048, probe: (1000, 1536, 1536) },
    ShapeClass { name: "k>2048", max_k: usize::MAX, probe: (1000, 6144, 1536) },
];

static GEMM_FAMILY: Family = Family { name: GEMM_PASS, classes: &["k<=2048", "k>2048"], candidates: &GEMM_PASS_CANDIDATES, default: GEMM_PASS_DEFAULT };
static GEMM: LazyLock<Tuned> = LazyLock::new(|| Tuned::new(&GEMM_FAMILY));

/// The GEMV family's name in the cache.
pub const GEMV_TASKS: &str = "cpu.gemv.tasks";
/// Candidate tasks per thread.
pub const GEMV_TASKS_CANDIDATES: [usize; 5] = [2, 4, 8, 16, 32];
/// The built-in default.
pub const GEMV_TASKS_DEFAULT: usize = 16;
/// Output-count classes (attention and small models vs MLP inputs and heads) and the
/// shape `uniaudio tune` times for each: (K, N) of bf16 weights.
pub const GEMV_CLASSES: [(&str, usize, (usize, usize)); 2] = [("n<4096", 4096, (3072, 3072)), ("n>=4096", usize::MAX, (3072, 16384))];
static GEMV_FAMILY: Family = Family { name: GEMV_TASKS, classes: &["n<4096", "n>=4096"], candidates: &GEMV_TASKS_CANDIDATES, default: GEMV_TASKS_DEFAULT };
static GEMV: LazyLock<Tuned> = LazyLock::new(|| Tuned::new(&GEMV_FAMILY));

/// The 8-bit GEMV prefetch family's name in the cache.
pub const Q8_PREFETCH: &str = "cpu.q8.prefetch_bytes";
/// Candidate distances in bytes (0: no software prefetch).
pub const Q8_PREFETCH_CANDIDATES: [usize; 4] = [0, 512, 1024, 2048];
/// The built-in default (the best of the candidates on a 2-core Zen 3).
pub const Q8_PREFETCH_DEFAULT: usize = 1024;
/// The shape `uniaudio tune` times: (K, N) of Q8_0 weights (an MLP input).
pub const Q8_PREFETCH_PROBE: (usize, usize) = (3072, 8192);
static Q8_FAMILY: Family = Family { name: Q8_PREFETCH, classes: &["q8_0"], candidates: &Q8_PREFETCH_CANDIDATES, default: Q8_PREFETCH_DEFAULT };
static Q8: LazyLock<Tuned> = LazyLock::new(|| Tuned::new(&Q8_FAMILY));

/// The attention family's name in the cache.
pub const ATTENTION_BLOCK: &str = "cpu.attention.block_rows";
/// Candidate query rows per task.
pub const ATTENTION_BLOCK_CANDIDATES: [usize; 4] = [32, 64, 128, 256];
/// The built-in default.
pub const ATTENTION_BLOCK_DEFAULT: usize = 64;
/// The classes and the problem `uniaudio tune` times for each: (queries = keys, heads,
/// KV heads, head size): a 512-token prefill of the 3B backbone, a 30 s Whisper window.
pub const ATTENTION_CLASSES: [(&str, (usize, usize, usize, usize)); 2] = [("causal", (512, 24, 8, 128)), ("bidirectional", (1500, 20, 20, 64))];
static ATTENTION_FAMILY: Family = Family { name: ATTENTION_BLOCK, classes: &["causal", "bidirectional"], candidates: &ATTENTION_BLOCK_CANDIDATES, default: ATTENTION_BLOCK_DEFAULT };
static ATTENTION: LazyLock<Tuned> = LazyLock::new(|| Tuned::new(&ATTENTION_FAMILY));

/// Query rows per task of a causal (class 0) or bidirectional (class 1) attention.
pub fn attention_block_rows(causal: bool) -> usize {
    ATTENTION.get(usize::from(!causal))
}

/// Sets (and decides) a class's block rows (tuning and benchmarks).
pub fn set_attention_block_rows(class: usize, rows: usize) {
    ATTENTION.set(class, rows);
}

/// Tuning on first use of `class` of `tuned`, unless decided: times `candidates` with
/// `run(value)` (one warm-up, `reps` timed runs), stores the fastest in the cache file and
/// says so, naming the problem (`problem`, formatted only then) and the value (`value`).
fn tune_first_use(tuned: &Tuned, class: usize, candidates: &[usize], reps: usize, mut run: impl FnMut(usize), problem: impl FnOnce() -> String, value: impl FnOnce(usize) -> String) {
    let timed = tuned.tune_once(class, candidates, 1, reps, |&v| {
        let t = Instant::now();
        run(v);
        t.elapsed()
    });
    if let Some((best, timings)) = timed {
        let entry = tuned.family().entry(class);
        eprintln!("tuned {entry} on {}: {} (stored for later runs; UNIAUDIO_TUNE=off skips tuning)", problem(), value(candidates[best]));
        table::persist(&cache_dir(), device_key(), &entry, table::choice(best, &timings));
    }
}

/// Tuning on first use of an undecided attention class, for problems of enough queries
/// that the candidates split them differently: `run(rows)` runs the attention into
/// scratch with that many query rows per task; the fastest is stored.
pub(crate) fn tune_attention_on_first_use(causal: bool, queries: usize, heads: usize, run: impl FnMut(usize)) {
    load_once();
    let class = usize::from(!causal);
    if ATTENTION.is_decided(class) || queries < 2 * ATTENTION_BLOCK_CANDIDATES[ATTENTION_BLOCK_CANDIDATES.len() - 2] {
        return;
    }
    tune_first_use(&ATTENTION, class, &ATTENTION_BLOCK_CANDIDATES, 2, run, || format!("{queries} queries x {heads} heads"), |rows| format!("{rows} rows per task"));
}

/// Times every block candidate on `class`'s problem (`ATTENTION_CLASSES`) at `isa`.
/// Returns the chosen index with every timing and leaves the class at the winner.
pub fn tune_attention_block(isa: Isa, class: usize, warmup: usize, reps: usize) -> (usize, Vec<Timing>) {
    let (t, heads, kv_heads, d) = ATTENTION_CLASSES[class].1;
    let causal = class == 0;
    let q: Vec<f32> = (0..t * heads * d).map(|i| ((i * 7919) % 1013) as f32 / 1013.0 - 0.5).collect();
    let kv: Vec<f32> = (0..t * kv_heads * d).map(|i| ((i * 104_729) % 997) as f32 / 997.0 - 0.5).collect();
    let mut out = vec![0f32; t * heads * d];
    let shape = super::attention::AttnShape::new(&[t, heads, d], &[kv_heads, t, d], t, causal);
    let (best, timings) = pick(&ATTENTION_BLOCK_CANDIDATES, |r| r.to_string(), warmup, reps, |&rows| {
        set_attention_block_rows(class, rows);
        let start = Instant::now();
        super::attention::attention_blocked(isa, &q, &kv, &kv, &mut out, shape);
        start.elapsed()
    });
    set_attention_block_rows(class, ATTENTION_BLOCK_CANDIDATES[best]);
    (best, timings)
}

/// Multiply-adds ×2 of a class's problem (Q·Kᵀ and P·V over the pairs each query sees).
pub fn attention_probe_flops(class: usize) -> f64 {
    let (t, heads, _, d) = ATTENTION_CLASSES[class].1;
    let pairs = if class == 0 { t * (t + 1) / 2 } else { t * t };
    4.0 * (pairs * heads * d) as f64
}

/// The prefetch distance in use by the 8-bit GEMV.
pub fn q8_prefetch_bytes() -> usize {
    Q8.get(0)
}

/// Sets (and decides) the 8-bit GEMV's prefetch distance (tuning and benchmarks).
pub fn set_q8_prefetch_bytes(bytes: usize) {
    Q8.set(0, bytes);
}

/// Whether the prefetch distance has its value (loaded, tuned or fixed).
pub fn q8_prefetch_is_decided() -> bool {
    Q8.is_decided(0)
}

/// The distances first-use tuning times: it re-runs the one layer it meets, which after
/// the warm-up may sit in the last-level cache, where prefetching looks useless; only
/// `uniaudio tune`, whose probe streams from memory, also times "none".
pub const Q8_PREFETCH_FIRST_USE: [usize; 3] = [512, 1024, 2048];
/// The smallest Q8_0 weight whose first use tunes the distance: smaller ones fit in cache,
/// where a prefetch distance cannot be told apart (they run with the current value).
pub const Q8_PREFETCH_MIN_BYTES: usize = 16 << 20;

/// Tuning on first use of the fast 8-bit GEMV: `run(bytes)` runs the product into scratch
/// prefetching `bytes` ahead; the fastest is stored.
pub(crate) fn tune_q8_prefetch_on_first_use(n: usize, k: usize, run: impl FnMut(usize)) {
    load_once();
    if Q8.is_decided(0) {
        return;
    }
    tune_first_use(&Q8, 0, &Q8_PREFETCH_FIRST_USE, 3, run, || format!("{n}x{k}"), |bytes| format!("{bytes} bytes"));
}

/// Times every prefetch candidate on `probe` = (K, N) (default `Q8_PREFETCH_PROBE`; K a
/// positive multiple of 32, N positive): one row through enough copies of Q8_0 weights to
/// pass 256 MiB, as through a stack of layers, at `isa` (a level with 8-bit products).
/// Returns the chosen index with every timing and leaves the distance at the winner.
pub fn tune_q8_prefetch(isa: Isa, probe: Option<(usize, usize)>, warmup: usize, reps: usize) -> (usize, Vec<Timing>) {
    let (k, n) = probe.unwrap_or(Q8_PREFETCH_PROBE);
    assert!(k > 0 && k % crate::dtype::Q8_BLOCK == 0 && n > 0, "8-bit GEMV probe {k}x{n}: K must be a positive multiple of 32 and N positive");
    let copies = q8_probe_copies(k, n);
    let x: Vec<f32> = (0..k).map(|i| ((i * 7919) % 1013) as f32 / 1013.0 - 0.5).collect();
    let values: Vec<f32> = (0..k * n).map(|i| ((i * 104_729) % 997) as f32 / 997.0 - 0.5).collect();
    let layer = crate::dtype::quantize_q8_0(&values);
    let w = layer.repeat(copies);
    let mut out = vec![0f32; n];
    let (best, timings) = pick(&Q8_PREFETCH_CANDIDATES, |b| b.to_string(), warmup, reps, |&bytes| {
        let t = Instant::now();
        for layer in w.chunks_exact(layer.len()) {
            super::matmul::gemv_out_in_with(isa, &x, k, WeightSlice::Q8_0(layer), &mut out, false, gemv_tasks_per_thread(n), bytes);
        }
        t.elapsed()
    });
    set_q8_prefetch_bytes(Q8_PREFETCH_CANDIDATES[best]);
    (best, timings)
}

/// How many copies of a Q8_0 [N, K] weight the prefetch probe streams per timed run.
pub fn q8_probe_copies(k: usize, n: usize) -> usize {
    (256usize << 20).div_ceil(crate::DType::Q8_0.bytes(k * n).max(1)).max(1)
}

fn gemv_class_of(n: usize) -> usize {
    GEMV_CLASSES.iter().position(|c| n < c.1).unwrap_or(GEMV_CLASSES.len() - 1)
}

/// Tasks per thread of a GEMV with `n` outputs per row.
pub fn gemv_tasks_per_thread(n: usize) -> usize {
    GEMV.get(gemv_class_of(n))
}

/// Whether the GEMV class of `n` outputs has its value (loaded, tuned or fixed).
pub fn gemv_is_decided(n: usize) -> bool {
    GEMV.is_decided(gemv_class_of(n))
}

/// Sets (and decides) a GEMV class's tasks per thread (tuning and benchmarks).
pub fn set_gemv_tasks(class: usize, tasks: usize) {
    GEMV.set(class, tasks);
}

/// Tuning on first use of an undecided GEMV class: `run(tasks)` runs the product into
/// scratch with that many tasks per thread; the fastest is stored.
pub(crate) fn tune_gemv_on_first_use(n: usize, k: usize, run: impl FnMut(usize)) {
    load_once();
    let class = gemv_class_of(n);
    if GEMV.is_decided(class) {
        return;
    }
    tune_first_use(&GEMV, class, &GEMV_TASKS_CANDIDATES, 3, run, || format!("{n}x{k}"), |tasks| format!("{tasks} tasks per thread"));
}

/// How many copies of a bf16 [N, K] weight the GEMV probe streams per timed run: enough
/// to pass 256 MiB, so the weights come from memory (as in decode), not the last-level cache.
pub fn gemv_probe_copies(k: usize, n: usize) -> usize {
    (256usize << 20).div_ceil(2 * k * n).max(1)
}

/// Times every tasks-per-thread candidate on `class`'s probe (or `probe` = (K, N)) with
/// bf16 weights: one row through `gemv_probe_copies` weights in turn, as through a stack
/// of layers. Returns the chosen index with every timing and leaves the class at the winner.
pub fn tune_gemv_tasks(isa: Isa, class: usize, probe: Option<(usize, usize)>, warmup: usize, reps: usize) -> (usize, Vec<Timing>) {
    let (k, n) = probe.unwrap_or(GEMV_CLASSES[class].2);
    let copies = gemv_probe_copies(k, n);
    let x: Vec<f32> = (0..k).map(|i| ((i * 7919) % 1013) as f32 / 1013.0 - 0.5).collect();
    let w: Vec<u16> = (0..copies * k * n).map(|i| half::bf16::from_f32(((i * 104_729) % 997) as f32 / 997.0 - 0.5).to_bits()).collect();
    let mut out = vec![0f32; n];
    let (best, timings) = pick(&GEMV_TASKS_CANDIDATES, |t| t.to_string(), warmup, reps, |&tasks| {
        let t = Instant::now();
        for layer in w.chunks_exact(k * n) {
            super::matmul::gemv_out_in_with(isa, &x, k, WeightSlice::BF16(layer), &mut out, false, tasks, q8_prefetch_bytes());
        }
        t.elapsed()
    });
    set_gemv_tasks(class, GEMV_TASKS_CANDIDATES[best]);
    (best, timings)
}
static LOADED: OnceLock<String> = OnceLock::new();

fn class_of(k: usize) -> usize {
    GEMM_CLASSES.iter().position(|c| k <= c.max_k).unwrap_or(GEMM_CLASSES.len() - 1)
}

/// The pass size in use for inner size `k`.
pub fn gemm_pass_bytes(k: usize) -> usize {
    GEMM.get(class_of(k))
}

/// Sets (and decides) the pass size of a class (tuning and benchmarks; results do not change).
pub fn set_gemm_pass_bytes(class: usize, bytes: usize) {
    GEMM.set(class, bytes);
}

/// Restores the built-in defaults (decided: nothing is timed on first use).
pub fn use_defaults() {
    GEMM.reset(true);
    GEMV.reset(true);
    Q8.reset(true);
    ATTENTION.reset(true);
}

/// Applies the cached choices of `cache`; returns how many classes were set.
pub fn apply(cache: &crate::tune::TuneCache) -> usize {
    GEMM.apply(cache) + GEMV.apply(cache) + Q8.apply(cache) + ATTENTION.apply(cache)
}

/// Whether the class of inner size `k` has its value (loaded, tuned or fixed).
pub fn is_decided(k: usize) -> bool {
    GEMM.is_decided(class_of(k))
}

/// Every class undecided again, at its default: the next GEMM or GEMV of each class tunes it.
pub fn forget() {
    GEMM.reset(false);
    GEMV.reset(false);
    Q8.reset(false);
    ATTENTION.reset(false);
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

/// Loads this device's cache once per process (see `Tuned::load` for what each
/// `UNIAUDIO_TUNE` mode does); says what is in use.
pub(crate) fn load_once() -> &'static str {
    LOADED
        .get_or_init(|| {
            let mode = TuneMode::from_env().unwrap_or_else(|e| {
                eprintln!("warning: {e}; using built-in defaults");
                TuneMode::Off
            });
            table::load(&[&*GEMM, &*GEMV, &*Q8, &*ATTENTION], mode, &cache_dir(), device_key())
        })
        .as_str()
}

/// What the CPU backend runs with: a tuned table (and where) or the defaults.
pub fn status() -> String {
    load_once().to_string()
}

/// Rows of x per GEMM pass for a pass budget of `bytes`: small enough to stay in the
/// last-level cache while every column task sweeps it, at least a few row panels.
pub(crate) fn rows_per_pass(bytes: usize, k: usize) -> usize {
    let mr = super::gemm::MR;
    (bytes / 4 / k.max(1)).clamp(16 * mr, 256 * mr) / mr * mr
}

/// Tuning on first use: an undecided class meeting a GEMM whose candidates split it into
/// different passes times them on this very product (into a scratch output) and stores
/// the winner. Candidates giving the same passes are timed once.
pub(crate) fn tune_on_first_use(isa: Isa, x: &[f32], m: usize, k: usize, w: WeightSlice, layout: WeightLayout, n: usize) {
    load_once();
    let class = class_of(k);
    if GEMM.is_decided(class) {
        return;
    }
    let mut plans: Vec<usize> = Vec::new();
    let mut candidates = Vec::new();
    for &bytes in &GEMM_PASS_CANDIDATES {
        let plan = rows_per_pass(bytes, k).min(m);
        if !plans.contains(&plan) {
            plans.push(plan);
            candidates.push(bytes);
        }
    }
    if candidates.len() < 2 {
        return;
    }
    let mut out = vec![0f32; m * n];
    let run = |bytes| super::gemm::gemm_in_passes(isa, x, m, k, w, layout, n, &mut out, false, rows_per_pass(bytes, k));
    tune_first_use(&GEMM, class, &candidates, 2, run, || format!("{m}x{k}x{n}"), |bytes| format!("{} MiB passes", bytes >> 20));
}

/// Times every pass-size candidate on `class`'s probe shape (or `probe`, smaller, for
/// tests) and returns the chosen index with every timing. The class's value is left at the
/// winner.
pub fn tune_gemm_pass(isa: Isa, class: usize, probe: Option<(usize, usize, usize)>, warmup: usize, reps: usize) -> (usize, Vec<Timing>) {
    let (m, k, n) = probe.unwrap_or(GEMM_CLASSES[class].probe);
    let x: Vec<f32> = (0..m * k).map(|i| ((i * 7919) % 1013) as f32 / 1013.0 - 0.5).collect();
    let w: Vec<f32> = (0..k * n).map(|i| ((i * 104_729) % 997) as f32 / 997.0 - 0.5).collect();
    let mut out = vec![0f32; m * n];
    // On the bf16 levels the passes serve only the f32 products (the bf16 GEMMs pack all
    // rows at once), which run the `Avx512` tile: time that.
    let isa = if isa.bf16_dot() { Isa::Avx512 } else { isa };
    let (best, timings) = pick(&GEMM_PASS_CANDIDATES, |b| b.to_string(), warmup, reps, |&bytes| {
        let t = Instant::now();
        super::gemm::gemm_in_passes(isa, &x, m, k, WeightSlice::F32(&w), WeightLayout::OutIn, n, &mut out, false, rows_per_pass(bytes, k));
        t.elapsed()
    });
    set_gemm_pass_bytes(class, GEMM_PASS_CANDIDATES[best]);
    (best, timings)
}

/// A choice for the cache from a tuning run.
pub fn choice(best: usize, timings: &[Timing]) -> Choice {
    table::choice(best, timings)
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
        let mut reference = None;
        for isa in [Isa::Scalar, Isa::detect()] {
            for &bytes in &GEMM_PASS_CANDIDATES {
                let mut out = vec![0f32; m * n];
                super::super::gemm::gemm_in_passes(isa, &x, m, k, WeightSlice::F32(&w), WeightLayout::OutIn, n, &mut out, false, rows_per_pass(bytes, k));
                match &reference {
                    None => reference = Some(out),
                    Some(r) => assert!(r == &out, "{}: pass {bytes} changed the result", isa.name()),
                }
            }
            reference = None;
        }
    }

    /// Every prefetch distance computes the same bits at the 8-bit level, for one row,
    /// a pair and three rows, with an odd number of blocks.
    #[test]
    fn every_q8_prefetch_candidate_gives_identical_results() {
        if !Isa::Avx2Int8.available() {
            return println!("SKIPPED: this CPU lacks AVX2");
        }
        let (k, n) = (288, 1001);
        let values: Vec<f32> = (0..k * n).map(|i| ((i * 17) % 89) as f32 / 89.0 - 0.5).collect();
        let w = crate::dtype::quantize_q8_0(&values);
        for m in [1, 2, 3] {
            let x: Vec<f32> = (0..m * k).map(|i| ((i * 31) % 97) as f32 / 97.0 - 0.5).collect();
            let mut reference: Option<Vec<f32>> = None;
            for &bytes in &Q8_PREFETCH_CANDIDATES {
                let mut out = vec![0f32; m * n];
                super::super::matmul::gemv_out_in_with(Isa::Avx2Int8, &x, k, WeightSlice::Q8_0(&w), &mut out, false, 4, bytes);
                match &reference {
                    None => reference = Some(out),
                    Some(r) => assert!(r.iter().zip(&out).all(|(a, b)| a.to_bits() == b.to_bits()), "m {m}: prefetching {bytes} bytes ahead changed the result"),
                }
            }
        }
    }

    /// Every tasks-per-thread candidate computes the same bits, for one row and for
    /// several (row-invariant) rows, with groups of four cut short at the end.
    #[test]
    fn every_gemv_task_candidate_gives_identical_results() {
        let (k, n) = (300, 1001);
        let w: Vec<u16> = (0..k * n).map(|i| half::bf16::from_f32(((i * 17) % 89) as f32 / 89.0 - 0.5).to_bits()).collect();
        for m in [1, 3] {
            let x: Vec<f32> = (0..m * k).map(|i| ((i * 31) % 97) as f32 / 97.0 - 0.5).collect();
            let mut reference: Option<Vec<f32>> = None;
            for &tasks in &GEMV_TASKS_CANDIDATES {
                let mut out = vec![0f32; m * n];
                super::super::matmul::gemv_out_in_with(Isa::detect(), &x, k, WeightSlice::BF16(&w), &mut out, false, tasks, 0);
                match &reference {
                    None => reference = Some(out),
                    Some(r) => assert!(r.iter().zip(&out).all(|(a, b)| a.to_bits() == b.to_bits()), "m {m}: {tasks} tasks per thread changed the result"),
                }
            }
        }
    }
}
