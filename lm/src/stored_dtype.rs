//! The dtype (and, for the audio heads, the layout) each LM tensor is stored in when a
//! model is converted or synthesized.

use uniaudio_runtime::{DType, WeightLayout};

/// The audio heads' name: upstream stores them [8, d_dec, V_a] (in-dim first).
pub const AUDIO_HEAD: &str = "audio_head";

/// The dtype tensor `name` (of upstream `shape`) is stored in when `requested` is asked
/// for. With q8_0 (q4_0) only the projections become 8-bit (4-bit) blocks: attention qkv
/// and output, the MLP's gate, up and down, the text head, the decoder's input projection
/// and the audio heads, when their input dimension is whole 32-weight blocks (the audio
/// heads are then stored transposed, see `audio_head_layout`). Embedding tables (read a
/// row at a time) and norms stay bf16.
pub fn stored_dtype(name: &str, shape: &[usize], requested: DType) -> DType {
    const PROJECTIONS: [&str; 5] = [
        ".attn.qkv.weight",
        ".attn.proj.weight",
        ".mlp.fc_1.weight",
        ".mlp.fc_2.weight",
        ".mlp.proj.weight",
    ];
    if name == AUDIO_HEAD {
        // Blocks run along the input dimension d_dec: [V_a, d_dec] per codebook.
        return match shape {
            [_, dd, va] => DType::stored_for(requested, true, &[*va, *dd]),
            _ => DType::stored_for(requested, false, shape),
        };
    }
    let projection = PROJECTIONS.iter().any(|s| name.ends_with(s))
        || name == "backbone.lm_head.weight"
        || name == "projection.weight";
    DType::stored_for(requested, projection, shape)
}

/// How the audio heads are laid out in a file whose `audio_head` has dtype `stored`:
/// float heads keep upstream's [8, d_dec, V_a] (read K-major); block-quantized ones are
/// [8, V_a, d_dec], so that each output's weights form rows of whole blocks, which every
/// backend's block kernels read.
pub fn audio_head_layout(stored: DType) -> WeightLayout {
    if stored.is_quantized() {
        WeightLayout::OutIn
    } else {
        WeightLayout::InOut
    }
}

/// [8, d_dec, V_a] when tensor `name` of upstream `shape` is audio heads stored
/// transposed (as `stored`, see `audio_head_layout`).
fn transposed_head(name: &str, shape: &[usize], stored: DType) -> Option<[usize; 3]> {
    match shape {
        [c, dd, va] if name == AUDIO_HEAD && audio_head_layout(stored) == WeightLayout::OutIn => Some([*c, *dd, *va]),
        _ => None,
    }
}

/// Tensor `name`'s shape in a file where it has dtype `stored` (upstream's `shape` except
/// for quantized audio heads, see `audio_head_layout`).
pub fn stored_shape(name: &str, shape: &[usize], stored: DType) -> Vec<usize> {
    match transposed_head(name, shape, stored) {
        Some([c, dd, va]) => vec![c, va, dd],
        None => shape.to_vec(),
    }
}

/// Puts tensor `name`'s values (upstream order, `shape`) in the order of `stored_shape`:
/// quantized audio heads are transposed per codebook.
pub fn to_stored_order(name: &str, shape: &[usize], stored: DType, values: Vec<f32>) -> Vec<f32> {
    let Some([c, dd, va]) = transposed_head(name, shape, stored) else { return values };
    debug_assert_eq!(values.len(), c * dd * va);
    let mut out = vec![0f32; values.len()];
    for (src, dst) in values.chunks_exact(dd * va).zip(out.chunks_exact_mut(dd * va)) {
        for (k, row) in src.chunks_exact(va).enumerate() {
            for (v, &x) in row.iter().enumerate() {
                dst[v * dd + k] = x;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CODEBOOKS;

    #[test]
    fn only_projections_of_whole_blocks_become_q8() {
        let q8 = DType::Q8_0;
        assert_eq!(stored_dtype("backbone.transformer.h.3.mlp.fc_1.weight", &[8192, 3072], q8), q8);
        assert_eq!(stored_dtype("backbone.lm_head.weight", &[128_256, 3072], q8), q8);
        assert_eq!(stored_dtype("projection.weight", &[2048, 3072], q8), q8);
        assert_eq!(stored_dtype("backbone.transformer.wte.weight", &[128_256, 3072], q8), DType::BF16);
        assert_eq!(stored_dtype("audio_head", &[8, 2048, 4100], q8), q8);
        assert_eq!(stored_dtype("audio_head", &[8, 2048, 4100], DType::Q4_0), DType::Q4_0);
        assert_eq!(stored_dtype("audio_head", &[8, 2040, 4096], q8), DType::BF16);
        assert_eq!(stored_dtype("audio_head", &[8, 2048, 4100], DType::F16), DType::F16);
        assert_eq!(stored_dtype("decoder.transformer.h.0.norm_1.weight", &[2048], q8), DType::BF16);
        assert_eq!(stored_dtype("decoder.transformer.h.0.attn.proj.weight", &[48, 40], q8), DType::BF16);
        assert_eq!(stored_dtype("decoder.transformer.h.0.attn.proj.weight", &[48, 40], DType::F16), DType::F16);
    }

    #[test]
    fn quantized_audio_heads_are_stored_transposed_per_codebook() {
        let shape = [CODEBOOKS, 2, 3];
        // Upstream order: codebook c, input k, output v holds 100c + 10k + v.
        let values: Vec<f32> = (0..CODEBOOKS).flat_map(|c| (0..2).flat_map(move |k| (0..3).map(move |v| (100 * c + 10 * k + v) as f32))).collect();
        assert_eq!(stored_shape(AUDIO_HEAD, &shape, DType::Q8_0), vec![CODEBOOKS, 3, 2]);
        let stored = to_stored_order(AUDIO_HEAD, &shape, DType::Q4_0, values.clone());
        // Stored order: codebook c, output v, input k.
        let want: Vec<f32> = (0..CODEBOOKS).flat_map(|c| (0..3).flat_map(move |v| (0..2).map(move |k| (100 * c + 10 * k + v) as f32))).collect();
        assert_eq!(stored, want);
        // Float heads and every other tensor keep upstream's layout.
        assert_eq!(stored_shape(AUDIO_HEAD, &shape, DType::BF16), shape.to_vec());
        assert_eq!(to_stored_order(AUDIO_HEAD, &shape, DType::BF16, values.clone()), values);
        assert_eq!(to_stored_order("projection.weight", &shape, DType::Q8_0, values.clone()), values);
        assert_eq!(stored_shape("projection.weight", &[4, 64], DType::Q8_0), vec![4, 64]);
    }
}
