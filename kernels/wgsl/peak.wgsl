// FMA peak probe: each thread runs eight independent fma chains (enough to hide the
// latency), ITERS steps each, and writes their sum so nothing is optimised away.
// 2 * 8 * ITERS FLOP per thread.

struct Params {
    iters: u32,
    seed: f32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read_write> out: array<f32>;
@group(0) @binding(1) var<uniform> p: Params;

@compute @workgroup_size(256)
fn fma_peak(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
    let i = gid.x + gid.y * nw.x * 256u;
    let x = f32(i & 1023u) * 1e-7;
    let a = 0.999 + x;
    let b = p.seed;
    var c0 = x;
    var c1 = x + 1.0;
    var c2 = x + 2.0;
    var c3 = x + 3.0;
    var c4 = x + 4.0;
    var c5 = x + 5.0;
    var c6 = x + 6.0;
    var c7 = x + 7.0;
    for (var s = 0u; s < p.iters; s++) {
        c0 = fma(c0, a, b);
        c1 = fma(c1, a, b);
        c2 = fma(c2, a, b);
        c3 = fma(c3, a, b);
        c4 = fma(c4, a, b);
        c5 = fma(c5, a, b);
        c6 = fma(c6, a, b);
        c7 = fma(c7, a, b);
    }
    out[i] = c0 + c1 + c2 + c3 + c4 + c5 + c6 + c7;
}
