//! Any task as one JSON object, for front ends without typed arguments (the C API): a
//! request object in, and the run's output object (the `--json` object the CLI prints)
//! out.
//!
//! A request is `{"task", "text", "caption", "lyrics", "question", "instruction", "seed",
//! "max_steps", "top_k", "temperature", "cfg_scale", "codec_steps"}`: `task` is required
//! (a name of `uniaudio_lm::tasks::Task`, any case, or `song`), the text fields the task
//! reads are required and the others refused, and a missing sampler field takes the
//! task's default. Unknown fields are refused, so a misspelt one is not silently ignored.

use anyhow::{bail, Context, Result};
use serde_json::{json, Map, Value};
use uniaudio_lm::tasks::Task;

use crate::request::{check_text_fields, takes_audio, AudioInput, CodecSettings, Sampling, TaskOutput, TaskRequest, TaskText};

/// The fields a request may have.
pub const FIELDS: [&str; 12] = ["task", "text", "caption", "lyrics", "question", "instruction", "seed", "max_steps", "top_k", "temperature", "cfg_scale", "codec_steps"];

/// A request is refused above this size without parsing (its texts are short).
pub const MAX_TASK_REQUEST_BYTES: usize = 1 << 20;

/// Parses a request object (a JSON text) for `audio` (the task's input audio, if any).
pub fn parse_task_request(text: &str, audio: Option<AudioInput>) -> Result<TaskRequest> {
    if text.len() > MAX_TASK_REQUEST_BYTES {
        bail!("{} bytes is longer than the {MAX_TASK_REQUEST_BYTES}-byte limit", text.len());
    }
    let v: Value = serde_json::from_str(text).context("not a JSON object")?;
    let obj = v.as_object().context("expected a JSON object")?;
    if let Some(unknown) = obj.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        bail!("unknown field `{unknown}` (expected some of {})", FIELDS.join(", "));
    }
    let name = string(obj, "task")?.context("missing `task`")?;
    let text = TaskText { text: string(obj, "text")?, caption: string(obj, "caption")?, lyrics: string(obj, "lyrics")?, question: string(obj, "question")?, instruction: string(obj, "instruction")? };
    let sampling = Sampling {
        top_k: uint(obj, "top_k")?.map(|k| k as usize),
        temperature: float(obj, "temperature")?,
        seed: uint(obj, "seed")?.unwrap_or(Sampling::default().seed),
        max_steps: uint(obj, "max_steps")?.map(|k| k as usize),
        cfg_scale: float(obj, "cfg_scale")?,
        step_limit: None,
    };
    task_request(&name, text, sampling, uint(obj, "codec_steps")?, audio)
}

/// A request for the task named `name` (any case, or `song`), checked as a parsed one is:
/// the text fields it reads given and the others not, input audio exactly when it reads
/// audio, at least one codec step (`codec_steps` None: the default 50).
pub fn task_request(name: &str, text: TaskText, sampling: Sampling, codec_steps: Option<u64>, audio: Option<AudioInput>) -> Result<TaskRequest> {
    let task = Task::parse(name).with_context(|| format!("`task`: unknown task `{name}` (expected one of {})", Task::ALL.map(|t| t.name()).join(", ")))?;
    check_text_fields(task, &text, &|name| format!("`{name}`"))?;
    match (takes_audio(task), &audio) {
        (true, None) => bail!("task {} needs input audio", task.name()),
        (false, Some(_)) => bail!("task {} takes no input audio", task.name()),
        _ => {}
    }
    let steps = match codec_steps {
        Some(0) => bail!("`codec_steps` must be at least 1"),
        Some(s) => usize::try_from(s).context("`codec_steps` is too large")?,
        None => CodecSettings::default().steps,
    };
    Ok(TaskRequest { task, text, audio, sampling, codec: CodecSettings { steps, ..Default::default() }, prompt_frames: None })
}

fn string(obj: &Map<String, Value>, name: &str) -> Result<Option<String>> {
    match obj.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => bail!("`{name}` must be a string"),
    }
}

fn uint(obj: &Map<String, Value>, name: &str) -> Result<Option<u64>> {
    match obj.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(x) => x.as_u64().map(Some).with_context(|| format!("`{name}` must be a non-negative integer")),
    }
}

