//! Errors of the LM crate.

use std::path::PathBuf;

pub type Result<T, E = LmError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum LmError {
    #[error(transparent)]
    Runtime(#[from] uniaudio_runtime::Error),

    #[error("{path}: {msg}")]
    Config { path: PathBuf, msg: String },

    #[error("invalid prompt: {0}")]
    Prompt(String),

    #[error("{0}")]
    Invalid(String),

    #[error("{path}: {cause}")]
    Io { path: PathBuf, cause: std::io::Error },
}

impl LmError {
    pub(crate) fn config(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        LmError::Config { path: path.into(), msg: msg.into() }
    }
}
