//! The library's one error type. Every variant carries the whole message (what failed,
//! naming the file, tensor, argument or field, and what was expected); the variant says
//! whose problem it is, so a binding can map it to its own error kinds.

use std::fmt;

pub use uniaudio_lm::error::panic_message;

/// What a call of this library can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An argument or request the library refuses: a bad value, a task without its input,
    /// a prompt longer than the context. The message names the argument or field.
    #[error("{0}")]
    InvalidInput(String),
    /// A model part a task needs is absent; the message names it and how to supply it.
    #[error("{0}")]
    MissingPart(String),
    /// A model file is missing, unreadable or malformed (names the file or tensor).
    #[error("{0}")]
    Model(String),
    /// An audio input could not be read or decoded (names the file).
    #[error("{0}")]
    Audio(String),
    /// The backend could not be opened or failed while running (or is not in this build).
    #[error("{0}")]
    Backend(String),
    /// A file could not be read or written.
    #[error("{0}")]
    Io(String),
    /// A fault inside the library (a broken invariant); worth a bug report.
    #[error("{0}")]
    Internal(String),
    /// The caller's stop check ended the call early (`Model::run_until`).
    #[error("{0}")]
    Cancelled(String),
}

/// `Result` with this library's [`enum@Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A refused argument or request.
    pub fn invalid_input(msg: impl fmt::Display) -> Error {
        Error::InvalidInput(msg.to_string())
    }

    /// The message without the variant.
    pub fn message(&self) -> &str {
        match self {
            Error::InvalidInput(m) | Error::MissingPart(m) | Error::Model(m) | Error::Audio(m) | Error::Backend(m) | Error::Io(m) | Error::Internal(m) | Error::Cancelled(m) => m,
        }
    }

    /// The variant's name in snake case (`invalid_input`, `missing_part`, ...), for logs and bindings.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::InvalidInput(_) => "invalid_input",
            Error::MissingPart(_) => "missing_part",
            Error::Model(_) => "model",
            Error::Audio(_) => "audio",
            Error::Backend(_) => "backend",
            Error::Io(_) => "io",
            Error::Internal(_) => "internal",
            Error::Cancelled(_) => "cancelled",
        }
    }

    /// This error's variant as a constructor.
    fn constructor(&self) -> fn(String) -> Error {
        match self {
            Error::InvalidInput(_) => Error::InvalidInput,
            Error::MissingPart(_) => Error::MissingPart,
            Error::Model(_) => Error::Model,
            Error::Audio(_) => Error::Audio,
            Error::Backend(_) => Error::Backend,
            Error::Io(_) => Error::Io,
            Error::Internal(_) => Error::Internal,
            Error::Cancelled(_) => Error::Cancelled,
        }
    }
}

