// A CPU emulation of the CUDA execution model, enough to run this project's kernels
// unchanged for testing without a GPU: every thread of a block is a host thread,
// __syncthreads / __syncwarp are barriers, shared memory is static storage (blocks run
// one after another), and the warp-level primitives (mma.sync m16n8k8 TF32, shuffles)
// exchange their operands through per-warp slots. The mma fragment layout is the PTX
// ISA's, written once here (see mma_tf32), so the kernels' index math is checked
// against it. Included before common.cuh with UNIAUDIO_EMULATE defined.
#pragma once
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <latch>
#include <semaphore>
#include <memory>
#include <thread>
#include <vector>

#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static

struct dim3 {
    unsigned x = 1, y = 1, z = 1;
};
struct uint4 {
    unsigned x, y, z, w;
};
struct float4 {
    float x, y, z, w;
};

namespace emu {
inline thread_local dim3 thread_idx, block_idx;
inline dim3 block_dim, grid_dim;

struct Warp {
    std::barrier<> sync{32};
    float a[32][4], b[32][2], c[32][4];
    unsigned pa[32][4], pb[32][2];  // mma_bf16's packed operands
    float shfl[32];
};
inline std::unique_ptr<std::barrier<>> block_sync;
inline std::vector<std::unique_ptr<Warp>> warps;

inline Warp& my_warp() {
    unsigned t = thread_idx.y * block_dim.x + thread_idx.x;
    return *warps[t / 32];
}
inline unsigned my_lane() { return (thread_idx.y * block_dim.x + thread_idx.x) % 32; }

// Persistent host threads, one per thread of a block (the largest block this project
// launches has 256); a launch runs the grid's blocks one after another on them.
constexpr unsigned MAX_THREADS = 256;

struct Pool {
    std::vector<std::thread> threads;
    std::vector<std::unique_ptr<std::binary_semaphore>> go;
    std::function<void(unsigned)> task;
    std::latch* done = nullptr;

    Pool() {
        for (unsigned i = 0; i < MAX_THREADS; i++) {
            go.push_back(std::make_unique<std::binary_semaphore>(0));
            threads.emplace_back([this, i] {
                for (;;) {
                    go[i]->acquire();
                    task(i);
                    done->count_down();
                }
            });
            threads.back().detach();
        }
    }
};

inline Pool& pool() {
    static Pool* p = new Pool();  // never destroyed: its threads live as long as the process
    return *p;
}

// Runs `kernel` over grid x block threads (1-D grid, 1- or 2-D blocks). Returns false when
// the block is larger than the emulator's thread pool.
template <typename F>
bool launch(unsigned grid, dim3 block, F kernel) {
    unsigned threads = block.x * block.y;
    if (threads == 0 || threads > MAX_THREADS) return false;
    grid_dim = dim3{grid, 1, 1};
    block_dim = block;
    Pool& p = pool();
    for (unsigned b = 0; b < grid; b++) {
        block_sync = std::make_unique<std::barrier<>>(threads);
        warps.clear();
        for (unsigned w = 0; w < (threads + 31) / 32; w++) warps.push_back(std::make_unique<Warp>());
        std::latch done(threads);
        p.done = &done;
        p.task = [&](unsigned t) {
            thread_idx = dim3{t % block.x, t / block.x, 0};
            block_idx = dim3{b, 0, 0};
            kernel();
        };
        for (unsigned t = 0; t < threads; t++) p.go[t]->release();
        done.wait();
    }
    return true;
}
}  // namespace emu

#define threadIdx (emu::thread_idx)
#define blockIdx (emu::block_idx)
#define blockDim (emu::block_dim)
#define gridDim (emu::grid_dim)

inline void __syncthreads() { emu::block_sync->arrive_and_wait(); }
inline void __syncwarp(unsigned = 0xffffffffu) { emu::my_warp().sync.arrive_and_wait(); }

inline float __uint_as_float(unsigned v) {
    float f;
    std::memcpy(&f, &v, 4);
    return f;
}
inline unsigned __float_as_uint(float f) {
    unsigned v;
    std::memcpy(&v, &f, 4);
    return v;
}
template <typename A, typename B>
inline auto min(A a, B b) { return a < b ? a : b; }
template <typename A, typename B>
inline auto max(A a, B b) { return a < b ? b : a; }

inline float __shfl_xor_sync(unsigned, float v, int mask) {
    auto& w = emu::my_warp();
    unsigned lane = emu::my_lane();
    w.shfl[lane] = v;
    w.sync.arrive_and_wait();
    float r = w.shfl[lane ^ mask];
    w.sync.arrive_and_wait();
    return r;
}

