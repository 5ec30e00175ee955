//! Per-thread scratch buffers for kernels that need a few hundred KiB per call (packed
//! rows of x, attention score blocks). Allocated fresh, such buffers are mapped pages
//! the kernel must fault in and zero on every call, which cost the blocked attention
//! about a sixth of its time; reused, they stay resident.

use std::cell::RefCell;

thread_local! {
    static POOL: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
}

/// Buffers kept per thread (a call nests at most a few: attention's blocks around the
/// GEMM's packed rows).
const KEPT: usize = 4;
/// The largest buffer kept (4 MiB): larger ones (a long GEMM pass) are freed, so a pool
/// holds at most 16 MiB per thread; their products are long enough to amortise the pages.
const KEPT_LEN: usize = 1 << 20;

/// A buffer of `len` floats from this thread's pool, its contents left as they were (for
/// outputs the caller overwrites whole: zeroing a score block cost as much as its softmax).
pub fn take_for_overwrite(len: usize) -> Vec<f32> {
    let mut buf = pooled();
    buf.resize(len, 0.0);
    buf
}

/// This thread's most recently returned buffer, or a new empty one.
fn pooled() -> Vec<f32> {
    POOL.with(|p| p.borrow_mut().pop()).unwrap_or_default()
}

/// Returns a buffer to this thread's pool (a full pool drops it).
pub fn give(buf: Vec<f32>) {
    POOL.with(|p| {
        let mut pool = p.borrow_mut();
        if pool.len() < KEPT && buf.capacity() <= KEPT_LEN {
            pool.push(buf);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_reused_at_the_requested_length() {
        let mut a = take_for_overwrite(1000);
        a.iter_mut().for_each(|v| *v = 7.0);
        let ptr = a.as_ptr();
        give(a);
        let b = take_for_overwrite(300);
        assert_eq!(b.as_ptr(), ptr, "the buffer is reused");
        assert_eq!(b.len(), 300);
        // Nested use takes a second buffer rather than sharing one.
        let c = take_for_overwrite(10);
        assert_ne!(c.as_ptr(), b.as_ptr());
        give(b);
        give(c);
        let d = take_for_overwrite(2000);
        assert_eq!(d.len(), 2000, "any length, whatever the buffer held");
        give(d);
    }
}
