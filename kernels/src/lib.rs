//! Kernel sources, embedded at build time. `wgsl/<op>.wgsl` and `cuda/<op>.cu` use the
//! same stem as the runtime op they implement (`rms_norm`, `matmul`, ...); the GPU
//! backends look sources up here by that stem.

/// One embedded kernel source file.
#[derive(Clone, Copy, Debug)]
pub struct Source {
    /// Op stem, e.g. "rms_norm".
    pub name: &'static str,
    pub text: &'static str,
}

/// WGSL sources (`kernels/wgsl/`), one per op family.
pub const WGSL: &[Source] = &[];

/// CUDA C++ sources (`kernels/cuda/`), compiled to PTX at first use.
pub const CUDA: &[Source] = &[];

pub fn wgsl(name: &str) -> Option<&'static Source> {
    WGSL.iter().find(|s| s.name == name)
}

pub fn cuda(name: &str) -> Option<&'static Source> {
    CUDA.iter().find(|s| s.name == name)
}
