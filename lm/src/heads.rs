//! The output heads over R rows of h_final: lm_head for text rows, and the depth decoder
//! (projection, 8 positions over each row's own decoder cache, audio_head[i]) for audio
//! rows. All rows' products run together with `RowOrder::Invariant`, so each row's
//! logits are what it would get alone.

use uniaudio_runtime::{ops, Backend, DType, RowOrder, Tensor, WeightLayout};

use crate::config::{LmConfig, CODEBOOKS, DECODER_POSITIONS};
use crate::error::Result;
use crate::stack::{KvCache, Span, Stack};
use crate::UniAudioLm;

/// Head buffers for up to `capacity` rows.
pub(crate) struct Heads<B: Backend> {
    capacity: usize,
    text_logits: Tensor<B>,  // [cap, V]
    audio_logits: Tensor<B>, // [cap, V_a]
    guided: Tensor<B>,       // [cap · max(V, V_a)] guidance results, one row per guided pair
    dec_resid: Tensor<B>,    // [cap, d_dec]
    dec_out: Tensor<B>,      // [cap, d_dec]
    dec_pos: Tensor<B>,      // [8 · cap] u32: block i holds i
    embed: Tensor<B>,        // [cap, d]
}

impl<B: Backend> Heads<B> {
    pub fn new(b: &B, c: &LmConfig, capacity: usize) -> Result<Self> {
        let (v, va, dd) = (c.text_vocab(), c.audio_vocab(), c.stacks.decoder.n_embd);
        let positions: Vec<u32> = (0..DECODER_POSITIONS as u32).flat_map(|i| std::iter::repeat_n(i, capacity)).collect();
        Ok(Heads {
            capacity,
            text_logits: b.alloc(DType::F32, &[capacity, v])?,
            audio_logits: b.alloc(DType::F32, &[capacity, va])?,
            guided: b.alloc(DType::F32, &[capacity * v.max(va)])?,
            dec_resid: b.alloc(DType::F32, &[capacity, dd])?,
            dec_out: b.alloc(DType::F32, &[capacity, dd])?,
            dec_pos: ops::upload_u32(b, &[DECODER_POSITIONS * capacity], &positions)?,
            embed: b.alloc(DType::F32, &[capacity, c.stacks.backbone.n_embd])?,
        })
    }

    /// Grows the buffers to hold `rows` rows.
    pub fn reserve(&mut self, b: &B, c: &LmConfig, rows: usize) -> Result<()> {
        if self.capacity < rows {
            *self = Heads::new(b, c, rows)?;
        }
        Ok(())
    }

    /// Text logits lm_head(hf), [R, V].
    pub fn text_logits(&self, b: &B, lm: &UniAudioLm<B>, hf: &Tensor<B>) -> Result<Tensor<B>> {
        let out = self.text_logits.narrow(0, hf.shape()[0])?;
        ops::matmul_rows(b, hf, &lm.weights.lm_head, &out, WeightLayout::OutIn, false, RowOrder::Invariant)?;
        Ok(out)
    }

    /// Starts the depth decoder for the frames predicted from hf [R, d]: z = projection(hf).
    pub fn decoder_begin(&self, b: &B, lm: &UniAudioLm<B>, hf: &Tensor<B>) -> Result<()> {
        let z = self.dec_resid.narrow(0, hf.shape()[0])?;
        ops::matmul_rows(b, hf, &lm.weights.projection, &z, WeightLayout::OutIn, false, RowOrder::Invariant)?;
        Ok(())
    }

    /// Runs decoder position `i` for each row over its own cache (`caches[r]`) and returns
    /// codebook i's logits, [R, V_a].
    pub fn decoder_logits(&self, b: &B, lm: &UniAudioLm<B>, decoder: &mut Stack<B>, caches: &[&KvCache<B>], i: usize) -> Result<Tensor<B>> {
        let (w, rows) = (&lm.weights, caches.len());
        let spans: Vec<Span<'_, B>> = caches.iter().map(|&cache| Span { cache, rows: 1, kv_len: i + 1 }).collect();
        let pos = self.dec_pos.narrow(i * self.capacity, rows)?;
        let (resid, out) = (self.dec_resid.narrow(0, rows)?, self.dec_out.narrow(0, rows)?);
        decoder.forward(b, &w.decoder, &spans, &resid, &pos, &out, RowOrder::Invariant)?;
        let logits = self.audio_logits.narrow(0, rows)?;
        ops::matmul_rows(b, &out, &w.audio_head[i], &logits, w.audio_head_layout, false, RowOrder::Invariant)?;
        Ok(logits)
    }

    /// Feeds codebook i's sampled codes (a [R] u32 device tensor, one per row) as the
    /// decoder's next inputs.
    pub fn decoder_feed(&self, b: &B, lm: &UniAudioLm<B>, i: usize, codes: &Tensor<B>) -> Result<()> {
        let (w, rows, va) = (&lm.weights, codes.shape()[0], lm.config.audio_vocab());
        let embed = self.embed.narrow(0, rows)?;
        ops::embed_rows(b, &w.audio_embeddings.narrow(i * va, va)?, codes, &embed)?;
        ops::matmul_rows(b, &embed, &w.projection, &self.dec_resid.narrow(0, rows)?, WeightLayout::OutIn, false, RowOrder::Invariant)?;
        Ok(())
    }

    /// Classifier-free guidance of one row pair into guided row `slot`, returned as [1, C].
    pub fn guide(&self, b: &B, cond: &Tensor<B>, uncond: &Tensor<B>, scale: f32, slot: usize) -> Result<Tensor<B>> {
        let cols = cond.numel();
        let out = self.guided.narrow(slot * cols, cols)?.reshape(cond.shape())?;
        ops::guidance(b, cond, uncond, scale, &out)?;
        Ok(out)
    }
}

/// Stream ids of the RNG counter: one stream per codebook, one for text.
pub(crate) const TEXT_STREAM: u64 = CODEBOOKS as u64;
pub(crate) const STREAMS: u64 = 16;
