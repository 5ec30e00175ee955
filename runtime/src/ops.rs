//! Named entry points for every op (validate + dispatch), and host transfer helpers.
//! Shapes are documented on the `Op` variants.

use crate::op::{run, Conv2dParams, ConvParams, Epilogue, Op, RowOrder, SampleParams, UnaryFn, WeightLayout};
use crate::{Backend, DType, Result, Tensor};

pub fn embed_rows<B: Backend>(b: &B, table: &Tensor<B>, ids: &Tensor<B>, out: &Tensor<B>) -> Result<()> {
    run(b, &Op::EmbedRows { table, ids, out })
}

pub fn embed_codebook_sum<B: Backend>(b: &B, table: &Tensor<B>, codes: &Tensor<B>, mask: &Tensor<B>, card: usize, out: &Tensor<B>) -> Result<()> {
    run(b, &Op::EmbedCodebookSum { table, codes, mask, card, out })
}

pub fn rms_norm<B: Backend>(b: &B, x: &Tensor<B>, weight: &Tensor<B>, out: &Tensor<B>, eps: f32) -> Result<()> {
    run(b, &Op::RmsNorm { x, weight, out, eps })
}

pub fn matmul<B: Backend>(b: &B, x: &Tensor<B>, w: &Tensor<B>, out: &Tensor<B>, layout: WeightLayout, accumulate: bool) -> Result<()> {
    run(b, &Op::MatMul { x, w, out, layout, accumulate, rows: RowOrder::Free })
}

/// `matmul` with an explicit row order (`RowOrder::Invariant` for batched decode).
pub fn matmul_rows<B: Backend>(b: &B, x: &Tensor<B>, w: &Tensor<B>, out: &Tensor<B>, layout: WeightLayout, accumulate: bool, rows: RowOrder) -> Result<()> {
    run(b, &Op::MatMul { x, w, out, layout, accumulate, rows })
}

pub fn gate_up<B: Backend>(b: &B, x: &Tensor<B>, w_gate: &Tensor<B>, w_up: &Tensor<B>, out: &Tensor<B>, rows: RowOrder) -> Result<()> {
    run(b, &Op::GateUp { x, w_gate, w_up, out, rows })
}

pub fn rope<B: Backend>(b: &B, x: &Tensor<B>, positions: &Tensor<B>, table: &Tensor<B>, out: &Tensor<B>) -> Result<()> {
    run(b, &Op::Rope { x, positions, table, out })
}

/// The RoPE table [positions, D] for frequencies θ (D = 2·θ.len()): cos(p·θ_j) then
/// sin(p·θ_j), the angle formed in f32 as torch forms it.
pub fn rope_table(inv_freq: &[f32], positions: usize) -> Vec<f32> {
    let half = inv_freq.len();
    let mut table = vec![0f32; positions * 2 * half];
    for (p, row) in table.chunks_mut(2 * half).enumerate() {
        for (j, &f) in inv_freq.iter().enumerate() {
            let angle = p as f32 * f;
            row[j] = angle.cos();
            row[half + j] = angle.sin();
        }
    }
    table
}

pub fn kv_append<B: Backend>(b: &B, k: &Tensor<B>, v: &Tensor<B>, positions: &Tensor<B>, k_cache: &Tensor<B>, v_cache: &Tensor<B>) -> Result<()> {
    run(b, &Op::KvAppend { k, v, positions, k_cache, v_cache, rope: None })
}

/// `kv_append` with K rotated by RoPE (`table` as for `rope`) on its way into the cache.
pub fn rope_kv_append<B: Backend>(b: &B, k: &Tensor<B>, v: &Tensor<B>, positions: &Tensor<B>, table: &Tensor<B>, k_cache: &Tensor<B>, v_cache: &Tensor<B>) -> Result<()> {
    run(b, &Op::KvAppend { k, v, positions, k_cache, v_cache, rope: Some(table) })
}

pub fn attention<B: Backend>(b: &B, q: &Tensor<B>, k_cache: &Tensor<B>, v_cache: &Tensor<B>, out: &Tensor<B>, kv_len: usize, causal: bool) -> Result<()> {
    run(b, &Op::Attention { q, k_cache, v_cache, out, kv_len, causal })
}

pub fn swiglu<B: Backend>(b: &B, gate: &Tensor<B>, up: &Tensor<B>, out: &Tensor<B>) -> Result<()> {
    run(b, &Op::SwiGlu { gate, up, out })
}

pub fn add<B: Backend>(bk: &B, a: &Tensor<B>, b: &Tensor<B>, out: &Tensor<B>) -> Result<()> {
    run(bk, &Op::Add { a, b, out })
}

pub fn guidance<B: Backend>(b: &B, cond: &Tensor<B>, uncond: &Tensor<B>, scale: f32, out: &Tensor<B>) -> Result<()> {
    run(b, &Op::Guidance { cond, uncond, scale, out })
}

pub fn select_rows<B: Backend>(bk: &B, mask: &Tensor<B>, a: &Tensor<B>, b: &Tensor<B>, out: &Tensor<B>) -> Result<()> {
    run(bk, &Op::SelectRows { mask, a, b, out })
}

pub fn softmax<B: Backend>(b: &B, x: &Tensor<B>, out: &Tensor<B>) -> Result<()> {
    run(b, &Op::Softmax { x, out })
}

