//! Encoder benchmark: encode a seeded 24 kHz signal, time each stage, and count the flops
//! each stage performs from the configuration (multiply-adds × 2; attention's two products
//! included; elementwise work and the spectrograms' FFTs are not counted).

use serde::Serialize;
use uniaudio_runtime::Backend;

use super::chunk::ChunkPlan;
use super::config::EncoderConfig;
use super::tensors::{musicfm_freq_rows, musicfm_layers_needed, wavlm_layers_needed, WHISPER_FRAMES, WHISPER_POSITIONS};
use super::{Encoder, StageTimes};
use crate::error::Result;

/// GFLOP per chunk of each stage (the mel stage is host FFT work and not counted).
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct StageFlops {
    pub whisper: f64,
    pub musicfm: f64,
    pub wavlm: f64,
    pub thinking: f64,
    pub rvq: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct EncoderBenchReport {
    pub audio_seconds: f64,
    pub chunks: usize,
    pub times: StageTimes,
    /// GFLOP over all chunks.
    pub gflop: StageFlops,
}

impl EncoderBenchReport {
    /// Seconds of audio encoded per second of compute.
    pub fn speed(&self) -> f64 {
        self.audio_seconds / self.times.total()
    }
}

pub fn flops_per_chunk(c: &EncoderConfig) -> StageFlops {
    let mm = |m: usize, k: usize, n: usize| 2.0 * (m * k * n) as f64;
    let attention = |t: usize, d: usize| 2.0 * mm(t, d, t);
    let w = &c.whisper;
    let (tw, d) = (WHISPER_POSITIONS, w.d_model);
    let whisper = mm(WHISPER_FRAMES, 3 * w.feature_extractor.n_mels, d)
        + mm(tw, 3 * d, d)
        + w.layers as f64 * (4.0 * mm(tw, d, d) + attention(tw, d) + 2.0 * mm(tw, d, w.ffn_dim));
    let m = &c.musicfm;
    let (ch, e) = (m.conv_dim, m.encoder_dim);
    let (t2, f2, t4, f4) = (WHISPER_FRAMES / 2, 64, WHISPER_FRAMES / 4, musicfm_freq_rows());
    let front = 2.0 * mm(t2 * f2, 9, ch) + mm(t2 * f2, 9 * ch, ch) + 3.0 * mm(t4 * f4, 9 * ch, ch) + mm(t4, ch * f4, e);
    let conformer = 4.0 * mm(t4, e, m.intermediate_size) + 4.0 * mm(t4, e, e) + attention(t4, e) + mm(t4, e, 2 * e) + mm(t4, m.conv_depthwise_kernel_size, e) + mm(t4, e, e);
    let musicfm = front + musicfm_layers_needed(c) as f64 * conformer;
    let v = &c.wavlm;
    let mut len = c.chunking.chunk_samples * 2 / 3 + 160;
    let mut c_in = 1;
    let mut fe = 0.0;
    for ((&dim, &k), &s) in v.conv_dim.iter().zip(&v.conv_kernel).zip(&v.conv_stride) {
        len = (len - k) / s + 1;
        fe += mm(len, k * c_in, dim);
        c_in = dim;
    }
    let h = v.hidden_size;
    let pos = mm(len, v.num_conv_pos_embeddings * h / v.num_conv_pos_embedding_groups, h);
    let layer = 4.0 * mm(len, h, h) + attention(len, h) + 2.0 * mm(len, h, v.intermediate_size);
    let wavlm = fe + mm(len, c_in, h) + pos + wavlm_layers_needed(c) as f64 * layer;
    let a = &c.audio_thinking;
    let frames = t4;
    let tokens = frames / a.interval * (a.interval + 1);
    let dm = m.encoder_dim;
    let block = mm(tokens, a.dim, 3 * a.dim) + mm(tokens, a.dim, a.dim) + attention(tokens, a.dim) + mm(tokens, a.dim, 2 * a.ff_inner) + mm(tokens, a.ff_inner, a.dim);
    let thinking = mm(frames, 2 * d, d) + mm(frames, d + dm, a.dim) + a.depth as f64 * block;
    let q = &c.reasoning_vq;
    let r = &c.reconstruction;
    let (rf, qf, cd) = (c.chunking.reconstruction_frames_per_chunk, c.chunking.reasoning_frames_per_chunk, r.codec_dim);
    let reasoning = mm(qf, a.dim, q.codebook_dim) + mm(qf, q.levels * q.codebook_size, q.codebook_dim) + mm(qf, q.codebook_dim, a.dim);
    let down = mm(rf, 4 * d, d) + mm(rf, 4 * h, h) + 2.0 * mm(rf, 2 * dm, dm);
    let fusion = mm(rf, h, cd) + mm(rf, dm, cd) + mm(rf, dm + d, cd) + mm(qf, a.dim, cd) + 3.0 * mm(rf, cd, 2 * cd);
    let search = r.groups.iter().map(|g| mm(rf, cd, r.vq.codebook_dim) + mm(rf, g.levels * r.vq.codebook_size, r.vq.codebook_dim)).sum::<f64>();
    let rvq = reasoning + down + fusion + search;
    StageFlops { whisper: whisper / 1e9, musicfm: musicfm / 1e9, wavlm: wavlm / 1e9, thinking: thinking / 1e9, rvq: rvq / 1e9 }
}

/// A seeded test signal: a few tones with vibrato over a faint noise floor (no digital
/// silence, whose spectrogram is float-rounding noise).
pub fn test_signal(samples: usize) -> Vec<f32> {
    (0..samples)
        .map(|i| {
            let t = i as f64 / 24_000.0;
            let tone = 0.3 * (2.0 * std::f64::consts::PI * (220.0 * t + 3.0 * (5.0 * t).sin())).sin() + 0.1 * (2.0 * std::f64::consts::PI * 1375.0 * t).sin();
            let noise = (uniaudio_runtime::rng::hash32(i as u32) as f64 / u32::MAX as f64 - 0.5) * 6e-3;
            (tone + noise) as f32
        })
        .collect()
}

/// Encodes `seconds` of the test signal; stage times summed over the chunks computed.
pub fn run<B: Backend>(encoder: &Encoder<B>, b: &B, seconds: f64, progress: &mut dyn FnMut(usize, usize)) -> Result<EncoderBenchReport> {
    let samples = (seconds * 24_000.0).round().max(1.0) as usize;
    let signal = test_signal(samples);
    let plan = ChunkPlan::new(samples, &encoder.config.chunking);
    let mut times = StageTimes::default();
    for k in 0..plan.chunks {
        let chunk = uniaudio_audio::chunk_24k(&signal, k, encoder.config.chunking.chunk_samples);
        times.add(&encoder.encode_chunk(b, &chunk)?.times);
        progress(k + 1, plan.chunks);
    }
    let per = flops_per_chunk(&encoder.config);
    let n = plan.chunks as f64;
    let gflop = StageFlops { whisper: per.whisper * n, musicfm: per.musicfm * n, wavlm: per.wavlm * n, thinking: per.thinking * n, rvq: per.rvq * n };
    Ok(EncoderBenchReport { audio_seconds: samples as f64 / 24_000.0, chunks: plan.chunks, times, gflop })
}
