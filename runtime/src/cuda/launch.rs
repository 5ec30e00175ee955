//! Maps each op to its CUDA kernel: function, arguments (device addresses and scalars,
//! in the kernel's parameter order) and launch geometry. Generic over `KernelDevice`, so
//! the same mapping drives a GPU (`Cuda`) and the CPU emulation of the kernels.

pub use cudarc::driver::LaunchConfig;

use crate::op::{Epilogue, Op, RowOrder, UnaryFn, WeightLayout};
use crate::tune::table::Tuned;
use crate::tune::DeviceKey;
use crate::{Backend, DType, Precision, Result, Tensor};

/// One kernel argument by value.
#[derive(Clone, Copy, Debug)]
pub enum Arg {
    U32(u32),
    F32(f32),
    Ptr(u64),
}

/// What the op-to-kernel mapping needs from a device that runs `kernels/cuda/`.
pub trait KernelDevice: Backend {
    /// Device address of a tensor's element 0.
    fn address(t: &Tensor<Self>) -> u64;
    /// Launches kernel `name` of `kernels/cuda/<file>.cu` with `args` in its parameter order.
    fn launch(&self, file: &'static str, name: &str, args: &[Arg], cfg: LaunchConfig) -> Result<()>;
    /// Address of at least `bytes` of scratch, valid until the next call.
    fn scratch(&self, bytes: usize) -> Result<u64>;
    fn has_tensor_cores(&self) -> bool;
    /// `Fast`: the tensor-core GEMMs and convolutions take bf16 operands (only asked
    /// where `has_tensor_cores`).
    fn precision(&self) -> Precision;
    /// Streaming multiprocessors: launches with fewer blocks leave the device idle.
    fn sm_count(&self) -> usize;
    /// The `cuda.gemv.warps` values in use (`super::tune`).
    fn gemv_tuning(&self) -> &Tuned;
    /// This device in the tuning cache.
    fn tune_key(&self) -> DeviceKey;
    /// Whether launches run now, so they can be timed (not while a step is captured).
    fn runs_launches_now(&self) -> bool;
}

fn p<C: KernelDevice>(t: &Tensor<C>) -> Arg {
    Arg::Ptr(C::address(t))
}

fn opt<C: KernelDevice>(t: Option<&Tensor<C>>) -> Arg {
    Arg::Ptr(t.map_or(0, C::address))
}

fn u(x: usize) -> Arg {
    Arg::U32(x as u32)
}

fn suffix<C: KernelDevice>(t: &Tensor<C>) -> &'static str {
    match t.dtype() {
        DType::F16 => "f16",
        DType::BF16 => "bf16",
        DType::Q8_0 => "q8",
        DType::Q4_0 => "q4",
        _ => "f32",
    }
}

fn linear_blocks(n: usize, per_block: usize) -> LaunchConfig {
    LaunchConfig { grid_dim: (n.div_ceil(per_block).max(1) as u32, 1, 1), block_dim: (per_block as u32, 1, 1), shared_mem_bytes: 0 }
}

fn per_row(rows: usize, threads: u32) -> LaunchConfig {
    LaunchConfig { grid_dim: (rows.max(1) as u32, 1, 1), block_dim: (threads, 1, 1), shared_mem_bytes: 0 }
}

/// A GEMV launch (`gemv_*`, `gate_up_*`): one warp per output, a tuned number of warps
/// per block (`super::tune`).
pub(crate) struct Gemv {
    name: String,
    args: Vec<Arg>,
    outputs: usize,
    /// `cuda.gemv.warps` class.
    class: usize,
    pub(crate) weight_bytes: usize,
    /// Whether the op overwrites its output (only those may be timed on themselves).
    overwrites: bool,
}

