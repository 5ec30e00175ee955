//! The wgpu backend's tunable kernel families.
//!
//! `wgpu.gemv.rows`: output rows per workgroup (32 lanes each) of the GEMV kernels
//! (`matmul_out_in`, the decode projections, and `gate_up`, the gated MLP input). Every
//! candidate reduces each row with the same lanes in the same order, so results are
//! bit-identical whatever is chosen; the batch-invariant decode path stays exact.
//! Classes: narrow and wide inner sizes, and the gated MLP input.

use std::time::{Duration, Instant};

use super::launch::Kernel;
use super::Wgpu;
use crate::tune::table::{self, Family};
use crate::tune::{DeviceKey, Timing};
use crate::{Backend, DType, Result};

/// An ahead-of-time tuning run of one GEMV class.
#[derive(Clone, Debug)]
pub struct GemvTuning {
    /// Index of the chosen candidate.
    pub best: usize,
    /// Every candidate's median.
    pub timings: Vec<Timing>,
    /// Weight bytes read per timing (for GB/s).
    pub bytes_per_timing: f64,
}

/// The family's name in the cache.
pub const GEMV_ROWS: &str = "wgpu.gemv.rows";
/// Candidate rows per workgroup (32 to 256 threads).
pub const GEMV_ROWS_CANDIDATES: [usize; 4] = [1, 2, 4, 8];
/// Shape classes: (name, the (M, K, N) probe `uniaudio tune` times: the 3B backbone's
/// decode shapes).
pub const GEMV_CLASSES: [(&str, (usize, usize, usize)); 3] =
    [("matmul/k<=4096", (1, 3072, 8192)), ("matmul/k>4096", (1, 8192, 3072)), ("gate_up", (1, 3072, 8192))];
/// Index of the gated-MLP class.
pub const GATE_UP_CLASS: usize = 2;

pub(crate) static GEMV_FAMILY: Family =
    Family { name: GEMV_ROWS, classes: &["matmul/k<=4096", "matmul/k>4096", "gate_up"], candidates: &GEMV_ROWS_CANDIDATES, default: 8 };

/// The class of a GEMV with inner size `k`.
pub fn matmul_class(k: usize) -> usize {
    usize::from(k > 4096)
}

/// The kernel defines selecting `rows` per workgroup.
pub(crate) fn rows_defines(rows: usize) -> [(&'static str, &'static str); 2] {
    match rows {
        1 => [("GEMV_ROWS", "1"), ("GEMV_THREADS", "32")],
        2 => [("GEMV_ROWS", "2"), ("GEMV_THREADS", "64")],
        4 => [("GEMV_ROWS", "4"), ("GEMV_THREADS", "128")],
        _ => [("GEMV_ROWS", "8"), ("GEMV_THREADS", "256")],
    }
}

/// This adapter as a cache key: name, vendor and device ids, API and driver, and the
/// features the kernels use.
pub(crate) fn device_key(w: &Wgpu) -> DeviceKey {
    let i = &w.info;
    let driver = format!(
        "{:?} vendor {:#06x} device {:#06x}, {} {}, subgroups {}, f16 {}",
        i.backend, i.vendor, i.device, i.driver, i.driver_info, w.subgroups, w.shader_f16
    );
    DeviceKey::new("wgpu", &i.name, &driver)
}

