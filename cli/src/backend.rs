//! `--backend` selection.

use anyhow::{Context, Result};
use clap::ValueEnum;
use uniaudio_runtime::{Cpu, Cuda, Wgpu};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BackendChoice {
    /// A hardware GPU through wgpu when one exists, else the CPU.
    Auto,
    /// The multi-threaded CPU backend.
    Cpu,
    /// WGSL kernels on Vulkan, Metal or DX12.
    Wgpu,
    /// CUDA kernels on an NVIDIA GPU (needs only the driver; NVRTC once per kernel build).
    Cuda,
}

/// An opened backend.
pub enum Opened {
    Cpu(Cpu),
    Wgpu(Wgpu),
    Cuda(Cuda),
}

impl BackendChoice {
    pub fn open(self) -> Result<Opened> {
        match self {
            BackendChoice::Cpu => Ok(Opened::Cpu(Cpu::new())),
            BackendChoice::Wgpu => Ok(Opened::Wgpu(Wgpu::new().context("--backend wgpu")?)),
            BackendChoice::Cuda => Ok(Opened::Cuda(Cuda::new().context("--backend cuda")?)),
            // CUDA first; a software rasteriser (lavapipe, WARP) is slower than the CPU backend.
            BackendChoice::Auto => {
                if let Ok(gpu) = Cuda::new() {
                    return Ok(Opened::Cuda(gpu));
                }
                match Wgpu::new() {
                    Ok(gpu) if !gpu.is_software() => Ok(Opened::Wgpu(gpu)),
                    _ => Ok(Opened::Cpu(Cpu::new())),
                }
            }
        }
    }
}

impl Opened {
    pub fn describe(&self) -> String {
        match self {
            Opened::Cpu(c) => format!("cpu: {} threads, {}", c.threads(), c.isa().name()),
            Opened::Wgpu(g) => format!("wgpu: {}", g.describe()),
            Opened::Cuda(g) => format!("cuda: {}", g.describe()),
        }
    }
}
