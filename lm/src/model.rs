//! The UniAudio 2.0 model (`Model_stage3`) and a generation session over it.
//!
//! Per position (spec §2.4), with a = audio-step flag:
//!   u  = UnderstandingExpert(Σ_k mask·audio_embeddings[k·V_a + c_k])
//!   x  = a ? u : wte[text]
//!   h  = Backbone(x)
//!   g  = GenerationExpert(a ? h : 0)
//!   hf = a ? g : h                       -> lm_head, and the depth decoder's input
//! Both experts run at every position, text positions included.

use std::path::Path;

use uniaudio_runtime::weights::ModelWeights;
use uniaudio_runtime::{ops, Backend, DType, SampleParams, Tensor, WeightLayout};

use crate::config::{LmConfig, CODEBOOKS, DECODER_POSITIONS};
use crate::error::{LmError, Result};
use crate::frame::Frame;
use crate::stack::{KvCache, Stack};
use crate::weights::LmWeights;

pub struct UniAudioLm<B: Backend> {
    pub config: LmConfig,
    pub weights: LmWeights<B>,
}

impl<B: Backend> UniAudioLm<B> {
    /// Loads `config.json` and the safetensors weights of a model directory.
    pub fn load(backend: &B, dir: &Path) -> Result<Self> {
        let config = LmConfig::from_file(&dir.join("config.json"))?;
        let files = ModelWeights::open(dir)?;
        let weights = LmWeights::load(backend, &files, &config)?;
        Ok(UniAudioLm { config, weights })
    }

    pub fn session<'m>(&'m self, backend: &'m B) -> Result<Session<'m, B>> {
        Session::new(self, backend)
    }
}

/// Inputs and activations of one frame forward over T rows.
struct RowBuffers<B: Backend> {
    rows: usize,
    codes: Tensor<B>,     // [T, 8] u32
    mask: Tensor<B>,      // [T, 8] u32
    text: Tensor<B>,      // [T] u32
    audio: Tensor<B>,     // [T] u32, the audio-step flag a
    positions: Tensor<B>, // [T] u32
    resid: Tensor<B>,     // [T, d] residual stream, reused by each stack in turn
    u: Tensor<B>,         // [T, d]
    t: Tensor<B>,         // [T, d]
    h: Tensor<B>,         // [T, d]
    g: Tensor<B>,         // [T, d]
    zeros: Tensor<B>,     // [T, d]
    hf: Tensor<B>,        // [T, d]
}

impl<B: Backend> RowBuffers<B> {
    fn new(b: &B, rows: usize, d: usize) -> Result<Self> {
        let u32s = |shape: &[usize]| b.alloc(DType::U32, shape);
        let f32s = || b.alloc(DType::F32, &[rows, d]);
        Ok(RowBuffers {
            rows,
            codes: u32s(&[rows, CODEBOOKS])?,
            mask: u32s(&[rows, CODEBOOKS])?,
            text: u32s(&[rows])?,
            audio: u32s(&[rows])?,
            positions: u32s(&[rows])?,
            resid: f32s()?,
            u: f32s()?,
            t: f32s()?,
            h: f32s()?,
            g: f32s()?,
            zeros: f32s()?,
            hf: f32s()?,
        })
    }
}

/// Buffers of the heads and the depth decoder (one row).
struct HeadBuffers<B: Backend> {
    text_logits: Tensor<B>,  // [1, V]
    audio_logits: Tensor<B>, // [1, V_a]
    guided: Tensor<B>,       // [1, max(V, V_a)] scratch for guidance
    dec_resid: Tensor<B>,    // [1, d_dec]
    dec_out: Tensor<B>,      // [1, d_dec]
    dec_pos: Tensor<B>,      // [8] u32: 0..7
    embed: Tensor<B>,        // [1, d]
    codes: Tensor<B>,        // [8] u32, the sampled frame
    text_id: Tensor<B>,      // [1] u32
}

/// KV caches and scratch for one sequence. Several sessions can share one model.
pub struct Session<'m, B: Backend> {
    lm: &'m UniAudioLm<B>,
    b: &'m B,
    understanding: Stack<B>,
    backbone: Stack<B>,
    generation: Stack<B>,
    decoder: Stack<B>,
    understanding_cache: KvCache<B>,
    backbone_cache: KvCache<B>,
    generation_cache: KvCache<B>,
    decoder_cache: KvCache<B>,
    rows: Option<RowBuffers<B>>,
    heads: HeadBuffers<B>,
    /// Positions processed so far.
    len: usize,
}

