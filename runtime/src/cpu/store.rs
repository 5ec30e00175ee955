//! The many-row GEMMs' fused store: what a product does with each output's f32 sum as it
//! writes it (`Linear`'s bias, activation and gated residual), shared by the packed bf16
//! GEMM (`gemm_bf16.rs`) and the AMX one (`gemm_amx.rs`).

use crate::op::UnaryFn;

/// What the product does with each output's sum s as it stores it (j: the column).
#[derive(Clone, Copy)]
pub(super) enum Store<'a> {
    /// out = s, or out += s.
    Sums { accumulate: bool },
    /// out = act(s + bias[j]), each part optional (`Linear`'s store and activations).
    Act { bias: Option<&'a [f32]>, act: Option<UnaryFn> },
    /// out += gate[j] · (s + bias[j]) (`Linear`'s gated residual).
    GatedAdd { bias: Option<&'a [f32]>, gate: &'a [f32] },
}

impl Store<'_> {
    /// The bias and gate vectors the store reads, where it has them.
    pub(super) fn bias_gate(&self) -> (Option<&[f32]>, Option<&[f32]>) {
        match *self {
            Store::Sums { .. } => (None, None),
            Store::Act { bias, .. } => (bias, None),
            Store::GatedAdd { bias, gate } => (bias, Some(gate)),
        }
    }

    /// Panics unless the bias and gate cover `n` columns (once per product: the stores
    /// in registers check them in debug builds only).
    pub(super) fn assert_covers(&self, n: usize) {
        let (bias, gate) = self.bias_gate();
        assert!(bias.is_none_or(|b| b.len() >= n), "the bias holds {} values, {n} columns", bias.map_or(0, <[f32]>::len));
        assert!(gate.is_none_or(|g| g.len() >= n), "the gate holds {} values, {n} columns", gate.map_or(0, <[f32]>::len));
    }

    /// The activation a store in registers applies, or `None` where it has no vector
    /// form (the store then runs as passes).
    pub(super) fn in_registers(&self) -> Option<Act> {
        match *self {
            Store::Act { act: Some(UnaryFn::Silu), .. } => Some(Act::Silu),
            Store::Act { act: Some(UnaryFn::GeluTanh), .. } => Some(Act::GeluTanh),
            Store::Act { act: Some(UnaryFn::GeluErf), .. } => Some(Act::GeluErf),
            Store::Act { act: Some(_), .. } => None,
            _ => Some(Act::None),
        }
    }
}

/// The activation a store in registers applies (`vexp::x86::act16`,
/// `verf_avx512::gelu_erf16`).
#[derive(Clone, Copy)]
pub(super) enum Act {
    None,
    Silu,
    GeluTanh,
    /// The exact GELU (`verf_avx512::gelu_erf16`).
    GeluErf,
}

#[cfg(target_arch = "x86_64")]
pub(super) mod x86 {
    use std::arch::x86_64::*;

    use super::{Act, Store};

    /// The sums `v` of columns col..col + 16 (lanes past `mask` ignored) stored at `out`
    /// by `store`, the bias, activation (`act`, of `Store::Act`) or gated residual applied
    /// in registers with the passes' operations in their order (the same bits).
    /// # Safety
    /// AVX-512 F; `out` holds the mask's lanes, and the bias and gate cover its columns.
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub(in crate::cpu) unsafe fn store16(store: &Store, act: Act, col: usize, mask: __mmask16, v: __m512, out: *mut f32) {
        let (bias, gate) = store.bias_gate();
        let mut v = v;
        if let Some(b) = bias {
            v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask, b.as_ptr().add(col)));
        }
        let y = match (*store, gate, act) {
            (Store::Sums { accumulate: true }, ..) => _mm512_add_ps(_mm512_maskz_loadu_ps(mask, out), v),
            (_, Some(gate), _) => _mm512_add_ps(_mm512_maskz_loadu_ps(mask, out), _mm512_mul_ps(_mm512_maskz_loadu_ps(mask, gate.as_ptr().add(col)), v)),
            (_, None, Act::Silu) => crate::cpu::vexp::x86::act16(true, v),
            (_, None, Act::GeluTanh) => crate::cpu::vexp::x86::act16(false, v),
            (_, None, Act::GeluErf) => crate::cpu::verf_avx512::gelu_erf16(v),
            (_, None, Act::None) => v,
        };
        _mm512_mask_storeu_ps(out, mask, y);
    }
}