impl Gemv {
    /// The GEMV launch of `op`, if it runs one: out-in products of at most 8 rows or of
    /// row-invariant ones, and the gated MLP input.
    pub(crate) fn of<C: KernelDevice>(op: &Op<'_, C>) -> Option<Gemv> {
        match *op {
            Op::MatMul { x, w, out, layout: WeightLayout::OutIn, accumulate, rows } if x.shape()[0] <= 8 || rows == RowOrder::Invariant => {
                let (m, k, n) = (x.shape()[0], x.shape()[1], out.shape()[1]);
                let args = vec![p(w), p(x), p(out), u(m), u(n), u(k), Arg::U32(accumulate as u32), Arg::U32(vectorisable(w, x, k))];
                let class = super::tune::matmul_class(k);
                Some(Gemv { name: format!("gemv_{}", suffix(w)), args, outputs: m * n, class, weight_bytes: w.size_bytes(), overwrites: !accumulate })
            }
            Op::GateUp { x, w_gate, w_up, out, .. } => {
                let (m, k, f) = (x.shape()[0], x.shape()[1], out.shape()[1]);
                let vec = vectorisable(w_gate, x, k) & vectorisable(w_up, x, k);
                let args = vec![p(w_gate), p(w_up), p(x), p(out), u(m), u(f), u(k), Arg::U32(vec)];
                let bytes = w_gate.size_bytes() + w_up.size_bytes();
                Some(Gemv { name: format!("gate_up_{}", suffix(w_gate)), args, outputs: m * f, class: super::tune::GATE_UP_CLASS, weight_bytes: bytes, overwrites: true })
            }
            _ => None,
        }
    }

    pub(crate) fn launch<C: KernelDevice>(&self, c: &C, warps: usize) -> Result<()> {
        let cfg = LaunchConfig { grid_dim: (self.outputs.div_ceil(warps).max(1) as u32, 1, 1), block_dim: (32 * warps as u32, 1, 1), shared_mem_bytes: 0 };
        c.launch("matmul", &self.name, &self.args, cfg)
    }

    /// Runs with the class's warps per block (tuned first where it is undecided).
    fn exec<C: KernelDevice>(&self, c: &C) -> Result<()> {
        if self.outputs == 0 {
            return Ok(());
        }
        let warps = super::tune::gemv_warps(c, self.class, self.overwrites, &|w| self.launch(c, w))?;
        self.launch(c, warps)
    }
}

/// 64x64 output tiles of 16x16 threads.
fn tiles(m: usize, n: usize) -> LaunchConfig {
    LaunchConfig { grid_dim: ((m.div_ceil(64) * n.div_ceil(64)).max(1) as u32, 1, 1), block_dim: (16, 16, 1), shared_mem_bytes: 0 }
}

/// The tensor-core kernel variant for weights `w`, if one applies: `_tc_fast_` (bf16
/// operands) for every float weight in the `fast` precision, else `_tc_` (split TF32,
/// exact) for 16-bit weights; `None` runs the CUDA-core kernel.
fn tensor_core_variant<C: KernelDevice>(c: &C, w: &Tensor<C>) -> Option<&'static str> {
    if !c.has_tensor_cores() {
        return None;
    }
    match w.dtype() {
        DType::F32 | DType::F16 | DType::BF16 if c.precision() == Precision::Fast => Some("tc_fast"),
        DType::F16 | DType::BF16 => Some("tc"),
        _ => None,
    }
}

/// A GEMM launch (`gemm_*` arguments): tensor cores where `tensor_core_variant` says,
/// else the CUDA-core kernel.
fn gemm<C: KernelDevice>(c: &C, w: &Tensor<C>, bias: Option<&Tensor<C>>, args: Vec<Arg>, m: usize, n: usize) -> (&'static str, String, Vec<Arg>, LaunchConfig) {
    if w.dtype().is_quantized() {
        // The bias keeps its float dtype (f32 for the null bias of an unbiased linear).
        return ("matmul", format!("gemm_{}_{}", suffix(w), bias.map_or("f32", |b| suffix(b))), args, tiles(m, n));
    }
    if let Some(variant) = tensor_core_variant(c, w) {
        let cfg = LaunchConfig { grid_dim: ((m.div_ceil(64) * n.div_ceil(64)).max(1) as u32, 1, 1), block_dim: (128, 1, 1), shared_mem_bytes: 0 };
        return ("gemm_tc", format!("gemm_{variant}_{}", suffix(w)), args, cfg);
    }
    ("matmul", format!("gemm_{}", suffix(w)), args, tiles(m, n))
}

