#![deny(missing_docs)]
//! UniAudio 2.0 in one library: find a model's parts (a bundle with its manifest, or
//! separate directories), and run any task from audio samples or text to text or audio.
//! The command line, the server and the bindings are thin layers over this crate.
//!
//! # Guide
//!
//! Load a bundle once with [`Model::load`] (on [`BackendKind::Auto`] by default: CUDA,
//! else a hardware GPU through wgpu, else the CPU), then call tasks on it. Parts load on
//! first use, so a TTS-only program never reads the encoder. Options are plain structs
//! with `Default`; every call returns [`Result`] with one [`enum@Error`] whose variant says
//! whose problem it is (a refused argument, a missing model part, a bad file, the backend).
//!
//! ```
//! use uniaudio::{BackendKind, GenerateEvent, GenerateOptions, LoadOptions, Model, OutputKind, Sampling};
//! # let tmp = tempfile::tempdir().unwrap();
//! # let bundle = tmp.path().join("bundle");
//! # uniaudio::synth_bundle::write_synthetic_bundle(&bundle, uniaudio::bundle_presets::BundlePreset::Tiny, None, &mut |_, _, _| {}).unwrap();
//! // `bundle`: a directory written by `uniaudio convert --bundle` (here a tiny synthetic one).
//! let mut model = Model::load(&bundle, LoadOptions { backend: BackendKind::Cpu, ..Default::default() })?;
//!
//! // Text to speech, and speech back to text.
//! let speech = model.tts("Hello there.", &Sampling { seed: 3, max_steps: Some(60), ..Default::default() })?;
//! assert_eq!(speech.sample_rate, 24_000);
//! let text = model.transcribe(&speech)?;
//!
//! // Raw generation from prompt frames, streamed as it is sampled.
//! let prompt = [128_000, 40, 41, 128_001].map(uniaudio::Frame::Text);
//! let options = GenerateOptions { kind: OutputKind::Text, max_steps: 8, ..Default::default() };
//! let mut ids = Vec::new();
//! for event in model.generate(&prompt, &options)? {
//!     match event? {
//!         GenerateEvent::Text(id) => ids.push(id),
//!         GenerateEvent::Frame(_) => {}
//!         GenerateEvent::Done(out) => assert_eq!(out.text_ids, ids),
//!     }
//! }
//!
//! // Many requests at once through the continuously batched engine.
//! let outputs = model.generate_batch(&[(prompt.to_vec(), options.clone()), (prompt.to_vec(), options)], 8)?;
//! assert_eq!(outputs[0].as_ref().unwrap().text_ids, ids);
//! # let _ = text;
//! # Ok::<(), uniaudio::Error>(())
//! ```
//!
//! The GPU backends are cargo features, `wgpu` and `cuda`, both on by default;
//! `default-features = false` builds a CPU-only library without their dependencies.
//! The crates underneath (`uniaudio-runtime`, `uniaudio-lm`, `uniaudio-codec`) stay
//! available for finer control.

pub mod backend;
pub mod bundle_layout;
pub mod bundle_presets;
pub mod convert_bundle;
pub mod error;
pub mod generate_json;
pub mod generation;
pub mod long_form;
pub mod manifest;
pub mod model;
pub mod paths;
pub mod request;
pub mod run;
pub mod synth_bundle;
pub mod task_json;
pub mod text_stream;

pub use error::{Error, Result};
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
