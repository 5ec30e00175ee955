//! Per-thread scratch buffers for kernels that need a few hundred KiB per call (packed
//! rows of x, attention score blocks, a convolution's im2col rows and outputs). Allocated
//! fresh, such buffers are mapped pages the kernel must fault in and zero on every call,
//! which cost the blocked attention about a sixth of its time; reused, they stay resident.
//! Their contents are unspecified (the callers overwrite them whole): a pooled buffer keeps
//! every element it ever held, so handing it out never clears it (zeroing a score block
//! cost as much as its softmax).

use std::cell::RefCell;
use std::ops::{Deref, DerefMut};

thread_local! {
    static POOL: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
}

/// Buffers kept per thread (a call nests at most a few: attention's blocks around the
/// GEMM's packed rows; a convolution's outputs, im2col rows and staging block).
const KEPT: usize = 4;
/// The largest buffer kept (4 MiB): larger ones (a long GEMM pass) are freed, so a pool
/// holds at most 16 MiB per thread; their products are long enough to amortise the pages.
pub(crate) const KEPT_LEN: usize = 1 << 20;

/// `len` floats from this thread's pool, back to the pool when dropped.
pub struct Scratch {
    /// Every element initialised; the caller sees the first `len`.
    buf: Vec<f32>,
    len: usize,
}

impl Deref for Scratch {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.buf[..self.len]
    }
}

impl DerefMut for Scratch {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.buf[..self.len]
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        POOL.with(|p| {
            let mut pool = p.borrow_mut();
            if pool.len() < KEPT && buf.capacity() <= KEPT_LEN {
                pool.push(buf);
            }
        });
    }
}

/// A buffer of `len` floats, contents unspecified: the pool's smallest that holds `len`
/// (so nested sizes do not trade buffers back and forth), else its largest grown to
/// `len` (only the new elements are written), else a new one.
pub fn take(len: usize) -> Scratch {
    let mut buf = POOL.with(|p| {
        let mut pool = p.borrow_mut();
        let fits = (0..pool.len()).filter(|&i| pool[i].len() >= len).min_by_key(|&i| pool[i].len());
        let pick = fits.or_else(|| (0..pool.len()).max_by_key(|&i| pool[i].len()));
        pick.map(|i| pool.swap_remove(i)).unwrap_or_default()
    });
    if buf.len() < len {
        // Exactly: a doubled capacity could pass the kept size and be freed on return.
        buf.reserve_exact(len - buf.len());
        buf.resize(len, 0.0);
    }
    Scratch { buf, len }
}

/// Fills every buffer in this thread's pool with NaN, so a test sees what a kernel leaves
/// unwritten.
#[cfg(test)]
pub fn poison() {
    POOL.with(|p| p.borrow_mut().iter_mut().for_each(|b| b.fill(f32::NAN)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_reused_at_the_requested_length() {
        let mut a = take(1000);
        a.fill(7.0);
        let ptr = a.as_ptr();
        drop(a);
        let b = take(300);
        assert_eq!((b.as_ptr(), b.len()), (ptr, 300), "the buffer is reused at the new length");
        // Nested use takes a second buffer rather than sharing one.
        let c = take(10);
        assert_ne!(c.as_ptr(), b.as_ptr());
        assert_eq!(c.len(), 10);
        drop((b, c));
        // The smallest buffer that fits is handed out, whichever came back last.
        let (big, small) = (take(1000), take(20));
        let small_ptr = small.as_ptr();
        drop((small, big));
        let fit = take(15);
        assert_eq!(fit.as_ptr(), small_ptr, "15 floats fit the 20-float buffer");
        let grown = take(2000);
        assert_eq!(grown.len(), 2000, "a request larger than any buffer grows the largest");
        drop((fit, grown));
    }

    #[test]
    fn poison_reaches_every_pooled_buffer() {
        drop((take(50), take(70)));
        poison();
        let (a, b) = (take(50), take(70));
        assert!(a.iter().chain(b.iter()).all(|v| v.is_nan()));
    }
}
