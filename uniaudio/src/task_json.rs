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

use crate::request::{check_text_fields, takes_audio, CodecSettings, Sampling, TaskOutput, TaskRequest, TaskText, MAX_CODEC_STEPS};

/// The fields a request may have.
pub const FIELDS: [&str; 12] = ["task", "text", "caption", "lyrics", "question", "instruction", "seed", "max_steps", "top_k", "temperature", "cfg_scale", "codec_steps"];

/// A request is refused above this size without parsing (its texts are short).
pub const MAX_TASK_REQUEST_BYTES: usize = 1 << 20;

/// Parses a request object (a JSON text) for a run with input audio or without
/// (`with_audio`); the caller puts the audio in the request once it is checked.
pub fn parse_task_request(text: &str, with_audio: bool) -> Result<TaskRequest> {
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
    task_request(&name, text, sampling, uint(obj, "codec_steps")?, with_audio, &|field| format!("`{field}`"))
}

/// A request for the task named `name` (any case, or `song`), checked as a parsed one is:
/// the text fields it reads given and the others not, input audio given (`with_audio`)
/// exactly when it reads audio, `max_steps` at least 1, 1..=`MAX_CODEC_STEPS` codec steps
/// (`codec_steps` None: the default 50). Messages name each field with `named` (a JSON
/// field, a keyword argument). The request has no audio yet: the caller puts it in.
pub fn task_request(name: &str, text: TaskText, sampling: Sampling, codec_steps: Option<u64>, with_audio: bool, named: &dyn Fn(&str) -> String) -> Result<TaskRequest> {
    let task = Task::parse(name).with_context(|| format!("{}: unknown task `{name}` (expected one of {}, or song)", named("task"), Task::ALL.map(|t| t.name()).join(", ")))?;
    check_text_fields(task, &text, named)?;
    match (takes_audio(task), with_audio) {
        (true, false) => bail!("task {} needs input audio", task.name()),
        (false, true) => bail!("task {} takes no input audio", task.name()),
        _ => {}
    }
    if sampling.max_steps == Some(0) {
        bail!("{} must be at least 1", named("max_steps"));
    }
    let steps = match codec_steps {
        None => CodecSettings::default().steps,
        Some(s) if (1..=MAX_CODEC_STEPS as u64).contains(&s) => s as usize,
        Some(s) => bail!("{} must be 1..={MAX_CODEC_STEPS}, got {s}", named("codec_steps")),
    };
    Ok(TaskRequest { task, text, audio: None, sampling, codec: CodecSettings { steps, ..Default::default() }, prompt_frames: None })
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

    #[test]
    fn reads_every_field_and_defaults_the_rest() {
        let r = parse_task_request(r#"{"task": "instructtts", "text": "Hi.", "caption": "calm", "instruction": "Speak.", "seed": 7, "max_steps": 90, "top_k": 3, "temperature": 0.5, "cfg_scale": 1.5, "codec_steps": 4}"#, false).unwrap();
        assert_eq!(r.task, Task::InstructTts);
        assert_eq!((r.text.text.as_deref(), r.text.caption.as_deref(), r.text.instruction.as_deref()), (Some("Hi."), Some("calm"), Some("Speak.")));
        assert_eq!((r.sampling.seed, r.sampling.max_steps, r.sampling.top_k, r.sampling.temperature, r.sampling.cfg_scale), (7, Some(90), Some(3), Some(0.5), Some(1.5)));
        assert_eq!(r.codec.steps, 4);
        let r = parse_task_request(r#"{"task": "song", "lyrics": "la la"}"#, false).unwrap();
        assert_eq!(r.task, Task::Lts);
        let d = Sampling::default();
        assert_eq!((r.sampling.seed, r.sampling.max_steps, r.sampling.top_k, r.sampling.temperature), (d.seed, None, None, None));
        assert_eq!(r.codec.steps, CodecSettings::default().steps);
        let r = parse_task_request(r#"{"task": "audio_understanding", "question": "Who?"}"#, true).unwrap();
        assert_eq!((r.task, r.text.question.as_deref()), (Task::AudioUnderstanding, Some("Who?")));
        assert!(r.audio.is_none());
    }

    #[test]
    fn refuses_bad_requests_naming_the_field() {
        let cases: [(&str, bool, &str); 14] = [
            ("[1]", false, "JSON object"),
            ("{", false, "JSON object"),
            (r#"{"text": "Hi."}"#, false, "missing `task`"),
            (r#"{"task": "karaoke"}"#, false, "unknown task `karaoke`"),
            (r#"{"task": "tts", "text": "Hi.", "temprature": 1}"#, false, "unknown field `temprature`"),
            (r#"{"task": "tts"}"#, false, "needs `text`"),
            (r#"{"task": "tts", "text": "Hi.", "caption": "x"}"#, false, "does not use `caption`"),
            (r#"{"task": "tts", "text": 5}"#, false, "`text` must be a string"),
            (r#"{"task": "tts", "text": "Hi.", "seed": -1}"#, false, "`seed` must be a non-negative integer"),
            (r#"{"task": "tts", "text": "Hi.", "codec_steps": 0}"#, false, "`codec_steps` must be 1..=1000, got 0"),
            (r#"{"task": "tts", "text": "Hi.", "codec_steps": 1000000000000}"#, false, "`codec_steps` must be 1..=1000"),
            (r#"{"task": "tts", "text": "Hi.", "max_steps": 0}"#, false, "`max_steps` must be at least 1"),
            (r#"{"task": "asr"}"#, false, "needs input audio"),
            (r#"{"task": "tts", "text": "Hi."}"#, true, "takes no input audio"),
        ];
        for (text, audio, want) in cases {
            let e = format!("{:#}", parse_task_request(text, audio).unwrap_err());
            assert!(e.contains(want), "{text}: {e}");
        }
        let long = format!(r#"{{"task": "tts", "text": "{}"}}"#, "a".repeat(MAX_TASK_REQUEST_BYTES));
        assert!(format!("{:#}", parse_task_request(&long, false).unwrap_err()).contains("limit"));
    }
}
