// Time-major 1-D convolutions, one thread per output element (b, j, o).
// x [B, L_in, C_in], w [C_out, K, C_in / groups] (stored dtype), bias [C_out] (same
// dtype), out [B, L_out, C_out].
//   conv1d:           u = x repeated `upsample` times, zero outside; output channel o of
//                     group g = o / (C_out / groups) reads input channels g * cg + i
//                     (cg = C_in / groups);
//                     y = bias + sum_k sum_i w[o,k,i] u[j*stride + k*dilation - pad_left, g*cg + i];
//                     y = prelu(y) if has_prelu; out = y or out += y (accumulate)
//                     (depthwise and narrow groups; wider ones run on gemm.wgsl)
//   conv_transpose1d: y = bias + sum over taps k = phase + m*stride of w[o,k,i] x[(j + pad - k)/stride, i]
#define W_BINDING 0
#ifdef BIAS
#define W2_BINDING 4
#endif
#include "weights"

struct Params {
    batch: u32,
    l_in: u32,
    c_in: u32,
    l_out: u32,
    c_out: u32,
    k: u32,
    dilation: u32,   // conv_transpose1d: stride
    pad_left: u32,   // conv_transpose1d: padding
    upsample: u32,
    has_prelu: u32,
    slope: f32,
    accumulate: u32,
    x_off: u32,
    w_off: u32,
    bias_off: u32,
    out_off: u32,
    stride: u32,     // conv1d only
    groups: u32,     // conv1d only
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

fn index(g: vec3<u32>, nw: vec3<u32>) -> u32 {
    return g.x + g.y * nw.x * 64u;
}

// (output channel, frame, batch) of output element `id`.
fn coords(id: u32) -> vec3<u32> {
    return vec3<u32>(id % p.c_out, (id / p.c_out) % p.l_out, id / (p.c_out * p.l_out));
}

fn bias_of(o: u32) -> f32 {
#ifdef BIAS
    return load_w2(p.bias_off + o);
#else
    return 0.0;
#endif
}

fn dot_row(xrow: u32, wrow: u32, count: u32) -> f32 {
    var acc = 0.0;
    for (var i = 0u; i < count; i++) {
        acc += load_w(wrow + i) * x[xrow + i];
    }
    return acc;
}

@compute @workgroup_size(64)
fn conv1d(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
    let id = index(g, nw);
    if id >= p.batch * p.l_out * p.c_out {
        return;
    }
    let c = coords(id);
    let o = c.x;
    let j = c.y;
    let b = c.z;
    let virtual_len = p.l_in * p.upsample;
    let cg = p.c_in / p.groups;
    let ch0 = (o / (p.c_out / p.groups)) * cg;
    var y = 0.0;
    for (var kk = 0u; kk < p.k; kk++) {
        let shifted = j * p.stride + kk * p.dilation;
        if shifted < p.pad_left || shifted - p.pad_left >= virtual_len {
            continue;
        }
        let t = (shifted - p.pad_left) / p.upsample;
        y += dot_row(p.x_off + (b * p.l_in + t) * p.c_in + ch0, p.w_off + (o * p.k + kk) * cg, cg);
    }
    y += bias_of(o);
    if p.has_prelu != 0u && y < 0.0 {
        y *= p.slope;
    }
    let dst = p.out_off + id;
    out[dst] = select(y, out[dst] + y, p.accumulate != 0u);
}

@compute @workgroup_size(64)
fn conv_transpose1d(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
    let id = index(g, nw);
    if id >= p.batch * p.l_out * p.c_out {
        return;
    }
    let c = coords(id);
    let o = c.x;
    let j = c.y;
    let b = c.z;
    let s = p.dilation;
    let shifted = j + p.pad_left;
    var y = 0.0;
    for (var kk = shifted % s; kk < p.k; kk += s) {
        if kk > shifted {
            break;
        }
        let t = (shifted - kk) / s;
        if t < p.l_in {
            y += dot_row(p.x_off + (b * p.l_in + t) * p.c_in, p.w_off + (o * p.k + kk) * p.c_in, p.c_in);
        }
    }
    out[p.out_off + id] = y + bias_of(o);
}
