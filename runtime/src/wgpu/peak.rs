//! The adapter's f32 FMA peak: the compute limit GEMM rates are quoted against.

use std::time::Instant;

use super::launch::Kernel;
use super::Wgpu;
use crate::Result;

/// fma steps per chain per thread (`peak.wgsl` runs eight chains).
const ITERS: u32 = 1024;
/// Workgroups (256 threads each) per dispatch: enough to fill any device.
const GROUPS: u32 = 1024;
/// A timed pass lasts at least this long, so submission overhead does not decide.
const MIN_PASS_SECONDS: f64 = 0.05;

impl Wgpu {
    /// f32 FMA throughput in GFLOP/s: independent fma chains on every thread, the best of
    /// `reps` timed passes after a warm-up that also sizes a pass.
    pub fn measure_fma_peak(&self, reps: usize) -> Result<f64> {
        let out = self.new_buffer(GROUPS as usize * 256 * 4, None)?;
        let kernel = Kernel { file: "peak", entry: "fma_peak", defines: vec![], bindings: vec![(0, &out, None)], params_binding: 1, params: vec![ITERS, 1e-3f32.to_bits(), 0, 0] };
        let pass = |dispatches: usize| -> Result<f64> {
            self.sync_all()?;
            let t = Instant::now();
            for _ in 0..dispatches {
                self.dispatch(&kernel, GROUPS)?;
            }
            self.sync_all()?;
            Ok(t.elapsed().as_secs_f64())
        };
        let mut dispatches = 1;
        while pass(dispatches)? < MIN_PASS_SECONDS && dispatches < 1024 {
            dispatches *= 2;
        }
        let mut best = f64::INFINITY;
        for _ in 0..reps.max(1) {
            best = best.min(pass(dispatches)?);
        }
        let flops = 2.0 * 8.0 * ITERS as f64 * GROUPS as f64 * 256.0 * dispatches as f64;
        Ok(flops / best / 1e9)
    }
}
