//! The task endpoints, in the shape audio APIs already use: text to audio
//! (`/v1/audio/speech`), audio to text (`/v1/audio/transcriptions`), answers about audio or
//! to a spoken request (`/v1/audio/answer`), and a spoken reply to a spoken request
//! (`/v1/audio/reply`). Each runs on the shared engine like any other request.

use std::sync::Arc;

use axum::extract::{Multipart, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use uniaudio::{AudioInput, CodecSettings, Sampling, Task, TaskRequest, TaskText};

use crate::fields::{audio_output, field, Fields};
use crate::routes::{admit, enqueue, AppState, InFlight};
use crate::upload;
use crate::worker::{Fault, Job, Reply, TaskReply};
use crate::ApiError;

/// Characters of `input` a speech request may carry.
const MAX_INPUT_CHARS: usize = 4096;
/// A speech request's JSON body: its text fields are at most `MAX_INPUT_CHARS` each.
pub(crate) const MAX_SPEECH_BODY_BYTES: usize = 256 << 10;

/// Sends an admitted task to the engine thread and waits for its answer.
async fn run_task(state: &Arc<AppState>, guard: InFlight, request: TaskRequest, fault: Option<Fault>) -> Result<TaskReply, ApiError> {
    let mut replies = enqueue(state, &guard, |sink, deadline| Job::Task { request: Box::new(request), sink, deadline, fault })?;
    let answer = loop {
        match replies.recv().await {
            Some(Reply::Task(r)) => break r,
            Some(Reply::Done(Err(e))) => break Err(e),
            Some(_) => continue,
            None => break Err(ApiError::internal("the engine stopped before answering")),
        }
    };
    drop(guard);
    answer
}

/// `POST /v1/audio/speech`: `{"input", "task"?: tts|tta|ttm|song|instruct-tts, "caption"?,
/// "response_format"?: wav|pcm, "speed"?: 1, "seed"?, "top_k"?, "temperature"?,
/// "steps"?, "max_steps"?}` (other fields, such as `model` and `voice`, are ignored) ->
/// 24 kHz mono audio: a 16-bit WAV file, or raw 16-bit little-endian PCM.
pub async fn speech(State(state): State<Arc<AppState>>, body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>) -> Result<Response, ApiError> {
    let body = body?;
    let value: Value = serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("the body is not JSON: {e}")))?;
    let obj = value.as_object().ok_or_else(|| ApiError::bad_request("the body must be a JSON object"))?;
    let input = obj.text("input")?.ok_or_else(|| ApiError::bad_request("missing `input`"))?;
    if input.trim().is_empty() {
        return Err(ApiError::bad_request("`input` is blank: it holds the text to speak (or the caption, or the lyrics)"));
    }
    if input.chars().count() > MAX_INPUT_CHARS {
        return Err(ApiError::new(413, format!("`input` is longer than {MAX_INPUT_CHARS} characters")));
    }
    let caption = obj.text("caption")?;
    if caption.as_ref().is_some_and(|c| c.chars().count() > MAX_INPUT_CHARS) {
        return Err(ApiError::new(413, format!("`caption` is longer than {MAX_INPUT_CHARS} characters")));
    }
    let task_name = obj.text("task")?.unwrap_or_else(|| "tts".into());
    let (task, text_in) = match task_name.as_str() {
        "tts" => (Task::Tts, TaskText { text: Some(input), ..Default::default() }),
        "tta" => (Task::Tta, TaskText { caption: Some(input), ..Default::default() }),
        "ttm" => (Task::Ttm, TaskText { caption: Some(input), ..Default::default() }),
        "song" => (Task::Lts, TaskText { lyrics: Some(input), ..Default::default() }),
        "instruct-tts" => {
            let caption = caption.clone().filter(|c| !c.trim().is_empty()).ok_or_else(|| ApiError::bad_request("task instruct-tts needs a non-blank `caption` (the speaking style)"))?;
            (Task::InstructTts, TaskText { text: Some(input), caption: Some(caption), ..Default::default() })
        }
        other => return Err(ApiError::bad_request(format!("`task` must be tts, tta, ttm, song or instruct-tts, got `{other}`"))),
    };
    if caption.is_some() && task != Task::InstructTts {
        return Err(ApiError::bad_request(format!("`caption` is only for task instruct-tts (task {task_name} takes its text in `input`)")));
    }
    let out = audio_output(obj, state.opts.max_steps_limit)?;
    if let Some(speed) = field(obj, "speed") {
        if speed.as_f64() != Some(1.0) {
            return Err(ApiError::bad_request("`speed` other than 1 is not supported"));
        }
    }
    let request = TaskRequest { task, text: text_in, audio: None, sampling: out.sampling, codec: out.codec, prompt_frames: None };
    let guard = admit(&state)?;
    audio_response(run_task(&state, guard, request, None).await?, &out.format)
}

