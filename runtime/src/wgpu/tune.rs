//! The wgpu backend's tunable kernel families.
//!
//! `wgpu.gemv.rows`: output rows per workgroup (32 lanes each) of the GEMV kernels
//! (`matmul_out_in`, the decode projections, and `gate_up`, the gated MLP input). Every
//! candidate reduces each row with the same lanes in the same order, so results are
//! bit-identical whatever is chosen; the batch-invariant decode path stays exact.
//! Classes: narrow and wide inner sizes, and the gated MLP input.
//!
//! `wgpu.gemm.tile`: the output tile edge of the register-tiled GEMM (`gemm.wgsl`: the
//! prefill projections and the codec's linears and convolutions), 32, 64 (default) or 128,
//! with 2x2, 4x4 or 8x8 outputs per thread. Each output sums its products in ascending k
//! whatever the tile, so the candidates agree. Classes: products of fewer or more rows
//! than 256 (prefill-sized, codec-sized), 1-D and 2-D convolutions.

use std::time::{Duration, Instant};

use super::launch::Kernel;
use super::Wgpu;
use crate::tune::table::{self, Family, Tuned};
use crate::tune::{DeviceKey, Timing};
use crate::{Backend, DType, Result};

pub use crate::tune::ProbeTuning;

/// The family's name in the cache.
pub const GEMV_ROWS: &str = "wgpu.gemv.rows";
/// Candidate rows per workgroup (32 to 256 threads).
pub const GEMV_ROWS_CANDIDATES: [usize; 4] = [1, 2, 4, 8];
/// The built-in rows per workgroup.
pub const GEMV_ROWS_DEFAULT: usize = 8;
/// Shape classes: (name, the (M, K, N) probe `uniaudio tune` times: the 3B backbone's
/// decode shapes).
pub const GEMV_CLASSES: [(&str, (usize, usize, usize)); 3] =
    [("matmul/k<=4096", (1, 3072, 8192)), ("matmul/k>4096", (1, 8192, 3072)), ("gate_up", (1, 3072, 8192))];
/// Index of the gated-MLP class.
pub const GATE_UP_CLASS: usize = 2;

pub(crate) static GEMV_FAMILY: Family =
    Family { name: GEMV_ROWS, classes: &["matmul/k<=4096", "matmul/k>4096", "gate_up"], candidates: &GEMV_ROWS_CANDIDATES, default: GEMV_ROWS_DEFAULT };

/// The tiled GEMM family's name in the cache.
pub const GEMM_TILE: &str = "wgpu.gemm.tile";
/// Candidate output tile edges.
pub const GEMM_TILE_CANDIDATES: [usize; 3] = [32, 64, 128];
/// The built-in tile edge.
pub const GEMM_TILE_DEFAULT: usize = 64;
/// Shape classes: (name, the (M, K, N) probe `uniaudio tune` times: a 64-token prefill
/// projection of the 3B backbone, a 20 s codec window's linear; convolutions as (rows,
/// inner size, output channels) of the SQ decoder's first stage and the Whisper-sized
/// 2-D front end).
pub const GEMM_CLASSES: [(&str, (usize, usize, usize)); 4] =
    [("gemm/m<256", (64, 3072, 8192)), ("gemm/m>=256", (1000, 1536, 1536)), ("conv1d", (1000, 3 * 512, 512)), ("conv2d", (3000, 9 * 32, 64))];
/// Indices of the convolution classes.
pub const CONV1D_CLASS: usize = 2;
pub const CONV2D_CLASS: usize = 3;

pub(crate) static GEMM_FAMILY: Family =
    Family { name: GEMM_TILE, classes: &["gemm/m<256", "gemm/m>=256", "conv1d", "conv2d"], candidates: &GEMM_TILE_CANDIDATES, default: GEMM_TILE_DEFAULT };

/// The class of a (non-convolution) tiled product of `m` rows.
pub fn gemm_class(m: usize) -> usize {
    usize::from(m >= 256)
}

