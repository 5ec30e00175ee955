//! The codec alone: audio to its tokens (reasoning and reconstruction frames of 8 codes),
//! and reconstruction frames back to 24 kHz audio.

use std::ptr;

use uniaudio::{AudioTokens, Error};

use crate::audio::{audio_in, audio_out, hollow};
use crate::{guard, non_null, InUse, UniaudioAudio, UniaudioModel, UniaudioStatus};

/// Codec tokens owned by the library, frames of 8 codes stored one after another:
/// `reasoning` holds `8 * reasoning_len` codes (5 frames a second), `reconstruction`
/// `8 * reconstruction_len` (12.5 frames a second). Release with `uniaudio_tokens_free`.
#[repr(C)]
pub struct UniaudioTokens {
    pub reasoning: *mut u32,
    pub reasoning_len: usize,
    pub reconstruction: *mut u32,
    pub reconstruction_len: usize,
}

/// Frames as a library-owned array of `8 * frames` codes (null when empty).
fn frames_out(frames: Vec<[u32; 8]>) -> (*mut u32, usize) {
    if frames.is_empty() {
        return (ptr::null_mut(), 0);
    }
    let len = frames.len();
    let codes: Box<[u32]> = frames.into_iter().flatten().collect();
    (Box::into_raw(codes) as *mut u32, len)
}

unsafe fn frames_free(p: &mut *mut u32, len: &mut usize) {
    if !p.is_null() {
        drop(Box::from_raw(ptr::slice_from_raw_parts_mut(*p, *len * 8)));
    }
    *p = ptr::null_mut();
    *len = 0;
}

/// Encodes `input` (any sample rate) into `*out` (the model's codec encoder; asks the abort
/// callback before each batch of chunks).
///
/// # Safety
/// `model` is a live model; `input` a filled `UniaudioAudio`; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn uniaudio_encode(model: *mut UniaudioModel, input: *const UniaudioAudio, out: *mut UniaudioTokens) -> UniaudioStatus {
    if let Err(s) = non_null("uniaudio_encode", "model, input, out and input->samples (when len > 0)", &[model.is_null(), input.is_null(), out.is_null(), hollow(input)]) {
        return s;
    }
    guard(|| {
        let audio = audio_in(&*input, "uniaudio_encode")?;
        let mut held = InUse::take(model, "uniaudio_encode")?;
        let (m, abort) = held.model_and_abort();
        let AudioTokens { reasoning, reconstruction } = m.encode_until(&audio, &|| abort.asked())?;
        let (reasoning, reasoning_len) = frames_out(reasoning);
        let (reconstruction, reconstruction_len) = frames_out(reconstruction);
        *out = UniaudioTokens { reasoning, reasoning_len, reconstruction, reconstruction_len };
        Ok(())
    })
}

/// Decodes `frames` reconstruction frames (`8 * frames` codes, one frame after another, as
/// `uniaudio_encode` gives them) into 24 kHz audio in `*out`, with
/// `steps` Euler steps (1 to 1000; the reference scripts use 10) from noise seeded by
/// `seed`; asks the abort callback after each Euler step.
///
/// # Safety
/// `model` is a live model; `reconstruction` points to `8 * frames` codes; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn uniaudio_decode(model: *mut UniaudioModel, reconstruction: *const u32, frames: usize, steps: u32, seed: u64, out: *mut UniaudioAudio) -> UniaudioStatus {
    let no_frames = reconstruction.is_null() && frames > 0;
    if let Err(s) = non_null("uniaudio_decode", "model, out and reconstruction (when frames > 0)", &[model.is_null(), out.is_null(), no_frames]) {
        return s;
    }
    guard(|| {
        if frames > isize::MAX as usize / std::mem::size_of::<[u32; 8]>() || !reconstruction.is_aligned() {
            return Err(Error::invalid_input(format!("uniaudio_decode: {frames} frames at {reconstruction:p} are not a valid array")).into());
        }
        let codes = if frames == 0 { &[][..] } else { std::slice::from_raw_parts(reconstruction, frames * 8) };
        let rows: Vec<[u32; 8]> = codes.chunks_exact(8).map(|f| f.try_into().expect("8 codes")).collect();
        let tokens = AudioTokens { reasoning: Vec::new(), reconstruction: rows };
        let mut held = InUse::take(model, "uniaudio_decode")?;
        let (m, abort) = held.model_and_abort();
        let audio = m.decode_until(&tokens, steps as usize, seed, &|| abort.asked())?;
        audio_out(audio, &mut *out);
        Ok(())
    })
}

/// Releases tokens filled by the library and zeroes the struct (null is ignored).
///
/// # Safety
/// `tokens` was filled by `uniaudio_encode` and its frames are not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn uniaudio_tokens_free(tokens: *mut UniaudioTokens) {
    if let Some(t) = tokens.as_mut() {
        frames_free(&mut t.reasoning, &mut t.reasoning_len);
        frames_free(&mut t.reconstruction, &mut t.reconstruction_len);
    }
}
