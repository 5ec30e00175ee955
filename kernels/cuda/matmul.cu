// Matrix products with weights in their stored dtype, f32 accumulation.
//   gemv_*:        out[m, n] (+)= x[m, :] . w[n, :]  (w [N, K]); one warp per output, 1-8 per
//                  block (tuned: `cuda.gemv.warps`); 128-bit weight loads when rows are 16-byte aligned (`vec`).
//   gemm_*:        the same for many rows: 64x64 output tiles, 4x4 per thread, 16-deep
//                  shared-memory slices; epilogue bias, activation, gate (out += g*y) or
//                  accumulate. Also serves `linear`.
//   conv1d_gemm_*, conv2d_*: implicit-GEMM convolutions on the same tiles (im2col
//                  addressing and epilogues in common.cuh; conv1d one GEMM per group).
//   matmul_in_out_*: w [K, N]; one thread per output, adjacent threads adjacent columns.
//   gate_up_*:     out[m, f] = silu(x . w_gate[f]) * (x . w_up[f]); one warp per output.

__device__ __forceinline__ float dot8(uint4 p, float4 a, float4 b, bf16_t) {
    return __uint_as_float(p.x << 16) * a.x + __uint_as_float(p.x & 0xffff0000u) * a.y
         + __uint_as_float(p.y << 16) * a.z + __uint_as_float(p.y & 0xffff0000u) * a.w
         + __uint_as_float(p.z << 16) * b.x + __uint_as_float(p.z & 0xffff0000u) * b.y
         + __uint_as_float(p.w << 16) * b.z + __uint_as_float(p.w & 0xffff0000u) * b.w;
}

__device__ __forceinline__ float half_lo(u32 v) { f16_t h; h.bits = (u16)(v & 0xffffu); return widen(h); }
__device__ __forceinline__ float half_hi(u32 v) { f16_t h; h.bits = (u16)(v >> 16); return widen(h); }

__device__ __forceinline__ float dot8(uint4 p, float4 a, float4 b, f16_t) {
    return half_lo(p.x) * a.x + half_hi(p.x) * a.y + half_lo(p.y) * a.z + half_hi(p.y) * a.w
         + half_lo(p.z) * b.x + half_hi(p.z) * b.y + half_lo(p.w) * b.z + half_hi(p.w) * b.w;
}

// Never reached (f32 rows use 4-wide loads); present so the template instantiates.
__device__ __forceinline__ float dot8(uint4, float4, float4, float) { return 0.0f; }

// One warp's share of w_row . x over k (lane-strided), summed over the warp.
template <typename W>
__device__ float warp_dot(const W* w, const float* x, u32 k, bool vec) {
    int lane = threadIdx.x & 31;
    float acc = 0.0f;
    if (vec) {
        // 8 elements per 16 bytes for 16-bit weights, 4 for f32.
        const u32 per = 16 / sizeof(W);
        const uint4* w4 = (const uint4*)w;
        u32 chunks = k / per;
        for (u32 i = lane; i < chunks; i += 32) {
            uint4 p = w4[i];
            if (per == 4) {
                float4 a = ((const float4*)x)[i];
                acc += __uint_as_float(p.x) * a.x + __uint_as_float(p.y) * a.y + __uint_as_float(p.z) * a.z + __uint_as_float(p.w) * a.w;
            } else {
                acc += dot8(p, ((const float4*)x)[2 * i], ((const float4*)x)[2 * i + 1], W());
            }
        }
        for (u32 i = chunks * per + lane; i < k; i += 32) acc += widen(w[i]) * x[i];
    } else {
        for (u32 i = lane; i < k; i += 32) acc += widen(w[i]) * x[i];
    }
    return warp_sum(acc);
}

// One warp's share of Q8_0 or Q4_0 (Q: q8_t or q4_t) weight row `row` . x (k a multiple
// of 32): lane-strided blocks, each weight widened as scale x integer (exact) before its
// product.
template <typename Q>
__device__ float warp_dot_blocks(const Q* w, u32 row, const float* x, u32 k) {
    int lane = threadIdx.x & 31;
    const u32 bytes = block_bytes(w);
    const unsigned char* blocks = (const unsigned char*)w + (u64)row * (k / 32) * bytes;
    float acc = 0.0f;
    for (u32 b = lane; b < k / 32; b += 32) {
        const unsigned char* block = blocks + (u64)b * bytes;
        float d = q8_scale(block);
        const float* xb = x + b * 32;
        #pragma unroll 8
        for (u32 j = 0; j < 32; j++) acc += (d * (float)block_int(w, block, j)) * xb[j];
    }
    return warp_sum(acc);
}

