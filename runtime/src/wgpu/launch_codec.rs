//! Kernels of the codec's ops (linear with epilogues, modulated LayerNorm, convolutions
//! incl. the encoder's strided, grouped and 2-D ones, pointwise updates, GLU, FiLM).
//! Their weights are small enough to bind whole (`supports` checks).

use super::launch::{groups, in_place, n, off, weight_define, Kernel};
use super::Wgpu;
use crate::op::{ConvParams, Epilogue, Op, UnaryFn};
use crate::DType;
use crate::Tensor;

/// Rows from which `matmul` and `conv1d` use the register-tiled GEMM (tile tuned per
/// device, `wgpu.gemm.tile`); `linear` and `conv2d` always do.
pub(crate) const TILED_MIN_ROWS: usize = 16;
/// Narrower convolutions (the SQ decoder's late stages) waste most of a 64-wide tile.
const TILED_MIN_COLS: usize = 48;
/// Grouped convolutions run one GEMM per group (output channels of the group as
/// columns) from this many channels per group; depthwise-like ones run the direct kernel.
const GROUPED_MIN_COLS: usize = 4;

/// Whether a conv1d runs as an implicit GEMM (per group) rather than the direct kernel.
fn conv_on_gemm(out: &Tensor<Wgpu>, conv: ConvParams) -> bool {
    let rows = out.shape()[0] * out.shape()[1];
    let per_group = out.shape()[2] / conv.groups;
    rows >= TILED_MIN_ROWS && per_group >= if conv.groups == 1 { TILED_MIN_COLS } else { GROUPED_MIN_COLS }
}

/// The tiled GEMM class of an op that runs on it, and whether the op overwrites its output
/// (only those may be re-run to time the candidates on first use), with its FLOP count.
fn on_tiled_gemm(op: &Op<'_, Wgpu>) -> Option<(usize, bool, f64)> {
    let flops = |out: &Tensor<Wgpu>, w: &Tensor<Wgpu>| 2.0 * out.rows() as f64 * w.numel() as f64;
    match *op {
        Op::Linear { x, w, out, epilogue, .. } => Some((super::tune::gemm_class(x.rows()), !matches!(epilogue, Epilogue::GatedAdd { .. }), flops(out, w))),
        Op::Conv1d { w, out, conv, .. } if conv_on_gemm(out, conv) => Some((super::tune::CONV1D_CLASS, !conv.accumulate, flops(out, w))),
        Op::Conv2d { w, out, conv, .. } => Some((super::tune::CONV2D_CLASS, !conv.accumulate, flops(out, w))),
        _ => None,
    }
}

/// The dispatch of a codec op; an op on the tiled GEMM uses its class's tuned tile (and
/// times the candidates when the class is still undecided and the op may be re-run).
pub(crate) fn kernels<'a>(w: &Wgpu, op: &'a Op<'_, Wgpu>) -> crate::Result<Vec<(Kernel<'a>, u32)>> {
    let Some((class, overwrites, flops)) = on_tiled_gemm(op) else {
        return Ok(vec![kernel(w, op, super::tune::GEMM_FAMILY.default)]);
    };
    let build = |tile: usize| vec![kernel(w, op, tile)];
    if overwrites {
        w.tune_gemm_on_first_use(class, &build, flops)?;
    }
    Ok(build(w.gemm_tile(class)))
}

/// The dispatch of a codec op; `tile` is the output tile edge of the ops on the tiled GEMM.
pub(crate) fn kernel<'a>(gpu: &Wgpu, op: &'a Op<'_, Wgpu>, tile: usize) -> (Kernel<'a>, u32) {
    at_precision(gpu, kernel_at_exact(op, tile))
}

/// The tiled GEMM takes f16 operands in the `fast` precision (`gemm.wgsl` F16_OPERANDS).
fn at_precision<'a>(gpu: &Wgpu, (mut kernel, workgroups): (Kernel<'a>, u32)) -> (Kernel<'a>, u32) {
    if gpu.precision() == crate::Precision::Fast && kernel.file == "gemm" {
        kernel.defines.push(("F16_OPERANDS", ""));
    }
    (kernel, workgroups)
}

