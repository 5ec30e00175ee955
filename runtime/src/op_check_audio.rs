//! Checks for the codec's ops (linear with epilogues, norms, convolutions, sampler updates).

use super::{Checker, FLOATS, PRODUCT_WEIGHTS};
use crate::op::{Epilogue, Op, UnaryFn};
use crate::{Backend, DType, Error, Result, Tensor};

pub(super) fn check<B: Backend>(c: &Checker, op: &Op<'_, B>) -> Result<()> {
    let name = c.op;
    match *op {
        Op::Linear { x, w, bias, out, epilogue } => {
            c.dtype("x", x, &[DType::F32])?;
            c.dtype("w", w, PRODUCT_WEIGHTS)?;
            c.dtype("out", out, &[DType::F32])?;
            let [m, k] = c.rank2("x", x)?;
            let [n, wk] = c.rank2("w", w)?;
            if wk != k {
                return Err(Error::shape(name, "w input dim", k, wk));
            }
            check_bias(c, bias, n)?;
            c.shape("out", out, &[m, n])?;
            match epilogue {
                Epilogue::GatedAdd { gate } => {
                    c.dtype("gate", gate, &[DType::F32])?;
                    c.shape("gate", gate, &[n])?;
                }
                Epilogue::Act(f) => check_unary(name, f)?,
                Epilogue::Store => {}
            }
        }
        Op::Unary { x, out, f } => {
            c.dtype("x", x, &[DType::F32])?;
            c.dtype("out", out, &[DType::F32])?;
            c.shape("out", out, x.shape())?;
            check_unary(name, f)?;
        }
        Op::LayerNormModulate { x, shift, scale, out, eps } => {
            for (n, t) in [("x", x), ("shift", shift), ("scale", scale), ("out", out)] {
                c.dtype(n, t, &[DType::F32])?;
            }
            let [_, cols] = c.rank2("x", x)?;
            c.shape("shift", shift, &[cols])?;
            c.shape("scale", scale, &[cols])?;
            c.shape("out", out, x.shape())?;
            c.nonempty_rows("x", x)?;
            if !(eps.is_finite() && eps >= 0.0) {
                return Err(Error::invalid(name, format!("eps must be finite and >= 0, got {eps}")));
            }
        }
        Op::Conv1d { x, w, bias, out, conv } => {
            if conv.groups == 0 || conv.stride == 0 || conv.dilation == 0 || conv.upsample == 0 {
                return Err(Error::invalid(
                    name,
                    format!("groups {}, stride {}, dilation {} and upsample {} must be >= 1", conv.groups, conv.stride, conv.dilation, conv.upsample),
                ));
            }
            let [b, l_in, _, c_out, k] = conv_shapes(c, x, w, bias, out, conv.groups)?;
            // Taps outside the (upsampled) input read zeros, so any output length is defined.
            let _ = (l_in, k);
            let l_out = out.shape()[1];
            c.shape("out", out, &[b, l_out, c_out])?;
            if let Some(s) = conv.prelu {
                if !s.get().is_finite() {
                    return Err(Error::invalid(name, format!("prelu slope must be finite, got {}", s.get())));
                }
            }
        }
        Op::ConvTranspose1d { x, w, bias, out, stride, padding } => {
            let [_, l_in, _, _, k] = conv_shapes(c, x, w, bias, out, 1)?;
            if stride == 0 {
                return Err(Error::invalid(name, "stride must be >= 1"));
            }
            let full = (l_in.saturating_sub(1) * stride + k).checked_sub(2 * padding);
            let l_out = out.shape()[1];
            if l_in == 0 || full.is_none_or(|f| l_out > f) {
                return Err(Error::invalid(name, format!("output length {l_out} exceeds (L_in − 1)·stride − 2·padding + K for L_in {l_in}, stride {stride}, padding {padding}, K {k}")));
            }
        }
        Op::EulerCfg { x, cond, uncond, scale, dt } => {
            for (n, t) in [("x", x), ("cond", cond), ("uncond", uncond)] {
                c.dtype(n, t, &[DType::F32])?;
            }
            c.shape("cond", cond, x.shape())?;
            c.shape("uncond", uncond, x.shape())?;
            if !(scale.is_finite() && dt.is_finite()) {
                return Err(Error::invalid(name, format!("scale {scale} and dt {dt} must be finite")));
            }
        }
        Op::Blend { a, b, wa, wb, out } => {
            for (n, t) in [("a", a), ("b", b), ("out", out)] {
                c.dtype(n, t, &[DType::F32])?;
            }
            c.shape("b", b, a.shape())?;
            c.shape("out", out, a.shape())?;
            if !(wa.is_finite() && wb.is_finite()) {
                return Err(Error::invalid(name, format!("weights {wa} and {wb} must be finite")));
            }
        }
        _ => unreachable!("op_check dispatches only codec ops here"),
    }
    Ok(())
}

pub(super) fn check_unary(name: &'static str, f: UnaryFn) -> Result<()> {
    match f {
        UnaryFn::RoundToLevels(l) if !(l.is_finite() && l > 0.0) => Err(Error::invalid(name, format!("levels must be > 0, got {l}"))),
        _ => Ok(()),
    }
}

pub(super) fn check_bias<B: Backend>(c: &Checker, bias: Option<&Tensor<B>>, n: usize) -> Result<()> {
    if let Some(b) = bias {
        c.dtype("bias", b, FLOATS)?;
        c.shape("bias", b, &[n])?;
    }
    Ok(())
}

/// Shared rank/dtype checks of the two convolutions: [B, L_in, C_in, C_out, K].
fn conv_shapes<B: Backend>(c: &Checker, x: &Tensor<B>, w: &Tensor<B>, bias: Option<&Tensor<B>>, out: &Tensor<B>, groups: usize) -> Result<[usize; 5]> {
    c.dtype("x", x, &[DType::F32])?;
    c.dtype("w", w, FLOATS)?;
    c.dtype("out", out, &[DType::F32])?;
    let [b, l_in, c_in] = c.rank3("x", x)?;
    let [c_out, k, wc_in] = c.rank3("w", w)?;
    if c_in % groups != 0 || c_out % groups != 0 {
        return Err(Error::invalid(c.op, format!("{groups} groups must divide C_in {c_in} and C_out {c_out}")));
    }
    if wc_in != c_in / groups {
        return Err(Error::shape(c.op, "w input channels per group", c_in / groups, wc_in));
    }
    if k == 0 {
        return Err(Error::invalid(c.op, "kernel size must be >= 1"));
    }
    check_bias(c, bias, c_out)?;
    let [ob, _, oc] = c.rank3("out", out)?;
    if ob != b || oc != c_out {
        return Err(Error::shape(c.op, "out batch/channels", [b, c_out], [ob, oc]));
    }
    Ok([b, l_in, c_in, c_out, k])
}
