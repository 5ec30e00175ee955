//! Heap bytes aligned to 64 (a cache line, and enough for any SIMD load), recycled: freed
//! allocations of activation size are kept (`recycle`) for the next allocation of the same
//! length, since inference allocates the same shapes op after op and a fresh allocation
//! costs a page fault and a kernel page clear per 4 KiB touched. Allocations of
//! `huge_pages::MIN_BYTES` or more (weights, KV caches) are aligned to a huge page and ask
//! for huge pages before they are first touched.

use std::alloc::{alloc, Layout};
use std::ptr::NonNull;

use crate::huge_pages;

pub const ALIGN: usize = 64;

/// Whether an allocation of `len` bytes asks for huge pages (Linux only: elsewhere the
/// alignment would only waste address space).
fn huge(len: usize) -> bool {
    cfg!(target_os = "linux") && len >= huge_pages::MIN_BYTES
}

/// The layout of every allocation of `len` (> 0) bytes, for allocating and freeing alike.
fn layout(len: usize) -> Option<Layout> {
    Layout::from_size_align(len, if huge(len) { huge_pages::SIZE } else { ALIGN }).ok()
}

/// A fresh, untouched allocation of `len` (> 0) bytes, advised for huge pages when large.
fn allocate(len: usize) -> Option<NonNull<u8>> {
    let layout = layout(len)?;
    // SAFETY: layout has non-zero size.
    let ptr = NonNull::new(unsafe { alloc(layout) })?;
    if huge(len) {
        huge_pages::advise(ptr.as_ptr(), len);
    }
    Some(ptr)
}

pub struct AlignedBytes {
    ptr: NonNull<u8>,
    len: usize,
    /// Returned to the recycler when dropped (activations; not copies of file data).
    recycled: bool,
}

// SAFETY: AlignedBytes owns its allocation exclusively, like a Box<[u8]>.
unsafe impl Send for AlignedBytes {}
unsafe impl Sync for AlignedBytes {}

impl AlignedBytes {
    /// A zeroed allocation, recycled when dropped; `None` if the size is too large or the
    /// allocation fails.
    pub fn zeroed(len: usize) -> Option<Self> {
        if len == 0 {
            // A dangling, aligned pointer is valid for zero-length slices.
            return Some(AlignedBytes { ptr: NonNull::new(ALIGN as *mut u8)?, len: 0, recycled: false });
        }
        if let Some(ptr) = recycle::KEPT.take(len) {
            // SAFETY: a recycled allocation of exactly `len` bytes, owned from here on.
            unsafe { ptr.as_ptr().write_bytes(0, len) };
            return Some(AlignedBytes { ptr, len, recycled: true });
        }
        let ptr = allocate(len)?;
        // SAFETY: a fresh allocation of `len` bytes.
        unsafe { ptr.as_ptr().write_bytes(0, len) };
        Some(AlignedBytes { ptr, len, recycled: true })
    }

    /// A copy of `bytes` (written once, not zeroed first), released when dropped.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        let len = bytes.len();
        if len == 0 {
            return Self::zeroed(0);
        }
        let ptr = allocate(len)?;
        // SAFETY: `ptr` holds `len` writable bytes that do not overlap `bytes`; every byte
        // is written before the slice is ever read.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), ptr.as_ptr(), len) };
        Some(AlignedBytes { ptr, len, recycled: false })
    }

    /// `n` f32 values `value(i)`, written in parallel straight into a fresh allocation (so
    /// its pages are first touched by the threads that will stream them, and never zeroed
    /// first); released when dropped.
    pub fn f32s_filled_in_parallel(n: usize, value: impl Fn(usize) -> f32 + Sync) -> Option<Self> {
        use rayon::prelude::*;
        let len = n.checked_mul(4)?;
        if len == 0 {
            return Self::zeroed(0);
        }
        let ptr = allocate(len)?;
        let base = ptr.as_ptr() as usize;
        (0..n).into_par_iter().with_min_len(1 << 14).for_each(|i| {
            // SAFETY: i < n, so the 4 bytes at 4i lie inside the allocation (aligned to 64);
            // each is written once, by one task, before the bytes are ever read.
            unsafe { (base as *mut f32).add(i).write(value(i)) }
        });
        Some(AlignedBytes { ptr, len, recycled: false })
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
        if self.len == 0 {
            return;
        }
        if self.recycled {
            recycle::KEPT.give(self.ptr, self.len);
        } else {
            recycle::release(self.ptr, self.len);
        }
    }
}

/// Zeroed plain values on 64-byte aligned, recycled memory: operands whose rows a kernel
/// loads a cache line at a time (AMX tiles).
pub struct AlignedVec<T: bytemuck::Pod> {
    bytes: AlignedBytes,
    _values: std::marker::PhantomData<T>,
}