fn kernel_at_exact<'a>(op: &'a Op<'_, Wgpu>, tile: usize) -> (Kernel<'a>, u32) {
    match *op {
        Op::Linear { x, w, bias, out, epilogue } => match epilogue {
            Epilogue::Store => gemm(x, w, bias, None, out, None, false, tile),
            Epilogue::Act(f) => gemm(x, w, bias, None, out, Some(f), false, tile),
            Epilogue::GatedAdd { gate } => gemm(x, w, bias, Some(gate), out, None, false, tile),
        },
        Op::Unary { x, out, f } => {
            let (code, levels) = UnaryFn::kernel_code(Some(f));
            let params = vec![n(x.numel()), code, levels.to_bits(), 0, 0, off(x), 0, off(out), 0, 0, 0, 0];
            let (defines, bindings) = if in_place(out, x) {
                (vec![("INPLACE", "")], vec![(1, out.buffer(), None)])
            } else {
                (vec![], vec![(0, x.buffer(), None), (1, out.buffer(), None)])
            };
            (Kernel { file: "pointwise", entry: "unary", defines, bindings, params_binding: 3, params }, groups(x.numel(), 64))
        }
        Op::Blend { a, b, wa, wb, out } => {
            // Blending commutes: an in-place blend over `b` runs with the roles swapped.
            let (a, b, wa, wb) = if out.same_view(b) && !out.same_view(a) { (b, a, wb, wa) } else { (a, b, wa, wb) };
            pointwise("blend", a, b, out, wa, wb)
        }
        Op::EulerCfg { x, cond, uncond, scale, dt } => pointwise("euler_cfg", cond, uncond, x, scale, dt),
        Op::Glu { x, out } => {
            let f = out.dim_back(0);
            let params = vec![n(out.numel()), 0, 0, 0, 0, off(x), 0, off(out), n(f), 0, 0, 0];
            let bindings = vec![(0, x.buffer(), None), (1, out.buffer(), None)];
            (Kernel { file: "pointwise", entry: "glu", defines: vec![], bindings, params_binding: 3, params }, groups(out.numel(), 64))
        }
        Op::Film { x, p, out, gamma_scale } => {
            let (mut kernel, count) = pointwise("film", x, p, out, gamma_scale, 0.0);
            kernel.params[8] = n(x.dim_back(0));
            (kernel, count)
        }
        Op::LayerNormModulate { x, shift, scale, out, eps } => {
            let (rows, cols) = (x.rows(), x.dim_back(0));
            let params = vec![n(rows), n(cols), eps.to_bits(), off(x), off(shift), off(scale), off(out), 0];
            let bindings = vec![(0, x.buffer(), None), (1, shift.buffer(), None), (2, scale.buffer(), None), (3, out.buffer(), None)];
            (Kernel { file: "layer_norm", entry: "layer_norm_modulate", defines: vec![], bindings, params_binding: 4, params }, n(rows))
        }
        Op::Conv1d { x, w, bias, out, conv } if conv_on_gemm(out, conv) => {
            // An implicit GEMM per channel group: rows (b, j), columns the group's output
            // channels, inner (tap, input channel of the group).
            let (l_in, c_in) = (x.shape()[1], x.shape()[2]);
            let (rows, l_out, c_out, k) = (out.shape()[0] * out.shape()[1], out.shape()[1], out.shape()[2], w.shape()[1]);
            let (cg, og) = (c_in / conv.groups, c_out / conv.groups);
            let tiles_n = og.div_ceil(tile);
            let slope = conv.prelu.map_or(0.0, |s| s.get());
            let mut params = vec![n(rows), n(og), n(k * cg), conv.prelu.is_some() as u32, off(w), off(x), off(out), bias.map_or(0, off)];
            params.extend([0, slope.to_bits(), n(tiles_n), conv.accumulate as u32]);
            params.extend([n(l_in), n(c_in), n(l_out), n(conv.dilation), n(conv.pad_left), n(conv.upsample), n(conv.stride), n(cg), n(c_out), n(conv.groups), 0, 0]);
            let workgroups = conv.groups * tiles_n * rows.div_ceil(tile);
            tiled_conv("CONV", w, x, bias, out, params, workgroups, tile)
        }
        Op::Conv1d { x, w, bias, out, conv } => {
            let slope = conv.prelu.map_or(0.0, |s| s.get());
            let geometry = [n(conv.dilation), n(conv.pad_left), n(conv.upsample), conv.prelu.is_some() as u32, slope.to_bits(), conv.accumulate as u32];
            convolution("conv1d", x, w, bias, out, geometry, [n(conv.stride), n(conv.groups)])
        }
        Op::ConvTranspose1d { x, w, bias, out, stride, padding } => convolution("conv_transpose1d", x, w, bias, out, [n(stride), n(padding), 1, 0, 0, 0], [1, 1]),
        Op::Conv2d { x, w, bias, out, conv } => {
            // An implicit GEMM: rows (b, i, j), columns C_out, inner (p, q, c_in).
            let [_, in_h, in_w, c_in] = [x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]];
            let [c_out, kh, kw, _] = [w.shape()[0], w.shape()[1], w.shape()[2], w.shape()[3]];
            let (out_h, out_w) = (out.shape()[1], out.shape()[2]);
            let rows = out.shape()[0] * out_h * out_w;
            let tiles_n = c_out.div_ceil(tile);
            let (act, _) = UnaryFn::kernel_code(conv.relu.then_some(UnaryFn::Relu));
            let mut params = vec![n(rows), n(c_out), n(kh * kw * c_in), act, off(w), off(x), off(out), bias.map_or(0, off)];
            params.extend([0, 0, n(tiles_n), conv.accumulate as u32]);
            params.extend([n(in_h), n(in_w), n(c_in), n(out_h), n(out_w), n(kw), n(conv.stride[0]), n(conv.stride[1]), n(conv.pad[0]), n(conv.pad[1]), 0, 0]);
            tiled_conv("CONV2D", w, x, bias, out, params, tiles_n * rows.div_ceil(tile), tile)
        }
        _ => unreachable!("launch_codec handles only codec ops"),
    }
}

