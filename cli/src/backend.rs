//! `--backend` selection.

use anyhow::{Context, Result};
use clap::ValueEnum;
use uniaudio_runtime::{Cpu, Wgpu};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BackendChoice {
    /// A hardware GPU through wgpu when one exists, else the CPU.
    Auto,
    /// The multi-threaded CPU backend.
    Cpu,
    /// WGSL kernels on Vulkan, Metal or DX12.
    Wgpu,
}

/// An opened backend.
pub enum Opened {
    Cpu(Cpu),
    Wgpu(Wgpu),
}

impl BackendChoice {
    pub fn open(self) -> Result<Opened> {
        match self {
            BackendChoice::Cpu => Ok(Opened::Cpu(Cpu::new())),
            BackendChoice::Wgpu => Ok(Opened::Wgpu(Wgpu::new().context("--backend wgpu")?)),
            // A software rasteriser (lavapipe, WARP) is slower than the CPU backend.
            BackendChoice::Auto => match Wgpu::new() {
                Ok(gpu) if !gpu.is_software() => Ok(Opened::Wgpu(gpu)),
                _ => Ok(Opened::Cpu(Cpu::new())),
            },
        }
    }
}

impl Opened {
    pub fn describe(&self) -> String {
        match self {
            Opened::Cpu(c) => format!("cpu: {} threads, {}", c.threads(), c.isa().name()),
            Opened::Wgpu(g) => format!("wgpu: {}", g.describe()),
        }
    }
}