/// The kernels of one GEMV op for a given rows-per-workgroup value.
pub(crate) type GemvBuild<'a, 'k> = dyn Fn(usize) -> Vec<(Kernel<'k>, u32)> + 'a;

impl Wgpu {
    /// Rows per workgroup in use for GEMV `class`.
    pub(crate) fn gemv_rows(&self, class: usize) -> usize {
        self.gemv.get(class)
    }

    /// Tuning on first use: an undecided class times every candidate on this op (whose
    /// output it rewrites with identical bits, so only ops that overwrite their output
    /// may come here) and stores the winner in the device's cache.
    pub(crate) fn tune_gemv_on_first_use(&self, class: usize, build: &GemvBuild, weight_bytes: usize) -> Result<()> {
        if self.gemv.is_decided(class) {
            return Ok(());
        }
        let mut failure = None;
        let repeat = repeats_for(weight_bytes);
        self.sync_all()?;
        let tuned = self.gemv.tune_once(class, &GEMV_ROWS_CANDIDATES, 1, 3, |&rows| self.time_kernels(&build(rows), repeat, &mut failure));
        if let Some(e) = failure {
            return Err(e);
        }
        if let Some((best, timings)) = tuned {
            let entry = GEMV_FAMILY.entry(class);
            eprintln!("tuned {entry} on {}: {} rows per workgroup (stored for later runs; UNIAUDIO_TUNE=off skips tuning)", self.info.name, GEMV_ROWS_CANDIDATES[best]);
            table::persist(&crate::cpu::tune::cache_dir(), device_key(self), &entry, table::choice(best, &timings));
        }
        Ok(())
    }

    /// Times every candidate of GEMV `class` on `build`'s op (ahead-of-time tuning) and
    /// leaves the class at the winner: (winner, timings, dispatches per timing).
    pub(crate) fn tune_gemv(&self, class: usize, build: &GemvBuild, weight_bytes: usize, warmup: usize, reps: usize) -> Result<(usize, Vec<Timing>, usize)> {
        let mut failure = None;
        let repeat = repeats_for(weight_bytes);
        self.sync_all()?;
        let (best, timings) = crate::tune::pick(&GEMV_ROWS_CANDIDATES, |c| c.to_string(), warmup, reps, |&rows| self.time_kernels(&build(rows), repeat, &mut failure));
        if let Some(e) = failure {
            return Err(e);
        }
        self.gemv.set(class, GEMV_ROWS_CANDIDATES[best]);
        Ok((best, timings, repeat))
    }

    /// Wall time of `repeat` rounds of `kernels` in one submission, waited for.
    fn time_kernels(&self, kernels: &[(Kernel, u32)], repeat: usize, failure: &mut Option<crate::Error>) -> Duration {
        let t = Instant::now();
        for _ in 0..repeat {
            for (k, groups) in kernels {
                if let Err(e) = self.dispatch(k, *groups) {
                    failure.get_or_insert(e);
                    return Duration::MAX;
                }
            }
        }
        if let Err(e) = self.sync_all() {
            failure.get_or_insert(e);
        }
        t.elapsed()
    }

    /// Times every candidate of GEMV `class` on its probe shape (or `probe`, smaller, for
    /// tests) with `dtype` weights, and leaves the class at the winner.
    pub fn tune_gemv_probe(&self, class: usize, probe: Option<(usize, usize, usize)>, dtype: DType, warmup: usize, reps: usize) -> Result<GemvTuning> {
        let (_, default_probe) = *GEMV_CLASSES.get(class).ok_or_else(|| crate::Error::invalid("tune_gemv_probe", format!("no GEMV class {class}")))?;
        let (m, k, n) = probe.unwrap_or(default_probe);
        let x = self.alloc(DType::F32, &[m, k])?;
        let out = self.alloc(DType::F32, &[m, n])?;
        let w1 = self.alloc(dtype, &[n, k])?;
        let (best, timings, repeat, bytes) = if class == GATE_UP_CLASS {
            let w2 = self.alloc(dtype, &[n, k])?;
            let bytes = 2 * n * k * dtype.size_bytes();
            let build = |rows: usize| vec![super::launch::gate_up_kernel(self, &x, &w1, &w2, &out, rows)];
            let (b, t, r) = self.tune_gemv(class, &build, bytes, warmup, reps)?;
            (b, t, r, bytes)
        } else {
            let bytes = n * k * dtype.size_bytes();
            let build = |rows: usize| super::launch::gemv_matmul_kernels(self, &x, &w1, &out, false, rows);
            let (b, t, r) = self.tune_gemv(class, &build, bytes, warmup, reps)?;
            (b, t, r, bytes)
        };
        Ok(GemvTuning { best, timings, bytes_per_timing: (bytes * repeat) as f64 })
    }

    /// This adapter's key in the tuning cache.
    pub fn tune_key(&self) -> DeviceKey {
        device_key(self)
    }

    /// The rows-per-workgroup values in use, by class (tests force candidates with
    /// `set_gemv_rows`).
    pub fn gemv_rows_in_use(&self) -> Vec<usize> {
        (0..GEMV_CLASSES.len()).map(|c| self.gemv.get(c)).collect()
    }

    /// Forces (and decides) a class's rows per workgroup; results do not change.
    pub fn set_gemv_rows(&self, class: usize, rows: usize) -> Result<()> {
        if class >= GEMV_CLASSES.len() || !GEMV_ROWS_CANDIDATES.contains(&rows) {
            return Err(crate::Error::invalid("set_gemv_rows", format!("class {class} rows {rows}: expected a class below {} and rows in {GEMV_ROWS_CANDIDATES:?}", GEMV_CLASSES.len())));
        }
        self.gemv.set(class, rows);
        Ok(())
    }

    /// Built-in defaults for every class from now on (nothing timed on first use).
    pub fn use_tuning_defaults(&self) {
        self.gemv.reset(true);
    }

    /// What this backend runs with: a tuned table, tuning on first use, or the defaults.
    pub fn tune_status(&self) -> &str {
        &self.tune_status
    }
}

/// Rounds of a GEMV per timing: enough weight traffic (~64 MiB) that submission overhead
/// does not decide, at most 16.
fn repeats_for(weight_bytes: usize) -> usize {
    ((64 << 20) / weight_bytes.max(1)).clamp(1, 16)
}
