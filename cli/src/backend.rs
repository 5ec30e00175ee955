//! `--backend` and `--precision`: the library's backend choice behind clap.

use std::sync::OnceLock;

use anyhow::Result;
use clap::ValueEnum;
use uniaudio::backend::{AnyBackend, BackendKind};
use uniaudio_runtime::Precision;

static PRECISION: OnceLock<Precision> = OnceLock::new();

/// Sets the precision every backend of this run is opened with (`--precision`).
pub fn set_precision(p: Precision) {
    let _ = PRECISION.set(p);
}

pub fn precision() -> Precision {
    PRECISION.get().copied().unwrap_or_default()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BackendChoice {
    /// CUDA, else a hardware GPU through wgpu, else the CPU.
    Auto,
    /// The multi-threaded CPU backend.
    Cpu,
    /// WGSL kernels on Vulkan, Metal or DX12.
    Wgpu,
    /// CUDA kernels on an NVIDIA GPU (needs only the driver; NVRTC once per kernel build).
    Cuda,
}

/// An opened backend.
pub type Opened = AnyBackend;

impl BackendChoice {
    pub fn kind(self) -> BackendKind {
        match self {
            BackendChoice::Auto => BackendKind::Auto,
            BackendChoice::Cpu => BackendKind::Cpu,
            BackendChoice::Wgpu => BackendKind::Wgpu,
            BackendChoice::Cuda => BackendKind::Cuda,
        }
    }

    pub fn open(self) -> Result<Opened> {
        Ok(AnyBackend::open(self.kind(), precision())?)
    }
}