impl<'m, B: Backend> Session<'m, B> {
    fn new(lm: &'m UniAudioLm<B>, b: &'m B) -> Result<Self> {
        let c = &lm.config;
        let s = &c.stacks;
        let (v, va, dd) = (c.text_vocab(), c.audio_vocab(), s.decoder.n_embd);
        let positions: Vec<u32> = (0..DECODER_POSITIONS as u32).collect();
        let heads = HeadBuffers {
            text_logits: b.alloc(DType::F32, &[1, v])?,
            audio_logits: b.alloc(DType::F32, &[1, va])?,
            guided: b.alloc(DType::F32, &[1, v.max(va)])?,
            dec_resid: b.alloc(DType::F32, &[1, dd])?,
            dec_out: b.alloc(DType::F32, &[1, dd])?,
            dec_pos: ops::upload_u32(b, &[DECODER_POSITIONS], &positions)?,
            embed: b.alloc(DType::F32, &[1, s.backbone.n_embd])?,
            codes: b.alloc(DType::U32, &[CODEBOOKS])?,
            text_id: b.alloc(DType::U32, &[1])?,
        };
        Ok(Session {
            lm,
            b,
            understanding: Stack::new(b, &s.understanding, c.max_seq_len)?,
            backbone: Stack::new(b, &s.backbone, c.max_seq_len)?,
            generation: Stack::new(b, &s.generation, c.max_seq_len)?,
            decoder: Stack::new(b, &s.decoder, DECODER_POSITIONS)?,
            understanding_cache: KvCache::new(b, &s.understanding, c.max_seq_len)?,
            backbone_cache: KvCache::new(b, &s.backbone, c.max_seq_len)?,
            generation_cache: KvCache::new(b, &s.generation, c.max_seq_len)?,
            decoder_cache: KvCache::new(b, &s.decoder, DECODER_POSITIONS)?,
            rows: None,
            heads,
            len: 0,
        })
    }

    /// Positions processed so far (the next frame's position).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Runs `frames` at the next positions in one batched pass (prefill when there are
    /// many, a decode step for one) and returns h_final of the last one, [1, d].
    pub fn forward(&mut self, frames: &[Frame]) -> Result<Tensor<B>> {
        let (b, lm) = (self.b, self.lm);
        let (c, w) = (&lm.config, &lm.weights);
        let t = frames.len();
        if t == 0 {
            return Err(LmError::Prompt("no frames to process".into()));
        }
        let end = self.len + t;
        if end > c.max_seq_len {
            return Err(LmError::Prompt(format!("positions {}..{end} exceed max_seq_len {}", self.len, c.max_seq_len)));
        }
        for (i, f) in frames.iter().enumerate() {
            f.validate(c, self.len + i)?;
        }
        if self.rows.as_ref().is_none_or(|r| r.rows != t) {
            self.rows = Some(RowBuffers::new(b, t, c.stacks.backbone.n_embd)?);
        }
        let r = self.rows.as_ref().expect("allocated above");
        self.write_inputs(r, frames)?;
        ops::embed_codebook_sum(b, &w.audio_embeddings, &r.codes, &r.mask, c.audio_vocab(), &r.resid)?;
        self.understanding.forward(b, &w.understanding, &self.understanding_cache, &r.resid, &r.positions, end, &r.u)?;
        ops::embed_rows(b, &w.wte, &r.text, &r.t)?;
        ops::select_rows(b, &r.audio, &r.u, &r.t, &r.resid)?;
        self.backbone.forward(b, &w.backbone, &self.backbone_cache, &r.resid, &r.positions, end, &r.h)?;
        ops::select_rows(b, &r.audio, &r.h, &r.zeros, &r.resid)?;
        self.generation.forward(b, &w.generation, &self.generation_cache, &r.resid, &r.positions, end, &r.g)?;
        ops::select_rows(b, &r.audio, &r.g, &r.h, &r.hf)?;
        self.len = end;
        Ok(r.hf.narrow(t - 1, 1)?)
    }

