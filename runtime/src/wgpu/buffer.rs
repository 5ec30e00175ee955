//! wgpu buffers. Sizes are padded to 4 bytes (WebGPU's copy and binding granularity).

use std::sync::Arc;

use crate::DeviceBuffer;

#[derive(Clone)]
pub struct WgpuBuffer(pub(crate) Arc<Inner>);

pub(crate) struct Inner {
    pub buffer: wgpu::Buffer,
    /// Bytes the tensor data occupies (the buffer may be padded beyond this).
    pub len: usize,
}

impl WgpuBuffer {
    pub(crate) fn raw(&self) -> &wgpu::Buffer {
        &self.0.buffer
    }
}

impl DeviceBuffer for WgpuBuffer {
    fn same_storage(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
    fn len_bytes(&self) -> usize {
        self.0.len
    }
}

/// Storage size for `len` data bytes: a multiple of 4, never zero.
pub(crate) fn padded(len: usize) -> u64 {
    (len.max(4).div_ceil(4) * 4) as u64
}
