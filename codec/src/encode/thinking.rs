//! AudioThinking, the reasoning encoder: Whisper down-sampled ×2 and MusicFM's semantic
//! stream merged, a query token after every `interval` frames, weight-normed blocks without
//! norms (q/k LayerNorm, partial RoPE, sigmoid GLU, LayerScale), then the reasoning RVQ
//! on the query outputs.
//!
//! Partial RoPE rotates dims (i, i + r/2) for i < r/2 of each head and leaves the rest.
//! The runtime's RoPE rotates (j, j + D/2) over a whole head, so the head dims of q and k
//! are permuted at load (rows of W_q, W_k and the q/k norms) to put the rotated pairs at
//! (j, j + D/2), and the table holds cos 1, sin 0 for the unrotated pairs: q·k is unchanged
//! by a common permutation, and v (not permuted) keeps the output in its own order.

use uniaudio_runtime::{ops, Backend, DType, Epilogue, Tensor};

use super::config::EncoderConfig;
use super::layers::{positions, self_attention, EncoderWeights, Lin, Ln};
use super::rvq_search::RvqSearch;
use crate::error::Result;
use crate::load::{conv_to_runtime, fold_weight_norm};

struct Block<B: Backend> {
    q: Lin<B>,
    k: Lin<B>,
    v: Lin<B>,
    q_norm: Ln<B>,
    k_norm: Ln<B>,
    out: Lin<B>,
    attn_scale: Tensor<B>,
    up: Lin<B>,
    down: Lin<B>,
    ff_scale: Tensor<B>,
}

pub struct Thinking<B: Backend> {
    down: Lin<B>,
    merge_whisper: Lin<B>,
    merge_musicfm: Lin<B>,
    cls: Vec<f32>,
    blocks: Vec<Block<B>>,
    /// Per-block RoPE frequencies (rotary_dim / 2 each).
    inv_freq: Vec<Vec<f32>>,
    heads: usize,
    head_dim: usize,
    rotary_dim: usize,
    interval: usize,
    pub vq: RvqSearch<B>,
}

/// New head-dim position p holds original dim perm[p].
fn head_permutation(head_dim: usize, rotary_dim: usize) -> Vec<usize> {
    let (half, rhalf) = (head_dim / 2, rotary_dim / 2);
    let rest = half - rhalf;
    let mut perm = vec![0; head_dim];
    for j in 0..half {
        let (a, b) = if j < rhalf { (j, j + rhalf) } else { (rotary_dim + (j - rhalf), rotary_dim + rest + (j - rhalf)) };
        perm[j] = a;
        perm[j + half] = b;
    }
    perm
}

