//! The CUDA kernels' tunable family, the same for a GPU (`Cuda`) and the CPU emulation
//! of the kernels: both reach it through `KernelDevice`.
//!
//! `cuda.gemv.warps`: warps per block of the GEMV kernels (`gemv_*`, the decode
//! projections, and `gate_up_*`, the gated MLP input), one output per warp: 1, 2, 4 or 8
//! (default). Every candidate reduces each output with one warp in the same order, so
//! results are bit-identical whatever is chosen and the batch-invariant decode path stays
//! exact. Fewer warps per block make more, smaller blocks: a better spread over the
//! multiprocessors for narrow outputs, more scheduling for wide ones. Classes: narrow and
//! wide inner sizes, and the gated MLP input.

use std::time::{Duration, Instant};

use super::launch::{self, KernelDevice};
use crate::op::{Op, RowOrder, WeightLayout};
use crate::tune::table::{self, Family};
use crate::tune::{pick, ProbeTuning};
use crate::{DType, Error, Result};

/// The family's name in the cache.
pub const GEMV_WARPS: &str = "cuda.gemv.warps";
/// Candidate warps (outputs) per block.
pub const GEMV_WARPS_CANDIDATES: [usize; 4] = [1, 2, 4, 8];
/// The built-in warps per block.
pub const GEMV_WARPS_DEFAULT: usize = 8;
/// Shape classes: (name, the (M, K, N) probe `uniaudio tune` times: the 3B backbone's
/// decode shapes).
pub const GEMV_CLASSES: [(&str, (usize, usize, usize)); 3] =
    [("matmul/k<=4096", (1, 3072, 8192)), ("matmul/k>4096", (1, 8192, 3072)), ("gate_up", (1, 3072, 8192))];
/// Index of the gated-MLP class.
pub const GATE_UP_CLASS: usize = 2;

pub static GEMV_FAMILY: Family =
    Family { name: GEMV_WARPS, classes: &["matmul/k<=4096", "matmul/k>4096", "gate_up"], candidates: &GEMV_WARPS_CANDIDATES, default: GEMV_WARPS_DEFAULT };

/// The class of an out-in GEMV with inner size `k`.
pub fn matmul_class(k: usize) -> usize {
    usize::from(k > 4096)
}

/// Launches per timing: enough for about 2 ms (so launch overhead and the host clock do
/// not decide), at most 64, from one launch at the value in use after an untimed one (the
/// first may load and compile the kernel's module).
fn repeats_for<C: KernelDevice>(c: &C, launch: &dyn Fn(usize) -> Result<()>, warps: usize) -> Result<usize> {
    let mut failure = None;
    time(c, 1, launch, warps, &mut failure);
    let once = time(c, 1, launch, warps, &mut failure);
    match failure {
        Some(e) => Err(e),
        None => Ok((Duration::from_millis(2).as_secs_f64() / once.as_secs_f64().max(1e-9)).ceil().clamp(1.0, 64.0) as usize),
    }
}

/// Wall time of `repeat` launches, waited for; a failure is kept and times as `MAX`.
fn time<C: KernelDevice>(c: &C, repeat: usize, launch: &dyn Fn(usize) -> Result<()>, warps: usize, failure: &mut Option<Error>) -> Duration {
    let t = Instant::now();
    for _ in 0..repeat {
        if let Err(e) = launch(warps) {
            failure.get_or_insert(e);
            return Duration::MAX;
        }
    }
    if let Err(e) = c.sync() {
        failure.get_or_insert(e);
    }
    t.elapsed()
}

/// The warps per block GEMV `class` launches with. The first launch of an undecided class
/// (where the device runs launches now: not while a step is captured as a graph) times
/// every candidate on itself first, keeps the fastest and stores it in the device's cache.
/// `launch(warps)` runs the op with a candidate; it must overwrite its output (`overwrites`:
/// an accumulating product run a dozen times would not), else the class waits for another op.
pub(crate) fn gemv_warps<C: KernelDevice>(c: &C, class: usize, overwrites: bool, launch: &dyn Fn(usize) -> Result<()>) -> Result<usize> {
    let tuned = c.gemv_tuning();
    if !overwrites || tuned.is_decided(class) || !c.runs_launches_now() {
        return Ok(tuned.get(class));
    }
    c.sync()?;
    let repeat = repeats_for(c, launch, tuned.get(class))?;
    let mut failure = None;
    let timed = tuned.tune_once(class, &GEMV_WARPS_CANDIDATES, 1, 3, |&w| time(c, repeat, launch, w, &mut failure));
    if let Some(e) = failure {
        return Err(e);
    }
    if let Some((best, timings)) = timed {
        let entry = GEMV_FAMILY.entry(class);
        let key = c.tune_key();
        eprintln!("tuned {entry} on {}: {} warps per block (stored for later runs; UNIAUDIO_TUNE=off skips tuning)", key.device, GEMV_WARPS_CANDIDATES[best]);
        table::persist(&crate::cpu::tune::cache_dir(), key, &entry, table::choice(best, &timings));
    }
    Ok(tuned.get(class))
}

