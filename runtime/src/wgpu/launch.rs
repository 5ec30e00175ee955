//! Maps each op to its WGSL kernel: entry point, variant defines, bindings, parameter
//! words (the kernel's `struct Params`, in order) and workgroup count.

use super::{Wgpu, WgpuBuffer};
use crate::op::{Op, RowOrder, WeightLayout};
use crate::{DType, DeviceBuffer, Result, Tensor};

pub(crate) struct Kernel<'a> {
    pub file: &'static str,
    pub entry: &'static str,
    pub defines: Vec<(&'static str, &'static str)>,
    /// (binding, buffer, byte range); no range binds the whole buffer.
    pub bindings: Vec<super::bind_cache::Binding<'a>>,
    pub params_binding: u32,
    pub params: Vec<u32>,
}

/// A slice of a weight's rows bound as its own storage range.
pub(crate) struct RowRange {
    pub begin: usize,
    pub end: usize,
    /// Byte range to bind; `None` binds the whole buffer.
    pub bytes: Option<(u64, u64)>,
    /// Element offset of row `begin` within the bound range.
    pub elem_off: u32,
}

/// Splits a weight [rows, row_elems] into row ranges that each fit one storage binding
/// (offsets aligned as the device requires). One range when the buffer fits whole.
pub(crate) fn row_ranges(w: &Wgpu, t: &Tensor<Wgpu>, rows: usize, row_elems: usize) -> Vec<RowRange> {
    let max = w.max_binding_bytes();
    if t.buffer().raw().size() <= max {
        return vec![RowRange { begin: 0, end: rows, bytes: None, elem_off: off(t) }];
    }
    let dtype = t.dtype();
    // A unit is an element (a block of 32 for Q8_0 and Q4_0): ranges start on whole units.
    let (unit, unit_elems) = (dtype.size_bytes() as u64, dtype.block() as u64);
    let align = w.storage_align();
    let row_bytes = dtype.bytes(row_elems) as u64;
    // Up to `unit` aligned steps back from a range's start find one a whole number of units
    // before it.
    let slack = if unit_elems > 1 { align * unit } else { align };
    let per = ((max - slack.min(max / 2)) / row_bytes.max(1)).max(1) as usize;
    let buf = t.buffer().raw().size();
    (0..rows)
        .step_by(per)
        .map(|begin| {
            let end = (begin + per).min(rows);
            let start = t.byte_offset() as u64 + begin as u64 * row_bytes;
            let mut aligned = start / align * align;
            while !(start - aligned).is_multiple_of(unit) && aligned >= align {
                aligned -= align;
            }
            let stop = t.byte_offset() as u64 + end as u64 * row_bytes;
            let size = ((stop - aligned).div_ceil(4) * 4).min(buf - aligned);
            RowRange { begin, end, bytes: Some((aligned, size)), elem_off: ((start - aligned) / unit * unit_elems) as u32 }
        })
        .collect()
}

/// Whether every row range of a weight fits a binding (a single row must).
fn weight_fits(w: &Wgpu, t: &Tensor<Wgpu>, row_elems: usize) -> bool {
    t.dtype().bytes(row_elems) as u64 + w.storage_align() * t.dtype().size_bytes() as u64 <= w.max_binding_bytes()
}

pub(crate) fn weight_define(t: &Tensor<Wgpu>) -> (&'static str, &'static str) {
    match t.dtype() {
        DType::F16 => ("W_F16", ""),
        DType::BF16 => ("W_BF16", ""),
        DType::Q8_0 => ("W_Q8", ""),
        DType::Q4_0 => ("W_Q4", ""),
        _ => ("W_F32", ""),
    }
}

/// Defines of a GEMV reading `wt` from the element offsets `w_offsets` with rows of `k`:
/// 16-byte vector loads (W_VEC) when rows and offsets allow, native f16 loads where the
/// device has SHADER_F16.
fn gemv_defines(w: &Wgpu, wt: &Tensor<Wgpu>, w_offsets: &[usize], k: usize, x: &Tensor<Wgpu>) -> Vec<(&'static str, &'static str)> {
    let mut defines = vec![weight_define(wt)];
    if k.is_multiple_of(8) && w_offsets.iter().all(|o| o.is_multiple_of(8)) && x.offset().is_multiple_of(4) {
        defines.push(("W_VEC", ""));
        if wt.dtype() == DType::F16 && w.has_shader_f16() {
            defines.push(("F16_NATIVE", ""));
        }
    }
    defines
}

