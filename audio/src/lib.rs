//! Audio front end of the ReasoningCodec encoder.
//!
//! * [`read_audio`] / [`decode_audio`]: WAV (hound), FLAC / MP3 / Ogg-Vorbis (symphonia) ->
//!   mono f32 at the file's rate, with torchaudio's PCM scaling and the reference's downmix.
//! * [`resample`]: `torchaudio.functional.resample` (f32 kernel), any rate -> 24 kHz;
//!   [`resample_24k_to_16k`]: `torchaudio.transforms.Resample(24000, 16000)` (f64 kernel).
//! * [`chunk_24k`]: one 720240-sample chunk of the periodically extended signal.
//! * [`whisper_log_mel`], [`musicfm_mel`]: the two `[n_mels, 3000]` spectrograms of a chunk.
//!
//! Everything reproduces the Python reference's arithmetic (order of operations and float
//! types); see `shared/spec/reasoningcodec.md` §2.5 and the encoder fixture's README §6.

mod compressed;
mod dot;
mod error;
mod filterbank;
mod mel;
mod polyphase;
mod read;
mod resample;
mod stft;
mod wav;

pub use error::AudioError;
pub use mel::{
    musicfm_mel, whisper_log_mel, MEL_FRAMES, MUSICFM_MELS, MUSICFM_SAMPLES, WHISPER_SAMPLES,
};
pub use read::{
    check_rate, decode_audio, decode_audio_limited, read_audio, Audio, DecodeLimits, Downmix,
    MAX_AUDIO_BYTES, MAX_DECODED_SAMPLES, MAX_SAMPLE_RATE, MAX_SECONDS, MIN_SAMPLE_RATE,
};
pub use resample::{resample, resample_24k_to_16k, resampled_len};

/// Samples per encoder chunk at 24 kHz (30.01 s; the spectrograms use the first 720000).
pub const CHUNK_24K: usize = 720_240;

/// Samples `[k * chunk, (k + 1) * chunk)` of the periodic extension `a'[i] = a[i mod a.len()]`
/// (the reference tiles short input by doubling, which gives the same samples).
/// Returns an empty vector when `a` is empty.
pub fn chunk_24k(a: &[f32], k: usize, chunk: usize) -> Vec<f32> {
    if a.is_empty() {
        return Vec::new();
    }
    let len = a.len();
    // (k * chunk) mod len without overflow.
    let mut i = ((k as u128 * chunk as u128) % len as u128) as usize;
    let mut out = Vec::with_capacity(chunk);
    while out.len() < chunk {
        let take = (len - i).min(chunk - out.len());
        out.extend_from_slice(&a[i..i + take]);
        i = 0;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::chunk_24k;

    #[test]
    fn chunk_wraps_periodically() {
        let a = [0.0, 1.0, 2.0];
        assert_eq!(chunk_24k(&a, 0, 7), vec![0.0, 1.0, 2.0, 0.0, 1.0, 2.0, 0.0]);
        assert_eq!(chunk_24k(&a, 1, 4), vec![1.0, 2.0, 0.0, 1.0]);
        assert_eq!(chunk_24k(&a, usize::MAX, 2).len(), 2);
        assert!(chunk_24k(&[], 0, 5).is_empty());
    }
}
