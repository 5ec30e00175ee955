// Embedding gathers.
//   embed_rows:         out[n, :] = table[ids[n], :]
//   embed_codebook_sum: out[n, :] = sum_k mask[n, k] ? table[k * card + codes[n, k], :]
// table: w [V, C] (stored dtype), ids/codes [N] or [N, K] u32, mask [N, K] u32, out [N, C] f32.
#define W_BINDING 0
#include "weights"

struct Params {
    n: u32,
    cols: u32,
    codebooks: u32,
    card: u32,
    w_off: u32,
    idx_off: u32,
    mask_off: u32,
    out_off: u32,
    rows: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(1) var<storage, read> idx: array<u32>;
@group(0) @binding(2) var<storage, read> mask: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;

@compute @workgroup_size(64)
fn embed_rows(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
    let i = g.x + g.y * nw.x * 64u;
    if i >= p.n * p.cols {
        return;
    }
    let n = i / p.cols;
    let c = i % p.cols;
    let id = idx[p.idx_off + n];
    // Ids are validated on the host; an out-of-range id reads as zeros, never out of bounds.
    var v = 0.0;
    if id < p.rows {
        v = load_w(p.w_off + id * p.cols + c);
    }
    out[p.out_off + i] = v;
}

@compute @workgroup_size(64)
fn embed_codebook_sum(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
    let i = g.x + g.y * nw.x * 64u;
    if i >= p.n * p.cols {
        return;
    }
    let n = i / p.cols;
    let c = i % p.cols;
    var sum = 0.0;
    for (var k = 0u; k < p.codebooks; k++) {
        let j = n * p.codebooks + k;
        let code = idx[p.idx_off + j];
        if mask[p.mask_off + j] != 0u && code < p.card {
            sum += load_w(p.w_off + (k * p.card + code) * p.cols + c);
        }
    }
    out[p.out_off + i] = sum;
}
