//! Kernels of the codec encoder's row-wise ops: GroupNorm over time, the residual-VQ
//! search and attention with WavLM's gated relative position bias. (Its convolutions,
//! GLU and FiLM run on the codec's kernels, `launch_codec`.)

use super::launch::{n, off, weight_define, Kernel};
use super::Wgpu;
use crate::op::Op;

/// Rows of x per `rvq_encode` workgroup (ROWS in `rvq_encode.wgsl`).
const RVQ_ROWS: usize = 4;
/// Largest vector size `rvq_encode.wgsl` (MAX_D) and head size `rel_pos_attention.wgsl`
/// (two output dimensions per thread of 128) hold.
pub(crate) const MAX_RVQ_DIM: usize = 256;
pub(crate) const MAX_REL_POS_HEAD: usize = 256;

/// Queries per workgroup and keys per shared-memory pass of `rel_pos_attention.wgsl`
/// (its Q_TILE 2048, KV_TILE 1536 with rows padded to d + 1, S_TILE 256).
fn rel_pos_tile(t: usize, d: usize) -> (usize, usize) {
    let rows = t.clamp(1, (2048 / d).min(16));
    (rows, (1536 / (d + 1)).min(256 / rows).max(1))
}

pub(crate) fn kernel<'a>(op: &'a Op<'_, Wgpu>) -> (Kernel<'a>, u32) {
    let k = |file, entry, defines, bindings: Vec<(u32, &'a super::WgpuBuffer)>, params_binding, params| Kernel {
        file,
        entry,
        defines,
        bindings: bindings.into_iter().map(|(i, b)| (i, b, None)).collect(),
        params_binding,
        params,
    };
    match *op {
        Op::GroupNorm { x, weight, bias, out, groups, eps } => {
            let (batch, t, c) = (x.shape()[0], x.shape()[1], x.shape()[2]);
            let params = vec![n(batch), n(t), n(c), n(groups), eps.to_bits(), off(x), off(weight), off(bias), off(out), 0, 0, 0];
            let bindings = vec![(0, weight.buffer()), (4, bias.buffer()), (1, x.buffer()), (2, out.buffer())];
            (k("group_norm", "group_norm", vec![weight_define(weight)], bindings, 3, params), n(batch * groups))
        }
        Op::RvqEncode { x, codebooks, codes, quantized } => {
            let (rows, d) = (x.shape()[0], x.shape()[1]);
            let (levels, codes_per_level) = (codebooks.shape()[0], codebooks.shape()[1]);
            let params = vec![n(rows), n(d), n(levels), n(codes_per_level), off(x), off(codebooks), off(codes), off(quantized)];
            let bindings = vec![(0, codebooks.buffer()), (1, x.buffer()), (2, codes.buffer()), (3, quantized.buffer())];
            (k("rvq_encode", "rvq_encode", vec![weight_define(codebooks)], bindings, 4, params), n(rows.div_ceil(RVQ_ROWS)))
        }
        Op::RelPosAttention { q, k: kt, v, gate, gate_const, rel, out } => {
            let (t, heads, d) = (q.shape()[0], q.shape()[1], q.shape()[2]);
            let (qb, tk) = rel_pos_tile(t, d);
            let scale = 1.0 / (d as f32).sqrt();
            let mut params = vec![n(t), n(heads), n(d), n(qb), n(tk), scale.to_bits(), off(q), off(kt), off(v), off(gate), off(gate_const), off(rel), off(out)];
            params.extend([0, 0, 0]);
            let bindings = vec![(0, q.buffer()), (1, kt.buffer()), (2, v.buffer()), (3, gate.buffer()), (4, gate_const.buffer()), (5, rel.buffer()), (6, out.buffer())];
            (k("rel_pos_attention", "rel_pos_attention", vec![], bindings, 7, params), n(heads * t.div_ceil(qb)))
        }
        _ => unreachable!("launch_encode handles only the encoder's row-wise ops"),
    }
}