/// The variant a lower crate's error belongs to (None: not one of ours).
fn classify(e: &(dyn std::error::Error + 'static)) -> Option<fn(String) -> Error> {
    use uniaudio_runtime::Error as R;
    if let Some(e) = e.downcast_ref::<Error>() {
        return Some(e.constructor());
    }
    if e.downcast_ref::<uniaudio_audio::AudioError>().is_some() {
        return Some(Error::Audio);
    }
    if let Some(e) = e.downcast_ref::<uniaudio_lm::LmError>() {
        use uniaudio_lm::LmError as L;
        return match e {
            L::Runtime(r) => classify(r),
            L::Config { .. } | L::Io { .. } => Some(Error::Model),
            L::Prompt(_) | L::Invalid(_) => Some(Error::InvalidInput),
            L::StepPanicked(_) => Some(Error::Internal),
            L::Shared(inner) => classify(inner.as_ref()),
        };
    }
    if let Some(e) = e.downcast_ref::<uniaudio_codec::CodecError>() {
        use uniaudio_codec::CodecError as C;
        return match e {
            C::Runtime(r) => classify(r),
            C::Config { .. } | C::Io { .. } => Some(Error::Model),
            C::Tokens(_) | C::Invalid(_) => Some(Error::InvalidInput),
            C::Cancelled => Some(Error::Cancelled),
        };
    }
    if let Some(e) = e.downcast_ref::<R>() {
        return Some(match e {
            R::Io { .. } | R::Weights { .. } | R::MissingTensor { .. } | R::WeightShape { .. } | R::WeightDType { .. } => Error::Model,
            R::Output { .. } => Error::Io,
            R::Backend { .. } | R::Unsupported { .. } => Error::Backend,
            _ => Error::Internal,
        });
    }
    if e.downcast_ref::<std::io::Error>().is_some() {
        return Some(Error::Io);
    }
    None
}

/// The internal code keeps `anyhow` context chains; at the public surface the whole chain
/// becomes the message and the outermost error the library knows decides the variant
/// (a facade error's kind wins over the lower error it wraps).
impl From<anyhow::Error> for Error {
    fn from(e: anyhow::Error) -> Error {
        let message = format!("{e:#}");
        let kind = e.chain().find_map(classify).unwrap_or(Error::Internal);
        kind(message)
    }
}

/// Returns early with [`Error::InvalidInput`] (into `anyhow` inside the library).
macro_rules! refuse {
    ($($t:tt)*) => { return Err($crate::error::Error::InvalidInput(format!($($t)*)).into()) };
}

/// Returns early with [`Error::MissingPart`].
macro_rules! missing {
    ($($t:tt)*) => { return Err($crate::error::Error::MissingPart(format!($($t)*)).into()) };
}

pub(crate) use {missing, refuse};

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    fn through_anyhow(e: impl Into<anyhow::Error>) -> Error {
        Error::from(Err::<(), _>(e.into()).context("outer context").unwrap_err())
    }

    #[test]
    fn the_variant_follows_the_typed_error_and_the_message_keeps_the_chain() {
        let e = through_anyhow(Error::InvalidInput("--max-steps must be at least 1".into()));
        assert!(matches!(e, Error::InvalidInput(_)), "{e:?}");
        assert_eq!(e.to_string(), "outer context: --max-steps must be at least 1");
        let e = through_anyhow(uniaudio_runtime::Error::MissingTensor { name: "w".into(), path: "m.safetensors".into() });
        assert!(matches!(e, Error::Model(_)) && e.message().contains("`w`"), "{e:?}");
        let e = through_anyhow(uniaudio_lm::LmError::Runtime(uniaudio_runtime::Error::Backend { backend: "cuda", msg: "lost".into() }));
        assert!(matches!(e, Error::Backend(_)), "{e:?}");
        let e = through_anyhow(uniaudio_lm::LmError::Prompt("no frames".into()));
        assert!(matches!(e, Error::InvalidInput(_)), "{e:?}");
        let e = through_anyhow(uniaudio_lm::LmError::StepPanicked("index out of bounds".into()));
        assert!(matches!(e, Error::Internal(_)) && e.message().contains("internal error in the engine"), "{e:?}");
        // A request's failure inside the engine keeps its kind.
        let lost = uniaudio_lm::LmError::Runtime(uniaudio_runtime::Error::Backend { backend: "cuda", msg: "out of memory".into() });
        let e = through_anyhow(uniaudio_lm::LmError::Shared(std::sync::Arc::new(lost)));
        assert!(matches!(e, Error::Backend(_)) && e.message().contains("out of memory"), "{e:?}");
        let e = through_anyhow(uniaudio_audio::AudioError::EmptyFile { name: "x.wav".into() });
        assert!(matches!(e, Error::Audio(_)) && e.message().contains("x.wav"), "{e:?}");
        let e = through_anyhow(std::io::Error::other("disk full"));
        assert!(matches!(e, Error::Io(_)), "{e:?}");
        let e = through_anyhow(anyhow::anyhow!("no windows"));
        assert!(matches!(e, Error::Internal(_)) && e.kind() == "internal", "{e:?}");
    }
}
