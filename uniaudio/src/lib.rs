#![deny(missing_docs)]
//! UniAudio 2.0 in one library: find a model's parts (a bundle with its manifest, or
//! separate directories), and run any task from audio samples or text to text or audio.
//! The command line, the server and the bindings are thin layers over this crate.

pub mod backend;
pub mod bundle_layout;
pub mod bundle_presets;
pub mod convert_bundle;
pub mod generate_json;
pub mod generation;
pub mod long_form;
pub mod manifest;
pub mod model;
pub mod paths;
pub mod request;
pub mod run;
pub mod synth_bundle;
pub mod text_stream;

pub use manifest::{Manifest, Problem, MANIFEST_FILE};
pub use paths::{ModelPaths, Part, MODEL_ENV};
pub use request::{AudioInput, CodecSettings, Event, Sampling, Stage, TaskOutput, TaskRequest, TaskText, Timings};
pub use backend::{AnyBackend, BackendKind};
pub use generation::{GenerateEvent, Generation};
pub use model::{Audio, LoadOptions, Model};
pub use uniaudio_lm::{Frame, GenerateOptions, GenerateOutput, OutputKind, StopReason};
pub use run::Models;
pub use uniaudio_runtime::Precision;
pub use uniaudio_lm::tasks::{AudioTokens, Task};
