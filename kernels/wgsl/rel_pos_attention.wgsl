// WavLM's bidirectional self-attention with a gated relative position bias, tiled as
// attention.wgsl: a workgroup takes `qb` consecutive queries of one head h; keys go through
// workgroup memory `tk` at a time (rows padded to d + 1 floats) with an online softmax per
// query; thread e accumulates output dimensions e and e + 128 of every query of the block.
//   logits[i, j] = q_i . k_j * scale + g_i * rel[h, j - i + T - 1], over all T keys;
//   g_i = sigmoid(z0 + z1 + z2 + z3) * (sigmoid(z4 + .. + z7) * gate_const[h] - 1) + 2,
//   z = gate[i, h, :].
// q, k, v, out [T, H, D] f32 (D <= 256); gate [T, H, 8]; gate_const [H]; rel [H, 2T - 1].
struct Params {
    t: u32,
    heads: u32,
    d: u32,
    // Queries per workgroup (qb * d <= Q_TILE) and keys per tile (tk * (d + 1) <= KV_TILE,
    // qb * tk <= S_TILE).
    qb: u32,
    tk: u32,
    scale: f32,
    q_off: u32,
    k_off: u32,
    v_off: u32,
    gate_off: u32,
    gc_off: u32,
    rel_off: u32,
    out_off: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read> q: array<f32>;            // [T, H, D]
@group(0) @binding(1) var<storage, read> k: array<f32>;            // [T, H, D]
@group(0) @binding(2) var<storage, read> v: array<f32>;            // [T, H, D]
@group(0) @binding(3) var<storage, read> gate: array<f32>;         // [T, H, 8]
@group(0) @binding(4) var<storage, read> gate_const: array<f32>;   // [H]
@group(0) @binding(5) var<storage, read> rel: array<f32>;          // [H, 2T - 1]
@group(0) @binding(6) var<storage, read_write> out: array<f32>;    // [T, H, D]
@group(0) @binding(7) var<uniform> p: Params;

const THREADS: u32 = 128u;
const Q_TILE: u32 = 2048u;
const KV_TILE: u32 = 1536u;
const S_TILE: u32 = 256u;
const MAX_QB: u32 = 16u;
const NEG: f32 = -3.4028235e38;

var<workgroup> q_sh: array<f32, Q_TILE>;
var<workgroup> kv_sh: array<f32, KV_TILE>;
var<workgroup> s_sh: array<f32, S_TILE>;
var<workgroup> g_sh: array<f32, MAX_QB>;
var<workgroup> m_sh: array<f32, MAX_QB>;
var<workgroup> l_sh: array<f32, MAX_QB>;
var<workgroup> alpha_sh: array<f32, MAX_QB>;

fn sigmoid(x: f32) -> f32 {
    return 1.0 / (1.0 + exp(-x));
}

@compute @workgroup_size(128)
fn rel_pos_attention(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>, @builtin(local_invocation_index) e: u32) {
    let index = wg.x + wg.y * nw.x;
    let blocks = (p.t + p.qb - 1u) / p.qb;
    if index >= blocks * p.heads {
        return;
    }
    // Head-major, so neighbouring workgroups read the same head's keys.
    let h = index / blocks;
    let i0 = (index % blocks) * p.qb;
    let rows = min(p.qb, p.t - i0);
    let d = p.d;
    let pitch = d + 1u;
    let hd = p.heads * d;
    for (var i = e; i < rows * d; i += THREADS) {
        q_sh[i] = q[p.q_off + (i0 + i / d) * hd + h * d + i % d];
    }
    if e < rows {
        let z = p.gate_off + ((i0 + e) * p.heads + h) * 8u;
        let ga = sigmoid(gate[z] + gate[z + 1u] + gate[z + 2u] + gate[z + 3u]);
        let gb = sigmoid(gate[z + 4u] + gate[z + 5u] + gate[z + 6u] + gate[z + 7u]);
        g_sh[e] = ga * (gb * gate_const[p.gc_off + h] - 1.0) + 2.0;
        m_sh[e] = NEG;
        l_sh[e] = 0.0;
    }
    var a0: array<f32, MAX_QB>;
    var a1: array<f32, MAX_QB>;
    // rel[h, j - i + T - 1] = rel[diag + j - i].
    let diag = p.rel_off + h * (2u * p.t - 1u) + p.t - 1u;
    for (var c0 = 0u; c0 < p.t; c0 += p.tk) {
        let n = min(p.tk, p.t - c0);
        workgroupBarrier();
        for (var i = e; i < n * d; i += THREADS) {
            kv_sh[(i / d) * pitch + i % d] = k[p.k_off + (c0 + i / d) * hd + h * d + i % d];
        }
        workgroupBarrier();
        for (var i = e; i < rows * p.tk; i += THREADS) {
            let r = i / p.tk;
            let j = i % p.tk;
            var s = NEG;
            if j < n {
                var dot = 0.0;
                for (var kk = 0u; kk < d; kk++) {
                    dot += q_sh[r * d + kk] * kv_sh[j * pitch + kk];
                }
                s = dot * p.scale + g_sh[r] * rel[diag + c0 + j - (i0 + r)];
            }
            s_sh[i] = s;
        }
        workgroupBarrier();
        if e < rows {
            var mx = m_sh[e];
            for (var j = 0u; j < n; j++) {
                mx = max(mx, s_sh[e * p.tk + j]);
            }
            let alpha = exp(m_sh[e] - mx);
            var sum = l_sh[e] * alpha;
            for (var j = 0u; j < n; j++) {
                let pj = exp(s_sh[e * p.tk + j] - mx);
                s_sh[e * p.tk + j] = pj;
                sum += pj;
            }
            m_sh[e] = mx;
            l_sh[e] = sum;
            alpha_sh[e] = alpha;
        }
        for (var i = e; i < n * d; i += THREADS) {
            kv_sh[(i / d) * pitch + i % d] = v[p.v_off + (c0 + i / d) * hd + h * d + i % d];
        }
        workgroupBarrier();
        for (var r = 0u; r < rows; r++) {
            var x0 = a0[r] * alpha_sh[r];
            var x1 = a1[r] * alpha_sh[r];
            for (var j = 0u; j < n; j++) {
                let pj = s_sh[r * p.tk + j];
                if e < d {
                    x0 += pj * kv_sh[j * pitch + e];
                }
                if e + THREADS < d {
                    x1 += pj * kv_sh[j * pitch + e + THREADS];
                }
            }
            a0[r] = x0;
            a1[r] = x1;
        }
    }
    workgroupBarrier();
    for (var r = 0u; r < rows; r++) {
        let o = p.out_off + (i0 + r) * hd + h * d;
        let inv = 1.0 / l_sh[r];
        if e < d {
            out[o + e] = a0[r] * inv;
        }
        if e + THREADS < d {
            out[o + e + THREADS] = a1[r] * inv;
        }
    }
}
