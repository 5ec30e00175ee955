//! Codec configurations for benchmarks: the released architecture (`full`) and a tiny one.
//! The SQ decoder's configuration is not published; `full` uses HeartCodec's 24 kHz
//! analogue (causal, 2 samples per step, upsampling 6·5·4·4, 64 base channels).

use crate::config::{CodecConfig, FlowConfig, RvqConfig, RvqGroup, SamplerConfig, SqConfig};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodecPreset {
    Full,
    Small,
}

impl CodecPreset {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "full" => Some(CodecPreset::Full),
            "small" => Some(CodecPreset::Small),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            CodecPreset::Full => "full",
            CodecPreset::Small => "small",
        }
    }

    pub fn config(self) -> CodecConfig {
        let (codebook, cb_dim, cond, layers, heads, init_channel) = match self {
            CodecPreset::Full => (8192, 32, 768, 32, 24, 64),
            CodecPreset::Small => (128, 16, 64, 2, 2, 4),
        };
        let d = heads * 64;
        let group = |name: &str, module: &str, rows: Vec<usize>| RvqGroup { name: name.into(), module: module.into(), levels: rows.len(), token_rows: rows };
        CodecConfig {
            sample_rate: 24000,
            token_rate: 12.5,
            samples_per_token: 1920,
            latents_per_token: 2,
            num_codebooks: 8,
            rvq: RvqConfig {
                codebook_size: codebook,
                codebook_dim: cb_dim,
                cond_dim: cond,
                groups: vec![
                    group("phone", "vq_pronunciation_semantic", vec![0]),
                    group("structure", "vq_structure_semantic", vec![1]),
                    group("acoustic", "vq_acoustic", (2..8).collect()),
                ],
            },
            flow: FlowConfig {
                prefix: "cfm_wrapper.estimator.".into(),
                n_layer: layers,
                n_head: heads,
                head_dim: 64,
                inner_dim: d,
                ffn_dim: 4 * d,
                in_channels: 2 * 136 + cond,
                latent_dim: 136,
                out_channels: 136,
                max_positions: 3000,
                norm_eps: 1e-6,
                norm_out_eps: 1e-6,
                proj_kernel: 3,
                timestep_embed_dim: 512,
                timestep_scale: 1000.0,
                timestep_max_period: 10000.0,
                timestep_freqs: None,
            },
            sampler: SamplerConfig {
                steps: 10,
                cfg_scale: 1.5,
                sigma_min: 1e-4,
                window_tokens: 250,
                hop_tokens: 186,
                overlap_tokens: 64,
                incontext_frames: 32,
                window_samples: 480000,
                hop_samples: 360000,
                overlap_samples: 120000,
            },
            sq_decoder: SqConfig {
                causal: true,
                num_samples: 2,
                upsample_factors: vec![6, 5, 4, 4],
                upsample_kernel_sizes: vec![12, 10, 8, 8],
                latent_hidden_dim: 136,
                default_kernel_size: 7,
                delay_kernel_size: 5,
                init_channel,
                res_kernel_size: 7,
                quantize_levels: 9,
                residual_dilations: vec![1, 3, 5, 7, 9],
            },
            init: Some(serde_json::json!({
                "version": 1, "seed": 0x5eed_c0dec_u64,
                "scale": {"default": -6, "._codebook.embed": 0, "project_out.weight": -4, "cond_feature_emb.weight": -5,
                          ".weight_g": 0, ".weight_v": -3, "activation1.weight": -2, "activation2.weight": -2, "activation.weight": -2}
            })),
        }
    }

    /// Parameters of the decode subset.
    pub fn parameters(self) -> usize {
        let c = self.config();
        crate::tensors::codec_tensors(&c).iter().chain(crate::tensors::sq_tensors(&c).iter()).map(|(_, s)| s.iter().product::<usize>()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_valid_and_the_full_one_has_the_published_size() {
        for p in [CodecPreset::Full, CodecPreset::Small] {
            p.config().validate().unwrap();
        }
        // The flow estimator of the spec: 931,823,952 parameters (pos_embed excluded).
        let c = CodecPreset::Full.config();
        let flow: usize = crate::tensors::codec_tensors(&c)
            .iter()
            .filter(|(n, _)| n.starts_with(&c.flow.prefix) && !n.ends_with("pos_embed.pe"))
            .map(|(_, s)| s.iter().product::<usize>())
            .sum();
        assert_eq!(flow, 931_823_952);
    }
}
