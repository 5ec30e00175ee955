// Embedding gathers.
//   embed_rows:         out[n, :] = table[ids[n], :]
//   embed_codebook_sum: out[n, :] = sum_k mask[n, k] ? table[k * card + codes[n, k], :]
// table: w [V, C] (stored dtype), ids/codes [N] or [N, K] u32, mask [N, K] u32, out [N, C] f32.
// A table larger than one storage binding runs as several dispatches, each over table rows
// row_begin..row_end bound from w_off: a dispatch handles only ids in its range (the
// codebook sum accumulates from the second range on).
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
    row_begin: u32,
    row_end: u32,
    total_rows: u32,
    _pad0: u32,
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
    if id >= p.row_begin && id < p.row_end {
        out[p.out_off + i] = load_w(p.w_off + (id - p.row_begin) * p.cols + c);
    } else if id >= p.total_rows && p.row_begin == 0u {
        // Ids are validated on the host; an out-of-range id reads as zeros.
        out[p.out_off + i] = 0.0;
    }
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
        let row = k * p.card + code;
        if mask[p.mask_off + j] != 0u && code < p.card && row >= p.row_begin && row < p.row_end {
            sum += load_w(p.w_off + (row - p.row_begin) * p.cols + c);
        }
    }
    if p.row_begin == 0u {
        out[p.out_off + i] = sum;
    } else {
        out[p.out_off + i] += sum;
    }
}
