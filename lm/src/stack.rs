//! One Llama stack (litgpt `GPT.forward` without embedding or head): pre-RMSNorm blocks
//! with GQA attention over a KV cache and a SwiGLU MLP, then the final RMSNorm.

use uniaudio_runtime::{op, ops, Backend, DType, Op, RowOrder, Tensor, WeightLayout};

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

/// One sequence's rows in a stack pass: `rows` consecutive rows of the input, at
/// consecutive positions ending at `kv_len − 1`, attending over that sequence's cache.
pub struct Span<'c, B: Backend> {
    pub cache: &'c KvCache<B>,
    pub rows: usize,
    pub kv_len: usize,
}

/// Activations for up to `capacity` rows, reused across calls (a pass over T rows uses
/// the first T).
struct Scratch<B: Backend> {
    capacity: usize,
    normed: Tensor<B>, // [cap, e]
    qkv: Tensor<B>,    // [cap, (nh + 2·nkv)·hs]; for T = 1, q, k and v are views into it
    q: Tensor<B>,      // [cap, nh·hs]
    k: Tensor<B>,      // [cap, nkv·hs]
    v: Tensor<B>,      // [cap, nkv·hs]
    q_rot: Tensor<B>,  // [cap, nh, hs]
    att: Tensor<B>,    // [cap, nh, hs]
    gate: Tensor<B>,   // [cap, f]
    up: Tensor<B>,     // [cap, f]
}

/// The first T rows of each scratch tensor.
struct Rows<B: Backend> {
    normed: Tensor<B>,
    qkv: Tensor<B>,
    q: Tensor<B>,
    k: Tensor<B>,
    v: Tensor<B>,
    q_rot: Tensor<B>,
    att: Tensor<B>,
    gate: Tensor<B>,
    up: Tensor<B>,
}

impl<B: Backend> Scratch<B> {
    fn new(b: &B, s: &StackConfig, capacity: usize) -> Result<Self> {
        let f32 = |shape: &[usize]| b.alloc(DType::F32, shape);
        Ok(Scratch {
            capacity,
            normed: f32(&[capacity, s.n_embd])?,
            qkv: f32(&[capacity, s.qkv_rows()])?,
            q: f32(&[capacity, s.q_dim()])?,
            k: f32(&[capacity, s.kv_dim()])?,
            v: f32(&[capacity, s.kv_dim()])?,
            q_rot: f32(&[capacity, s.n_head, s.head_size])?,
            att: f32(&[capacity, s.n_head, s.head_size])?,
            gate: f32(&[capacity, s.intermediate_size])?,
            up: f32(&[capacity, s.intermediate_size])?,
        })
    }

    fn rows(&self, s: &StackConfig, t: usize) -> Result<Rows<B>> {
        let first = |x: &Tensor<B>| x.narrow(0, t);
        let qkv = first(&self.qkv)?;
        // One fused projection serves a single row; several rows would interleave Q, K and V.
        let (q, k, v) = if t == 1 {
            let flat = qkv.reshape(&[s.qkv_rows()])?;
            let view = |start, len| flat.narrow(start, len)?.reshape(&[1, len]);
            (view(0, s.q_dim())?, view(s.q_dim(), s.kv_dim())?, view(s.q_dim() + s.kv_dim(), s.kv_dim())?)
        } else {
            (first(&self.q)?, first(&self.k)?, first(&self.v)?)
        };
        Ok(Rows {
            normed: first(&self.normed)?,
            qkv,
            q,
            k,
            v,
            q_rot: first(&self.q_rot)?,
            att: first(&self.att)?,
            gate: first(&self.gate)?,
            up: first(&self.up)?,
        })
    }
}

/// A stack's config and RoPE frequencies, plus scratch space for one runner.
pub struct Stack<B: Backend> {
    config: StackConfig,
    rope_table: Tensor<B>, // [positions, hs]: cos | sin
    scratch: Option<Scratch<B>>,
}

