// RMSNorm with f32 statistics: out = x * (1 / sqrt(mean(x^2) + eps)) * weight.
// x, out [R, C] f32; weight w [C] (stored dtype). One workgroup per row.
#define W_BINDING 0
#include "weights"

struct Params {
    rows: u32,
    cols: u32,
    eps: f32,
    w_off: u32,
    x_off: u32,
    out_off: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

var<workgroup> partial: array<f32, 256>;

@compute @workgroup_size(256)
fn rms_norm(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let row = wg.x + wg.y * nw.x;
    if row >= p.rows {
        return;
    }
    let base = p.x_off + row * p.cols;
    var ss = 0.0;
    for (var i = t; i < p.cols; i += 256u) {
        let v = x[base + i];
        ss += v * v;
    }
    partial[t] = ss;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s >>= 1u) {
        if t < s {
            partial[t] += partial[t + s];
        }
        workgroupBarrier();
    }
    let r = 1.0 / sqrt(partial[0] / f32(p.cols) + p.eps);
    for (var i = t; i < p.cols; i += 256u) {
        out[p.out_off + row * p.cols + i] = (x[base + i] * r) * load_w(p.w_off + i);
    }
}
