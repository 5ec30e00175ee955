//! uniaudio-runtime: the tensor runtime under the UniAudio 2.0 LM and codec.
//!
//! - [`DType`], [`Tensor`]: typed, shaped views into backend buffers (PyTorch dim order).
//! - [`Backend`]: the device contract (CPU now; wgpu and CUDA implement the same trait).
//! - [`Op`]: the op set as data; [`op::run`] validates and dispatches one op.
//! - [`weights`]: memory-mapped safetensors model directories with checked lookups.

mod aligned;
mod backend;
pub mod bench;
mod cache_dir;
pub mod cpu;
pub mod precision;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod dtype;
mod error;
pub mod huge_pages;
pub mod op;
mod op_check;
pub mod ops;
pub mod out_dir;
pub mod rng;
pub mod synth;
mod tensor;
pub mod torch;
pub mod tune;
pub mod weights;
#[cfg(feature = "wgpu")]
pub mod wgpu;

pub use backend::Backend;
pub use cache_dir::cache_dir;
pub use cpu::Cpu;
pub use precision::Precision;
#[cfg(feature = "cuda")]
pub use crate::cuda::{Cuda, CudaOptions};
pub use dtype::DType;
pub use error::{Error, Result};
pub use op::{Conv2dParams, ConvParams, Epilogue, Op, PreluSlope, RowOrder, SampleParams, UnaryFn, WeightLayout};
pub use tensor::{numel, DeviceBuffer, Tensor};
#[cfg(feature = "wgpu")]
pub use crate::wgpu::{Wgpu, WgpuOptions};
