//! Audio in and out: text to speech, transcription, reading and writing audio files.

use std::ffi::c_char;
use std::ptr;

use uniaudio::{Audio, Error, Sampling};

use crate::{c_string, guard, non_null, str_arg, InUse, UniaudioModel, UniaudioStatus};

/// Mono audio owned by the library: release with `uniaudio_audio_free`.
#[repr(C)]
pub struct UniaudioAudio {
    /// `len` samples in [-1, 1].
    pub samples: *mut f32,
    pub len: usize,
    /// Samples per second.
    pub sample_rate: u32,
}

/// Sampling options; a zero field takes the task's default.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct UniaudioOptions {
    /// Seed of the sampler and of the codec's noise (0: 888, the reference's).
    pub seed: u64,
    /// Most LM steps (0: the task's cap, reduced to what the context holds).
    pub max_steps: u32,
    /// Codec Euler steps for audio output (0: 50).
    pub codec_steps: u32,
    /// Keep the K most likely ids (0: the task's).
    pub top_k: u32,
    /// Sampling temperature (0: the task's).
    pub temperature: f32,
}

pub(crate) fn sampling(options: *const UniaudioOptions) -> (Sampling, usize) {
    // SAFETY: the caller passes null or a valid pointer (documented).
    let o = unsafe { options.as_ref() }.copied().unwrap_or_default();
    let nonzero = |v: u32| (v > 0).then_some(v as usize);
    let s = Sampling {
        top_k: nonzero(o.top_k),
        // 0 takes the task's; a negative or NaN temperature reaches the request checks.
        temperature: (o.temperature != 0.0).then_some(o.temperature),
        seed: if o.seed == 0 { 888 } else { o.seed },
        max_steps: nonzero(o.max_steps),
        cfg_scale: None,
        step_limit: None,
    };
    (s, nonzero(o.codec_steps).unwrap_or(50))
}

/// `len` floats at `samples` (not null) as a slice, refusing a length or address no
/// float array can have.
pub(crate) unsafe fn samples_arg<'a>(samples: *const f32, len: usize, call: &str) -> Result<&'a [f32], Error> {
    if len > isize::MAX as usize / std::mem::size_of::<f32>() || !samples.is_aligned() {
        return Err(Error::invalid_input(format!("{call}: {len} samples at {samples:p} are not a valid float array")));
    }
    Ok(std::slice::from_raw_parts(samples, len))
}

/// Whether `a` (possibly null) claims samples through a null pointer.
pub(crate) unsafe fn hollow(a: *const UniaudioAudio) -> bool {
    a.as_ref().is_some_and(|a| a.samples.is_null() && a.len > 0)
}

/// A caller's filled `UniaudioAudio` (not hollow) as audio, its samples copied.
pub(crate) unsafe fn audio_in(a: &UniaudioAudio, call: &str) -> Result<Audio, Error> {
    let samples = if a.len == 0 { &[][..] } else { samples_arg(a.samples, a.len, call)? };
    Ok(Audio { samples: samples.to_vec(), sample_rate: a.sample_rate })
}

pub(crate) fn audio_out(a: Audio, out: &mut UniaudioAudio) {
    let samples = a.samples.into_boxed_slice();
    out.len = samples.len();
    out.sample_rate = a.sample_rate;
    out.samples = Box::into_raw(samples) as *mut f32;
}

/// Text to speech into `*out` (24 kHz). `options` may be null.
///
/// # Safety
/// `model` is a live model; `text` a NUL-terminated string; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn uniaudio_tts(model: *mut UniaudioModel, text: *const c_char, options: *const UniaudioOptions, out: *mut UniaudioAudio) -> UniaudioStatus {
    if let Err(s) = non_null("uniaudio_tts", "model, text and out", &[model.is_null(), text.is_null(), out.is_null()]) {
        return s;
    }
    guard(|| {
        let text = str_arg(text, "text")?;
        let (s, codec_steps) = sampling(options);
        let mut held = InUse::take(model, "uniaudio_tts")?;
        let (m, abort) = held.model_and_abort();
        let req = uniaudio::TaskRequest {
            task: uniaudio::Task::Tts,
            text: uniaudio::TaskText { text: Some(text.to_string()), ..Default::default() },
            audio: None,
            sampling: s,
            codec: uniaudio::CodecSettings { steps: codec_steps, ..Default::default() },
            prompt_frames: None,
        };
        let o = m.run_until(&req, &mut |_| {}, &|| abort.asked())?;
        let samples = o.audio.ok_or_else(|| Error::Internal("no audio was produced".into()))?;
        audio_out(Audio { samples, sample_rate: o.sample_rate }, &mut *out);
        Ok(())
    })
}

