//! Cache-blocked GEMM for many rows: out[M, N] (+)= x[M, K] · W.
//!
//! BLIS-style: for each block of KC inner indices, the x rows are packed into micro-panels
//! of MR rows ([KC][MR], zero padded); each parallel task packs NR weight columns into a
//! [KC][NR] micro-panel (16 KiB, L1-resident) and sweeps all row panels with an MR x NR
//! register tile: per inner index, two NR/2-lane loads of W, MR broadcasts of x and
//! 2·MR FMAs into 12 accumulators.

use rayon::prelude::*;

use super::simd::Isa;
use super::view::WeightSlice;
use crate::op::WeightLayout;

const MR: usize = 6;
const NR: usize = 16;
const KC: usize = 256;

/// A raw output pointer shared by tasks that write disjoint column ranges.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);
// SAFETY: each task writes only the columns of its own NR-wide panel.
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

impl SharedOut {
    /// # Safety
    /// `i` must be in bounds and written by no other task.
    #[allow(clippy::mut_from_ref)]
    unsafe fn at(&self, i: usize) -> &mut f32 {
        &mut *self.0.add(i)
    }
}

#[allow(clippy::too_many_arguments)]
pub fn gemm(isa: Isa, x: &[f32], m: usize, k: usize, w: WeightSlice, layout: WeightLayout, n: usize, out: &mut [f32], accumulate: bool) {
    let shared = SharedOut(out.as_mut_ptr());
    let row_panels = m.div_ceil(MR);
    let col_panels = n.div_ceil(NR);
    let mut apack = vec![0f32; row_panels * MR * KC];
    for k0 in (0..k).step_by(KC) {
        let kc = (k - k0).min(KC);
        pack_rows(x, m, k, k0, kc, &mut apack);
        let add = accumulate || k0 > 0;
        (0..col_panels).into_par_iter().for_each_init(
            || vec![0f32; KC * NR],
            |bpack, p| {
                let n0 = p * NR;
                let nb = (n - n0).min(NR);
                pack_cols(w, layout, k, n, k0, kc, n0, nb, bpack);
                for rp in 0..row_panels {
                    let tile = micro_tile(isa, kc, &apack[rp * MR * KC..], bpack);
                    let m0 = rp * MR;
                    for (i, row) in tile.iter().enumerate().take((m - m0).min(MR)) {
                        for (j, &v) in row.iter().enumerate().take(nb) {
                            // SAFETY: (m0 + i, n0 + j) is in bounds; only panel p writes columns n0..n0+nb.
                            let dst = unsafe { shared.at((m0 + i) * n + n0 + j) };
                            *dst = if add { *dst + v } else { v };
                        }
                    }
                }
            },
        );
    }
}

/// x[:, k0..k0+kc] as row panels [panel][kc][MR], rows past m zero.
fn pack_rows(x: &[f32], m: usize, k: usize, k0: usize, kc: usize, apack: &mut [f32]) {
    apack.par_chunks_mut(MR * KC).enumerate().for_each(|(rp, panel)| {
        for i in 0..MR {
            let row = rp * MR + i;
            if row < m {
                let src = &x[row * k + k0..row * k + k0 + kc];
                for (kk, &v) in src.iter().enumerate() {
                    panel[kk * MR + i] = v;
                }
            } else {
                for kk in 0..kc {
                    panel[kk * MR + i] = 0.0;
                }
            }
        }
    });
}

/// W's output columns n0..n0+nb over inner indices k0..k0+kc as [kc][NR], widened to f32.
#[allow(clippy::too_many_arguments)]
fn pack_cols(w: WeightSlice, layout: WeightLayout, k: usize, n: usize, k0: usize, kc: usize, n0: usize, nb: usize, bpack: &mut [f32]) {
    if nb < NR {
        bpack[..kc * NR].fill(0.0);
    }
    match layout {
        WeightLayout::OutIn => {
            let mut row = [0f32; KC];
            for j in 0..nb {
                w.widen_into((n0 + j) * k + k0, &mut row[..kc]);
                for (kk, &v) in row[..kc].iter().enumerate() {
                    bpack[kk * NR + j] = v;
                }
            }
        }
        WeightLayout::InOut => {
            for kk in 0..kc {
                w.widen_into((k0 + kk) * n + n0, &mut bpack[kk * NR..kk * NR + nb]);
            }
        }
    }
}

fn micro_tile(isa: Isa, kc: usize, a: &[f32], b: &[f32]) -> [[f32; NR]; MR] {
    assert!(a.len() >= kc * MR && b.len() >= kc * NR, "micro-panel bounds");
    #[cfg(target_arch = "x86_64")]
    if isa.avx2() {
        // SAFETY: AVX2/FMA detected; panel bounds asserted above.
        return unsafe { avx2_tile(kc, a.as_ptr(), b.as_ptr()) };
    }
    let _ = isa;
    let mut c = [[0f32; NR]; MR];
    for kk in 0..kc {
        let bv = &b[kk * NR..kk * NR + NR];
        for (i, row) in c.iter_mut().enumerate() {
            let av = a[kk * MR + i];
            for (cv, &bj) in row.iter_mut().zip(bv) {
                *cv += av * bj;
            }
        }
    }
    c
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2_tile(kc: usize, a: *const f32, b: *const f32) -> [[f32; NR]; MR] {
    use std::arch::x86_64::*;
    let mut c = [[_mm256_setzero_ps(); 2]; MR];
    for kk in 0..kc {
        let b0 = _mm256_loadu_ps(b.add(kk * NR));
        let b1 = _mm256_loadu_ps(b.add(kk * NR + 8));
        let ap = a.add(kk * MR);
        for (i, ci) in c.iter_mut().enumerate() {
            let av = _mm256_broadcast_ss(&*ap.add(i));
            ci[0] = _mm256_fmadd_ps(av, b0, ci[0]);
            ci[1] = _mm256_fmadd_ps(av, b1, ci[1]);
        }
    }
    let mut out = [[0f32; NR]; MR];
    for (o, ci) in out.iter_mut().zip(c) {
        _mm256_storeu_ps(o.as_mut_ptr(), ci[0]);
        _mm256_storeu_ps(o.as_mut_ptr().add(8), ci[1]);
    }
    out
}