/// The GEMV `out (+)= x . wt^T` over binding-sized ranges of output rows, `rows` output
/// rows per workgroup.
pub(crate) fn gemv_matmul_kernels<'a>(w: &Wgpu, x: &'a Tensor<Wgpu>, wt: &'a Tensor<Wgpu>, out: &'a Tensor<Wgpu>, accumulate: bool, rows: usize) -> Vec<(Kernel<'a>, u32)> {
    let (m, kk, nn) = (x.shape()[0], x.shape()[1], out.shape()[1]);
    row_ranges(w, wt, nn, kk)
        .into_iter()
        .map(|r| {
            let outputs = r.end - r.begin;
            let params = vec![n(m), n(outputs), n(kk), accumulate as u32, r.elem_off, off(x), off(out) + n(r.begin), n(nn), n(kk), 0, 0, 0];
            let mut defines = gemv_defines(w, wt, &[r.elem_off as usize], kk, x);
            if w.has_subgroups() {
                defines.push(("SUBGROUPS", ""));
            }
            defines.extend(super::tune::rows_defines(rows));
            let bindings = vec![(0, wt.buffer(), r.bytes), (1, x.buffer(), None), (2, out.buffer(), None)];
            let kernel = Kernel { file: "matmul", entry: "matmul_out_in", defines, bindings, params_binding: 3, params };
            (kernel, groups(m * outputs, rows))
        })
        .collect()
}

/// The gated MLP input `silu(x . w_gate^T) * (x . w_up^T)`, `rows` outputs per workgroup.
pub(crate) fn gate_up_kernel<'a>(w: &Wgpu, x: &'a Tensor<Wgpu>, w_gate: &'a Tensor<Wgpu>, w_up: &'a Tensor<Wgpu>, out: &'a Tensor<Wgpu>, rows: usize) -> (Kernel<'a>, u32) {
    let (m, kk) = (x.shape()[0], x.shape()[1]);
    let f = out.shape()[1];
    let params = vec![n(m), n(f), n(kk), off(w_up), off(w_gate), off(x), off(out), 0];
    let bindings = vec![(0, w_gate.buffer(), None), (4, w_up.buffer(), None), (1, x.buffer(), None), (2, out.buffer(), None)];
    let mut defines = gemv_defines(w, w_gate, &[w_gate.offset(), w_up.offset()], kk, x);
    defines.extend(super::tune::rows_defines(rows));
    (Kernel { file: "gate_up", entry: "gate_up", defines, bindings, params_binding: 3, params }, groups(m * f, rows))
}

pub(crate) fn off(t: &Tensor<Wgpu>) -> u32 {
    t.offset() as u32
}

pub(crate) fn n(x: usize) -> u32 {
    x as u32
}

pub(crate) fn groups(threads: usize, per_group: usize) -> u32 {
    n(threads.div_ceil(per_group))
}

/// Whether an elementwise op writes exactly over its first operand.
pub(crate) fn in_place(out: &Tensor<Wgpu>, a: &Tensor<Wgpu>) -> bool {
    out.same_view(a)
}

