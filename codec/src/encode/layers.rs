//! Building blocks shared by the encoder's sub-models: the weight reader (host-side
//! folding, f32 upload), linears, affine LayerNorms and bidirectional self-attention.

use std::path::Path;

use uniaudio_runtime::weights::ModelWeights;
use uniaudio_runtime::{ops, Backend, DType, Epilogue, Tensor};

use crate::error::{CodecError, Result};
use crate::tensors::TensorList;

/// codec.safetensors opened for the encoder: every required tensor checked up front.
pub struct EncoderWeights<'a, B: Backend> {
    pub backend: &'a B,
    file: ModelWeights,
}

impl<'a, B: Backend> EncoderWeights<'a, B> {
    /// Opens `path` and checks that every tensor of `required` is present with its shape;
    /// the error lists what is missing (an encoder-less codec file names them all).
    pub fn open(backend: &'a B, path: &Path, required: &TensorList, alternatives: &[(&str, &str)]) -> Result<Self> {
        let file = ModelWeights::from_file(path)?;
        let mut missing = Vec::new();
        for (name, shape) in required {
            let present = file.contains(name) || alternatives.iter().any(|(n, alt)| n == name && file.contains(alt));
            if !present {
                missing.push(name.as_str());
            } else if file.contains(name) && file.shape(name).as_deref() != Some(shape.as_slice()) {
                let got = file.shape(name).unwrap_or_default();
                return Err(CodecError::Invalid(format!("{}: tensor {name} has shape {got:?}, expected {shape:?}", path.display())));
            }
        }
        if !missing.is_empty() {
            let shown: Vec<&str> = missing.iter().copied().take(12).collect();
            let more = if missing.len() > shown.len() { format!(" and {} more", missing.len() - shown.len()) } else { String::new() };
            return Err(CodecError::Invalid(format!(
                "{}: no encoder weights: {} of {} encoder tensors are missing: {}{more}",
                path.display(),
                missing.len(),
                required.len(),
                shown.join(", ")
            )));
        }
        Ok(EncoderWeights { backend, file })
    }

    pub fn contains(&self, name: &str) -> bool {
        self.file.contains(name)
    }

    /// Host f32 copy of `name`, which must have `shape`.
    pub fn host(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        Ok(self.file.get_checked(name, shape)?.to_f32())
    }

    pub fn upload(&self, shape: &[usize], values: &[f32]) -> Result<Tensor<B>> {
        Ok(ops::upload_f32(self.backend, shape, values, DType::F32)?)
    }

    /// `name` as an f32 device tensor. One stored as f32 is used in place (the CPU backend
    /// computes on the mapped file; a GPU backend uploads it once): copying the encoder's
    /// 3 GB through host vectors took most of its load time, in page faults.
    pub fn tensor(&self, name: &str, shape: &[usize]) -> Result<Tensor<B>> {
        let view = self.file.get_checked(name, shape)?;
        if view.dtype() == DType::F32 {
            return Ok(self.backend.upload_weight(&view)?);
        }
        self.upload(shape, &view.to_f32())
    }

    /// `{name}.weight` [out, in] and `{name}.bias` (when `bias`).
    pub fn linear(&self, name: &str, out: usize, inp: usize, bias: bool) -> Result<Lin<B>> {
        let b = if bias { Some(self.tensor(&format!("{name}.bias"), &[out])?) } else { None };
        Ok(Lin { w: self.tensor(&format!("{name}.weight"), &[out, inp])?, b })
    }

    pub fn layer_norm(&self, name: &str, dim: usize, eps: f32) -> Result<Ln<B>> {
        let w = self.host(&format!("{name}.weight"), &[dim])?;
        let b = self.host(&format!("{name}.bias"), &[dim])?;
        Ln::new(self, &w, &b, eps)
    }

    /// A vector of `n` copies of `v` (the gate of a plain residual `Linear`).
    pub fn fill(&self, n: usize, v: f32) -> Result<Tensor<B>> {
        self.upload(&[n], &vec![v; n])
    }
}

/// A linear layer (f32 weight [out, in], optional bias).
pub struct Lin<B: Backend> {
    pub w: Tensor<B>,
    pub b: Option<Tensor<B>>,
}

impl<B: Backend> Lin<B> {
    pub fn from_host(l: &EncoderWeights<B>, w: &[f32], b: Option<&[f32]>, out: usize, inp: usize) -> Result<Self> {
        let b = match b {
            Some(b) => Some(l.upload(&[out], b)?),
            None => None,
        };
        Ok(Lin { w: l.upload(&[out, inp], w)?, b })
    }

