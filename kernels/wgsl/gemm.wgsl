// Register-tiled GEMM for many rows: out[M, N] = epilogue(A[M, K] . w[N, K]^T + bias).
// A 16x16-thread workgroup computes a 64x64 output tile, 4x4 outputs per thread (rows and
// columns strided by 16 so neighbouring threads touch neighbouring addresses), staging
// 64x16 slices of A and w in workgroup memory.
//   linear: A = x [M, K]; `act` (0 none, 1 tanh-GELU, 2 SiLU, 3 round to levels) or, with
//           GATED, out += gate[n] * y; also matmul's prefill (accumulate).
//   CONV:   A is the implicit im2col of a time-major conv1d: row = (b, j), column =
//           (tap, c_in), A = x[b, (j + tap*dilation - pad_left) / upsample, c_in] or 0;
//           epilogue bias, PReLU, accumulate. w is [C_out, K * C_in].
#define W_BINDING 0
#ifdef BIAS
#define W2_BINDING 4
#endif
#include "weights"
#include "activations"

struct Params {
    m: u32,
    n: u32,
    k: u32,
    act: u32,          // CONV: 1 = PReLU with `slope`
    w_off: u32,
    x_off: u32,
    out_off: u32,
    bias_off: u32,
    gate_off: u32,     // CONV: accumulate flag
    levels: f32,       // CONV: PReLU slope
    tiles_n: u32,
    accumulate: u32,   // linear: out += y (matmul's residual epilogue)
    // CONV geometry (unused by linear).
    l_in: u32,
    c_in: u32,
    l_out: u32,
    dilation: u32,
    pad_left: u32,
    upsample: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;
#ifdef GATED
@group(0) @binding(5) var<storage, read> gate: array<f32>;
#endif

const TILE: u32 = 64u;
const TK: u32 = 16u;

var<workgroup> a_tile: array<f32, 1024>; // [TILE][TK]
var<workgroup> w_tile: array<f32, 1024>; // [TILE][TK]

#ifdef CONV
fn load_a(row: u32, col: u32) -> f32 {
    let j = row % p.l_out;
    let b = row / p.l_out;
    let tap = col / p.c_in;
    let i = col % p.c_in;
    let shifted = j + tap * p.dilation;
    if shifted < p.pad_left || shifted - p.pad_left >= p.l_in * p.upsample {
        return 0.0;
    }
    let t = (shifted - p.pad_left) / p.upsample;
    return x[p.x_off + (b * p.l_in + t) * p.c_in + i];
}
#else
fn load_a(row: u32, col: u32) -> f32 {
    return x[p.x_off + row * p.k + col];
}
#endif

fn epilogue(row: u32, col: u32, acc: f32) {
    var y = acc;
#ifdef BIAS
    y += load_w2(p.bias_off + col);
#endif
    let o = p.out_off + row * p.n + col;
#ifdef CONV
    if p.act == 1u && y < 0.0 {
        y *= p.levels;
    }
    out[o] = select(y, out[o] + y, p.gate_off != 0u);
#else
    y = activate(y, p.act, p.levels);
#ifdef GATED
    out[o] += gate[p.gate_off + col] * y;
#else
    out[o] = select(y, out[o] + y, p.accumulate != 0u);
#endif
#endif
}

@compute @workgroup_size(16, 16)
fn gemm(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let group = wg.x + wg.y * nw.x;
    let m0 = (group / p.tiles_n) * TILE;
    let n0 = (group % p.tiles_n) * TILE;
    if m0 >= p.m {
        return;
    }
    var acc: array<array<f32, 4>, 4>;
    for (var k0 = 0u; k0 < p.k; k0 += TK) {
        for (var e = 0u; e < 4u; e++) {
            let idx = t + e * 256u;
            let r = idx / TK;
            let c = idx % TK;
            let kk = k0 + c;
            var av = 0.0;
            if m0 + r < p.m && kk < p.k {
                av = load_a(m0 + r, kk);
            }
            a_tile[idx] = av;
            var wv = 0.0;
            if n0 + r < p.n && kk < p.k {
                wv = load_w(p.w_off + (n0 + r) * p.k + kk);
            }
            w_tile[idx] = wv;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TK; kk++) {
            var a: array<f32, 4>;
            var b: array<f32, 4>;
            for (var i = 0u; i < 4u; i++) {
                a[i] = a_tile[(lid.y + 16u * i) * TK + kk];
                b[i] = w_tile[(lid.x + 16u * i) * TK + kk];
            }
            for (var i = 0u; i < 4u; i++) {
                for (var j = 0u; j < 4u; j++) {
                    acc[i][j] += a[i] * b[j];
                }
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < 4u; i++) {
        let row = m0 + lid.y + 16u * i;
        for (var j = 0u; j < 4u; j++) {
            let col = n0 + lid.x + 16u * j;
            if row < p.m && col < p.n {
                epilogue(row, col, acc[i][j]);
            }
        }
    }
}
