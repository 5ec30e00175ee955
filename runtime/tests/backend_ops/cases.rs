//! The case table. Every case seeds its inputs, runs the op on the backend under test
//! and compares with `reference`. Weights are rounded to their storage dtype before the
//! reference sees them (widening bf16/f16 to f32 is exact), so only the kernels'
//! arithmetic is compared and f32-accumulating paths are held to NMSE <= 1e-7 whatever
//! the weight dtype. Id-producing ops must match exactly.

use std::fmt;

use uniaudio_runtime::{ops, Backend, DType, Error, Result, RowOrder, SampleParams, Tensor, UnaryFn, WeightLayout};

use crate::codec_cases::{self, Epi};
use crate::encode_cases;

use crate::harness::{compare_f32, compare_u32, Rng, Verdict};
use crate::reference as r;

/// f32 compute: accumulation order is the only difference from the f64 reference.
pub const F32_NMSE: f64 = 1e-7;

#[derive(Clone, Debug)]
pub enum Case {
    EmbedRows { vocab: usize, cols: usize, n: usize, dtype: DType },
    EmbedCodebookSum { codebooks: usize, card: usize, cols: usize, frames: usize, dtype: DType },
    RmsNorm { rows: usize, cols: usize, dtype: DType },
    MatMul { m: usize, k: usize, n: usize, layout: WeightLayout, dtype: DType, accumulate: bool },
    GateUp { m: usize, k: usize, f: usize, dtype: DType },
    /// `RowOrder::Invariant` products (batched decode): each of the M rows must equal the
    /// same product run on that row alone, bit for bit, besides matching the reference.
    InvariantRows { m: usize, k: usize, n: usize, layout: WeightLayout, dtype: DType, gate_up: bool },
    Rope { t: usize, heads: usize, head_dim: usize },
    KvAppend { t: usize, kv_heads: usize, head_dim: usize, capacity: usize, rope: bool },
    Attention { t: usize, heads: usize, kv_heads: usize, head_dim: usize, kv_len: usize, causal: bool },
    SwiGlu { rows: usize, cols: usize },
    Add { rows: usize, cols: usize, in_place: bool },
    SelectRows { rows: usize, cols: usize },
    Guidance { rows: usize, cols: usize, scale: f32 },
    Softmax { rows: usize, cols: usize },
    Argmax { rows: usize, cols: usize },
    TopKSample { rows: usize, cols: usize, top_k: usize, forbid_below: usize },
    /// `reused`: the weight is uploaded as one that meets many-row products again and again
    /// (`Backend::upload_gemm_weight`).
    Linear { m: usize, k: usize, n: usize, bias: bool, epi: Epi, dtype: DType, reused: bool },
    Unary { rows: usize, cols: usize, f: UnaryFn, in_place: bool },
    LayerNormModulate { rows: usize, cols: usize },
    #[rustfmt::skip]
    Conv1d { batch: usize, l_in: usize, c_in: usize, c_out: usize, k: usize, stride: usize, groups: usize, dilation: usize, pad_left: usize, upsample: usize, l_out: usize, prelu: bool, accumulate: bool, dtype: DType },
    ConvTranspose1d { l_in: usize, c_in: usize, c_out: usize, k: usize, stride: usize, padding: usize, l_out: usize, dtype: DType },
    EulerCfg { rows: usize, cols: usize },
    Blend { rows: usize, cols: usize, in_place: bool },
    #[rustfmt::skip]
    Conv2d { batch: usize, h: usize, w: usize, c_in: usize, c_out: usize, kh: usize, kw: usize, stride: [usize; 2], pad: [usize; 2], oh: usize, ow: usize, relu: bool, accumulate: bool },
    GroupNorm { batch: usize, t: usize, c: usize, groups: usize },
    Glu { rows: usize, f: usize },
    Film { rows: usize, c: usize, in_place: bool },
    RvqEncode { n: usize, d: usize, levels: usize, k: usize, dtype: DType },
    RelPosAttention { t: usize, heads: usize, d: usize },
}

impl fmt::Display for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?}")
    }
}

