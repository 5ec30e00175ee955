//! Software prefetches: hints that bring a slice's cache lines closer before a kernel
//! reads them, where the hardware's stream detection cannot see the next read coming.

/// Bytes per cache line.
const LINE: usize = 64;

/// Asks for `data`'s cache lines into L1 (operands of the next few microseconds).
pub(super) fn to_l1<T>(data: &[T]) {
    lines::<true, T>(data);
}

/// Asks for `data`'s cache lines into L2 (operands a later sweep starts on).
pub(super) fn to_l2<T>(data: &[T]) {
    lines::<false, T>(data);
}

fn lines<const L1: bool, T>(data: &[T]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0, _MM_HINT_T1};
        let (start, len) = (data.as_ptr() as *const i8, std::mem::size_of_val(data));
        for offset in (0..len).step_by(LINE) {
            // SAFETY: a prefetch is a hint: it never faults and changes nothing a program
            // sees; the address lies within `data`.
            unsafe {
                match L1 {
                    true => _mm_prefetch::<{ _MM_HINT_T0 }>(start.add(offset)),
                    false => _mm_prefetch::<{ _MM_HINT_T1 }>(start.add(offset)),
                }
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = data;
}
