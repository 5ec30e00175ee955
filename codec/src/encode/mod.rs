//! The ReasoningCodec encoder: 24 kHz audio -> reasoning tokens (5 Hz) and reconstruction
//! tokens (12.5 Hz), chunk by chunk exactly as the reference (`ReasoningTokenizer.tokenize`).
//!
//! Per 30.01 s chunk: Whisper log-mel + encoder, MusicFM (BEST-RQ) conformer, WavLM
//! (mean of hidden states), then AudioThinking + the reasoning RVQ, and the phone /
//! structure / acoustic branches with FiLM and their RVQs. Only the chunks whose tokens
//! survive the crop are computed. The reference switches each FiLM off for 20 % of
//! chunks at random even at inference; this port always applies it (deterministic).

pub mod bench;
pub mod chunk;
pub mod config;
pub mod convert;
mod film;
mod layers;
mod musicfm;
pub mod presets;
mod rvq_search;
pub mod tensors;
mod thinking;
mod wavlm;
mod whisper;

use std::path::Path;

use uniaudio_audio as audio;
use uniaudio_runtime::{ops, Backend, DType, Tensor};

pub use chunk::ChunkPlan;
pub use config::EncoderConfig;
use layers::EncoderWeights;
pub use tensors::encoder_tensors;

use crate::error::{CodecError, Result};
use crate::synth::{CODEC_FILE, CONFIG_FILE};

pub struct Encoder<B: Backend> {
    pub config: EncoderConfig,
    whisper: whisper::Whisper<B>,
    musicfm: musicfm::MusicFm<B>,
    wavlm: wavlm::Wavlm<B>,
    thinking: thinking::Thinking<B>,
    reconstruction: film::Reconstruction<B>,
}

/// Token frames: `reasoning[i]` holds the reasoning RVQ's levels of frame i (5 Hz),
/// `reconstruction[i]` the 8 rows (phone, structure, acoustic 1..6) of frame i (12.5 Hz).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Tokens {
    pub reasoning: Vec<Vec<u32>>,
    pub reconstruction: Vec<Vec<u32>>,
}

/// One chunk's codes and the stage outputs the fixtures compare (device tensors).
pub struct ChunkOutput<B: Backend> {
    pub tokens: Tokens,
    pub whisper_out: Tensor<B>,
    pub musicfm_acoustic: Tensor<B>,
    pub musicfm_semantic: Tensor<B>,
    pub wavlm_fe: Tensor<B>,
    pub wavlm_mean: Tensor<B>,
    pub reasoning_prevq: Tensor<B>,
    pub reasoning_quantized: Tensor<B>,
    /// phone, structure, acoustic FiLM outputs (the RVQ inputs).
    pub branch_prevq: Vec<Tensor<B>>,
    pub times: StageTimes,
}

/// Seconds per stage of one chunk (device work waited for at each stage's end).
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct StageTimes {
    /// Resampling to 16 kHz and both spectrograms (host).
    pub mel: f64,
    pub whisper: f64,
    pub musicfm: f64,
    pub wavlm: f64,
    /// AudioThinking up to the query outputs.
    pub thinking: f64,
    /// The reasoning RVQ, the reconstruction branches (down-convs, fusion, FiLM) and their RVQs.
    pub rvq: f64,
}

impl StageTimes {
    pub fn add(&mut self, o: &StageTimes) {
        self.mel += o.mel;
        self.whisper += o.whisper;
        self.musicfm += o.musicfm;
        self.wavlm += o.wavlm;
        self.thinking += o.thinking;
        self.rvq += o.rvq;
    }
    pub fn total(&self) -> f64 {
        self.mel + self.whisper + self.musicfm + self.wavlm + self.thinking + self.rvq
    }
}

/// Called after each computed chunk with (done, total).
pub type Progress<'a> = &'a mut dyn FnMut(usize, usize);

impl<B: Backend> Encoder<B> {
    /// Loads a codec directory's encoder (config.json's encoder sections and the encoder
    /// tensors of codec.safetensors, every one checked before any is read).
    pub fn load(backend: &B, dir: &Path) -> Result<Self> {
        let config = EncoderConfig::load(&dir.join(CONFIG_FILE))?;
        Self::load_with(backend, config, &dir.join(CODEC_FILE))
    }