/// Cases with 8-bit or 4-bit weights (the fast level rounds their inputs to 8 bits too).
#[allow(dead_code)]
pub fn quantized_weights(case: &Case) -> bool {
    match case {
        Case::MatMul { dtype, .. } | Case::GateUp { dtype, .. } | Case::InvariantRows { dtype, .. } | Case::Linear { dtype, .. } => dtype.is_quantized(),
        _ => false,
    }
}

/// Cases whose products may run on a backend's many-row GEMM tiles, the ops the GPUs'
/// `fast` precision changes: out-in products, linears and convolutions.
#[allow(dead_code)]
pub fn reaches_gemm_tiles(case: &Case) -> bool {
    matches!(case, Case::MatMul { layout: WeightLayout::OutIn, .. } | Case::Linear { .. } | Case::Conv1d { .. } | Case::Conv2d { .. })
}

pub fn all_cases() -> Vec<Case> {
    use Case::*;
    let dtypes = [DType::F32, DType::F16, DType::BF16];
    let mut cases = Vec::new();
    for dtype in dtypes {
        cases.push(EmbedRows { vocab: 37, cols: 33, n: 5, dtype });
        cases.push(EmbedRows { vocab: 1000, cols: 128, n: 1, dtype });
        cases.push(EmbedCodebookSum { codebooks: 8, card: 13, cols: 65, frames: 3, dtype });
        for (rows, cols) in [(1, 3), (7, 33), (2, 3072)] {
            cases.push(RmsNorm { rows, cols, dtype });
        }
        for (m, k, n) in [(1, 7, 5), (1, 33, 17), (1, 64, 1000), (1, 3072, 257), (1, 130, 4), (3, 33, 17), (7, 130, 65), (17, 256, 129), (64, 128, 64), (5, 1, 3)] {
            for layout in [WeightLayout::OutIn, WeightLayout::InOut] {
                cases.push(MatMul { m, k, n, layout, dtype, accumulate: false });
            }
        }
        cases.push(MatMul { m: 1, k: 96, n: 33, layout: WeightLayout::OutIn, dtype, accumulate: true });
        for (m, k, f) in [(1, 64, 344), (1, 33, 7), (1, 3072, 130), (3, 130, 65), (9, 64, 176)] {
            cases.push(GateUp { m, k, f, dtype });
        }
        cases.push(MatMul { m: 9, k: 96, n: 33, layout: WeightLayout::InOut, dtype, accumulate: true });
        cases.push(MatMul { m: 33, k: 70, n: 130, layout: WeightLayout::OutIn, dtype, accumulate: true });
        // Wide enough for the fast level's bf16 product, with an odd last K block and an
        // odd number of row panels.
        for layout in [WeightLayout::OutIn, WeightLayout::InOut] {
            cases.push(MatMul { m: 13, k: 517, n: 300, layout, dtype, accumulate: false });
        }
        // Enough row panels (18) for the bf16 GEMM to split rows between tasks, and a
        // last 128-column task of 74: a whole 64-column part, then one with a partial
        // panel and three absent ones.
        cases.push(MatMul { m: 103, k: 70, n: 330, layout: WeightLayout::OutIn, dtype, accumulate: true });
        // Many 32-element chunks with a tail, a partial 4-row and 6-column register tile
        // (the AVX-512 levels' in-place bf16 products); then K shorter than one chunk.
        cases.push(MatMul { m: 22, k: 1100, n: 263, layout: WeightLayout::OutIn, dtype, accumulate: false });
        cases.push(MatMul { m: 9, k: 20, n: 259, layout: WeightLayout::OutIn, dtype, accumulate: true });
        // Past the rows product's 128 rows: the fast level's packed bf16 GEMM (an odd K, a
        // partial row panel and 128-column task).
        cases.push(MatMul { m: 515, k: 67, n: 260, layout: WeightLayout::OutIn, dtype, accumulate: true });
        // Whole 32-column blocks of whole 32-element rows (AMX reads bf16 rows in place),
        // an odd number of 16-row tiles.
        cases.push(MatMul {
            m: 35,
            k: 96,
            n: 288,
            layout: WeightLayout::OutIn,
            dtype,
            accumulate: true,
        });
        cases.push(MatMul {
            m: 40,
            k: 33,
            n: 257,
            layout: WeightLayout::OutIn,
            dtype,
            accumulate: true,
        });
        for (m, k, n) in [(2, 64, 33), (5, 130, 257), (17, 96, 300), (64, 40, 70)] {
            for layout in [WeightLayout::OutIn, WeightLayout::InOut] {
                cases.push(InvariantRows { m, k, n, layout, dtype, gate_up: false });
            }
            cases.push(InvariantRows { m, k, n, layout: WeightLayout::OutIn, dtype, gate_up: true });
        }
    }
    // 8-bit weights (rows of whole 32-weight blocks) in the out-in products: decode GEMVs,
    // prefill GEMMs (an odd last K block of the packed path; the 8-bit GEMM's partial row
    // panel, column panel and K block; the bf16 rows product's partial 4-row and 6-column
    // tiles, one-block K), the gated MLP input and the row-invariant batch.
    let dtype = DType::Q8_0;
    for (m, k, n, accumulate) in [(1, 32, 5, false), (1, 64, 1000, false), (1, 3072, 257, false), (3, 96, 17, false), (7, 128, 65, false), (17, 256, 129, false), (64, 128, 64, false), (13, 544, 300, false), (7, 800, 40, false), (1, 96, 33, true), (33, 64, 130, true), (22, 1088, 263, false), (9, 32, 259, true)] {
        cases.push(MatMul { m, k, n, layout: WeightLayout::OutIn, dtype, accumulate });
    }
    for (m, k, f) in [(1, 64, 344), (1, 3072, 130), (3, 128, 65), (9, 64, 176)] {
        cases.push(GateUp { m, k, f, dtype });
    }
    for (m, k, n) in [(2, 64, 33), (9, 128, 130), (64, 32, 20)] {
        for gate_up in [false, true] {
            cases.push(InvariantRows { m, k, n, layout: WeightLayout::OutIn, dtype, gate_up });
        }
    }
    // 4-bit weights: the same paths, with odd block counts (the fast kernel pairs blocks).
    let dtype = DType::Q4_0;
    for (m, k, n, accumulate) in [(1, 32, 5, false), (1, 96, 1000, false), (1, 3072, 257, false), (2, 160, 33, false), (17, 256, 129, false), (7, 800, 40, false), (1, 96, 33, true), (33, 64, 130, true), (22, 1088, 263, false), (6, 96, 256, true)] {
        cases.push(MatMul { m, k, n, layout: WeightLayout::OutIn, dtype, accumulate });
    }
    for (m, k, f) in [(1, 96, 344), (3, 128, 65)] {
        cases.push(GateUp { m, k, f, dtype });
    }
    for (m, k, n) in [(2, 96, 33), (9, 128, 130)] {
        for gate_up in [false, true] {
            cases.push(InvariantRows { m, k, n, layout: WeightLayout::OutIn, dtype, gate_up });
        }
    }
    for (t, heads, head_dim) in [(1, 1, 2), (5, 3, 64), (1, 24, 128), (3, 8, 32)] {
        cases.push(Rope { t, heads, head_dim });
    }
    for rope in [false, true] {
        cases.push(KvAppend { t: 1, kv_heads: 8, head_dim: 64, capacity: 16, rope });
        cases.push(KvAppend { t: 4, kv_heads: 3, head_dim: 128, capacity: 9, rope });
        // Enough values that the CPU spreads the heads over threads.
        cases.push(KvAppend { t: 70, kv_heads: 8, head_dim: 128, capacity: 141, rope });
    }
    for head_dim in [64, 128] {
        for (heads, kv_heads) in [(2, 2), (6, 2), (8, 2), (24, 8)] {
            for kv_len in [1, 17, 100] {
                cases.push(Attention { t: 1, heads, kv_heads, head_dim, kv_len, causal: true });
            }
            cases.push(Attention { t: 9, heads, kv_heads, head_dim, kv_len: 9, causal: true });
            cases.push(Attention { t: 5, heads, kv_heads, head_dim, kv_len: 12, causal: true });
            cases.push(Attention { t: 7, heads, kv_heads, head_dim, kv_len: 7, causal: false });
        }
    }
    cases.push(Attention { t: 3, heads: 3, kv_heads: 1, head_dim: 32, kv_len: 33, causal: true });
    // Prefill blocks: several query tiles per KV group, continuation, awkward and wide heads.
    cases.push(Attention { t: 33, heads: 24, kv_heads: 8, head_dim: 128, kv_len: 40, causal: true });
    cases.push(Attention { t: 20, heads: 4, kv_heads: 4, head_dim: 256, kv_len: 20, causal: true });
    cases.push(Attention { t: 6, heads: 10, kv_heads: 5, head_dim: 80, kv_len: 31, causal: false });
    cases.push(Attention { t: 4, heads: 32, kv_heads: 2, head_dim: 64, kv_len: 600, causal: true });
    // Query blocks of 64 rows and more (tensor-core attention where a backend has it).
    cases.push(Attention { t: 40, heads: 8, kv_heads: 2, head_dim: 64, kv_len: 50, causal: true });
    cases.push(Attention { t: 24, heads: 6, kv_heads: 2, head_dim: 128, kv_len: 24, causal: false });
    // 256 keys and more (the fast levels' bf16 attention): a partial last key part, head
    // dimensions across two tile parts, a bidirectional window.
    cases.push(Attention { t: 20, heads: 4, kv_heads: 2, head_dim: 72, kv_len: 300, causal: true });
    cases.push(Attention { t: 260, heads: 2, kv_heads: 1, head_dim: 64, kv_len: 260, causal: false });
    // Long caches (split-KV decode where a backend has it).
    cases.push(Attention { t: 1, heads: 6, kv_heads: 2, head_dim: 64, kv_len: 700, causal: true });
    cases.push(Attention { t: 2, heads: 8, kv_heads: 2, head_dim: 128, kv_len: 1300, causal: true });
    for (rows, cols) in [(1, 1), (3, 7), (2, 8193)] {
        cases.push(SwiGlu { rows, cols });
        cases.push(Add { rows, cols, in_place: false });
        cases.push(Add { rows, cols, in_place: true });
        cases.push(SelectRows { rows, cols });
        cases.push(Guidance { rows, cols, scale: 1.5 });
        cases.push(Softmax { rows, cols });
        cases.push(Argmax { rows, cols });
    }
    cases.push(Argmax { rows: 1, cols: 128_256 });
    cases.push(Softmax { rows: 1, cols: 14_103 });
    for (rows, cols, top_k, forbid_below) in [(1, 17, 1, 0), (3, 100, 5, 0), (2, 14_103, 50, 4100), (1, 128_256, 50, 0), (4, 9, 0, 2), (1, 33, 40, 0)] {
        cases.push(TopKSample { rows, cols, top_k, forbid_below });
    }
    cases.extend(codec_cases::cases());
    cases.extend(encode_cases::cases());
    // Cases added later go last: a case's inputs are seeded by its index.
    // A 4-bit batch of 7 rows: a group of four, then a pair and a single.
    for gate_up in [false, true] {
        cases.push(InvariantRows { m: 7, k: 160, n: 40, layout: WeightLayout::OutIn, dtype: DType::Q4_0, gate_up });
    }
    cases
}

