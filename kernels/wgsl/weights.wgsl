// Weight loads in the stored dtype, widened to f32. Included by kernels that read
// weights; the including file sets W_BINDING (and W2_BINDING for a second weight of the
// same dtype). WGSL has no bf16: bf16 and f16 pairs are read as packed u32 words.
// W_VEC: weights are read 16 bytes (8 elements; f32: 32 bytes) at a time by
// load_w8(c) = elements 8c .. 8c + 7; with F16_NATIVE (the SHADER_F16 feature) f16
// weights load as vec4<f16> instead of unpacked words.
struct W8 {
    lo: vec4<f32>,
    hi: vec4<f32>,
}

// Element `odd` of a packed bf16 / f16 pair.
fn widen(word: u32, odd: bool) -> f32 {
#ifdef W_BF16
    // bf16 is the high half of an f32: widening is a shift.
    return bitcast<f32>(select(word << 16u, word & 0xffff0000u, odd));
#else
    return unpack2x16float(word)[select(0u, 1u, odd)];
#endif
}

// Four packed 16-bit elements (two words) in order.
fn widen4(words: vec2<u32>) -> vec4<f32> {
#ifdef W_BF16
    return bitcast<vec4<f32>>(vec4<u32>(words.x << 16u, words.x & 0xffff0000u, words.y << 16u, words.y & 0xffff0000u));
#else
    return vec4<f32>(unpack2x16float(words.x), unpack2x16float(words.y));
#endif
}

#ifdef W_VEC
#ifdef W_F32
@group(0) @binding(W_BINDING) var<storage, read> w: array<vec4<f32>>;

fn load_w8(c: u32) -> W8 {
    return W8(w[2u * c], w[2u * c + 1u]);
}
#ifdef W2_BINDING
@group(0) @binding(W2_BINDING) var<storage, read> w2: array<vec4<f32>>;

fn load_w2_8(c: u32) -> W8 {
    return W8(w2[2u * c], w2[2u * c + 1u]);
}
#endif
#else
#ifdef F16_NATIVE
enable f16;
@group(0) @binding(W_BINDING) var<storage, read> w: array<vec4<f16>>;

fn load_w8(c: u32) -> W8 {
    return W8(vec4<f32>(w[2u * c]), vec4<f32>(w[2u * c + 1u]));
}
#ifdef W2_BINDING
@group(0) @binding(W2_BINDING) var<storage, read> w2: array<vec4<f16>>;

fn load_w2_8(c: u32) -> W8 {
    return W8(vec4<f32>(w2[2u * c]), vec4<f32>(w2[2u * c + 1u]));
}
#endif
#else
@group(0) @binding(W_BINDING) var<storage, read> w: array<vec4<u32>>;

fn load_w8(c: u32) -> W8 {
    let q = w[c];
    return W8(widen4(q.xy), widen4(q.zw));
}
#ifdef W2_BINDING
@group(0) @binding(W2_BINDING) var<storage, read> w2: array<vec4<u32>>;

fn load_w2_8(c: u32) -> W8 {
    let q = w2[c];
    return W8(widen4(q.xy), widen4(q.zw));
}
#endif
#endif
#endif
#else
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
#endif
