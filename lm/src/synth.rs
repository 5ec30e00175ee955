//! The LM's tensor list for the synthetic-weight initialiser (`uniaudio_runtime::synth`).

pub use uniaudio_runtime::synth::{fnv1a64, splitmix64, InitSpec, Patch};

use crate::config::{LmConfig, StackConfig, CODEBOOKS};

fn stack_tensors(prefix: &str, s: &StackConfig, out: &mut Vec<(String, Vec<usize>)>) {
    let (e, f) = (s.n_embd, s.intermediate_size);
    for l in 0..s.n_layer {
        let p = format!("{prefix}.transformer.h.{l}");
        out.push((format!("{p}.norm_1.weight"), vec![e]));
        out.push((format!("{p}.attn.qkv.weight"), vec![s.qkv_rows(), e]));
        out.push((format!("{p}.attn.proj.weight"), vec![e, s.q_dim()]));
        out.push((format!("{p}.norm_2.weight"), vec![e]));
        out.push((format!("{p}.mlp.fc_1.weight"), vec![f, e]));
        out.push((format!("{p}.mlp.fc_2.weight"), vec![f, e]));
        out.push((format!("{p}.mlp.proj.weight"), vec![e, f]));
    }
    out.push((format!("{prefix}.transformer.ln_f.weight"), vec![e]));
}

/// Every tensor of the upstream state dict, with its shape.
pub fn model_tensors(c: &LmConfig) -> Vec<(String, Vec<usize>)> {
    let s = &c.stacks;
    let (d, dd, va) = (s.backbone.n_embd, s.decoder.n_embd, c.audio_vocab());
    let mut out = vec![
        ("audio_embeddings.weight".to_string(), vec![CODEBOOKS * va, d]),
        ("projection.weight".to_string(), vec![dd, d]),
        ("audio_head".to_string(), vec![CODEBOOKS, dd, va]),
        ("backbone.transformer.wte.weight".to_string(), vec![c.text_vocab(), d]),
        ("backbone.lm_head.weight".to_string(), vec![c.text_vocab(), d]),
    ];
    stack_tensors("backbone", &s.backbone, &mut out);
    stack_tensors("audio_understanding_expert", &s.understanding, &mut out);
    stack_tensors("audio_generation_expert", &s.generation, &mut out);
    stack_tensors("decoder", &s.decoder, &mut out);
    out
}
