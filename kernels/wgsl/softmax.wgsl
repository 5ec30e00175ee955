// Row-wise softmax, one workgroup per row. x, out [R, C] f32 (INPLACE: out only).
struct Params {
    rows: u32,
    cols: u32,
    x_off: u32,
    out_off: u32,
}

#ifdef INPLACE
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
fn load_x(i: u32) -> f32 {
    return out[p.out_off + i];
}
#else
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
fn load_x(i: u32) -> f32 {
    return x[p.x_off + i];
}
#endif
@group(0) @binding(2) var<uniform> p: Params;

var<workgroup> red: array<f32, 256>;

@compute @workgroup_size(256)
fn softmax(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let row = wg.x + wg.y * nw.x;
    if row >= p.rows {
        return;
    }
    let base = row * p.cols;
    var m = -3.4028235e38;
    for (var i = t; i < p.cols; i += 256u) {
        m = max(m, load_x(base + i));
    }
    red[t] = m;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s >>= 1u) {
        if t < s {
            red[t] = max(red[t], red[t + s]);
        }
        workgroupBarrier();
    }
    let mx = red[0];
    workgroupBarrier();
    var sum = 0.0;
    for (var i = t; i < p.cols; i += 256u) {
        sum += exp(load_x(base + i) - mx);
    }
    red[t] = sum;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s >>= 1u) {
        if t < s {
            red[t] += red[t + s];
        }
        workgroupBarrier();
    }
    let total = red[0];
    for (var i = t; i < p.cols; i += 256u) {
        out[p.out_off + base + i] = exp(load_x(base + i) - mx) / total;
    }
}
