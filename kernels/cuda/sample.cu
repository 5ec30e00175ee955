// Argmax and top-k / temperature sampling, one 256-thread block per row; only ids are
// written. The rule and RNG are the CPU backend's (runtime/src/cpu/sample.rs,
// runtime/src/rng.rs): keep ids >= forbid_below whose scaled logit l/T is >= the k-th
// largest, pick argmax of l/T - ln(-ln U_i).
#define WG 256
#define NEG_INF -3.402823466e38f

__device__ __forceinline__ u32 hash32(u32 x) {
    x ^= x >> 16; x *= 0x7feb352du; x ^= x >> 15; x *= 0x846ca68bu; x ^= x >> 16;
    return x;
}

__device__ __forceinline__ float uniform01(u32 key, u32 index) {
    u32 bits = hash32(key ^ hash32(index + 0x9e3779b9u));
    return (float)((bits >> 8) + 1u) * (1.0f / 16777216.0f);
}

__device__ __forceinline__ bool better(float v, u32 i, float bv, u32 bi) { return v > bv || (v == bv && i < bi); }

__device__ void reduce_best(float* bv, u32* bi) {
    u32 t = threadIdx.x;
    for (u32 s = WG / 2; s > 0; s >>= 1) {
        if (t < s && better(bv[t + s], bi[t + s], bv[t], bi[t])) { bv[t] = bv[t + s]; bi[t] = bi[t + s]; }
        __syncthreads();
    }
}

extern "C" __global__ void __launch_bounds__(WG) argmax(const float* x, u32* out, u32 rows, u32 cols) {
    __shared__ float best_v[WG];
    __shared__ u32 best_i[WG];
    u32 row = block_index(), t = threadIdx.x;
    if (row >= rows) return;
    float bv = NEG_INF;
    u32 bi = 0xffffffffu, nan_i = 0xffffffffu;
    for (u32 i = t; i < cols; i += WG) {
        float v = x[(u64)row * cols + i];
        if (v != v) nan_i = min(nan_i, i);
        else if (better(v, i, bv, bi)) { bv = v; bi = i; }
    }
    // NaN ranks above every number (as torch.argmax).
    if (nan_i != 0xffffffffu) { bv = 3.402823466e38f; bi = nan_i; }
    best_v[t] = bv; best_i[t] = bi;
    __syncthreads();
    reduce_best(best_v, best_i);
    if (t == 0) out[row] = best_i[0] == 0xffffffffu ? 0u : best_i[0];
}

__device__ __forceinline__ float scaled(const float* xr, u32 i, float temperature) {
    float v = xr[i];
    return v != v ? NEG_INF : v / temperature;
}

// Order-preserving map of f32 to u32.
__device__ __forceinline__ u32 key_of(float v) {
    u32 b = __float_as_uint(v);
    return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

extern "C" __global__ void __launch_bounds__(WG) top_k_sample(const float* x, u32* out, u32 rows, u32 cols, u32 top_k, u32 forbid_below, float temperature,
                                                             u32 seed_lo, u32 seed_hi, u32 counter_lo, u32 counter_hi) {
    __shared__ float best_v[WG];
    __shared__ u32 best_i[WG];
    __shared__ u32 counts[WG];
    u32 row = block_index(), t = threadIdx.x;
    if (row >= rows) return;
    const float* xr = x + (u64)row * cols;
    u32 start = forbid_below, count = cols - start;
    // Threshold: the largest key K with at least top_k keys >= K (binary search on bits).
    u32 threshold = 0;
    if (top_k != 0 && top_k < count) {
        u32 lo = 0, hi = 0xffffffffu;
        for (u32 it = 0; it < 32 && lo != hi; it++) {
            u32 mid = lo + (hi - lo) / 2 + (hi - lo) % 2;
            u32 c = 0;
            for (u32 i = start + t; i < cols; i += WG) c += key_of(scaled(xr, i, temperature)) >= mid ? 1u : 0u;
            counts[t] = c;
            __syncthreads();
            for (u32 s = WG / 2; s > 0; s >>= 1) {
                if (t < s) counts[t] += counts[t + s];
                __syncthreads();
            }
            u32 total = counts[0];
            __syncthreads();
            if (total >= top_k) lo = mid; else hi = mid - 1;
        }
        threshold = lo;
    }
    bool greedy = top_k == 1;
    u32 k0 = hash32(seed_lo ^ hash32(seed_hi));
    u32 counter = counter_lo + row;
    u32 carry = counter < counter_lo ? 1u : 0u;
    u32 key = hash32(hash32(k0 ^ counter) ^ hash32(counter_hi + carry));
    float bv = NEG_INF;
    u32 bi = 0xffffffffu;
    for (u32 i = start + t; i < cols; i += WG) {
        float l = scaled(xr, i, temperature);
        if (greedy) {
            if (better(l, i, bv, bi)) { bv = l; bi = i; }
        } else if (key_of(l) >= threshold && l > NEG_INF) {
            float score = l - logf(-logf(uniform01(key, i)));
            if (better(score, i, bv, bi)) { bv = score; bi = i; }
        }
    }
    best_v[t] = bv; best_i[t] = bi;
    __syncthreads();
    reduce_best(best_v, best_i);
    if (t == 0) out[row] = best_i[0] == 0xffffffffu ? start : best_i[0];
}
