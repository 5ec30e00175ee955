// The gated MLP input: out[M, F] = silu(x . w_gate^T) * (x . w_up^T).
// x [M, K] f32; w_gate (w) and w_up (w2) [F, K] in the stored dtype; out f32.
// A workgroup computes GEMV_ROWS outputs (8 by default), 32 threads per row, both dots per thread.
// W_VEC (K and offsets multiples of 8): 16-byte loads of 8 weights and activations.
#define W_BINDING 0
#define W2_BINDING 4
#include "weights"

struct Params {
    m: u32,
    f: u32,
    k: u32,
    w2_off: u32,
    w_off: u32,
    x_off: u32,
    out_off: u32,
    _pad0: u32,
}

#ifdef W_VEC
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
#else
@group(0) @binding(1) var<storage, read> x: array<f32>;
#endif
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

// Output rows per workgroup (32 lanes each): a tuned parameter (`wgpu.gemv.rows`); every
// value reduces each row the same way, so results do not depend on it.
#ifndef GEMV_ROWS
#define GEMV_ROWS 8
#define GEMV_THREADS 256
#endif
const ROWS: u32 = GEMV_ROWS;
const LANES: u32 = 32u;

var<workgroup> gate: array<f32, GEMV_THREADS>;
var<workgroup> up: array<f32, GEMV_THREADS>;

@compute @workgroup_size(GEMV_THREADS)
fn gate_up(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let id = (wg.x + wg.y * nw.x) * ROWS + t / LANES;
    let lane = t % LANES;
    var g = 0.0;
    var u = 0.0;
    if id < p.m * p.f {
        // The rows of x sharing a weight row are adjacent ids: its weights are read once.
        let row = id / p.m;
        let xrow = p.x_off + (id % p.m) * p.k;
#ifdef W_VEC
        for (var c = lane; c < p.k / 8u; c += LANES) {
            let x0 = x[xrow / 4u + 2u * c];
            let x1 = x[xrow / 4u + 2u * c + 1u];
            let gw = load_w8((p.w_off + row * p.k) / 8u + c);
            let uw = load_w2_8((p.w2_off + row * p.k) / 8u + c);
            g += dot(gw.lo, x0) + dot(gw.hi, x1);
            u += dot(uw.lo, x0) + dot(uw.hi, x1);
        }
#else
        for (var i = lane; i < p.k; i += LANES) {
            let xv = x[xrow + i];
            g += load_w(p.w_off + row * p.k + i) * xv;
            u += load_w2(p.w2_off + row * p.k + i) * xv;
        }
#endif
    }
    gate[t] = g;
    up[t] = u;
    workgroupBarrier();
    for (var s = LANES / 2u; s > 0u; s >>= 1u) {
        if lane < s {
            gate[t] += gate[t + s];
            up[t] += up[t + s];
        }
        workgroupBarrier();
    }
    if lane == 0u && id < p.m * p.f {
        let gv = gate[t];
        out[p.out_off + (id % p.m) * p.f + id / p.m] = (gv / (1.0 + exp(-gv))) * up[t];
    }
}
