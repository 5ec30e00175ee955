//! The two spectrogram front ends of the encoder, for one 30 s chunk each.
//!
//! * Whisper: transformers 4.57 `WhisperFeatureExtractor._torch_extract_fbank_features`.
//! * MusicFM: torchaudio `MelSpectrogram` + `AmplitudeToDB` + MusicFM's normalisation.
//!
//! Both return `[n_mels, 3000]` row-major f32. Every step is f32 as in the reference.

use crate::dot::dot;
use crate::filterbank::{htk_filters, whisper_filters, MelFilter};
use crate::stft::{reflect_pad, PowerStft};

/// Frames kept from each spectrogram (the STFT makes 3001; the last is dropped).
pub const MEL_FRAMES: usize = 3000;
/// Whisper input: 30 s at 16 kHz.
pub const WHISPER_SAMPLES: usize = 480_000;
/// MusicFM input: 30 s at 24 kHz.
pub const MUSICFM_SAMPLES: usize = 720_000;
/// MusicFM mel bands.
pub const MUSICFM_MELS: usize = 128;

const WHISPER_N_FFT: usize = 400;
const WHISPER_HOP: usize = 160;
const MUSICFM_N_FFT: usize = 2048;
const MUSICFM_HOP: usize = 240;
/// MusicFM's hard-coded `melspec_2048` statistics.
const MUSICFM_MEAN: f32 = 6.768444971712967_f64 as f32;
const MUSICFM_STD: f32 = 18.417922652295623_f64 as f32;

/// The first `n` samples of `x`, zero-padded when `x` is shorter (the feature extractor's
/// `padding="max_length", truncation=True`).
fn fit(x: &[f32], n: usize) -> Vec<f32> {
    let mut v = x[..x.len().min(n)].to_vec();
    v.resize(n, 0.0);
    v
}

/// Applies the sparse filterbank to one power spectrum: `row[m] = Σ_b fb[b][m] · p[b]`.
fn apply_filters(filters: &[MelFilter], power: &[f32], row: &mut [f32]) {
    for (out, f) in row.iter_mut().zip(filters) {
        let end = (f.start + f.weights.len()).min(power.len());
        *out = dot(&power[f.start.min(end)..end], &f.weights);
    }
}

/// Frame-major `[frames, mels]` -> mel-major `[mels, frames]`, applying `f` on the way.
fn transpose_map(rows: &[f32], n_mels: usize, f: impl Fn(f32) -> f32) -> Vec<f32> {
    let frames = rows.len() / n_mels.max(1);
    let mut out = vec![0.0f32; rows.len()];
    for (t, row) in rows.chunks_exact(n_mels).enumerate() {
        for (m, &v) in row.iter().enumerate() {
            out[m * frames + t] = f(v);
        }
    }
    out
}

/// Power mel spectrogram of `x` (exactly `n_samples` long after `fit`), frame-major.
fn mel_power_frames(x: &[f32], n_fft: usize, hop: usize, filters: &[MelFilter]) -> Vec<f32> {
    let stft = PowerStft::new(n_fft, hop);
    let padded = reflect_pad(x, n_fft / 2);
    stft.map_frames(&padded, MEL_FRAMES, filters.len(), |power, row| {
        apply_filters(filters, power, row)
    })
}

/// Whisper log-mel of one 16 kHz chunk: `[n_mels, 3000]` row-major.
///
/// First 480000 samples (zero-padded if shorter); STFT n_fft 400, hop 160, periodic Hann,
/// reflect-centred; last frame dropped; |X|²; Slaney mel (0-8 kHz); `log10(max(m, 1e-10))`;
/// `max(x, max(x) - 8)` over the whole chunk; `(x + 4) / 4`.
pub fn whisper_log_mel(x16k: &[f32], n_mels: usize) -> Vec<f32> {
    let x = fit(x16k, WHISPER_SAMPLES);
    let filters = whisper_filters(n_mels);
    let mut rows = mel_power_frames(&x, WHISPER_N_FFT, WHISPER_HOP, &filters);
    for v in rows.iter_mut() {
        *v = v.max(1e-10).log10();
    }
    let max = rows.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let floor = max - 8.0;
    transpose_map(&rows, n_mels, |v| (v.max(floor) + 4.0) / 4.0)
}

/// MusicFM's normalised log-mel of one 24 kHz chunk: `[128, 3000]` row-major.
///
/// First 720000 samples (zero-padded if shorter); torchaudio `MelSpectrogram(24000,
/// n_fft 2048, hop 240, 128 HTK mels 0-12 kHz, power 2, reflect-centred)`;
/// `10 * log10(max(x, 1e-10))`; last frame dropped; `(x - 6.768444971712967) / 18.417922652295623`.
pub fn musicfm_mel(x24k: &[f32]) -> Vec<f32> {
    let x = fit(x24k, MUSICFM_SAMPLES);
    let filters = htk_filters(MUSICFM_N_FFT / 2 + 1, 0.0, 12_000.0, MUSICFM_MELS, 24_000);
    let rows = mel_power_frames(&x, MUSICFM_N_FFT, MUSICFM_HOP, &filters);
    transpose_map(&rows, MUSICFM_MELS, |v| {
        (10.0f32 * v.max(1e-10).log10() - MUSICFM_MEAN) / MUSICFM_STD
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_and_silence() {
        let w = whisper_log_mel(&[], 80);
        assert_eq!(w.len(), 80 * MEL_FRAMES);
        // All zeros: log10(1e-10) = -10 everywhere, then (x + 4) / 4 = -1.5.
        assert!(w.iter().all(|&v| (v + 1.5).abs() < 1e-6));
        let m = musicfm_mel(&[0.0; 1000]);
        assert_eq!(m.len(), MUSICFM_MELS * MEL_FRAMES);
        let expect = (-100.0f32 - MUSICFM_MEAN) / MUSICFM_STD;
        assert!(m.iter().all(|&v| (v - expect).abs() < 1e-5));
    }

    #[test]
    fn tone_lands_in_the_right_band() {
        // 1 kHz: Whisper's Slaney mel 1 kHz = 15 mels; band centres are 45.245/81 mels apart.
        let x: Vec<f32> = (0..WHISPER_SAMPLES)
            .map(|i| (2.0 * std::f32::consts::PI * 1000.0 * i as f32 / 16000.0).sin())
            .collect();
        let w = whisper_log_mel(&x, 80);
        let frame = 1500;
        let col: Vec<f32> = (0..80).map(|m| w[m * MEL_FRAMES + frame]).collect();
        let peak = (0..80).max_by(|&a, &b| col[a].total_cmp(&col[b])).unwrap();
        assert!((25..=27).contains(&peak), "{peak}");
    }
}
