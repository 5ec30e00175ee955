//! Prompt frames for every task (spec §4): the task instruction, the conditioning text
//! segments and the audio token blocks, laid out as the reference's generators do.
//!
//! Deviations where the reference CLI is broken (spec §9): InstructTTS is built as the
//! training format says (caption, then transcript); audio_understanding presents the audio
//! in frame order (the reference transposes it twice); lyric_recognition is routed as ASR.

use serde::Deserialize;

use crate::config::{LmConfig, CODEBOOKS};
use crate::error::{LmError, Result};
use crate::frame::Frame;
use crate::generate::OutputKind;
use crate::tokenizer::TextTokenizer;

const INSTRUCTIONS: &str = include_str!("../data/audio_tasks_prompts.json");

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Task {
    Tts,
    YueTts,
    Tta,
    Ttm,
    Lts,
    InstructTts,
    SpeechS2s,
    Asr,
    YueAsr,
    AudioCaption,
    MusicCaption,
    LyricRecognition,
    SpeechS2t,
    AudioUnderstanding,
}

/// Segment wrappers (text ids).
const TRANSCRIPTION: (u32, u32) = (128_011, 128_012);
const LYRIC: (u32, u32) = (128_013, 128_014);
const CAPTION: (u32, u32) = (128_015, 128_016);

impl Task {
    pub const ALL: [Task; 14] = [
        Task::Tts,
        Task::YueTts,
        Task::Tta,
        Task::Ttm,
        Task::Lts,
        Task::InstructTts,
        Task::SpeechS2s,
        Task::Asr,
        Task::YueAsr,
        Task::AudioCaption,
        Task::MusicCaption,
        Task::LyricRecognition,
        Task::SpeechS2t,
        Task::AudioUnderstanding,
    ];

    /// The reference's task name (the key of the instruction table).
    pub fn name(self) -> &'static str {
        match self {
            Task::Tts => "TTS",
            Task::YueTts => "Yue_TTS",
            Task::Tta => "TTA",
            Task::Ttm => "TTM",
            Task::Lts => "LTS",
            Task::InstructTts => "InstructTTS",
            Task::SpeechS2s => "speech_s2s",
            Task::Asr => "ASR",
            Task::YueAsr => "Yue_ASR",
            Task::AudioCaption => "audio_caption",
            Task::MusicCaption => "music_caption",
            Task::LyricRecognition => "lyric_recognition",
            Task::SpeechS2t => "speech_s2t",
            Task::AudioUnderstanding => "audio_understanding",
        }
    }

    /// Case-insensitive; `song` is accepted for LTS.
    pub fn parse(s: &str) -> Option<Task> {
        let s = s.to_ascii_lowercase();
        if s == "song" {
            return Some(Task::Lts);
        }
        Task::ALL.into_iter().find(|t| t.name().to_ascii_lowercase() == s)
    }

    pub fn output_kind(self) -> OutputKind {
        match self {
            Task::Tts | Task::YueTts | Task::Tta | Task::Ttm | Task::Lts | Task::InstructTts | Task::SpeechS2s => OutputKind::Audio,
            _ => OutputKind::Text,
        }
    }

    /// The reference's sampler settings: understanding tasks are greedy.
    pub fn sampling(self) -> (usize, f32) {
        match self {
            Task::Asr | Task::YueAsr | Task::AudioCaption | Task::MusicCaption | Task::LyricRecognition | Task::AudioUnderstanding => (1, 1.0),
            _ => (50, 0.9),
        }
    }

    /// The task's instruction list.
    pub fn instructions(self) -> Vec<String> {
        let table: std::collections::HashMap<String, Vec<String>> = serde_json::from_str(INSTRUCTIONS).expect("embedded instruction table");
        table.get(self.name()).cloned().unwrap_or_default()
    }
}

/// Codec tokens of an input clip: raw codebook ids, frame-major.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct AudioTokens {
    pub reasoning: Vec<[u32; CODEBOOKS]>,
    pub reconstruction: Vec<[u32; CODEBOOKS]>,
}

#[derive(Clone, Debug, Default)]
pub struct TaskInputs {
    pub text: Option<String>,
    pub caption: Option<String>,
    pub lyrics: Option<String>,
    pub question: Option<String>,
    pub audio: Option<AudioTokens>,
    /// Overrides the instruction drawn from the table.
    pub instruction: Option<String>,
}

#[derive(Debug)]
pub struct BuiltPrompt {
    pub frames: Vec<Frame>,
    pub instruction: String,
    pub output_kind: OutputKind,
    pub top_k: usize,
    pub temperature: f32,
}

