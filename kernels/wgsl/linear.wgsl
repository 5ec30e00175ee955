// out[M, N] = epilogue(x[M, K] . w[N, K]^T + bias)
//   act: 0 none, 1 tanh-GELU, 2 SiLU, 3 round(levels * y) / levels
//   GATED: out += gate[n] * y instead of storing (the DiT's gated residual)
// Layout as matmul_out_in: a 256-thread workgroup computes 8 outputs, 32 lanes reducing
// one row of w against one row of x. x, out, gate f32; w and bias in their stored dtype
// (the same one: bias binds as the second weight).
#define W_BINDING 0
#ifdef BIAS
#define W2_BINDING 4
#endif
#include "weights"
#include "activations"

struct Params {
    m: u32,
    n: u32,
    k: u32,
    act: u32,
    w_off: u32,
    x_off: u32,
    out_off: u32,
    bias_off: u32,
    gate_off: u32,
    levels: f32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;
#ifdef GATED
@group(0) @binding(5) var<storage, read> gate: array<f32>;
#endif

const ROWS: u32 = 8u;
const LANES: u32 = 32u;

var<workgroup> partial: array<f32, 256>;

@compute @workgroup_size(256)
fn linear(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let group = wg.x + wg.y * nw.x;
    let id = group * ROWS + t / LANES;
    let lane = t % LANES;
    var acc = 0.0;
    if id < p.m * p.n {
        let row = id % p.n;
        let m = id / p.n;
        let wrow = p.w_off + row * p.k;
        let xrow = p.x_off + m * p.k;
        for (var i = lane; i < p.k; i += LANES) {
            acc += load_w(wrow + i) * x[xrow + i];
        }
    }
    partial[t] = acc;
    workgroupBarrier();
    for (var s = LANES / 2u; s > 0u; s >>= 1u) {
        if lane < s {
            partial[t] += partial[t + s];
        }
        workgroupBarrier();
    }
    if lane == 0u && id < p.m * p.n {
        let row = id % p.n;
        let m = id / p.n;
        var y = partial[t];
#ifdef BIAS
        y += load_w2(p.bias_off + row);
#endif
        y = activate(y, p.act, p.levels);
        let o = p.out_off + m * p.n + row;
#ifdef GATED
        out[o] += gate[p.gate_off + row] * y;
#else
        out[o] = y;
#endif
    }
}