/// Times every candidate of GEMV `class` on its probe shape (or `probe`, smaller, for
/// tests) with `dtype` weights, and leaves the class at the winner (`uniaudio tune`).
pub fn tune_gemv_probe<C: KernelDevice>(c: &C, class: usize, probe: Option<(usize, usize, usize)>, dtype: DType, warmup: usize, reps: usize) -> Result<ProbeTuning> {
    let (_, default_probe) = *GEMV_CLASSES.get(class).ok_or_else(|| Error::invalid("tune_gemv_probe", format!("no GEMV class {class}")))?;
    let (m, k, n) = probe.unwrap_or(default_probe);
    let x = c.alloc(DType::F32, &[m, k])?;
    let out = c.alloc(DType::F32, &[m, n])?;
    let w1 = c.alloc(dtype, &[n, k])?;
    let w2 = c.alloc(dtype, &[n, k])?;
    let op = if class == GATE_UP_CLASS {
        Op::GateUp { x: &x, w_gate: &w1, w_up: &w2, out: &out, rows: RowOrder::Invariant }
    } else {
        Op::MatMul { x: &x, w: &w1, out: &out, layout: WeightLayout::OutIn, accumulate: false, rows: RowOrder::Invariant }
    };
    op.validate()?;
    let gemv = launch::Gemv::of(&op).ok_or_else(|| Error::invalid("tune_gemv_probe", "the probe is not a GEMV"))?;
    let bytes = gemv.weight_bytes;
    let run = |w: usize| gemv.launch(c, w);
    c.sync()?;
    let repeat = repeats_for(c, &run, GEMV_WARPS_DEFAULT)?;
    let mut failure = None;
    let (best, timings) = pick(&GEMV_WARPS_CANDIDATES, |w| w.to_string(), warmup, reps, |&w| time(c, repeat, &run, w, &mut failure));
    if let Some(e) = failure {
        return Err(e);
    }
    c.gemv_tuning().set(class, GEMV_WARPS_CANDIDATES[best]);
    let matrices = if class == GATE_UP_CLASS { 2 } else { 1 };
    Ok(ProbeTuning { best, timings, bytes_per_timing: (bytes * repeat) as f64, flops_per_timing: (2 * matrices * m * n * k * repeat) as f64 })
}

/// Forces (and decides) a class's warps per block; results do not change.
pub fn set_gemv_warps<C: KernelDevice>(c: &C, class: usize, warps: usize) -> Result<()> {
    if class >= GEMV_CLASSES.len() || !GEMV_WARPS_CANDIDATES.contains(&warps) {
        return Err(Error::invalid("set_gemv_warps", format!("class {class} warps {warps}: expected a class below {} and warps in {GEMV_WARPS_CANDIDATES:?}", GEMV_CLASSES.len())));
    }
    c.gemv_tuning().set(class, warps);
    Ok(())
}

/// The warps per block in use, by class.
pub fn gemv_warps_in_use<C: KernelDevice>(c: &C) -> Vec<usize> {
    (0..GEMV_CLASSES.len()).map(|class| c.gemv_tuning().get(class)).collect()
}

/// Loads a device's tuned choices as `UNIAUDIO_TUNE` says; what is in use, in words.
pub fn load<C: KernelDevice>(c: &C) -> String {
    let mode = crate::tune::TuneMode::from_env().unwrap_or_else(|e| {
        eprintln!("warning: {e}; using built-in defaults");
        crate::tune::TuneMode::Off
    });
    table::load(&[c.gemv_tuning()], mode, &crate::cpu::tune::cache_dir(), c.tune_key())
}
