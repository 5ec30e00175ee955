//! Model configurations for benchmarks: the released architecture and scaled-down ones
//! with the same structure (four stacks, GQA, 128256-entry text vocabulary).

use crate::config::{LmConfig, RopeScaling, SpecialIds, StackConfig, Stacks};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preset {
    /// UniAudio 2.0 as released: Llama-3.2-3B backbone, 3+2 expert layers, 4-layer depth decoder.
    Full,
    /// Same structure at Llama-3.2-1B width (about 2.2 G parameters).
    Medium,
    /// A quick configuration (about 0.5 G parameters) for smoke runs.
    Small,
}

impl Preset {
    pub const ALL: [Preset; 3] = [Preset::Full, Preset::Medium, Preset::Small];

    pub fn name(self) -> &'static str {
        match self {
            Preset::Full => "full",
            Preset::Medium => "medium",
            Preset::Small => "small",
        }
    }

    pub fn parse(s: &str) -> Option<Preset> {
        Preset::ALL.into_iter().find(|p| p.name() == s)
    }

    pub fn config(self) -> LmConfig {
        let stack = |n_layer, n_embd, n_head, n_query_groups, head_size, intermediate_size| StackConfig {
            n_layer,
            n_embd,
            n_head,
            n_query_groups,
            head_size,
            intermediate_size,
            vocab_size: None,
            rope_base: 500_000.0,
            rope_scaling: Some(RopeScaling::LLAMA3),
            norm_eps: 1e-5,
        };
        let (backbone, expert, decoder) = match self {
            Preset::Full => (stack(28, 3072, 24, 8, 128, 8192), stack(0, 3072, 24, 8, 128, 8192), stack(4, 2048, 32, 8, 64, 8192)),
            Preset::Medium => (stack(16, 2048, 32, 8, 64, 8192), stack(0, 2048, 32, 8, 64, 8192), stack(4, 1024, 16, 8, 64, 4096)),
            Preset::Small => (stack(4, 1024, 16, 8, 64, 4096), stack(0, 1024, 16, 8, 64, 4096), stack(2, 512, 8, 4, 64, 2048)),
        };
        LmConfig {
            ids: SpecialIds {
                audio_reason_card: 4100,
                audio_semantic_card: 10003,
                reason_bos: 4096,
                reason_eos: 4097,
                reason_pad_token: 4099,
                semantic_bos: 10001,
                semantic_eos: 10000,
                semantic_pad_token: 10002,
                text_pad_token: 128_003,
            },
            max_seq_len: 2048,
            stacks: Stacks {
                backbone: StackConfig { vocab_size: Some(128_256), ..backbone },
                understanding: StackConfig { n_layer: 3, ..expert.clone() },
                generation: StackConfig { n_layer: 2, ..expert },
                decoder,
            },
        }
    }

    /// Parameter count of the preset's model.
    pub fn parameters(self) -> usize {
        crate::synth::model_tensors(&self.config()).iter().map(|(_, s)| s.iter().product::<usize>()).sum()
    }
}
