//! The configurations of synthetic bundles: the LM, the codec (decoder and encoder) and
//! their weight rules, at three sizes. `full` has the released architecture.
//!
//! Random weights never end a reasoning block (all eight codes at `reason_eos` at once), so
//! an audio task on them would produce no waveform. The LM's weight rules therefore plant a
//! constant channel in the depth decoder: in its last layer a few SwiGLU units with equal
//! gate and up rows give t²·σ(t) ≥ 0, written into residual dimension 0, so after the final
//! RMSNorm dimension 0 is positive whatever the input. Row 0 of `audio_head` turns that
//! channel into fixed logit offsets for `reason_eos` and `semantic_eos`: generation closes
//! the reasoning block within a few frames and stops now and then, while the other
//! dimensions keep the codes input-dependent. The decoder's codebooks cover every
//! reconstruction id the LM can emit (specials included), so any generated frame decodes.

use serde_json::{json, Value};
use uniaudio_codec::encode::presets::EncoderPreset;
use uniaudio_codec::presets::CodecPreset;
use uniaudio_lm::config::{SpecialIds, StackConfig, CODEBOOKS};
use uniaudio_lm::presets::Preset;
use uniaudio_lm::LmConfig;

/// The size of a synthetic bundle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BundlePreset {
    /// A few megabytes of weights (plus the 128256-entry text tables): for tests and trials.
    Tiny,
    /// The LM's `small` preset (about 0.5 G parameters) and the small codec.
    Small,
    /// The released architecture (LM 4.9 G parameters, codec encoder 746 M).
    Full,
}

/// SwiGLU units planted in the depth decoder's last layer, and their weight.
const PLANTED_UNITS: usize = 8;
const PLANTED_GAIN: f64 = 16.0;
/// Logit offsets of `reason_eos` and `semantic_eos`. The channel saturates near
/// sqrt(d_decoder) after the RMSNorm, so the weights are these divided by that.
const REASON_EOS_LOGIT: f64 = 7.0;
const SEMANTIC_EOS_LOGIT: f64 = 4.6;

impl BundlePreset {
    /// Every preset.
    pub const ALL: [BundlePreset; 3] = [BundlePreset::Tiny, BundlePreset::Small, BundlePreset::Full];

    /// `tiny`, `small` or `full`.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == s)
    }

    /// The preset's name.
    pub fn name(self) -> &'static str {
        match self {
            BundlePreset::Tiny => "tiny",
            BundlePreset::Small => "small",
            BundlePreset::Full => "full",
        }
    }

    /// The LM config.json value, with its `init` block.
    pub fn lm_config(self) -> Value {
        let config = match self {
            BundlePreset::Tiny => tiny_lm(),
            BundlePreset::Small => Preset::Small.config(),
            BundlePreset::Full => Preset::Full.config(),
        };
        let mut v = serde_json::to_value(&config).expect("serialisable config");
        v["init"] = lm_init(&config);
        v
    }

    /// The codec config.json value (decoder and encoder sections, `init` block).
    pub fn codec_config(self) -> Value {
        let lm: LmConfig = serde_json::from_value(self.lm_config()).expect("valid preset");
        // Every reconstruction id the LM can emit, semantic specials included.
        let codebook = lm.ids.audio_semantic_card;
        let (decoder, encoder) = match self {
            BundlePreset::Tiny | BundlePreset::Small => (CodecPreset::Small, EncoderPreset::Small),
            BundlePreset::Full => (CodecPreset::Full, EncoderPreset::Full),
        };
        let mut d = decoder.config();
        d.rvq.codebook_size = codebook;
        let mut v = serde_json::to_value(&d).expect("serialisable config");
        let mut e = encoder.config_json();
        e["reconstruction"]["vq"]["codebook_size"] = json!(codebook);
        e["reconstruction"]["vq"]["codebook_dim"] = json!(d.rvq.codebook_dim);
        // One rule set for both halves: the encoder's, with the decoder's suffix scales and
        // the default unit-norm names added.
        let mut init = e["init"].clone();
        if let Some(scales) = v["init"]["scale"].as_object() {
            for (k, s) in scales {
                if k != "default" && init["scale"].get(k).is_none() {
                    init["scale"][k] = s.clone();
                }
            }
        }
        if let Some(unit) = init["unit"].as_array_mut() {
            unit.extend(["norm_1.weight", "norm_2.weight", "ln_f.weight"].map(|u| json!(u)));
        }
        let obj = v.as_object_mut().expect("object");
        for (k, val) in e.as_object().expect("object") {
            if k != "init" {
                obj.insert(k.clone(), val.clone());
            }
        }
        obj.insert("init".into(), init);
        v
    }
}

