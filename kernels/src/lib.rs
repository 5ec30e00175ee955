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

macro_rules! cuda {
    ($($name:literal),* $(,)?) => {
        &[$(Source { name: $name, text: include_str!(concat!("../cuda/", $name, ".cu")) }),*]
    };
}

/// WGSL sources (`kernels/wgsl/`), one per op family.
pub const WGSL: &[Source] = wgsl!["weights", "embed", "rms_norm", "matmul", "gate_up", "rope", "kv_append", "attention", "elementwise", "softmax", "sample", "activations", "pointwise", "layer_norm", "conv", "gemm", "group_norm", "rvq_encode", "rel_pos_attention", "peak"];

/// CUDA C++ sources (`kernels/cuda/`), compiled to PTX at first use, each with
/// `CUDA_COMMON` prepended.
pub const CUDA: &[Source] = cuda!["embed", "rms_norm", "matmul", "gemm_tc", "attention", "attention_tc", "elementwise", "sample", "conv", "group_norm", "rvq_encode", "rel_pos_attention"];

/// Helpers every CUDA source uses (`kernels/cuda/common.cuh`).
pub const CUDA_COMMON: &str = include_str!("../cuda/common.cuh");

pub fn wgsl(name: &str) -> Option<&'static Source> {
    WGSL.iter().find(|s| s.name == name)
}

pub fn cuda(name: &str) -> Option<&'static Source> {
    CUDA.iter().find(|s| s.name == name)
}

#[cfg(test)]
mod tests {
    /// Every source file on disk is registered (CI compile-checks the directory; the
    /// runtime loads the registry).
    #[test]
    fn every_cuda_source_is_registered() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("cuda");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter_map(|n| n.strip_suffix(".cu").map(String::from))
            .collect();
        on_disk.sort();
        let mut registered: Vec<String> = super::CUDA.iter().map(|s| s.name.to_string()).collect();
        registered.sort();
        assert_eq!(on_disk, registered);
    }
}
