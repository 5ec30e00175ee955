// Argmax and top-k / temperature sampling, one workgroup per row; only ids are written.
// logits [R, C] f32, out [R] u32. The sampling rule and RNG are those of the CPU backend
// (runtime/src/cpu/sample.rs, runtime/src/rng.rs): keep ids >= forbid_below whose scaled
// logit l/T is >= the k-th largest, pick argmax of l/T - ln(-ln U_i).
struct Params {
    rows: u32,
    cols: u32,
    top_k: u32,
    forbid_below: u32,
    temperature: f32,
    seed_lo: u32,
    seed_hi: u32,
    counter_lo: u32,
    counter_hi: u32,
    x_off: u32,
    out_off: u32,
    _pad0: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<u32>;
@group(0) @binding(2) var<uniform> p: Params;

const WG: u32 = 256u;
const NEG_INF: f32 = -3.4028235e38;

var<workgroup> best_v: array<f32, WG>;
var<workgroup> best_i: array<u32, WG>;
var<workgroup> counts: array<u32, WG>;

fn hash32(v: u32) -> u32 {
    var x = v;
    x ^= x >> 16u;
    x *= 0x7feb352du;
    x ^= x >> 15u;
    x *= 0x846ca68bu;
    x ^= x >> 16u;
    return x;
}

fn uniform01(key: u32, index: u32) -> f32 {
    let bits = hash32(key ^ hash32(index + 0x9e3779b9u));
    return f32((bits >> 8u) + 1u) * (1.0 / 16777216.0);
}

// Keeps (v, i) if it beats (bv, bi): larger value, then lower index.
fn better(v: f32, i: u32, bv: f32, bi: u32) -> bool {
    return v > bv || (v == bv && i < bi);
}

fn reduce_best(t: u32) {
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if t < s && better(best_v[t + s], best_i[t + s], best_v[t], best_i[t]) {
            best_v[t] = best_v[t + s];
            best_i[t] = best_i[t + s];
        }
        workgroupBarrier();
    }
}

fn is_nan(v: f32) -> bool {
    return v != v;
}

@compute @workgroup_size(256)
fn argmax(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let row = wg.x + wg.y * nw.x;
    if row >= p.rows {
        return;
    }
    // NaN ranks above every number (as torch.argmax): map it to +inf-plus via a flag.
    var bv = NEG_INF;
    var bi = 0xffffffffu;
    var nan_i = 0xffffffffu;
    for (var i = t; i < p.cols; i += WG) {
        let v = x[p.x_off + row * p.cols + i];
        if is_nan(v) {
            nan_i = min(nan_i, i);
        } else if better(v, i, bv, bi) {
            bv = v;
            bi = i;
        }
    }
    if nan_i != 0xffffffffu {
        bv = 3.4028235e38;
        bi = nan_i;
    }
    best_v[t] = bv;
    best_i[t] = bi;
    workgroupBarrier();
    reduce_best(t);
    if t == 0u {
        out[p.out_off + row] = select(best_i[0], 0u, best_i[0] == 0xffffffffu);
    }
}

fn scaled(row: u32, i: u32) -> f32 {
    let v = x[p.x_off + row * p.cols + i];
    if is_nan(v) {
        return NEG_INF;
    }
    return v / p.temperature;
}

// Order-preserving map of f32 to u32.
fn key_of(v: f32) -> u32 {
    let b = bitcast<u32>(v);
    return select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}

@compute @workgroup_size(256)
fn top_k_sample(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let row = wg.x + wg.y * nw.x;
    if row >= p.rows {
        return;
    }
    let start = p.forbid_below;
    let count = p.cols - start;
    // Threshold: the largest key K with at least top_k keys >= K (binary search on bits).
    var threshold = 0u;
    if p.top_k != 0u && p.top_k < count {
        var lo = 0u;
        var hi = 0xffffffffu;
        for (var it = 0u; it < 32u; it++) {
            let mid = lo + (hi - lo) / 2u + (hi - lo) % 2u;
            var c = 0u;
            for (var i = start + t; i < p.cols; i += WG) {
                c += select(0u, 1u, key_of(scaled(row, i)) >= mid);
            }
            counts[t] = c;
            workgroupBarrier();
            for (var s = WG / 2u; s > 0u; s >>= 1u) {
                if t < s {
                    counts[t] += counts[t + s];
                }
                workgroupBarrier();
            }
            // A uniform load keeps the loop's control flow uniform across the workgroup.
            let total = workgroupUniformLoad(&counts[0]);
            if total >= p.top_k {
                lo = mid;
            } else {
                hi = mid - 1u;
            }
            if lo == hi {
                break;
            }
        }
        threshold = lo;
    }
    let greedy = p.top_k == 1u;
    let k0 = hash32(p.seed_lo ^ hash32(p.seed_hi));
    let counter = p.counter_lo + row;
    let carry = select(0u, 1u, counter < p.counter_lo);
    let k1 = hash32(k0 ^ counter);
    let key = hash32(k1 ^ hash32(p.counter_hi + carry));
    var bv = NEG_INF;
    var bi = 0xffffffffu;
    for (var i = start + t; i < p.cols; i += WG) {
        let l = scaled(row, i);
        if greedy {
            if better(l, i, bv, bi) {
                bv = l;
                bi = i;
            }
        } else if key_of(l) >= threshold && l > NEG_INF {
            let e = -log(uniform01(key, i));
            let score = l - log(e);
            if better(score, i, bv, bi) {
                bv = score;
                bi = i;
            }
        }
    }
    best_v[t] = bv;
    best_i[t] = bi;
    workgroupBarrier();
    reduce_best(t);
    if t == 0u {
        out[p.out_off + row] = select(best_i[0], start, best_i[0] == 0xffffffffu);
    }
}
