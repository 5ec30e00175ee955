//! `Linear`: the GEMM of `matmul` with a bias and a fused epilogue.

use rayon::prelude::*;

use super::gemm::Route;
use super::gemm_bf16::PairedWeight;
use super::matmul::matmul;
use super::simd::Isa;
use super::store::Store;
use super::view::WeightSlice;
use crate::op::{RowOrder, UnaryFn, WeightLayout};

/// The epilogue with its gate resolved to a slice.
pub enum LinearEpilogue<'a> {
    Store,
    Act(UnaryFn),
    GatedAdd(&'a [f32]),
}

/// out = epilogue(x · wᵀ + bias).  x [M, K], w [N, K] (and its paired copy, if it has
/// one), out [M, N].
#[allow(clippy::too_many_arguments)]
pub fn linear(isa: Isa, x: &[f32], k: usize, n: usize, w: WeightSlice, pairs: Option<&PairedWeight>, bias: Option<WeightSlice>, out: &mut [f32], epilogue: LinearEpilogue) {
    if n == 0 || out.is_empty() {
        return;
    }
    let bias: Option<Vec<f32>> = bias.map(|b| (0..n).map(|i| b.get(i)).collect());
    let m = x.len().checked_div(k).unwrap_or(0);
    // The packed bf16 and the AMX GEMMs apply the epilogue as they store their sums (a
    // separate pass over a 2000 x 6144 output costs a few percent of the product).
    let store = match epilogue {
        LinearEpilogue::Store => Store::Act { bias: bias.as_deref(), act: None },
        LinearEpilogue::Act(f) => Store::Act { bias: bias.as_deref(), act: Some(f) },
        LinearEpilogue::GatedAdd(gate) => Store::GatedAdd { bias: bias.as_deref(), gate },
    };
    match super::gemm::route(isa, m, k, w, WeightLayout::OutIn, n) {
        Route::PackedBf16 if matches!(w, WeightSlice::BF16(_)) => return super::gemm_bf16::linear(isa, x, m, k, w, pairs, n, out, store),
        // `matmul` takes a few rows (decode) as GEMVs, and no inner indices as zeros.
        Route::Amx if k > 0 && !super::matmul::as_gemv(m, RowOrder::Free) && store.in_registers().is_some() => {
            return super::gemm_amx::linear(x, m, k, w, n, out, &store);
        }
        _ => {}
    }
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
            out.par_chunks_mut(n).zip(y.par_chunks(n)).for_each(|(row, y)| gated_add(row, y, &gate[..n], bias.as_deref()));
        }
    }
}

/// The gated residual's store: dst[j] += gate[j] · (sums[j] + bias[j]), or gate[j] ·
/// sums[j] without a bias. Slices in step, so the sum vectorises.
pub(super) fn gated_add(dst: &mut [f32], sums: &[f32], gate: &[f32], bias: Option<&[f32]>) {
    match bias {
        Some(bias) => dst.iter_mut().zip(sums).zip(gate).zip(bias).for_each(|(((o, &v), &g), &b)| *o += g * (v + b)),
        None => dst.iter_mut().zip(sums).zip(gate).for_each(|((o, &v), &g)| *o += g * v),
    }
}
