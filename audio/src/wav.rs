//! RIFF/WAVE decoding through `hound`, with torchaudio's integer scaling.
//!
//! hound reports a lying header (data chunk longer than the file) only as an I/O error
//! halfway through the samples, and a zero rate or zero channel count as a generic format
//! error. A small walk over the chunk headers first, mirroring hound's own walk, turns those
//! into specific errors before hound reads anything.

use std::io::Cursor;

use crate::error::AudioError;
use crate::read::{check_rate, DecodeLimits, Decoded};

/// What the chunk walk found: the fmt fields the checks need and where the data is.
struct Layout {
    format_tag: u16,
    channels: u16,
    rate: u32,
    bits: u16,
    data_offset: usize,
    data_len: u32,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Walks the chunks after "RIFF....WAVE" the way hound does (no pad bytes, `fact` read as
/// 4 bytes) up to the first data chunk.
fn walk_chunks(bytes: &[u8]) -> Result<Layout, String> {
    let mut pos = 12usize;
    let mut fmt: Option<(u16, u16, u32, u16)> = None;
    loop {
        let (Some(id), Some(len)) = (bytes.get(pos..pos + 4), u32_at(bytes, pos + 4)) else {
            return Err(format!(
                "no data chunk: the chunk list ends at byte {} of {}",
                pos.min(bytes.len()),
                bytes.len()
            ));
        };
        pos += 8;
        match id {
            b"fmt " => {
                if len < 16 {
                    return Err(format!("fmt chunk is {len} bytes; expected at least 16"));
                }
                let cut = || "fmt chunk cut short by the end of the file".to_string();
                let tag = u16_at(bytes, pos).ok_or_else(cut)?;
                let channels = u16_at(bytes, pos + 2).ok_or_else(cut)?;
                let rate = u32_at(bytes, pos + 4).ok_or_else(cut)?;
                let bits = u16_at(bytes, pos + 14).ok_or_else(cut)?;
                fmt = Some((tag, channels, rate, bits));
                pos = pos.saturating_add(len as usize);
            }
            b"fact" => pos += 4,
            b"data" => {
                let Some((format_tag, channels, rate, bits)) = fmt else {
                    return Err("data chunk comes before any fmt chunk".to_string());
                };
                return Ok(Layout {
                    format_tag,
                    channels,
                    rate,
                    bits,
                    data_offset: pos,
                    data_len: len,
                });
            }
            _ => pos = pos.saturating_add(len as usize),
        }
    }
}

/// Decodes a WAV file into interleaved f32 samples.
pub(crate) fn decode_wav(
    bytes: &[u8],
    name: &str,
    limits: &DecodeLimits,
) -> Result<Decoded, AudioError> {
    let bad = |detail: String| AudioError::BadWav {
        name: name.to_string(),
        detail,
    };
    let layout = walk_chunks(bytes).map_err(bad)?;
    if layout.channels == 0 {
        return Err(AudioError::NoChannels {
            name: name.to_string(),
        });
    }
    check_rate(layout.rate, name)?;
    let present = bytes.len().saturating_sub(layout.data_offset) as u64;
    if u64::from(layout.data_len) > present {
        return Err(AudioError::Truncated {
            name: name.to_string(),
            declared: u64::from(layout.data_len),
            present,
        });
    }

    let unsupported = || AudioError::Unsupported {
        name: name.to_string(),
        detail: format!(
            "WAV format tag {:#06x} with {} bits per sample (supported: PCM 8/16/24/32-bit, \
             IEEE float 32-bit)",
            layout.format_tag, layout.bits
        ),
    };
    let mut reader = hound::WavReader::new(Cursor::new(bytes)).map_err(|e| match e {
        hound::Error::Unsupported => unsupported(),
        other => bad(other.to_string()),
    })?;
    let spec = reader.spec();
    check_rate(spec.sample_rate, name)?;
    limits.check(
        u64::from(reader.duration()),
        usize::from(spec.channels),
        spec.sample_rate,
        name,
    )?;

    // The truncation check above bounds this by the file size.
    let total = reader.len() as usize;
    let read_err = |e: hound::Error, got: usize| match e {
        hound::Error::IoError(_) => AudioError::Truncated {
            name: name.to_string(),
            declared: u64::from(layout.data_len),
            present: got as u64 * u64::from(spec.bits_per_sample / 8),
        },
        hound::Error::Unsupported | hound::Error::TooWide | hound::Error::InvalidSampleFormat => {
            unsupported()
        }
        other => bad(other.to_string()),
    };
    let mut samples = Vec::with_capacity(total);
    match (spec.sample_format, spec.bits_per_sample) {
        (hound::SampleFormat::Float, 32) => {
            for s in reader.samples::<f32>() {
                samples.push(s.map_err(|e| read_err(e, samples.len()))?);
            }
        }
        (hound::SampleFormat::Int, bits @ (8 | 16 | 24 | 32)) => {
            // torchaudio: k / 2^(bits-1) (8-bit is unsigned; hound already gives k - 128).
            // A power-of-two scale is exact, so multiplying by the reciprocal is the same.
            let scale = 1.0 / (1u64 << (bits - 1)) as f32;
            for s in reader.samples::<i32>() {
                let k = s.map_err(|e| read_err(e, samples.len()))?;
                samples.push(k as f32 * scale);
            }
        }
        _ => return Err(unsupported()),
    }
    Ok(Decoded {
        samples,
        rate: spec.sample_rate,
        channels: spec.channels,
    })
}
