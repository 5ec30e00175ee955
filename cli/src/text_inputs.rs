//! The text arguments every prompt-building command takes (`prompt` and the pipeline
//! commands), and their tokenizer.

use std::path::PathBuf;

use clap::Args;
use uniaudio_lm::tasks::{AudioTokens, TaskInputs};

#[derive(Args)]
pub struct TextInputArgs {
    /// Transcript (TTS, InstructTTS).
    #[arg(long)]
    pub text: Option<String>,
    /// Caption (TTA, TTM, InstructTTS).
    #[arg(long)]
    pub caption: Option<String>,
    /// Lyrics (LTS, song).
    #[arg(long)]
    pub lyrics: Option<String>,
    /// Task instruction; by default one of the task's instructions, chosen by --seed.
    #[arg(long)]
    pub instruction: Option<String>,
    /// tokenizer.json to use instead of the model directory's.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
}

impl TextInputArgs {
    /// The text fields, as the library's task runner checks them (no question).
    pub fn task_text(&self) -> uniaudio::TaskText {
        uniaudio::TaskText { text: self.text.clone(), caption: self.caption.clone(), lyrics: self.lyrics.clone(), question: None, instruction: self.instruction.clone() }
    }

    /// The task inputs these arguments give, with an optional question and input audio.
    pub fn task_inputs(&self, question: Option<String>, audio: Option<AudioTokens>) -> TaskInputs {
        TaskInputs {
            text: self.text.clone(),
            caption: self.caption.clone(),
            lyrics: self.lyrics.clone(),
            question,
            audio,
            instruction: self.instruction.clone(),
        }
    }
}
