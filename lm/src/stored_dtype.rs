//! The dtype each LM tensor is stored in when a model is converted or synthesized.

use uniaudio_runtime::DType;

/// The dtype tensor `name` (of `shape`) is stored in when `requested` is asked for. With
/// q8_0 (q4_0) only the out-in projections become 8-bit (4-bit) blocks: attention qkv and output, the
/// MLP's gate, up and down, the text head and the decoder's input projection (rows of
/// whole 32-weight blocks). Embedding tables (read a row at a time), norms and the audio
/// heads (read K-major) stay bf16.
pub fn stored_dtype(name: &str, shape: &[usize], requested: DType) -> DType {
    const PROJECTIONS: [&str; 5] = [
        ".attn.qkv.weight",
        ".attn.proj.weight",
        ".mlp.fc_1.weight",
        ".mlp.fc_2.weight",
        ".mlp.proj.weight",
    ];
    let projection = PROJECTIONS.iter().any(|s| name.ends_with(s))
        || name == "backbone.lm_head.weight"
        || name == "projection.weight";
    DType::stored_for(requested, projection, shape)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_out_in_projections_of_whole_blocks_become_q8() {
        let q8 = DType::Q8_0;
        assert_eq!(stored_dtype("backbone.transformer.h.3.mlp.fc_1.weight", &[8192, 3072], q8), q8);
        assert_eq!(stored_dtype("backbone.lm_head.weight", &[128_256, 3072], q8), q8);
        assert_eq!(stored_dtype("projection.weight", &[2048, 3072], q8), q8);
        assert_eq!(stored_dtype("backbone.transformer.wte.weight", &[128_256, 3072], q8), DType::BF16);
        assert_eq!(stored_dtype("audio_head", &[8, 2048, 4100], q8), DType::BF16);
        assert_eq!(stored_dtype("decoder.transformer.h.0.norm_1.weight", &[2048], q8), DType::BF16);
        assert_eq!(stored_dtype("decoder.transformer.h.0.attn.proj.weight", &[48, 40], q8), DType::BF16);
        assert_eq!(stored_dtype("decoder.transformer.h.0.attn.proj.weight", &[48, 40], DType::F16), DType::F16);
    }
}
