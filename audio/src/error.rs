//! One error type for everything that can go wrong while turning a file into samples.
//!
//! Every variant names the file (`name`, as given by the caller) and says what was expected,
//! so a CLI can print the error as is.

use thiserror::Error;

/// Why an audio file could not be turned into samples.
#[derive(Debug, Error)]
pub enum AudioError {
    // The cause is part of the message and not a `source`, so that a printed chain
    // (`{:#}`) says it once.
    #[error("{name}: cannot read the file: {cause}")]
    Io { name: String, cause: std::io::Error },

    #[error("{name}: the file is {size} bytes; audio input is limited to {limit} bytes")]
    FileTooLarge { name: String, size: u64, limit: u64 },

    #[error("{name}: the file is empty (0 bytes); expected a WAV, FLAC, MP3 or Ogg/Vorbis file")]
    EmptyFile { name: String },

    #[error(
        "{name}: not a recognised audio file (expected a RIFF/WAVE, FLAC, MP3 or Ogg header; \
         the file starts with {head})"
    )]
    NotAudio { name: String, head: String },

    #[error("{name}: malformed WAV file: {detail}")]
    BadWav { name: String, detail: String },

    #[error(
        "{name}: truncated WAV file: the data chunk declares {declared} bytes but only \
         {present} bytes follow it"
    )]
    Truncated {
        name: String,
        declared: u64,
        present: u64,
    },

    #[error("{name}: unsupported audio encoding: {detail}")]
    Unsupported { name: String, detail: String },

    #[error("{name}: cannot decode the {format} stream: {detail}")]
    Decode {
        name: String,
        format: &'static str,
        detail: String,
    },

    #[error("{name}: the file holds no audio samples (0 frames)")]
    NoSamples { name: String },

    #[error("{name}: sample rate {rate} Hz is outside the supported range {min}..={max} Hz")]
    BadSampleRate {
        name: String,
        rate: u32,
        min: u32,
        max: u32,
    },

    #[error("{name}: the header declares 0 audio channels; expected at least 1")]
    NoChannels { name: String },

    #[error(
        "{name}: sample {frame} (channel {channel}) is {value}; expected a finite number \
         (NaN and infinity cannot be processed)"
    )]
    NonFinite {
        name: String,
        frame: u64,
        channel: u16,
        value: f32,
    },

    #[error(
        "{name}: {frames} frames at {rate} Hz is longer than the limit of {max_seconds} s \
         ({max_frames} frames)"
    )]
    TooLong {
        name: String,
        frames: u64,
        rate: u32,
        max_seconds: u64,
        max_frames: u64,
    },

    #[error(
        "{name}: {frames} frames of {channels} channels decode to {samples} samples; the limit \
         is {max_samples}"
    )]
    TooManySamples {
        name: String,
        frames: u64,
        channels: usize,
        samples: u64,
        max_samples: u64,
    },
}
