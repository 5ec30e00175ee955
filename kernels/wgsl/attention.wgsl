// Grouped-query attention over a KV cache, GQA-aware and tiled: one workgroup takes a
// block of `qb` query rows of one KV group g (row r of the group is query t = r / rep,
// head g * rep + r % rep, rep = H / G), so each K and V row is read once for all the
// heads that share it, for decode (the group's heads) and prefill (several queries).
// Keys go through workgroup memory `tk` at a time (rows padded to d + 1 floats, so the
// per-key dot products of neighbouring threads hit distinct banks) with an online softmax per row;
// thread e accumulates output dimensions e and e + 128 of every row of the block.
// q, out [T, H, D] f32; k_cache, v_cache [G, capacity, D] f32; D <= 256.
// Causal: query t sits at position kv_len - T + t and sees keys 0..=that position.
// SPLIT (flash-decoding): workgroup (block, split) covers keys split * span ..
// (split + 1) * span and writes its running max, sum and unnormalised output to
// part[(row * splits + split) * (d + 2)] (row = t * H + h); attention_combine rescales
// and sums the splits of each row.
struct Params {
    t: u32,
    heads: u32,
    groups: u32,
    d: u32,
    capacity: u32,
    kv_len: u32,
    causal: u32,
    scale: f32,
    q_off: u32,
    kc_off: u32,
    vc_off: u32,
    out_off: u32,
    splits: u32,
    span: u32,
    // Query rows per workgroup (qb * d <= Q_TILE) and keys per tile (tk * (d + 1) <= KV_TILE,
    // qb * tk <= S_TILE).
    qb: u32,
    tk: u32,
}

@group(0) @binding(0) var<storage, read> q: array<f32>;
@group(0) @binding(1) var<storage, read> k_cache: array<f32>;
@group(0) @binding(2) var<storage, read> v_cache: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;

const THREADS: u32 = 128u;
const Q_TILE: u32 = 2048u;
const KV_TILE: u32 = 1536u;
const S_TILE: u32 = 256u;
const MAX_QB: u32 = 16u;
const NEG: f32 = -3.4028235e38;

var<workgroup> q_sh: array<f32, Q_TILE>;
var<workgroup> kv_sh: array<f32, KV_TILE>;
var<workgroup> s_sh: array<f32, S_TILE>;
var<workgroup> m_sh: array<f32, MAX_QB>;
var<workgroup> l_sh: array<f32, MAX_QB>;
var<workgroup> alpha_sh: array<f32, MAX_QB>;

struct Block {
    g: u32,
    // First row of the block within its group, and how many rows it holds.
    first: u32,
    rows: u32,
}

fn block_of(index: u32) -> Block {
    let rep = p.heads / p.groups;
    let per_group = (p.t * rep + p.qb - 1u) / p.qb;
    let g = index / per_group;
    let first = (index % per_group) * p.qb;
    return Block(g, first, min(p.qb, p.t * rep - first));
}

// Row r of block b as (query t, head h).
fn query_of(b: Block, r: u32) -> vec2<u32> {
    let rep = p.heads / p.groups;
    let flat = b.first + r;
    return vec2<u32>(flat / rep, b.g * rep + flat % rep);
}

fn visible(t: u32) -> u32 {
    if p.causal != 0u {
        return p.kv_len - p.t + t + 1u;
    }
    return p.kv_len;
}

struct Acc {
    a0: array<f32, MAX_QB>,
    a1: array<f32, MAX_QB>,
}

