//! Any task from one JSON request object (`uniaudio::task_json`): the tasks without a call
//! of their own (text to audio or music, songs, instruction TTS, speech to speech, captions,
//! answers about audio, ...), with progress reported through a callback.

use std::ffi::{c_char, c_void};

use uniaudio::request::{AudioInput, Event, Stage};
use uniaudio::{task_json, Audio, Error};

use crate::audio::{audio_in, audio_out, hollow};
use crate::{c_string, guard, non_null, str_arg, InUse, UniaudioAudio, UniaudioModel, UniaudioStatus};

/// A stage of a task run.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UniaudioStage {
    /// The codec encoder on the input audio (units: chunks).
    Encode = 0,
    /// The LM (units: generated steps; `total` is the step cap).
    Generate = 1,
    /// The codec decoder on the generated tokens (units: Euler steps over windows).
    Decode = 2,
}

/// Called as a task run progresses, on the thread that made the call: `done` of `total`
/// units of `stage`.
pub type UniaudioProgressFn = Option<unsafe extern "C" fn(user: *mut c_void, stage: UniaudioStage, done: usize, total: usize)>;

/// Called with each newly final piece of a text task's text as it is generated, on the
/// thread that made the call: `piece` is NUL-terminated UTF-8, borrowed for the callback's
/// duration (a NUL in the text is passed as a space). The pieces joined are the output's
/// `text`, but for a long recording transcribed in windows they may differ from it in the
/// spaces between windows.
pub type UniaudioTextFn = Option<unsafe extern "C" fn(user: *mut c_void, piece: *const c_char)>;

/// What a task run reports as it goes; a null callback is not called.
#[repr(C)]
pub struct UniaudioRunEvents {
    /// Passed to every callback.
    pub user: *mut c_void,
    /// Stage progress.
    pub on_progress: UniaudioProgressFn,
    /// Text as it is generated (text tasks).
    pub on_text: UniaudioTextFn,
}

/// Runs any task. `request_json` is `{"task", "text", "caption", "lyrics", "question",
/// "instruction", "seed", "max_steps", "top_k", "temperature", "cfg_scale", "codec_steps"}`:
/// `task` names one (`TTS`, `TTA`, `TTM`, `LTS` or `song`, `InstructTTS`, `speech_s2s`,
/// `ASR`, `audio_caption`, `music_caption`, `lyric_recognition`, `speech_s2t`,
/// `audio_understanding`, `Yue_TTS`, `Yue_ASR`; any case), the text fields it reads are
/// required and others refused, unknown fields are refused, and missing sampler fields take
/// the task's defaults (`codec_steps` 50, at most 1000). `input` (any sample rate) is
/// required by the tasks that read audio and must be null for the others. A task that
/// produces audio writes it to `*out_audio` (required for those tasks; free it with
/// `uniaudio_audio_free`); a text task given an `out_audio` leaves it empty (null samples,
/// length 0). `*out_json` receives the run's output object (`text` for text tasks,
/// `stopped_by`, `steps` (LM steps generated), `top_k`, `temperature`, `seed` and
/// `max_steps` as used, `timings`; free it with `uniaudio_string_free`). `events` (may be
/// null) receives progress and streamed text as the run goes.
///
/// # Safety
/// `model` is a live model; `request_json` a NUL-terminated string; `input`, if not null,
/// a filled `UniaudioAudio` whose samples stay valid for the call; `out_audio`, if not
/// null, and `out_json` writable; `events`, if not null, points to callbacks callable with
/// its `user` for the call's duration.
#[no_mangle]
pub unsafe extern "C" fn uniaudio_run(
    model: *mut UniaudioModel,
    request_json: *const c_char,
    input: *const UniaudioAudio,
    events: *const UniaudioRunEvents,
    out_audio: *mut UniaudioAudio,
    out_json: *mut *mut c_char,
) -> UniaudioStatus {
    if let Err(s) = non_null("uniaudio_run", "model, request_json, out_json and input->samples (when input is given with len > 0)", &[model.is_null(), request_json.is_null(), out_json.is_null(), hollow(input)]) {
        return s;
    }
    guard(|| {
        let text = str_arg(request_json, "request_json")?;
        // The request first: its checks name what is wrong before the input is resampled.
        let mut req = task_json::parse_task_request(text, !input.is_null()).map_err(|e| Error::invalid_input(format!("uniaudio_run: {e:#}")))?;
        if req.task.output_kind() == uniaudio::OutputKind::Audio && out_audio.is_null() {
            return Err(Error::invalid_input(format!("uniaudio_run: task {} produces audio: out_audio must not be null", req.task.name())).into());
        }
        if let Some(a) = input.as_ref() {
            req.audio = Some(AudioInput::Samples24k(audio_in(a, "uniaudio_run")?.at_24k()?));
        }
        let mut held = InUse::take(model, "uniaudio_run")?;
        let (m, abort) = held.model_and_abort();
        let (user, on_progress, on_text) = events.as_ref().map_or((std::ptr::null_mut(), None, None), |e| (e.user, e.on_progress, e.on_text));
        let mut report = |e: Event| match (e, on_progress, on_text) {
            (Event::Progress { stage, done, total }, Some(f), _) => {
                let stage = match stage {
                    Stage::Encode => UniaudioStage::Encode,
                    Stage::Generate => UniaudioStage::Generate,
                    Stage::Decode => UniaudioStage::Decode,
                };
                f(user, stage, done, total);
            }
            (Event::Text(piece), _, Some(f)) => {
                let piece = std::ffi::CString::new(piece.replace('\0', " ")).unwrap_or_default();
                f(user, piece.as_ptr());
            }
            _ => {}
        };
        let out = m.run_until(&req, &mut report, &|| abort.asked())?;
        let json = task_json::output_json(&out).to_string();
        match (out.audio, out_audio.as_mut()) {
            (Some(samples), Some(dst)) => audio_out(Audio { samples, sample_rate: out.sample_rate }, dst),
            (None, Some(dst)) => *dst = UniaudioAudio { samples: std::ptr::null_mut(), len: 0, sample_rate: out.sample_rate },
            (_, None) => {}
        }
        *out_json = c_string(&json);
        Ok(())
    })
}