impl<B: Backend> Thinking<B> {
    pub fn load(l: &EncoderWeights<B>, c: &EncoderConfig) -> Result<Self> {
        let t = &c.audio_thinking;
        let (p, d, hd) = (&t.prefix, t.dim, t.head_dim);
        let (dw, dm) = (c.whisper.d_model, c.musicfm.encoder_dim);
        let down_w = l.host(&format!("{p}down_sampling_layer_whisper.weight"), &[dw, dw, 2])?;
        let down = Lin::from_host(l, &conv_to_runtime(&down_w, dw, dw, 2), Some(&l.host(&format!("{p}down_sampling_layer_whisper.bias"), &[dw])?), dw, 2 * dw)?;
        let merge = l.host(&format!("{p}semantic_merge_proj.weight"), &[d, dw + dm])?;
        let cols = |start: usize, len: usize| -> Vec<f32> { merge.chunks(dw + dm).flat_map(|row| row[start..start + len].to_vec()).collect() };
        let merge_whisper = Lin::from_host(l, &cols(0, dw), Some(&l.host(&format!("{p}semantic_merge_proj.bias"), &[d])?), d, dw)?;
        let merge_musicfm = Lin::from_host(l, &cols(dw, dm), None, d, dm)?;
        let perm = head_permutation(hd, t.rotary_dim);
        let mut blocks = Vec::new();
        let mut inv_freq = Vec::new();
        for i in 0..t.depth {
            let b = format!("{p}encoder_transformers.{i}.");
            let normed = |n: &str, out: usize, inp: usize| -> Result<Vec<f32>> {
                let g = l.host(&format!("{b}{n}.parametrizations.weight.original0"), &[out, 1])?;
                let v = l.host(&format!("{b}{n}.parametrizations.weight.original1"), &[out, inp])?;
                Ok(fold_weight_norm(&g, &v))
            };
            let qkv = normed("self_attn.to_qkv", 3 * d, d)?;
            // Rows of q and k permuted within each head (see the module comment).
            let permuted = |part: usize| -> Vec<f32> {
                let mut w = vec![0f32; d * d];
                for row in 0..d {
                    let (head, pos) = (row / hd, row % hd);
                    let src = part * d + head * hd + perm[pos];
                    w[row * d..(row + 1) * d].copy_from_slice(&qkv[src * d..(src + 1) * d]);
                }
                w
            };
            let norm = |n: &str| -> Result<Ln<B>> {
                let w = l.host(&format!("{b}self_attn.{n}.weight"), &[hd])?;
                let bias = l.host(&format!("{b}self_attn.{n}.bias"), &[hd])?;
                let (w, bias): (Vec<f32>, Vec<f32>) = perm.iter().map(|&o| (w[o], bias[o])).unzip();
                Ln::new(l, &w, &bias, 1e-5)
            };
            let ff = 2 * t.ff_inner;
            blocks.push(Block {
                q: Lin::from_host(l, &permuted(0), None, d, d)?,
                k: Lin::from_host(l, &permuted(1), None, d, d)?,
                v: Lin::from_host(l, &qkv[2 * d * d..], None, d, d)?,
                q_norm: norm("q_norm")?,
                k_norm: norm("k_norm")?,
                out: Lin::from_host(l, &normed("self_attn.to_out", d, d)?, None, d, d)?,
                attn_scale: l.tensor(&format!("{b}self_attn_scale.scale"), &[d])?,
                up: Lin::from_host(l, &normed("ff.ff.0.proj", ff, d)?, Some(&l.host(&format!("{b}ff.ff.0.proj.bias"), &[ff])?), ff, d)?,
                down: Lin::from_host(l, &normed("ff.ff.2", d, t.ff_inner)?, Some(&l.host(&format!("{b}ff.ff.2.bias"), &[d])?), d, t.ff_inner)?,
                ff_scale: l.tensor(&format!("{b}ff_scale.scale"), &[d])?,
            });
            let name = format!("{b}rope.inv_freq");
            let rhalf = t.rotary_dim / 2;
            inv_freq.push(if l.contains(&name) { l.host(&name, &[rhalf])? } else { super::musicfm::inv_freq(t.rotary_dim, t.rotary_base) });
        }
        let v = &c.reasoning_vq;
        Ok(Thinking {
            down,
            merge_whisper,
            merge_musicfm,
            cls: l.host(&format!("{p}cls_token"), &[1, d])?,
            blocks,
            inv_freq,
            heads: t.heads,
            head_dim: hd,
            rotary_dim: t.rotary_dim,
            interval: t.interval,
            vq: RvqSearch::load(l, &v.prefix, d, v.levels, v.codebook_size, v.codebook_dim, true)?,
        })
    }

