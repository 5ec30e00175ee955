//! The KV budget: every sequence's caches are sized to what its request can reach
//! (prompt + max_steps − 1 positions, in blocks), and the sum held by running sequences
//! never exceeds the budget. A request that does not fit now waits; one that could never
//! fit is refused when submitted.

use crate::config::LmConfig;
use crate::forward::cache_bytes;
use crate::generate::GenerateOptions;

/// Batch rows a request decodes per step: two with classifier-free guidance.
pub fn rows_for(opts: &GenerateOptions) -> usize {
    1 + opts.cfg_scale.is_some() as usize
}

/// Positions are reserved in blocks of this many.
pub const BLOCK_POSITIONS: usize = 64;

#[derive(Debug)]
pub struct KvPool {
    budget: usize,
    used: usize,
    peak: usize,
}

impl KvPool {
    pub fn new(budget: usize) -> Self {
        KvPool { budget, used: 0, peak: 0 }
    }

    /// The cache positions a request of `needed` positions reserves.
    pub fn capacity_for(config: &LmConfig, needed: usize) -> usize {
        needed.next_multiple_of(BLOCK_POSITIONS).min(config.max_seq_len).max(needed)
    }

    /// What a request reserves: its cache positions and the bytes of all its rows' caches
    /// (a guided request keeps a second, unconditional sequence).
    pub fn reservation(config: &LmConfig, prompt_len: usize, opts: &GenerateOptions) -> (usize, usize) {
        let capacity = KvPool::capacity_for(config, prompt_len + opts.max_steps - 1);
        (capacity, KvPool::bytes_for(config, capacity, rows_for(opts)))
    }

    /// Bytes of `sequences` caches of `capacity` positions each.
    pub fn bytes_for(config: &LmConfig, capacity: usize, sequences: usize) -> usize {
        cache_bytes(config, capacity) * sequences
    }

    pub fn try_reserve(&mut self, bytes: usize) -> bool {
        if self.used + bytes > self.budget {
            return false;
        }
        self.used += bytes;
        self.peak = self.peak.max(self.used);
        true
    }

    pub fn release(&mut self, bytes: usize) {
        self.used = self.used.saturating_sub(bytes);
    }

    pub fn budget(&self) -> usize {
        self.budget
    }

    pub fn used(&self) -> usize {
        self.used
    }

    /// The most bytes held at once so far.
    pub fn peak(&self) -> usize {
        self.peak
    }
}
