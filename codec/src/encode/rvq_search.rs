//! A residual VQ's encode side: project_in, the fused nearest-code search over all levels
//! (f32 distances, first index on ties), and project_out of the chosen codes' sum.

use uniaudio_runtime::{ops, Backend, DType, Epilogue, Tensor};

use super::layers::{EncoderWeights, Lin};
use crate::error::Result;

pub struct RvqSearch<B: Backend> {
    project_in: Lin<B>,
    /// The levels' codebooks stacked: [levels, K, codebook_dim].
    codebooks: Tensor<B>,
    project_out: Option<Lin<B>>,
    levels: usize,
}

/// Codes [N, levels] and, when project_out was loaded, project_out(Σ chosen codes) [N, dim].
pub struct RvqOutput<B: Backend> {
    pub codes: Tensor<B>,
    pub quantized: Option<Tensor<B>>,
}

impl<B: Backend> RvqSearch<B> {
    /// `prefix` ends with '.'; `with_output` loads project_out (the reasoning RVQ feeds it on).
    pub fn load(l: &EncoderWeights<B>, prefix: &str, dim: usize, levels: usize, size: usize, cdim: usize, with_output: bool) -> Result<Self> {
        let mut stacked = Vec::with_capacity(levels * size * cdim);
        for q in 0..levels {
            stacked.extend(l.host(&format!("{prefix}layers.{q}._codebook.embed"), &[1, size, cdim])?);
        }
        let project_out = if with_output { Some(l.linear(&format!("{prefix}project_out"), dim, cdim, true)?) } else { None };
        Ok(RvqSearch {
            project_in: l.linear(&format!("{prefix}project_in"), cdim, dim, true)?,
            codebooks: l.upload(&[levels, size, cdim], &stacked)?,
            project_out,
            levels,
        })
    }

    /// x [N, dim] -> codes [N, levels] (u32).
    pub fn encode(&self, bk: &B, x: &Tensor<B>) -> Result<RvqOutput<B>> {
        let r = self.project_in.apply(bk, x, Epilogue::Store)?;
        let codes = bk.alloc(DType::U32, &[x.rows(), self.levels])?;
        let sum = bk.alloc(DType::F32, r.shape())?;
        ops::rvq_encode(bk, &r, &self.codebooks, &codes, &sum)?;
        let quantized = match &self.project_out {
            Some(p) => Some(p.apply(bk, &sum, Epilogue::Store)?),
            None => None,
        };
        Ok(RvqOutput { codes, quantized })
    }
}
