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
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod dtype;
mod error;
pub mod op;
mod op_check;
pub mod ops;
pub mod out_dir;
pub mod precision;
pub mod rng;
pub mod synth;
mod tensor;
pub mod torch;
pub mod tune;
pub mod weights;
#[cfg(feature = "wgpu")]
pub mod wgpu;

#[cfg(feature = "cuda")]
pub use crate::cuda::{Cuda, CudaOptions};
#[cfg(feature = "wgpu")]
pub use crate::wgpu::{Wgpu, WgpuOptions};
pub use backend::Backend;
pub use cache_dir::cache_dir;
pub use cpu::Cpu;
pub use dtype::DType;
pub use error::{Error, Result};
pub use op::{
    Conv2dParams, ConvParams, Epilogue, Op, PreluSlope, RowOrder, SampleParams, UnaryFn,
    WeightLayout,
};
pub use precision::Precision;
pub use tensor::{numel, DeviceBuffer, Tensor};