/// A task's audio as the answer: a 16-bit WAV file, or raw 16-bit PCM (`format` "pcm").
fn audio_response(reply: TaskReply, format: &str) -> Result<Response, ApiError> {
    match reply {
        TaskReply::Audio { samples, sample_rate } => Ok(if format == "pcm" {
            ([("content-type", "audio/pcm")], pcm16(&samples)).into_response()
        } else {
            ([("content-type", "audio/wav")], wav(&samples, sample_rate)?).into_response()
        }),
        TaskReply::Text(_) => Err(ApiError::internal("the task produced text, not audio")),
    }
}

/// Samples in [-1, 1] as 16-bit little-endian PCM (clipped).
pub fn pcm16(samples: &[f32]) -> Vec<u8> {
    samples.iter().flat_map(|&s| quantize(s).to_le_bytes()).collect()
}

/// One sample in [-1, 1] as a 16-bit value (clipped, rounded), as `uniaudio tts --pcm16` writes it.
fn quantize(s: f32) -> i16 {
    (s.clamp(-1.0, 1.0) * 32767.0).round() as i16
}

/// Mono 16-bit samples as a WAV file in memory.
fn wav(samples: &[f32], rate: u32) -> Result<Vec<u8>, ApiError> {
    let spec = hound::WavSpec { channels: 1, sample_rate: rate, bits_per_sample: 16, sample_format: hound::SampleFormat::Int };
    let mut bytes = std::io::Cursor::new(Vec::with_capacity(44 + 2 * samples.len()));
    let written = (|| {
        let mut w = hound::WavWriter::new(&mut bytes, spec)?;
        for &s in samples {
            w.write_sample(quantize(s))?;
        }
        w.finalize()
    })();
    written.map_err(|e| ApiError::internal(format!("writing the WAV: {e}")))?;
    Ok(bytes.into_inner())
}

/// `POST /v1/audio/transcriptions` (multipart: `file`, optional `task` = asr | caption |
/// music-caption | lyrics, optional `response_format` = json | text; `model` and `prompt`
/// are ignored) -> `{"text": ...}`, or the text alone.
pub async fn transcriptions(State(state): State<Arc<AppState>>, form: Multipart) -> Result<Response, ApiError> {
    // Admitted before the upload is read: a full queue refuses it unread and undecoded.
    let mut guard = admit(&state)?;
    let upload = upload::read(&state, &guard, form).await?;
    let fields = &upload.fields;
    let task = match fields.get("task").map(String::as_str).unwrap_or("asr") {
        "asr" => Task::Asr,
        "caption" => Task::AudioCaption,
        "music-caption" => Task::MusicCaption,
        "lyrics" => Task::LyricRecognition,
        other => return Err(ApiError::bad_request(format!("`task` must be asr, caption, music-caption or lyrics, got `{other}`"))),
    };
    let format = TextFormat::of(fields)?;
    let fault = match (state.opts.fault_injection, fields.get("test_fault").map(String::as_str)) {
        (true, Some("window_error")) => Some(Fault::WindowError),
        _ => None,
    };
    // The fields are checked before the file is decoded.
    let samples = upload.decode(&state, &mut guard).await?;
    understand(&state, guard, task, samples, TaskText::default(), format, fault).await
}

