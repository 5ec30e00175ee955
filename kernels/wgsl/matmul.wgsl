// out[M, N] (+)= x[M, K] . W
//   matmul_out_in: W = w [N, K] (nn.Linear); a workgroup of GEMV_ROWS x 32 threads (8 x 32 by default) computes GEMV_ROWS output
//                  elements, 32 threads reducing each row of W against a row of x
//                  (decode GEMV streams W once).
//   matmul_in_out: W = w [K, N]; one thread per output element, threads adjacent in N
//                  read adjacent weights.
// x, out f32; w in its stored dtype. Weights larger than one storage binding run as
// several dispatches over bound ranges: out_stride and x_stride keep the full row pitch.
// SUBGROUPS (set when the device has the SUBGROUP feature; naga needs no `enable`).
// W_VEC (matmul_out_in, K and offsets multiples of 8): each lane reads 8 weights and 8
// activations per step with 16-byte loads.
#define W_BINDING 0
#include "weights"

struct Params {
    m: u32,
    n: u32,
    k: u32,
    accumulate: u32,
    w_off: u32,
    x_off: u32,
    out_off: u32,
    out_stride: u32,
    x_stride: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
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

var<workgroup> partial: array<f32, GEMV_THREADS>;

// Row `id` of this thread's 32-lane group: the dot product's lane-strided share.
fn lane_dot(id: u32, lane: u32) -> f32 {
    var acc = 0.0;
    if id < p.m * p.n {
        // The rows of x sharing a weight row are adjacent ids: its weights are read once.
        let row = id / p.m;
        let m = id % p.m;
        let wrow = p.w_off + row * p.k;
        let xrow = p.x_off + m * p.x_stride;
#ifdef W_VEC
        for (var c = lane; c < p.k / 8u; c += LANES) {
            let wv = load_w8(wrow / 8u + c);
            let xi = xrow / 4u + 2u * c;
            acc += dot(wv.lo, x[xi]) + dot(wv.hi, x[xi + 1u]);
        }
#else
        for (var i = lane; i < p.k; i += LANES) {
            acc += load_w(wrow + i) * x[xrow + i];
        }
#endif
    }
    return acc;
}

fn store_row(id: u32, total: f32) {
    let row = id / p.m;
    let m = id % p.m;
    let o = p.out_off + m * p.out_stride + row;
    out[o] = select(0.0, out[o], p.accumulate != 0u) + total;
}

#ifdef SUBGROUPS
// subgroupAdd reduces each subgroup in registers; the (32 / subgroup size) partial sums
// of a row meet in workgroup memory. Subgroups wider than a row's 32 lanes take the
// workgroup-memory tree instead.
@compute @workgroup_size(GEMV_THREADS)
fn matmul_out_in(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>, @builtin(local_invocation_index) t: u32,
                 @builtin(subgroup_size) sg_size: u32, @builtin(subgroup_invocation_id) sg_lane: u32) {
    let group = wg.x + wg.y * nw.x;
    let id = group * ROWS + t / LANES;
    let lane = t % LANES;
    let acc = lane_dot(id, lane);
    if sg_size <= LANES {
        let s = subgroupAdd(acc);
        if sg_lane == 0u {
            partial[t / sg_size] = s;
        }
        workgroupBarrier();
        if lane == 0u && id < p.m * p.n {
            let per_row = LANES / sg_size;
            let first = (t / LANES) * per_row;
            var total = 0.0;
            for (var i = 0u; i < per_row; i++) {
                total += partial[first + i];
            }
            store_row(id, total);
        }
        return;
    }
    tree_reduce(t, lane, id, acc);
}
#else
@compute @workgroup_size(GEMV_THREADS)
fn matmul_out_in(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let group = wg.x + wg.y * nw.x;
    let id = group * ROWS + t / LANES;
    let lane = t % LANES;
    tree_reduce(t, lane, id, lane_dot(id, lane));
}
#endif

// Workgroup-memory reduction of each row's 32 lanes.
fn tree_reduce(t: u32, lane: u32, id: u32, acc: f32) {
    partial[t] = acc;
    workgroupBarrier();
    for (var s = LANES / 2u; s > 0u; s >>= 1u) {
        if lane < s {
            partial[t] += partial[t + s];
        }
        workgroupBarrier();
    }
    if lane == 0u && id < p.m * p.n {
        store_row(id, partial[t]);
    }
}

#ifndef W_VEC
@compute @workgroup_size(64)
fn matmul_in_out(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
    let id = g.x + g.y * nw.x * 64u;
    if id >= p.m * p.n {
        return;
    }
    let col = id % p.n;
    let m = id / p.n;
    var acc = 0.0;
    for (var i = 0u; i < p.k; i++) {
        acc += x[p.x_off + m * p.x_stride + i] * load_w(p.w_off + i * p.n + col);
    }
    let o = p.out_off + m * p.out_stride + col;
    out[o] = select(0.0, out[o], p.accumulate != 0u) + acc;
}
#endif