    /// Whisper output [B·2F, dw] and MusicFM's semantic stream [B·F, dm] (B chunks) -> the
    /// query outputs [B·F / interval, dim] (the reasoning RVQ's input).
    pub fn forward(&self, bk: &B, whisper: &Tensor<B>, semantic: &Tensor<B>, batch: usize) -> Result<Tensor<B>> {
        let dw = whisper.dim_back(0);
        let (w_rows, s_rows) = (whisper.rows() / batch, semantic.rows() / batch);
        let groups = s_rows.min(w_rows / 2) / self.interval;
        let frames = groups * self.interval;
        let d = self.cls.len();
        // Rows b·frames..: chunk b's merged frames; the last row: the query token.
        let table = bk.alloc(DType::F32, &[batch * frames + 1, d])?;
        for b in 0..batch {
            let w = whisper.narrow(b * w_rows, 2 * frames)?.reshape(&[frames, 2 * dw])?;
            let down = self.down.apply(bk, &w, Epilogue::Store)?;
            let merged = table.narrow(b * frames, frames)?;
            self.merge_whisper.run(bk, &down, &merged, Epilogue::Store)?;
            ops::matmul(bk, &semantic.narrow(b * s_rows, frames)?, &self.merge_musicfm.w, &merged, uniaudio_runtime::WeightLayout::OutIn, true)?;
        }
        bk.write(&table.narrow(batch * frames, 1)?, bytemuck::cast_slice(&self.cls))?;
        let per = self.interval + 1;
        let tokens = groups * per;
        let ids: Vec<u32> = (0..batch * tokens)
            .map(|i| {
                let (b, i) = (i / tokens, i % tokens);
                if i % per == self.interval { batch * frames } else { b * frames + (i / per) * self.interval + i % per }
            } as u32)
            .collect();
        let x = bk.alloc(DType::F32, &[batch * tokens, d])?;
        ops::embed_rows(bk, &table, &ops::upload_u32(bk, &[batch * tokens], &ids)?, &x)?;
        let pos = positions(bk, 1, tokens)?;
        let rope_pos = positions(bk, batch, tokens)?;
        for (block, freqs) in self.blocks.iter().zip(&self.inv_freq) {
            let table = self.rope_table(bk, freqs, tokens)?;
            self.block(bk, block, &x, (&pos, &rope_pos), &table, batch)?;
        }
        let query_ids: Vec<u32> = (0..batch * groups).map(|g| (g * per + self.interval) as u32).collect();
        let queries = bk.alloc(DType::F32, &[batch * groups, d])?;
        ops::embed_rows(bk, &x, &ops::upload_u32(bk, &[batch * groups], &query_ids)?, &queries)?;
        Ok(queries)
    }

    /// cos/sin for the permuted head: rotated pairs first, then cos 1 / sin 0.
    fn rope_table(&self, bk: &B, freqs: &[f32], tokens: usize) -> Result<Tensor<B>> {
        let half = self.head_dim / 2;
        let mut table = vec![0f32; tokens * self.head_dim];
        for (p, row) in table.chunks_mut(self.head_dim).enumerate() {
            for j in 0..half {
                let (cos, sin) = if j < self.rotary_dim / 2 {
                    let a = p as f32 * freqs[j];
                    (a.cos(), a.sin())
                } else {
                    (1.0, 0.0)
                };
                row[j] = cos;
                row[half + j] = sin;
            }
        }
        Ok(ops::upload_f32(bk, &[tokens, self.head_dim], &table, DType::F32)?)
    }

    fn block(&self, bk: &B, b: &Block<B>, x: &Tensor<B>, pos: (&Tensor<B>, &Tensor<B>), table: &Tensor<B>, batch: usize) -> Result<()> {
        let (pos, rope_pos) = pos;
        let (t, d) = (x.rows(), x.dim_back(0));
        let heads_rows = [t * self.heads, self.head_dim];
        let head_shape = [t, self.heads, self.head_dim];
        let qk = |lin: &Lin<B>, norm: &Ln<B>| -> Result<Tensor<B>> {
            let y = lin.apply(bk, x, Epilogue::Store)?;
            let n = norm.apply(bk, &y.reshape(&heads_rows)?)?;
            let r = bk.alloc(DType::F32, &head_shape)?;
            ops::rope(bk, &n.reshape(&head_shape)?, rope_pos, table, &r)?;
            Ok(r.reshape(&[t, d])?)
        };
        let q = qk(&b.q, &b.q_norm)?;
        let k = qk(&b.k, &b.k_norm)?;
        let v = b.v.apply(bk, x, Epilogue::Store)?;
        let att = self_attention(bk, &q, &k, &v, self.heads, batch, pos)?;
        b.out.run(bk, &att, x, Epilogue::GatedAdd { gate: &b.attn_scale })?;
        let u = b.up.apply(bk, x, Epilogue::Store)?;
        let g = bk.alloc(DType::F32, &[t, u.dim_back(0) / 2])?;
        ops::glu(bk, &u, &g)?;
        b.down.run(bk, &g, x, Epilogue::GatedAdd { gate: &b.ff_scale })?;
        Ok(())
    }
}