    fn write_inputs(&self, r: &RowBuffers<B>, frames: &[Frame]) -> Result<()> {
        let t = frames.len();
        let (mut codes, mut mask) = (vec![0u32; t * CODEBOOKS], vec![0u32; t * CODEBOOKS]);
        let (mut text, mut audio) = (vec![0u32; t], vec![0u32; t]);
        for (i, f) in frames.iter().enumerate() {
            match *f {
                Frame::Text(id) => text[i] = id,
                Frame::Audio(c) => {
                    codes[i * CODEBOOKS..(i + 1) * CODEBOOKS].copy_from_slice(&c);
                    mask[i * CODEBOOKS..(i + 1) * CODEBOOKS].fill(1);
                    audio[i] = 1;
                }
            }
        }
        let positions: Vec<u32> = (self.len..self.len + t).map(|p| p as u32).collect();
        for (dst, src) in [(&r.codes, &codes), (&r.mask, &mask), (&r.text, &text), (&r.audio, &audio), (&r.positions, &positions)] {
            self.b.write(dst, bytemuck::cast_slice(src))?;
        }
        Ok(())
    }

    /// Text logits lm_head(hf), [1, V].
    pub fn text_logits(&self, hf: &Tensor<B>) -> Result<&Tensor<B>> {
        let h = &self.heads;
        ops::matmul(self.b, hf, &self.lm.weights.lm_head, &h.text_logits, WeightLayout::OutIn, false)?;
        Ok(&h.text_logits)
    }

    /// Starts the depth decoder for the frame predicted from hf: z = projection(hf).
    pub fn decoder_begin(&self, hf: &Tensor<B>) -> Result<()> {
        let h = &self.heads;
        ops::matmul(self.b, hf, &self.lm.weights.projection, &h.dec_resid, WeightLayout::OutIn, false)?;
        Ok(())
    }

    /// Runs decoder position `i` and returns codebook i's logits, [1, V_a].
    pub fn decoder_logits(&mut self, i: usize) -> Result<&Tensor<B>> {
        let (b, w, h) = (self.b, &self.lm.weights, &self.heads);
        let pos = h.dec_pos.narrow(i, 1)?;
        self.decoder.forward(b, &w.decoder, &self.decoder_cache, &h.dec_resid, &pos, i + 1, &h.dec_out)?;
        ops::matmul(b, &h.dec_out, &w.audio_head[i], &h.audio_logits, WeightLayout::InOut, false)?;
        Ok(&h.audio_logits)
    }

    /// Feeds codebook i's sampled code (a [1] u32 device tensor) as the next decoder input.
    pub fn decoder_feed(&self, i: usize, code: &Tensor<B>) -> Result<()> {
        let (b, w, h) = (self.b, &self.lm.weights, &self.heads);
        let va = self.lm.config.audio_vocab();
        ops::embed_rows(b, &w.audio_embeddings.narrow(i * va, va)?, code, &h.embed)?;
        ops::matmul(b, &h.embed, &w.projection, &h.dec_resid, WeightLayout::OutIn, false)?;
        Ok(())
    }

    /// Device buffer the sampled frame's 8 codes are written to.
    pub fn codes_buffer(&self) -> &Tensor<B> {
        &self.heads.codes
    }

    pub fn text_id_buffer(&self) -> &Tensor<B> {
        &self.heads.text_id
    }

    /// Combines conditional (self) and unconditional logits into a scratch tensor.
    pub fn guide(&self, cond: &Tensor<B>, uncond: &Tensor<B>, scale: f32) -> Result<Tensor<B>> {
        let out = self.heads.guided.reshape(&[self.heads.guided.numel()])?.narrow(0, cond.numel())?.reshape(cond.shape())?;
        ops::guidance(self.b, cond, uncond, scale, &out)?;
        Ok(out)
    }

    /// Samples into `dst` ([1] u32 on the device).
    pub fn sample(&self, logits: &Tensor<B>, dst: &Tensor<B>, params: SampleParams) -> Result<()> {
        ops::top_k_sample(self.b, logits, dst, params)?;
        Ok(())
    }

    pub fn backend(&self) -> &'m B {
        self.b
    }

    pub fn config(&self) -> &'m LmConfig {
        &self.lm.config
    }
}
