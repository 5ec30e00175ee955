//! Work issued from a thread of the rayon pool: whole decode steps (`in_pool`) and the
//! backend's op lock taken from a pool thread (`lock_from_pool`).

use std::sync::{Condvar, Mutex, MutexGuard, TryLockError};
use std::time::Duration;

/// Runs `f` on a thread of the CPU backend's pool (inline when already on one). An op
/// called from a pool thread splits its work with local fork-joins (well under a
/// microsecond); called from any other thread, each op is a cross-thread hand-over (tens
/// of microseconds), which adds up over the hundreds of small ops of one decode step.
/// Callers from outside the pool take turns in arrival order.
pub fn in_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if rayon::current_thread_index().is_some() {
        return f();
    }
    // One caller's work in the pool at a time: a pool thread waiting inside an op takes
    // queued jobs, and would run a second caller's whole step nested in that op (or, on
    // the same backend, wait forever for the lock the op holds). Later callers wait here.
    static TURNS: Turns = Turns::new();
    let _turn = TURNS.take();
    rayon::scope(|_| f())
}

/// A first-come, first-served lock: (tickets handed out, ticket being served).
struct Turns {
    tickets: Mutex<(u64, u64)>,
    next: Condvar,
}

struct Turn<'a>(&'a Turns);

impl Turns {
    const fn new() -> Self {
        Turns { tickets: Mutex::new((0, 0)), next: Condvar::new() }
    }

    fn take(&self) -> Turn<'_> {
        let mut t = self.tickets.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mine = t.0;
        t.0 += 1;
        while t.1 != mine {
            t = self.next.wait(t).unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        Turn(self)
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.0.tickets.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).1 += 1;
        self.0.next.notify_all();
    }
}

/// Takes `lock` on a pool thread without blocking it: the holder may be waiting for the
/// pool to run its op, and this thread may be all the pool has. Meanwhile it runs the
/// pool's queued jobs, and naps briefly once there are none (the holder is doing serial
/// work, a copy or a small op).
pub(super) fn lock_from_pool(lock: &Mutex<()>) -> MutexGuard<'_, ()> {
    let mut idle = 0u32;
    loop {
        match lock.try_lock() {
            Ok(guard) => return guard,
            Err(TryLockError::Poisoned(poisoned)) => return poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => {
                if rayon::yield_now() == Some(rayon::Yield::Executed) {
                    idle = 0;
                } else if idle < 64 {
                    idle += 1;
                    std::thread::yield_now();
                } else {
                    std::thread::sleep(Duration::from_micros(20));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Waiting callers are served in the order they arrived.
    #[test]
    fn turns_are_served_in_arrival_order() {
        let turns = Turns::new();
        let served = Mutex::new(Vec::new());
        let first = turns.take();
        std::thread::scope(|s| {
            for i in 0..4 {
                // Each waiter holds ticket i + 1 before the next one starts.
                let (turns, served) = (&turns, &served);
                s.spawn(move || {
                    let _t = turns.take();
                    served.lock().unwrap().push(i);
                });
                while turns.tickets.lock().unwrap().0 < i as u64 + 2 {
                    std::thread::yield_now();
                }
            }
            assert!(served.lock().unwrap().is_empty(), "served while the first turn was held");
            drop(first);
        });
        assert_eq!(*served.lock().unwrap(), vec![0, 1, 2, 3]);
    }
}