impl<B: Backend> Stack<B> {
    /// `positions`: how many positions the stack's caches hold at most.
    pub fn new(b: &B, config: &StackConfig, positions: usize) -> Result<Self> {
        let table = ops::rope_table(&crate::rope::inv_freq(config), positions);
        let rope_table = ops::upload_f32(b, &[positions, config.head_size], &table, DType::F32)?;
        Ok(Stack { config: config.clone(), rope_table, scratch: None })
    }

    /// Sizes the scratch for passes of up to `rows` rows (a pass that needs more grows it).
    pub fn reserve(&mut self, b: &B, rows: usize) -> Result<()> {
        if self.scratch.as_ref().is_none_or(|s| s.capacity < rows) {
            self.scratch = Some(Scratch::new(b, &self.config, rows)?);
        }
        Ok(())
    }

    /// Runs the blocks over `h` [T, e] (the residual stream, updated in place) for rows at
    /// `positions` [T], split into `spans` (one per sequence, in row order), writing
    /// ln_f(h) to `out`. `order` is how the projections may schedule the T rows.
    #[allow(clippy::too_many_arguments)]
    pub fn forward(&mut self, b: &B, weights: &StackWeights<B>, spans: &[Span<'_, B>], h: &Tensor<B>, positions: &Tensor<B>, out: &Tensor<B>, order: RowOrder) -> Result<()> {
        let t = h.shape()[0];
        debug_assert_eq!(spans.iter().map(|s| s.rows).sum::<usize>(), t, "spans cover the rows");
        self.reserve(b, t)?;
        let c = &self.config;
        let s = self.scratch.as_ref().expect("reserved above").rows(c, t)?;
        let eps = c.norm_eps as f32;
        let heads = |x: &Tensor<B>, n: usize| x.reshape(&[t, n, c.head_size]);
        let (q_heads, k_heads, v_heads) = (heads(&s.q, c.n_head)?, heads(&s.k, c.n_query_groups)?, heads(&s.v, c.n_query_groups)?);
        let matmul = |x: &Tensor<B>, w: &Tensor<B>, out: &Tensor<B>, accumulate: bool| ops::matmul_rows(b, x, w, out, WeightLayout::OutIn, accumulate, order);
        for (l, w) in weights.layers.iter().enumerate() {
            // x = x + proj(attention(rope(q), rope(k), v))
            ops::rms_norm(b, h, &w.norm_1, &s.normed, eps)?;
            if t == 1 {
                matmul(&s.normed, &w.qkv, &s.qkv, false)?;
            } else {
                matmul(&s.normed, &w.wq, &s.q, false)?;
                matmul(&s.normed, &w.wk, &s.k, false)?;
                matmul(&s.normed, &w.wv, &s.v, false)?;
            }
            ops::rope(b, &q_heads, positions, &self.rope_table, &s.q_rot)?;
            let mut row = 0;
            for span in spans {
                let rows = |x: &Tensor<B>| x.narrow(row, span.rows);
                ops::rope_kv_append(b, &rows(&k_heads)?, &rows(&v_heads)?, &rows(positions)?, &self.rope_table, &span.cache.k[l], &span.cache.v[l])?;
                ops::attention(b, &rows(&s.q_rot)?, &span.cache.k[l], &span.cache.v[l], &rows(&s.att)?, span.kv_len, true)?;
                row += span.rows;
            }
            matmul(&s.att.reshape(&[t, c.q_dim()])?, &w.proj, h, true)?;
            // x = x + proj(silu(fc_1(m)) · fc_2(m))
            ops::rms_norm(b, h, &w.norm_2, &s.normed, eps)?;
            let fused = Op::GateUp { x: &s.normed, w_gate: &w.fc_1, w_up: &w.fc_2, out: &s.gate, rows: order };
            if w.fc_1.dtype() == w.fc_2.dtype() && b.supports(&fused) {
                op::run(b, &fused)?;
            } else {
                matmul(&s.normed, &w.fc_1, &s.gate, false)?;
                matmul(&s.normed, &w.fc_2, &s.up, false)?;
                ops::swiglu(b, &s.gate, &s.up, &s.gate)?;
            }
            matmul(&s.gate, &w.mlp_proj, h, true)?;
        }
        ops::rms_norm(b, h, &weights.ln_f, out, eps)?;
        Ok(())
    }
}