fn pointwise<'a>(entry: &'static str, a: &'a Tensor<Wgpu>, b: &'a Tensor<Wgpu>, out: &'a Tensor<Wgpu>, wa: f32, wb: f32) -> (Kernel<'a>, u32) {
    let params = vec![n(a.numel()), 0, 0, wa.to_bits(), wb.to_bits(), off(a), off(b), off(out), 0, 0, 0, 0];
    let (mut defines, mut bindings) = if in_place(out, a) {
        (vec![("INPLACE", "")], vec![(1, out.buffer(), None)])
    } else {
        (vec![], vec![(0, a.buffer(), None), (1, out.buffer(), None)])
    };
    defines.push(("SECOND", ""));
    bindings.push((2, b.buffer(), None));
    (Kernel { file: "pointwise", entry, defines, bindings, params_binding: 3, params }, groups(a.numel(), 64))
}

fn convolution<'a>(
    entry: &'static str,
    x: &'a Tensor<Wgpu>,
    w: &'a Tensor<Wgpu>,
    bias: Option<&'a Tensor<Wgpu>>,
    out: &'a Tensor<Wgpu>,
    geometry: [u32; 6],
    stride_groups: [u32; 2],
) -> (Kernel<'a>, u32) {
    let (batch, l_in, c_in) = (x.shape()[0], x.shape()[1], x.shape()[2]);
    let (l_out, c_out, k) = (out.shape()[1], out.shape()[2], w.shape()[1]);
    let mut params = vec![n(batch), n(l_in), n(c_in), n(l_out), n(c_out), n(k)];
    params.extend(geometry);
    params.extend([off(x), off(w), bias.map_or(0, off), off(out)]);
    params.extend(stride_groups);
    params.extend([0, 0]);
    let mut defines = vec![weight_define(w)];
    let mut bindings = vec![(0, w.buffer(), None), (1, x.buffer(), None), (2, out.buffer(), None)];
    if let Some(b) = bias {
        defines.push(("BIAS", ""));
        bindings.push((4, b.buffer(), None));
    }
    (Kernel { file: "conv", entry, defines, bindings, params_binding: 3, params }, groups(out.numel(), 64))
}

