//! Heap bytes aligned to 64 (a cache line, and enough for any SIMD load), recycled: freed
//! allocations of activation size are kept (`recycle`) for the next allocation of the same
//! length, since inference allocates the same shapes op after op and a fresh allocation
//! costs a page fault and a kernel page clear per 4 KiB touched.

use std::alloc::{alloc, alloc_zeroed, Layout};
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
        if let Some(ptr) = recycle::take(len) {
            // SAFETY: a recycled allocation of exactly `len` bytes, owned from here on.
            unsafe { ptr.as_ptr().write_bytes(0, len) };
            return Some(AlignedBytes { ptr, len });
        }
        let layout = Layout::from_size_align(len, ALIGN).ok()?;
        // SAFETY: layout has non-zero size.
        let ptr = NonNull::new(unsafe { alloc_zeroed(layout) })?;
        Some(AlignedBytes { ptr, len })
    }

    /// A copy of `bytes` (written once, not zeroed first).
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        let len = bytes.len();
        if len == 0 {
            return Self::zeroed(0);
        }
        let ptr = match recycle::take(len) {
            Some(p) => p,
            None => {
                let layout = Layout::from_size_align(len, ALIGN).ok()?;
                // SAFETY: layout has non-zero size.
                NonNull::new(unsafe { alloc(layout) })?
            }
        };
        // SAFETY: `ptr` holds `len` writable bytes that do not overlap `bytes`; every byte
        // is written before the slice is ever read.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), ptr.as_ptr(), len) };
        Some(AlignedBytes { ptr, len })
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
            recycle::give(self.ptr, self.len);
        }
    }
}

/// Freed allocations kept for reuse, by exact length, most recent last; the oldest are
/// released once more than `KEPT_BYTES` are kept.
mod recycle {
    use std::alloc::{dealloc, Layout};
    use std::ptr::NonNull;
    use std::sync::Mutex;

    use super::ALIGN;

    /// Smaller allocations are left to the allocator, which reuses them itself.
    const MIN_LEN: usize = 64 << 10;
    /// Larger ones (weights copied out of a file, say) are released at once.
    const MAX_LEN: usize = 256 << 20;
    /// The most kept in all.
    const KEPT_BYTES: usize = 512 << 20;

    struct Block(NonNull<u8>, usize);
    // SAFETY: a kept block is owned by the pool alone.
    unsafe impl Send for Block {}

    static KEPT: Mutex<(Vec<Block>, usize)> = Mutex::new((Vec::new(), 0));

    fn release(ptr: NonNull<u8>, len: usize) {
        // SAFETY: allocated by `AlignedBytes` with exactly this layout, owned by the caller.
        unsafe { dealloc(ptr.as_ptr(), Layout::from_size_align_unchecked(len, ALIGN)) }
    }

    /// A kept allocation of exactly `len` bytes (contents unspecified).
    pub(super) fn take(len: usize) -> Option<NonNull<u8>> {
        if !(MIN_LEN..=MAX_LEN).contains(&len) {
            return None;
        }
        let mut kept = KEPT.lock().unwrap_or_else(|p| p.into_inner());
        let i = kept.0.iter().rposition(|b| b.1 == len)?;
        kept.1 -= len;
        Some(kept.0.remove(i).0)
    }

    /// Keeps or releases a freed allocation of `len` bytes.
    pub(super) fn give(ptr: NonNull<u8>, len: usize) {
        if !(MIN_LEN..=MAX_LEN).contains(&len) {
            return release(ptr, len);
        }
        let mut evicted = Vec::new();
        {
            let mut kept = KEPT.lock().unwrap_or_else(|p| p.into_inner());
            kept.0.push(Block(ptr, len));
            kept.1 += len;
            while kept.1 > KEPT_BYTES {
                let oldest = kept.0.remove(0);
                kept.1 -= oldest.1;
                evicted.push(oldest);
            }
        }
        for b in evicted {
            release(b.0, b.1);
        }
    }

    #[cfg(test)]
    mod tests {
        use super::super::AlignedBytes;

        #[test]
        fn a_recycled_allocation_comes_back_zeroed_or_copied() {
            let len = 3 * super::MIN_LEN + 64;
            let mut a = AlignedBytes::zeroed(len).unwrap();
            a.as_mut_slice().fill(0xa5);
            let first = a.as_ptr();
            drop(a);
            // Another test thread may take it first; either way the contents must be fresh.
            let b = AlignedBytes::zeroed(len).unwrap();
            assert!(b.as_slice().iter().all(|&x| x == 0), "a recycled allocation was not zeroed");
            assert_eq!(b.as_ptr() as usize % super::ALIGN, 0);
            let reused = b.as_ptr() == first;
            drop(b);
            let src: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let c = AlignedBytes::from_slice(&src).unwrap();
            assert_eq!(c.as_slice(), &src[..]);
            println!("recycled: {reused}");
        }

        #[test]
        fn the_pool_keeps_at_most_its_budget() {
            // Fresh zeroed blocks of this size are untouched mappings: no memory is used.
            let len = 32 << 20;
            let blocks: Vec<AlignedBytes> = (0..super::KEPT_BYTES / len + 2).map(|_| AlignedBytes::zeroed(len).unwrap()).collect();
            drop(blocks);
            let kept = super::KEPT.lock().unwrap().1;
            assert!(kept <= super::KEPT_BYTES, "{kept} bytes kept");
        }
    }
}
