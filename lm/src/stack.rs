//! One Llama stack (litgpt `GPT.forward` without embedding or head): pre-RMSNorm blocks
//! with GQA attention over a KV cache and a SwiGLU MLP, then the final RMSNorm.

use uniaudio_runtime::{op, ops, Backend, DType, Op, Tensor, WeightLayout};

use crate::config::StackConfig;
use crate::error::Result;
use crate::weights::StackWeights;

/// Per-layer K and V caches, [n_kv, capacity, hs] each.
pub struct KvCache<B: Backend> {
    k: Vec<Tensor<B>>,
    v: Vec<Tensor<B>>,
}

impl<B: Backend> KvCache<B> {
    pub fn new(b: &B, s: &StackConfig, capacity: usize) -> Result<Self> {
        let shape = [s.n_query_groups, capacity, s.head_size];
        let alloc = || (0..s.n_layer).map(|_| b.alloc(DType::F32, &shape)).collect::<uniaudio_runtime::Result<Vec<_>>>();
        Ok(KvCache { k: alloc()?, v: alloc()? })
    }
}

/// Activations for T rows, reused across calls with the same T.
struct Scratch<B: Backend> {
    rows: usize,
    normed: Tensor<B>, // [T, e]
    qkv: Tensor<B>,    // [T, (nh + 2·nkv)·hs]; for T = 1, q, k and v are views into it
    q: Tensor<B>,      // [T, nh·hs]
    k: Tensor<B>,      // [T, nkv·hs]
    v: Tensor<B>,      // [T, nkv·hs]
    q_rot: Tensor<B>,  // [T, nh, hs]
    att: Tensor<B>,    // [T, nh, hs]
    gate: Tensor<B>,   // [T, f]
    up: Tensor<B>,     // [T, f]
}

impl<B: Backend> Scratch<B> {
    fn new(b: &B, s: &StackConfig, t: usize) -> Result<Self> {
        let f32 = |shape: &[usize]| b.alloc(DType::F32, shape);
        let qkv = f32(&[t, s.qkv_rows()])?;
        // One fused projection serves decode; prefill rows would interleave Q, K and V.
        let (q, k, v) = if t == 1 {
            let flat = qkv.reshape(&[s.qkv_rows()])?;
            let view = |start, len| flat.narrow(start, len)?.reshape(&[1, len]);
            (view(0, s.q_dim())?, view(s.q_dim(), s.kv_dim())?, view(s.q_dim() + s.kv_dim(), s.kv_dim())?)
        } else {
            (f32(&[t, s.q_dim()])?, f32(&[t, s.kv_dim()])?, f32(&[t, s.kv_dim()])?)
        };
        Ok(Scratch {
            rows: t,
            normed: f32(&[t, s.n_embd])?,
            qkv,
            q,
            k,
            v,
            q_rot: f32(&[t, s.n_head, s.head_size])?,
            att: f32(&[t, s.n_head, s.head_size])?,
            gate: f32(&[t, s.intermediate_size])?,
            up: f32(&[t, s.intermediate_size])?,
        })
    }
}

/// A stack's config and RoPE frequencies, plus scratch space for one session.
pub struct Stack<B: Backend> {
    config: StackConfig,
    rope_table: Tensor<B>, // [positions, hs]: cos | sin
    scratch: Option<Scratch<B>>,
}

impl<B: Backend> Stack<B> {
    /// `positions`: how many positions the stack's cache holds.
    pub fn new(b: &B, config: &StackConfig, positions: usize) -> Result<Self> {
        let table = ops::rope_table(&crate::rope::inv_freq(config), positions);
        let rope_table = ops::upload_f32(b, &[positions, config.head_size], &table, DType::F32)?;
        Ok(Stack { config: config.clone(), rope_table, scratch: None })
    }

    /// Runs the blocks over `h` [T, e] (the residual stream, updated in place) for rows at
    /// `positions` [T] (consecutive, ending at kv_len − 1), writing ln_f(h) to `out`.
    #[allow(clippy::too_many_arguments)]
    pub fn forward(&mut self, b: &B, weights: &StackWeights<B>, cache: &KvCache<B>, h: &Tensor<B>, positions: &Tensor<B>, kv_len: usize, out: &Tensor<B>) -> Result<()> {
        let t = h.shape()[0];
        if self.scratch.as_ref().is_none_or(|s| s.rows != t) {
            self.scratch = Some(Scratch::new(b, &self.config, t)?);
        }
        let (s, c) = (self.scratch.as_ref().expect("allocated above"), &self.config);
        let eps = c.norm_eps as f32;
        let heads = |x: &Tensor<B>, n: usize| x.reshape(&[t, n, c.head_size]);
        for (l, w) in weights.layers.iter().enumerate() {
            // x = x + proj(attention(rope(q), rope(k), v))
            ops::rms_norm(b, h, &w.norm_1, &s.normed, eps)?;
            if t == 1 {
                ops::matmul(b, &s.normed, &w.qkv, &s.qkv, WeightLayout::OutIn, false)?;
            } else {
                ops::matmul(b, &s.normed, &w.wq, &s.q, WeightLayout::OutIn, false)?;
                ops::matmul(b, &s.normed, &w.wk, &s.k, WeightLayout::OutIn, false)?;
                ops::matmul(b, &s.normed, &w.wv, &s.v, WeightLayout::OutIn, false)?;
            }
            ops::rope(b, &heads(&s.q, c.n_head)?, positions, &self.rope_table, &s.q_rot)?;
            ops::rope_kv_append(b, &heads(&s.k, c.n_query_groups)?, &heads(&s.v, c.n_query_groups)?, positions, &self.rope_table, &cache.k[l], &cache.v[l])?;
            ops::attention(b, &s.q_rot, &cache.k[l], &cache.v[l], &s.att, kv_len, true)?;
            ops::matmul(b, &s.att.reshape(&[t, c.q_dim()])?, &w.proj, h, WeightLayout::OutIn, true)?;
            // x = x + proj(silu(fc_1(m)) · fc_2(m))
            ops::rms_norm(b, h, &w.norm_2, &s.normed, eps)?;
            let fused = Op::GateUp { x: &s.normed, w_gate: &w.fc_1, w_up: &w.fc_2, out: &s.gate };
            if w.fc_1.dtype() == w.fc_2.dtype() && b.supports(&fused) {
                op::run(b, &fused)?;
            } else {
                ops::matmul(b, &s.normed, &w.fc_1, &s.gate, WeightLayout::OutIn, false)?;
                ops::matmul(b, &s.normed, &w.fc_2, &s.up, WeightLayout::OutIn, false)?;
                ops::swiglu(b, &s.gate, &s.up, &s.gate)?;
            }
            ops::matmul(b, &s.gate, &w.mlp_proj, h, WeightLayout::OutIn, true)?;
        }
        ops::rms_norm(b, h, &weights.ln_f, out, eps)?;
        Ok(())
    }
}
