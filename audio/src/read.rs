//! Audio file -> mono f32 samples, as `torchaudio.load` followed by the reference's downmix.
//!
//! WAV goes through `hound` (bit-exact PCM scaling), everything else through `symphonia`.
//! All checks that the rest of the pipeline relies on (rate range, channel count, finite
//! samples, size limits) are made here, so later stages can assume sane input.

use std::path::Path;

use crate::compressed::decode_compressed;
use crate::error::AudioError;
use crate::wav::decode_wav;

/// Largest file accepted; checked before anything is read (2 GiB).
pub const MAX_AUDIO_BYTES: u64 = 2 << 30;
/// Lowest sample rate accepted, in Hz.
pub const MIN_SAMPLE_RATE: u32 = 1000;
/// Highest sample rate accepted, in Hz.
pub const MAX_SAMPLE_RATE: u32 = 768_000;
/// Longest decoded input accepted, in seconds at the file's own rate (4 hours).
pub const MAX_SECONDS: u64 = 4 * 3600;
/// Most decoded samples (all channels counted) accepted by default: 4 hours of 48 kHz
/// stereo, 5.5 GB as f32. Files with more channels or a higher rate reach it sooner.
pub const MAX_DECODED_SAMPLES: u64 = MAX_SECONDS * 48_000 * 2;

/// Bounds on what one decode may produce, checked while decoding and before the samples
/// are held (a small compressed file can expand to gigabytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Longest input, in seconds at the file's own rate.
    pub max_seconds: u64,
    /// Most decoded samples, all channels counted.
    pub max_samples: u64,
}

impl DecodeLimits {
    /// At most `max_seconds`, and at most that long at 192 kHz in stereo (or 48 kHz in 8
    /// channels) in samples; never more than the defaults.
    pub fn seconds(max_seconds: u64) -> DecodeLimits {
        let max_seconds = max_seconds.min(MAX_SECONDS);
        DecodeLimits {
            max_seconds,
            max_samples: max_seconds.saturating_mul(384_000).min(MAX_DECODED_SAMPLES),
        }
    }

    /// The most frames accepted at `rate`.
    pub(crate) fn max_frames(&self, rate: u32) -> u64 {
        u64::from(rate).saturating_mul(self.max_seconds)
    }

    /// Whether `frames` of `channels` at `rate` fit; else the error naming the bound.
    pub(crate) fn check(
        &self,
        frames: u64,
        channels: usize,
        rate: u32,
        name: &str,
    ) -> Result<(), AudioError> {
        if frames > self.max_frames(rate) {
            return Err(AudioError::TooLong {
                name: name.to_string(),
                frames,
                rate,
                max_seconds: self.max_seconds,
                max_frames: self.max_frames(rate),
            });
        }
        let samples = frames.saturating_mul(channels as u64);
        if samples > self.max_samples {
            return Err(AudioError::TooManySamples {
                name: name.to_string(),
                frames,
                channels,
                samples,
                max_samples: self.max_samples,
            });
        }
        Ok(())
    }
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            max_seconds: MAX_SECONDS,
            max_samples: MAX_DECODED_SAMPLES,
        }
    }
}

/// How the channels of the file were reduced to the mono `samples`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Downmix {
    /// The file is mono.
    None,
    /// Exactly two channels: `(l + r) / 2`, as the reference does.
    Stereo,
    /// More than two channels: the mean of all of them (the reference would not accept
    /// such a file; the caller should tell the user). Holds the channel count.
    Mean(u16),
}

/// A decoded file: mono samples at the file's own rate.
#[derive(Clone, Debug)]
pub struct Audio {
    /// Mono samples after the downmix, in [-1, 1) for integer PCM.
    pub samples: Vec<f32>,
    pub sample_rate: u32,
    /// Channel count of the file (before the downmix).
    pub channels: u16,
    pub downmix: Downmix,
}

/// Interleaved samples straight out of a decoder, before checks and downmix.
pub(crate) struct Decoded {
    pub samples: Vec<f32>,
    pub rate: u32,
    pub channels: u16,
}

/// Container formats recognised from the first bytes of the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Container {
    Wav,
    Flac,
    Ogg,
    Mp3,
}

impl Container {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Container::Wav => "WAV",
            Container::Flac => "FLAC",
            Container::Ogg => "Ogg",
            Container::Mp3 => "MP3",
        }
    }
}

/// Reads and decodes an audio file (WAV, FLAC, MP3, Ogg/Vorbis) into mono samples.
pub fn read_audio(path: &Path) -> Result<Audio, AudioError> {
    let name = path.display().to_string();
    let io = |cause| AudioError::Io {
        name: name.clone(),
        cause,
    };
    // Check the size first so a huge file is refused before it is read into memory.
    let size = std::fs::metadata(path).map_err(io)?.len();
    if size > MAX_AUDIO_BYTES {
        return Err(AudioError::FileTooLarge {
            name,
            size,
            limit: MAX_AUDIO_BYTES,
        });
    }
    let bytes = std::fs::read(path).map_err(io)?;
    decode_audio(&bytes, &name)
}

