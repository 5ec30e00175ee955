//! CUDA device buffers: one allocation per tensor, shared by views.

use std::sync::Arc;

use cudarc::driver::CudaSlice;

use crate::DeviceBuffer;

#[derive(Clone)]
pub struct CudaBuffer(pub(crate) Arc<Inner>);

pub(crate) struct Inner {
    pub slice: CudaSlice<u8>,
    /// Device address of byte 0 (kernels take raw addresses).
    pub ptr: u64,
}

impl DeviceBuffer for CudaBuffer {
    fn same_storage(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
    fn len_bytes(&self) -> usize {
        self.0.slice.len()
    }
}