fn float(obj: &Map<String, Value>, name: &str) -> Result<Option<f32>> {
    match obj.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(x) => x.as_f64().map(|f| Some(f as f32)).with_context(|| format!("`{name}` must be a number")),
    }
}

/// The output object of a run (without its audio samples): the sampler settings actually
/// used, why generation stopped, and the timings.
pub fn output_json(o: &TaskOutput) -> Value {
    json!({
        "task": o.task.name(),
        "text": o.text,
        "text_ids": o.generated.text_ids,
        "stopped_by": crate::run::stop_name(Some(o.stopped_by)),
        "top_k": o.top_k,
        "temperature": o.temperature,
        "seed": o.seed,
        "max_steps": o.max_steps,
        "instruction": o.instruction,
        "prompt_positions": o.prompt_positions,
        "steps": o.generated.steps,
        "timings": o.timings,
        "windows": o.windows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn audio() -> Option<AudioInput> {
        Some(AudioInput::Samples24k(vec![0.0; 2400]))
    }

    #[test]
    fn reads_every_field_and_defaults_the_rest() {
        let r = parse_task_request(r#"{"task": "instructtts", "text": "Hi.", "caption": "calm", "instruction": "Speak.", "seed": 7, "max_steps": 90, "top_k": 3, "temperature": 0.5, "cfg_scale": 1.5, "codec_steps": 4}"#, None).unwrap();
        assert_eq!(r.task, Task::InstructTts);
        assert_eq!((r.text.text.as_deref(), r.text.caption.as_deref(), r.text.instruction.as_deref()), (Some("Hi."), Some("calm"), Some("Speak.")));
        assert_eq!((r.sampling.seed, r.sampling.max_steps, r.sampling.top_k, r.sampling.temperature, r.sampling.cfg_scale), (7, Some(90), Some(3), Some(0.5), Some(1.5)));
        assert_eq!(r.codec.steps, 4);
        let r = parse_task_request(r#"{"task": "song", "lyrics": "la la"}"#, None).unwrap();
        assert_eq!(r.task, Task::Lts);
        let d = Sampling::default();
        assert_eq!((r.sampling.seed, r.sampling.max_steps, r.sampling.top_k, r.sampling.temperature), (d.seed, None, None, None));
        assert_eq!(r.codec.steps, CodecSettings::default().steps);
        let r = parse_task_request(r#"{"task": "audio_understanding", "question": "Who?"}"#, audio()).unwrap();
        assert!(matches!(r.audio, Some(AudioInput::Samples24k(ref s)) if s.len() == 2400));
    }

    #[test]
    fn refuses_bad_requests_naming_the_field() {
        let cases: [(&str, Option<AudioInput>, &str); 12] = [
            ("[1]", None, "JSON object"),
            ("{", None, "JSON object"),
            (r#"{"text": "Hi."}"#, None, "missing `task`"),
            (r#"{"task": "karaoke"}"#, None, "unknown task `karaoke`"),
            (r#"{"task": "tts", "text": "Hi.", "temprature": 1}"#, None, "unknown field `temprature`"),
            (r#"{"task": "tts"}"#, None, "needs `text`"),
            (r#"{"task": "tts", "text": "Hi.", "caption": "x"}"#, None, "does not use `caption`"),
            (r#"{"task": "tts", "text": 5}"#, None, "`text` must be a string"),
            (r#"{"task": "tts", "text": "Hi.", "seed": -1}"#, None, "`seed` must be a non-negative integer"),
            (r#"{"task": "tts", "text": "Hi.", "codec_steps": 0}"#, None, "`codec_steps` must be at least 1"),
            (r#"{"task": "asr"}"#, None, "needs input audio"),
            (r#"{"task": "tts", "text": "Hi."}"#, audio(), "takes no input audio"),
        ];
        for (text, audio, want) in cases {
            let e = format!("{:#}", parse_task_request(text, audio).unwrap_err());
            assert!(e.contains(want), "{text}: {e}");
        }
        let long = format!(r#"{{"task": "tts", "text": "{}"}}"#, "a".repeat(MAX_TASK_REQUEST_BYTES));
        assert!(format!("{:#}", parse_task_request(&long, None).unwrap_err()).contains("limit"));
    }
}