/// 128-bit loads need 16-byte aligned rows of both operands.
fn vectorisable<C: KernelDevice>(w: &Tensor<C>, x: &Tensor<C>, k: usize) -> u32 {
    let row_bytes = w.dtype().bytes(k);
    (C::address(w).is_multiple_of(16) && row_bytes.is_multiple_of(16) && C::address(x).is_multiple_of(16) && (k * 4).is_multiple_of(16)) as u32
}

/// Whether `exec` can run this op.
pub fn supports<C: KernelDevice>(op: &Op<'_, C>) -> bool {
    let tensors: Vec<&Tensor<C>> = op.inputs().into_iter().map(|(_, t)| t).chain(op.outputs()).collect();
    if tensors.iter().any(|t| t.numel() > u32::MAX as usize) {
        return false;
    }
    // 8-bit and 4-bit weights: the out-in products and linears (`matmul.cu`'s Q8_0 and Q4_0
    // kernels), whose bias keeps a float dtype.
    let q8 = tensors.iter().any(|t| t.dtype().is_quantized());
    if q8 && !matches!(*op, Op::MatMul { layout: WeightLayout::OutIn, .. } | Op::GateUp { .. } | Op::Linear { .. }) {
        return false;
    }
    match *op {
        Op::Attention { q, .. } | Op::RelPosAttention { q, .. } => q.shape()[2] <= 256,
        // rvq_encode.cu keeps residuals of up to 256 dimensions in shared memory.
        Op::RvqEncode { x, .. } => x.shape()[1] <= 256,
        Op::Linear { w, bias: Some(b), .. } if w.dtype().is_quantized() => b.dtype().is_float(),
        Op::Linear { w, bias: Some(b), .. }
        | Op::Conv1d { w, bias: Some(b), .. }
        | Op::ConvTranspose1d { w, bias: Some(b), .. }
        | Op::Conv2d { w, bias: Some(b), .. }
        | Op::GroupNorm { weight: w, bias: b, .. } => b.dtype() == w.dtype(),
        _ => true,
    }
}

/// Rows from which a conv1d runs as an implicit GEMM (64x64 tiles), and the output
/// channels (per group) it needs: narrower convolutions waste most of a tile, and
/// depthwise-like grouped ones run the direct kernel.
const CONV_GEMM_MIN_ROWS: usize = 16;
const CONV_GEMM_MIN_COLS: usize = 48;
const GROUPED_GEMM_MIN_COLS: usize = 4;

/// An implicit-GEMM convolution (`conv1d_gemm_*` / `conv2d_*` arguments) over `blocks` 64x64
/// tiles: tensor cores where `tensor_core_variant` says.
fn conv_gemm<C: KernelDevice>(c: &C, w: &Tensor<C>, stem: &str, args: Vec<Arg>, blocks: usize) -> (&'static str, String, Vec<Arg>, LaunchConfig) {
    let grid = (blocks.max(1) as u32, 1, 1);
    if let Some(variant) = tensor_core_variant(c, w) {
        return ("gemm_tc", format!("{stem}_{variant}_{}", suffix(w)), args, LaunchConfig { grid_dim: grid, block_dim: (128, 1, 1), shared_mem_bytes: 0 });
    }
    ("matmul", format!("{stem}_{}", suffix(w)), args, LaunchConfig { grid_dim: grid, block_dim: (16, 16, 1), shared_mem_bytes: 0 })
}

