//! The op set. Each variant names its tensors and scalar parameters; `Op::validate`
//! checks shapes, dtypes and aliasing once, so backends can rely on them.
//!
//! Activations are f32, ids and positions u32; weights (`table`, `weight`, `w`) may be
//! f32, f16 or bf16 and are widened to f32 on load. All tensors are contiguous row-major.

use crate::{Backend, Error, Result, Tensor};

/// How a matmul weight is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightLayout {
    /// `w` is [N, K] (`nn.Linear`): out = x · wᵀ.
    OutIn,
    /// `w` is [K, N] (the LM's `audio_head[i]`): out = x · w.
    InOut,
}

/// How a matmul may schedule the rows of x.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RowOrder {
    /// Any blocking over rows (prefill): the fastest kernel for the row count.
    #[default]
    Free,
    /// Every row bit-identical to computing it alone (M = 1), whatever the row count:
    /// batched decode, where a sequence's output may not depend on who shares its step.
    /// Weights are still read once for all rows.
    Invariant,
}

/// Parameters of top-k / temperature sampling (see `cpu::sample` for the exact rule).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SampleParams {
    /// Keep the k largest logits (ties at the threshold are kept); 0 keeps all.
    pub top_k: usize,
    /// Logits are divided by this before sampling; must be > 0.
    pub temperature: f32,
    /// Ids below this are never sampled (0 forbids nothing).
    pub forbid_below: usize,
    /// RNG stream: the draw for (row r, id i) depends only on (seed, counter + r, i).
    pub seed: u64,
    pub counter: u64,
}

/// What a `Linear` does with x · wᵀ + bias before storing it.
pub enum Epilogue<'a, B: Backend> {
    Store,
    /// out = act(y).
    Act(UnaryFn),
    /// out += gate ⊙ y, gate [N] f32 broadcast over rows (the DiT's gated residual).
    GatedAdd { gate: &'a Tensor<B> },
}

impl<B: Backend> Clone for Epilogue<'_, B> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<B: Backend> Copy for Epilogue<'_, B> {}

/// Elementwise functions, computed in f32 as torch computes them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum UnaryFn {
    /// x · sigmoid(x).
    Silu,
    /// 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))).
    GeluTanh,
    /// round_half_even(levels · x) / levels (SQ-Codec's input quantiser).
    RoundToLevels(f32),
    /// 0.5·x·(1 + erf(x/√2)) (exact GELU: Whisper, WavLM).
    GeluErf,
    /// max(x, 0).
    Relu,
}

impl UnaryFn {
    /// (code, levels) of an optional activation as the GPU kernels take it
    /// (`activations.wgsl`, `activate` in `common.cuh`): 0 identity, 1 tanh-GELU, 2 SiLU,
    /// 3 round-to-levels, 4 erf-GELU, 5 ReLU.
    #[cfg(any(feature = "wgpu", feature = "cuda"))]
    pub(crate) fn kernel_code(f: Option<UnaryFn>) -> (u32, f32) {
        match f {
            None => (0, 0.0),
            Some(UnaryFn::GeluTanh) => (1, 0.0),
            Some(UnaryFn::Silu) => (2, 0.0),
            Some(UnaryFn::RoundToLevels(l)) => (3, l),
            Some(UnaryFn::GeluErf) => (4, 0.0),
            Some(UnaryFn::Relu) => (5, 0.0),
        }
    }
}

