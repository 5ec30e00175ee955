//! Reading the codec's weight files: checked shapes, host-side folding and re-layout.

use std::path::Path;

use uniaudio_runtime::weights::ModelWeights;
use uniaudio_runtime::{ops, Backend, DType, Tensor};

use crate::error::Result;

/// One weight file bound to a backend.
pub struct Loader<'a, B: Backend> {
    pub backend: &'a B,
    file: ModelWeights,
}

impl<'a, B: Backend> Loader<'a, B> {
    pub fn open(backend: &'a B, path: &Path) -> Result<Self> {
        Ok(Loader { backend, file: ModelWeights::from_file(path)? })
    }

    /// Host f32 copy of `name`, which must have `shape`.
    pub fn host(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        Ok(self.file.get_checked(name, shape)?.to_f32())
    }

    /// `name` on the device in its stored dtype (zero-copy where the backend allows).
    pub fn weight(&self, name: &str, shape: &[usize]) -> Result<Tensor<B>> {
        let view = self.file.get_checked(name, shape)?;
        Ok(self.backend.upload_weight(&view)?)
    }

    /// A weight of many-row products met at every step (the flow's linears): the backend
    /// may keep it in its GEMM's layout too.
    pub fn gemm_weight(&self, name: &str, shape: &[usize]) -> Result<Tensor<B>> {
        let view = self.file.get_checked(name, shape)?;
        Ok(self.backend.upload_gemm_weight(&view)?)
    }

    pub fn upload(&self, shape: &[usize], values: &[f32]) -> Result<Tensor<B>> {
        Ok(ops::upload_f32(self.backend, shape, values, DType::F32)?)
    }

    /// A scalar (PReLU slope) stored as a [1] tensor.
    pub fn scalar(&self, name: &str) -> Result<f32> {
        Ok(self.host(name, &[1])?[0])
    }
}

/// torch Conv1d weight [C_out, C_in, K] -> the runtime's [C_out, K, C_in].
pub fn conv_to_runtime(w: &[f32], c_out: usize, c_in: usize, k: usize) -> Vec<f32> {
    let mut out = vec![0f32; w.len()];
    for o in 0..c_out {
        for i in 0..c_in {
            for t in 0..k {
                out[(o * k + t) * c_in + i] = w[(o * c_in + i) * k + t];
            }
        }
    }
    out
}

/// torch ConvTranspose1d weight [C_in, C_out, K] -> the runtime's [C_out, K, C_in].
pub fn conv_transpose_to_runtime(w: &[f32], c_in: usize, c_out: usize, k: usize) -> Vec<f32> {
    let mut out = vec![0f32; w.len()];
    for i in 0..c_in {
        for o in 0..c_out {
            for t in 0..k {
                out[(o * k + t) * c_in + i] = w[(i * c_out + o) * k + t];
            }
        }
    }
    out
}

/// Old-style weight norm (dim 0): w[r] = v[r] · (g[r] / ‖v[r]‖) for each leading index r,
/// the norm over all other dims (torch `_weight_norm`, f32 result).
pub fn fold_weight_norm(g: &[f32], v: &[f32]) -> Vec<f32> {
    let rows = g.len();
    let per = v.len() / rows.max(1);
    let mut w = Vec::with_capacity(v.len());
    for (r, chunk) in v.chunks(per.max(1)).enumerate().take(rows) {
        let norm = chunk.iter().map(|&x| (x as f64) * (x as f64)).sum::<f64>().sqrt() as f32;
        let factor = g[r] / norm;
        w.extend(chunk.iter().map(|&x| x * factor));
    }
    w
}