    pub fn out_dim(&self) -> usize {
        self.w.shape()[0]
    }

    /// out = x · wᵀ + b, then the epilogue.
    pub fn run(&self, bk: &B, x: &Tensor<B>, out: &Tensor<B>, epilogue: Epilogue<'_, B>) -> Result<()> {
        Ok(ops::linear(bk, x, &self.w, self.b.as_ref(), out, epilogue)?)
    }

    /// A new [rows, out] tensor holding x · wᵀ + b (then the epilogue).
    pub fn apply(&self, bk: &B, x: &Tensor<B>, epilogue: Epilogue<'_, B>) -> Result<Tensor<B>> {
        let out = bk.alloc(DType::F32, &[x.rows(), self.out_dim()])?;
        self.run(bk, x, &out, epilogue)?;
        Ok(out)
    }
}

/// Affine LayerNorm as the runtime's modulated LayerNorm: n·(1 + scale) + shift with
/// scale = w − 1 (exact for weights in [0.5, 2], within an ulp of w otherwise).
pub struct Ln<B: Backend> {
    shift: Tensor<B>,
    scale: Tensor<B>,
    eps: f32,
}

impl<B: Backend> Ln<B> {
    pub fn new(l: &EncoderWeights<B>, w: &[f32], b: &[f32], eps: f32) -> Result<Self> {
        let scale: Vec<f32> = w.iter().map(|v| v - 1.0).collect();
        Ok(Ln { shift: l.upload(&[b.len()], b)?, scale: l.upload(&[w.len()], &scale)?, eps })
    }

    pub fn run(&self, bk: &B, x: &Tensor<B>, out: &Tensor<B>) -> Result<()> {
        Ok(ops::layer_norm_modulate(bk, x, &self.shift, &self.scale, out, self.eps)?)
    }

    pub fn apply(&self, bk: &B, x: &Tensor<B>) -> Result<Tensor<B>> {
        let out = bk.alloc(DType::F32, x.shape())?;
        self.run(bk, x, &out)?;
        Ok(out)
    }
}

/// Bidirectional multi-head attention within each of `batch` sequences of T tokens:
/// q, k, v [batch·T, H·D] -> [batch·T, H·D] (K and V go through the runtime's cache
/// layout [H, T, D]; `positions` is 0..T).
pub fn self_attention<B: Backend>(bk: &B, q: &Tensor<B>, k: &Tensor<B>, v: &Tensor<B>, heads: usize, batch: usize, positions: &Tensor<B>) -> Result<Tensor<B>> {
    let t = positions.numel();
    let d = q.dim_back(0) / heads;
    let shape = [t, heads, d];
    let k_cache = bk.alloc(DType::F32, &[heads, t, d])?;
    let v_cache = bk.alloc(DType::F32, &[heads, t, d])?;
    let out = bk.alloc(DType::F32, &[batch * t, heads, d])?;
    for b in 0..batch {
        let rows = |x: &Tensor<B>| -> Result<Tensor<B>> { Ok(x.narrow(b * t, t)?.reshape(&shape)?) };
        ops::kv_append(bk, &rows(k)?, &rows(v)?, positions, &k_cache, &v_cache)?;
        ops::attention(bk, &rows(q)?, &k_cache, &v_cache, &out.narrow(b * t, t)?, t, false)?;
    }
    Ok(out.reshape(&[batch * t, heads * d])?)
}

/// Positions 0..t, `batch` times, as a u32 tensor (K/V rows of `self_attention` take one
/// repeat, RoPE rows all of them).
pub fn positions<B: Backend>(bk: &B, batch: usize, t: usize) -> Result<Tensor<B>> {
    let ids: Vec<u32> = (0..batch * t).map(|i| (i % t.max(1)) as u32).collect();
    Ok(ops::upload_u32(bk, &[batch * t], &ids)?)
}

/// Folds eval-mode BatchNorm into the preceding convolution's weight rows and bias:
/// w' = w·γ/√(var + eps), b' = (b − mean)·γ/√(var + eps) + β (computed in f64).
pub fn fold_batch_norm(w: &mut [f32], bias: &mut [f32], gamma: &[f32], beta: &[f32], mean: &[f32], var: &[f32], eps: f32) {
    let c_out = bias.len();
    let per = w.len() / c_out.max(1);
    for o in 0..c_out {
        let s = gamma[o] as f64 / (var[o] as f64 + eps as f64).sqrt();
        for v in &mut w[o * per..(o + 1) * per] {
            *v = (*v as f64 * s) as f32;
        }
        bias[o] = ((bias[o] as f64 - mean[o] as f64) * s + beta[o] as f64) as f32;
    }
}
