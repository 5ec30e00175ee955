// Register-tiled GEMM for many rows: out[M, N] = epilogue(A[M, K] . w[N, K]^T + bias).
// A 16x16-thread workgroup computes a TILE x TILE output tile, PER x PER outputs per thread
// (rows and columns strided by 16 so neighbouring threads touch neighbouring addresses),
// staging TILE x TK slices of A and w in workgroup memory. The tile is tuned per device
// (`wgpu.gemm.tile`: 32, 64 = default, 128, with TK = 1024 / TILE); every output sums its
// products in ascending k whatever the tile, so the candidates agree bit for bit.
//   linear: A = x [M, K]; `act` (activations.wgsl codes) or, with GATED,
//           out += gate[n] * y; also matmul's prefill (accumulate).
//   CONV:   A is the implicit im2col of a time-major conv1d, per channel group: row = (b, j),
//           column = (tap, i) over the group's cg = C_in / groups input channels,
//           A = x[b, (j*stride + tap*dilation - pad_left) / upsample, g*cg + i] or 0, and the
//           N columns are the group's C_out / groups output channels (workgroups cover
//           groups x tiles); epilogue bias, PReLU (act 1, slope `levels`), accumulate.
//           w is [C_out, K * cg].
//   CONV2D: A is the implicit im2col of a channels-last conv2d: row = (b, i, j), column =
//           (p, q, c), A = x[b, i*stride_h + p - pad_h, j*stride_w + q - pad_w, c] or 0;
//           epilogue bias, accumulate, then `act` (ReLU: 5). w is [C_out, KH * KW * C_in].
// F16_OPERANDS (the `fast` precision, on adapters with SHADER_F16): A and w are rounded to
// f16 as they are staged, halving the workgroup memory and its traffic; each product of
// two f16 is exact in f32 and summed in f32, the arithmetic of f16 tensor cores.
#define W_BINDING 0
#ifdef BIAS
#define B_BINDING 4
#endif
#include "weights"
#include "activations"

struct Params {
    m: u32,
    n: u32,
    k: u32,
    act: u32,
    w_off: u32,
    x_off: u32,
    out_off: u32,
    bias_off: u32,
    gate_off: u32,
    levels: f32,
    tiles_n: u32,
    accumulate: u32,   // out += y (matmul's residual epilogue, conv accumulate)
    // Convolution geometry (unused by linear).
#ifdef CONV2D
    in_h: u32,
    in_w: u32,
    c_in: u32,
    out_h: u32,
    out_w: u32,
    kw: u32,
    stride_h: u32,
    stride_w: u32,
    pad_h: u32,
    pad_w: u32,
    _pad0: u32,
    _pad1: u32,
#else
    l_in: u32,
    c_in: u32,
    l_out: u32,
    dilation: u32,
    pad_left: u32,
    upsample: u32,
    stride: u32,
    cg: u32,
    c_out: u32,
    groups: u32,
    _pad0: u32,
    _pad1: u32,
#endif
}

@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;
#ifdef GATED
@group(0) @binding(5) var<storage, read> gate: array<f32>;
#endif

#ifndef GEMM_TILE
#define GEMM_TILE 64
#define GEMM_PER 4
#define GEMM_TK 16
#endif
const TILE: u32 = GEMM_TILE;
const PER: u32 = GEMM_PER;
const TK: u32 = GEMM_TK;

#ifdef F16_OPERANDS
enable f16;
alias Operand = f16;
#else
alias Operand = f32;
#endif
// An operand as staged (f16 saturates rather than leaving its range).
fn operand(v: f32) -> Operand {
#ifdef F16_OPERANDS
    return Operand(clamp(v, -65504.0, 65504.0));
#else
    return v;
#endif
}

var<workgroup> a_tile: array<Operand, 1024>; // [TILE][TK]
var<workgroup> w_tile: array<Operand, 1024>; // [TILE][TK]

#ifdef CONV
fn load_a(row: u32, col: u32, grp: u32) -> f32 {
    let j = row % p.l_out;
    let b = row / p.l_out;
    let tap = col / p.cg;
    let i = col % p.cg;
    let shifted = j * p.stride + tap * p.dilation;
    if shifted < p.pad_left || shifted - p.pad_left >= p.l_in * p.upsample {
        return 0.0;
    }
    let t = (shifted - p.pad_left) / p.upsample;
    return x[p.x_off + (b * p.l_in + t) * p.c_in + grp * p.cg + i];
}

