//! End-to-end decode benchmark: prefill a text prompt, generate audio frames, then text
//! tokens, and relate the time per step to the bytes each step must read.

use std::time::Instant;

use uniaudio_runtime::bench::median;
use uniaudio_runtime::Backend;

use crate::config::CODEBOOKS;
use crate::error::{LmError, Result};
use crate::frame::Frame;
use crate::generate::{GenerateOptions, Generator, OutputKind};
use crate::model::UniAudioLm;

#[derive(Clone, Debug)]
pub struct BenchOptions {
    pub prompt_len: usize,
    pub audio_frames: usize,
    pub text_tokens: usize,
    pub top_k: usize,
    pub temperature: f32,
    pub seed: u64,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct BenchReport {
    pub prompt_len: usize,
    pub prefill_seconds: f64,
    pub prefill_tokens_per_second: f64,
    /// The prefill's projection flops (2 × the three stacks' projection weights per
    /// token) per second, in G: attention and the embedding are left out.
    pub prefill_gflops: f64,
    pub audio_frames: usize,
    /// Median over decode steps (each: one frame forward + 8 depth-decoder passes).
    pub ms_per_audio_frame: f64,
    pub text_tokens: usize,
    pub ms_per_text_token: f64,
    /// Bytes one audio frame / text token must read (weights, plus the KV cache at the
    /// median context length).
    pub bytes_per_audio_frame: f64,
    pub bytes_per_text_token: f64,
    pub audio_gb_per_s: f64,
    pub text_gb_per_s: f64,
    /// Wall time per second of generated audio (17.5 frames); below 1 is faster than real time.
    pub real_time_factor: f64,
}

/// Audio frames per second of audio (5 reasoning + 12.5 reconstruction positions).
pub const FRAMES_PER_AUDIO_SECOND: f64 = 17.5;

/// A TTS-shaped prompt: begin-of-text, pseudo-random text ids, end-of-text.
pub fn text_prompt(len: usize, seed: u64) -> Vec<Frame> {
    (0..len)
        .map(|i| match i {
            0 => Frame::Text(128_000),
            _ if i + 1 == len => Frame::Text(128_001),
            _ => Frame::Text(uniaudio_runtime::rng::hash32(seed as u32 ^ i as u32) % 128_000),
        })
        .collect()
}

/// Times up to `steps` decode steps after prefill; returns (prefill seconds, per-step
/// seconds). The first step only samples from the prompt's last position (no forward
/// pass), so it runs untimed and `steps + 1` are generated (one more cache position than
/// the steps timed): every timed step is one forward pass plus one sample. A stream that
/// ends early (an end token) times fewer, none if it ends on its first sample.
fn timed_run<B: Backend>(lm: &UniAudioLm<B>, backend: &B, prompt: &[Frame], kind: OutputKind, steps: usize, opts: &BenchOptions, on_step: &mut dyn FnMut()) -> Result<(f64, Vec<f64>)> {
    let gen = GenerateOptions { kind, top_k: opts.top_k, temperature: opts.temperature, seed: opts.seed, max_steps: steps + 1, cfg_scale: None };
    let mut g = Generator::new(lm, backend, prompt, &gen)?;
    let t = Instant::now();
    g.prefill()?;
    backend.sync()?;
    let prefill = t.elapsed().as_secs_f64();
    let mut times = Vec::with_capacity(steps);
    let mut more = g.step()?;
    while more {
        let t = Instant::now();
        more = g.step()?;
        backend.sync()?;
        times.push(t.elapsed().as_secs_f64());
        on_step();
    }
    Ok((prefill, times))
}

/// A measured run's step times: at least one, or an error saying why there are none.
fn measured(kind: OutputKind, times: Vec<f64>) -> Result<Vec<f64>> {
    if times.is_empty() {
        return Err(LmError::Invalid(format!("the {kind:?} stream ended on its first sample (an end token): no decode step to time; try another --prompt-len")));
    }
    Ok(times)
}

/// Weight bytes one audio frame / one text token reads (whatever the batch size).
pub(crate) fn weight_bytes_per_step<B: Backend>(lm: &UniAudioLm<B>) -> (f64, f64) {
    let w = &lm.weights;
    let stacks = (w.backbone.bytes() + w.understanding.bytes() + w.generation.bytes()) as f64;
    let row = |t: &uniaudio_runtime::Tensor<B>| t.size_bytes() as f64 / t.shape()[0] as f64;
    // Per frame: 8 embedding rows in, the stacks, then 8 × (projection + decoder + head).
    let decoder = CODEBOOKS as f64 * (w.decoder.bytes() + w.projection.size_bytes() + w.audio_head[0].size_bytes()) as f64;
    let emb_rows = CODEBOOKS as f64 * row(&w.audio_embeddings);
    (stacks + decoder + 2.0 * emb_rows, stacks + w.lm_head.size_bytes() as f64 + row(&w.wte))
}

/// Projection weights of the three big stacks (one prefill token multiplies each once).
fn projection_params<B: Backend>(lm: &UniAudioLm<B>) -> usize {
    let w = &lm.weights;
    w.backbone.projection_params()
        + w.understanding.projection_params()
        + w.generation.projection_params()
}

/// KV-cache bytes read per position of context by the three big stacks.
pub(crate) fn kv_bytes_per_position<B: Backend>(lm: &UniAudioLm<B>) -> f64 {
    let s = &lm.config.stacks;
    [&s.backbone, &s.understanding, &s.generation].iter().map(|c| (c.n_layer * 2 * c.kv_dim() * 4) as f64).sum()
}

pub fn run<B: Backend>(lm: &UniAudioLm<B>, backend: &B, opts: &BenchOptions, on_step: &mut dyn FnMut()) -> Result<BenchReport> {
    let prompt = text_prompt(opts.prompt_len, opts.seed);

    // Untimed warm-up: pages every weight in from the file, compiles GPU pipelines and (on
    // the full prompt) lets kernels tuned on first use settle, so the timings below
    // measure compute and memory, not disk, driver start-up or tuning.
    let warm_prompt = text_prompt(opts.prompt_len.min(4), opts.seed);
    timed_run(lm, backend, &prompt, OutputKind::Audio, 1, opts, &mut || {})?;
    timed_run(lm, backend, &warm_prompt, OutputKind::Text, 1, opts, &mut || {})?;

    let (prefill, audio) = timed_run(lm, backend, &prompt, OutputKind::Audio, opts.audio_frames, opts, on_step)?;
    let (_, text) = timed_run(lm, backend, &prompt, OutputKind::Text, opts.text_tokens, opts, on_step)?;
    let (mut audio, mut text) = (measured(OutputKind::Audio, audio)?, measured(OutputKind::Text, text)?);

    let (weights_audio, weights_text) = weight_bytes_per_step(lm);
    let context = (opts.prompt_len as f64 + opts.audio_frames.max(opts.text_tokens) as f64 / 2.0) * kv_bytes_per_position(lm);
    let bytes_audio = weights_audio + context;
    let bytes_text = weights_text + context;

    let ms_audio = median(&mut audio) * 1e3;
    let ms_text = median(&mut text) * 1e3;
    Ok(BenchReport {
        prompt_len: opts.prompt_len,
        prefill_seconds: prefill,
        prefill_tokens_per_second: opts.prompt_len as f64 / prefill,
        prefill_gflops: 2.0 * projection_params(lm) as f64 * opts.prompt_len as f64 / prefill / 1e9,
        audio_frames: audio.len(),
        ms_per_audio_frame: ms_audio,
        text_tokens: text.len(),
        ms_per_text_token: ms_text,
        bytes_per_audio_frame: bytes_audio,
        bytes_per_text_token: bytes_text,
        audio_gb_per_s: bytes_audio / ms_audio / 1e6,
        text_gb_per_s: bytes_text / ms_text / 1e6,
        real_time_factor: ms_audio * FRAMES_PER_AUDIO_SECOND / 1e3,
    })
}
