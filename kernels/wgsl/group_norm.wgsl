// GroupNorm over time-major activations, one workgroup per (batch b, group g): the mean,
// then the biased variance (two passes, tree reductions) over the T x cg elements of the
// group (cg = C / groups channels of every frame), then
// out = ((x - mean) * rstd) * weight[c] + bias[c].
// x, out [B, T, C] f32; weight, bias [C] (stored dtype, both the same).
#define W_BINDING 0
#define W2_BINDING 4
#include "weights"

struct Params {
    batch: u32,
    t: u32,
    c: u32,
    groups: u32,
    eps: f32,
    x_off: u32,
    w_off: u32,
    bias_off: u32,
    out_off: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(1) var<storage, read> x: array<f32>;               // [B, T, C]
@group(0) @binding(2) var<storage, read_write> out: array<f32>;       // [B, T, C]
@group(0) @binding(3) var<uniform> p: Params;

const THREADS: u32 = 256u;

var<workgroup> partial: array<f32, THREADS>;

fn reduce(t: u32, v: f32) -> f32 {
    partial[t] = v;
    workgroupBarrier();
    for (var s = THREADS / 2u; s > 0u; s >>= 1u) {
        if t < s {
            partial[t] += partial[t + s];
        }
        workgroupBarrier();
    }
    let total = partial[0];
    workgroupBarrier();
    return total;
}

@compute @workgroup_size(256)
fn group_norm(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let index = wg.x + wg.y * nw.x;
    if index >= p.batch * p.groups {
        return;
    }
    let b = index / p.groups;
    let cg = p.c / p.groups;
    let c0 = (index % p.groups) * cg;
    let count = p.t * cg;
    // Element e of the group: frame e / cg, channel c0 + e % cg.
    let base = b * p.t * p.c + c0;
    var s = 0.0;
    for (var e = t; e < count; e += THREADS) {
        s += x[p.x_off + base + (e / cg) * p.c + e % cg];
    }
    let mean = reduce(t, s) / f32(count);
    var ss = 0.0;
    for (var e = t; e < count; e += THREADS) {
        let d = x[p.x_off + base + (e / cg) * p.c + e % cg] - mean;
        ss += d * d;
    }
    let rstd = 1.0 / sqrt(reduce(t, ss) / f32(count) + p.eps);
    for (var e = t; e < count; e += THREADS) {
        let ch = c0 + e % cg;
        let at = base + (e / cg) * p.c + e % cg;
        out[p.out_off + at] = ((x[p.x_off + at] - mean) * rstd) * load_w(p.w_off + ch) + load_w2(p.bias_off + ch);
    }
}
