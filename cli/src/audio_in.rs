//! Input audio for the task commands: a file read and resampled to 24 kHz mono.

use std::path::Path;

use anyhow::Result;
use uniaudio::AudioInput;

pub fn read(path: &Path) -> Result<AudioInput> {
    Ok(AudioInput::Samples24k(crate::codec_encode::read_24k(path)?))
}
