//! The UniAudio 2.0 model (`Model_stage3`) and a one-sequence session over it: the
//! forward pass of `forward` and the heads of `heads` with a single sequence's caches.

use std::path::Path;

use uniaudio_runtime::weights::ModelWeights;
use uniaudio_runtime::{ops, Backend, DType, RowOrder, SampleParams, Tensor};

use crate::config::{LmConfig, CODEBOOKS};
use crate::error::Result;
use crate::forward::{Runner, SeqCache, Segment};
use crate::frame::Frame;
use crate::heads::Heads;
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

/// KV caches and scratch for one sequence, at `max_seq_len` positions. Several sessions
/// can share one model (classifier-free guidance runs a conditional and an unconditional
/// one). Batched generation runs many sequences through `engine::Engine` instead.
pub struct Session<'m, B: Backend> {
    lm: &'m UniAudioLm<B>,
    b: &'m B,
    runner: Runner<B>,
    cache: SeqCache<B>,
    heads: Heads<B>,
    codes: Tensor<B>,   // [8] u32, the sampled frame
    text_id: Tensor<B>, // [1] u32
}

impl<'m, B: Backend> Session<'m, B> {
    fn new(lm: &'m UniAudioLm<B>, b: &'m B) -> Result<Self> {
        let c = &lm.config;
        Ok(Session {
            lm,
            b,
            runner: Runner::new(b, c)?,
            cache: SeqCache::new(b, c, c.max_seq_len)?,
            heads: Heads::new(b, c, 1)?,
            codes: b.alloc(DType::U32, &[CODEBOOKS])?,
            text_id: b.alloc(DType::U32, &[1])?,
        })
    }

    /// Positions processed so far (the next frame's position).
    pub fn len(&self) -> usize {
        self.cache.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cache.is_empty()
    }

    /// Runs `frames` at the next positions in one batched pass (prefill when there are
    /// many, a decode step for one) and returns h_final of the last one, [1, d].
    pub fn forward(&mut self, frames: &[Frame]) -> Result<Tensor<B>> {
        let mut segment = [Segment { cache: &mut self.cache, frames }];
        let hf = self.runner.forward(self.lm, self.b, &mut segment, RowOrder::Free)?;
        Ok(hf.narrow(frames.len() - 1, 1)?)
    }

    /// Text logits lm_head(hf), [1, V].
    pub fn text_logits(&self, hf: &Tensor<B>) -> Result<Tensor<B>> {
        self.heads.text_logits(self.b, self.lm, hf)
    }

    /// Starts the depth decoder for the frame predicted from hf: z = projection(hf).
    pub fn decoder_begin(&self, hf: &Tensor<B>) -> Result<()> {
        self.heads.decoder_begin(self.b, self.lm, hf)
    }

    /// Runs decoder position `i` and returns codebook i's logits, [1, V_a].
    pub fn decoder_logits(&mut self, i: usize) -> Result<Tensor<B>> {
        self.heads.decoder_logits(self.b, self.lm, &mut self.runner.decoder, &[&self.cache.decoder], i)
    }

    /// Feeds codebook i's sampled code (a [1] u32 device tensor) as the next decoder input.
    pub fn decoder_feed(&self, i: usize, code: &Tensor<B>) -> Result<()> {
        self.heads.decoder_feed(self.b, self.lm, i, code)
    }

    /// Device buffer the sampled frame's 8 codes are written to.
    pub fn codes_buffer(&self) -> &Tensor<B> {
        &self.codes
    }

    pub fn text_id_buffer(&self) -> &Tensor<B> {
        &self.text_id
    }

    /// Combines conditional (self) and unconditional logits into a scratch tensor.
    pub fn guide(&self, cond: &Tensor<B>, uncond: &Tensor<B>, scale: f32) -> Result<Tensor<B>> {
        self.heads.guide(self.b, cond, uncond, scale, 0)
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
