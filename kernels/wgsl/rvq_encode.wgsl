// Residual VQ nearest-code search, all levels, ROWS rows of x per workgroup (each code
// vector is read once for all of them). Per level l, sequentially: thread t scans codes
// t, t + 256, ... of E_l and keeps, per row, the first smallest
// dist = max((|r|^2 + |e|^2) - 2 r.e, 1e-8); a tree reduction that prefers the lower index
// on equal distances picks the code; then r -= e and q += e (thread t owns dimension t).
// x [N, D] f32, codebooks [L, K, D] (stored dtype), codes [N, L] u32, quantized [N, D] f32;
// D <= 256 (the residuals live in workgroup memory).
#define W_BINDING 0
#include "weights"

struct Params {
    n: u32,
    d: u32,
    levels: u32,
    k: u32,
    x_off: u32,
    w_off: u32,
    codes_off: u32,
    q_off: u32,
}

@group(0) @binding(1) var<storage, read> x: array<f32>;               // [N, D]
@group(0) @binding(2) var<storage, read_write> codes: array<u32>;     // [N, L]
@group(0) @binding(3) var<storage, read_write> quantized: array<f32>; // [N, D]
@group(0) @binding(4) var<uniform> p: Params;

const THREADS: u32 = 256u;
const ROWS: u32 = 4u;
const MAX_D: u32 = 256u;
const NONE: u32 = 0xffffffffu;

var<workgroup> r_sh: array<f32, 1024>;       // [ROWS][MAX_D] residuals
var<workgroup> rr_sh: array<f32, ROWS>;      // |r|^2 per row
var<workgroup> best_v: array<f32, 1024>;     // [ROWS][THREADS]
var<workgroup> best_i: array<u32, 1024>;     // [ROWS][THREADS]

// (v, i) beats (bv, bi): smaller, or equal with a lower index.
fn better(v: f32, i: u32, bv: f32, bi: u32) -> bool {
    return v < bv || (v == bv && i < bi);
}

@compute @workgroup_size(256)
fn rvq_encode(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let row0 = (wg.x + wg.y * nw.x) * ROWS;
    if row0 >= p.n {
        return;
    }
    let rows = min(ROWS, p.n - row0);
    let d = p.d;
    var q: array<f32, ROWS>;
    for (var r = 0u; r < ROWS; r++) {
        q[r] = 0.0;
        if t < d {
            var v = 0.0;
            if r < rows {
                v = x[p.x_off + (row0 + r) * d + t];
            }
            r_sh[r * MAX_D + t] = v;
        }
    }
    for (var l = 0u; l < p.levels; l++) {
        workgroupBarrier();
        if t < ROWS {
            var rr = 0.0;
            for (var j = 0u; j < d; j++) {
                let v = r_sh[t * MAX_D + j];
                rr += v * v;
            }
            rr_sh[t] = rr;
        }
        workgroupBarrier();
        var bv: array<f32, ROWS>;
        var bi: array<u32, ROWS>;
        for (var r = 0u; r < ROWS; r++) {
            bv[r] = 3.4028235e38;
            bi[r] = NONE;
        }
        let book = p.w_off + l * p.k * d;
        for (var i = t; i < p.k; i += THREADS) {
            var ee = 0.0;
            var re: array<f32, ROWS>;
            for (var r = 0u; r < ROWS; r++) {
                re[r] = 0.0;
            }
            for (var j = 0u; j < d; j++) {
                let e = load_w(book + i * d + j);
                ee += e * e;
                for (var r = 0u; r < ROWS; r++) {
                    re[r] += r_sh[r * MAX_D + j] * e;
                }
            }
            for (var r = 0u; r < ROWS; r++) {
                let dist = max((rr_sh[r] + ee) - 2.0 * re[r], 1e-8);
                if dist < bv[r] {
                    bv[r] = dist;
                    bi[r] = i;
                }
            }
        }
        for (var r = 0u; r < ROWS; r++) {
            best_v[r * THREADS + t] = bv[r];
            best_i[r * THREADS + t] = bi[r];
        }
        workgroupBarrier();
        for (var s = THREADS / 2u; s > 0u; s >>= 1u) {
            if t < s {
                for (var r = 0u; r < ROWS; r++) {
                    let a = r * THREADS + t;
                    if better(best_v[a + s], best_i[a + s], best_v[a], best_i[a]) {
                        best_v[a] = best_v[a + s];
                        best_i[a] = best_i[a + s];
                    }
                }
            }
            workgroupBarrier();
        }
        for (var r = 0u; r < rows; r++) {
            // No finite distance at all (NaN input): code 0, as the CPU backend.
            let code = select(best_i[r * THREADS], 0u, best_i[r * THREADS] == NONE);
            if t < d {
                let e = load_w(book + code * d + t);
                r_sh[r * MAX_D + t] -= e;
                q[r] += e;
            }
            if t == 0u {
                codes[p.codes_off + (row0 + r) * p.levels + l] = code;
            }
        }
    }
    if t < d {
        for (var r = 0u; r < rows; r++) {
            quantized[p.q_off + (row0 + r) * d + t] = q[r];
        }
    }
}