/// The tiled GEMM's bias dtype (`weights.wgsl` B_BINDING): its own, so a Q8_0 weight
/// keeps a float bias.
fn bias_define(b: &Tensor<Wgpu>) -> (&'static str, &'static str) {
    match b.dtype() {
        DType::F16 => ("B_F16", ""),
        DType::BF16 => ("B_BF16", ""),
        _ => ("B_F32", ""),
    }
}

/// A convolution on the tiled GEMM (`variant` CONV or CONV2D) with its parameter words.
fn tiled_conv<'a>(
    variant: &'static str,
    w: &'a Tensor<Wgpu>,
    x: &'a Tensor<Wgpu>,
    bias: Option<&'a Tensor<Wgpu>>,
    out: &'a Tensor<Wgpu>,
    params: Vec<u32>,
    workgroups: usize,
    tile: usize,
) -> (Kernel<'a>, u32) {
    let mut defines = vec![weight_define(w), (variant, "")];
    defines.extend(super::tune::tile_defines(tile));
    let mut bindings = vec![(0, w.buffer(), None), (1, x.buffer(), None), (2, out.buffer(), None)];
    if let Some(b) = bias {
        defines.extend([("BIAS", ""), bias_define(b)]);
        bindings.push((4, b.buffer(), None));
    }
    (Kernel { file: "gemm", entry: "gemm", defines, bindings, params_binding: 3, params }, n(workgroups))
}

/// `matmul` (weights [N, K]) for many rows on the tiled GEMM: no bias, no activation.
pub(crate) fn tiled_matmul<'a>(gpu: &Wgpu, x: &'a Tensor<Wgpu>, w: &'a Tensor<Wgpu>, out: &'a Tensor<Wgpu>, accumulate: bool) -> crate::Result<(Kernel<'a>, u32)> {
    let class = super::tune::gemm_class(x.rows());
    let build = |tile: usize| vec![at_precision(gpu, gemm(x, w, None, None, out, None, accumulate, tile))];
    if !accumulate {
        gpu.tune_gemm_on_first_use(class, &build, 2.0 * out.numel() as f64 * x.dim_back(0) as f64)?;
    }
    Ok(at_precision(gpu, gemm(x, w, None, None, out, None, accumulate, gpu.gemm_tile(class))))
}

/// The tiled GEMM out = epilogue(x [M, K] . w[N, K]^T + bias): activation `act`, or
/// out += gate ⊙ y, or out += y (`accumulate`), on `tile` x `tile` output tiles.
#[allow(clippy::too_many_arguments)]
fn gemm<'a>(
    x: &'a Tensor<Wgpu>,
    w: &'a Tensor<Wgpu>,
    bias: Option<&'a Tensor<Wgpu>>,
    gate: Option<&'a Tensor<Wgpu>>,
    out: &'a Tensor<Wgpu>,
    act: Option<UnaryFn>,
    accumulate: bool,
    tile: usize,
) -> (Kernel<'a>, u32) {
    let (m, k, nn) = (x.shape()[0], x.shape()[1], out.shape()[1]);
    let (code, levels) = UnaryFn::kernel_code(act);
    let mut defines = vec![weight_define(w)];
    defines.extend(super::tune::tile_defines(tile));
    let mut bindings = vec![(0, w.buffer(), None), (1, x.buffer(), None), (2, out.buffer(), None)];
    if let Some(b) = bias {
        defines.extend([("BIAS", ""), bias_define(b)]);
        bindings.push((4, b.buffer(), None));
    }
    if let Some(g) = gate {
        defines.push(("GATED", ""));
        bindings.push((5, g.buffer(), None));
    }
    let tiles_n = nn.div_ceil(tile);
    let mut params = vec![n(m), n(nn), n(k), code, off(w), off(x), off(out), bias.map_or(0, off), gate.map_or(0, off), levels.to_bits(), n(tiles_n), accumulate as u32];
    params.extend([0u32; 12]);
    (Kernel { file: "gemm", entry: "gemm", defines, bindings, params_binding: 3, params }, n(tiles_n * m.div_ceil(tile)))
}
