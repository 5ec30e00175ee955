// Residual VQ nearest-code search, all levels, RVQ_ROWS rows of x per 256-thread block (each
// code vector is read once for all of them). Per level l, sequentially: thread t scans codes
// t, t + 256, ... of E_l and keeps, per row, the first smallest
// dist = max((|r|^2 + |e|^2) - 2 r.e, 1e-8); a tree reduction that prefers the lower index
// on equal distances picks the code; then r -= e and q += e (thread t owns dimension t).
// x [N, D] f32, codebooks [L, K, D] (stored dtype), codes [N, L] u32, quantized [N, D] f32;
// D <= 256 (the residuals live in shared memory).
#define RVQ_THREADS 256
#define RVQ_ROWS 4
#define RVQ_NONE 0xffffffffu

__device__ __forceinline__ bool rvq_better(float v, u32 i, float bv, u32 bi) { return v < bv || (v == bv && i < bi); }

template <typename W>
__device__ void rvq_encode(const float* x, const W* books, u32* codes, float* quantized, u32 n, u32 d, u32 levels, u32 k) {
    __shared__ float r_sh[RVQ_ROWS][RVQ_THREADS];
    __shared__ float rr_sh[RVQ_ROWS];
    __shared__ float best_v[RVQ_ROWS][RVQ_THREADS];
    __shared__ u32 best_i[RVQ_ROWS][RVQ_THREADS];
    u32 row0 = block_index() * RVQ_ROWS, t = threadIdx.x;
    if (row0 >= n) return;
    u32 rows = min(RVQ_ROWS, n - row0);
    float q[RVQ_ROWS];
#pragma unroll
    for (u32 r = 0; r < RVQ_ROWS; r++) {
        q[r] = 0.0f;
        if (t < d) r_sh[r][t] = r < rows ? x[(u64)(row0 + r) * d + t] : 0.0f;
    }
    for (u32 l = 0; l < levels; l++) {
        __syncthreads();
        if (t < RVQ_ROWS) {
            float rr = 0.0f;
            for (u32 j = 0; j < d; j++) rr += r_sh[t][j] * r_sh[t][j];
            rr_sh[t] = rr;
        }
        __syncthreads();
        float bv[RVQ_ROWS];
        u32 bi[RVQ_ROWS];
#pragma unroll
        for (u32 r = 0; r < RVQ_ROWS; r++) { bv[r] = 3.402823466e38f; bi[r] = RVQ_NONE; }
        const W* book = books + (u64)l * k * d;
        for (u32 i = t; i < k; i += RVQ_THREADS) {
            const W* e = book + (u64)i * d;
            float ee = 0.0f, re[RVQ_ROWS] = {};
            for (u32 j = 0; j < d; j++) {
                float ev = widen(e[j]);
                ee += ev * ev;
#pragma unroll
                for (u32 r = 0; r < RVQ_ROWS; r++) re[r] += r_sh[r][j] * ev;
            }
#pragma unroll
            for (u32 r = 0; r < RVQ_ROWS; r++) {
                float dist = fmaxf((rr_sh[r] + ee) - 2.0f * re[r], 1e-8f);
                if (dist < bv[r]) { bv[r] = dist; bi[r] = i; }
            }
        }
#pragma unroll
        for (u32 r = 0; r < RVQ_ROWS; r++) { best_v[r][t] = bv[r]; best_i[r][t] = bi[r]; }
        __syncthreads();
        for (u32 s = RVQ_THREADS / 2; s > 0; s >>= 1) {
            if (t < s) {
#pragma unroll
                for (u32 r = 0; r < RVQ_ROWS; r++) {
                    if (rvq_better(best_v[r][t + s], best_i[r][t + s], best_v[r][t], best_i[r][t])) {
                        best_v[r][t] = best_v[r][t + s];
                        best_i[r][t] = best_i[r][t + s];
                    }
                }
            }
            __syncthreads();
        }
#pragma unroll
        for (u32 r = 0; r < RVQ_ROWS; r++) {
            if (r >= rows) break;
            // No finite distance at all (NaN input): code 0, as the CPU backend.
            u32 code = best_i[r][0] == RVQ_NONE ? 0u : best_i[r][0];
            if (t < d) {
                float ev = widen(book[(u64)code * d + t]);
                r_sh[r][t] -= ev;
                q[r] += ev;
            }
            if (t == 0) codes[(u64)(row0 + r) * levels + l] = code;
        }
    }
    if (t < d) {
#pragma unroll
        for (u32 r = 0; r < RVQ_ROWS; r++)
            if (r < rows) quantized[(u64)(row0 + r) * d + t] = q[r];
    }
}

#define RVQ(S, W) \
    extern "C" __global__ void __launch_bounds__(RVQ_THREADS) rvq_encode_##S(const float* x, const W* books, u32* codes, float* quantized, u32 n, u32 d, \
                                                                           u32 levels, u32 k) { \
        rvq_encode(x, books, codes, quantized, n, d, levels, k); }
FOR_WEIGHT_TYPES(RVQ)
