// Tensor-core GEMM for 16-bit weights (sm_80+): out[m, n] = epilogue(x[m, :] . w[n, :]),
// the same contract and epilogues as matmul.cu's gemm_* (bias, activation, gate, accumulate);
// conv1d_gemm_tc_* and conv2d_tc_* are the implicit-GEMM convolutions of matmul.cu on these tiles.
// mma.sync m16n8k8 TF32 with f32 accumulation. bf16 and f16 weights are exact in TF32;
// the f32 activations are split as x = hi + lo (both TF32) and multiplied twice, so the
// products keep about 22 mantissa bits: f32-level results from the tensor cores.
// A 128-thread block computes a 64x64 tile in 32-deep K slices through shared memory
// (rows padded to 36 floats: the fragment reads hit 32 distinct banks); warp w owns the
// 32x32 quarter (w / 2, w % 2) as 2x4 m16n8 tiles. The `fast` precision's *_tc_fast_*
// kernels (below) round both operands to bf16 and run mma.sync m16n8k16 bf16 instead.
#define TC_TILE 64
#define TC_K 32
#define TC_PITCH 36

// A warp's 2x4 m16n8 accumulators to the epilogue: fragment r of tile (i, j) is output
// (row0 + 16i + 8(r / 2), col0 + 8j + r % 2), where row0 and col0 hold the lane's g and 2q.
template <typename S>
__device__ __forceinline__ void store_warp_tile(const float (&acc)[2][4][4], u32 m, u32 n, u32 row0, u32 col0, const S& store) {
    #pragma unroll
    for (u32 i = 0; i < 2; i++) {
        #pragma unroll
        for (u32 j = 0; j < 4; j++) {
            #pragma unroll
            for (u32 r = 0; r < 4; r++) {
                u32 row = row0 + 16 * i + (r >> 1) * 8, col = col0 + 8 * j + (r & 1);
                if (row < m && col < n) store(row, col, acc[i][j][r]);
            }
        }
    }
}

// The 64x64 tile (m0, n0) of A[m, k] . w[n, k]^T for 128 threads; A through the loader
// a(row, col), each output through store(row, col, acc) (common.cuh).
template <typename W, typename A, typename S>
__device__ __forceinline__ void gemm_tc_tile(const A& ald, const W* w, u32 m, u32 n, u32 k, u32 m0, u32 n0, const S& store) {
    __shared__ float a_sh[TC_TILE * TC_PITCH];
    __shared__ float w_sh[TC_TILE * TC_PITCH];
    u32 t = threadIdx.x, lane = t & 31, warp = t >> 5;
    u32 wm = (warp >> 1) * 32, wn = (warp & 1) * 32;
    u32 g = lane >> 2, q = lane & 3;  // PTX fragment coordinates: groupID, threadID_in_group
    float acc[2][4][4] = {};
    for (u32 k0 = 0; k0 < k; k0 += TC_K) {
        // 64x32 of x and of w, consecutive threads along K (coalesced).
        #pragma unroll
        for (u32 e = 0; e < TC_TILE * TC_K / 128; e++) {
            u32 idx = t + e * 128, r = idx / TC_K, c = idx % TC_K, kk = k0 + c;
            a_sh[r * TC_PITCH + c] = (m0 + r < m && kk < k) ? ald(m0 + r, kk) : 0.0f;
            w_sh[r * TC_PITCH + c] = (n0 + r < n && kk < k) ? load_weight(w, (u64)(n0 + r) * k + kk) : 0.0f;
        }
        __syncthreads();
        #pragma unroll
        for (u32 ks = 0; ks < TC_K; ks += 8) {
            u32 hi[2][4], lo[2][4];
            #pragma unroll
            for (u32 i = 0; i < 2; i++) {
                const float* a = a_sh + (wm + 16 * i + g) * TC_PITCH + ks + q;
                float v[4] = {a[0], a[8 * TC_PITCH], a[4], a[8 * TC_PITCH + 4]};
                #pragma unroll
                for (u32 r = 0; r < 4; r++) {
                    hi[i][r] = to_tf32(v[r]);
                    lo[i][r] = to_tf32(v[r] - __uint_as_float(hi[i][r]));
                }
            }
            #pragma unroll
            for (u32 j = 0; j < 4; j++) {
                const float* b = w_sh + (wn + 8 * j + g) * TC_PITCH + ks + q;
                u32 b0 = __float_as_uint(b[0]), b1 = __float_as_uint(b[4]);
                #pragma unroll
                for (u32 i = 0; i < 2; i++) {
                    mma_tf32(acc[i][j], lo[i], b0, b1);
                    mma_tf32(acc[i][j], hi[i], b0, b1);
                }
            }
        }
        __syncthreads();
    }
    store_warp_tile(acc, m, n, m0 + wm + g, n0 + wn + 2 * q, store);
}

struct TcTile {
    template <typename W, typename A, typename S>
    __device__ __forceinline__ void operator()(const A& a, const W* w, u32 m, u32 n, u32 k, u32 m0, u32 n0, const S& store) const {
        gemm_tc_tile(a, w, m, n, k, m0, n0, store);
    }
};

