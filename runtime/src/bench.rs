//! Shared benchmark workloads (used by `uniaudio bench` and the criterion benches), so
//! both measure exactly the same thing.

use std::time::Instant;

use rayon::prelude::*;

use crate::{ops, Backend, DType, Result, Tensor, WeightLayout};

/// A decode GEMV workload: `layers` weight matrices of [rows, cols], each multiplied by
/// one activation vector per pass (of `cols` for `OutIn` weights, of `rows` for `InOut`).
/// Stacks larger than the caches measure DRAM streaming.
#[derive(Clone, Debug)]
pub struct GemvCase {
    pub name: &'static str,
    pub rows: usize,
    pub cols: usize,
    pub layers: usize,
    pub dtype: DType,
    pub layout: WeightLayout,
}

impl GemvCase {
    /// The UniAudio 2.0 text head (128256 x 3072), a 16-matrix stack of FFN-sized
    /// [8192 x 3072] weights, and the 8 audio heads ([2048 x 14103], stored [in, out], or
    /// [14103 x 2048] in blocks): all far larger than any cache.
    pub fn standard(dtype: DType) -> Vec<GemvCase> {
        let out_in = WeightLayout::OutIn;
        vec![
            GemvCase { name: "lm_head", rows: 128_256, cols: 3072, layers: 1, dtype, layout: out_in },
            GemvCase { name: "ffn_stack", rows: 8192, cols: 3072, layers: 16, dtype, layout: out_in },
            // Float audio heads are read K-major, as upstream stores them; q8_0 and q4_0
            // models store them transposed, in rows of blocks.
            if dtype.is_quantized() {
                GemvCase { name: "audio_heads", rows: 14_103, cols: 2048, layers: 8, dtype, layout: out_in }
            } else {
                GemvCase { name: "audio_heads", rows: 2048, cols: 14_103, layers: 8, dtype, layout: WeightLayout::InOut }
            },
        ]
    }

    pub fn weight_bytes(&self) -> usize {
        self.dtype.bytes(self.rows * self.cols) * self.layers
    }
}

/// Weights, input and output of a GEMV case, resident on backend `B`.
pub struct GemvWorkload<B: Backend> {
    pub case: GemvCase,
    weights: Vec<Tensor<B>>,
    x: Tensor<B>,
    out: Tensor<B>,
}

/// Deterministic pseudo-random values in [-1, 1), stored as `dtype`.
fn random_bytes(n: usize, dtype: DType, seed: u32) -> Vec<u8> {
    let values: Vec<f32> = (0..n)
        .into_par_iter()
        .map(|i| (crate::rng::hash32(seed ^ crate::rng::hash32(i as u32)) >> 8) as f32 / 8_388_608.0 - 1.0)
        .collect();
    crate::dtype::f32_to_bytes(&values, dtype)
}

impl<B: Backend> GemvWorkload<B> {
    pub fn new(backend: &B, case: &GemvCase) -> Result<Self> {
        let weights = (0..case.layers)
            .map(|l| backend.upload(case.dtype, &[case.rows, case.cols], &random_bytes(case.rows * case.cols, case.dtype, l as u32)))
            .collect::<Result<Vec<_>>>()?;
        let (k, n) = match case.layout {
            WeightLayout::OutIn => (case.cols, case.rows),
            WeightLayout::InOut => (case.rows, case.cols),
        };
        let x = backend.upload(DType::F32, &[1, k], &random_bytes(k, DType::F32, 0xfeed))?;
        let out = backend.alloc(DType::F32, &[1, n])?;
        Ok(GemvWorkload { case: case.clone(), weights, x, out })
    }

    /// One pass: every matrix of the stack once, then wait for the device.
    pub fn run_pass(&self, backend: &B) -> Result<()> {
        for w in &self.weights {
            ops::matmul(backend, &self.x, w, &self.out, self.case.layout, false)?;
        }
        backend.sync()
    }

    /// Times `reps` passes after one warm-up pass; returns seconds per pass.
    pub fn time_passes(&self, backend: &B, reps: usize) -> Result<Vec<f64>> {
        self.run_pass(backend)?;
        (0..reps)
            .map(|_| {
                let t = Instant::now();
                self.run_pass(backend)?;
                Ok(t.elapsed().as_secs_f64())
            })
            .collect()
    }
}

/// Median of a list of timings (the list is sorted in place).
pub fn median(times: &mut [f64]) -> f64 {
    times.sort_by(f64::total_cmp);
    times.get(times.len() / 2).copied().unwrap_or(f64::NAN)
}