/// Runs one case; `Ok(None)` when the backend does not support it.
pub fn run<B: Backend>(case: &Case, b: &B, seed: u64) -> Result<Option<Verdict>> {
    match run_inner(case, b, &mut Rng::new(seed)) {
        Err(Error::Unsupported { .. }) => Ok(None),
        other => other.map(Some),
    }
}

fn f32_in<B: Backend>(b: &B, shape: &[usize], v: &[f32]) -> Result<Tensor<B>> {
    ops::upload_f32(b, shape, v, DType::F32)
}

fn run_inner<B: Backend>(case: &Case, b: &B, rng: &mut Rng) -> Result<Verdict> {
    Ok(match *case {
        Case::EmbedRows { vocab, cols, n, dtype } => {
            let table = r::round_to(&rng.vec(vocab * cols, 1.0), dtype);
            let ids: Vec<u32> = (0..n).map(|i| if i == 0 { vocab as u32 - 1 } else { rng.below(vocab) as u32 }).collect();
            let want: Vec<f64> = ids.iter().flat_map(|&id| table[id as usize * cols..][..cols].iter().map(|&v| v as f64)).collect();
            let out = b.alloc(DType::F32, &[n, cols])?;
            let t = ops::upload_f32(b, &[vocab, cols], &table, dtype)?;
            ops::embed_rows(b, &t, &ops::upload_u32(b, &[n], &ids)?, &out)?;
            compare_f32(&ops::download_f32(b, &out)?, &want, F32_NMSE)
        }
        Case::EmbedCodebookSum { codebooks, card, cols, frames, dtype } => {
            let table = r::round_to(&rng.vec(codebooks * card * cols, 1.0), dtype);
            let codes: Vec<u32> = (0..frames * codebooks).map(|_| rng.below(card) as u32).collect();
            // Frame 0 fully on, the last frame fully off, random in between.
            let mask: Vec<u32> = (0..frames * codebooks)
                .map(|i| match i / codebooks {
                    0 => 1,
                    f if f == frames - 1 => 0,
                    _ => rng.below(2) as u32,
                })
                .collect();
            let mut want = vec![0f64; frames * cols];
            for f in 0..frames {
                for k in 0..codebooks {
                    let i = f * codebooks + k;
                    if mask[i] != 0 {
                        let row = (k * card + codes[i] as usize) * cols;
                        for c in 0..cols {
                            want[f * cols + c] += table[row + c] as f64;
                        }
                    }
                }
            }
            let out = b.alloc(DType::F32, &[frames, cols])?;
            let t = ops::upload_f32(b, &[codebooks * card, cols], &table, dtype)?;
            let codes_t = ops::upload_u32(b, &[frames, codebooks], &codes)?;
            ops::embed_codebook_sum(b, &t, &codes_t, &ops::upload_u32(b, &[frames, codebooks], &mask)?, card, &out)?;
            compare_f32(&ops::download_f32(b, &out)?, &want, F32_NMSE)
        }
        Case::RmsNorm { rows, cols, dtype } => {
            let x = rng.vec(rows * cols, 2.0);
            let w = r::round_to(&rng.vec(cols, 1.0), dtype);
            let out = b.alloc(DType::F32, &[rows, cols])?;
            ops::rms_norm(b, &f32_in(b, &[rows, cols], &x)?, &ops::upload_f32(b, &[cols], &w, dtype)?, &out, 1e-5)?;
            compare_f32(&ops::download_f32(b, &out)?, &r::rms_norm(&x, &w, 1e-5), F32_NMSE)
        }
        Case::MatMul { m, k, n, layout, dtype, accumulate } => {
            let x = rng.vec(m * k, 1.0);
            let w = r::round_to(&rng.vec(n * k, 1.0), dtype);
            let init = rng.vec(m * n, 1.0);
            let in_out = layout == WeightLayout::InOut;
            let wshape = if in_out { [k, n] } else { [n, k] };
            let out = f32_in(b, &[m, n], &init)?;
            ops::matmul(b, &f32_in(b, &[m, k], &x)?, &ops::upload_f32(b, &wshape, &w, dtype)?, &out, layout, accumulate)?;
            let want = r::matmul(&x, &w, m, k, n, in_out, accumulate.then_some(&init[..]));
            compare_f32(&ops::download_f32(b, &out)?, &want, F32_NMSE)
        }
        Case::GateUp { m, k, f, dtype } => {
            let x = rng.vec(m * k, 1.0);
            let (wg, wu) = (r::round_to(&rng.vec(f * k, 1.0), dtype), r::round_to(&rng.vec(f * k, 1.0), dtype));
            let out = b.alloc(DType::F32, &[m, f])?;
            let (tg, tu) = (ops::upload_f32(b, &[f, k], &wg, dtype)?, ops::upload_f32(b, &[f, k], &wu, dtype)?);
            ops::gate_up(b, &f32_in(b, &[m, k], &x)?, &tg, &tu, &out, RowOrder::Free)?;
            let (g, u) = (r::matmul(&x, &wg, m, k, f, false, None), r::matmul(&x, &wu, m, k, f, false, None));
            let want: Vec<f64> = g.iter().zip(&u).map(|(&g, &u)| g / (1.0 + (-g).exp()) * u).collect();
            compare_f32(&ops::download_f32(b, &out)?, &want, F32_NMSE)
        }
        Case::InvariantRows { m, k, n, layout, dtype, gate_up } => invariant_rows(b, rng, m, k, n, layout, dtype, gate_up)?,
        Case::Rope { t, heads, head_dim } => {
            let x = rng.vec(t * heads * head_dim, 1.0);
            let pos: Vec<u32> = (0..t).map(|_| rng.below(2048) as u32).collect();
            let inv_freq: Vec<f32> = (0..head_dim / 2).map(|j| 500000f32.powf(-2.0 * j as f32 / head_dim as f32)).collect();
            let out = b.alloc(DType::F32, &[t, heads, head_dim])?;
            let xt = f32_in(b, &[t, heads, head_dim], &x)?;
            let table = f32_in(b, &[2048, head_dim], &ops::rope_table(&inv_freq, 2048))?;
            ops::rope(b, &xt, &ops::upload_u32(b, &[t], &pos)?, &table, &out)?;
            compare_f32(&ops::download_f32(b, &out)?, &r::rope(&x, t, heads, head_dim, &pos, &inv_freq), F32_NMSE)
        }
        Case::KvAppend { t, kv_heads, head_dim, capacity, rope } => {
            let (k, v) = (rng.vec(t * kv_heads * head_dim, 1.0), rng.vec(t * kv_heads * head_dim, 1.0));
            let init_k = rng.vec(kv_heads * capacity * head_dim, 1.0);
            let init_v = rng.vec(kv_heads * capacity * head_dim, 1.0);
            // Distinct positions, including the last slot.
            let pos: Vec<u32> = (0..t).map(|i| (capacity - 1 - 2 * i) as u32).collect();
            let inv_freq: Vec<f32> = (0..head_dim / 2).map(|j| 500000f32.powf(-2.0 * j as f32 / head_dim as f32)).collect();
            // With RoPE the cached K is the reference rotation of K at its position.
            let k_in: Vec<f64> = if rope { r::rope(&k, t, kv_heads, head_dim, &pos, &inv_freq) } else { k.iter().map(|&x| x as f64).collect() };
            let (mut wk, mut wv): (Vec<f64>, Vec<f64>) = (init_k.iter().map(|&x| x as f64).collect(), init_v.iter().map(|&x| x as f64).collect());
            for (i, &p) in pos.iter().enumerate() {
                for g in 0..kv_heads {
                    let (src, dst) = ((i * kv_heads + g) * head_dim, (g * capacity + p as usize) * head_dim);
                    wk[dst..dst + head_dim].copy_from_slice(&k_in[src..src + head_dim]);
                    for e in 0..head_dim {
                        wv[dst + e] = v[src + e] as f64;
                    }
                }
            }
            let cache_shape = [kv_heads, capacity, head_dim];
            let (kc, vc) = (f32_in(b, &cache_shape, &init_k)?, f32_in(b, &cache_shape, &init_v)?);
            let src_shape = [t, kv_heads, head_dim];
            let (kt, vt, pt) = (f32_in(b, &src_shape, &k)?, f32_in(b, &src_shape, &v)?, ops::upload_u32(b, &[t], &pos)?);
            if rope {
                let table = f32_in(b, &[capacity, head_dim], &ops::rope_table(&inv_freq, capacity))?;
                ops::rope_kv_append(b, &kt, &vt, &pt, &table, &kc, &vc)?;
            } else {
                ops::kv_append(b, &kt, &vt, &pt, &kc, &vc)?;
            }
            let (k_tol, v_tol) = (if rope { F32_NMSE } else { 0.0 }, 0.0);
            match compare_f32(&ops::download_f32(b, &kc)?, &wk, k_tol) {
                Verdict::Pass => compare_f32(&ops::download_f32(b, &vc)?, &wv, v_tol),
                fail => fail,
            }
        }
        Case::Attention { t, heads, kv_heads, head_dim, kv_len, causal } => {
            let capacity = kv_len + 3;
            let q = rng.vec(t * heads * head_dim, 1.0);
            let kc = rng.vec(kv_heads * capacity * head_dim, 1.0);
            let vc = rng.vec(kv_heads * capacity * head_dim, 1.0);
            let out = b.alloc(DType::F32, &[t, heads, head_dim])?;
            let cache_shape = [kv_heads, capacity, head_dim];
            ops::attention(b, &f32_in(b, &[t, heads, head_dim], &q)?, &f32_in(b, &cache_shape, &kc)?, &f32_in(b, &cache_shape, &vc)?, &out, kv_len, causal)?;
            let want = r::attention(&q, &kc, &vc, t, heads, kv_heads, head_dim, capacity, kv_len, causal);
            compare_f32(&ops::download_f32(b, &out)?, &want, F32_NMSE)
        }
        Case::SwiGlu { rows, cols } => {
            let (g, u) = (rng.vec(rows * cols, 6.0), rng.vec(rows * cols, 2.0));
            let out = b.alloc(DType::F32, &[rows, cols])?;
            ops::swiglu(b, &f32_in(b, &[rows, cols], &g)?, &f32_in(b, &[rows, cols], &u)?, &out)?;
            let want: Vec<f64> = g.iter().zip(&u).map(|(&g, &u)| r::silu_mul(g, u)).collect();
            compare_f32(&ops::download_f32(b, &out)?, &want, F32_NMSE)
        }
        Case::Add { rows, cols, in_place } => {
            let (x, y) = (rng.vec(rows * cols, 1.0), rng.vec(rows * cols, 1.0));
            let (xt, yt) = (f32_in(b, &[rows, cols], &x)?, f32_in(b, &[rows, cols], &y)?);
            let out = if in_place { xt.clone() } else { b.alloc(DType::F32, &[rows, cols])? };
            ops::add(b, &xt, &yt, &out)?;
            let want: Vec<f64> = x.iter().zip(&y).map(|(&a, &c)| a as f64 + c as f64).collect();
            compare_f32(&ops::download_f32(b, &out)?, &want, F32_NMSE)
        }
        Case::SelectRows { rows, cols } => {
            let (x, y) = (rng.vec(rows * cols, 1.0), rng.vec(rows * cols, 1.0));
            let mask: Vec<u32> = (0..rows).map(|i| if i == 0 { 1 } else { rng.below(2) as u32 }).collect();
            let out = b.alloc(DType::F32, &[rows, cols])?;
            ops::select_rows(b, &ops::upload_u32(b, &[rows], &mask)?, &f32_in(b, &[rows, cols], &x)?, &f32_in(b, &[rows, cols], &y)?, &out)?;
            let want: Vec<f64> = (0..rows * cols).map(|i| if mask[i / cols] != 0 { x[i] } else { y[i] } as f64).collect();
            compare_f32(&ops::download_f32(b, &out)?, &want, 0.0)
        }
        Case::Guidance { rows, cols, scale } => {
            let (c, u) = (rng.vec(rows * cols, 4.0), rng.vec(rows * cols, 4.0));
            let out = b.alloc(DType::F32, &[rows, cols])?;
            ops::guidance(b, &f32_in(b, &[rows, cols], &c)?, &f32_in(b, &[rows, cols], &u)?, scale, &out)?;
            let want: Vec<f64> = c.iter().zip(&u).map(|(&c, &u)| u as f64 + scale as f64 * (c as f64 - u as f64)).collect();
            compare_f32(&ops::download_f32(b, &out)?, &want, F32_NMSE)
        }
        Case::Softmax { rows, cols } => {
            let x = rng.vec(rows * cols, 8.0);
            let out = b.alloc(DType::F32, &[rows, cols])?;
            ops::softmax(b, &f32_in(b, &[rows, cols], &x)?, &out)?;
            compare_f32(&ops::download_f32(b, &out)?, &r::softmax(&x, cols), F32_NMSE)
        }
        Case::Argmax { rows, cols } => {
            let mut x = rng.vec(rows * cols, 1.0);
            let mut want = Vec::new();
            for row in 0..rows {
                // Plant a tie for the maximum: the first index must win.
                let (a, c) = (rng.below(cols), rng.below(cols));
                x[row * cols + a] = 2.0;
                x[row * cols + c] = 2.0;
                want.push(a.min(c) as u32);
            }
            let out = b.alloc(DType::U32, &[rows])?;
            ops::argmax(b, &f32_in(b, &[rows, cols], &x)?, &out)?;
            compare_u32(&ops::download_u32(b, &out)?, &want)
        }
        Case::TopKSample { rows, cols, top_k, forbid_below } => {
            let x = rng.vec(rows * cols, 4.0);
            let params = SampleParams { top_k, temperature: 0.9, forbid_below, seed: rng.next_u64(), counter: 7 };
            let want: Vec<u32> = (0..rows)
                .map(|row| r::top_k_sample(&x[row * cols..(row + 1) * cols], top_k, 0.9, forbid_below, params.seed, 7 + row as u64))
                .collect();
            let out = b.alloc(DType::U32, &[rows])?;
            ops::top_k_sample(b, &f32_in(b, &[rows, cols], &x)?, &out, params)?;
            compare_u32(&ops::download_u32(b, &out)?, &want)
        }
        Case::Conv2d { .. } | Case::GroupNorm { .. } | Case::Glu { .. } | Case::Film { .. } | Case::RvqEncode { .. } | Case::RelPosAttention { .. } => {
            return encode_cases::run(case, b, rng)
        }
        _ => return codec_cases::run(case, b, rng),
    })
}

