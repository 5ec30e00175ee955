//! Elementwise ops. Each may write in place over one of its inputs, so inputs are
//! read through raw pointers rather than slices that would alias the output.

use rayon::prelude::*;

use super::view::f32s_mut;
use super::{vexp, Cpu, Isa};
use crate::op::UnaryFn;
use crate::{Result, Tensor};

const CHUNK: usize = 1 << 14;

/// Pointer to a tensor's f32 data, readable from worker threads.
#[derive(Clone, Copy)]
struct Src(*const f32);
// SAFETY: each task reads only the indices it also writes (or distinct tensors).
unsafe impl Send for Src {}
unsafe impl Sync for Src {}

impl Src {
    /// # Safety
    /// `i` must be inside the tensor the pointer came from.
    #[inline(always)]
    unsafe fn at(self, i: usize) -> f32 {
        *self.0.add(i)
    }
}

fn src(t: &Tensor<Cpu>) -> Src {
    // SAFETY: the view lies within the buffer (checked by Tensor::from_parts).
    Src(unsafe { t.buffer().base_ptr().add(t.byte_offset()) as *const f32 })
}

fn zip2(a: &Tensor<Cpu>, b: &Tensor<Cpu>, out: &Tensor<Cpu>, f: impl Fn(f32, f32) -> f32 + Sync) -> Result<()> {
    let (pa, pb) = (src(a), src(b));
    let out = f32s_mut(out)?;
    out.par_chunks_mut(CHUNK).enumerate().for_each(|(c, out)| {
        let base = c * CHUNK;
        for (i, o) in out.iter_mut().enumerate() {
            // SAFETY: base + i < numel of a and b (same shapes as out, validated); an
            // aliased input is read at this index before it is written.
            let (x, y) = unsafe { (pa.at(base + i), pb.at(base + i)) };
            *o = f(x, y);
        }
    });
    Ok(())
}

pub fn add(a: &Tensor<Cpu>, b: &Tensor<Cpu>, out: &Tensor<Cpu>) -> Result<()> {
    zip2(a, b, out, |x, y| x + y)
}

/// silu(g) · u with silu(g) = g / (1 + e^-g), as torch computes it.
#[inline(always)]
pub fn silu_mul(g: f32, u: f32) -> f32 {
    (g / (1.0 + (-g).exp())) * u
}

pub fn swiglu(gate: &Tensor<Cpu>, up: &Tensor<Cpu>, out: &Tensor<Cpu>) -> Result<()> {
    zip2(gate, up, out, silu_mul)
}

pub fn guidance(cond: &Tensor<Cpu>, uncond: &Tensor<Cpu>, scale: f32, out: &Tensor<Cpu>) -> Result<()> {
    zip2(cond, uncond, out, |c, u| u + scale * (c - u))
}

pub fn select_rows(mask: &[u32], a: &Tensor<Cpu>, b: &Tensor<Cpu>, out: &Tensor<Cpu>) -> Result<()> {
    let cols = a.dim_back(0);
    let (pa, pb) = (src(a), src(b));
    let out = f32s_mut(out)?;
    out.par_chunks_mut(cols.max(1)).zip(mask.par_iter()).enumerate().for_each(|(r, (out, &m))| {
        let p = if m != 0 { pa } else { pb };
        for (j, o) in out.iter_mut().enumerate() {
            // SAFETY: r·cols + j < numel (validated shapes); read before write.
            *o = unsafe { p.at(r * cols + j) };
        }
    });
    Ok(())
}

pub fn softmax(x: &Tensor<Cpu>, out: &Tensor<Cpu>) -> Result<()> {
    let cols = x.dim_back(0);
    let px = src(x);
    let out = f32s_mut(out)?;
    out.par_chunks_mut(cols).enumerate().for_each(|(r, out)| {
        for (j, o) in out.iter_mut().enumerate() {
            // SAFETY: as above.
            *o = unsafe { px.at(r * cols + j) };
        }
        let max = out.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0f32;
        for o in out.iter_mut() {
            *o = (*o - max).exp();
            sum += *o;
        }
        for o in out.iter_mut() {
            *o /= sum;
        }
    });
    Ok(())
}

/// f(x) for the codec's elementwise functions, in f32 as torch computes them.
#[inline(always)]
pub fn unary_fn(f: UnaryFn, x: f32) -> f32 {
    match f {
        UnaryFn::Silu => x / (1.0 + (-x).exp()),
        UnaryFn::GeluTanh => {
            // torch: 0.5·x·(1 + tanh(√2·(2/√π)·0.5 · (x + 0.044715·x³)))
            const BETA: f32 = std::f32::consts::SQRT_2 * std::f32::consts::FRAC_2_SQRT_PI * 0.5;
            let inner = BETA * (x + 0.044715 * x * x * x);
            0.5 * x * (1.0 + tanh_fast(inner))
        }
        UnaryFn::RoundToLevels(levels) => (levels * x).round_ties_even() / levels,
        UnaryFn::GeluErf => x * 0.5 * (1.0 + libm::erff(x * std::f32::consts::FRAC_1_SQRT_2)),
        UnaryFn::Relu => x.max(0.0),
    }
}

/// tanh through one exp (libm's tanhf is several times slower); absolute error ~1e-7,
/// which the GELU's 1 + tanh absorbs.
#[inline(always)]
fn tanh_fast(x: f32) -> f32 {
    if x.abs() > 15.0 {
        return x.signum();
    }
    let e = (2.0 * x).exp();
    (e - 1.0) / (e + 1.0)
}

pub fn unary(isa: Isa, x: &Tensor<Cpu>, out: &Tensor<Cpu>, f: UnaryFn) -> Result<()> {
    if !vexp::vector(isa, f) {
        return zip2(x, x, out, |v, _| unary_fn(f, v));
    }
    // The vector activations, a chunk at a time in place (after a copy when the output is
    // another tensor).
    let in_place = x.same_view(out);
    let px = src(x);
    let out = f32s_mut(out)?;
    out.par_chunks_mut(CHUNK).enumerate().for_each(|(c, out)| {
        if !in_place {
            let base = c * CHUNK;
            for (i, o) in out.iter_mut().enumerate() {
                // SAFETY: base + i < numel of x (same shape as out, validated); x does not
                // overlap out (validated: only an identical view may).
                *o = unsafe { px.at(base + i) };
            }
        }
        vexp::act_row(isa, Some(f), None, out);
    });
    Ok(())
}

pub fn blend(a: &Tensor<Cpu>, b: &Tensor<Cpu>, wa: f32, wb: f32, out: &Tensor<Cpu>) -> Result<()> {
    zip2(a, b, out, |x, y| wa * x + wb * y)
}

/// x += dt · (u + scale · (c − u)), the guided velocity formed first as the reference does.
pub fn euler_cfg(x: &Tensor<Cpu>, cond: &Tensor<Cpu>, uncond: &Tensor<Cpu>, scale: f32, dt: f32) -> Result<()> {
    let (pc, pu) = (src(cond), src(uncond));
    let out = f32s_mut(x)?;
    out.par_chunks_mut(CHUNK).enumerate().for_each(|(c, out)| {
        let base = c * CHUNK;
        for (i, o) in out.iter_mut().enumerate() {
            // SAFETY: cond/uncond have x's shape and do not overlap it (validated).
            let (cv, uv) = unsafe { (pc.at(base + i), pu.at(base + i)) };
            let v = uv + scale * (cv - uv);
            *o += dt * v;
        }
    });
    Ok(())
}