/// Decodes an in-memory audio file within the default limits; `name` is only used in
/// error messages.
pub fn decode_audio(bytes: &[u8], name: &str) -> Result<Audio, AudioError> {
    decode_audio_limited(bytes, name, DecodeLimits::default())
}

/// `decode_audio` within `limits` (a server takes short clips: decoding stops as soon as
/// the output passes them).
pub fn decode_audio_limited(
    bytes: &[u8],
    name: &str,
    limits: DecodeLimits,
) -> Result<Audio, AudioError> {
    if bytes.len() as u64 > MAX_AUDIO_BYTES {
        return Err(AudioError::FileTooLarge {
            name: name.to_string(),
            size: bytes.len() as u64,
            limit: MAX_AUDIO_BYTES,
        });
    }
    if bytes.is_empty() {
        return Err(AudioError::EmptyFile {
            name: name.to_string(),
        });
    }
    let decoded = match sniff(bytes) {
        Some(Container::Wav) => decode_wav(bytes, name, &limits)?,
        Some(kind) => decode_compressed(bytes, name, kind, &limits)?,
        None => {
            return Err(AudioError::NotAudio {
                name: name.to_string(),
                head: describe_head(bytes),
            })
        }
    };
    finish(decoded, name, &limits)
}

/// Recognises the container from its magic bytes.
pub(crate) fn sniff(bytes: &[u8]) -> Option<Container> {
    let starts = |magic: &[u8]| bytes.starts_with(magic);
    if bytes.len() >= 12 && starts(b"RIFF") && &bytes[8..12] == b"WAVE" {
        Some(Container::Wav)
    } else if starts(b"fLaC") {
        Some(Container::Flac)
    } else if starts(b"OggS") {
        Some(Container::Ogg)
    } else if starts(b"ID3") || (bytes.len() >= 2 && bytes[0] == 0xFF && bytes[1] & 0xE0 == 0xE0) {
        // An ID3v2 tag, or an MPEG audio frame sync (11 set bits).
        Some(Container::Mp3)
    } else {
        None
    }
}

/// The first bytes of a file, printable, for the "not audio" message.
fn describe_head(bytes: &[u8]) -> String {
    let head = &bytes[..bytes.len().min(8)];
    let hex: Vec<String> = head.iter().map(|b| format!("{b:02x}")).collect();
    let text: String = head
        .iter()
        .map(|&b| if b.is_ascii_graphic() { b as char } else { '.' })
        .collect();
    format!("{} \"{}\"", hex.join(" "), text)
}

/// Shared checks on what any decoder produced, then the downmix.
fn finish(d: Decoded, name: &str, limits: &DecodeLimits) -> Result<Audio, AudioError> {
    check_rate(d.rate, name)?;
    if d.channels == 0 {
        return Err(AudioError::NoChannels {
            name: name.to_string(),
        });
    }
    let channels = usize::from(d.channels);
    let frames = (d.samples.len() / channels) as u64;
    if frames == 0 {
        return Err(AudioError::NoSamples {
            name: name.to_string(),
        });
    }
    limits.check(frames, channels, d.rate, name)?;
    if let Some(i) = d.samples.iter().position(|v| !v.is_finite()) {
        return Err(AudioError::NonFinite {
            name: name.to_string(),
            frame: (i / channels) as u64,
            channel: (i % channels) as u16,
            value: d.samples[i],
        });
    }
    let (samples, downmix) = downmix(&d.samples, d.channels);
    Ok(Audio {
        samples,
        sample_rate: d.rate,
        channels: d.channels,
        downmix,
    })
}

/// Whether `rate` is in the accepted range; else the error naming `name` and the range.
pub fn check_rate(rate: u32, name: &str) -> Result<(), AudioError> {
    if (MIN_SAMPLE_RATE..=MAX_SAMPLE_RATE).contains(&rate) {
        Ok(())
    } else {
        Err(AudioError::BadSampleRate {
            name: name.to_string(),
            rate,
            min: MIN_SAMPLE_RATE,
            max: MAX_SAMPLE_RATE,
        })
    }
}

/// Interleaved -> mono. Two channels: `(l + r) * 0.5` in f32, bit-identical to torch's
/// `(l + r) / 2` and to `mean` over 2 channels. More: sum in channel order, then divide.
fn downmix(interleaved: &[f32], channels: u16) -> (Vec<f32>, Downmix) {
    match channels {
        1 => (interleaved.to_vec(), Downmix::None),
        2 => (
            interleaved
                .chunks_exact(2)
                .map(|f| (f[0] + f[1]) * 0.5)
                .collect(),
            Downmix::Stereo,
        ),
        n => {
            let div = f32::from(n);
            let mono = interleaved
                .chunks_exact(usize::from(n))
                .map(|f| f.iter().sum::<f32>() / div)
                .collect();
            (mono, Downmix::Mean(n))
        }
    }
}