// Online softmax of every row of block b over keys begin..end (each row clipped to what
// it sees). Leaves each row's max and sum in m_sh / l_sh; returns e's output dimensions.
fn attend(b: Block, begin: u32, end: u32, e: u32) -> Acc {
    var acc: Acc;
    for (var r = 0u; r < MAX_QB; r++) {
        acc.a0[r] = 0.0;
        acc.a1[r] = 0.0;
    }
    let d = p.d;
    let pitch = d + 1u;
    for (var i = e; i < b.rows * d; i += THREADS) {
        let qt = query_of(b, i / d);
        q_sh[i] = q[p.q_off + (qt.x * p.heads + qt.y) * d + i % d];
    }
    if e < b.rows {
        m_sh[e] = NEG;
        l_sh[e] = 0.0;
    }
    let base = b.g * p.capacity * d;
    for (var c0 = begin; c0 < end; c0 += p.tk) {
        let n = min(p.tk, end - c0);
        workgroupBarrier();
        for (var i = e; i < n * d; i += THREADS) {
            kv_sh[(i / d) * pitch + i % d] = k_cache[p.kc_off + base + c0 * d + i];
        }
        workgroupBarrier();
        for (var i = e; i < b.rows * p.tk; i += THREADS) {
            let r = i / p.tk;
            let j = i % p.tk;
            var s = NEG;
            if j < n && c0 + j < visible(query_of(b, r).x) {
                var dot = 0.0;
                for (var k = 0u; k < d; k++) {
                    dot += q_sh[r * d + k] * kv_sh[j * pitch + k];
                }
                s = dot * p.scale;
            }
            s_sh[i] = s;
        }
        workgroupBarrier();
        if e < b.rows {
            var mx = m_sh[e];
            for (var j = 0u; j < n; j++) {
                mx = max(mx, s_sh[e * p.tk + j]);
            }
            let alpha = exp(m_sh[e] - mx);
            var sum = l_sh[e] * alpha;
            for (var j = 0u; j < n; j++) {
                let s = s_sh[e * p.tk + j];
                let pj = select(0.0, exp(s - mx), s > NEG);
                s_sh[e * p.tk + j] = pj;
                sum += pj;
            }
            m_sh[e] = mx;
            l_sh[e] = sum;
            alpha_sh[e] = alpha;
        }
        for (var i = e; i < n * d; i += THREADS) {
            kv_sh[(i / d) * pitch + i % d] = v_cache[p.vc_off + base + c0 * d + i];
        }
        workgroupBarrier();
        for (var r = 0u; r < b.rows; r++) {
            var a0 = acc.a0[r] * alpha_sh[r];
            var a1 = acc.a1[r] * alpha_sh[r];
            for (var j = 0u; j < n; j++) {
                let pj = s_sh[r * p.tk + j];
                if e < d {
                    a0 += pj * kv_sh[j * pitch + e];
                }
                if e + THREADS < d {
                    a1 += pj * kv_sh[j * pitch + e + THREADS];
                }
            }
            acc.a0[r] = a0;
            acc.a1[r] = a1;
        }
    }
    workgroupBarrier();
    return acc;
}

// Keys the block's rows see together (its last row sees the most).
fn block_end(b: Block) -> u32 {
    return visible(query_of(b, b.rows - 1u).x);
}

#ifndef SPLIT
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(128)
fn attention(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>, @builtin(local_invocation_index) e: u32) {
    let index = wg.x + wg.y * nw.x;
    let rep = p.heads / p.groups;
    if index >= p.groups * ((p.t * rep + p.qb - 1u) / p.qb) {
        return;
    }
    let b = block_of(index);
    let acc = attend(b, 0u, block_end(b), e);
    for (var r = 0u; r < b.rows; r++) {
        let qt = query_of(b, r);
        let o = p.out_off + (qt.x * p.heads + qt.y) * p.d;
        let inv = 1.0 / l_sh[r];
        if e < p.d {
            out[o + e] = acc.a0[r] * inv;
        }
        if e + THREADS < p.d {
            out[o + e + THREADS] = acc.a1[r] * inv;
        }
    }
}
#else
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<storage, read_write> part: array<f32>;

@compute @workgroup_size(128)
fn attention_split(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>, @builtin(local_invocation_index) e: u32) {
    let index = wg.x + wg.y * nw.x;
    let rep = p.heads / p.groups;
    if index >= p.groups * ((p.t * rep + p.qb - 1u) / p.qb) * p.splits {
        return;
    }
    let split = index % p.splits;
    let b = block_of(index / p.splits);
    let begin = split * p.span;
    let acc = attend(b, begin, min(block_end(b), begin + p.span), e);
    let stride = p.d + 2u;
    for (var r = 0u; r < b.rows; r++) {
        let qt = query_of(b, r);
        let o = ((qt.x * p.heads + qt.y) * p.splits + split) * stride;
        if e < p.d {
            part[o + e] = acc.a0[r];
        }
        if e + THREADS < p.d {
            part[o + e + THREADS] = acc.a1[r];
        }
        if e == 0u {
            part[o + p.d] = m_sh[r];
            part[o + p.d + 1u] = l_sh[r];
        }
    }
}

@compute @workgroup_size(128)
fn attention_combine(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>, @builtin(local_invocation_index) e: u32) {
    let row = wg.x + wg.y * nw.x;
    if row >= p.t * p.heads {
        return;
    }
    let stride = p.d + 2u;
    let base = row * p.splits * stride;
    var m = NEG;
    for (var s = 0u; s < p.splits; s++) {
        if part[base + s * stride + p.d + 1u] > 0.0 {
            m = max(m, part[base + s * stride + p.d]);
        }
    }
    var total = 0.0;
    for (var s = 0u; s < p.splits; s++) {
        let l = part[base + s * stride + p.d + 1u];
        if l > 0.0 {
            total += l * exp(part[base + s * stride + p.d] - m);
        }
    }
    for (var i = e; i < p.d; i += THREADS) {
        var acc = 0.0;
        for (var s = 0u; s < p.splits; s++) {
            let ps = base + s * stride;
            if part[ps + p.d + 1u] > 0.0 {
                acc += part[ps + i] * exp(part[ps + p.d] - m);
            }
        }
        out[p.out_off + row * p.d + i] = acc / total;
    }
}
#endif