pub(crate) fn supports(w: &Wgpu, op: &Op<'_, Wgpu>) -> bool {
    // 8-bit and 4-bit weights: the out-in products and linears (the tiled GEMM reads a bias
    // in its own float dtype).
    let q8 = op.inputs().into_iter().any(|(_, t)| t.dtype().is_quantized());
    if q8 && !matches!(*op, Op::MatMul { layout: WeightLayout::OutIn, .. } | Op::GateUp { .. } | Op::Linear { .. }) {
        return false;
    }
    let max_binding = w.max_binding_bytes();
    // Weights larger than a binding are split by rows; everything else binds whole.
    let (split, split_row) = match *op {
        Op::MatMul { w: wt, layout: WeightLayout::OutIn, .. } => (Some(wt), wt.shape()[1]),
        Op::MatMul { w: wt, layout: WeightLayout::InOut, .. } => (Some(wt), wt.shape()[1]),
        Op::EmbedRows { table, .. } | Op::EmbedCodebookSum { table, .. } => (Some(table), table.shape()[1]),
        _ => (None, 0),
    };
    if split.is_some_and(|t| !weight_fits(w, t, split_row)) {
        return false;
    }
    let tensors: Vec<&Tensor<Wgpu>> = op.inputs().into_iter().map(|(_, t)| t).chain(op.outputs()).collect();
    let too_big = |t: &&Tensor<Wgpu>| t.buffer().raw().size() > max_binding && !split.is_some_and(|s| std::ptr::eq(s, *t));
    if tensors.iter().any(too_big) || tensors.iter().any(|t| t.offset() + t.numel() > u32::MAX as usize) {
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
        Op::Unary { x, .. } => Some(x),
        Op::Blend { a, b, out, .. } => Some(if out.same_view(b) && !out.same_view(a) { b } else { a }),
        Op::Film { x, .. } => Some(x),
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
        Op::RelPosAttention { q, .. } => q.shape()[2] <= super::launch_encode::MAX_REL_POS_HEAD,
        Op::RvqEncode { x, .. } => x.shape()[1] <= super::launch_encode::MAX_RVQ_DIM,
        // The tiled GEMM (linears) reads the bias in its own dtype; elsewhere it is bound as
        // a second weight, so it must share the weight's dtype.
        Op::Linear { bias: Some(bias), .. } => bias.dtype().is_float(),
        Op::Conv1d { w: wt, bias: Some(bias), .. }
        | Op::ConvTranspose1d { w: wt, bias: Some(bias), .. }
        | Op::Conv2d { w: wt, bias: Some(bias), .. }
        | Op::GroupNorm { weight: wt, bias, .. } => bias.dtype() == wt.dtype(),
        _ => true,
    }
}

/// Keys per split of split-KV decode attention, and the most splits per (query, head).
const SPLIT_SPAN: usize = 256;
const MAX_SPLITS: usize = 64;
/// Attention with fewer workgroups than this splits its keys.
const SPLIT_BELOW_BLOCKS: usize = 64;

/// The workgroup tile of `attention.wgsl`: query rows of one KV group per workgroup and
/// keys per shared-memory pass (sized to its Q_TILE, KV_TILE (rows padded to d + 1) and
/// S_TILE arrays).
struct AttentionTile {
    rows: usize,
    keys: usize,
}

impl AttentionTile {
    fn new(group_rows: usize, d: usize) -> Self {
        let rows = group_rows.clamp(1, (2048 / d).min(16));
        AttentionTile { rows, keys: (1536 / (d + 1)).min(256 / rows).max(1) }
    }
}

