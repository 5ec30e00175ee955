// Shared helpers, prepended to every kernel source before NVRTC compiles it (NVRTC has
// no standard headers: 16-bit floats are widened with PTX and bit shifts). The PTX
// wrappers have CPU definitions in emulate/emu.h (UNIAUDIO_EMULATE).
typedef unsigned int u32;
typedef unsigned short u16;
typedef unsigned long long u64;

struct f16_t { u16 bits; };
struct bf16_t { u16 bits; };

__device__ __forceinline__ float widen(float v) { return v; }
#ifndef UNIAUDIO_EMULATE
__device__ __forceinline__ float widen(f16_t v) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(v.bits));
    return f;
}

// TF32 (round to nearest, ties away) of an f32, as the bits mma.sync takes.
__device__ __forceinline__ u32 to_tf32(float v) {
    u32 r;
    asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(v));
    return r;
}

// c (16x8, f32) += a (16x8, TF32) . b (8x8, TF32) for one warp. PTX fragment layout, with
// g = lane / 4 and q = lane % 4: a = (g, q), (g + 8, q), (g, q + 4), (g + 8, q + 4);
// b = (k = q, n = g), (k = q + 4, n = g); c = (g, 2q), (g, 2q + 1), (g + 8, 2q), (g + 8, 2q + 1).
__device__ __forceinline__ void mma_tf32(float* c, const u32* a, u32 b0, u32 b1) {
    asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
#endif
// bf16 is the high half of an f32.
__device__ __forceinline__ float widen(bf16_t v) { return __uint_as_float(((u32)v.bits) << 16); }

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets it.
__device__ float block_sum(float v, float* scratch) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    float t = lane < warps ? scratch[lane] : 0.0f;
    return warp_sum(t);
}

__device__ float block_max(float v, float* scratch) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    float t = lane < warps ? scratch[lane] : -3.402823466e38f;
    return warp_max(t);
}

__device__ __forceinline__ u32 grid_index() { return blockIdx.x * blockDim.x + threadIdx.x + blockIdx.y * gridDim.x * blockDim.x; }
__device__ __forceinline__ u32 block_index() { return blockIdx.x + blockIdx.y * gridDim.x; }

// Activations of epilogues (f32, as torch): 0 identity, 1 tanh-GELU, 2 SiLU, 3 round-to-levels.
__device__ __forceinline__ float activate(float y, u32 act, float levels) {
    switch (act) {
    case 1: return 0.5f * y * (1.0f + tanhf(0.7978845608028654f * (y + 0.044715f * y * y * y)));
    case 2: return y / (1.0f + expf(-y));
    case 3: return rintf(levels * y) / levels;  // rint: round half to even, as torch.round
    default: return y;
    }
}

// The GEMM epilogue for output (row, col) of an [m, n] result: y = act(acc + bias[col]),
// then out = y, out += y (accumulate), or out += gate[col] * y (gated residual).
template <typename W>
__device__ __forceinline__ void gemm_store(float* out, u32 row, u32 col, u32 n, float acc, const W* bias, const float* gate, u32 act, float levels,
                                           u32 accumulate) {
    float y = activate(acc + (bias ? widen(bias[col]) : 0.0f), act, levels);
    u64 o = (u64)row * n + col;
    if (gate) out[o] += gate[col] * y;
    else out[o] = accumulate ? out[o] + y : y;
}

// Instantiates `name##_f32`, `name##_f16`, `name##_bf16` from a template kernel body macro.
#define FOR_WEIGHT_TYPES(M) M(f32, float) M(f16, f16_t) M(bf16, bf16_t)