/// Transcribes `len` mono samples at `sample_rate` into `*out_text` (free it with
/// `uniaudio_string_free`).
///
/// # Safety
/// `model` is a live model; `samples` points to `len` floats; `out_text` is writable.
#[no_mangle]
pub unsafe extern "C" fn uniaudio_transcribe(model: *mut UniaudioModel, samples: *const f32, len: usize, sample_rate: u32, out_text: *mut *mut c_char) -> UniaudioStatus {
    if let Err(s) = non_null("uniaudio_transcribe", "model, samples and out_text", &[model.is_null(), samples.is_null(), out_text.is_null()]) {
        return s;
    }
    guard(|| {
        let audio = Audio { samples: samples_arg(samples, len, "uniaudio_transcribe")?.to_vec(), sample_rate };
        let mut held = InUse::take(model, "uniaudio_transcribe")?;
        let (m, abort) = held.model_and_abort();
        let text = m.transcribe_until(&audio, &|| abort.asked())?;
        *out_text = c_string(&text);
        Ok(())
    })
}

/// Reads an audio file (WAV, FLAC, MP3, Ogg/Vorbis) as mono into `*out`.
///
/// # Safety
/// `path` is a NUL-terminated string; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn uniaudio_audio_read(path: *const c_char, out: *mut UniaudioAudio) -> UniaudioStatus {
    if let Err(s) = non_null("uniaudio_audio_read", "path and out", &[path.is_null(), out.is_null()]) {
        return s;
    }
    guard(|| {
        audio_out(Audio::read(str_arg(path, "path")?)?, &mut *out);
        Ok(())
    })
}

/// Writes audio as a 32-bit float WAV file (through a temporary file, renamed when done).
///
/// # Safety
/// `audio` points to a filled `UniaudioAudio`; `path` is a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn uniaudio_audio_write_wav(audio: *const UniaudioAudio, path: *const c_char) -> UniaudioStatus {
    if let Err(s) = non_null("uniaudio_audio_write_wav", "audio, path and audio->samples (when len > 0)", &[audio.is_null(), path.is_null(), hollow(audio)]) {
        return s;
    }
    guard(|| {
        let path = std::path::Path::new(str_arg(path, "path")?);
        let a = &*audio;
        let samples = if a.len == 0 { &[][..] } else { std::slice::from_raw_parts(a.samples, a.len) };
        write_wav(path, samples, a.sample_rate).map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
        Ok(())
    })
}

/// Releases audio filled by the library and zeroes the struct (null is ignored).
///
/// # Safety
/// `audio` was filled by this library and its samples are not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn uniaudio_audio_free(audio: *mut UniaudioAudio) {
    if let Some(a) = audio.as_mut() {
        if !a.samples.is_null() {
            drop(Box::from_raw(ptr::slice_from_raw_parts_mut(a.samples, a.len)));
        }
        a.samples = ptr::null_mut();
        a.len = 0;
    }
}


/// A 32-bit float mono WAV through a temporary file, renamed when complete.
fn write_wav(path: &std::path::Path, samples: &[f32], rate: u32) -> Result<(), Box<dyn std::error::Error>> {
    let tmp = path.with_extension("wav.tmp");
    let written = write_wav_at(&tmp, samples, rate).and_then(|()| Ok(std::fs::rename(&tmp, path)?));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

fn write_wav_at(tmp: &std::path::Path, samples: &[f32], rate: u32) -> Result<(), Box<dyn std::error::Error>> {
    let spec = hound::WavSpec { channels: 1, sample_rate: rate, bits_per_sample: 32, sample_format: hound::SampleFormat::Float };
    let mut w = hound::WavWriter::create(tmp, spec)?;
    for &s in samples {
        w.write_sample(s)?;
    }
    w.finalize()?;
    Ok(())
}
