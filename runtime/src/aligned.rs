//! Heap bytes aligned to 64 (a cache line, and enough for any SIMD load).

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::ptr::NonNull;

pub const ALIGN: usize = 64;

pub struct AlignedBytes {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: AlignedBytes owns its allocation exclusively, like a Box<[u8]>.
unsafe impl Send for AlignedBytes {}
unsafe impl Sync for AlignedBytes {}

impl AlignedBytes {
    /// A zeroed allocation; `None` if the size is too large or the allocation fails.
    pub fn zeroed(len: usize) -> Option<Self> {
        if len == 0 {
            // A dangling, aligned pointer is valid for zero-length slices.
            return Some(AlignedBytes { ptr: NonNull::new(ALIGN as *mut u8)?, len: 0 });
        }
        let layout = Layout::from_size_align(len, ALIGN).ok()?;
        // SAFETY: layout has non-zero size.
        let ptr = NonNull::new(unsafe { alloc_zeroed(layout) })?;
        Some(AlignedBytes { ptr, len })
    }

    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        let mut out = Self::zeroed(bytes.len())?;
        out.as_mut_slice().copy_from_slice(bytes);
        Some(out)
    }

    pub fn len(&self) -> usize {
        self.len
    }
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: ptr is valid for len bytes (or dangling with len 0).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as above, and &mut self gives exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for AlignedBytes {
    fn drop(&mut self) {
        if self.len != 0 {
            // SAFETY: allocated in `zeroed` with exactly this layout.
            unsafe { dealloc(self.ptr.as_ptr(), Layout::from_size_align_unchecked(self.len, ALIGN)) }
        }
    }
}
