//! Choosing and opening a backend: the CPU always, wgpu and CUDA where the machine has them.

use uniaudio_runtime::{Cpu, Precision};
#[cfg(feature = "cuda")]
use uniaudio_runtime::Cuda;
#[cfg(feature = "wgpu")]
use uniaudio_runtime::Wgpu;

use crate::error::{Error, Result};

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
    /// Whether this build has the backend (`wgpu` and `cuda` are cargo features).
    pub fn is_built(self) -> bool {
        match self {
            BackendKind::Auto | BackendKind::Cpu => true,
            BackendKind::Wgpu => cfg!(feature = "wgpu"),
            BackendKind::Cuda => cfg!(feature = "cuda"),
        }
    }

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
    #[cfg(feature = "wgpu")]
    Wgpu(Wgpu),
    /// The CUDA backend.
    #[cfg(feature = "cuda")]
    Cuda(Cuda),
}

#[cfg(not(all(feature = "wgpu", feature = "cuda")))]
fn not_built(name: &str) -> Error {
    Error::Backend(format!("--backend {name}: this build has no {name} backend (built without the `{name}` cargo feature of the uniaudio crate)"))
}

/// wgpu with the environment's options and `precision`; `fast` needs SHADER_F16, else it
/// runs exact (`chosen` says so on stderr once the adapter is the one used).
#[cfg(feature = "wgpu")]
fn open_wgpu(precision: Precision) -> uniaudio_runtime::Result<Wgpu> {
    Wgpu::with_options(uniaudio_runtime::WgpuOptions { precision, ..uniaudio_runtime::WgpuOptions::from_env() })
}

/// `gpu`, the adapter that will run, with a note where `fast` was asked and it runs exact
/// (an adapter `Auto` only probed and passed over says nothing).
#[cfg(feature = "wgpu")]
fn chosen(gpu: Wgpu, precision: Precision) -> Wgpu {
    if precision == Precision::Fast && gpu.precision() != Precision::Fast {
        eprintln!("note: --precision fast needs an adapter with SHADER_F16 (and UNIAUDIO_WGPU_NO_F16 unset); running exact");
    }
    gpu
}

/// CUDA with the environment's options and `precision`; `fast` needs the tensor cores
/// (sm_80+, not switched off), else it runs exact with a note.
#[cfg(feature = "cuda")]
fn open_cuda(precision: Precision) -> uniaudio_runtime::Result<Cuda> {
    let gpu = Cuda::with_options(uniaudio_runtime::CudaOptions { precision, ..uniaudio_runtime::CudaOptions::from_env() })?;
    if precision == Precision::Fast && gpu.precision() != Precision::Fast {
        eprintln!("note: --precision fast needs tensor cores (sm_80 or later, UNIAUDIO_CUDA_NO_TENSOR_CORES unset); running exact");
    }
    Ok(gpu)
}

impl AnyBackend {
    /// Opens `kind`. `precision` applies where the backend has reduced-precision kernels
    /// (the CPU with AVX512-BF16, CUDA with tensor cores, wgpu with SHADER_F16); elsewhere
    /// `Fast` runs as `Exact` (with a note on stderr from the GPUs).
    /// `Auto` picks CUDA, else a hardware GPU through wgpu, else the CPU, among the
    /// backends this build has.
    pub fn open(kind: BackendKind, precision: Precision) -> Result<AnyBackend> {
        match kind {
            BackendKind::Cpu => Ok(AnyBackend::Cpu(Cpu::with_precision(precision))),
            #[cfg(feature = "wgpu")]
            BackendKind::Wgpu => Ok(AnyBackend::Wgpu(chosen(open_wgpu(precision).map_err(|e| Error::Backend(format!("--backend wgpu: {e}")))?, precision))),
            #[cfg(feature = "cuda")]
            BackendKind::Cuda => Ok(AnyBackend::Cuda(open_cuda(precision).map_err(|e| Error::Backend(format!("--backend cuda: {e}")))?)),
            #[cfg(not(feature = "wgpu"))]
            BackendKind::Wgpu => Err(not_built("wgpu")),
            #[cfg(not(feature = "cuda"))]
            BackendKind::Cuda => Err(not_built("cuda")),
            // CUDA first; a software rasteriser (lavapipe, WARP) is slower than the CPU backend.
            BackendKind::Auto => {
                #[cfg(feature = "cuda")]
                if let Ok(gpu) = open_cuda(precision) {
                    return Ok(AnyBackend::Cuda(gpu));
                }
                #[cfg(feature = "wgpu")]
                if let Ok(gpu) = open_wgpu(precision) {
                    if !gpu.is_software() {
                        return Ok(AnyBackend::Wgpu(chosen(gpu, precision)));
                    }
                }
                Ok(AnyBackend::Cpu(Cpu::with_precision(precision)))
            }
        }
    }

    /// The backend in words: device, threads, instruction set, precision.
    pub fn describe(&self) -> String {
        match self {
            AnyBackend::Cpu(c) => format!("cpu: {} threads, {}, {} precision", c.threads(), c.isa().name(), c.precision().name()),
            #[cfg(feature = "wgpu")]
            AnyBackend::Wgpu(g) => format!("wgpu: {}", g.describe()),
            #[cfg(feature = "cuda")]
            AnyBackend::Cuda(g) => format!("cuda: {}", g.describe()),
        }
    }
}
