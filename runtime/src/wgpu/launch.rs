//! Maps each op to its WGSL kernel: entry point, variant defines, bindings, parameter
//! words (the kernel's `struct Params`, in order) and workgroup count.

use super::{Wgpu, WgpuBuffer};
use crate::op::{Op, WeightLayout};
use crate::{DType, DeviceBuffer, Result, Tensor};

pub(crate) struct Kernel<'a> {
    pub file: &'static str,
    pub entry: &'static str,
    pub defines: Vec<(&'static str, &'static str)>,
    pub bindings: Vec<(u32, &'a WgpuBuffer)>,
    pub params_binding: u32,
    pub params: Vec<u32>,
}

fn weight_define(t: &Tensor<Wgpu>) -> (&'static str, &'static str) {
    match t.dtype() {
        DType::F16 => ("W_F16", ""),
        DType::BF16 => ("W_BF16", ""),
        _ => ("W_F32", ""),
    }
}

fn off(t: &Tensor<Wgpu>) -> u32 {
    t.offset() as u32
}

fn n(x: usize) -> u32 {
    x as u32
}

fn groups(threads: usize, per_group: usize) -> u32 {
    n(threads.div_ceil(per_group))
}

/// Whether an elementwise op writes exactly over its first operand.
fn in_place(out: &Tensor<Wgpu>, a: &Tensor<Wgpu>) -> bool {
    out.same_view(a)
}

pub(crate) fn supports(w: &Wgpu, op: &Op<'_, Wgpu>) -> bool {
    let max_binding = w.max_binding_bytes();
    let tensors: Vec<&Tensor<Wgpu>> = op.inputs().into_iter().map(|(_, t)| t).chain(op.outputs()).collect();
    if tensors.iter().any(|t| t.buffer().raw().size() > max_binding || t.offset() + t.numel() > u32::MAX as usize) {
        return false;
    }
    // A writable binding may not share its buffer with any other binding of the dispatch,
    // except the in-place variants of elementwise ops.
    let elementwise_first = match *op {
        Op::Add { a, b, out } => Some(if out.same_view(b) && !out.same_view(a) { b } else { a }),
        Op::SwiGlu { gate, .. } => Some(gate),
        Op::Guidance { cond, .. } => Some(cond),
        Op::SelectRows { a, .. } => Some(a),
        Op::Softmax { x, .. } => Some(x),
        _ => None,
    };
    for out in op.outputs() {
        for (_, input) in op.inputs() {
            if out.buffer().same_storage(input.buffer()) && !elementwise_first.is_some_and(|first| std::ptr::eq(first, input) && in_place(out, input)) {
                return false;
            }
        }
    }
    if let Op::KvAppend { k_cache, v_cache, .. } = op {
        if k_cache.buffer().same_storage(v_cache.buffer()) {
            return false;
        }
    }
    match op {
        Op::Attention { q, .. } => q.shape()[2] <= 256,
        _ => true,
    }
}

