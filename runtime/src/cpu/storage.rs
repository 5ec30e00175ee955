//! CPU buffers: owned aligned memory, or a memory-mapped weight used in place.

use std::sync::Arc;

use crate::aligned::AlignedBytes;
use crate::weights::WeightView;
use crate::DeviceBuffer;

#[derive(Clone)]
pub struct CpuBuffer(pub(crate) Arc<CpuStorage>);

pub(crate) enum CpuStorage {
    Owned(AlignedBytes),
    Weight(WeightView),
}

impl CpuBuffer {
    pub(crate) fn owned(bytes: AlignedBytes) -> Self {
        CpuBuffer(Arc::new(CpuStorage::Owned(bytes)))
    }

    pub(crate) fn weight(view: WeightView) -> Self {
        CpuBuffer(Arc::new(CpuStorage::Weight(view)))
    }

    pub(crate) fn base_ptr(&self) -> *const u8 {
        match &*self.0 {
            CpuStorage::Owned(b) => b.as_ptr(),
            CpuStorage::Weight(w) => w.bytes().as_ptr(),
        }
    }

    /// Writable base pointer; `None` for mapped weights, which are read-only.
    pub(crate) fn base_ptr_mut(&self) -> Option<*mut u8> {
        match &*self.0 {
            CpuStorage::Owned(b) => Some(b.as_ptr()),
            CpuStorage::Weight(_) => None,
        }
    }
}

impl DeviceBuffer for CpuBuffer {
    fn same_storage(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
    fn len_bytes(&self) -> usize {
        match &*self.0 {
            CpuStorage::Owned(b) => b.len(),
            CpuStorage::Weight(w) => w.bytes().len(),
        }
    }
}