pub fn argmax<B: Backend>(b: &B, x: &Tensor<B>, out: &Tensor<B>) -> Result<()> {
    run(b, &Op::Argmax { x, out })
}

pub fn top_k_sample<B: Backend>(b: &B, logits: &Tensor<B>, out: &Tensor<B>, params: SampleParams) -> Result<()> {
    run(b, &Op::TopKSample { logits, out, params })
}

/// Uploads f32 values, stored as `dtype` (rounded to nearest even for f16/bf16).
pub fn upload_f32<B: Backend>(b: &B, shape: &[usize], values: &[f32], dtype: DType) -> Result<Tensor<B>> {
    b.upload(dtype, shape, &crate::dtype::f32_to_bytes(values, dtype))
}

pub fn upload_u32<B: Backend>(b: &B, shape: &[usize], values: &[u32]) -> Result<Tensor<B>> {
    b.upload(DType::U32, shape, bytemuck::cast_slice(values))
}

/// Downloads a float tensor widened to f32.
pub fn download_f32<B: Backend>(b: &B, t: &Tensor<B>) -> Result<Vec<f32>> {
    Ok(crate::dtype::bytes_to_f32(&b.download(t)?, t.dtype()))
}

pub fn download_u32<B: Backend>(b: &B, t: &Tensor<B>) -> Result<Vec<u32>> {
    let bytes = b.download(t)?;
    Ok(bytes.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
}

pub fn linear<'a, B: Backend>(b: &B, x: &Tensor<B>, w: &Tensor<B>, bias: Option<&Tensor<B>>, out: &Tensor<B>, epilogue: Epilogue<'a, B>) -> Result<()> {
    run(b, &Op::Linear { x, w, bias, out, epilogue })
}

pub fn unary<B: Backend>(b: &B, x: &Tensor<B>, out: &Tensor<B>, f: UnaryFn) -> Result<()> {
    run(b, &Op::Unary { x, out, f })
}

pub fn layer_norm_modulate<B: Backend>(b: &B, x: &Tensor<B>, shift: &Tensor<B>, scale: &Tensor<B>, out: &Tensor<B>, eps: f32) -> Result<()> {
    run(b, &Op::LayerNormModulate { x, shift, scale, out, eps })
}

pub fn conv1d<B: Backend>(b: &B, x: &Tensor<B>, w: &Tensor<B>, bias: Option<&Tensor<B>>, out: &Tensor<B>, conv: ConvParams) -> Result<()> {
    run(b, &Op::Conv1d { x, w, bias, out, conv })
}

pub fn conv_transpose1d<B: Backend>(b: &B, x: &Tensor<B>, w: &Tensor<B>, bias: Option<&Tensor<B>>, out: &Tensor<B>, stride: usize, padding: usize) -> Result<()> {
    run(b, &Op::ConvTranspose1d { x, w, bias, out, stride, padding })
}

pub fn euler_cfg<B: Backend>(b: &B, x: &Tensor<B>, cond: &Tensor<B>, uncond: &Tensor<B>, scale: f32, dt: f32) -> Result<()> {
    run(b, &Op::EulerCfg { x, cond, uncond, scale, dt })
}

pub fn blend<B: Backend>(bk: &B, a: &Tensor<B>, b: &Tensor<B>, wa: f32, wb: f32, out: &Tensor<B>) -> Result<()> {
    run(bk, &Op::Blend { a, b, wa, wb, out })
}

pub fn conv2d<B: Backend>(b: &B, x: &Tensor<B>, w: &Tensor<B>, bias: Option<&Tensor<B>>, out: &Tensor<B>, conv: Conv2dParams) -> Result<()> {
    run(b, &Op::Conv2d { x, w, bias, out, conv })
}

#[allow(clippy::too_many_arguments)]
pub fn group_norm<B: Backend>(b: &B, x: &Tensor<B>, weight: &Tensor<B>, bias: &Tensor<B>, out: &Tensor<B>, groups: usize, eps: f32) -> Result<()> {
    run(b, &Op::GroupNorm { x, weight, bias, out, groups, eps })
}

pub fn glu<B: Backend>(b: &B, x: &Tensor<B>, out: &Tensor<B>) -> Result<()> {
    run(b, &Op::Glu { x, out })
}

pub fn film<B: Backend>(b: &B, x: &Tensor<B>, p: &Tensor<B>, out: &Tensor<B>, gamma_scale: f32) -> Result<()> {
    run(b, &Op::Film { x, p, out, gamma_scale })
}

pub fn rvq_encode<B: Backend>(b: &B, x: &Tensor<B>, codebooks: &Tensor<B>, codes: &Tensor<B>, quantized: &Tensor<B>) -> Result<()> {
    run(b, &Op::RvqEncode { x, codebooks, codes, quantized })
}

#[allow(clippy::too_many_arguments)]
pub fn rel_pos_attention<B: Backend>(
    b: &B,
    q: &Tensor<B>,
    k: &Tensor<B>,
    v: &Tensor<B>,
    gate: &Tensor<B>,
    gate_const: &Tensor<B>,
    rel: &Tensor<B>,
    out: &Tensor<B>,
) -> Result<()> {
    run(b, &Op::RelPosAttention { q, k, v, gate, gate_const, rel, out })
}
