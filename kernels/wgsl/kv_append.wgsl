// cache[g, positions[t], :] = src[t, g, :] for K and V. With ROPE, K is rotated
// (rotate-half, table [P, D] = cos | sin) on its way into the cache.
// k, v [T, G, D] f32; k_cache, v_cache [G, capacity, D] f32; positions [T] u32.
struct Params {
    t: u32,
    groups: u32,
    d: u32,
    capacity: u32,
    k_off: u32,
    v_off: u32,
    pos_off: u32,
    kc_off: u32,
    vc_off: u32,
    table_off: u32,
    table_rows: u32,
    _pad0: u32,
}

@group(0) @binding(0) var<storage, read> k: array<f32>;
@group(0) @binding(1) var<storage, read> v: array<f32>;
@group(0) @binding(2) var<storage, read> positions: array<u32>;
@group(0) @binding(3) var<storage, read_write> k_cache: array<f32>;
@group(0) @binding(4) var<storage, read_write> v_cache: array<f32>;
@group(0) @binding(5) var<uniform> p: Params;
#ifdef ROPE
@group(0) @binding(6) var<storage, read> table: array<f32>;
#endif

@compute @workgroup_size(64)
fn kv_append(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
    let i = gid.x + gid.y * nw.x * 64u;
    if i >= p.t * p.groups * p.d {
        return;
    }
    let e = i % p.d;
    let g = (i / p.d) % p.groups;
    let t = i / (p.d * p.groups);
    let pos = positions[p.pos_off + t];
    // Positions are validated on the host; a bad one writes nothing.
    if pos >= p.capacity {
        return;
    }
    let dst = (g * p.capacity + pos) * p.d + e;
#ifdef ROPE
    if pos >= p.table_rows {
        return;
    }
    let half = p.d / 2u;
    let j = e % half;
    let row = i - e;
    let a = k[p.k_off + row + j];
    let b = k[p.k_off + row + j + half];
    let c = table[p.table_off + pos * p.d + j];
    let s = table[p.table_off + pos * p.d + half + j];
    k_cache[p.kc_off + dst] = select(b * c + a * s, a * c - b * s, e < half);
#else
    k_cache[p.kc_off + dst] = k[p.k_off + i];
#endif
    v_cache[p.vc_off + dst] = v[p.v_off + i];
}
