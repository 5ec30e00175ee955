// Rotate-half RoPE from a cos/sin table.
// x, out [T, H, D] f32; positions [T] u32; table [P, D] f32 = cos(p.theta_j) | sin(p.theta_j).
struct Params {
    t: u32,
    heads: u32,
    d: u32,
    table_rows: u32,
    x_off: u32,
    pos_off: u32,
    table_off: u32,
    out_off: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> positions: array<u32>;
@group(0) @binding(2) var<storage, read> table: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;

// One thread per rotated pair (t, h, j), j < D/2.
@compute @workgroup_size(64)
fn rope(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
    let half = p.d / 2u;
    let i = g.x + g.y * nw.x * 64u;
    if i >= p.t * p.heads * half {
        return;
    }
    let j = i % half;
    let th = i / half;
    let t = th / p.heads;
    let pos = min(positions[p.pos_off + t], p.table_rows - 1u);
    let c = table[p.table_off + pos * p.d + j];
    let s = table[p.table_off + pos * p.d + half + j];
    let base = th * p.d;
    let a = x[p.x_off + base + j];
    let b = x[p.x_off + base + half + j];
    out[p.out_off + base + j] = a * c - b * s;
    out[p.out_off + base + half + j] = b * c + a * s;
}
