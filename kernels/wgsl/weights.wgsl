// Weight loads in the stored dtype, widened to f32. Included by kernels that read
// weights; the including file sets W_BINDING (and W2_BINDING for a second weight of the
// same dtype). WGSL has no bf16: bf16 and f16 pairs are read as packed u32 words.
// W_Q8: Q8_0 blocks (34 bytes: an f16 scale, 32 int8), read as words since blocks
// straddle them; a weight is scale x int8 (exact in f32). The second weight (W2) of a
// Q8_0 op is Q8_0 too (gate_up); a bias in its own float dtype is B_BINDING's.
// W_Q4: Q4_0 blocks (18 bytes: an f16 scale, 16 bytes holding weights 0..15 in their low
// nibbles and 16..31 in their high ones, each plus 8), read as words like Q8_0; a weight
// is scale x (nibble - 8) (exact in f32). Its W2 is Q4_0 too.
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

#ifdef W_Q4
#define W_BLOCKS
#endif
#ifdef W_Q8
#define W_BLOCKS
#endif
#ifdef W_BLOCKS
// The f16 scale at even byte `o` of the block stream, given the word holding it.
fn q8_scale(word: u32, o: u32) -> f32 {
    return unpack2x16float(word)[(o >> 1u) & 1u];
}

// The 8 bytes from even byte `o` (4-aligned or 2 past it) given the three words from o / 4.
fn q8_eight(a: u32, b: u32, c: u32, o: u32) -> vec2<u32> {
    if (o & 2u) == 0u {
        return vec2<u32>(a, b);
    }
    return vec2<u32>((a >> 16u) | (b << 16u), (b >> 16u) | (c << 16u));
}
#endif
#ifdef W_Q4
// Nibble `j >= 16` (high) or not (low) of byte `o % 4` of `word`, as its weight.
fn q4_one(word: u32, o: u32, j: u32) -> f32 {
    return f32(extractBits(word, (o & 3u) * 8u + select(0u, 4u, j >= 16u), 4u)) - 8.0;
}

// The low (s = 0) or high (s = 4) nibbles of a word's four bytes, in order, as weights.
fn q4_four(word: u32, s: u32) -> vec4<f32> {
    return vec4<f32>(f32(extractBits(word, s, 4u)), f32(extractBits(word, 8u + s, 4u)), f32(extractBits(word, 16u + s, 4u)), f32(extractBits(word, 24u + s, 4u))) - vec4<f32>(8.0);
}

@group(0) @binding(W_BINDING) var<storage, read> w: array<u32>;

fn load_w(i: u32) -> f32 {
    let base = (i >> 5u) * 18u;
    let o = base + 2u + (i & 15u);
    return q8_scale(w[base >> 2u], base) * q4_one(w[o >> 2u], o, i & 31u);
}

// Elements 8c .. 8c + 7 (one quarter of a block: bytes (c & 1) * 8 .. + 8, low nibbles
// for the first two quarters, high for the last two).
fn load_w8(c: u32) -> W8 {
    let base = (c >> 2u) * 18u;
    let o = base + 2u + (c & 1u) * 8u;
    let s = (c & 2u) * 2u;
    let d = q8_scale(w[base >> 2u], base);
    let q = q8_eight(w[o >> 2u], w[(o >> 2u) + 1u], w[min((o >> 2u) + 2u, arrayLength(&w) - 1u)], o);
    return W8(d * q4_four(q.x, s), d * q4_four(q.y, s));
}
#ifdef W2_BINDING
@group(0) @binding(W2_BINDING) var<storage, read> w2: array<u32>;

fn load_w2(i: u32) -> f32 {
    let base = (i >> 5u) * 18u;
    let o = base + 2u + (i & 15u);
    return q8_scale(w2[base >> 2u], base) * q4_one(w2[o >> 2u], o, i & 31u);
}

fn load_w2_8(c: u32) -> W8 {
    let base = (c >> 2u) * 18u;
    let o = base + 2u + (c & 1u) * 8u;
    let s = (c & 2u) * 2u;
    let d = q8_scale(w2[base >> 2u], base);
    let q = q8_eight(w2[o >> 2u], w2[(o >> 2u) + 1u], w2[min((o >> 2u) + 2u, arrayLength(&w2) - 1u)], o);
    return W8(d * q4_four(q.x, s), d * q4_four(q.y, s));
}
#endif
#else
#ifdef W_Q8

// Signed byte `o % 4` of `word`, as f32.
fn q8_byte(word: u32, o: u32) -> f32 {
    return f32(extractBits(bitcast<i32>(word), (o & 3u) * 8u, 8u));
}

// Four signed bytes of a word, in order.
fn q8_four(word: u32) -> vec4<f32> {
    let v = bitcast<i32>(word);
    return vec4<f32>(f32(extractBits(v, 0u, 8u)), f32(extractBits(v, 8u, 8u)), f32(extractBits(v, 16u, 8u)), f32(extractBits(v, 24u, 8u)));
}

@group(0) @binding(W_BINDING) var<storage, read> w: array<u32>;

fn load_w(i: u32) -> f32 {
    let base = (i >> 5u) * 34u;
    let o = base + 2u + (i & 31u);
    return q8_scale(w[base >> 2u], base) * q8_byte(w[o >> 2u], o);
}

// Elements 8c .. 8c + 7 (one quarter of a block).
fn load_w8(c: u32) -> W8 {
    let base = (c >> 2u) * 34u;
    let o = base + 2u + (c & 3u) * 8u;
    let d = q8_scale(w[base >> 2u], base);
    let q = q8_eight(w[o >> 2u], w[(o >> 2u) + 1u], w[min((o >> 2u) + 2u, arrayLength(&w) - 1u)], o);
    return W8(d * q8_four(q.x), d * q8_four(q.y));
}
#ifdef W2_BINDING
@group(0) @binding(W2_BINDING) var<storage, read> w2: array<u32>;

fn load_w2(i: u32) -> f32 {
    let base = (i >> 5u) * 34u;
    let o = base + 2u + (i & 31u);
    return q8_scale(w2[base >> 2u], base) * q8_byte(w2[o >> 2u], o);
}

fn load_w2_8(c: u32) -> W8 {
    let base = (c >> 2u) * 34u;
    let o = base + 2u + (c & 3u) * 8u;
    let d = q8_scale(w2[base >> 2u], base);
    let q = q8_eight(w2[o >> 2u], w2[(o >> 2u) + 1u], w2[min((o >> 2u) + 2u, arrayLength(&w2) - 1u)], o);
    return W8(d * q8_four(q.x), d * q8_four(q.y));
}
#endif
#else
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
#endif
#endif

#ifdef B_BINDING
// A bias in its own dtype (B_F32, B_BF16 or B_F16), so a Q8_0 weight keeps a float bias.
@group(0) @binding(B_BINDING) var<storage, read> bias_words: array<u32>;

fn load_bias(i: u32) -> f32 {
#ifdef B_F32
    return bitcast<f32>(bias_words[i]);
#else
    let word = bias_words[i >> 1u];
#ifdef B_BF16
    return bitcast<f32>(select(word << 16u, word & 0xffff0000u, (i & 1u) == 1u));
#else
    return unpack2x16float(word)[i & 1u];
#endif
#endif
}
#endif
