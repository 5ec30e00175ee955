// Weight loads in the stored dtype, widened to f32. Included by kernels that read
// weights; the including file declares `w` at its own binding through W_BINDING.
// WGSL has no bf16: bf16 and f16 pairs are read as packed u32 words.
#ifdef W_F32
@group(0) @binding(W_BINDING) var<storage, read> w: array<f32>;

fn load_w(i: u32) -> f32 {
    return w[i];
}
#else
@group(0) @binding(W_BINDING) var<storage, read> w: array<u32>;

fn load_w(i: u32) -> f32 {
    let word = w[i >> 1u];
    let odd = (i & 1u) == 1u;
#ifdef W_BF16
    // bf16 is the high half of an f32: widening is a shift.
    return bitcast<f32>(select(word << 16u, word & 0xffff0000u, odd));
#else
    return unpack2x16float(word)[select(0u, 1u, odd)];
#endif
}
#endif