impl<T: bytemuck::Pod> AlignedVec<T> {
    /// `len` zeros; panics if the memory cannot be had (as `vec!` does).
    pub fn zeroed(len: usize) -> Self {
        let bytes = len.checked_mul(std::mem::size_of::<T>()).and_then(AlignedBytes::zeroed);
        AlignedVec { bytes: bytes.unwrap_or_else(|| panic!("cannot allocate {len} values of {} bytes", std::mem::size_of::<T>())), _values: std::marker::PhantomData }
    }
}

impl<T: bytemuck::Pod> Default for AlignedVec<T> {
    /// No values (and no allocation).
    fn default() -> Self {
        AlignedVec::zeroed(0)
    }
}

impl<T: bytemuck::Pod> std::ops::Deref for AlignedVec<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        bytemuck::cast_slice(self.bytes.as_slice())
    }
}

impl<T: bytemuck::Pod> std::ops::DerefMut for AlignedVec<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        bytemuck::cast_slice_mut(self.bytes.as_mut_slice())
    }
}

/// Freed allocations kept for reuse, by exact length, most recent last; the oldest are
/// released once more than the budget is kept.
mod recycle {
    use std::alloc::dealloc;
    use std::ptr::NonNull;
    use std::sync::Mutex;

    /// The process's recycler: allocations of 64 KiB (smaller ones the allocator reuses
    /// itself) to 256 MiB, up to `kept_budget` bytes kept.
    pub(super) static KEPT: Recycler = Recycler::new(64 << 10, 256 << 20, kept_budget);

    /// An eighth of the memory this process may use (the machine's, or its cgroup's limit
    /// when lower), from 512 MiB to 2 GiB. Oldest-first eviction reuses nothing when one
    /// pass of a model cycles through more than the budget: the codec encoder's 30 s chunk
    /// cycles through about 1.3 GB of activations, so 512 MiB kept left it 4.0 GB of fresh,
    /// kernel-zeroed pages per 30 s, against 1.3 GB with 2 GiB (machines from about 11 GiB).
    fn kept_budget() -> usize {
        static BUDGET: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
        *BUDGET.get_or_init(|| budget_for(memory_limit()))
    }

    fn budget_for(memory: Option<usize>) -> usize {
        memory.map_or(512 << 20, |m| (m / 8).clamp(512 << 20, 2 << 30))
    }

    /// MemTotal, or the cgroup's memory limit (v2, then v1) when lower.
    fn memory_limit() -> Option<usize> {
        let read = |path: &str| std::fs::read_to_string(path).ok();
        let total = read("/proc/meminfo").as_deref().and_then(meminfo_total);
        let cgroup = read("/sys/fs/cgroup/memory.max").or_else(|| read("/sys/fs/cgroup/memory/memory.limit_in_bytes"));
        match (total, cgroup.as_deref().and_then(cgroup_limit)) {
            (Some(t), Some(c)) => Some(t.min(c)),
            (t, c) => t.or(c),
        }
    }

    /// MemTotal of /proc/meminfo's text, in bytes.
    fn meminfo_total(info: &str) -> Option<usize> {
        let kb: usize = info.lines().find_map(|l| l.strip_prefix("MemTotal:"))?.trim().strip_suffix("kB")?.trim().parse().ok()?;
        kb.checked_mul(1024)
    }

    /// A cgroup memory limit file's bytes; `None` for "max" (no limit).
    fn cgroup_limit(text: &str) -> Option<usize> {
        text.trim().parse().ok()
    }

    struct Block(NonNull<u8>, usize);
    // SAFETY: a kept block is owned by the recycler alone.
    unsafe impl Send for Block {}

    pub(super) struct Recycler {
        min_len: usize,
        max_len: usize,
        budget: fn() -> usize,
        /// Kept blocks, oldest first, and their total length.
        kept: Mutex<(Vec<Block>, usize)>,
    }

    /// Frees an allocation made with `AlignedBytes`'s layout for `len` bytes.
    pub(super) fn release(ptr: NonNull<u8>, len: usize) {
        let layout = super::layout(len).expect("the layout it was allocated with");
        // SAFETY: allocated by `AlignedBytes` with exactly this layout, owned by the caller.
        unsafe { dealloc(ptr.as_ptr(), layout) }
    }

    impl Recycler {
        pub(super) const fn new(min_len: usize, max_len: usize, budget: fn() -> usize) -> Recycler {
            Recycler { min_len, max_len, budget, kept: Mutex::new((Vec::new(), 0)) }
        }

        fn keeps(&self, len: usize) -> bool {
            (self.min_len..=self.max_len).contains(&len)
        }

        /// A kept allocation of exactly `len` bytes (contents unspecified).
        pub(super) fn take(&self, len: usize) -> Option<NonNull<u8>> {
            if !self.keeps(len) {
                return None;
            }
            let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
            let i = kept.0.iter().rposition(|b| b.1 == len)?;
            kept.1 -= len;
            Some(kept.0.remove(i).0)
        }