fn group_count() -> u32 {
    return p.groups;
}

// Elements per output row.
fn out_pitch() -> u32 {
    return p.c_out;
}
#else
#ifdef CONV2D
fn load_a(row: u32, col: u32, grp: u32) -> f32 {
    let j = row % p.out_w;
    let i = (row / p.out_w) % p.out_h;
    let b = row / (p.out_w * p.out_h);
    let c = col % p.c_in;
    let q = (col / p.c_in) % p.kw;
    let kp = col / (p.c_in * p.kw);
    let hi = i * p.stride_h + kp;
    let wi = j * p.stride_w + q;
    if hi < p.pad_h || hi - p.pad_h >= p.in_h || wi < p.pad_w || wi - p.pad_w >= p.in_w {
        return 0.0;
    }
    return x[p.x_off + ((b * p.in_h + hi - p.pad_h) * p.in_w + wi - p.pad_w) * p.c_in + c];
}
#else
fn load_a(row: u32, col: u32, grp: u32) -> f32 {
    return x[p.x_off + row * p.k + col];
}
#endif

fn group_count() -> u32 {
    return 1u;
}

fn out_pitch() -> u32 {
    return p.n;
}
#endif

fn epilogue(row: u32, col: u32, acc: f32) {
    var y = acc;
#ifdef BIAS
    y += load_bias(p.bias_off + col);
#endif
    let o = p.out_off + row * out_pitch() + col;
#ifdef CONV
    if p.act == 1u && y < 0.0 {
        y *= p.levels;
    }
    out[o] = select(y, out[o] + y, p.accumulate != 0u);
#else
#ifdef CONV2D
    if p.accumulate != 0u {
        y += out[o];
    }
    out[o] = activate(y, p.act, p.levels);
#else
    y = activate(y, p.act, p.levels);
#ifdef GATED
    out[o] += gate[p.gate_off + col] * y;
#else
    out[o] = select(y, out[o] + y, p.accumulate != 0u);
#endif
#endif
#endif
}

@compute @workgroup_size(16, 16)
fn gemm(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let index = wg.x + wg.y * nw.x;
    let tiles = ((p.m + TILE - 1u) / TILE) * p.tiles_n;
    // Channel group (convolutions with groups > 1), then the tile within it.
    let grp = index / tiles;
    if grp >= group_count() {
        return;
    }
    let m0 = ((index % tiles) / p.tiles_n) * TILE;
    let n0 = (index % p.tiles_n) * TILE;
    // The group's first output channel: its weight rows and output columns.
    let c0 = grp * p.n;
    var acc: array<array<f32, PER>, PER>;
    for (var k0 = 0u; k0 < p.k; k0 += TK) {
        for (var e = 0u; e < 4u; e++) {
            let idx = t + e * 256u;
            let r = idx / TK;
            let c = idx % TK;
            let kk = k0 + c;
            var av = 0.0;
            if m0 + r < p.m && kk < p.k {
                av = load_a(m0 + r, kk, grp);
            }
            a_tile[idx] = operand(av);
            var wv = 0.0;
            if n0 + r < p.n && kk < p.k {
                wv = load_w(p.w_off + (c0 + n0 + r) * p.k + kk);
            }
            w_tile[idx] = operand(wv);
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TK; kk++) {
            var a: array<f32, PER>;
            var b: array<f32, PER>;
            for (var i = 0u; i < PER; i++) {
                a[i] = f32(a_tile[(lid.y + 16u * i) * TK + kk]);
                b[i] = f32(w_tile[(lid.x + 16u * i) * TK + kk]);
            }
            for (var i = 0u; i < PER; i++) {
                for (var j = 0u; j < PER; j++) {
                    acc[i][j] += a[i] * b[j];
                }
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < PER; i++) {
        let row = m0 + lid.y + 16u * i;
        for (var j = 0u; j < PER; j++) {
            let col = n0 + lid.x + 16u * j;
            if row < p.m && col < p.n {
                epilogue(row, c0 + col, acc[i][j]);
            }
        }
    }
}
