// Elementwise ops over f32 [R, C] tensors, one thread per element.
//   add:        out = a + b
//   swiglu:     out = silu(a) * b         (a = gate, b = up)
//   guidance:   out = b + scale * (a - b) (a = cond, b = uncond)
//   select_rows: out[r] = mask[r] != 0 ? a[r] : b[r]
// With INPLACE the output is also the first operand `a` (WebGPU forbids binding one
// buffer as both read-only and writable storage in a dispatch).
struct Params {
    n: u32,
    cols: u32,
    scale: f32,
    a_off: u32,
    b_off: u32,
    mask_off: u32,
    out_off: u32,
    _pad0: u32,
}

#ifdef INPLACE
@group(0) @binding(0) var<storage, read_write> out: array<f32>;
fn load_a(i: u32) -> f32 {
    return out[p.out_off + i];
}
#else
@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
fn load_a(i: u32) -> f32 {
    return a[p.a_off + i];
}
#endif
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read> mask: array<u32>;
@group(0) @binding(4) var<uniform> p: Params;

fn index(g: vec3<u32>, nw: vec3<u32>) -> u32 {
    return g.x + g.y * nw.x * 64u;
}

@compute @workgroup_size(64)
fn add(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
    let i = index(g, nw);
    if i < p.n {
        out[p.out_off + i] = load_a(i) + b[p.b_off + i];
    }
}

@compute @workgroup_size(64)
fn swiglu(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
    let i = index(g, nw);
    if i < p.n {
        let x = load_a(i);
        out[p.out_off + i] = (x / (1.0 + exp(-x))) * b[p.b_off + i];
    }
}

@compute @workgroup_size(64)
fn guidance(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
    let i = index(g, nw);
    if i < p.n {
        let u = b[p.b_off + i];
        out[p.out_off + i] = u + p.scale * (load_a(i) - u);
    }
}

@compute @workgroup_size(64)
fn select_rows(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
    let i = index(g, nw);
    if i < p.n {
        let keep_a = mask[p.mask_off + i / p.cols] != 0u;
        out[p.out_off + i] = select(b[p.b_off + i], load_a(i), keep_a);
    }
}
