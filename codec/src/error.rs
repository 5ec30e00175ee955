//! Errors of the codec crate.

use std::path::PathBuf;

pub type Result<T, E = CodecError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error(transparent)]
    Runtime(#[from] uniaudio_runtime::Error),

    #[error("{path}: {msg}")]
    Config { path: PathBuf, msg: String },

    #[error("invalid tokens: {0}")]
    Tokens(String),

    #[error("{0}")]
    Invalid(String),

    #[error("{path}: {cause}")]
    Io { path: PathBuf, cause: std::io::Error },

    /// The caller's stop check asked the work to end early.
    #[error("cancelled")]
    Cancelled,
}

impl CodecError {
    pub(crate) fn config(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        CodecError::Config { path: path.into(), msg: msg.into() }
    }
}
