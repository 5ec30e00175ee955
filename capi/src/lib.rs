//! The uniaudio runtime behind a C ABI: opaque model handles, plain structs, status codes,
//! and a per-thread last-error message. The header `include/uniaudio.h` is generated from
//! this file (a test keeps it current).
//!
//! Ownership: every `UniaudioModel *` from `uniaudio_model_load` is released with
//! `uniaudio_model_free`; every `UniaudioAudio` filled by the library with
//! `uniaudio_audio_free`; every `char *` it returns with `uniaudio_string_free`. Strings
//! passed in are borrowed for the call only. No panic crosses the boundary: it becomes
//! `UNIAUDIO_STATUS_PANIC` with a message.

use std::cell::RefCell;
use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;

use uniaudio::{Audio, BackendKind, LoadOptions, Model, Sampling};

/// The result of every fallible call.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UniaudioStatus {
    /// Success; outputs are filled.
    Ok = 0,
    /// The call failed; `uniaudio_last_error` says why. Outputs are untouched.
    Error = 1,
    /// A required pointer argument was null.
    NullArgument = 2,
    /// An internal error was caught at the boundary; the model may be used again.
    Panic = 3,
}

/// A loaded model (opaque).
pub struct UniaudioModel {
    model: Model,
}

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

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_error(msg: &str) {
    let c = CString::new(msg.replace('\0', " ")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = c);
}

/// Runs `f`, turning errors and panics into a status and the last-error message.
fn guard(f: impl FnOnce() -> anyhow::Result<()>) -> UniaudioStatus {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => UniaudioStatus::Ok,
        Ok(Err(e)) => {
            set_error(&format!("{e:#}"));
            UniaudioStatus::Error
        }
        Err(_) => {
            set_error("internal error (caught at the C boundary)");
            UniaudioStatus::Panic
        }
    }
}

/// A borrowed C string as UTF-8, naming the argument when it is not.
unsafe fn str_arg<'a>(p: *const c_char, name: &str) -> anyhow::Result<&'a str> {
    CStr::from_ptr(p).to_str().map_err(|_| anyhow::anyhow!("{name} is not valid UTF-8"))
}

fn sampling(options: *const UniaudioOptions) -> (Sampling, usize) {
    // SAFETY: the caller passes null or a valid pointer (documented).
    let o = unsafe { options.as_ref() }.copied().unwrap_or_default();
    let nonzero = |v: u32| (v > 0).then_some(v as usize);
    let s = Sampling {
        top_k: nonzero(o.top_k),
        temperature: (o.temperature > 0.0).then_some(o.temperature),
        seed: if o.seed == 0 { 888 } else { o.seed },
        max_steps: nonzero(o.max_steps),
        cfg_scale: None,
    };
    (s, nonzero(o.codec_steps).unwrap_or(50))
}

/// The message of the last failed call on this thread ("" if none). Valid until the next
/// call on this thread; do not free it.
#[no_mangle]
pub extern "C" fn uniaudio_last_error() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

/// Loads a bundle (a directory with uniaudio.json) on `backend` ("auto", "cpu", "wgpu",
/// "cuda"; null means "auto") into `*out`.
///
/// # Safety
/// `path` and `backend` (if not null) are NUL-terminated strings; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn uniaudio_model_load(path: *const c_char, backend: *const c_char, out: *mut *mut UniaudioModel) -> UniaudioStatus {
    if path.is_null() || out.is_null() {
        set_error("uniaudio_model_load: path and out must not be null");
        return UniaudioStatus::NullArgument;
    }
    guard(|| {
        let path = str_arg(path, "path")?;
        let kind = if backend.is_null() { BackendKind::Auto } else {
            let b = str_arg(backend, "backend")?;
            BackendKind::parse(b).ok_or_else(|| anyhow::anyhow!("backend `{b}`: expected auto, cpu, wgpu or cuda"))?
        };
        let model = Model::load(path, LoadOptions { backend: kind, ..Default::default() })?;
        *out = Box::into_raw(Box::new(UniaudioModel { model }));
        Ok(())
    })
}

/// Releases a model (null is ignored).
///
/// # Safety
/// `model` came from `uniaudio_model_load` and is not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn uniaudio_model_free(model: *mut UniaudioModel) {
    if !model.is_null() {
        drop(Box::from_raw(model));
    }
}

fn audio_out(a: Audio, out: &mut UniaudioAudio) {
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
    if model.is_null() || text.is_null() || out.is_null() {
        set_error("uniaudio_tts: model, text and out must not be null");
        return UniaudioStatus::NullArgument;
    }
    guard(|| {
        let text = str_arg(text, "text")?;
        let (s, codec_steps) = sampling(options);
        let m = &mut (*model).model;
        let req = uniaudio::TaskRequest {
            task: uniaudio::Task::Tts,
            text: uniaudio::TaskText { text: Some(text.to_string()), ..Default::default() },
            audio: None,
            sampling: s,
            codec: uniaudio::CodecSettings { steps: codec_steps, ..Default::default() },
            prompt_frames: None,
        };
        let o = m.run(&req, &mut |_| {})?;
        let samples = o.audio.ok_or_else(|| anyhow::anyhow!("no audio was produced"))?;
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
    if model.is_null() || samples.is_null() || out_text.is_null() {
        set_error("uniaudio_transcribe: model, samples and out_text must not be null");
        return UniaudioStatus::NullArgument;
    }
    guard(|| {
        let audio = Audio { samples: std::slice::from_raw_parts(samples, len).to_vec(), sample_rate };
        let text = (*model).model.transcribe(&audio)?;
        *out_text = CString::new(text.replace('\0', " "))?.into_raw();
        Ok(())
    })
}

/// Reads an audio file (WAV, FLAC, MP3, Ogg/Vorbis) as mono into `*out`.
///
/// # Safety
/// `path` is a NUL-terminated string; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn uniaudio_audio_read(path: *const c_char, out: *mut UniaudioAudio) -> UniaudioStatus {
    if path.is_null() || out.is_null() {
        set_error("uniaudio_audio_read: path and out must not be null");
        return UniaudioStatus::NullArgument;
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
    if audio.is_null() || path.is_null() || (*audio).samples.is_null() && (*audio).len > 0 {
        set_error("uniaudio_audio_write_wav: audio and path must not be null");
        return UniaudioStatus::NullArgument;
    }
    guard(|| {
        let path = std::path::Path::new(str_arg(path, "path")?);
        let a = &*audio;
        let samples = if a.len == 0 { &[][..] } else { std::slice::from_raw_parts(a.samples, a.len) };
        let tmp = path.with_extension("wav.tmp");
        let spec = hound::WavSpec { channels: 1, sample_rate: a.sample_rate, bits_per_sample: 32, sample_format: hound::SampleFormat::Float };
        let mut w = hound::WavWriter::create(&tmp, spec)?;
        for &s in samples {
            w.write_sample(s)?;
        }
        w.finalize()?;
        std::fs::rename(&tmp, path)?;
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

/// Releases a string returned by the library (null is ignored).
///
/// # Safety
/// `s` came from this library and is not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn uniaudio_string_free(s: *mut c_char) {
    if !s.is_null() {
        drop(CString::from_raw(s));
    }
}