/// The dispatches of one op (several when a weight is split into binding-sized ranges).
pub(crate) fn kernels<'a>(w: &'a Wgpu, op: &'a Op<'_, Wgpu>) -> Result<Vec<(Kernel<'a>, u32)>> {
    let k = |file, entry, defines, bindings: Vec<(u32, &'a WgpuBuffer)>, params_binding, params| Kernel {
        file,
        entry,
        defines,
        bindings: bindings.into_iter().map(|(i, b)| (i, b, None)).collect(),
        params_binding,
        params,
    };
    Ok(match *op {
        Op::Linear { .. }
        | Op::Unary { .. }
        | Op::LayerNormModulate { .. }
        | Op::Conv1d { .. }
        | Op::ConvTranspose1d { .. }
        | Op::EulerCfg { .. }
        | Op::Blend { .. }
        | Op::Conv2d { .. }
        | Op::Glu { .. }
        | Op::Film { .. } => super::launch_codec::kernels(w, op)?,
        Op::GroupNorm { .. } | Op::RvqEncode { .. } | Op::RelPosAttention { .. } => vec![super::launch_encode::kernel(op)],
        Op::EmbedRows { table, ids, out } => {
            let (rows, cols) = (table.shape()[0], table.shape()[1]);
            row_ranges(w, table, rows, cols)
                .into_iter()
                .map(|r| {
                    let params = vec![n(ids.numel()), n(cols), 0, 0, r.elem_off, off(ids), 0, off(out), n(r.begin), n(r.end), n(rows), 0];
                    let bindings = vec![(0, table.buffer(), r.bytes), (1, ids.buffer(), None), (3, out.buffer(), None)];
                    let kernel = Kernel { file: "embed", entry: "embed_rows", defines: vec![weight_define(table)], bindings, params_binding: 4, params };
                    (kernel, groups(out.numel(), 64))
                })
                .collect()
        }
        Op::EmbedCodebookSum { table, codes, mask, card, out } => {
            let (rows, cols) = (table.shape()[0], table.shape()[1]);
            let (frames, books) = (codes.shape()[0], codes.shape()[1]);
            row_ranges(w, table, rows, cols)
                .into_iter()
                .map(|r| {
                    let params = vec![n(frames), n(cols), n(books), n(card), r.elem_off, off(codes), off(mask), off(out), n(r.begin), n(r.end), n(rows), 0];
                    let bindings = vec![(0, table.buffer(), r.bytes), (1, codes.buffer(), None), (2, mask.buffer(), None), (3, out.buffer(), None)];
                    let kernel = Kernel { file: "embed", entry: "embed_codebook_sum", defines: vec![weight_define(table)], bindings, params_binding: 4, params };
                    (kernel, groups(out.numel(), 64))
                })
                .collect()
        }
        Op::RmsNorm { x, weight, out, eps } => {
            let (rows, cols) = (x.rows(), x.dim_back(0));
            let params = vec![n(rows), n(cols), eps.to_bits(), off(weight), off(x), off(out), 0, 0];
            let bindings = vec![(0, weight.buffer()), (1, x.buffer()), (2, out.buffer())];
            vec![(k("rms_norm", "rms_norm", vec![weight_define(weight)], bindings, 3, params), n(rows))]
        }
        Op::MatMul { x, w: wt, out, layout, accumulate, rows: order } => {
            let (m, kk) = (x.shape()[0], x.shape()[1]);
            let nn = out.shape()[1];
            let bind = |r: &RowRange| vec![(0, wt.buffer(), r.bytes), (1, x.buffer(), None), (2, out.buffer(), None)];
            // Many rows against a weight bound whole: the register-tiled GEMM.
            // (Row-invariant products stay on the GEMV, which computes each row alone.)
            if order == RowOrder::Free && layout == WeightLayout::OutIn && m >= super::launch_codec::TILED_MIN_ROWS && wt.buffer().raw().size() <= w.max_binding_bytes() {
                return Ok(vec![super::launch_codec::tiled_matmul(w, x, wt, out, accumulate)?]);
            }
            match layout {
                // Ranges of output rows (rows per workgroup tuned per device).
                WeightLayout::OutIn => {
                    let class = super::tune::matmul_class(kk);
                    let build = |rows: usize| gemv_matmul_kernels(w, x, wt, out, accumulate, rows);
                    if !accumulate {
                        w.tune_gemv_on_first_use(class, &build, wt.size_bytes())?;
                    }
                    build(w.gemv_rows(class))
                }
                // Ranges of the inner dimension, accumulated after the first.
                WeightLayout::InOut => row_ranges(w, wt, kk, nn)
                    .into_iter()
                    .map(|r| {
                        let acc = accumulate || r.begin > 0;
                        let params = vec![n(m), n(nn), n(r.end - r.begin), acc as u32, r.elem_off, off(x) + n(r.begin), off(out), n(nn), n(kk), 0, 0, 0];
                        let kernel = Kernel { file: "matmul", entry: "matmul_in_out", defines: vec![weight_define(wt)], bindings: bind(&r), params_binding: 3, params };
                        (kernel, groups(m * nn, 64))
                    })
                    .collect(),
            }
        }
        Op::GateUp { x, w_gate, w_up, out, .. } => {
            let build = |rows: usize| vec![gate_up_kernel(w, x, w_gate, w_up, out, rows)];
            let class = super::tune::GATE_UP_CLASS;
            w.tune_gemv_on_first_use(class, &build, 2 * w_gate.size_bytes())?;
            build(w.gemv_rows(class))
        }
        Op::Rope { x, positions, table, out } => {
            let (t, heads, d) = (x.shape()[0], x.shape()[1], x.shape()[2]);
            let params = vec![n(t), n(heads), n(d), n(table.shape()[0]), off(x), off(positions), off(table), off(out)];
            let bindings = vec![(0, x.buffer()), (1, positions.buffer()), (2, table.buffer()), (3, out.buffer())];
            vec![(k("rope", "rope", vec![], bindings, 4, params), groups(t * heads * d / 2, 64))]
        }
        Op::KvAppend { k: kt, v, positions, k_cache, v_cache, rope } => {
            let (t, g, d) = (kt.shape()[0], kt.shape()[1], kt.shape()[2]);
            let table_rows = rope.map_or(0, |r| r.shape()[0]);
            let params = vec![n(t), n(g), n(d), n(k_cache.shape()[1]), off(kt), off(v), off(positions), off(k_cache), off(v_cache), rope.map_or(0, off), n(table_rows), 0];
            let mut bindings = vec![(0, kt.buffer()), (1, v.buffer()), (2, positions.buffer()), (3, k_cache.buffer()), (4, v_cache.buffer())];
            let mut defines = vec![];
            if let Some(r) = rope {
                bindings.push((6, r.buffer()));
                defines.push(("ROPE", ""));
            }
            vec![(k("kv_append", "kv_append", defines, bindings, 5, params), groups(t * g * d, 64))]
        }
        Op::Attention { q, k_cache, v_cache, out, kv_len, causal } => {
            let (t, heads, d) = (q.shape()[0], q.shape()[1], q.shape()[2]);
            let (g, cap) = (k_cache.shape()[0], k_cache.shape()[1]);
            let scale = 1.0 / (d as f32).sqrt();
            let tile = AttentionTile::new(t * (heads / g), d);
            let blocks = g * (t * (heads / g)).div_ceil(tile.rows);
            let mut params = vec![n(t), n(heads), n(g), n(d), n(cap), n(kv_len), causal as u32, scale.to_bits(), off(q), off(k_cache), off(v_cache), off(out)];
            // Few workgroups over a long cache: split the keys (flash-decoding), then combine.
            let splits = kv_len.div_ceil(SPLIT_SPAN).min(MAX_SPLITS);
            if blocks < SPLIT_BELOW_BLOCKS && kv_len >= 2 * SPLIT_SPAN && t * heads * splits * (d + 2) * 4 <= super::SPLIT_SCRATCH_BYTES {
                let part = w.split_scratch()?;
                params.extend([n(splits), n(kv_len.div_ceil(splits)), n(tile.rows), n(tile.keys)]);
                let split = vec![(0, q.buffer()), (1, k_cache.buffer()), (2, v_cache.buffer()), (5, part)];
                let combine = vec![(5, part), (3, out.buffer())];
                return Ok(vec![
                    (k("attention", "attention_split", vec![("SPLIT", "")], split, 4, params.clone()), n(blocks * splits)),
                    (k("attention", "attention_combine", vec![("SPLIT", "")], combine, 4, params), n(t * heads)),
                ]);
            }
            params.extend([1, n(kv_len), n(tile.rows), n(tile.keys)]);
            let bindings = vec![(0, q.buffer()), (1, k_cache.buffer()), (2, v_cache.buffer()), (3, out.buffer())];
            vec![(k("attention", "attention", vec![], bindings, 4, params), n(blocks))]
        }
        Op::Add { a, b, out } => {
            // Addition commutes: an in-place add over `b` runs as `b + a`.
            let (a, b) = if out.same_view(b) && !out.same_view(a) { (b, a) } else { (a, b) };
            vec![elementwise("add", a, b, None, out, 0.0)]
        }
        Op::SwiGlu { gate, up, out } => vec![elementwise("swiglu", gate, up, None, out, 0.0)],
        Op::Guidance { cond, uncond, scale, out } => vec![elementwise("guidance", cond, uncond, None, out, scale)],
        Op::SelectRows { mask, a, b, out } => vec![elementwise("select_rows", a, b, Some(mask), out, 0.0)],
        Op::Softmax { x, out } => {
            let (rows, cols) = (x.rows(), x.dim_back(0));
            let params = vec![n(rows), n(cols), off(x), off(out)];
            if in_place(out, x) {
                vec![(k("softmax", "softmax", vec![("INPLACE", "")], vec![(1, out.buffer())], 2, params), n(rows))]
            } else {
                vec![(k("softmax", "softmax", vec![], vec![(0, x.buffer()), (1, out.buffer())], 2, params), n(rows))]
            }
        }
        Op::Argmax { x, out } => {
            let (rows, cols) = (x.rows(), x.dim_back(0));
            let params = vec![n(rows), n(cols), 0, 0, 0, 0, 0, 0, 0, off(x), off(out), 0];
            vec![(k("sample", "argmax", vec![], vec![(0, x.buffer()), (1, out.buffer())], 2, params), n(rows))]
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
            vec![(k("sample", "top_k_sample", vec![], vec![(0, logits.buffer()), (1, out.buffer())], 2, params), n(rows))]
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
        bindings.push((0, out.buffer(), None));
    } else {
        bindings.push((0, a.buffer(), None));
        bindings.push((3, out.buffer(), None));
    }
    bindings.push((1, b.buffer(), None));
    if let Some(m) = mask {
        bindings.push((2, m.buffer(), None));
    }
    (Kernel { file: "elementwise", entry, defines, bindings, params_binding: 4, params }, groups(a.numel(), 64))
}

