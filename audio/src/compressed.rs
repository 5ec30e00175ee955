//! FLAC, MP3 and Ogg/Vorbis decoding through `symphonia`.
//!
//! Packets that fail to decode are skipped, as ffmpeg (torchaudio's backend) does; a stream
//! cut short ends where the data ends. The decoder runs under `catch_unwind` so that a bug in
//! a third-party decoder on hostile input becomes an error instead of taking the caller down.

use std::io::{Cursor, ErrorKind};
use std::panic::{catch_unwind, AssertUnwindSafe};

use symphonia::core::codecs::audio::AudioDecoderOptions;
use symphonia::core::errors::Error as SymError;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, TrackType};
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;

use crate::error::AudioError;
use crate::read::{check_rate, Container, DecodeLimits, Decoded};

/// Decodes a compressed file into interleaved f32 samples.
pub(crate) fn decode_compressed(
    bytes: &[u8],
    name: &str,
    kind: Container,
    limits: &DecodeLimits,
) -> Result<Decoded, AudioError> {
    match catch_unwind(AssertUnwindSafe(|| decode_inner(bytes, name, kind, limits))) {
        Ok(result) => result,
        Err(_) => Err(AudioError::Decode {
            name: name.to_string(),
            format: kind.label(),
            detail: "the decoder failed on malformed data".to_string(),
        }),
    }
}

fn decode_inner(
    bytes: &[u8],
    name: &str,
    kind: Container,
    limits: &DecodeLimits,
) -> Result<Decoded, AudioError> {
    let fail = |detail: String| AudioError::Decode {
        name: name.to_string(),
        format: kind.label(),
        detail,
    };
    let mss = MediaSourceStream::new(Box::new(Cursor::new(bytes)), Default::default());
    let mut hint = Hint::new();
    hint.with_extension(match kind {
        Container::Flac => "flac",
        Container::Ogg => "ogg",
        Container::Mp3 | Container::Wav => "mp3",
    });
    let mut format = symphonia::default::get_probe()
        .probe(
            &hint,
            mss,
            FormatOptions::default(),
            MetadataOptions::default(),
        )
        .map_err(|e| fail(format!("unrecognised or malformed container ({e})")))?;

    let track = format
        .default_track(TrackType::Audio)
        .ok_or_else(|| fail("no audio track".to_string()))?;
    let track_id = track.id;
    let params = track
        .codec_params
        .as_ref()
        .and_then(|p| p.audio())
        .ok_or_else(|| fail("the audio track has no codec parameters".to_string()))?
        .clone();
    let mut decoder = symphonia::default::get_codecs()
        .make_audio_decoder(&params, &AudioDecoderOptions::default())
        .map_err(|e| AudioError::Unsupported {
            name: name.to_string(),
            detail: format!("{} codec: {e}", kind.label()),
        })?;

    // Rate and channel count as declared; the decoded buffers are authoritative.
    let mut rate = params.sample_rate;
    let mut channels = params.channels.as_ref().map(|c| c.count());
    if let Some(r) = rate {
        check_rate(r, name)?;
    }
    if channels == Some(0) {
        return Err(AudioError::NoChannels {
            name: name.to_string(),
        });
    }

    let mut samples: Vec<f32> = Vec::new();
    let mut buf: Vec<f32> = Vec::new();
    loop {
        let packet = match format.next_packet() {
            Ok(Some(p)) => p,
            Ok(None) => break,
            // A stream cut short ends where the data ends.
            Err(SymError::IoError(e)) if e.kind() == ErrorKind::UnexpectedEof => break,
            Err(SymError::DecodeError(_)) => continue,
            Err(e) => return Err(fail(e.to_string())),
        };
        if packet.track_id != track_id {
            continue;
        }
        let decoded = match decoder.decode(&packet) {
            Ok(d) => d,
            // A corrupt packet is skipped, as ffmpeg does.
            Err(SymError::DecodeError(_)) | Err(SymError::IoError(_)) => continue,
            Err(e) => return Err(fail(e.to_string())),
        };
        let spec = decoded.spec();
        let (r, c) = (spec.rate(), spec.channels().count());
        check_rate(r, name)?;
        if c == 0 {
            return Err(AudioError::NoChannels {
                name: name.to_string(),
            });
        }
        if rate.is_some_and(|x| x != r) && !samples.is_empty() {
            return Err(fail(format!(
                "the sample rate changes mid-stream ({rate:?} -> {r})"
            )));
        }
        if channels.is_some_and(|x| x != c) && !samples.is_empty() {
            return Err(fail(format!(
                "the channel count changes mid-stream ({channels:?} -> {c})"
            )));
        }
        rate = Some(r);
        channels = Some(c);
        decoded.copy_to_vec_interleaved(&mut buf);
        // Stop before the decoded length passes the limits (a small file can expand a lot).
        limits.check(((samples.len() + buf.len()) / c) as u64, c, r, name)?;
        samples.extend_from_slice(&buf);
    }

    let channels = channels.unwrap_or(1);
    let channels = u16::try_from(channels).map_err(|_| AudioError::Unsupported {
        name: name.to_string(),
        detail: format!("{channels} channels"),
    })?;
    match rate {
        Some(rate) => Ok(Decoded {
            samples,
            rate,
            channels,
        }),
        None => Err(AudioError::NoSamples {
            name: name.to_string(),
        }),
    }
}
