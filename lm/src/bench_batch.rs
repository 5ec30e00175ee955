//! Batched decode benchmark: B independent requests step together through the engine;
//! each step reads the weights once for all of them, so aggregate throughput grows with B
//! until compute, not memory, is the limit.

use std::time::Instant;

use uniaudio_runtime::bench::median;
use uniaudio_runtime::Backend;

use crate::bench::{kv_bytes_per_position, text_prompt, weight_bytes_per_step, BenchOptions, FRAMES_PER_AUDIO_SECOND};
use crate::engine::{Engine, EngineOptions};
use crate::error::{LmError, Result};
use crate::generate::{GenerateOptions, OutputKind};
use crate::model::UniAudioLm;

/// One output kind at one batch size.
#[derive(Clone, Debug, serde::Serialize)]
pub struct BatchKindRow {
    /// Median wall time of one step for the whole batch.
    pub ms_per_step: f64,
    /// Frames (audio) or tokens (text) per second, all streams together.
    pub per_second: f64,
    /// Weights (read once) plus every stream's KV cache, per step.
    pub bytes_per_step: f64,
    pub gb_per_s: f64,
    /// Aggregate throughput relative to batch 1 in the same run (when it ran).
    pub scaling: Option<f64>,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct BatchRow {
    pub batch: usize,
    pub audio: BatchKindRow,
    /// Wall time per second of audio of each stream (< 1: faster than real time).
    pub audio_real_time_factor_per_stream: f64,
    pub text: BatchKindRow,
}

/// Times `steps` batched steps of `batch` requests of `kind` after their prefill (the
/// first sample, which needs no forward pass, is not timed); median seconds per step.
fn time_batch<B: Backend>(lm: &UniAudioLm<B>, backend: &B, opts: &BenchOptions, kind: OutputKind, batch: usize, steps: usize, on_step: &mut dyn FnMut()) -> Result<f64> {
    let mut engine = Engine::new(lm, backend, &EngineOptions { max_batch: batch, kv_budget: None })?;
    let prompt = text_prompt(opts.prompt_len, opts.seed);
    for i in 0..batch {
        let o = GenerateOptions { kind, top_k: opts.top_k, temperature: opts.temperature, seed: opts.seed + i as u64, max_steps: steps + 1, cfg_scale: None };
        engine.submit(&prompt, &o)?;
    }
    engine.admit();
    // A prefill that failed is that error, not a lack of room.
    if let Some(e) = engine.take_finished().into_iter().find_map(|f| f.result.err()) {
        return Err(LmError::Shared(e));
    }
    if engine.active() != batch {
        return Err(LmError::Invalid(format!("only {} of {batch} requests fit the KV budget of {} bytes", engine.active(), engine.kv().budget())));
    }
    engine.step()?;
    let mut times = Vec::with_capacity(steps);
    for _ in 0..steps {
        let t = Instant::now();
        engine.step()?;
        backend.sync()?;
        times.push(t.elapsed().as_secs_f64());
        on_step();
        if engine.active() < batch {
            // A stream stopped on its own (an end frame): the batch is no longer B wide.
            break;
        }
    }
    Ok(median(&mut times))
}

/// The scaling table over `sizes` (each at least 1), with `opts.audio_frames` /
/// `opts.text_tokens` timed steps per size.
pub fn run_batched<B: Backend>(lm: &UniAudioLm<B>, backend: &B, sizes: &[usize], opts: &BenchOptions, on_step: &mut dyn FnMut()) -> Result<Vec<BatchRow>> {
    let (weights_audio, weights_text) = weight_bytes_per_step(lm);
    let kv = kv_bytes_per_position(lm);
    // Untimed warm-up at the widest size: pages weights in, compiles pipelines.
    let widest = sizes.iter().copied().max().unwrap_or(1);
    time_batch(lm, backend, opts, OutputKind::Audio, widest, 1, &mut || {})?;
    time_batch(lm, backend, opts, OutputKind::Text, widest, 1, &mut || {})?;
    let mut rows: Vec<BatchRow> = Vec::new();
    for &batch in sizes {
        let audio_s = time_batch(lm, backend, opts, OutputKind::Audio, batch, opts.audio_frames, on_step)?;
        let text_s = time_batch(lm, backend, opts, OutputKind::Text, batch, opts.text_tokens, on_step)?;
        let row = |seconds: f64, weights: f64, steps: usize| {
            let context = opts.prompt_len as f64 + steps as f64 / 2.0;
            let bytes = weights + batch as f64 * context * kv;
            BatchKindRow { ms_per_step: seconds * 1e3, per_second: batch as f64 / seconds, bytes_per_step: bytes, gb_per_s: bytes / seconds / 1e9, scaling: None }
        };
        rows.push(BatchRow {
            batch,
            audio: row(audio_s, weights_audio, opts.audio_frames),
            audio_real_time_factor_per_stream: audio_s * FRAMES_PER_AUDIO_SECOND,
            text: row(text_s, weights_text, opts.text_tokens),
        });
    }
    // Scaling against the batch-1 row of this run, where there is one.
    if let Some(base) = rows.iter().find(|r| r.batch == 1).cloned() {
        for r in &mut rows {
            r.audio.scaling = Some(r.audio.per_second / base.audio.per_second);
            r.text.scaling = Some(r.text.per_second / base.text.per_second);
        }
    }
    Ok(rows)
}