pub enum Op<'a, B: Backend> {
    /// out[n, :] = table[ids[n], :].  table [V, C] float, ids [N] u32, out [N, C] f32.
    EmbedRows { table: &'a Tensor<B>, ids: &'a Tensor<B>, out: &'a Tensor<B> },
    /// out[n, :] = Σ_k (mask[n, k] != 0) · table[k·card + codes[n, k], :], summed in k order.
    /// table [K·card, C] float, codes [N, K] u32, mask [N, K] u32, out [N, C] f32.
    EmbedCodebookSum { table: &'a Tensor<B>, codes: &'a Tensor<B>, mask: &'a Tensor<B>, card: usize, out: &'a Tensor<B> },
    /// out = x · rsqrt(mean(x²) + eps) · weight per row.  x [R, C] f32, weight [C] float, out [R, C] f32.
    RmsNorm { x: &'a Tensor<B>, weight: &'a Tensor<B>, out: &'a Tensor<B>, eps: f32 },
    /// out (+)= x · W.  x [M, K] f32, w [N, K] or [K, N] float, out [M, N] f32.
    MatMul { x: &'a Tensor<B>, w: &'a Tensor<B>, out: &'a Tensor<B>, layout: WeightLayout, accumulate: bool, rows: RowOrder },
    /// The gated MLP input in one pass: out = silu(x · w_gateᵀ) · (x · w_upᵀ).
    /// x [M, K] f32; w_gate, w_up [F, K] float (same dtype); out [M, F] f32.
    GateUp { x: &'a Tensor<B>, w_gate: &'a Tensor<B>, w_up: &'a Tensor<B>, out: &'a Tensor<B>, rows: RowOrder },
    /// Rotate-half RoPE at per-row positions.  x [T, H, D] f32, positions [T] u32 (< P),
    /// table [P, D] f32 holding cos(p·θ_j) in columns 0..D/2 and sin(p·θ_j) in D/2..D
    /// (tables, as torch builds them, make every backend rotate identically), out [T, H, D].
    Rope { x: &'a Tensor<B>, positions: &'a Tensor<B>, table: &'a Tensor<B>, out: &'a Tensor<B> },
    /// cache[g, positions[t], :] = src[t, g, :] for K and V; with `rope` (a `Rope` table
    /// [P, D]) K is rotated at its position on the way (RoPE fused with the cache write).
    /// k, v [T, G, D] f32; k_cache, v_cache [G, capacity, D] f32; positions [T] u32 (< capacity).
    KvAppend { k: &'a Tensor<B>, v: &'a Tensor<B>, positions: &'a Tensor<B>, k_cache: &'a Tensor<B>, v_cache: &'a Tensor<B>, rope: Option<&'a Tensor<B>> },
    /// Grouped-query attention over the first `kv_len` cache rows, scale 1/√D.
    /// q [T, H, D] f32; caches [G, capacity, D] f32 with H % G == 0; out [T, H, D] f32.
    /// Causal: query t is at position kv_len − T + t and sees keys 0..=that position.
    Attention { q: &'a Tensor<B>, k_cache: &'a Tensor<B>, v_cache: &'a Tensor<B>, out: &'a Tensor<B>, kv_len: usize, causal: bool },
    /// out = silu(gate) · up.  All [R, F] f32.
    SwiGlu { gate: &'a Tensor<B>, up: &'a Tensor<B>, out: &'a Tensor<B> },
    /// out = a + b.  All the same shape, f32; `out` may be `a` or `b` itself.
    Add { a: &'a Tensor<B>, b: &'a Tensor<B>, out: &'a Tensor<B> },
    /// Classifier-free guidance: out = uncond + scale · (cond − uncond).  All [R, C] f32;
    /// `out` may be either input itself.
    Guidance { cond: &'a Tensor<B>, uncond: &'a Tensor<B>, scale: f32, out: &'a Tensor<B> },
    /// out[r] = if mask[r] != 0 { a[r] } else { b[r] }.  a, b, out [R, C] f32, mask [R] u32.
    SelectRows { mask: &'a Tensor<B>, a: &'a Tensor<B>, b: &'a Tensor<B>, out: &'a Tensor<B> },
    /// Row-wise softmax.  x, out [R, C] f32.
    Softmax { x: &'a Tensor<B>, out: &'a Tensor<B> },
    /// Index of the first maximum of each row.  x [R, C] f32, out [R] u32.
    Argmax { x: &'a Tensor<B>, out: &'a Tensor<B> },
    /// One sampled id per row.  logits [R, C] f32, out [R] u32.
    TopKSample { logits: &'a Tensor<B>, out: &'a Tensor<B>, params: SampleParams },
    /// y = x · wᵀ (+ bias), then `epilogue`.  x [M, K] f32, w [N, K] float, bias [N] float,
    /// out [M, N] f32.
    Linear { x: &'a Tensor<B>, w: &'a Tensor<B>, bias: Option<&'a Tensor<B>>, out: &'a Tensor<B>, epilogue: Epilogue<'a, B> },
    /// out = f(x).  x, out same shape f32; `out` may be `x` itself.
    Unary { x: &'a Tensor<B>, out: &'a Tensor<B>, f: UnaryFn },
    /// LayerNorm without affine (biased variance), then out = n · (1 + scale) + shift.
    /// x, out [R, C] f32; shift, scale [C] f32.
    LayerNormModulate { x: &'a Tensor<B>, shift: &'a Tensor<B>, scale: &'a Tensor<B>, out: &'a Tensor<B>, eps: f32 },
    /// Time-major 1-D convolution as an implicit GEMM:
    /// y[b, t, o] = bias[o] + Σ_k Σ_i w[o, k, i] · u[b, t·stride + k·dilation − pad_left, g·C_in/groups + i]
    /// (g the group of o), where u is x
    /// with every frame repeated `upsample` times and zero outside.  Then y = prelu(y, slope)
    /// if `prelu` is set, and out = y or out += y (`accumulate`).
    /// x [B, L_in, C_in] f32, w [C_out, K, C_in] float, bias [C_out] float, out [B, L_out, C_out] f32.
    Conv1d { x: &'a Tensor<B>, w: &'a Tensor<B>, bias: Option<&'a Tensor<B>>, out: &'a Tensor<B>, conv: ConvParams },
    /// Time-major transposed convolution (PyTorch ConvTranspose1d semantics, output cropped to
    /// out's length): y[b, j, o] = bias[o] + Σ_{t,k: t·stride + k − padding = j} Σ_i w[o, k, i] · x[b, t, i].
    /// x [B, L_in, C_in] f32, w [C_out, K, C_in] float, bias [C_out] float, out [B, L_out, C_out] f32
    /// with L_out <= (L_in − 1)·stride − 2·padding + K.
    ConvTranspose1d { x: &'a Tensor<B>, w: &'a Tensor<B>, bias: Option<&'a Tensor<B>>, out: &'a Tensor<B>, stride: usize, padding: usize },
    /// One Euler step with classifier-free guidance, in place:
    /// x += dt · (uncond + scale · (cond − uncond)).  All [R, C] f32.
    EulerCfg { x: &'a Tensor<B>, cond: &'a Tensor<B>, uncond: &'a Tensor<B>, scale: f32, dt: f32 },
    /// out = wa · a + wb · b.  All the same shape f32; `out` may be either input itself.
    Blend { a: &'a Tensor<B>, b: &'a Tensor<B>, wa: f32, wb: f32, out: &'a Tensor<B> },
    /// Channels-last 2-D convolution (zeros outside the input):
    /// y[b, i, j, o] = bias[o] + Σ_{p,q,c} w[o, p, q, c] · x[b, i·sh + p − ph, j·sw + q − pw, c];
    /// then y += out (`accumulate`), then y = max(y, 0) (`relu`).
    /// x [B, H, W, C_in] f32, w [C_out, KH, KW, C_in] float, bias [C_out] float, out [B, H_out, W_out, C_out] f32.
    Conv2d { x: &'a Tensor<B>, w: &'a Tensor<B>, bias: Option<&'a Tensor<B>>, out: &'a Tensor<B>, conv: Conv2dParams },
    /// GroupNorm over time-major activations: for each (b, group) the mean and biased
    /// variance over all T frames and the group's C/groups channels, then affine per channel.
    /// x, out [B, T, C] f32; weight, bias [C] float.
    GroupNorm { x: &'a Tensor<B>, weight: &'a Tensor<B>, bias: &'a Tensor<B>, out: &'a Tensor<B>, groups: usize, eps: f32 },
    /// Gated linear unit: out = x[:, :F] · sigmoid(x[:, F:]).  x [R, 2F] f32, out [R, F] f32.
    Glu { x: &'a Tensor<B>, out: &'a Tensor<B> },
    /// FiLM: out = (1 + gamma_scale · tanh(p[:, :C])) · x + p[:, C:].  x, out [R, C] f32, p [R, 2C] f32.
    Film { x: &'a Tensor<B>, p: &'a Tensor<B>, out: &'a Tensor<B>, gamma_scale: f32 },
    /// Residual VQ nearest-code search, all levels per row: r = x; for level l,
    /// codes[n, l] = argmin_i ‖r − E_l[i]‖² (expanded as ‖r‖² + ‖E_l[i]‖² − 2 r·E_l[i] in f32,
    /// first index on ties), r −= E_l[codes[n, l]]; quantized = Σ_l E_l[codes[n, l]].
    /// x [N, D] f32, codebooks [L, K, D] float, codes [N, L] u32, quantized [N, D] f32.
    RvqEncode { x: &'a Tensor<B>, codebooks: &'a Tensor<B>, codes: &'a Tensor<B>, quantized: &'a Tensor<B> },
    /// Bidirectional self-attention with WavLM's gated relative position bias:
    /// logits[h, i, j] = q_i·k_j / √D + g[i, h] · rel[h, j − i + T − 1], where
    /// g = σ(Σ z[i, h, 0..4]) · (σ(Σ z[i, h, 4..8]) · gate_const[h] − 1) + 2.
    /// q, k, v, out [T, H, D] f32; gate z [T, H, 8] f32; gate_const [H] f32; rel [H, 2T − 1] f32.
    RelPosAttention {
        q: &'a Tensor<B>,
        k: &'a Tensor<B>,
        v: &'a Tensor<B>,
        gate: &'a Tensor<B>,
        gate_const: &'a Tensor<B>,
        rel: &'a Tensor<B>,
        out: &'a Tensor<B>,
    },
}

/// Geometry and epilogue of a `Conv2d`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dParams {
    pub stride: [usize; 2],
    pub pad: [usize; 2],
    pub accumulate: bool,
    pub relu: bool,
}

/// Geometry of a `Conv1d`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvParams {
    /// Output frame t starts at input position t·stride.
    pub stride: usize,
    /// Channel groups: output channel o reads input channels of group o / (C_out / groups);
    /// w is then [C_out, K, C_in / groups].
    pub groups: usize,
    pub dilation: usize,
    pub pad_left: usize,
    pub upsample: usize,
    pub prelu: Option<PreluSlope>,
    pub accumulate: bool,
}

/// A PReLU slope (bit pattern of an f32, so `ConvParams` stays `Eq`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PreluSlope(pub u32);

impl PreluSlope {
    pub fn new(slope: f32) -> Self {
        PreluSlope(slope.to_bits())
    }
    pub fn get(self) -> f32 {
        f32::from_bits(self.0)
    }
}

impl ConvParams {
    /// A plain convolution: no dilation, padding, upsampling or epilogue.
    pub fn plain() -> Self {
        ConvParams { stride: 1, groups: 1, dilation: 1, pad_left: 0, upsample: 1, prelu: None, accumulate: false }
    }
}

/// An op that passed `Op::validate`. Only this module can make one.
pub struct ValidOp<'o, 'a, B: Backend>(&'o Op<'a, B>);

impl<'o, 'a, B: Backend> std::ops::Deref for ValidOp<'o, 'a, B> {
    type Target = Op<'a, B>;
    fn deref(&self) -> &Op<'a, B> {
        self.0
    }
}

/// Validates `op`, checks backend support and enqueues it.
pub fn run<B: Backend>(backend: &B, op: &Op<'_, B>) -> Result<()> {
    let valid = op.validate()?;
    if !backend.supports(op) {
        return Err(Error::Unsupported { op: op.name(), backend: B::NAME });
    }
    backend.exec(valid)
}

impl<'a, B: Backend> Op<'a, B> {
    pub fn name(&self) -> &'static str {
        match self {
            Op::EmbedRows { .. } => "embed_rows",
            Op::EmbedCodebookSum { .. } => "embed_codebook_sum",
            Op::RmsNorm { .. } => "rms_norm",
            Op::MatMul { .. } => "matmul",
            Op::GateUp { .. } => "gate_up",
            Op::Rope { .. } => "rope",
            Op::KvAppend { .. } => "kv_append",
            Op::Attention { .. } => "attention",
            Op::SwiGlu { .. } => "swiglu",
            Op::Add { .. } => "add",
            Op::SelectRows { .. } => "select_rows",
            Op::Guidance { .. } => "guidance",
            Op::Softmax { .. } => "softmax",
            Op::Argmax { .. } => "argmax",
            Op::TopKSample { .. } => "top_k_sample",
            Op::Linear { .. } => "linear",
            Op::Unary { .. } => "unary",
            Op::LayerNormModulate { .. } => "layer_norm_modulate",
            Op::Conv1d { .. } => "conv1d",
            Op::ConvTranspose1d { .. } => "conv_transpose1d",
            Op::EulerCfg { .. } => "euler_cfg",
            Op::Blend { .. } => "blend",
            Op::Conv2d { .. } => "conv2d",
            Op::GroupNorm { .. } => "group_norm",
            Op::Glu { .. } => "glu",
            Op::Film { .. } => "film",
            Op::RvqEncode { .. } => "rvq_encode",
            Op::RelPosAttention { .. } => "rel_pos_attention",
        }
    }

    /// The tensors this op writes.
    pub fn outputs(&self) -> Vec<&'a Tensor<B>> {
        match *self {
            Op::KvAppend { k_cache, v_cache, .. } => vec![k_cache, v_cache],
            Op::EmbedRows { out, .. }
            | Op::EmbedCodebookSum { out, .. }
            | Op::RmsNorm { out, .. }
            | Op::MatMul { out, .. }
            | Op::GateUp { out, .. }
            | Op::Rope { out, .. }
            | Op::Attention { out, .. }
            | Op::SwiGlu { out, .. }
            | Op::Add { out, .. }
            | Op::SelectRows { out, .. }
            | Op::Guidance { out, .. }
            | Op::Softmax { out, .. }
            | Op::Argmax { out, .. }
            | Op::TopKSample { out, .. }
            | Op::Linear { out, .. }
            | Op::Unary { out, .. }
            | Op::LayerNormModulate { out, .. }
            | Op::Conv1d { out, .. }
            | Op::ConvTranspose1d { out, .. }
            | Op::Blend { out, .. }
            | Op::Conv2d { out, .. }
            | Op::GroupNorm { out, .. }
            | Op::Glu { out, .. }
            | Op::Film { out, .. }
            | Op::RelPosAttention { out, .. } => vec![out],
            Op::EulerCfg { x, .. } => vec![x],
            Op::RvqEncode { codes, quantized, .. } => vec![codes, quantized],
        }
    }

    /// The tensors this op reads, with their argument names.
    pub fn inputs(&self) -> Vec<(&'static str, &'a Tensor<B>)> {
        match *self {
            Op::EmbedRows { table, ids, .. } => vec![("table", table), ("ids", ids)],
            Op::EmbedCodebookSum { table, codes, mask, .. } => vec![("table", table), ("codes", codes), ("mask", mask)],
            Op::RmsNorm { x, weight, .. } => vec![("x", x), ("weight", weight)],
            Op::MatMul { x, w, .. } => vec![("x", x), ("w", w)],
            Op::GateUp { x, w_gate, w_up, .. } => vec![("x", x), ("w_gate", w_gate), ("w_up", w_up)],
            Op::Rope { x, positions, table, .. } => vec![("x", x), ("positions", positions), ("table", table)],
            Op::KvAppend { k, v, positions, rope, .. } => {
                let mut inputs = vec![("k", k), ("v", v), ("positions", positions)];
                inputs.extend(rope.map(|t| ("rope", t)));
                inputs
            }
            Op::Attention { q, k_cache, v_cache, .. } => vec![("q", q), ("k_cache", k_cache), ("v_cache", v_cache)],
            Op::SwiGlu { gate, up, .. } => vec![("gate", gate), ("up", up)],
            Op::Add { a, b, .. } => vec![("a", a), ("b", b)],
            Op::SelectRows { mask, a, b, .. } => vec![("mask", mask), ("a", a), ("b", b)],
            Op::Guidance { cond, uncond, .. } => vec![("cond", cond), ("uncond", uncond)],
            Op::Softmax { x, .. } | Op::Argmax { x, .. } => vec![("x", x)],
            Op::TopKSample { logits, .. } => vec![("logits", logits)],
            Op::Linear { x, w, bias, epilogue, .. } => {
                let mut v = vec![("x", x), ("w", w)];
                v.extend(bias.map(|b| ("bias", b)));
                if let Epilogue::GatedAdd { gate } = epilogue {
                    v.push(("gate", gate));
                }
                v
            }
            Op::Unary { x, .. } => vec![("x", x)],
            Op::LayerNormModulate { x, shift, scale, .. } => vec![("x", x), ("shift", shift), ("scale", scale)],
            Op::Conv1d { x, w, bias, .. } | Op::ConvTranspose1d { x, w, bias, .. } => {
                let mut v = vec![("x", x), ("w", w)];
                v.extend(bias.map(|b| ("bias", b)));
                v
            }
            Op::EulerCfg { cond, uncond, .. } => vec![("cond", cond), ("uncond", uncond)],
            Op::Blend { a, b, .. } => vec![("a", a), ("b", b)],
            Op::Conv2d { x, w, bias, .. } => {
                let mut v = vec![("x", x), ("w", w)];
                v.extend(bias.map(|b| ("bias", b)));
                v
            }
            Op::GroupNorm { x, weight, bias, .. } => vec![("x", x), ("weight", weight), ("bias", bias)],
            Op::Glu { x, .. } => vec![("x", x)],
            Op::Film { x, p, .. } => vec![("x", x), ("p", p)],
            Op::RvqEncode { x, codebooks, .. } => vec![("x", x), ("codebooks", codebooks)],
            Op::RelPosAttention { q, k, v, gate, gate_const, rel, .. } => {
                vec![("q", q), ("k", k), ("v", v), ("gate", gate), ("gate_const", gate_const), ("rel", rel)]
            }
        }
    }

    /// Checks every shape, dtype and aliasing rule of the op.
    pub fn validate(&self) -> Result<ValidOp<'_, 'a, B>> {
        crate::op_check::check(self)?;
        Ok(ValidOp(self))
    }
}