pub(crate) fn kernel<'a>(op: &'a Op<'_, Wgpu>) -> Result<(Kernel<'a>, u32)> {
    let k = |file, entry, defines, bindings, params_binding, params| Kernel { file, entry, defines, bindings, params_binding, params };
    Ok(match *op {
        Op::EmbedRows { table, ids, out } => {
            let (rows, cols) = (table.shape()[0], table.shape()[1]);
            let params = vec![n(ids.numel()), n(cols), 0, 0, off(table), off(ids), 0, off(out), n(rows), 0, 0, 0];
            let bindings = vec![(0, table.buffer()), (1, ids.buffer()), (3, out.buffer())];
            (k("embed", "embed_rows", vec![weight_define(table)], bindings, 4, params), groups(out.numel(), 64))
        }
        Op::EmbedCodebookSum { table, codes, mask, card, out } => {
            let (rows, cols) = (table.shape()[0], table.shape()[1]);
            let (frames, books) = (codes.shape()[0], codes.shape()[1]);
            let params = vec![n(frames), n(cols), n(books), n(card), off(table), off(codes), off(mask), off(out), n(rows), 0, 0, 0];
            let bindings = vec![(0, table.buffer()), (1, codes.buffer()), (2, mask.buffer()), (3, out.buffer())];
            (k("embed", "embed_codebook_sum", vec![weight_define(table)], bindings, 4, params), groups(out.numel(), 64))
        }
        Op::RmsNorm { x, weight, out, eps } => {
            let (rows, cols) = (x.rows(), x.dim_back(0));
            let params = vec![n(rows), n(cols), eps.to_bits(), off(weight), off(x), off(out), 0, 0];
            let bindings = vec![(0, weight.buffer()), (1, x.buffer()), (2, out.buffer())];
            (k("rms_norm", "rms_norm", vec![weight_define(weight)], bindings, 3, params), n(rows))
        }
        Op::MatMul { x, w, out, layout, accumulate } => {
            let (m, kk) = (x.shape()[0], x.shape()[1]);
            let nn = out.shape()[1];
            let params = vec![n(m), n(nn), n(kk), accumulate as u32, off(w), off(x), off(out), 0];
            let bindings = vec![(0, w.buffer()), (1, x.buffer()), (2, out.buffer())];
            match layout {
                WeightLayout::OutIn => (k("matmul", "matmul_out_in", vec![weight_define(w)], bindings, 3, params), n(m * nn)),
                WeightLayout::InOut => (k("matmul", "matmul_in_out", vec![weight_define(w)], bindings, 3, params), groups(m * nn, 64)),
            }
        }
        Op::Rope { x, positions, table, out } => {
            let (t, heads, d) = (x.shape()[0], x.shape()[1], x.shape()[2]);
            let params = vec![n(t), n(heads), n(d), n(table.shape()[0]), off(x), off(positions), off(table), off(out)];
            let bindings = vec![(0, x.buffer()), (1, positions.buffer()), (2, table.buffer()), (3, out.buffer())];
            (k("rope", "rope", vec![], bindings, 4, params), groups(t * heads * d / 2, 64))
        }
        Op::KvAppend { k: kt, v, positions, k_cache, v_cache } => {
            let (t, g, d) = (kt.shape()[0], kt.shape()[1], kt.shape()[2]);
            let params = vec![n(t), n(g), n(d), n(k_cache.shape()[1]), off(kt), off(v), off(positions), off(k_cache), off(v_cache), 0, 0, 0];
            let bindings = vec![(0, kt.buffer()), (1, v.buffer()), (2, positions.buffer()), (3, k_cache.buffer()), (4, v_cache.buffer())];
            (k("kv_append", "kv_append", vec![], bindings, 5, params), groups(t * g * d, 64))
        }
        Op::Attention { q, k_cache, v_cache, out, kv_len, causal } => {
            let (t, heads, d) = (q.shape()[0], q.shape()[1], q.shape()[2]);
            let (g, cap) = (k_cache.shape()[0], k_cache.shape()[1]);
            let scale = 1.0 / (d as f32).sqrt();
            let params = vec![n(t), n(heads), n(g), n(d), n(cap), n(kv_len), causal as u32, scale.to_bits(), off(q), off(k_cache), off(v_cache), off(out)];
            let bindings = vec![(0, q.buffer()), (1, k_cache.buffer()), (2, v_cache.buffer()), (3, out.buffer())];
            (k("attention", "attention", vec![], bindings, 4, params), n(t * heads))
        }
        Op::Add { a, b, out } => {
            // Addition commutes: an in-place add over `b` runs as `b + a`.
            let (a, b) = if out.same_view(b) && !out.same_view(a) { (b, a) } else { (a, b) };
            elementwise("add", a, b, None, out, 0.0)
        }
        Op::SwiGlu { gate, up, out } => elementwise("swiglu", gate, up, None, out, 0.0),
        Op::Guidance { cond, uncond, scale, out } => elementwise("guidance", cond, uncond, None, out, scale),
        Op::SelectRows { mask, a, b, out } => elementwise("select_rows", a, b, Some(mask), out, 0.0),
        Op::Softmax { x, out } => {
            let (rows, cols) = (x.rows(), x.dim_back(0));
            let params = vec![n(rows), n(cols), off(x), off(out)];
            if in_place(out, x) {
                (k("softmax", "softmax", vec![("INPLACE", "")], vec![(1, out.buffer())], 2, params), n(rows))
            } else {
                (k("softmax", "softmax", vec![], vec![(0, x.buffer()), (1, out.buffer())], 2, params), n(rows))
            }
        }
        Op::Argmax { x, out } => {
            let (rows, cols) = (x.rows(), x.dim_back(0));
            let params = vec![n(rows), n(cols), 0, 0, 0, 0, 0, 0, 0, off(x), off(out), 0];
            (k("sample", "argmax", vec![], vec![(0, x.buffer()), (1, out.buffer())], 2, params), n(rows))
        }
        Op::TopKSample { logits, out, params: s } => {
            let (rows, cols) = (logits.rows(), logits.dim_back(0));
            let top_k = n(s.top_k.min(u32::MAX as usize));
            let params = vec![
                n(rows),
                n(cols),
                top_k,
                n(s.forbid_below),
                s.temperature.to_bits(),
                s.seed as u32,
                (s.seed >> 32) as u32,
                s.counter as u32,
                (s.counter >> 32) as u32,
                off(logits),
                off(out),
                0,
            ];
            (k("sample", "top_k_sample", vec![], vec![(0, logits.buffer()), (1, out.buffer())], 2, params), n(rows))
        }
    })
}

fn elementwise<'a>(entry: &'static str, a: &'a Tensor<Wgpu>, b: &'a Tensor<Wgpu>, mask: Option<&'a Tensor<Wgpu>>, out: &'a Tensor<Wgpu>, scale: f32) -> (Kernel<'a>, u32) {
    let cols = a.dim_back(0).max(1);
    let params = vec![n(a.numel()), n(cols), scale.to_bits(), off(a), off(b), mask.map_or(0, off), off(out), 0];
    let mut bindings = Vec::new();
    let mut defines = Vec::new();
    if in_place(out, a) {
        defines.push(("INPLACE", ""));
        bindings.push((0, out.buffer()));
    } else {
        bindings.push((0, a.buffer()));
        bindings.push((3, out.buffer()));
    }
    bindings.push((1, b.buffer()));
    if let Some(m) = mask {
        bindings.push((2, m.buffer()));
    }
    (Kernel { file: "elementwise", entry, defines, bindings, params_binding: 4, params }, groups(a.numel(), 64))
}

