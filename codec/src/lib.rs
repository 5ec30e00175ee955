//! ReasoningCodec decoding on the uniaudio runtime: reconstruction tokens (8 codebooks at
//! 12.5 Hz) -> RVQ conditioning -> flow-matching DiT (Euler, CFG) -> SQ-Codec decoder ->
//! 24 kHz waveform, windowed as the reference does.

pub mod bench;
pub mod config;
pub mod convert;
mod decoder;
pub mod encode;
pub mod error;
mod flow;
pub mod load;
pub mod noise;
pub mod presets;
mod rvq;
mod sq;
pub mod stored_dtype;
pub mod synth;
pub mod tensors;
pub mod timesteps;
pub mod window;

pub use config::CodecConfig;
pub use decoder::{Codec, DecodeOptions, Decoded, Progress, WindowTrace};
pub use error::{CodecError, Result};
pub use noise::Noise;
pub use window::StitchMode;