fn tiny_lm() -> LmConfig {
    let stack = |n_layer, n_embd, n_head, head_size, intermediate_size| StackConfig {
        n_layer,
        n_embd,
        n_head,
        n_query_groups: 1,
        head_size,
        intermediate_size,
        vocab_size: None,
        rope_base: 500_000.0,
        rope_scaling: None,
        norm_eps: 1e-5,
    };
    let mut base = Preset::Small.config();
    // Reasoning codes 0..255 and recon codes 0..511 (the small encoder's codebooks), then specials.
    base.ids = SpecialIds {
        audio_reason_card: 260,
        audio_semantic_card: 515,
        reason_bos: 256,
        reason_eos: 257,
        reason_pad_token: 259,
        semantic_bos: 513,
        semantic_eos: 512,
        semantic_pad_token: 514,
        text_pad_token: 128_003,
    };
    base.stacks.backbone = StackConfig { vocab_size: Some(128_256), ..stack(2, 64, 2, 32, 128) };
    base.stacks.understanding = stack(1, 64, 2, 32, 128);
    base.stacks.generation = stack(1, 64, 2, 32, 128);
    base.stacks.decoder = stack(1, 32, 2, 16, 64);
    base
}

/// Weight rules: the public fixture's scales, plus the planted channel.
fn lm_init(c: &LmConfig) -> Value {
    let d = &c.stacks.decoder;
    let last = d.n_layer - 1;
    let (e, va) = (d.n_embd, c.audio_vocab());
    let units = PLANTED_UNITS.min(d.intermediate_size);
    // Equal gate and up rows: ±1/4 in a fixed pattern.
    let rows: Vec<f64> = (0..units * e).map(|i| if uniaudio_lm::synth::splitmix64(i as u64) & 1 == 0 { 0.25 } else { -0.25 }).collect();
    let p = |t: &str, offset: usize, values: Vec<f64>| json!({"tensor": t, "offset": offset, "values": values});
    let mlp = format!("decoder.transformer.h.{last}.mlp");
    let mut patches = vec![
        p(&format!("{mlp}.fc_1.weight"), 0, rows.clone()),
        p(&format!("{mlp}.fc_2.weight"), 0, rows),
        p(&format!("{mlp}.proj.weight"), 0, vec![PLANTED_GAIN; units]),
    ];
    let stop = c.stop_code() as usize;
    // Multiples of 1/64: exact in bf16.
    let weight = |logit: f64| (logit / (e as f64).sqrt() * 64.0).round() / 64.0;
    for i in 0..CODEBOOKS {
        let row = i * e * va;
        patches.push(p("audio_head", row + c.ids.reason_eos as usize, vec![weight(REASON_EOS_LOGIT)]));
        patches.push(p("audio_head", row + stop, vec![weight(SEMANTIC_EOS_LOGIT)]));
    }
    json!({
        "version": 1, "seed": 20_261_202,
        "scale": {"default": -4, "wte.weight": -5, "audio_embeddings.weight": -5, "projection.weight": -3, "attn.qkv.weight": -2,
                  "mlp.fc_1.weight": -3, "mlp.fc_2.weight": -3, "lm_head.weight": -2, "audio_head": -7},
        "unit": ["norm_1.weight", "norm_2.weight", "ln_f.weight"],
        "patches": patches,
    })
}
