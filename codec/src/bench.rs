//! Codec decode benchmark: one decode of seeded random tokens, timed per part, with the
//! flops each part performs (a conditional and an unconditional row per Euler step).

use serde::Serialize;
use uniaudio_runtime::Backend;

use crate::decoder::{Codec, DecodeOptions};
use crate::error::Result;
use crate::noise::Noise;
use crate::window::StitchMode;

#[derive(Clone, Debug, Serialize)]
pub struct CodecBenchReport {
    pub steps: usize,
    pub windows: usize,
    pub audio_seconds: f64,
    pub flow_seconds: f64,
    pub sq_seconds: f64,
    pub flow_gflop: f64,
    pub sq_gflop: f64,
}

impl CodecBenchReport {
    pub fn compute_seconds(&self) -> f64 {
        self.flow_seconds + self.sq_seconds
    }
    /// Seconds of audio per second of compute.
    pub fn speed(&self) -> f64 {
        self.audio_seconds / self.compute_seconds()
    }
    pub fn flow_gflops(&self) -> f64 {
        self.flow_gflop / self.flow_seconds
    }
    pub fn sq_gflops(&self) -> f64 {
        self.sq_gflop / self.sq_seconds
    }
}

/// Decodes `tokens` token frames (seeded random ids) with `steps` Euler steps.
pub fn run<B: Backend>(codec: &Codec<B>, b: &B, tokens: usize, steps: usize, progress: &mut dyn FnMut(usize, usize)) -> Result<CodecBenchReport> {
    let c = &codec.config;
    let ids: Vec<Vec<u32>> = (0..c.num_codebooks)
        .map(|r| (0..tokens).map(|t| uniaudio_runtime::rng::hash32((r * 1_000_003 + t) as u32) % c.rvq.codebook_size as u32).collect())
        .collect();
    let opts = DecodeOptions { steps, mode: StitchMode::Reference, noise: Noise::Seeded(7) };
    let out = codec.decode(b, &ids, &opts, &mut |w, n, s, steps| progress(w * steps + s, n * steps))?;
    let windows = out.windows.len();
    Ok(CodecBenchReport {
        steps,
        windows,
        audio_seconds: out.audio.len() as f64 / c.sample_rate as f64,
        flow_seconds: out.windows.iter().map(|w| w.flow_seconds).sum(),
        sq_seconds: out.windows.iter().map(|w| w.sq_seconds).sum(),
        flow_gflop: codec.flow_flops_per_step() * steps as f64 * windows as f64 / 1e9,
        sq_gflop: codec.sq_flops_per_window() * windows as f64 / 1e9,
    })
}
