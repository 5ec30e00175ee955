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

// c (16x8, f32) += a (16x16, bf16) . b (16x8, bf16) for one warp; each u32 holds two bf16
// of consecutive k, the lower k in the low half. Fragments (g = lane / 4, q = lane % 4):
// a = (g, 2q..2q+1), (g + 8, 2q..), (g, 2q + 8..), (g + 8, 2q + 8..); b = (k = 2q..2q+1,
// n = g), (k = 2q + 8.., n = g); c as for mma_tf32.
__device__ __forceinline__ void mma_bf16(float* c, const u32* a, u32 b0, u32 b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
#endif
// bf16 (round to nearest even, as the CPU's `fast` kernels and torch round) of an f32,
// as the low 16 bits; a NaN stays a NaN.
__device__ __forceinline__ u32 bf16_bits(float v) {
    u32 b = __float_as_uint(v);
    if ((b & 0x7fffffffu) > 0x7f800000u) return (b >> 16) | 0x40u;
    return (b + 0x7fffu + ((b >> 16) & 1u)) >> 16;
}
// Two bf16 in one u32, `lo` in the low half (the mma_bf16 operand pairs).
__device__ __forceinline__ u32 pack_bf16(float lo, float hi) { return bf16_bits(lo) | (bf16_bits(hi) << 16); }

// bf16 is the high half of an f32.
__device__ __forceinline__ float widen(bf16_t v) { return __uint_as_float(((u32)v.bits) << 16); }

// Q8_0 weights: 34-byte blocks (an f16 scale, then 32 int8) addressed by element index; a
// weight is scale x int8, exact in f32. `q8_t` is one byte of the block stream.
struct q8_t { unsigned char b; };

// The scale of the block at `block` (a template so the emulator's f16 widening, declared
// after this header, is found where it is instantiated).
template <typename F = f16_t>
__device__ __forceinline__ float q8_scale(const unsigned char* block) {
    F d;
    d.bits = (u16)(block[0] | (block[1] << 8));
    return widen(d);
}

template <typename W>
__device__ __forceinline__ float load_weight(const W* w, u64 i) { return widen(w[i]); }

// Weight `j` (0..31) of the Q8_0 block at `block` as its integer.
__device__ __forceinline__ int block_int(const q8_t*, const unsigned char* block, u32 j) { return (signed char)block[2 + j]; }
__device__ __forceinline__ constexpr u32 block_bytes(const q8_t*) { return 34; }

__device__ __forceinline__ float load_weight(const q8_t* w, u64 i) {
    const unsigned char* block = (const unsigned char*)w + (i >> 5) * 34;
    return q8_scale(block) * (float)block_int(w, block, (u32)(i & 31));
}

// Q4_0 weights: 18-byte blocks (an f16 scale, then 16 bytes whose low nibbles are weights
// 0..15 and high nibbles 16..31, each stored plus 8); a weight is scale x (nibble - 8),
// exact in f32. `q4_t` is one byte of the block stream.
struct q4_t { unsigned char b; };

// Weight `j` (0..31) of the Q4_0 block at `block` as its integer.
__device__ __forceinline__ int block_int(const q4_t*, const unsigned char* block, u32 j) {
    unsigned char byte = block[2 + (j & 15)];
    return (int)(j < 16 ? byte & 15 : byte >> 4) - 8;
}
__device__ __forceinline__ constexpr u32 block_bytes(const q4_t*) { return 18; }

__device__ __forceinline__ float load_weight(const q4_t* w, u64 i) {
    const unsigned char* block = (const unsigned char*)w + (i >> 5) * 18;
    return q8_scale(block) * (float)block_int(w, block, (u32)(i & 31));
}

// Never reached (Q8_0 and Q4_0 linears keep a float bias); present so the epilogue
// templates instantiate.
__device__ __forceinline__ float widen(q8_t) { return 0.0f; }
__device__ __forceinline__ float widen(q4_t) { return 0.0f; }

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

// Activations of epilogues (f32, as torch): 0 identity, 1 tanh-GELU, 2 SiLU, 3 round-to-levels,
// 4 erf-GELU, 5 ReLU.
__device__ __forceinline__ float activate(float y, u32 act, float levels) {
    switch (act) {
    case 1: return 0.5f * y * (1.0f + tanhf(0.7978845608028654f * (y + 0.044715f * y * y * y)));
    case 2: return y / (1.0f + expf(-y));
    case 3: return rintf(levels * y) / levels;  // rint: round half to even, as torch.round
    case 4: return y * 0.5f * (1.0f + erff(y * 0.70710678118654752f));  // torch: x * 0.5 * (1 + erf(x * M_SQRT1_2))
    case 5: return fmaxf(y, 0.0f);
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

// ---- Operands and epilogues of the tiled GEMMs (matmul.cu's CUDA-core tiles, gemm_tc.cu's
// tensor-core tiles): a tile function takes the A operand as a loader a(row, col) and
// writes each output through store(row, col, acc), so linears and implicit-GEMM
// convolutions share the tile loops.

// A = x [m, k], row-major.
struct RowsA {
    const float* x;
    u32 k;
    __device__ __forceinline__ float operator()(u32 r, u32 c) const { return x[(u64)r * k + c]; }
};

// The implicit im2col of a time-major conv1d within one channel group: row (b, j), column
// (tap, i) with i < cg; x points at the group's first input channel of frame 0.
struct Conv1dA {
    const float* x;
    u32 l_in, c_in, l_out, cg, stride, dilation, pad_left, upsample;
    __device__ __forceinline__ float operator()(u32 r, u32 c) const {
        u32 j = r % l_out, b = r / l_out, shifted = j * stride + (c / cg) * dilation;
        if (shifted < pad_left || shifted - pad_left >= l_in * upsample) return 0.0f;
        return x[((u64)b * l_in + (shifted - pad_left) / upsample) * c_in + c % cg];
    }
};

// The implicit im2col of a channels-last conv2d: row (b, i, j), column (p, q, c).
struct Conv2dA {
    const float* x;
    u32 h, w, c_in, oh, ow, kw, sh, sw, ph, pw;
    __device__ __forceinline__ float operator()(u32 r, u32 col) const {
        u32 j = r % ow, i = (r / ow) % oh, b = r / (ow * oh);
        u32 c = col % c_in, q = (col / c_in) % kw, p = col / (c_in * kw);
        u32 hi = i * sh + p, wi = j * sw + q;
        if (hi < ph || hi - ph >= h || wi < pw || wi - pw >= w) return 0.0f;
        return x[(((u64)b * h + hi - ph) * w + wi - pw) * c_in + c];
    }
};

template <typename W>
struct GemmStore {
    float* out;
    const W* bias;
    const float* gate;
    u32 n, act;
    float levels;
    u32 accumulate;
    __device__ __forceinline__ void operator()(u32 row, u32 col, float acc) const { gemm_store(out, row, col, n, acc, bias, gate, act, levels, accumulate); }
};

// conv1d, per group (out and bias point at the group's first channel; rows of `pitch`):
// y = acc + bias, PReLU, then out = y or out += y.
template <typename W>
struct Conv1dStore {
    float* out;
    const W* bias;
    u32 pitch, has_prelu;
    float slope;
    u32 accumulate;
    __device__ __forceinline__ void operator()(u32 row, u32 col, float acc) const {
        float y = acc + (bias ? widen(bias[col]) : 0.0f);
        if (has_prelu && y < 0.0f) y *= slope;
        float* o = out + (u64)row * pitch + col;
        *o = accumulate ? *o + y : y;
    }
};

// conv2d: y = acc + bias, y += out (accumulate), then ReLU.
template <typename W>
struct Conv2dStore {
    float* out;
    const W* bias;
    u32 n, accumulate, relu;
    __device__ __forceinline__ void operator()(u32 row, u32 col, float acc) const {
        float y = acc + (bias ? widen(bias[col]) : 0.0f);
        float* o = out + (u64)row * n + col;
        if (accumulate) y += *o;
        *o = relu ? fmaxf(y, 0.0f) : y;
    }
};

#define GEMM_TILE 64

// A grouped conv1d as one implicit GEMM per channel group (og = C_out / groups columns,
// K * cg deep); blocks cover groups x 64x64 tiles. `tile` is the file's tile function.
#define CONV1D_GEMM_PARAMS(W) const float *x, const W *w, const W *bias, float *out, u32 batch, u32 l_in, u32 c_in, u32 l_out, u32 c_out, u32 k, \
    u32 stride, u32 groups, u32 dilation, u32 pad_left, u32 upsample, u32 has_prelu, float slope, u32 accumulate
#define CONV1D_GEMM_ARGS x, w, bias, out, batch, l_in, c_in, l_out, c_out, k, stride, groups, dilation, pad_left, upsample, has_prelu, slope, accumulate
template <typename Tile, typename W>
__device__ __forceinline__ void conv1d_gemm(Tile tile, CONV1D_GEMM_PARAMS(W)) {
    u32 m = batch * l_out, cg = c_in / groups, og = c_out / groups, inner = k * cg;
    u32 tiles_n = (og + GEMM_TILE - 1) / GEMM_TILE, tiles = ((m + GEMM_TILE - 1) / GEMM_TILE) * tiles_n;
    u32 bi = block_index(), g = bi / tiles, t = bi % tiles;
    if (g >= groups) return;
    Conv1dA a{x + g * cg, l_in, c_in, l_out, cg, stride, dilation, pad_left, upsample};
    Conv1dStore<W> s{out + g * og, bias ? bias + g * og : nullptr, c_out, has_prelu, slope, accumulate};
    tile(a, w + (u64)g * og * inner, m, og, inner, (t / tiles_n) * GEMM_TILE, (t % tiles_n) * GEMM_TILE, s);
}

// A channels-last conv2d as an implicit GEMM: [B*OH*OW, KH*KW*C_in] . w[C_out, KH*KW*C_in]^T.
#define CONV2D_PARAMS(W) const float *x, const W *w, const W *bias, float *out, u32 batch, u32 h, u32 wd, u32 c_in, u32 oh, u32 ow, u32 c_out, u32 kh, \
    u32 kw, u32 sh, u32 sw, u32 ph, u32 pw, u32 accumulate, u32 relu
#define CONV2D_ARGS x, w, bias, out, batch, h, wd, c_in, oh, ow, c_out, kh, kw, sh, sw, ph, pw, accumulate, relu
template <typename Tile, typename W>
__device__ __forceinline__ void conv2d_gemm(Tile tile, CONV2D_PARAMS(W)) {
    u32 m = batch * oh * ow, tiles_n = (c_out + GEMM_TILE - 1) / GEMM_TILE, bi = block_index();
    u32 m0 = (bi / tiles_n) * GEMM_TILE, n0 = (bi % tiles_n) * GEMM_TILE;
    if (m0 >= m) return;
    Conv2dA a{x, h, wd, c_in, oh, ow, kw, sh, sw, ph, pw};
    tile(a, w, m, c_out, kh * kw * c_in, m0, n0, Conv2dStore<W>{out, bias, c_out, accumulate, relu});
}

// Instantiates `name##_f32`, `name##_f16`, `name##_bf16` from a template kernel body macro.
#define FOR_WEIGHT_TYPES(M) M(f32, float) M(f16, f16_t) M(bf16, bf16_t)
