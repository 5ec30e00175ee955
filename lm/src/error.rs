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

    /// One error shared by every request it failed (a failed batched step fails them
    /// all), as each request's result and the step's; `root` sees through it.
    #[error(transparent)]
    Shared(std::sync::Arc<LmError>),

    /// A panic caught inside a batched step or a request's prefill (the name predates the
    /// latter; a bug, not the requests' fault): the sequences it touched fail with it and
    /// the engine goes on.
    #[error("internal error in the engine: {0}")]
    StepPanicked(String),
}

impl LmError {
    /// The error itself, through any `Shared` wrapping.
    pub fn root(&self) -> &LmError {
        match self {
            LmError::Shared(e) => e.root(),
            e => e,
        }
    }

    pub(crate) fn config(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        LmError::Config { path: path.into(), msg: msg.into() }
    }
}

/// The message a caught panic carried (`panic!` with a literal or a formatted string).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> Option<&str> {
    payload.downcast_ref::<&str>().copied().or_else(|| payload.downcast_ref::<String>().map(String::as_str))
}