/// All M rows at once with `RowOrder::Invariant`, then each row alone: equal bit for bit,
/// and close to the f64 reference.
#[allow(clippy::too_many_arguments)]
fn invariant_rows<B: Backend>(b: &B, rng: &mut Rng, m: usize, k: usize, n: usize, layout: WeightLayout, dtype: DType, gate_up: bool) -> Result<Verdict> {
    let x = rng.vec(m * k, 1.0);
    let in_out = layout == WeightLayout::InOut;
    let wshape = if in_out { [k, n] } else { [n, k] };
    let (w, w2) = (r::round_to(&rng.vec(n * k, 1.0), dtype), r::round_to(&rng.vec(n * k, 1.0), dtype));
    let (tw, tw2) = (ops::upload_f32(b, &wshape, &w, dtype)?, ops::upload_f32(b, &wshape, &w2, dtype)?);
    let product = |rows: &[f32], count: usize| -> Result<Vec<f32>> {
        let out = b.alloc(DType::F32, &[count, n])?;
        let xt = f32_in(b, &[count, k], rows)?;
        if gate_up {
            ops::gate_up(b, &xt, &tw, &tw2, &out, RowOrder::Invariant)?;
        } else {
            ops::matmul_rows(b, &xt, &tw, &out, layout, false, RowOrder::Invariant)?;
        }
        ops::download_f32(b, &out)
    };
    let all = product(&x, m)?;
    // The first, second, middle and last two rows: every position class of a tile
    // (each one alone costs a launch, which the CUDA emulator makes slow).
    let mut rows: Vec<usize> = [0, 1, m / 2, m.saturating_sub(2), m - 1].into_iter().filter(|&r| r < m).collect();
    rows.sort_unstable();
    rows.dedup();
    for row in rows {
        let alone = product(&x[row * k..(row + 1) * k], 1)?;
        if let Some(j) = (0..n).find(|&j| all[row * n + j].to_bits() != alone[j].to_bits()) {
            return Ok(Verdict::Fail(format!("row {row} col {j}: {} in a batch of {m}, {} alone", all[row * n + j], alone[j])));
        }
    }
    let want = if gate_up {
        let (g, u) = (r::matmul(&x, &w, m, k, n, false, None), r::matmul(&x, &w2, m, k, n, false, None));
        g.iter().zip(&u).map(|(&g, &u)| g / (1.0 + (-g).exp()) * u).collect()
    } else {
        r::matmul(&x, &w, m, k, n, in_out, None)
    };
    Ok(compare_f32(&all, &want, F32_NMSE))
}
