//! The dtype each codec tensor is stored in when a codec is converted or synthesized.

use uniaudio_runtime::DType;

/// The flow estimator's linear weights (under its prefix): attention and feed-forward
/// projections, the timestep embedding and adaLN linears, the input and output projections.
const FLOW_LINEARS: [&str; 11] = [
    ".attn1.to_q.weight",
    ".attn1.to_k.weight",
    ".attn1.to_v.weight",
    ".attn1.to_out.0.weight",
    ".ff.net.0.proj.weight",
    ".ff.net.2.weight",
    "adaln_single.linear.weight",
    "timestep_embedder.linear_1.weight",
    "timestep_embedder.linear_2.weight",
    "proj_in.ffn_2.weight",
    "proj_out.ffn_2.weight",
];

/// The dtype the decoder tensor `name` (of `shape`) is stored in when `requested` is asked
/// for. With q8_0 (q4_0) only the flow estimator's linear weights whose rows are whole
/// 32-weight blocks become 8-bit (4-bit) blocks (they are the DiT's work); their biases, the convolutions, norms,
/// tables, the small RVQ projections and the encoder stay bf16. `flow_prefix` is the
/// config's `flow.prefix` (None without a decoder).
pub fn stored_dtype(
    name: &str,
    shape: &[usize],
    requested: DType,
    flow_prefix: Option<&str>,
) -> DType {
    let linear = flow_prefix
        .and_then(|p| name.strip_prefix(p))
        .is_some_and(|rest| FLOW_LINEARS.iter().any(|s| rest.ends_with(s)));
    DType::stored_for(requested, linear, shape)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_flow_linears_of_whole_blocks_become_q8() {
        let (q8, p) = (DType::Q8_0, Some("cfm_wrapper.estimator."));
        assert_eq!(stored_dtype("cfm_wrapper.estimator.transformer_blocks.3.attn1.to_q.weight", &[1536, 1536], q8, p), q8);
        assert_eq!(stored_dtype("cfm_wrapper.estimator.transformer_blocks.0.ff.net.2.weight", &[1536, 6144], q8, p), q8);
        assert_eq!(stored_dtype("cfm_wrapper.estimator.adaln_single.linear.weight", &[9216, 1536], q8, p), q8);
        // Rows of 136 weights are not whole blocks; biases and convolutions stay bf16.
        assert_eq!(stored_dtype("cfm_wrapper.estimator.proj_out.ffn_2.weight", &[136, 136], q8, p), DType::BF16);
        assert_eq!(stored_dtype("cfm_wrapper.estimator.transformer_blocks.3.attn1.to_q.bias", &[1536], q8, p), DType::BF16);
        assert_eq!(stored_dtype("cfm_wrapper.estimator.proj_in.ffn_1.weight", &[1536, 336, 3], q8, p), DType::BF16);
        // Outside the flow estimator nothing is quantized.
        assert_eq!(stored_dtype("cond_feature_emb.weight", &[1024, 1024], q8, p), DType::BF16);
        assert_eq!(stored_dtype("other.transformer_blocks.0.attn1.to_q.weight", &[64, 64], q8, p), DType::BF16);
        assert_eq!(stored_dtype("cfm_wrapper.estimator.transformer_blocks.0.attn1.to_q.weight", &[64, 64], q8, None), DType::BF16);
        assert_eq!(stored_dtype("cfm_wrapper.estimator.transformer_blocks.0.attn1.to_q.weight", &[64, 64], DType::F16, p), DType::F16);
    }
}
