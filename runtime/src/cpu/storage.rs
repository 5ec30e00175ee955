//! CPU buffers: owned aligned memory, or a memory-mapped weight used in place (with, for
//! weights of many-row products, a copy paired for the packed bf16 GEMM).

use std::sync::Arc;

use super::gemm_bf16::PairedWeight;
use crate::aligned::AlignedBytes;
use crate::weights::WeightView;
use crate::DeviceBuffer;

#[derive(Clone)]
pub struct CpuBuffer(pub(crate) Arc<CpuStorage>);

pub(crate) enum CpuStorage {
    Owned(AlignedBytes),
    Weight(WeightView),
    PairedWeight(WeightView, PairedWeight),
}

impl CpuBuffer {
    pub(crate) fn owned(bytes: AlignedBytes) -> Self {
        CpuBuffer(Arc::new(CpuStorage::Owned(bytes)))
    }

    pub(crate) fn weight(view: WeightView) -> Self {
        CpuBuffer(Arc::new(CpuStorage::Weight(view)))
    }

    pub(crate) fn paired_weight(view: WeightView, pairs: PairedWeight) -> Self {
        CpuBuffer(Arc::new(CpuStorage::PairedWeight(view, pairs)))
    }

    /// The paired copy of a weight, if it has one.
    pub(crate) fn pairs(&self) -> Option<&PairedWeight> {
        match &*self.0 {
            CpuStorage::PairedWeight(_, pairs) => Some(pairs),
            _ => None,
        }
    }

    pub(crate) fn base_ptr(&self) -> *const u8 {
        match &*self.0 {
            CpuStorage::Owned(b) => b.as_ptr(),
            CpuStorage::Weight(w) | CpuStorage::PairedWeight(w, _) => w.bytes().as_ptr(),
        }
    }

    /// Writable base pointer; `None` for mapped weights, which are read-only.
    pub(crate) fn base_ptr_mut(&self) -> Option<*mut u8> {
        match &*self.0 {
            CpuStorage::Owned(b) => Some(b.as_ptr()),
            CpuStorage::Weight(_) | CpuStorage::PairedWeight(..) => None,
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
            CpuStorage::Weight(w) | CpuStorage::PairedWeight(w, _) => w.bytes().len(),
        }
    }
}