/// Keys per split of split-KV decode attention, and the most splits per (query, head).
const SPLIT_SPAN: usize = 256;
const MAX_SPLITS: usize = 64;
/// Query rows per block of the tensor-core attention (`attention_tc.cu`); groups with
/// fewer rows use the CUDA-core kernel.
const TC_ATTENTION_ROWS: usize = 64;

/// The block tile of `attention.cu`: query rows of one KV group per block and keys per
/// shared-memory pass (sized to its ATT_Q_TILE, ATT_KV_TILE (rows padded to d + 1) and
/// ATT_S_TILE arrays). `rel_pos_attention.cu` has the same arrays (RPA_*) and tiles.
fn attention_tile(group_rows: usize, d: usize) -> (usize, usize) {
    let rows = group_rows.clamp(1, (2048 / d).min(16));
    (rows, (4224 / (d + 1)).min(512 / rows).max(1))
}

/// GQA-blocked attention; over a long cache with few blocks, split-KV (flash-decoding):
/// partial softmax per key span, then a combine kernel.
fn attention<C: KernelDevice>(c: &C, op: &Op<'_, C>) -> Result<()> {
    let Op::Attention { q, k_cache, v_cache, out, kv_len, causal } = *op else { unreachable!("attention() takes an attention op") };
    let (t, heads, d) = (q.shape()[0], q.shape()[1], q.shape()[2]);
    let (g, cap) = (k_cache.shape()[0], k_cache.shape()[1]);
    let (rows, keys) = attention_tile(t * (heads / g), d);
    let blocks = g * (t * (heads / g)).div_ceil(rows);
    let scale = 1.0 / (d as f32).sqrt();
    let shape = [u(t), u(heads), u(g), u(d), u(cap), u(kv_len), Arg::U32(causal as u32), Arg::F32(scale), u(rows), u(keys)];
    let group_rows = t * (heads / g);
    if c.has_tensor_cores() && (d == 64 || d == 128) && group_rows >= TC_ATTENTION_ROWS {
        // Prefill: tensor-core attention, 64 query rows of one KV group per block.
        let args = vec![p(q), p(k_cache), p(v_cache), p(out), u(t), u(heads), u(g), u(cap), u(kv_len), Arg::U32(causal as u32), Arg::F32(scale)];
        return c.launch("attention_tc", &format!("attention_tc_d{d}"), &args, per_row(g * group_rows.div_ceil(TC_ATTENTION_ROWS), 128));
    }
    let splits = kv_len.div_ceil(SPLIT_SPAN).min(MAX_SPLITS);
    // Fewer blocks than multiprocessors: split the keys so every SM has work.
    if blocks >= c.sm_count() || kv_len < 2 * SPLIT_SPAN {
        let args: Vec<Arg> = [p(q), p(k_cache), p(v_cache), p(out)].into_iter().chain(shape).collect();
        return c.launch("attention", "attention", &args, per_row(blocks, 128));
    }
    let partial = c.scratch(t * heads * splits * (d + 2) * 4)?;
    let args: Vec<Arg> = [p(q), p(k_cache), p(v_cache), Arg::Ptr(partial)].into_iter().chain(shape).chain([u(splits), u(kv_len.div_ceil(splits))]).collect();
    c.launch("attention", "attention_split", &args, per_row(blocks * splits, 128))?;
    c.launch("attention", "attention_combine", &[Arg::Ptr(partial), p(out), u(t * heads), u(d), u(splits)], per_row(t * heads, 128))
}

