//! The LM's weights, checked against the config and handed to a backend (zero-copy on
//! CPU). Keys are the upstream state-dict names; loading is strict, as upstream's.

use std::collections::HashMap;

use uniaudio_runtime::weights::ModelWeights;
use uniaudio_runtime::{Backend, Tensor, WeightLayout};

use crate::config::{LmConfig, StackConfig, CODEBOOKS};
use crate::error::{LmError, Result};
use crate::stored_dtype::{audio_head_layout, stored_shape, AUDIO_HEAD};
use crate::synth::model_tensors;

/// One Llama block. Shapes with e = n_embd, f = intermediate_size.
pub struct LayerWeights<B: Backend> {
    pub norm_1: Tensor<B>,   // [e]
    pub qkv: Tensor<B>,      // [(n_head + 2·n_kv)·hs, e]  rows = [Q | K | V]
    pub wq: Tensor<B>,       // [n_head·hs, e]   rows of attn.qkv.weight
    pub wk: Tensor<B>,       // [n_kv·hs, e]
    pub wv: Tensor<B>,       // [n_kv·hs, e]
    pub proj: Tensor<B>,     // [e, n_head·hs]
    pub norm_2: Tensor<B>,   // [e]
    pub fc_1: Tensor<B>,     // [f, e]  gate
    pub fc_2: Tensor<B>,     // [f, e]  up
    pub mlp_proj: Tensor<B>, // [e, f]  down
}

pub struct StackWeights<B: Backend> {
    pub layers: Vec<LayerWeights<B>>,
    pub ln_f: Tensor<B>, // [e]
}

pub struct LmWeights<B: Backend> {
    pub backbone: StackWeights<B>,
    pub understanding: StackWeights<B>,
    pub generation: StackWeights<B>,
    pub decoder: StackWeights<B>,
    pub wte: Tensor<B>,              // [V, d]
    pub lm_head: Tensor<B>,          // [V, d]
    pub audio_embeddings: Tensor<B>, // [8·V_a, d]
    pub projection: Tensor<B>,       // [d_dec, d]
    /// 8 heads: [d_dec, V_a] (in-dim first, as upstream) for float weights, [V_a, d_dec]
    /// for block-quantized ones (see `stored_dtype::audio_head_layout`).
    pub audio_head: Vec<Tensor<B>>,
    pub audio_head_layout: WeightLayout,
}

struct Loader<'a, B: Backend> {
    backend: &'a B,
    weights: &'a ModelWeights,
    /// Every tensor of the configured model, with its shape.
    expected: HashMap<String, Vec<usize>>,
}

