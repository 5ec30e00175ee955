//! Counter-based random numbers: a draw depends only on (seed, counter, index), so every
//! backend produces the same samples without sharing RNG state. 32-bit arithmetic only,
//! so WGSL (which has no u64) computes the same values.

/// A 32-bit integer hash with good avalanche (Wellons' "lowbias32").
#[inline(always)]
pub fn hash32(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x7feb_352d);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846c_a68b);
    x ^= x >> 16;
    x
}

/// The per-draw key of stream (seed, counter).
#[inline(always)]
pub fn stream_key(seed: u64, counter: u64) -> u32 {
    let k = hash32(seed as u32 ^ hash32((seed >> 32) as u32));
    let k = hash32(k ^ counter as u32);
    hash32(k ^ hash32((counter >> 32) as u32))
}

/// Uniform in (0, 1] with 24 bits: exact in f32.
#[inline(always)]
pub fn uniform(key: u32, index: u32) -> f32 {
    let bits = hash32(key ^ hash32(index.wrapping_add(0x9e37_79b9)));
    ((bits >> 8) + 1) as f32 * (1.0 / 16_777_216.0)
}