    pub fn load_with(backend: &B, config: EncoderConfig, weights: &Path) -> Result<Self> {
        if !weights.is_file() {
            return Err(CodecError::Invalid(format!("{}: no such weight file (the encoder's tensors live in {CODEC_FILE})", weights.display())));
        }
        let p = &config.wavlm.prefix;
        let alt_pairs = [
            (format!("{p}{}", tensors::POS_CONV_G[0]), format!("{p}{}", tensors::POS_CONV_G[1])),
            (format!("{p}{}", tensors::POS_CONV_V[0]), format!("{p}{}", tensors::POS_CONV_V[1])),
        ];
        let alts: Vec<(&str, &str)> = alt_pairs.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        let l = EncoderWeights::open(backend, weights, &encoder_tensors(&config), &alts)?;
        Ok(Encoder {
            whisper: whisper::Whisper::load(&l, &config)?,
            musicfm: musicfm::MusicFm::load(&l, &config)?,
            wavlm: wavlm::Wavlm::load(&l, &config)?,
            thinking: thinking::Thinking::load(&l, &config)?,
            reconstruction: film::Reconstruction::load(&l, &config)?,
            config,
        })
    }

    /// Encodes 24 kHz mono samples: the chunks the crop keeps, then the crop.
    pub fn encode(&self, bk: &B, samples: &[f32], progress: Progress) -> Result<Tokens> {
        self.encode_until(bk, samples, progress, &|| false)
    }

    /// `encode`, ending early with `CodecError::Cancelled` once `stop` says so (it is
    /// asked before every batch of chunks).
    pub fn encode_until(&self, bk: &B, samples: &[f32], progress: Progress, stop: &dyn Fn() -> bool) -> Result<Tokens> {
        if samples.is_empty() {
            return Err(CodecError::Invalid("cannot encode zero samples".into()));
        }
        check_finite(samples)?;
        let plan = ChunkPlan::new(samples.len(), &self.config.chunking);
        let mut tokens = Tokens::default();
        let batch = self.batch_size(bk);
        for first in (0..plan.chunks).step_by(batch) {
            if stop() {
                return Err(CodecError::Cancelled);
            }
            let chunks: Vec<Vec<f32>> = (first..plan.chunks.min(first + batch)).map(|k| audio::chunk_24k(samples, k, self.config.chunking.chunk_samples)).collect();
            let out = self.encode_chunks(bk, &chunks)?;
            tokens.reasoning.extend(out.tokens.reasoning);
            tokens.reconstruction.extend(out.tokens.reconstruction);
            progress(first + chunks.len(), plan.chunks);
        }
        tokens.reasoning.truncate(plan.reasoning_frames);
        tokens.reconstruction.truncate(plan.reconstruction_frames);
        Ok(tokens)
    }

    /// Chunks per batch: one on the CPU, whose GEMMs are already large at one chunk (a
    /// batch would only cost memory); on GPUs the config's, fewer when the backend's
    /// largest bindable tensor cannot hold a batch's biggest activation.
    pub fn batch_size<C: Backend>(&self, bk: &C) -> usize {
        if C::NAME == "cpu" {
            return 1;
        }
        batch_that_fits(&self.config, bk.max_tensor_bytes())
    }

    /// One chunk of `chunk_samples` 24 kHz samples -> its codes and stage outputs.
    pub fn encode_chunk(&self, bk: &B, chunk: &[f32]) -> Result<ChunkOutput<B>> {
        self.encode_chunks(bk, std::slice::from_ref(&chunk.to_vec()))
    }

