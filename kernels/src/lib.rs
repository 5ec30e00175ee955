//! Kernel sources, embedded at build time. `wgsl/<op>.wgsl` and `cuda/<op>.cu` use the
//! same stem as the runtime op they implement (`rms_norm`, `matmul`, ...); the GPU
//! backends look sources up here by that stem. `weights` is an include, not a kernel.

/// One embedded kernel source file.
#[derive(Clone, Copy, Debug)]
pub struct Source {
    /// Stem, e.g. "rms_norm".
    pub name: &'static str,
    pub text: &'static str,
}

macro_rules! wgsl {
    ($($name:literal),* $(,)?) => {
        &[$(Source { name: $name, text: include_str!(concat!("../wgsl/", $name, ".wgsl")) }),*]
    };
}

/// WGSL sources (`kernels/wgsl/`), one per op family.
pub const WGSL: &[Source] = wgsl!["weights", "embed", "rms_norm", "matmul", "gate_up", "rope", "kv_append", "attention", "elementwise", "softmax", "sample", "activations", "linear", "pointwise", "layer_norm", "conv", "gemm"];

/// CUDA C++ sources (`kernels/cuda/`), compiled to PTX at first use.
pub const CUDA: &[Source] = &[];

pub fn wgsl(name: &str) -> Option<&'static Source> {
    WGSL.iter().find(|s| s.name == name)
}

pub fn cuda(name: &str) -> Option<&'static Source> {
    CUDA.iter().find(|s| s.name == name)
}
