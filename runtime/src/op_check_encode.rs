//! Checks for the codec encoder's ops (2-D convolution, group norm, GLU, FiLM, RVQ search,
//! relative-position attention).

use super::audio::check_bias;
use super::{Checker, FLOATS};
use crate::op::Op;
use crate::{Backend, DType, Error, Result};

pub(super) fn check<B: Backend>(c: &Checker, op: &Op<'_, B>) -> Result<()> {
    let name = c.op;
    match *op {
        Op::Conv2d { x, w, bias, out, conv } => {
            c.dtype("x", x, &[DType::F32])?;
            c.dtype("w", w, FLOATS)?;
            c.dtype("out", out, &[DType::F32])?;
            let [b, h, wd, c_in] = c.rank::<B, 4>("x", x)?;
            let [c_out, kh, kw, wc_in] = c.rank::<B, 4>("w", w)?;
            if wc_in != c_in {
                return Err(Error::shape(name, "w input channels", c_in, wc_in));
            }
            if kh == 0 || kw == 0 || conv.stride.contains(&0) {
                return Err(Error::invalid(name, format!("kernel {kh}x{kw} and stride {:?} must be >= 1", conv.stride)));
            }
            check_bias(c, bias, c_out)?;
            let [ob, oh, ow, oc] = c.rank::<B, 4>("out", out)?;
            if ob != b || oc != c_out {
                return Err(Error::shape(name, "out batch/channels", [b, c_out], [ob, oc]));
            }
            // Each output position's window must start inside the padded input.
            let fits = |o: usize, n: usize, s: usize, p: usize| o == 0 || (o - 1) * s < n + 2 * p;
            if !fits(oh, h, conv.stride[0], conv.pad[0]) || !fits(ow, wd, conv.stride[1], conv.pad[1]) {
                return Err(Error::invalid(name, format!("output {oh}x{ow} does not fit input {h}x{wd} with stride {:?} and padding {:?}", conv.stride, conv.pad)));
            }
        }
        Op::GroupNorm { x, weight, bias, out, groups, eps } => {
            c.dtype("x", x, &[DType::F32])?;
            c.dtype("out", out, &[DType::F32])?;
            c.dtype("weight", weight, FLOATS)?;
            c.dtype("bias", bias, FLOATS)?;
            let [_, t, ch] = c.rank3("x", x)?;
            c.shape("weight", weight, &[ch])?;
            c.shape("bias", bias, &[ch])?;
            c.shape("out", out, x.shape())?;
            if groups == 0 || ch % groups != 0 || t == 0 {
                return Err(Error::invalid(name, format!("{groups} groups must divide {ch} channels over {t} >= 1 frames")));
            }
            if !(eps.is_finite() && eps >= 0.0) {
                return Err(Error::invalid(name, format!("eps must be finite and >= 0, got {eps}")));
            }
        }
        Op::Glu { x, out } => {
            c.dtype("x", x, &[DType::F32])?;
            c.dtype("out", out, &[DType::F32])?;
            let [r, f2] = c.rank2("x", x)?;
            if f2 % 2 != 0 {
                return Err(Error::invalid(name, format!("x has {f2} columns; expected an even count")));
            }
            c.shape("out", out, &[r, f2 / 2])?;
        }
        Op::Film { x, p, out, gamma_scale } => {
            for (n, t) in [("x", x), ("p", p), ("out", out)] {
                c.dtype(n, t, &[DType::F32])?;
            }
            let [r, ch] = c.rank2("x", x)?;
            c.shape("p", p, &[r, 2 * ch])?;
            c.shape("out", out, &[r, ch])?;
            if !gamma_scale.is_finite() {
                return Err(Error::invalid(name, format!("gamma_scale must be finite, got {gamma_scale}")));
            }
        }
        Op::RvqEncode { x, codebooks, codes, quantized } => {
            c.dtype("x", x, &[DType::F32])?;
            c.dtype("codebooks", codebooks, FLOATS)?;
            c.dtype("codes", codes, &[DType::U32])?;
            c.dtype("quantized", quantized, &[DType::F32])?;
            let [n, d] = c.rank2("x", x)?;
            let [levels, k, cd] = c.rank3("codebooks", codebooks)?;
            if cd != d {
                return Err(Error::shape(name, "codebook dim", d, cd));
            }
            if k == 0 || levels == 0 {
                return Err(Error::invalid(name, format!("codebooks must be non-empty, got {levels} levels of {k} codes")));
            }
            c.shape("codes", codes, &[n, levels])?;
            c.shape("quantized", quantized, &[n, d])?;
            if codes.overlaps(quantized) {
                return Err(Error::Aliasing { op: name, what: "codes/quantized".into() });
            }
        }
        Op::RelPosAttention { q, k, v, gate, gate_const, rel, out } => {
            for (n, t) in [("q", q), ("k", k), ("v", v), ("gate", gate), ("gate_const", gate_const), ("rel", rel), ("out", out)] {
                c.dtype(n, t, &[DType::F32])?;
            }
            let [t, h, d] = c.rank3("q", q)?;
            if t == 0 || h == 0 || d == 0 {
                return Err(Error::invalid(name, format!("empty q {:?}", q.shape())));
            }
            c.shape("k", k, &[t, h, d])?;
            c.shape("v", v, &[t, h, d])?;
            c.shape("gate", gate, &[t, h, 8])?;
            c.shape("gate_const", gate_const, &[h])?;
            c.shape("rel", rel, &[h, 2 * t - 1])?;
            c.shape("out", out, &[t, h, d])?;
        }
        _ => unreachable!("op_check dispatches only encoder ops here"),
    }
    Ok(())
}