/// The kernel defines selecting a `tile` x `tile` output tile.
pub(crate) fn tile_defines(tile: usize) -> [(&'static str, &'static str); 3] {
    match tile {
        32 => [("GEMM_TILE", "32"), ("GEMM_PER", "2"), ("GEMM_TK", "32")],
        128 => [("GEMM_TILE", "128"), ("GEMM_PER", "8"), ("GEMM_TK", "8")],
        _ => [("GEMM_TILE", "64"), ("GEMM_PER", "4"), ("GEMM_TK", "16")],
    }
}

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
        "{:?} vendor {:#06x} device {:#06x}, {} {}, subgroups {}, f16 {}, {} precision",
        i.backend, i.vendor, i.device, i.driver, i.driver_info, w.subgroups, w.shader_f16, w.precision().name()
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
        self.tune_on_first_use(&self.gemv, class, build, repeats_for(weight_bytes), "rows per workgroup")
    }

    /// The output tile edge in use for tiled GEMM `class`.
    pub(crate) fn gemm_tile(&self, class: usize) -> usize {
        self.gemm.get(class)
    }

    /// Tuning on first use of tiled GEMM `class` (ops that overwrite their output only).
    pub(crate) fn tune_gemm_on_first_use(&self, class: usize, build: &GemvBuild, flops: f64) -> Result<()> {
        self.tune_on_first_use(&self.gemm, class, build, repeats_for_flops(flops), "output tile edge")
    }

    fn tune_on_first_use(&self, tuned: &Tuned, class: usize, build: &GemvBuild, repeat: usize, what: &str) -> Result<()> {
        if tuned.is_decided(class) {
            return Ok(());
        }
        let family = tuned.family();
        let mut failure = None;
        self.sync_all()?;
        // A heavy op (a software adapter's convolution can take seconds) is timed once per
        // candidate, without a warm-up: the first use should cost a few runs, not a dozen.
        let probe = self.time_kernels(&build(tuned.get(class)), repeat, &mut failure);
        let (warmup, reps) = if probe > HEAVY_OP { (0, 1) } else { (1, 3) };
        let timed = tuned.tune_once(class, family.candidates, warmup, reps, |&v| self.time_kernels(&build(v), repeat, &mut failure));
        if let Some(e) = failure {
            return Err(e);
        }
        if let Some((best, timings)) = timed {
            let entry = family.entry(class);
            eprintln!("tuned {entry} on {}: {what} {} (stored for later runs; UNIAUDIO_TUNE=off skips tuning)", self.info.name, family.candidates[best]);
            table::persist(&crate::cpu::tune::cache_dir(), device_key(self), &entry, table::choice(best, &timings));
        }
        Ok(())
    }

    /// Times every candidate of `tuned`'s family for `class` on `build`'s op
    /// (ahead-of-time tuning) and leaves the class at the winner: (winner, timings).
    fn tune_ahead(&self, tuned: &Tuned, class: usize, build: &GemvBuild, repeat: usize, warmup: usize, reps: usize) -> Result<(usize, Vec<Timing>)> {
        let candidates = tuned.family().candidates;
        let mut failure = None;
        self.sync_all()?;
        let (best, timings) = crate::tune::pick(candidates, |c| c.to_string(), warmup, reps, |&v| self.time_kernels(&build(v), repeat, &mut failure));
        if let Some(e) = failure {
            return Err(e);
        }
        tuned.set(class, candidates[best]);
        Ok((best, timings))
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
    pub fn tune_gemv_probe(&self, class: usize, probe: Option<(usize, usize, usize)>, dtype: DType, warmup: usize, reps: usize) -> Result<ProbeTuning> {
        let (_, default_probe) = *GEMV_CLASSES.get(class).ok_or_else(|| crate::Error::invalid("tune_gemv_probe", format!("no GEMV class {class}")))?;
        let (m, k, n) = probe.unwrap_or(default_probe);
        let x = self.alloc(DType::F32, &[m, k])?;
        let out = self.alloc(DType::F32, &[m, n])?;
        let w1 = self.alloc(dtype, &[n, k])?;
        let w2 = self.alloc(dtype, &[n, k])?;
        let matrices = if class == GATE_UP_CLASS { 2 } else { 1 };
        let bytes = matrices * dtype.bytes(n * k);
        let gate_up = |rows: usize| vec![super::launch::gate_up_kernel(self, &x, &w1, &w2, &out, rows)];
        let matmul = |rows: usize| super::launch::gemv_matmul_kernels(self, &x, &w1, &out, false, rows);
        let build: &GemvBuild = if class == GATE_UP_CLASS { &gate_up } else { &matmul };
        let repeat = repeats_for(bytes);
        let (best, timings) = self.tune_ahead(&self.gemv, class, build, repeat, warmup, reps)?;
        Ok(ProbeTuning { best, timings, bytes_per_timing: (bytes * repeat) as f64, flops_per_timing: (2 * matrices * m * n * k * repeat) as f64 })
    }

    /// Times every tile of tiled GEMM `class` on its probe (or `probe` (rows, inner,
    /// columns), smaller, for tests) with `dtype` weights, and leaves the class at the winner.
    pub fn tune_gemm_probe(&self, class: usize, probe: Option<(usize, usize, usize)>, dtype: DType, warmup: usize, reps: usize) -> Result<ProbeTuning> {
        use crate::op::{Conv2dParams, ConvParams, Epilogue, Op};
        let (_, default_probe) = *GEMM_CLASSES.get(class).ok_or_else(|| crate::Error::invalid("tune_gemm_probe", format!("no tiled GEMM class {class}")))?;
        let (m, k, n) = probe.unwrap_or(default_probe);
        // Convolution probes: 3 taps (3x3 in 2-D) over k / taps input channels, `m` frames
        // (a strip of m / 2 x 2 pixels in 2-D), same padding.
        let (x, w, out) = match class {
            CONV1D_CLASS => (self.alloc(DType::F32, &[1, m, k / 3])?, self.alloc(dtype, &[n, 3, k / 3])?, self.alloc(DType::F32, &[1, m, n])?),
            CONV2D_CLASS => (self.alloc(DType::F32, &[1, m / 2, 2, k / 9])?, self.alloc(dtype, &[n, 3, 3, k / 9])?, self.alloc(DType::F32, &[1, m / 2, 2, n])?),
            _ => (self.alloc(DType::F32, &[m, k])?, self.alloc(dtype, &[n, k])?, self.alloc(DType::F32, &[m, n])?),
        };
        let conv = ConvParams { stride: 1, groups: 1, dilation: 1, pad_left: 1, upsample: 1, prelu: None, accumulate: false };
        let op = match class {
            CONV1D_CLASS => Op::Conv1d { x: &x, w: &w, bias: None, out: &out, conv },
            CONV2D_CLASS => Op::Conv2d { x: &x, w: &w, bias: None, out: &out, conv: Conv2dParams { stride: [1, 1], pad: [1, 1], accumulate: false, relu: false } },
            _ => Op::Linear { x: &x, w: &w, bias: None, out: &out, epilogue: Epilogue::Store },
        };
        op.validate()?;
        let rows = out.rows();
        let flops = 2.0 * rows as f64 * (w.numel() / n) as f64 * n as f64;
        let build = |tile: usize| vec![super::launch_codec::kernel(self, &op, tile)];
        let repeat = repeats_for_flops(flops);
        let (best, timings) = self.tune_ahead(&self.gemm, class, &build, repeat, warmup, reps)?;
        Ok(ProbeTuning { best, timings, bytes_per_timing: (w.size_bytes() * repeat) as f64, flops_per_timing: flops * repeat as f64 })
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

    /// The tiled GEMM's tile edges in use, by class.
    pub fn gemm_tiles_in_use(&self) -> Vec<usize> {
        (0..GEMM_CLASSES.len()).map(|c| self.gemm.get(c)).collect()
    }

    /// Forces (and decides) a tiled GEMM class's tile edge; results do not change.
    pub fn set_gemm_tile(&self, class: usize, tile: usize) -> Result<()> {
        if class >= GEMM_CLASSES.len() || !GEMM_TILE_CANDIDATES.contains(&tile) {
            return Err(crate::Error::invalid("set_gemm_tile", format!("class {class} tile {tile}: expected a class below {} and a tile in {GEMM_TILE_CANDIDATES:?}", GEMM_CLASSES.len())));
        }
        self.gemm.set(class, tile);
        Ok(())
    }

    /// Built-in defaults for every class from now on (nothing timed on first use).
    pub fn use_tuning_defaults(&self) {
        self.gemv.reset(true);
        self.gemm.reset(true);
    }

    /// What this backend runs with: a tuned table, tuning on first use, or the defaults.
    pub fn tune_status(&self) -> &str {
        &self.tune_status
    }
}

/// A first-use timing above this takes each candidate once instead of a median of three.
const HEAVY_OP: Duration = Duration::from_millis(100);

/// Rounds of a GEMV per timing: enough weight traffic (~64 MiB) that submission overhead
/// does not decide, at most 16.
fn repeats_for(weight_bytes: usize) -> usize {
    ((64 << 20) / weight_bytes.max(1)).clamp(1, 16)
}

/// Rounds of a tiled GEMM per timing: about 1 GFLOP of work, at most 16.
fn repeats_for_flops(flops: f64) -> usize {
    (1e9 / flops.max(1.0)).clamp(1.0, 16.0) as usize
}