// The `fast` precision's tile: both operands rounded to bf16 (round to nearest even) as
// they are staged, then mma.sync m16n8k16 bf16 with f32 accumulation, one product per
// 16-deep step where the TF32 tile above takes four. Shared memory holds bf16 pairs
// along K (rows padded to 20 words: the fragment reads hit 32 distinct banks); the warp
// layout and the epilogue are the TF32 tile's.
#define TC_PAIRS (TC_K / 2)
#define TC_PAIR_PITCH 20
template <typename W, typename A, typename S>
__device__ __forceinline__ void gemm_tc_bf16_tile(const A& ald, const W* w, u32 m, u32 n, u32 k, u32 m0, u32 n0, const S& store) {
    __shared__ u32 a_sh[TC_TILE * TC_PAIR_PITCH];
    __shared__ u32 w_sh[TC_TILE * TC_PAIR_PITCH];
    u32 t = threadIdx.x, lane = t & 31, warp = t >> 5;
    u32 wm = (warp >> 1) * 32, wn = (warp & 1) * 32;
    u32 g = lane >> 2, q = lane & 3;
    float acc[2][4][4] = {};
    for (u32 k0 = 0; k0 < k; k0 += TC_K) {
        // 64 rows x 16 pairs of x and of w, consecutive threads along K.
        #pragma unroll
        for (u32 e = 0; e < TC_TILE * TC_PAIRS / 128; e++) {
            u32 idx = t + e * 128, r = idx / TC_PAIRS, c = idx % TC_PAIRS, kk = k0 + 2 * c;
            bool a_row = m0 + r < m, w_row = n0 + r < n;
            u64 wi = (u64)(n0 + r) * k + kk;
            float a0 = (a_row && kk < k) ? ald(m0 + r, kk) : 0.0f, a1 = (a_row && kk + 1 < k) ? ald(m0 + r, kk + 1) : 0.0f;
            float w0 = (w_row && kk < k) ? load_weight(w, wi) : 0.0f, w1 = (w_row && kk + 1 < k) ? load_weight(w, wi + 1) : 0.0f;
            a_sh[r * TC_PAIR_PITCH + c] = pack_bf16(a0, a1);
            w_sh[r * TC_PAIR_PITCH + c] = pack_bf16(w0, w1);
        }
        __syncthreads();
        #pragma unroll
        for (u32 ks = 0; ks < TC_PAIRS; ks += 8) {
            u32 a[2][4];
            #pragma unroll
            for (u32 i = 0; i < 2; i++) {
                const u32* p = a_sh + (wm + 16 * i + g) * TC_PAIR_PITCH + ks + q;
                a[i][0] = p[0];
                a[i][1] = p[8 * TC_PAIR_PITCH];
                a[i][2] = p[4];
                a[i][3] = p[8 * TC_PAIR_PITCH + 4];
            }
            #pragma unroll
            for (u32 j = 0; j < 4; j++) {
                const u32* b = w_sh + (wn + 8 * j + g) * TC_PAIR_PITCH + ks + q;
                #pragma unroll
                for (u32 i = 0; i < 2; i++) mma_bf16(acc[i][j], a[i], b[0], b[4]);
            }
        }
        __syncthreads();
    }
    store_warp_tile(acc, m, n, m0 + wm + g, n0 + wn + 2 * q, store);
}

struct TcBf16Tile {
    template <typename W, typename A, typename S>
    __device__ __forceinline__ void operator()(const A& a, const W* w, u32 m, u32 n, u32 k, u32 m0, u32 n0, const S& store) const {
        gemm_tc_bf16_tile(a, w, m, n, k, m0, n0, store);
    }
};

template <typename Tile, typename W>
__device__ void gemm_tc(Tile tile, const float* x, const W* w, const W* bias, const float* gate, float* out, u32 m, u32 n, u32 k, u32 act, float levels,
                        u32 accumulate) {
    u32 tiles_n = (n + TC_TILE - 1) / TC_TILE;
    u32 block = block_index();
    u32 m0 = (block / tiles_n) * TC_TILE, n0 = (block % tiles_n) * TC_TILE;
    if (m0 >= m) return;
    tile(RowsA{x, k}, w, m, n, k, m0, n0, GemmStore<W>{out, bias, gate, n, act, levels, accumulate});
}

#define GEMM_TC(S, W) \
    extern "C" __global__ void __launch_bounds__(128) gemm_tc_##S(const float* x, const W* w, const W* bias, const float* gate, float* out, u32 m, u32 n, \
                                                                  u32 k, u32 act, float levels, u32 acc) { \
        gemm_tc(TcTile(), x, w, bias, gate, out, m, n, k, act, levels, acc); } \
    extern "C" __global__ void __launch_bounds__(128) conv1d_gemm_tc_##S(CONV1D_GEMM_PARAMS(W)) { conv1d_gemm(TcTile(), CONV1D_GEMM_ARGS); } \
    extern "C" __global__ void __launch_bounds__(128) conv2d_tc_##S(CONV2D_PARAMS(W)) { conv2d_gemm(TcTile(), CONV2D_ARGS); }
GEMM_TC(f16, f16_t)
GEMM_TC(bf16, bf16_t)

// The `fast` precision's kernels (`*_tc_fast_*`), f32 weights included: every operand is
// rounded to bf16 anyway.
#define GEMM_TC_FAST(S, W) \
    extern "C" __global__ void __launch_bounds__(128) gemm_tc_fast_##S(const float* x, const W* w, const W* bias, const float* gate, float* out, u32 m, \
                                                                       u32 n, u32 k, u32 act, float levels, u32 acc) { \
        gemm_tc(TcBf16Tile(), x, w, bias, gate, out, m, n, k, act, levels, acc); } \
    extern "C" __global__ void __launch_bounds__(128) conv1d_gemm_tc_fast_##S(CONV1D_GEMM_PARAMS(W)) { conv1d_gemm(TcBf16Tile(), CONV1D_GEMM_ARGS); } \
    extern "C" __global__ void __launch_bounds__(128) conv2d_tc_fast_##S(CONV2D_PARAMS(W)) { conv2d_gemm(TcBf16Tile(), CONV2D_ARGS); }
FOR_WEIGHT_TYPES(GEMM_TC_FAST)