// Weight row `row` . x, summed over the warp.
template <typename W>
__device__ __forceinline__ float row_dot(const W* w, u32 row, const float* x, u32 k, bool vec) { return warp_dot(w + (u64)row * k, x, k, vec); }
__device__ __forceinline__ float row_dot(const q8_t* w, u32 row, const float* x, u32 k, bool) { return warp_dot_blocks(w, row, x, k); }
__device__ __forceinline__ float row_dot(const q4_t* w, u32 row, const float* x, u32 k, bool) { return warp_dot_blocks(w, row, x, k); }

// One warp per output; the warps per block are the launch's (tuned: `cuda.gemv.warps`)
// and never change a result.
template <typename W>
__device__ void gemv(const W* w, const float* x, float* out, u32 m, u32 n, u32 k, u32 accumulate, u32 vec) {
    u32 id = block_index() * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (id >= m * n) return;
    // The rows of x sharing a weight row are adjacent warps: its weights are read once.
    u32 row = id / m, mi = id % m;
    float d = row_dot(w, row, x + (u64)mi * k, k, vec != 0);
    if ((threadIdx.x & 31) == 0) out[(u64)mi * n + row] = (accumulate ? out[(u64)mi * n + row] : 0.0f) + d;
}

#define TILE GEMM_TILE
#define TK 16
// The 64x64 tile (m0, n0) of A[m, k] . w[n, k]^T for 16x16 threads, 4x4 outputs each;
// A through the loader a(row, col), each output through store(row, col, acc).
template <typename W, typename A, typename S>
__device__ __forceinline__ void gemm_tile(const A& a, const W* w, u32 m, u32 n, u32 k, u32 m0, u32 n0, const S& store) {
    __shared__ float a_tile[TILE * TK];
    __shared__ float w_tile[TILE * TK];
    u32 tx = threadIdx.x, ty = threadIdx.y, t = ty * 16 + tx;
    float acc[4][4] = {};
    for (u32 k0 = 0; k0 < k; k0 += TK) {
        for (u32 e = 0; e < 4; e++) {
            u32 idx = t + e * 256, r = idx / TK, c = idx % TK, kk = k0 + c;
            a_tile[idx] = (m0 + r < m && kk < k) ? a(m0 + r, kk) : 0.0f;
            w_tile[idx] = (n0 + r < n && kk < k) ? load_weight(w, (u64)(n0 + r) * k + kk) : 0.0f;
        }
        __syncthreads();
        #pragma unroll
        for (u32 kk = 0; kk < TK; kk++) {
            float av[4], bv[4];
            #pragma unroll
            for (u32 i = 0; i < 4; i++) { av[i] = a_tile[(ty + 16 * i) * TK + kk]; bv[i] = w_tile[(tx + 16 * i) * TK + kk]; }
            #pragma unroll
            for (u32 i = 0; i < 4; i++)
                #pragma unroll
                for (u32 j = 0; j < 4; j++) acc[i][j] += av[i] * bv[j];
        }
        __syncthreads();
    }
    for (u32 i = 0; i < 4; i++) {
        u32 row = m0 + ty + 16 * i;
        for (u32 j = 0; j < 4; j++) {
            u32 col = n0 + tx + 16 * j;
            if (row < m && col < n) store(row, col, acc[i][j]);
        }
    }
}

struct CoreTile {
    template <typename W, typename A, typename S>
    __device__ __forceinline__ void operator()(const A& a, const W* w, u32 m, u32 n, u32 k, u32 m0, u32 n0, const S& store) const {
        gemm_tile(a, w, m, n, k, m0, n0, store);
    }
};

// B: the bias's dtype (the weight's, or a float type for Q8_0 weights).
template <typename W, typename B>
__device__ void gemm(const float* x, const W* w, const B* bias, const float* gate, float* out, u32 m, u32 n, u32 k, u32 act, float levels, u32 accumulate) {
    u32 tiles_n = (n + TILE - 1) / TILE;
    u32 group = block_index();
    u32 m0 = (group / tiles_n) * TILE, n0 = (group % tiles_n) * TILE;
    if (m0 >= m) return;
    gemm_tile(RowsA{x, k}, w, m, n, k, m0, n0, GemmStore<B>{out, bias, gate, n, act, levels, accumulate});
}