/// One of the task's instructions, chosen by `seed`.
pub fn pick_instruction(task: Task, seed: u64) -> String {
    let list = task.instructions();
    let i = uniaudio_runtime::rng::stream_key(seed, 0) as usize % list.len().max(1);
    list.get(i).cloned().unwrap_or_default()
}

fn text_frames(ids: Vec<u32>) -> impl Iterator<Item = Frame> {
    ids.into_iter().map(Frame::Text)
}

fn wrapped(tok: &TextTokenizer, text: &str, (open, close): (u32, u32)) -> Result<Vec<Frame>> {
    let mut ids = vec![open];
    ids.extend(tok.tokenize(text)?);
    ids.push(close);
    Ok(text_frames(ids).collect())
}

/// R then S: the reasoning block, then the reconstruction block (+ audio_reason_card).
fn audio_blocks(config: &LmConfig, audio: &AudioTokens) -> Result<Vec<Frame>> {
    let rc = config.ids.audio_reason_card as u32;
    let mut frames = vec![Frame::Audio([config.ids.reason_bos; CODEBOOKS])];
    for (i, f) in audio.reasoning.iter().enumerate() {
        if let Some(k) = f.iter().position(|&c| c >= rc) {
            return Err(LmError::Prompt(format!("reasoning frame {i}: code {} of codebook {k} is not below audio_reason_card {rc}", f[k])));
        }
        frames.push(Frame::Audio(*f));
    }
    frames.push(Frame::Audio([config.ids.reason_eos; CODEBOOKS]));
    frames.push(Frame::Audio([config.ids.semantic_bos + rc; CODEBOOKS]));
    for (i, f) in audio.reconstruction.iter().enumerate() {
        if let Some(k) = f.iter().position(|&c| c as usize >= config.ids.audio_semantic_card) {
            return Err(LmError::Prompt(format!(
                "reconstruction frame {i}: code {} of codebook {k} is not below audio_semantic_card {}",
                f[k], config.ids.audio_semantic_card
            )));
        }
        frames.push(Frame::Audio(f.map(|c| c + rc)));
    }
    frames.push(Frame::Audio([config.ids.semantic_eos + rc; CODEBOOKS]));
    Ok(frames)
}

fn need<'a>(v: &'a Option<String>, task: Task, flag: &str) -> Result<&'a str> {
    v.as_deref().ok_or_else(|| LmError::Invalid(format!("task {} needs {flag}", task.name())))
}

/// Builds the prompt frames of `task` (spec §4).
pub fn build_prompt(config: &LmConfig, tok: &TextTokenizer, task: Task, inputs: &TaskInputs, seed: u64) -> Result<BuiltPrompt> {
    let instruction = inputs.instruction.clone().unwrap_or_else(|| pick_instruction(task, seed));
    let mut frames: Vec<Frame> = text_frames(tok.tokenize(&format!("{}\n\n", instruction.trim()))?).collect();
    let audio = || inputs.audio.as_ref().ok_or_else(|| LmError::Invalid(format!("task {} needs input audio (--audio FILE or --audio-tokens FILE)", task.name())));
    match task {
        Task::Tts | Task::YueTts => frames.extend(wrapped(tok, need(&inputs.text, task, "--text")?, TRANSCRIPTION)?),
        Task::Tta | Task::Ttm => frames.extend(wrapped(tok, need(&inputs.caption, task, "--caption")?, CAPTION)?),
        Task::Lts => frames.extend(wrapped(tok, need(&inputs.lyrics, task, "--lyrics")?, LYRIC)?),
        Task::InstructTts => {
            frames.extend(wrapped(tok, need(&inputs.caption, task, "--caption")?, CAPTION)?);
            frames.extend(wrapped(tok, need(&inputs.text, task, "--text")?, TRANSCRIPTION)?);
        }
        Task::AudioUnderstanding => {
            frames.extend(text_frames(tok.tokenize(need(&inputs.question, task, "--question")?)?));
            frames.extend(audio_blocks(config, audio()?)?);
        }
        Task::SpeechS2s | Task::Asr | Task::YueAsr | Task::AudioCaption | Task::MusicCaption | Task::LyricRecognition | Task::SpeechS2t => {
            frames.extend(audio_blocks(config, audio()?)?)
        }
    }
    let (top_k, temperature) = task.sampling();
    Ok(BuiltPrompt { frames, instruction, output_kind: task.output_kind(), top_k, temperature })
}
