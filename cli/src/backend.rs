//! `--backend` selection.

use std::sync::OnceLock;

use anyhow::{Context, Result};
use clap::ValueEnum;
use uniaudio_runtime::{Cpu, Cuda, Precision, Wgpu};

static PRECISION: OnceLock<Precision> = OnceLock::new();

/// Sets the precision every backend of this run is opened with (`--precision`).
pub fn set_precision(p: Precision) {
    let _ = PRECISION.set(p);
}

fn precision() -> Precision {
    PRECISION.get().copied().unwrap_or_default()
}

/// GPU backends run `fast` as `exact` until they have reduced-precision kernels; say so.
fn note_exact_only(backend: &str) {
    if precision() == Precision::Fast {
        eprintln!("note: --precision fast is not implemented on {backend} yet; running exact");
    }
}

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
            BackendChoice::Cpu => Ok(Opened::Cpu(Cpu::with_precision(precision()))),
            BackendChoice::Wgpu => {
                note_exact_only("wgpu");
                Ok(Opened::Wgpu(Wgpu::new().context("--backend wgpu")?))
            }
            BackendChoice::Cuda => {
                note_exact_only("cuda");
                Ok(Opened::Cuda(Cuda::new().context("--backend cuda")?))
            }
            // CUDA first; a software rasteriser (lavapipe, WARP) is slower than the CPU backend.
            BackendChoice::Auto => {
                if let Ok(gpu) = Cuda::new() {
                    note_exact_only("cuda");
                    return Ok(Opened::Cuda(gpu));
                }
                match Wgpu::new() {
                    Ok(gpu) if !gpu.is_software() => {
                        note_exact_only("wgpu");
                        Ok(Opened::Wgpu(gpu))
                    }
                    _ => Ok(Opened::Cpu(Cpu::with_precision(precision()))),
                }
            }
        }
    }
}

impl Opened {
    pub fn describe(&self) -> String {
        match self {
            Opened::Cpu(c) => format!("cpu: {} threads, {}, {} precision", c.threads(), c.isa().name(), c.precision().name()),
            Opened::Wgpu(g) => format!("wgpu: {}", g.describe()),
            Opened::Cuda(g) => format!("cuda: {}", g.describe()),
        }
    }
}