/// `POST /v1/audio/answer` (multipart: `file`, optional `task` = ask | s2t, `question`
/// for ask, optional `response_format` = json | text) -> `{"text": ...}`, or the text
/// alone. `ask` (the default) answers the written `question` about the audio; `s2t`
/// answers the request spoken in it.
pub async fn answer(State(state): State<Arc<AppState>>, form: Multipart) -> Result<Response, ApiError> {
    let mut guard = admit(&state)?;
    let upload = upload::read(&state, &guard, form).await?;
    let question = upload.fields.get("question");
    let (task, text) = match upload.fields.get("task").map(String::as_str).unwrap_or("ask") {
        "ask" => {
            let question = question.filter(|q| !q.trim().is_empty()).cloned().ok_or_else(|| ApiError::bad_request("missing `question`"))?;
            if question.chars().count() > MAX_INPUT_CHARS {
                return Err(ApiError::new(413, format!("`question` is longer than {MAX_INPUT_CHARS} characters")));
            }
            (Task::AudioUnderstanding, TaskText { question: Some(question), ..Default::default() })
        }
        "s2t" if question.is_some_and(|q| !q.trim().is_empty()) => return Err(ApiError::bad_request("task s2t answers the request spoken in `file`: leave out `question`")),
        "s2t" => (Task::SpeechS2t, TaskText::default()),
        other => return Err(ApiError::bad_request(format!("`task` must be ask or s2t, got `{other}`"))),
    };
    let format = TextFormat::of(&upload.fields)?;
    let samples = upload.decode(&state, &mut guard).await?;
    understand(&state, guard, task, samples, text, format, None).await
}

/// `POST /v1/audio/reply` (multipart: `file`, a spoken request; optional `response_format`
/// = wav | pcm, `seed`, `top_k`, `temperature`, `steps`, `max_steps` as in a speech
/// request) -> the spoken answer (speech to speech), 24 kHz mono 16-bit WAV or raw PCM.
pub async fn reply(State(state): State<Arc<AppState>>, form: Multipart) -> Result<Response, ApiError> {
    let mut guard = admit(&state)?;
    let upload = upload::read(&state, &guard, form).await?;
    // Checked before the file is decoded.
    let out = audio_output(&upload.fields, state.opts.max_steps_limit)?;
    let samples = upload.decode(&state, &mut guard).await?;
    let request = TaskRequest { task: Task::SpeechS2s, text: TaskText::default(), audio: Some(AudioInput::Samples24k(samples)), sampling: out.sampling, codec: out.codec, prompt_frames: None };
    audio_response(run_task(&state, guard, request, None).await?, &out.format)
}

/// How a text answer is sent (OpenAI's `response_format`; its subtitle and verbose
/// formats need timestamps, which these tasks do not produce).
#[derive(Clone, Copy)]
enum TextFormat {
    Json,
    Text,
}

impl TextFormat {
    fn of(fields: &std::collections::HashMap<String, String>) -> Result<Self, ApiError> {
        match fields.get("response_format").map(String::as_str) {
            None | Some("json") => Ok(TextFormat::Json),
            Some("text") => Ok(TextFormat::Text),
            Some(other) => Err(ApiError::bad_request(format!("`response_format` must be json or text, got `{other}` (there are no timestamps for srt, vtt or verbose_json)"))),
        }
    }
}

async fn understand(state: &Arc<AppState>, guard: InFlight, task: Task, samples: Vec<f32>, text: TaskText, format: TextFormat, fault: Option<Fault>) -> Result<Response, ApiError> {
    let sampling = Sampling { step_limit: Some(state.opts.max_steps_limit), ..Sampling::default() };
    let request = TaskRequest { task, text, audio: Some(AudioInput::Samples24k(samples)), sampling, codec: CodecSettings::default(), prompt_frames: None };
    match (run_task(state, guard, request, fault).await?, format) {
        (TaskReply::Text(text), TextFormat::Json) => Ok(Json(json!({"text": text})).into_response()),
        (TaskReply::Text(text), TextFormat::Text) => Ok(([("content-type", "text/plain; charset=utf-8")], text).into_response()),
        (TaskReply::Audio { .. }, _) => Err(ApiError::internal("the task produced audio, not text")),
    }
}
