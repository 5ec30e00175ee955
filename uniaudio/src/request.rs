//! What a task run is asked to do and what it reports back.

use serde::Serialize;
use uniaudio_codec::StitchMode;
use uniaudio_lm::tasks::{AudioTokens, Task};
use uniaudio_lm::{GenerateOutput, StopReason};

/// The text inputs of a task; each task uses some of them (see [`check_text_inputs`]).
#[derive(Clone, Debug, Default)]
pub struct TaskText {
    pub text: Option<String>,
    pub caption: Option<String>,
    pub lyrics: Option<String>,
    pub question: Option<String>,
    /// The task instruction; by default one of the task's, chosen by the seed.
    pub instruction: Option<String>,
}

/// Input audio: 24 kHz mono samples (encoded by the codec) or already-encoded tokens.
#[derive(Clone, Debug)]
pub enum AudioInput {
    Samples24k(Vec<f32>),
    Tokens(AudioTokens),
}

#[derive(Clone, Debug)]
pub struct Sampling {
    /// Default: the task's (greedy for ASR and captions).
    pub top_k: Option<usize>,
    pub temperature: Option<f32>,
    pub seed: u64,
    /// Default: the task's cap, reduced to what the context holds.
    pub max_steps: Option<usize>,
    pub cfg_scale: Option<f32>,
}

impl Default for Sampling {
    fn default() -> Self {
        Sampling { top_k: None, temperature: None, seed: 888, max_steps: None, cfg_scale: None }
    }
}

/// Codec settings for tasks with audio output (the initial noise is seeded by the sampling seed).
#[derive(Clone, Debug)]
pub struct CodecSettings {
    /// Euler steps of the flow model.
    pub steps: usize,
    pub mode: StitchMode,
}

impl Default for CodecSettings {
    fn default() -> Self {
        CodecSettings { steps: 50, mode: StitchMode::Reference }
    }
}

#[derive(Clone, Debug)]
pub struct TaskRequest {
    pub task: Task,
    pub text: TaskText,
    pub audio: Option<AudioInput>,
    pub sampling: Sampling,
    pub codec: CodecSettings,
    /// Prompt frames to use instead of building them (as `uniaudio prompt` writes them).
    pub prompt_frames: Option<Vec<uniaudio_lm::Frame>>,
}

/// What a run reports while it works.
pub enum Event<'a> {
    /// Something the user should know (a reduced step cap, a stage starting).
    Note(String),
    Progress { stage: Stage, done: usize, total: usize },
    /// Newly final generated text.
    Text(&'a str),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    Encode,
    Generate,
    Decode,
}

impl Stage {
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
    pub encode_s: f64,
    pub prefill_s: f64,
    pub generate_s: f64,
    pub decode_s: f64,
    pub total_s: f64,
}

#[derive(Clone, Debug)]
pub struct TaskOutput {
    pub task: Task,
    /// Detokenised text (text tasks).
    pub text: Option<String>,
    /// 24 kHz waveform (audio tasks) and its rate.
    pub audio: Option<Vec<f32>>,
    pub sample_rate: u32,
    pub generated: GenerateOutput,
    pub stopped_by: StopReason,
    /// The sampler settings used.
    pub top_k: usize,
    pub temperature: f32,
    pub seed: u64,
    pub max_steps: usize,
    pub instruction: String,
    pub prompt_positions: usize,
    pub max_seq_len: usize,
    /// The encoded input audio, where there was any.
    pub input_tokens: Option<AudioTokens>,
    /// Seconds of input audio encoded.
    pub input_seconds: Option<f64>,
    /// For a long recording transcribed in windows: each window's (start, end) in seconds.
    pub windows: Vec<(f64, f64)>,
    pub timings: Timings,
}

impl TaskOutput {
    /// Positions of the context used: the prompt and every generated frame fed back.
    pub fn positions_used(&self) -> usize {
        self.prompt_positions + self.generated.steps.saturating_sub(1)
    }
}

/// The text flags each task reads; any other is refused, so a typo cannot be silently ignored.
pub fn check_text_inputs(task: Task, t: &TaskText) -> anyhow::Result<()> {
    let uses: &[&str] = match task {
        Task::Tts | Task::YueTts => &["text"],
        Task::Tta | Task::Ttm => &["caption"],
        Task::Lts => &["lyrics"],
        Task::InstructTts => &["caption", "text"],
        Task::AudioUnderstanding => &["question"],
        _ => &[],
    };
    let given = [("text", &t.text), ("caption", &t.caption), ("lyrics", &t.lyrics), ("question", &t.question)];
    for (name, value) in given {
        if value.is_some() && !uses.contains(&name) {
            anyhow::bail!("task {} does not use --{name}", task.name());
        }
    }
    for name in uses {
        if given.iter().any(|(n, v)| n == name && v.is_none()) {
            anyhow::bail!("task {} needs --{name}", task.name());
        }
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
