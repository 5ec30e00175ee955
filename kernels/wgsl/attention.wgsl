// Grouped-query attention over a KV cache, one workgroup per (query t, head h):
// keys are processed in chunks of 128 with an online softmax; thread e owns output
// dimensions e, e + 128, ...
// q, out [T, H, D] f32; k_cache, v_cache [G, capacity, D] f32; g = h / (H / G).
// Causal: query t sits at position kv_len - T + t and sees keys 0..=that position.
// (`splits` and `span` are used by the split-KV entry points below.)
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
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read> q: array<f32>;
@group(0) @binding(1) var<storage, read> k_cache: array<f32>;
@group(0) @binding(2) var<storage, read> v_cache: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;

const CHUNK: u32 = 128u;
const MAX_D: u32 = 256u;

var<workgroup> q_sh: array<f32, MAX_D>;
var<workgroup> scores: array<f32, CHUNK>;
var<workgroup> red: array<f32, CHUNK>;

// Online softmax of one (query row, head) over keys begin..end: running max, sum and the
// unnormalised output dimensions e and e + CHUNK. q_sh must hold the query.
struct Partial {
    m: f32,
    sum: f32,
    acc0: f32,
    acc1: f32,
}

fn attend(g: u32, begin: u32, end: u32, e: u32) -> Partial {
    let base = g * p.capacity * p.d;
    var r = Partial(-3.4028235e38, 0.0, 0.0, 0.0);
    for (var c0 = begin; c0 < end; c0 += CHUNK) {
        let n = min(CHUNK, end - c0);
        var s = -3.4028235e38;
        if e < n {
            var dot = 0.0;
            let kb = p.kc_off + base + (c0 + e) * p.d;
            for (var i = 0u; i < p.d; i++) {
                dot += q_sh[i] * k_cache[kb + i];
            }
            s = dot * p.scale;
        }
        scores[e] = s;
        red[e] = s;
        workgroupBarrier();
        for (var st = CHUNK / 2u; st > 0u; st >>= 1u) {
            if e < st {
                red[e] = max(red[e], red[e + st]);
            }
            workgroupBarrier();
        }
        let m_new = max(r.m, red[0]);
        let alpha = exp(r.m - m_new);
        r.sum *= alpha;
        r.acc0 *= alpha;
        r.acc1 *= alpha;
        for (var j = 0u; j < n; j++) {
            let pj = exp(scores[j] - m_new);
            r.sum += pj;
            let vb = p.vc_off + base + (c0 + j) * p.d;
            if e < p.d {
                r.acc0 += pj * v_cache[vb + e];
            }
            if e + CHUNK < p.d {
                r.acc1 += pj * v_cache[vb + e + CHUNK];
            }
        }
        r.m = m_new;
        workgroupBarrier();
    }
    return r;
}

// Keys visible to query t, after loading its row into q_sh.
fn load_query(row: u32, t: u32, e: u32) -> u32 {
    for (var i = e; i < p.d; i += CHUNK) {
        q_sh[i] = q[p.q_off + row * p.d + i];
    }
    workgroupBarrier();
    if p.causal != 0u {
        return p.kv_len - p.t + t + 1u;
    }
    return p.kv_len;
}

@compute @workgroup_size(128)
fn attention(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>, @builtin(local_invocation_index) e: u32) {
    let row = wg.x + wg.y * nw.x;
    if row >= p.t * p.heads {
        return;
    }
    let t = row / p.heads;
    let h = row % p.heads;
    let visible = load_query(row, t, e);
    let r = attend(h / (p.heads / p.groups), 0u, visible, e);
    if e < p.d {
        out[p.out_off + row * p.d + e] = r.acc0 / r.sum;
    }
    if e + CHUNK < p.d {
        out[p.out_off + row * p.d + e + CHUNK] = r.acc1 / r.sum;
    }
}

// Split-KV decode attention (flash-decoding) for few queries over long caches.
// attention_split: one workgroup per (query, head, split) over `span` keys; writes its
// running max, sum and unnormalised output to part[(row * splits + s) * (d + 2)].
// attention_combine: one workgroup per (query, head) rescales and sums the splits.
#ifdef SPLIT
@group(0) @binding(5) var<storage, read_write> part: array<f32>;

@compute @workgroup_size(128)
fn attention_split(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>, @builtin(local_invocation_index) e: u32) {
    let blk = wg.x + wg.y * nw.x;
    if blk >= p.t * p.heads * p.splits {
        return;
    }
    let split = blk % p.splits;
    let row = blk / p.splits;
    let t = row / p.heads;
    let h = row % p.heads;
    let visible = load_query(row, t, e);
    let begin = split * p.span;
    let r = attend(h / (p.heads / p.groups), begin, min(visible, begin + p.span), e);
    let o = blk * (p.d + 2u);
    if e < p.d {
        part[o + e] = r.acc0;
    }
    if e + CHUNK < p.d {
        part[o + e + CHUNK] = r.acc1;
    }
    if e == 0u {
        part[o + p.d] = r.m;
        part[o + p.d + 1u] = r.sum;
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
    var m = -3.4028235e38;
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
    for (var i = e; i < p.d; i += CHUNK) {
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
