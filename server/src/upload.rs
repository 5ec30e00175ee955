//! Uploaded audio: the multipart form of an admitted request, read within its deadline
//! (its bytes held against the server's upload buffer budget until decoded), then its
//! file decoded (a few at a time, under decode limits) and resampled to 24 kHz, the samples
//! held against the server's audio budget until the request ends.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::multipart::{Field, MultipartError};
use axum::extract::Multipart;

use crate::metrics::Shared;
use crate::routes::{AppState, InFlight};
use crate::ApiError;

/// Uploads are resampled to the codec's rate, and held at it until answered.
pub(crate) const UPLOAD_RATE: u32 = 24_000;

/// A read form: the text fields, and the still-encoded file.
pub struct Upload {
    pub fields: HashMap<String, String>,
    filename: String,
    bytes: Bytes,
    /// The form's bytes, counted against the upload buffer budget while they are held.
    held: BodyBytes,
}

/// Bytes of an upload body held in memory, counted against the server's budget for them
/// (`--max-upload-buffer-mib`) from arrival until dropped.
struct BodyBytes {
    shared: Arc<Shared>,
    budget: usize,
    bytes: usize,
}

impl BodyBytes {
    /// Counts `n` more bytes, or refuses with 429 when the budget has no room for them.
    fn hold(&mut self, n: usize) -> Result<(), ApiError> {
        if !self.shared.try_hold_upload_bytes(n, self.budget) {
            let mib = |b: usize| b as f64 / (1 << 20) as f64;
            return Err(ApiError::new(
                429,
                format!("the server holds {:.1} MiB of uploads being received or decoded; this one would pass its budget of {:.0} MiB (--max-upload-buffer-mib); retry later", mib(self.shared.upload_bytes_held()), mib(self.budget)),
            ));
        }
        self.bytes += n;
        Ok(())
    }
}

impl Drop for BodyBytes {
    fn drop(&mut self) {
        self.shared.release_upload_bytes(self.bytes);
    }
}

/// A part's bytes, each chunk counted as it arrives.
async fn part_bytes(mut part: Field<'_>, held: &mut BodyBytes, bad: impl Fn(MultipartError) -> ApiError) -> Result<Bytes, ApiError> {
    // The chunks are kept as they came and joined once: growing one buffer would hold up
    // to twice the counted bytes while it reallocates.
    let mut chunks = Vec::new();
    while let Some(chunk) = part.chunk().await.map_err(&bad)? {
        held.hold(chunk.len())?;
        chunks.push(chunk);
    }
    Ok(match chunks.len() {
        0 => Bytes::new(),
        1 => chunks.pop().expect("one chunk"),
        _ => Bytes::from(chunks.concat()),
    })
}

/// Reads an admitted request's form; one not received by the request's deadline is a 408
/// (a slow sender cannot hold a place in the queue for longer than an answer may take).
pub async fn read(state: &AppState, guard: &InFlight, mut form: Multipart) -> Result<Upload, ApiError> {
    // An oversized body (one without a Content-Length stops mid-read) keeps its 413.
    let bad = |e: axum::extract::multipart::MultipartError| match e.status().as_u16() {
        413 => ApiError::new(413, format!("the multipart body is too large: {}", e.body_text())),
        _ => ApiError::bad_request(format!("malformed multipart body: {}", e.body_text())),
    };
    let mut held = BodyBytes { shared: guard.shared().clone(), budget: state.opts.max_upload_buffer_bytes, bytes: 0 };
    let reading = async {
        let mut file = None;
        let mut fields = HashMap::new();
        while let Some(part) = form.next_field().await.map_err(bad)? {
            let name = part.name().unwrap_or_default().to_string();
            if name == "file" {
                let filename = part.file_name().unwrap_or("file").to_string();
                file = Some((filename, part_bytes(part, &mut held, bad).await?));
            } else if !name.is_empty() {
                // As text: UTF-8, a leading byte-order mark dropped, bad bytes replaced.
                let bytes = part_bytes(part, &mut held, bad).await?;
                let text = String::from_utf8_lossy(&bytes);
                fields.insert(name, text.strip_prefix('\u{feff}').unwrap_or(&text).to_string());
            }
        }
        let (filename, bytes) = file.ok_or_else(|| ApiError::bad_request("missing the `file` field (the audio)"))?;
        Ok::<_, ApiError>((fields, filename, bytes))
    };
    let (fields, filename, bytes) = match guard.deadline() {
        Some(d) => tokio::time::timeout_at(d.into(), reading).await.map_err(|_| ApiError::new(408, "the upload was not received within the request's deadline (--timeout)"))??,
        None => reading.await?,
    };
    Ok(Upload { fields, filename, bytes, held })
}

impl Upload {
    /// Decodes the file to 24 kHz mono and holds its samples against the server's budget
    /// through `guard` (429 past it).
    pub async fn decode(self, state: &AppState, guard: &mut InFlight) -> Result<Vec<f32>, ApiError> {
        let max_seconds = state.opts.max_audio_seconds;
        let Upload { filename, bytes, held, .. } = self;
        // Decoding and resampling are CPU work: off the async threads, and a few at a
        // time. The permit goes with the work, which runs to its end even when the client
        // leaves mid-way.
        let permit = state.decodes.clone().acquire_owned().await.map_err(|_| ApiError::unavailable("the server is shutting down"))?;
        let samples = tokio::task::spawn_blocking(move || -> Result<Vec<f32>, ApiError> {
            // The body stays counted until it is decoded and dropped here.
            let (_permit, _held) = (permit, held);
            // Decoding stops as soon as the output passes the limits: a small compressed
            // upload can expand to gigabytes. Samples: 30 s of 192 kHz stereo, or the
            // whole length at 48 kHz stereo when that is more (600 s of 192 kHz stereo
            // would be 0.9 GB of f32 before resampling).
            let limits = uniaudio_audio::DecodeLimits::seconds(max_seconds);
            let max_seconds = limits.max_seconds;
            let limits = uniaudio_audio::DecodeLimits { max_samples: limits.max_samples.min((30 * 384_000).max(max_seconds.saturating_mul(96_000))), ..limits };
            let audio = uniaudio_audio::decode_audio_limited(&bytes, &filename, limits).map_err(|e| match e {
                uniaudio_audio::AudioError::TooLong { .. } => ApiError::new(413, format!("`file` is too long: this server takes at most {max_seconds} s per request ({e})")),
                uniaudio_audio::AudioError::TooManySamples { .. } => {
                    ApiError::new(413, format!("`file` has too many samples (rate x channels x length): this server takes at most {} decoded samples ({e})", limits.max_samples))
                }
                e => ApiError::bad_request(format!("`file` is not audio this server can read: {e}")),
            })?;
            if audio.sample_rate == 0 || audio.samples.is_empty() {
                return Err(ApiError::bad_request("`file` holds no samples"));
            }
            Ok(uniaudio_audio::resample(&audio.samples, audio.sample_rate, UPLOAD_RATE))
        })
        .await
        .map_err(|_| ApiError::internal("decoding the audio failed"))??;
        guard.hold_audio(samples.len(), state.opts.max_queued_audio_seconds as usize * UPLOAD_RATE as usize)?;
        Ok(samples)
    }
}