// cvt.rna.tf32.f32: keep 10 mantissa bits, round to nearest with ties away from zero.
inline unsigned to_tf32(float v) {
    unsigned bits = __float_as_uint(v);
    if ((bits & 0x7f800000u) == 0x7f800000u) return bits;
    return (bits + 0x1000u) & 0xffffe000u;
}

// c += this lane's outputs of A (16 x K) . B (K x 8), summed in k order: c0 (g, 2q),
// c1 (g, 2q + 1), c2 (g + 8, 2q), c3 (g + 8, 2q + 1) with g = lane / 4, q = lane % 4.
template <int K>
inline void accumulate_fragment(float* c, const float (&A)[16][K], const float (&B)[K][8]) {
    unsigned lane = emu::my_lane(), g = lane / 4, q = lane % 4;
    unsigned rows[4] = {g, g, g + 8, g + 8}, cols[4] = {2 * q, 2 * q + 1, 2 * q, 2 * q + 1};
    for (int i = 0; i < 4; i++) {
        float acc = c[i];
        for (int k = 0; k < K; k++) acc += A[rows[i]][k] * B[k][cols[i]];
        c[i] = acc;
    }
}

// mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32, with the PTX ISA fragment layout
// (g = lane / 4, q = lane % 4): a0 (g, q), a1 (g + 8, q), a2 (g, q + 4), a3 (g + 8, q + 4);
// b0 (k = q, n = g), b1 (k = q + 4, n = g); c0 (g, 2q), c1 (g, 2q + 1), c2 (g + 8, 2q),
// c3 (g + 8, 2q + 1). Inputs are used as TF32 (low 13 bits dropped).
inline void mma_tf32(float* c, const unsigned* a, unsigned b0, unsigned b1) {
    auto& w = emu::my_warp();
    unsigned lane = emu::my_lane();
    for (int i = 0; i < 4; i++) w.a[lane][i] = __uint_as_float(a[i] & 0xffffe000u);
    w.b[lane][0] = __uint_as_float(b0 & 0xffffe000u);
    w.b[lane][1] = __uint_as_float(b1 & 0xffffe000u);
    w.sync.arrive_and_wait();
    float A[16][8], B[8][8];
    for (unsigned l = 0; l < 32; l++) {
        unsigned g = l / 4, q = l % 4;
        A[g][q] = w.a[l][0];
        A[g + 8][q] = w.a[l][1];
        A[g][q + 4] = w.a[l][2];
        A[g + 8][q + 4] = w.a[l][3];
        B[q][g] = w.b[l][0];
        B[q + 4][g] = w.b[l][1];
    }
    accumulate_fragment(c, A, B);
    w.sync.arrive_and_wait();
}

// mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32, with the PTX ISA fragment layout
// (g = lane / 4, q = lane % 4; each register two bf16, the lower k in its low half):
// a0 (g, 2q..2q+1), a1 (g + 8, 2q..), a2 (g, 2q + 8..), a3 (g + 8, 2q + 8..);
// b0 (k = 2q..2q+1, n = g), b1 (k = 2q + 8.., n = g); c as mma_tf32. The bf16 products
// are exact in f32; they are summed in k order.
inline void mma_bf16(float* c, const unsigned* a, unsigned b0, unsigned b1) {
    auto& w = emu::my_warp();
    unsigned lane = emu::my_lane();
    for (int i = 0; i < 4; i++) w.pa[lane][i] = a[i];
    w.pb[lane][0] = b0;
    w.pb[lane][1] = b1;
    w.sync.arrive_and_wait();
    auto lo = [](unsigned v) { return __uint_as_float(v << 16); };
    auto hi = [](unsigned v) { return __uint_as_float(v & 0xffff0000u); };
    float A[16][16], B[16][8];
    for (unsigned l = 0; l < 32; l++) {
        unsigned g = l / 4, q = l % 4;
        const unsigned* r = w.pa[l];
        A[g][2 * q] = lo(r[0]), A[g][2 * q + 1] = hi(r[0]);
        A[g + 8][2 * q] = lo(r[1]), A[g + 8][2 * q + 1] = hi(r[1]);
        A[g][2 * q + 8] = lo(r[2]), A[g][2 * q + 9] = hi(r[2]);
        A[g + 8][2 * q + 8] = lo(r[3]), A[g + 8][2 * q + 9] = hi(r[3]);
        B[2 * q][g] = lo(w.pb[l][0]), B[2 * q + 1][g] = hi(w.pb[l][0]);
        B[2 * q + 8][g] = lo(w.pb[l][1]), B[2 * q + 9][g] = hi(w.pb[l][1]);
    }
    accumulate_fragment(c, A, B);
    w.sync.arrive_and_wait();
}
