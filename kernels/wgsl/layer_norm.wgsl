// LayerNorm without affine (biased variance, two passes), then modulation:
// out = (x - mean) * rsqrt(var + eps) * (1 + scale) + shift.  x, out [R, C]; shift,
// scale [C]. One workgroup per row.
struct Params {
    rows: u32,
    cols: u32,
    eps: f32,
    x_off: u32,
    shift_off: u32,
    scale_off: u32,
    out_off: u32,
    _pad0: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> shift: array<f32>;
@group(0) @binding(2) var<storage, read> scale: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;

var<workgroup> partial: array<f32, 256>;

fn reduce(t: u32, v: f32) -> f32 {
    partial[t] = v;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s >>= 1u) {
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
fn layer_norm_modulate(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let row = wg.x + wg.y * nw.x;
    if row >= p.rows {
        return;
    }
    let base = p.x_off + row * p.cols;
    var s = 0.0;
    for (var i = t; i < p.cols; i += 256u) {
        s += x[base + i];
    }
    let mean = reduce(t, s) / f32(p.cols);
    var ss = 0.0;
    for (var i = t; i < p.cols; i += 256u) {
        let d = x[base + i] - mean;
        ss += d * d;
    }
    let rstd = 1.0 / sqrt(reduce(t, ss) / f32(p.cols) + p.eps);
    for (var i = t; i < p.cols; i += 256u) {
        let n = (x[base + i] - mean) * rstd;
        out[p.out_off + row * p.cols + i] = n * (1.0 + scale[p.scale_off + i]) + shift[p.shift_off + i];
    }
}
