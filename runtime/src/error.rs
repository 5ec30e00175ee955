//! Errors of the runtime. Every message names the tensor, file or op it is about.

use std::path::PathBuf;

use crate::DType;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{op}: {what}: expected {expected}, got {got}")]
    Shape { op: &'static str, what: String, expected: String, got: String },

    #[error("{op}: {what} has dtype {got}, expected {expected}")]
    DType { op: &'static str, what: String, expected: String, got: DType },

    #[error("{op}: output overlaps input `{what}`; ops write to a separate tensor")]
    Aliasing { op: &'static str, what: String },

    #[error("{op}: {msg}")]
    InvalidArgument { op: &'static str, msg: String },

    #[error("op {op} is not supported by the {backend} backend")]
    Unsupported { op: &'static str, backend: &'static str },

    #[error("tensor is read-only (memory-mapped weights) and cannot be written by {op}")]
    ReadOnly { op: &'static str },

    #[error("{path}: {cause}")]
    Io { path: PathBuf, cause: std::io::Error },

    #[error("{path}: {msg}")]
    Weights { path: PathBuf, msg: String },

    /// An output path that cannot be written as asked (e.g. a non-empty directory).
    #[error("{path}: {msg}")]
    Output { path: PathBuf, msg: String },

    #[error("tensor `{name}` not found in {path}")]
    MissingTensor { name: String, path: PathBuf },

    #[error("tensor `{name}` in {path}: expected shape {expected:?}, found {found:?}")]
    WeightShape { name: String, path: PathBuf, expected: Vec<usize>, found: Vec<usize> },

    #[error("tensor `{name}` in {path}: dtype {found} is not one of {expected}")]
    WeightDType { name: String, path: PathBuf, expected: String, found: String },

    #[error("{backend} backend: {msg}")]
    Backend { backend: &'static str, msg: String },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), cause: source }
    }

    pub(crate) fn weights(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Error::Weights { path: path.into(), msg: msg.into() }
    }

    pub(crate) fn shape(op: &'static str, what: impl Into<String>, expected: impl std::fmt::Debug, got: impl std::fmt::Debug) -> Self {
        Error::Shape {
            op,
            what: what.into(),
            expected: format!("{expected:?}"),
            got: format!("{got:?}"),
        }
    }

    pub(crate) fn invalid(op: &'static str, msg: impl Into<String>) -> Self {
        Error::InvalidArgument { op, msg: msg.into() }
    }
}
