//! Shape, dtype and aliasing checks for every op (the single source of truth).

#[path = "op_check_audio.rs"]
mod audio;
#[path = "op_check_encode.rs"]
mod encode;

use crate::op::{Op, WeightLayout};
use crate::{Backend, DType, Error, Result, Tensor};

const FLOATS: &[DType] = &[DType::F32, DType::F16, DType::BF16];
/// Weights of the row-major (out-in) products may also be 8-bit or 4-bit blocks.
const PRODUCT_WEIGHTS: &[DType] = &[DType::F32, DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0];

pub(crate) fn check<B: Backend>(op: &Op<'_, B>) -> Result<()> {
    let name = op.name();
    let c = Checker { op: name };
    match *op {
        Op::EmbedRows { table, ids, out } => {
            c.dtype("table", table, FLOATS)?;
            c.dtype("ids", ids, &[DType::U32])?;
            c.dtype("out", out, &[DType::F32])?;
            let [_, cols] = c.rank2("table", table)?;
            let [n] = c.rank1("ids", ids)?;
            c.shape("out", out, &[n, cols])?;
        }
        Op::EmbedCodebookSum { table, codes, mask, card, out } => {
            c.dtype("table", table, FLOATS)?;
            c.dtype("codes", codes, &[DType::U32])?;
            c.dtype("mask", mask, &[DType::U32])?;
            c.dtype("out", out, &[DType::F32])?;
            let [rows, cols] = c.rank2("table", table)?;
            let [n, k] = c.rank2("codes", codes)?;
            c.shape("mask", mask, &[n, k])?;
            if card == 0 || k.checked_mul(card) != Some(rows) {
                return Err(Error::invalid(name, format!("table has {rows} rows, expected {k} codebooks x card {card}")));
            }
            c.shape("out", out, &[n, cols])?;
        }
        Op::RmsNorm { x, weight, out, eps } => {
            c.dtype("x", x, &[DType::F32])?;
            c.dtype("weight", weight, FLOATS)?;
            c.dtype("out", out, &[DType::F32])?;
            c.shape("weight", weight, &[x.dim_back(0)])?;
            c.shape("out", out, x.shape())?;
            if !(eps.is_finite() && eps >= 0.0) {
                return Err(Error::invalid(name, format!("eps must be finite and >= 0, got {eps}")));
            }
        }
        Op::MatMul { x, w, out, layout, .. } => {
            c.dtype("x", x, &[DType::F32])?;
            c.dtype("w", w, if layout == WeightLayout::OutIn { PRODUCT_WEIGHTS } else { FLOATS })?;
            c.dtype("out", out, &[DType::F32])?;
            let [m, k] = c.rank2("x", x)?;
            let [a, b] = c.rank2("w", w)?;
            let (wk, n) = match layout {
                WeightLayout::OutIn => (b, a),
                WeightLayout::InOut => (a, b),
            };
            if wk != k {
                return Err(Error::shape(name, format!("w ({layout:?}) input dim"), k, wk));
            }
            c.shape("out", out, &[m, n])?;
        }
        Op::GateUp { x, w_gate, w_up, out, .. } => {
            c.dtype("x", x, &[DType::F32])?;
            c.dtype("w_gate", w_gate, PRODUCT_WEIGHTS)?;
            c.dtype("w_up", w_up, &[w_gate.dtype()])?;
            c.dtype("out", out, &[DType::F32])?;
            let [m, k] = c.rank2("x", x)?;
            let [f, wk] = c.rank2("w_gate", w_gate)?;
            if wk != k {
                return Err(Error::shape(name, "w_gate input dim", k, wk));
            }
            c.shape("w_up", w_up, &[f, k])?;
            c.shape("out", out, &[m, f])?;
        }
        Op::Rope { x, positions, table, out } => {
            c.dtype("x", x, &[DType::F32])?;
            c.dtype("positions", positions, &[DType::U32])?;
            c.dtype("table", table, &[DType::F32])?;
            c.dtype("out", out, &[DType::F32])?;
            let [t, _, d] = c.rank3("x", x)?;
            if d % 2 != 0 {
                return Err(Error::invalid(name, format!("head size must be even, got {d}")));
            }
            c.shape("positions", positions, &[t])?;
            let [_, table_d] = c.rank2("table", table)?;
            if table_d != d {
                return Err(Error::shape(name, "table columns", d, table_d));
            }
            c.shape("out", out, x.shape())?;
        }
        Op::KvAppend { k, v, positions, k_cache, v_cache, rope } => {
            for (n, t) in [("k", k), ("v", v), ("k_cache", k_cache), ("v_cache", v_cache)] {
                c.dtype(n, t, &[DType::F32])?;
            }
            c.dtype("positions", positions, &[DType::U32])?;
            let [t, g, d] = c.rank3("k", k)?;
            c.shape("v", v, &[t, g, d])?;
            let [_, cap, _] = c.rank3("k_cache", k_cache)?;
            c.shape("k_cache", k_cache, &[g, cap, d])?;
            c.shape("v_cache", v_cache, &[g, cap, d])?;
            c.shape("positions", positions, &[t])?;
            if let Some(table) = rope {
                c.dtype("rope", table, &[DType::F32])?;
                let [_, table_d] = c.rank2("rope", table)?;
                if table_d != d || d % 2 != 0 {
                    return Err(Error::invalid(name, format!("rope table has {table_d} columns; head size {d} must match and be even")));
                }
            }
            if k_cache.overlaps(v_cache) {
                return Err(Error::Aliasing { op: name, what: "k_cache/v_cache".into() });
            }
        }
        Op::Attention { q, k_cache, v_cache, out, kv_len, causal } => {
            for (n, t) in [("q", q), ("k_cache", k_cache), ("v_cache", v_cache), ("out", out)] {
                c.dtype(n, t, &[DType::F32])?;
            }
            let [t, h, d] = c.rank3("q", q)?;
            let [g, cap, _] = c.rank3("k_cache", k_cache)?;
            c.shape("k_cache", k_cache, &[g, cap, d])?;
            c.shape("v_cache", v_cache, &[g, cap, d])?;
            c.shape("out", out, &[t, h, d])?;
            if g == 0 || h % g != 0 {
                return Err(Error::invalid(name, format!("{h} query heads are not a multiple of {g} kv heads")));
            }
            if kv_len == 0 || kv_len > cap || (causal && kv_len < t) {
                return Err(Error::invalid(name, format!("kv_len {kv_len} must be in 1..={cap} and >= {t} queries when causal")));
            }
        }
        Op::SwiGlu { gate: a, up: b, out } | Op::Add { a, b, out } | Op::Guidance { cond: a, uncond: b, out, .. } => {
            for (n, t) in [("a", a), ("b", b), ("out", out)] {
                c.dtype(n, t, &[DType::F32])?;
            }
            c.shape("b", b, a.shape())?;
            c.shape("out", out, a.shape())?;
            if let Op::Guidance { scale, .. } = op {
                if !scale.is_finite() {
                    return Err(Error::invalid(name, format!("scale must be finite, got {scale}")));
                }
            }
        }
        Op::SelectRows { mask, a, b, out } => {
            for (n, t) in [("a", a), ("b", b), ("out", out)] {
                c.dtype(n, t, &[DType::F32])?;
            }
            c.dtype("mask", mask, &[DType::U32])?;
            c.shape("b", b, a.shape())?;
            c.shape("out", out, a.shape())?;
            c.shape("mask", mask, &[a.rows()])?;
        }
        Op::Softmax { x, out } => {
            c.dtype("x", x, &[DType::F32])?;
            c.dtype("out", out, &[DType::F32])?;
            c.shape("out", out, x.shape())?;
            c.nonempty_rows("x", x)?;
        }
        Op::Argmax { x: logits, out } | Op::TopKSample { logits, out, .. } => {
            c.dtype("logits", logits, &[DType::F32])?;
            c.dtype("out", out, &[DType::U32])?;
            c.shape("out", out, &[logits.rows()])?;
            c.nonempty_rows("logits", logits)?;
            if let Op::TopKSample { params, .. } = op {
                if !(params.temperature.is_finite() && params.temperature > 0.0) {
                    return Err(Error::invalid(name, format!("temperature must be > 0, got {}", params.temperature)));
                }
                if params.forbid_below >= logits.dim_back(0) {
                    return Err(Error::invalid(name, format!("forbid_below {} leaves no id of {}", params.forbid_below, logits.dim_back(0))));
                }
            }
        }
        Op::Linear { .. }
        | Op::Unary { .. }
        | Op::LayerNormModulate { .. }
        | Op::Conv1d { .. }
        | Op::ConvTranspose1d { .. }
        | Op::EulerCfg { .. }
        | Op::Blend { .. } => audio::check(&c, op)?,
        Op::Conv2d { .. } | Op::GroupNorm { .. } | Op::Glu { .. } | Op::Film { .. } | Op::RvqEncode { .. } | Op::RelPosAttention { .. } => {
            encode::check(&c, op)?
        }
    }
    check_aliasing(op)
}

