//! What a task run is asked to do and what it reports back.

use serde::Serialize;
use uniaudio_codec::StitchMode;
use uniaudio_lm::tasks::{AudioTokens, Task};
use uniaudio_lm::{GenerateOutput, StopReason};

/// The text inputs of a task; each task uses some of them (see [`check_text_inputs`]).
#[derive(Clone, Debug, Default)]
pub struct TaskText {
    /// Transcript (TTS, instruction TTS).
    pub text: Option<String>,
    /// Caption (text to audio or music, instruction TTS's style).
    pub caption: Option<String>,
    /// Lyrics (song).
    pub lyrics: Option<String>,
    /// Question (audio question answering).
    pub question: Option<String>,
    /// The task instruction; by default one of the task's, chosen by the seed.
    pub instruction: Option<String>,
}

/// Input audio: 24 kHz mono samples (encoded by the codec) or already-encoded tokens.
#[derive(Clone, Debug)]
pub enum AudioInput {
    /// Mono samples at 24 kHz.
    Samples24k(Vec<f32>),
    /// Codec tokens (as `uniaudio codec encode` writes them).
    Tokens(AudioTokens),
}

/// The LM's sampler settings.
#[derive(Clone, Debug)]
pub struct Sampling {
    /// Default: the task's (greedy for ASR and captions).
    pub top_k: Option<usize>,
    /// Default: the task's.
    pub temperature: Option<f32>,
    /// Seed of the sampler (and of the codec's noise for audio output).
    pub seed: u64,
    /// Default: the task's cap, reduced to what the context holds.
    pub max_steps: Option<usize>,
    /// Classifier-free guidance scale (off by default, as in the reference).
    pub cfg_scale: Option<f32>,
    /// An upper bound on the steps (a server's `--max-steps-limit`): it lowers the task's
    /// default cap, and a `max_steps` above it is refused.
    pub step_limit: Option<usize>,
}

impl Default for Sampling {
    fn default() -> Self {
        Sampling { top_k: None, temperature: None, seed: 888, max_steps: None, cfg_scale: None, step_limit: None }
    }
}

/// The most Euler steps a run's codec decoder may take (the reference scripts use 10 to
/// 50; far more only costs time, and an absurd count would exhaust memory).
pub const MAX_CODEC_STEPS: usize = 1000;

/// Codec settings for tasks with audio output (the initial noise is seeded by the sampling seed).
#[derive(Clone, Debug)]
pub struct CodecSettings {
    /// Euler steps of the flow model.
    pub steps: usize,
    /// Window stitching of long outputs.
    pub mode: StitchMode,
}

impl Default for CodecSettings {
    fn default() -> Self {
        CodecSettings { steps: 50, mode: StitchMode::Reference }
    }
}

/// One task to run.
#[derive(Clone, Debug)]
pub struct TaskRequest {
    /// Which task.
    pub task: Task,
    /// Its text inputs.
    pub text: TaskText,
    /// Its input audio (the understanding tasks and speech-to-speech).
    pub audio: Option<AudioInput>,
    /// Sampler settings.
    pub sampling: Sampling,
    /// Codec settings for audio output.
    pub codec: CodecSettings,
    /// Prompt frames to use instead of building them (as `uniaudio prompt` writes them).
    pub prompt_frames: Option<Vec<uniaudio_lm::Frame>>,
}

impl TaskRequest {
    /// The same request with other input audio (the old audio is not copied: a window of
    /// a long recording must not clone the whole of it).
    pub fn with_audio(&self, audio: Option<AudioInput>) -> TaskRequest {
        TaskRequest { task: self.task, text: self.text.clone(), audio, sampling: self.sampling.clone(), codec: self.codec.clone(), prompt_frames: self.prompt_frames.clone() }
    }
}

/// What a run reports while it works.
pub enum Event<'a> {
    /// Something the user should know (a reduced step cap, a stage starting).
    Note(String),
    /// Progress of a stage.
    Progress {
        /// Which stage.
        stage: Stage,
        /// Units done (chunks, steps, Euler steps over windows).
        done: usize,
        /// Units in all.
        total: usize,
    },
    /// Newly final generated text.
    Text(&'a str),
}

/// The stages of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// The codec encoder on the input audio.
    Encode,
    /// The LM.
    Generate,
    /// The codec decoder on the generated tokens.
    Decode,
}

