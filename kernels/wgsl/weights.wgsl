// Weight loads in the stored dtype, widened to f32. Included by kernels that read
// weights; the including file sets W_BINDING (and W2_BINDING for a second weight of the
// same dtype). WGSL has no bf16: bf16 and f16 pairs are read as packed u32 words.
#ifdef W_F32
@group(0) @binding(W_BINDING) var<storage, read> w: array<f32>;

fn load_w(i: u32) -> f32 {
    return w[i];
}
#ifdef W2_BINDING
@group(0) @binding(W2_BINDING) var<storage, read> w2: array<f32>;

fn load_w2(i: u32) -> f32 {
    return w2[i];
}
#endif
#else
@group(0) @binding(W_BINDING) var<storage, read> w: array<u32>;

// Element `odd` of a packed pair.
fn widen(word: u32, odd: bool) -> f32 {
#ifdef W_BF16
    // bf16 is the high half of an f32: widening is a shift.
    return bitcast<f32>(select(word << 16u, word & 0xffff0000u, odd));
#else
    return unpack2x16float(word)[select(0u, 1u, odd)];
#endif
}

fn load_w(i: u32) -> f32 {
    return widen(w[i >> 1u], (i & 1u) == 1u);
}
#ifdef W2_BINDING
@group(0) @binding(W2_BINDING) var<storage, read> w2: array<u32>;

fn load_w2(i: u32) -> f32 {
    return widen(w2[i >> 1u], (i & 1u) == 1u);
}
#endif
#endif