/// Outputs may not overlap inputs, except that elementwise ops may write in place.
fn check_aliasing<B: Backend>(op: &Op<'_, B>) -> Result<()> {
    let elementwise = matches!(op, Op::Add { .. } | Op::Guidance { .. } | Op::SwiGlu { .. } | Op::SelectRows { .. } | Op::Softmax { .. } | Op::Unary { .. } | Op::Blend { .. } | Op::Film { .. });
    for out in op.outputs() {
        for (what, input) in op.inputs() {
            if out.overlaps(input) && !(elementwise && out.same_view(input)) {
                return Err(Error::Aliasing { op: op.name(), what: what.into() });
            }
        }
    }
    Ok(())
}

struct Checker {
    op: &'static str,
}

impl Checker {
    fn dtype<B: Backend>(&self, what: &str, t: &Tensor<B>, allowed: &[DType]) -> Result<()> {
        if allowed.contains(&t.dtype()) {
            return Ok(());
        }
        let expected = allowed.iter().map(|d| d.name()).collect::<Vec<_>>().join(" or ");
        Err(Error::DType { op: self.op, what: what.into(), expected, got: t.dtype() })
    }

    fn shape<B: Backend>(&self, what: &str, t: &Tensor<B>, expected: &[usize]) -> Result<()> {
        if t.shape() == expected {
            Ok(())
        } else {
            Err(Error::shape(self.op, format!("{what} shape"), expected, t.shape()))
        }
    }

    fn rank<B: Backend, const R: usize>(&self, what: &str, t: &Tensor<B>) -> Result<[usize; R]> {
        <[usize; R]>::try_from(t.shape())
            .map_err(|_| Error::shape(self.op, format!("{what} rank"), R, t.shape()))
    }
    fn rank1<B: Backend>(&self, what: &str, t: &Tensor<B>) -> Result<[usize; 1]> {
        self.rank::<B, 1>(what, t)
    }
    fn rank2<B: Backend>(&self, what: &str, t: &Tensor<B>) -> Result<[usize; 2]> {
        self.rank::<B, 2>(what, t)
    }
    fn rank3<B: Backend>(&self, what: &str, t: &Tensor<B>) -> Result<[usize; 3]> {
        self.rank::<B, 3>(what, t)
    }

    fn nonempty_rows<B: Backend>(&self, what: &str, t: &Tensor<B>) -> Result<()> {
        if t.rank() == 0 || t.dim_back(0) == 0 {
            return Err(Error::invalid(self.op, format!("{what} rows must not be empty ({:?})", t.shape())));
        }
        Ok(())
    }
}