impl Stage {
    /// The stage in words.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Encode => "encoding audio",
            Stage::Generate => "generating",
            Stage::Decode => "decoding audio",
        }
    }
}

/// Wall-clock seconds of each stage.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Timings {
    /// Encoding the input audio.
    pub encode_s: f64,
    /// The prompt's forward pass.
    pub prefill_s: f64,
    /// The generation steps.
    pub generate_s: f64,
    /// Decoding the generated tokens to audio.
    pub decode_s: f64,
    /// The whole run.
    pub total_s: f64,
}

/// What a run produced and how.
#[derive(Clone, Debug)]
pub struct TaskOutput {
    /// The task run.
    pub task: Task,
    /// Detokenised text (text tasks).
    pub text: Option<String>,
    /// 24 kHz waveform (audio tasks) and its rate.
    pub audio: Option<Vec<f32>>,
    /// The rate of `audio`.
    pub sample_rate: u32,
    /// The LM's output (frames, text ids, steps).
    pub generated: GenerateOutput,
    /// Why generation stopped.
    pub stopped_by: StopReason,
    /// The sampler settings used.
    pub top_k: usize,
    /// Temperature used.
    pub temperature: f32,
    /// Seed used.
    pub seed: u64,
    /// Step cap used.
    pub max_steps: usize,
    /// The task instruction the prompt starts with.
    pub instruction: String,
    /// Positions of the prompt.
    pub prompt_positions: usize,
    /// The model's context length.
    pub max_seq_len: usize,
    /// The encoded input audio, where there was any.
    pub input_tokens: Option<AudioTokens>,
    /// Seconds of input audio encoded.
    pub input_seconds: Option<f64>,
    /// For a long recording transcribed in windows: each window's (start, end) in seconds.
    pub windows: Vec<(f64, f64)>,
    /// Seconds per stage.
    pub timings: Timings,
}

impl TaskOutput {
    /// Positions of the context used: the prompt and every generated frame fed back.
    pub fn positions_used(&self) -> usize {
        self.prompt_positions + self.generated.steps.saturating_sub(1)
    }
}

/// The text flags a task reads.
pub fn text_inputs(task: Task) -> &'static [&'static str] {
    match task {
        Task::Tts | Task::YueTts => &["text"],
        Task::Tta | Task::Ttm => &["caption"],
        Task::Lts => &["lyrics"],
        Task::InstructTts => &["caption", "text"],
        Task::AudioUnderstanding => &["question"],
        _ => &[],
    }
}

/// The text flags each task reads must be given, and not blank; any other is refused, so a
/// typo cannot be silently ignored.
pub fn check_text_inputs(task: Task, t: &TaskText) -> anyhow::Result<()> {
    check_text_fields(task, t, &|name| format!("--{name}"))
}

/// `check_text_inputs` with each input named by `named` in messages (a flag, a JSON
/// field, a keyword argument).
pub fn check_text_fields(task: Task, t: &TaskText, named: &dyn Fn(&str) -> String) -> anyhow::Result<()> {
    let uses = text_inputs(task);
    let given = [("text", &t.text), ("caption", &t.caption), ("lyrics", &t.lyrics), ("question", &t.question)];
    for (name, value) in given {
        if value.is_some() && !uses.contains(&name) {
            crate::error::refuse!("task {} does not use {}", task.name(), named(name));
        }
    }
    for name in uses {
        match given.iter().find(|(n, _)| n == name).and_then(|(_, v)| v.as_deref()) {
            None => crate::error::refuse!("task {} needs {}", task.name(), named(name)),
            Some(v) if v.trim().is_empty() => crate::error::refuse!("task {} needs a non-blank {}", task.name(), named(name)),
            Some(_) => {}
        }
    }
    if t.instruction.as_deref().is_some_and(|i| i.trim().is_empty()) {
        crate::error::refuse!("{} is blank (leave it out for one of the task's own)", named("instruction"));
    }
    Ok(())
}

/// Whether the task reads input audio.
pub fn takes_audio(task: Task) -> bool {
    matches!(
        task,
        Task::SpeechS2s | Task::Asr | Task::YueAsr | Task::AudioCaption | Task::MusicCaption | Task::LyricRecognition | Task::SpeechS2t | Task::AudioUnderstanding
    )
}