    /// A batch of chunks -> their codes (chunk after chunk) and stage outputs (rows of
    /// chunk b after those of chunk b − 1).
    pub fn encode_chunks(&self, bk: &B, chunks: &[Vec<f32>]) -> Result<ChunkOutput<B>> {
        let c = &self.config;
        if chunks.is_empty() || chunks.iter().any(|ch| ch.len() != c.chunking.chunk_samples) {
            return Err(CodecError::Invalid(format!("a batch holds chunks of {} samples each", c.chunking.chunk_samples)));
        }
        let batch = chunks.len();
        let mut clock = std::time::Instant::now();
        let mut lap = |bk: &B| -> Result<f64> {
            bk.sync()?;
            let now = std::time::Instant::now();
            Ok(now.duration_since(std::mem::replace(&mut clock, now)).as_secs_f64())
        };
        let mut times = StageTimes::default();
        let n_mels = c.whisper.feature_extractor.n_mels;
        let (mut mel_w, mut mel_m, mut wav16) = (Vec::new(), Vec::new(), Vec::new());
        for chunk in chunks {
            let x16 = audio::resample_24k_to_16k(chunk);
            mel_w.extend(time_major(&audio::whisper_log_mel(&x16, n_mels), n_mels));
            mel_m.extend(time_major(&audio::musicfm_mel(chunk), audio::MUSICFM_MELS));
            // WavLM reads the 16 kHz chunk followed by 160 zeros.
            wav16.extend(x16);
            wav16.extend(std::iter::repeat_n(0.0, 160));
        }
        let mel_w = ops::upload_f32(bk, &[mel_w.len() / n_mels, n_mels], &mel_w, DType::F32)?;
        let mel_frames = mel_m.len() / audio::MUSICFM_MELS / batch;
        let mel_m = ops::upload_f32(bk, &[batch * mel_frames, audio::MUSICFM_MELS], &mel_m, DType::F32)?;
        let wav16 = ops::upload_f32(bk, &[batch, wav16.len() / batch], &wav16, DType::F32)?;
        times.mel = lap(bk)?;

        let whisper_out = self.whisper.forward(bk, &mel_w)?;
        times.whisper = lap(bk)?;
        let hs = &c.musicfm.hidden_states;
        let streams = self.musicfm.forward(bk, &mel_m, mel_frames, (hs.acoustic, hs.semantic))?;
        times.musicfm = lap(bk)?;
        let (wavlm_fe, wavlm_mean) = self.wavlm.forward(bk, &wav16)?;
        times.wavlm = lap(bk)?;
        let reasoning_prevq = self.thinking.forward(bk, &whisper_out, &streams.semantic, batch)?;
        times.thinking = lap(bk)?;
        let rvq = self.thinking.vq.encode(bk, &reasoning_prevq)?;
        let reasoning_quantized = rvq.quantized.ok_or_else(|| CodecError::Invalid("the reasoning RVQ has no project_out".into()))?;
        let frames = c.chunking.reconstruction_frames_per_chunk;
        let s = film::Streams { whisper: &whisper_out, wavlm_mean: &wavlm_mean, semantic: &streams.semantic, acoustic: &streams.acoustic, reasoning: &reasoning_quantized };
        let branches = self.reconstruction.forward(bk, &s, batch, frames)?;
        times.rvq = lap(bk)?;

        let levels = c.reasoning_vq.levels;
        let reasoning: Vec<Vec<u32>> = ops::download_u32(bk, &rvq.codes)?.chunks(levels).map(<[u32]>::to_vec).collect();
        let mut reconstruction = vec![vec![0u32; c.reconstruction_rows()]; batch * frames];
        for ((_, codes), group) in branches.iter().zip(&c.reconstruction.groups) {
            let codes = ops::download_u32(bk, codes)?;
            for (f, row) in reconstruction.iter_mut().enumerate() {
                for (l, &r) in group.rows.iter().enumerate() {
                    row[r] = codes[f * group.levels + l];
                }
            }
        }
        Ok(ChunkOutput {
            tokens: Tokens { reasoning, reconstruction },
            whisper_out,
            musicfm_acoustic: streams.acoustic,
            musicfm_semantic: streams.semantic,
            wavlm_fe,
            wavlm_mean,
            reasoning_prevq,
            reasoning_quantized,
            branch_prevq: branches.into_iter().map(|(f, _)| f).collect(),
            times,
        })
    }
}

/// The config's batch size, reduced until the largest per-chunk activation times the batch
/// fits in `limit` bytes (at least one chunk).
pub fn batch_that_fits(c: &EncoderConfig, limit: Option<u64>) -> usize {
    let batch = c.chunking.batch_size.max(1);
    let Some(limit) = limit else { return batch };
    let per_chunk = tensors::largest_activation_bytes(c).max(1);
    batch.min((limit / per_chunk) as usize).max(1)
}

/// [bins, frames] row-major (the spectrograms' layout) -> [frames, bins].
fn time_major(m: &[f32], bins: usize) -> Vec<f32> {
    let frames = m.len() / bins.max(1);
    let mut t = vec![0f32; m.len()];
    for b in 0..bins {
        for f in 0..frames {
            t[f * bins + b] = m[b * frames + f];
        }
    }
    t
}

/// Refuses 24 kHz samples holding a NaN or an infinity, naming the first and its time: such
/// a sample would run through every model and come out as tokens. Callers that encode long
/// audio in windows call it on the whole input first, so the time is the input's.
pub fn check_finite(samples: &[f32]) -> Result<()> {
    match samples.iter().position(|s| !s.is_finite()) {
        None => Ok(()),
        Some(i) => {
            let at = i as f64 / chunk::SAMPLE_RATE as f64;
            Err(CodecError::Invalid(format!("the input audio has a non-finite sample ({} at {at:.3} s); samples must be finite numbers, nominally in [-1, 1]", samples[i])))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::check_finite;

    #[test]
    fn a_non_finite_sample_is_named_with_its_time() {
        let mut samples = vec![0.25f32; 48_000];
        assert!(check_finite(&samples).is_ok());
        samples[36_000] = f32::NAN;
        samples[40_000] = f32::INFINITY;
        let e = check_finite(&samples).unwrap_err().to_string();
        assert!(e.contains("NaN at 1.500 s"), "{e}");
        samples[36_000] = 0.0;
        let e = check_finite(&samples).unwrap_err().to_string();
        assert!(e.contains("inf at 1.667 s"), "{e}");
    }
}
