//! `Linear`: the GEMM of `matmul` with a bias and a fused epilogue.

use rayon::prelude::*;

use super::matmul::matmul;
use super::simd::Isa;
use super::view::WeightSlice;
use crate::op::{RowOrder, UnaryFn, WeightLayout};

/// The epilogue with its gate resolved to a slice.
pub enum LinearEpilogue<'a> {
    Store,
    Act(UnaryFn),
    GatedAdd(&'a [f32]),
}

/// out = epilogue(x · wᵀ + bias).  x [M, K], w [N, K], out [M, N].
#[allow(clippy::too_many_arguments)]
pub fn linear(isa: Isa, x: &[f32], k: usize, n: usize, w: WeightSlice, bias: Option<WeightSlice>, out: &mut [f32], epilogue: LinearEpilogue) {
    if n == 0 || out.is_empty() {
        return;
    }
    let bias: Option<Vec<f32>> = bias.map(|b| (0..n).map(|i| b.get(i)).collect());
    match epilogue {
        LinearEpilogue::Store | LinearEpilogue::Act(_) => {
            matmul(isa, x, k, w, WeightLayout::OutIn, out, false, RowOrder::Free);
            let act = match epilogue {
                LinearEpilogue::Act(f) => Some(f),
                _ => None,
            };
            if bias.is_none() && act.is_none() {
                return;
            }
            out.par_chunks_mut(n)
                .for_each(|row| super::vexp::act_row(isa, act, bias.as_deref(), row));
        }
        LinearEpilogue::GatedAdd(gate) => {
            let mut y = vec![0f32; out.len()];
            matmul(isa, x, k, w, WeightLayout::OutIn, &mut y, false, RowOrder::Free);
            let bias = bias.unwrap_or_else(|| vec![0.0; n]);
            // Four slices in step, so the sum vectorises.
            out.par_chunks_mut(n).zip(y.par_chunks(n)).for_each(|(row, y)| {
                for (((o, &v), &g), &b) in row.iter_mut().zip(y).zip(&gate[..n]).zip(&bias) {
                    *o += g * (v + b);
                }
            });
        }
    }
}