impl<B: Backend> Loader<'_, B> {
    fn get(&self, name: &str) -> Result<Tensor<B>> {
        let shape = self.expected.get(name).ok_or_else(|| LmError::Invalid(format!("`{name}` is not a tensor of this model")))?;
        let view = self.weights.get_checked(name, shape)?;
        Ok(self.backend.upload_weight(&view)?)
    }

    /// The audio heads in the layout their stored dtype implies.
    fn audio_head(&self) -> Result<(Tensor<B>, WeightLayout)> {
        let upstream = &self.expected[AUDIO_HEAD];
        let stored = self.weights.get(AUDIO_HEAD)?;
        let (dtype, want) = (stored.dtype(), stored_shape(AUDIO_HEAD, upstream, stored.dtype()));
        if dtype.is_quantized() && stored.shape() == upstream.as_slice() && want != *upstream {
            return Err(LmError::Invalid(format!(
                "{}: `{AUDIO_HEAD}` is {dtype} in upstream's [8, d_dec, V_a] order {upstream:?}; block-quantized audio heads are stored transposed, {want:?} (write the model again with `uniaudio convert` or `synth`)",
                stored.path().display()
            )));
        }
        let view = self.weights.get_checked(AUDIO_HEAD, &want)?;
        Ok((self.backend.upload_weight(&view)?, audio_head_layout(dtype)))
    }

    fn stack(&self, prefix: &str, s: &StackConfig) -> Result<StackWeights<B>> {
        let layers = (0..s.n_layer)
            .map(|l| {
                let p = format!("{prefix}.transformer.h.{l}");
                let qkv = self.get(&format!("{p}.attn.qkv.weight"))?;
                Ok(LayerWeights {
                    norm_1: self.get(&format!("{p}.norm_1.weight"))?,
                    wq: qkv.narrow(0, s.q_dim())?,
                    wk: qkv.narrow(s.q_dim(), s.kv_dim())?,
                    wv: qkv.narrow(s.q_dim() + s.kv_dim(), s.kv_dim())?,
                    proj: self.get(&format!("{p}.attn.proj.weight"))?,
                    norm_2: self.get(&format!("{p}.norm_2.weight"))?,
                    fc_1: self.get(&format!("{p}.mlp.fc_1.weight"))?,
                    fc_2: self.get(&format!("{p}.mlp.fc_2.weight"))?,
                    mlp_proj: self.get(&format!("{p}.mlp.proj.weight"))?,
                    qkv,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(StackWeights { layers, ln_f: self.get(&format!("{prefix}.transformer.ln_f.weight"))? })
    }
}

impl<B: Backend> LmWeights<B> {
    /// Loads and checks every tensor; extra tensors in the files are an error too.
    pub fn load(backend: &B, weights: &ModelWeights, config: &LmConfig) -> Result<Self> {
        let expected: HashMap<String, Vec<usize>> = model_tensors(config).into_iter().collect();
        let mut unexpected: Vec<&str> = weights.names().filter(|n| !expected.contains_key(*n)).collect();
        if !unexpected.is_empty() {
            unexpected.sort();
            let more = if unexpected.len() > 5 { format!(" and {} more", unexpected.len() - 5) } else { String::new() };
            return Err(LmError::Invalid(format!(
                "{}: tensors not in this model's config: {}{more} (does config.json match the weights?)",
                weights.dir().display(),
                unexpected[..unexpected.len().min(5)].join(", ")
            )));
        }
        let l = Loader { backend, weights, expected };
        let s = &config.stacks;
        let (head, audio_head_layout) = l.audio_head()?;
        // One codebook's head in its stored layout: [d_dec, V_a] or [V_a, d_dec].
        let per_codebook = &head.shape()[1..];
        let audio_head = (0..CODEBOOKS).map(|i| head.narrow(i, 1)?.reshape(per_codebook)).collect::<uniaudio_runtime::Result<Vec<_>>>()?;
        Ok(LmWeights {
            backbone: l.stack("backbone", &s.backbone)?,
            understanding: l.stack("audio_understanding_expert", &s.understanding)?,
            generation: l.stack("audio_generation_expert", &s.generation)?,
            decoder: l.stack("decoder", &s.decoder)?,
            wte: l.get("backbone.transformer.wte.weight")?,
            lm_head: l.get("backbone.lm_head.weight")?,
            audio_embeddings: l.get("audio_embeddings.weight")?,
            projection: l.get("projection.weight")?,
            audio_head,
            audio_head_layout,
        })
    }

    /// Bytes of all weights (for bandwidth reporting).
    pub fn total_bytes(&self) -> usize {
        let stacks = [&self.backbone, &self.understanding, &self.generation, &self.decoder];
        let layer_bytes: usize = stacks.iter().map(|s| s.bytes()).sum();
        layer_bytes
            + [&self.wte, &self.lm_head, &self.audio_embeddings, &self.projection].iter().map(|t| t.size_bytes()).sum::<usize>()
            + self.audio_head.iter().map(|t| t.size_bytes()).sum::<usize>()
    }
}

impl<B: Backend> StackWeights<B> {
    /// Bytes one forward pass of one position reads.
    pub fn bytes(&self) -> usize {
        let per_layer: usize = self
            .layers
            .iter()
            .map(|l| [&l.norm_1, &l.qkv, &l.proj, &l.norm_2, &l.fc_1, &l.fc_2, &l.mlp_proj].iter().map(|t| t.size_bytes()).sum::<usize>())
            .sum();
        per_layer + self.ln_f.size_bytes()
    }

    /// Weights of the projections one position multiplies (qkv, output, MLP): half the
    /// multiply-add flops of a forward pass, attention aside.
    pub fn projection_params(&self) -> usize {
        self.layers
            .iter()
            .map(|l| {
                [&l.qkv, &l.proj, &l.fc_1, &l.fc_2, &l.mlp_proj]
                    .iter()
                    .map(|t| t.numel())
                    .sum::<usize>()
            })
            .sum()
    }
}