        /// Keeps or releases a freed allocation of `len` bytes.
        pub(super) fn give(&self, ptr: NonNull<u8>, len: usize) {
            if !self.keeps(len) {
                return release(ptr, len);
            }
            let mut evicted = Vec::new();
            let budget = (self.budget)();
            {
                let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
                kept.0.push(Block(ptr, len));
                kept.1 += len;
                while kept.1 > budget {
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
        fn kept_lengths(&self) -> Vec<usize> {
            self.kept.lock().unwrap().0.iter().map(|b| b.1).collect()
        }
    }

    #[cfg(test)]
    mod tests {
        use super::super::{AlignedBytes, ALIGN};
        use super::*;

        fn block(len: usize) -> NonNull<u8> {
            // SAFETY: non-zero size.
            NonNull::new(unsafe { std::alloc::alloc(super::super::layout(len).unwrap()) }).unwrap()
        }

        /// Every length, small and recycled, starts a cache line and reads as zeros,
        /// also after an earlier one of its length was written and dropped.
        #[test]
        fn aligned_vecs_start_cache_lines_and_hold_zeros() {
            for len in [1usize, 17, 300, 70_000] {
                for _ in 0..2 {
                    let mut v = super::super::AlignedVec::<u32>::zeroed(len);
                    assert_eq!(v.len(), len);
                    assert!((v.as_ptr() as usize).is_multiple_of(ALIGN), "{len} values");
                    assert!(v.iter().all(|&x| x == 0), "{len} values");
                    v.fill(7);
                }
            }
        }

        #[test]
        fn the_recycler_reuses_by_length_and_releases_the_oldest_over_budget() {
            let r = Recycler::new(100, 1000, || 2000);
            let (a, b) = (block(600), block(700));
            r.give(a, 600);
            r.give(b, 700);
            r.give(block(50), 50); // below the minimum: released, not kept
            r.give(block(1500), 1500); // above the maximum
            assert_eq!(r.kept_lengths(), [600, 700]);
            assert_eq!(r.take(650), None, "only exact lengths are reused");
            assert_eq!(r.take(700), Some(b));
            r.give(b, 700);
            r.give(block(800), 800); // 2100 > 2000: the oldest (600) goes
            assert_eq!(r.kept_lengths(), [700, 800]);
            assert!(r.take(600).is_none());
            for len in [700, 800] {
                release(r.take(len).unwrap(), len);
            }
            assert!(r.kept_lengths().is_empty());
        }

        #[test]
        fn the_budget_is_an_eighth_of_the_memory_limit_within_bounds() {
            let meminfo = "MemTotal:       24576000 kB\nMemFree:         1000 kB\n";
            assert_eq!(meminfo_total(meminfo), Some(24_576_000 * 1024));
            assert_eq!(meminfo_total("MemFree: 1 kB\n"), None);
            assert_eq!(cgroup_limit("max\n"), None);
            assert_eq!(cgroup_limit("4294967296\n"), Some(4 << 30));
            assert_eq!(budget_for(Some(4 << 30)), 512 << 20);
            assert_eq!(budget_for(Some(8 << 30)), 1 << 30);
            assert_eq!(budget_for(Some(64 << 30)), 2 << 30);
            assert_eq!(budget_for(None), 512 << 20);
            assert!(memory_limit().is_none_or(|m| m > 64 << 20), "{:?}", memory_limit());
        }

        #[test]
        fn a_recycled_allocation_comes_back_zeroed_and_copies_are_exact() {
            let len = (64 << 10) * 3 + 64;
            let mut a = AlignedBytes::zeroed(len).unwrap();
            a.as_mut_slice().fill(0xa5);
            drop(a);
            // Most likely the same block (another test thread may take it): fresh either way.
            let b = AlignedBytes::zeroed(len).unwrap();
            assert!(b.as_slice().iter().all(|&x| x == 0), "a recycled allocation was not zeroed");
            assert_eq!(b.as_ptr() as usize % ALIGN, 0);
            let src: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let c = AlignedBytes::from_slice(&src).unwrap();
            assert_eq!(c.as_slice(), &src[..]);
            assert_eq!(c.as_ptr() as usize % ALIGN, 0);
        }

        #[test]
        fn parallel_fills_write_every_value_in_place() {
            // Past the huge-page size and not a multiple of any chunk, then empty.
            for n in [(crate::huge_pages::MIN_BYTES / 4) + 12_345, 3, 0] {
                let a = AlignedBytes::f32s_filled_in_parallel(n, |i| i as f32 * 0.5 - 7.0).unwrap();
                assert_eq!(a.len(), 4 * n);
                assert_eq!(a.as_ptr() as usize % ALIGN, 0);
                let values: &[f32] = bytemuck::cast_slice(a.as_slice());
                assert!(values.iter().enumerate().all(|(i, &v)| v == i as f32 * 0.5 - 7.0), "a value is missing or misplaced");
            }
        }
    }
}