template <typename W>
__device__ void matmul_in_out(const W* w, const float* x, float* out, u32 m, u32 n, u32 k, u32 accumulate) {
    u32 id = grid_index();
    if (id >= m * n) return;
    u32 col = id % n, mi = id / n;
    float acc = 0.0f;
    for (u32 i = 0; i < k; i++) acc += x[(u64)mi * k + i] * widen(w[(u64)i * n + col]);
    out[id] = (accumulate ? out[id] : 0.0f) + acc;
}

template <typename W>
__device__ void gate_up(const W* wg, const W* wu, const float* x, float* out, u32 m, u32 f, u32 k, u32 vec) {
    u32 id = block_index() * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (id >= m * f) return;
    u32 row = id / m, mi = id % m;
    float g = row_dot(wg, row, x + (u64)mi * k, k, vec != 0);
    float u = row_dot(wu, row, x + (u64)mi * k, k, vec != 0);
    if ((threadIdx.x & 31) == 0) out[(u64)mi * f + row] = (g / (1.0f + expf(-g))) * u;
}

#define MATMUL(S, W) \
    extern "C" __global__ void __launch_bounds__(256) gemv_##S(const W* w, const float* x, float* out, u32 m, u32 n, u32 k, u32 acc, u32 vec) { gemv(w, x, out, m, n, k, acc, vec); } \
    extern "C" __global__ void __launch_bounds__(256) gemm_##S(const float* x, const W* w, const W* bias, const float* gate, float* out, u32 m, u32 n, u32 k, u32 act, float levels, u32 acc) { \
        gemm(x, w, bias, gate, out, m, n, k, act, levels, acc); } \
    extern "C" __global__ void matmul_in_out_##S(const W* w, const float* x, float* out, u32 m, u32 n, u32 k, u32 acc) { matmul_in_out(w, x, out, m, n, k, acc); } \
    extern "C" __global__ void __launch_bounds__(256) gate_up_##S(const W* wg, const W* wu, const float* x, float* out, u32 m, u32 f, u32 k, u32 vec) { gate_up(wg, wu, x, out, m, f, k, vec); } \
    extern "C" __global__ void __launch_bounds__(256) conv1d_gemm_##S(CONV1D_GEMM_PARAMS(W)) { conv1d_gemm(CoreTile(), CONV1D_GEMM_ARGS); } \
    extern "C" __global__ void __launch_bounds__(256) conv2d_##S(CONV2D_PARAMS(W)) { conv2d_gemm(CoreTile(), CONV2D_ARGS); }
FOR_WEIGHT_TYPES(MATMUL)

// Q8_0 and Q4_0 weights (Q: q8 or q4, its block type q8_t or q4_t): the GEMV, the gated MLP
// input and the CUDA-core GEMM (tensor cores take TF32, which cannot hold scale x integer
// exactly). Their linears' biases keep a float dtype: gemm_<Q>_<bias dtype> (the f32 one
// also serves unbiased linears, with a null bias).
#define BLOCK_PRODUCTS(Q, T) \
    extern "C" __global__ void __launch_bounds__(256) gemv_##Q(const T* w, const float* x, float* out, u32 m, u32 n, u32 k, u32 acc, u32 vec) { gemv(w, x, out, m, n, k, acc, vec); } \
    extern "C" __global__ void __launch_bounds__(256) gate_up_##Q(const T* wg, const T* wu, const float* x, float* out, u32 m, u32 f, u32 k, u32 vec) { gate_up(wg, wu, x, out, m, f, k, vec); }
#define BLOCK_GEMM(Q, T, S, B) \
    extern "C" __global__ void __launch_bounds__(256) gemm_##Q##_##S(const float* x, const T* w, const B* bias, const float* gate, float* out, u32 m, u32 n, u32 k, u32 act, float levels, u32 acc) { \
        gemm(x, w, bias, gate, out, m, n, k, act, levels, acc); }
#define GEMM_Q8(S, B) BLOCK_GEMM(q8, q8_t, S, B)
#define GEMM_Q4(S, B) BLOCK_GEMM(q4, q4_t, S, B)
BLOCK_PRODUCTS(q8, q8_t)
BLOCK_PRODUCTS(q4, q4_t)
FOR_WEIGHT_TYPES(GEMM_Q8)
FOR_WEIGHT_TYPES(GEMM_Q4)
