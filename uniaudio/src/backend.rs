//! Choosing and opening a backend: the CPU always, wgpu and CUDA where the machine has them.

use anyhow::{Context, Result};
use uniaudio_runtime::{Cpu, Cuda, Precision, Wgpu};

/// Which backend to run on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BackendKind {
    /// CUDA when an NVIDIA GPU is usable, else a hardware GPU through wgpu, else the CPU.
    #[default]
    Auto,
    /// The multi-threaded CPU backend.
    Cpu,
    /// WGSL kernels on Vulkan, Metal or DX12.
    Wgpu,
    /// CUDA kernels on an NVIDIA GPU.
    Cuda,
}

impl BackendKind {
    /// Parses `auto`, `cpu`, `wgpu` or `cuda`.
    pub fn parse(s: &str) -> Option<BackendKind> {
        match s {
            "auto" => Some(BackendKind::Auto),
            "cpu" => Some(BackendKind::Cpu),
            "wgpu" => Some(BackendKind::Wgpu),
            "cuda" => Some(BackendKind::Cuda),
            _ => None,
        }
    }
}

/// An opened backend of any kind.
pub enum AnyBackend {
    /// The CPU backend.
    Cpu(Cpu),
    /// The wgpu backend.
    Wgpu(Wgpu),
    /// The CUDA backend.
    Cuda(Cuda),
}

impl AnyBackend {
    /// Opens `kind`. `precision` applies where the backend has reduced-precision kernels
    /// (the CPU with AVX512-BF16); elsewhere `Fast` runs as `Exact` with a note on stderr.
    pub fn open(kind: BackendKind, precision: Precision) -> Result<AnyBackend> {
        let note = |name: &str| {
            if precision == Precision::Fast {
                eprintln!("note: --precision fast is not implemented on {name} yet; running exact");
            }
        };
        match kind {
            BackendKind::Cpu => Ok(AnyBackend::Cpu(Cpu::with_precision(precision))),
            BackendKind::Wgpu => {
                note("wgpu");
                Ok(AnyBackend::Wgpu(Wgpu::new().context("--backend wgpu")?))
            }
            BackendKind::Cuda => {
                note("cuda");
                Ok(AnyBackend::Cuda(Cuda::new().context("--backend cuda")?))
            }
            // CUDA first; a software rasteriser (lavapipe, WARP) is slower than the CPU backend.
            BackendKind::Auto => {
                if let Ok(gpu) = Cuda::new() {
                    note("cuda");
                    return Ok(AnyBackend::Cuda(gpu));
                }
                match Wgpu::new() {
                    Ok(gpu) if !gpu.is_software() => {
                        note("wgpu");
                        Ok(AnyBackend::Wgpu(gpu))
                    }
                    _ => Ok(AnyBackend::Cpu(Cpu::with_precision(precision))),
                }
            }
        }
    }

    /// The backend in words: device, threads, instruction set, precision.
    pub fn describe(&self) -> String {
        match self {
            AnyBackend::Cpu(c) => format!("cpu: {} threads, {}, {} precision", c.threads(), c.isa().name(), c.precision().name()),
            AnyBackend::Wgpu(g) => format!("wgpu: {}", g.describe()),
            AnyBackend::Cuda(g) => format!("cuda: {}", g.describe()),
        }
    }
}