/// Launches the kernels of one validated, supported op.
pub fn exec<C: KernelDevice>(c: &C, op: &Op<'_, C>) -> Result<()> {
    if let Op::Attention { .. } = op {
        return attention(c, op);
    }
    if let Some(gemv) = Gemv::of(op) {
        return gemv.exec(c);
    }
    let (file, name, args, cfg): (&'static str, String, Vec<Arg>, LaunchConfig) = match *op {
        Op::EmbedRows { table, ids, out } => {
            let (n, cols) = (ids.numel(), table.shape()[1]);
            ("embed", format!("embed_rows_{}", suffix(table)), vec![p(table), p(ids), p(out), u(n), u(cols)], linear_blocks(n * cols, 256))
        }
        Op::EmbedCodebookSum { table, codes, mask, card, out } => {
            let (frames, books, cols) = (codes.shape()[0], codes.shape()[1], table.shape()[1]);
            let args = vec![p(table), p(codes), p(mask), p(out), u(frames), u(cols), u(books), u(card)];
            ("embed", format!("embed_codebook_sum_{}", suffix(table)), args, linear_blocks(frames * cols, 256))
        }
        Op::RmsNorm { x, weight, out, eps } => {
            let (rows, cols) = (x.rows(), x.dim_back(0));
            ("rms_norm", format!("rms_norm_{}", suffix(weight)), vec![p(x), p(weight), p(out), u(rows), u(cols), Arg::F32(eps)], per_row(rows, 256))
        }
        Op::MatMul { x, w, out, layout: WeightLayout::OutIn, accumulate, .. } => {
            let (m, k, n) = (x.shape()[0], x.shape()[1], out.shape()[1]);
            // Few rows and row-invariant products ran as the GEMV above (each row alone).
            let args = vec![p(x), p(w), Arg::Ptr(0), Arg::Ptr(0), p(out), u(m), u(n), u(k), Arg::U32(0), Arg::F32(0.0), Arg::U32(accumulate as u32)];
            gemm(c, w, None, args, m, n)
        }
        Op::MatMul { x, w, out, layout: WeightLayout::InOut, accumulate, .. } => {
            let (m, k, n) = (x.shape()[0], x.shape()[1], out.shape()[1]);
            let args = vec![p(w), p(x), p(out), u(m), u(n), u(k), Arg::U32(accumulate as u32)];
            ("matmul", format!("matmul_in_out_{}", suffix(w)), args, linear_blocks(m * n, 256))
        }
        Op::GateUp { .. } => unreachable!("the gated MLP input runs as a GEMV above"),
        Op::Rope { x, positions, table, out } => {
            let (t, heads, d) = (x.shape()[0], x.shape()[1], x.shape()[2]);
            ("attention", "rope".into(), vec![p(x), p(positions), p(table), p(out), u(t), u(heads), u(d)], linear_blocks(t * heads * d / 2, 256))
        }
        Op::KvAppend { k, v, positions, k_cache, v_cache, rope } => {
            let (t, g, d) = (k.shape()[0], k.shape()[1], k.shape()[2]);
            let args = vec![p(k), p(v), p(positions), opt(rope), p(k_cache), p(v_cache), u(t), u(g), u(d), u(k_cache.shape()[1])];
            ("attention", "kv_append".into(), args, linear_blocks(t * g * d, 256))
        }
        Op::Attention { .. } => unreachable!("attention launches above"),
        Op::Add { a, b, out } => ("elementwise", "add".into(), vec![p(a), p(b), p(out), u(a.numel())], linear_blocks(a.numel(), 256)),
        Op::SwiGlu { gate, up, out } => ("elementwise", "swiglu".into(), vec![p(gate), p(up), p(out), u(gate.numel())], linear_blocks(gate.numel(), 256)),
        Op::Guidance { cond, uncond, scale, out } => {
            ("elementwise", "guidance".into(), vec![p(cond), p(uncond), p(out), u(cond.numel()), Arg::F32(scale)], linear_blocks(cond.numel(), 256))
        }
        Op::SelectRows { mask, a, b, out } => {
            let args = vec![p(mask), p(a), p(b), p(out), u(a.numel()), u(a.dim_back(0).max(1))];
            ("elementwise", "select_rows".into(), args, linear_blocks(a.numel(), 256))
        }
        Op::Softmax { x, out } => ("elementwise", "softmax".into(), vec![p(x), p(out), u(x.rows()), u(x.dim_back(0))], per_row(x.rows(), 256)),
        Op::Argmax { x, out } => ("sample", "argmax".into(), vec![p(x), p(out), u(x.rows()), u(x.dim_back(0))], per_row(x.rows(), 256)),
        Op::TopKSample { logits, out, params: s } => {
            let args = vec![
                p(logits),
                p(out),
                u(logits.rows()),
                u(logits.dim_back(0)),
                u(s.top_k.min(u32::MAX as usize)),
                u(s.forbid_below),
                Arg::F32(s.temperature),
                Arg::U32(s.seed as u32),
                Arg::U32((s.seed >> 32) as u32),
                Arg::U32(s.counter as u32),
                Arg::U32((s.counter >> 32) as u32),
            ];
            ("sample", "top_k_sample".into(), args, per_row(logits.rows(), 256))
        }
        Op::Linear { x, w, bias, out, epilogue } => {
            let (m, k, n) = (x.shape()[0], x.shape()[1], out.shape()[1]);
            let (act, gate) = match epilogue {
                Epilogue::Store => (None, None),
                Epilogue::Act(f) => (Some(f), None),
                Epilogue::GatedAdd { gate } => (None, Some(gate)),
            };
            let (code, levels) = UnaryFn::kernel_code(act);
            let args = vec![p(x), p(w), opt(bias), opt(gate), p(out), u(m), u(n), u(k), Arg::U32(code), Arg::F32(levels), Arg::U32(0)];
            gemm(c, w, bias, args, m, n)
        }
        Op::Unary { x, out, f } => {
            let (code, levels) = UnaryFn::kernel_code(Some(f));
            ("elementwise", "unary".into(), vec![p(x), p(out), u(x.numel()), Arg::U32(code), Arg::F32(levels)], linear_blocks(x.numel(), 256))
        }
        Op::Blend { a, b, wa, wb, out } => {
            ("elementwise", "blend".into(), vec![p(a), p(b), p(out), u(a.numel()), Arg::F32(wa), Arg::F32(wb)], linear_blocks(a.numel(), 256))
        }
        Op::EulerCfg { x, cond, uncond, scale, dt } => {
            ("elementwise", "euler_cfg".into(), vec![p(x), p(cond), p(uncond), u(x.numel()), Arg::F32(scale), Arg::F32(dt)], linear_blocks(x.numel(), 256))
        }
        Op::LayerNormModulate { x, shift, scale, out, eps } => {
            let (rows, cols) = (x.rows(), x.dim_back(0));
            let args = vec![p(x), p(shift), p(scale), p(out), u(rows), u(cols), Arg::F32(eps)];
            ("elementwise", "layer_norm_modulate".into(), args, per_row(rows, 256))
        }
        Op::Conv1d { x, w, bias, out, conv } => {
            let (batch, l_in, c_in) = (x.shape()[0], x.shape()[1], x.shape()[2]);
            let (l_out, c_out, k) = (out.shape()[1], out.shape()[2], w.shape()[1]);
            let slope = conv.prelu.map_or(0.0, |s| s.get());
            let args = vec![
                p(x),
                p(w),
                opt(bias),
                p(out),
                u(batch),
                u(l_in),
                u(c_in),
                u(l_out),
                u(c_out),
                u(k),
                u(conv.stride),
                u(conv.groups),
                u(conv.dilation),
                u(conv.pad_left),
                u(conv.upsample),
                Arg::U32(conv.prelu.is_some() as u32),
                Arg::F32(slope),
                Arg::U32(conv.accumulate as u32),
            ];
            let (rows, per_group) = (batch * l_out, c_out / conv.groups);
            let min_cols = if conv.groups == 1 { CONV_GEMM_MIN_COLS } else { GROUPED_GEMM_MIN_COLS };
            if rows >= CONV_GEMM_MIN_ROWS && per_group >= min_cols {
                // One implicit GEMM per channel group: rows (b, j), the group's output channels.
                conv_gemm(c, w, "conv1d_gemm", args, conv.groups * rows.div_ceil(64) * per_group.div_ceil(64))
            } else {
                ("conv", format!("conv1d_{}", suffix(w)), args, linear_blocks(out.numel(), 128))
            }
        }
        Op::ConvTranspose1d { x, w, bias, out, stride, padding } => {
            let (batch, l_in, c_in) = (x.shape()[0], x.shape()[1], x.shape()[2]);
            let (l_out, c_out, k) = (out.shape()[1], out.shape()[2], w.shape()[1]);
            let args = vec![p(x), p(w), opt(bias), p(out), u(batch), u(l_in), u(c_in), u(l_out), u(c_out), u(k), u(stride), u(padding)];
            ("conv", format!("conv_transpose1d_{}", suffix(w)), args, linear_blocks(out.numel(), 128))
        }
        Op::Conv2d { x, w, bias, out, conv } => {
            let (batch, h, wd, c_in) = (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]);
            let (c_out, kh, kw) = (w.shape()[0], w.shape()[1], w.shape()[2]);
            let (oh, ow) = (out.shape()[1], out.shape()[2]);
            let args = vec![
                p(x),
                p(w),
                opt(bias),
                p(out),
                u(batch),
                u(h),
                u(wd),
                u(c_in),
                u(oh),
                u(ow),
                u(c_out),
                u(kh),
                u(kw),
                u(conv.stride[0]),
                u(conv.stride[1]),
                u(conv.pad[0]),
                u(conv.pad[1]),
                Arg::U32(conv.accumulate as u32),
                Arg::U32(conv.relu as u32),
            ];
            conv_gemm(c, w, "conv2d", args, (batch * oh * ow).div_ceil(64) * c_out.div_ceil(64))
        }
        Op::GroupNorm { x, weight, bias, out, groups, eps } => {
            let (batch, t, ch) = (x.shape()[0], x.shape()[1], x.shape()[2]);
            let args = vec![p(x), p(weight), p(bias), p(out), u(batch), u(t), u(ch), u(groups), Arg::F32(eps)];
            ("group_norm", format!("group_norm_{}", suffix(weight)), args, per_row(batch * groups, 256))
        }
        Op::Glu { x, out } => ("elementwise", "glu".into(), vec![p(x), p(out), u(out.numel()), u(out.dim_back(0))], linear_blocks(out.numel(), 256)),
        Op::Film { x, p: pt, out, gamma_scale } => {
            let args = vec![p(x), p(pt), p(out), u(x.numel()), u(x.dim_back(0)), Arg::F32(gamma_scale)];
            ("elementwise", "film".into(), args, linear_blocks(x.numel(), 256))
        }
        Op::RvqEncode { x, codebooks, codes, quantized } => {
            let (n, d) = (x.shape()[0], x.shape()[1]);
            let (levels, k) = (codebooks.shape()[0], codebooks.shape()[1]);
            let args = vec![p(x), p(codebooks), p(codes), p(quantized), u(n), u(d), u(levels), u(k)];
            // RVQ_ROWS rows per block.
            ("rvq_encode", format!("rvq_encode_{}", suffix(codebooks)), args, per_row(n.div_ceil(4), 256))
        }
        Op::RelPosAttention { q, k, v, gate, gate_const, rel, out } => {
            let (t, heads, d) = (q.shape()[0], q.shape()[1], q.shape()[2]);
            let (rows, keys) = attention_tile(t, d);
            let scale = 1.0 / (d as f32).sqrt();
            let args = vec![p(q), p(k), p(v), p(gate), p(gate_const), p(rel), p(out), u(t), u(heads), u(d), u(rows), u(keys), Arg::F32(scale)];
            ("rel_pos_attention", "rel_pos_attention".into(), args, per_row(heads * t.div_ceil(rows), 128))
        }
    };
    if op.outputs().iter().all(|t| t.numel() == 0) {
        return Ok(());
    }
    c.launch(file, &name, &args, cfg)
}
