//! The UniAudio 2.0 language model on the uniaudio runtime: config, the four Llama
//! stacks (understanding expert, backbone, generation expert, depth decoder), KV caches,
//! sampler and generation loop.

pub mod bench;
pub mod bench_batch;
pub mod config;
pub mod convert;
pub mod engine;
pub mod error;
pub mod forward;
pub mod frame;
pub mod generate;
mod heads;
pub mod llm_yaml;
pub mod model;
pub mod presets;
pub mod rope;
pub mod stored_dtype;
mod stack;
pub mod synth;
pub mod synth_dir;
pub mod synthetic_tokenizer;
pub mod tasks;
pub mod tokenizer;
pub mod weights;

pub use config::LmConfig;
pub use error::{LmError, Result};
pub use frame::Frame;
pub use engine::{Engine, EngineEvent, EngineOptions, Finished, RequestId};
pub use generate::{generate, GenerateOptions, GenerateOutput, Generator, OutputKind, StopReason};
pub use model::{Session, UniAudioLm};
