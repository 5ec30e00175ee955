//! Checkpoint conversion against real `torch.save` files: every converted tensor must equal
//! the synthetic weights regenerated from the fixture's init block, bit for bit, and a
//! hostile pickle must be refused without running anything or writing anything.

use std::path::{Path, PathBuf};

use uniaudio_lm::convert::{convert, ConvertOptions};
use uniaudio_lm::llm_yaml::LlmYaml;
use uniaudio_lm::synth::{model_tensors, InitSpec};
use uniaudio_lm::{LmConfig, UniAudioLm};
use uniaudio_runtime::weights::ModelWeights;
use uniaudio_runtime::dtype::f32_to_bytes;
use uniaudio_runtime::{Cpu, DType};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/checkpoint").join(name)
}

fn config() -> (LmConfig, InitSpec) {
    let text = std::fs::read_to_string(fixture("config.json")).unwrap();
    (LmConfig::from_json(&text).unwrap(), InitSpec::from_config_json(&text).unwrap().unwrap())
}

fn opts(dtype: Option<DType>, shard_bytes: usize) -> ConvertOptions {
    ConvertOptions { dtype, shard_bytes, tokenizer: None }
}

/// Every tensor of the converted model equals the regenerated one exactly.
fn assert_matches_synthetic(dir: &Path, expect_dtype: DType) {
    let (config, init) = config();
    let weights = ModelWeights::open(dir).unwrap();
    for (name, shape) in model_tensors(&config) {
        let view = weights.get_checked(&name, &shape).unwrap();
        assert_eq!(view.dtype(), expect_dtype, "{name}");
        let want = init.tensor(&name, shape.iter().product()).unwrap();
        let got = view.to_f32();
        let bad = got.iter().zip(&want).position(|(a, b)| a.to_bits() != b.to_bits());
        assert!(bad.is_none(), "{name}: element {} is {} instead of {}", bad.unwrap(), got[bad.unwrap()], want[bad.unwrap()]);
    }
    // And the model loads through the normal path.
    UniAudioLm::load(&Cpu::new(), dir).unwrap();
}

#[test]
fn converts_every_fixture_bit_for_bit() {
    let (config, _) = config();
    for (file, stored) in [
        ("f32.checkpoint", DType::F32),
        ("bf16_module_prefix.checkpoint", DType::BF16),
        ("legacy_qkv.checkpoint", DType::F32),
        ("with_optimizer.checkpoint", DType::F32),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("model");
        convert(&fixture(file), &config, &out, &opts(None, 1 << 30), &mut |_, _| {}).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(out.join("model.safetensors").is_file(), "{file}: single file below the shard size");
        assert_matches_synthetic(&out, stored);
    }
}

#[test]
fn shards_and_dtype_conversion() {
    let (config, _) = config();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("sharded");
    let mut last = (0, 0);
    convert(&fixture("f32.checkpoint"), &config, &out, &opts(Some(DType::BF16), 100_000), &mut |d, t| last = (d, t)).unwrap();
    assert_eq!(last.0, last.1, "progress reaches the total");
    let shards = std::fs::read_dir(&out).unwrap().filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with("model-")).count();
    assert!(shards > 2, "{shards} shards");
    assert!(out.join("model.safetensors.index.json").is_file());
    assert_matches_synthetic(&out, DType::BF16);
}

#[test]
fn hostile_pickle_is_refused_without_side_effects() {
    let (config, _) = config();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("model");
    let marker = Path::new("hostile_marker.txt");
    assert!(!marker.exists());
    let err = convert(&fixture("hostile.checkpoint"), &config, &out, &opts(None, 1 << 30), &mut |_, _| {}).unwrap_err().to_string();
    assert!(err.contains("posix.system") && err.contains("nothing was executed"), "{err}");
    assert!(!out.exists(), "no output directory");
    assert!(!marker.exists() && !tmp.path().join("hostile_marker.txt").exists(), "nothing ran");
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0, "no partial files left");
}

#[test]
fn mismatched_config_names_the_tensors() {
    let (mut config, _) = config();
    config.stacks.decoder.intermediate_size = 50;
    let tmp = tempfile::tempdir().unwrap();
    let err = convert(&fixture("f32.checkpoint"), &config, &tmp.path().join("m"), &opts(None, 1 << 30), &mut |_, _| {}).unwrap_err().to_string();
    assert!(err.contains("decoder.transformer.h.0.mlp.fc_1.weight") && err.contains("[48, 32]") && err.contains("[50, 32]"), "{err}");
    config.stacks.decoder.intermediate_size = 48;
    config.stacks.backbone.n_layer = 3;
    let err = convert(&fixture("f32.checkpoint"), &config, &tmp.path().join("m"), &opts(None, 1 << 30), &mut |_, _| {}).unwrap_err().to_string();
    assert!(err.contains("backbone.transformer.h.2.attn.qkv.weight") && err.contains("missing"), "{err}");
}

#[test]
fn output_directory_is_never_overwritten() {
    let (config, _) = config();
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("keep"), "mine").unwrap();
    let err = convert(&fixture("f32.checkpoint"), &config, tmp.path(), &opts(None, 1 << 30), &mut |_, _| {}).unwrap_err().to_string();
    assert!(err.contains("not empty"), "{err}");
    assert_eq!(std::fs::read_to_string(tmp.path().join("keep")).unwrap(), "mine");
}

#[test]
fn yaml_presets_and_custom_names() {
    // The fixture's yaml names custom models: the converter asks for --config.
    let y = LlmYaml::from_file(&fixture("llm_config.yaml")).unwrap();
    let err = y.to_config(&fixture("llm_config.yaml")).unwrap_err().to_string();
    assert!(err.contains("custom") && err.contains("--config"), "{err}");
    // The released names select the released architecture.
    let released = LlmYaml { llm_name: Some("meta-llama/Llama-3.2-3B".into()), local_model: Some("Llama-3.2-300M".into()), ..y };
    let c = released.to_config(Path::new("llm_config.yaml")).unwrap();
    assert_eq!((c.stacks.backbone.n_layer, c.stacks.backbone.n_embd, c.stacks.backbone.vocab_size), (28, 3072, Some(128_256)));
    assert_eq!((c.stacks.understanding.n_layer, c.stacks.generation.n_layer), (3, 2));
    assert_eq!((c.stacks.decoder.n_layer, c.stacks.decoder.n_embd, c.stacks.decoder.head_size), (4, 2048, 64));
    assert_eq!(c.ids.audio_reason_card, 40);
}

#[test]
fn corrupt_checkpoints_are_errors() {
    let (config, _) = config();
    let tmp = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(fixture("f32.checkpoint")).unwrap();
    for (name, data) in [("truncated", bytes[..bytes.len() / 2].to_vec()), ("empty", Vec::new()), ("text", b"not a zip".to_vec())] {
        let path = tmp.path().join(name);
        std::fs::write(&path, data).unwrap();
        let err = convert(&path, &config, &tmp.path().join(format!("{name}-out")), &opts(None, 1 << 30), &mut |_, _| {}).unwrap_err().to_string();
        assert!(err.contains(name), "{name}: {err}");
    }
}

/// `--dtype q8` / `q4`: the projections become blocks of the regenerated weights, and the
/// audio heads are stored [8, V_a, d_dec] (rows of blocks along d_dec); the model loads.
#[test]
fn quantized_conversion_transposes_the_audio_heads_into_blocks() {
    let (config, init) = config();
    for dtype in [DType::Q8_0, DType::Q4_0] {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("model");
        convert(&fixture("f32.checkpoint"), &config, &out, &opts(Some(dtype), 1 << 30), &mut |_, _| {}).unwrap();
        let weights = ModelWeights::open(&out).unwrap();
        let (c, dd, va) = (8, config.stacks.decoder.n_embd, config.audio_vocab());
        let upstream = init.tensor("audio_head", c * dd * va).unwrap();
        // Codebook i, output v, input k of the stored head is upstream [i][k][v].
        let transposed: Vec<f32> = (0..c).flat_map(|i| (0..va).flat_map(move |v| (0..dd).map(move |k| (i, k, v)))).map(|(i, k, v)| upstream[(i * dd + k) * va + v]).collect();
        let head = weights.get_checked("audio_head", &[c, va, dd]).unwrap();
        assert_eq!(head.dtype(), dtype);
        assert_eq!(head.bytes(), f32_to_bytes(&transposed, dtype), "{dtype} audio_head");
        let proj = weights.get_checked("projection.weight", &[dd, config.stacks.backbone.n_embd]).unwrap();
        assert_eq!(proj.dtype(), dtype);
        assert_eq!(proj.bytes(), f32_to_bytes(&init.tensor("projection.weight", proj.numel()).unwrap(), dtype), "{dtype} projection");
        let lm = UniAudioLm::load(&Cpu::new(), &out).unwrap();
        assert_eq!(lm.weights.audio_head_layout, uniaudio_runtime::WeightLayout::OutIn);
        assert_eq!(lm.weights.audio_head[3].shape(), &[va, dd]);
    }
}

/// `model` (a converted directory) copied to `out` with `audio_head` replaced by `bytes`
/// stored as `dtype` and `shape`.
fn with_audio_head(model: &Path, out: &Path, dtype: DType, shape: &[usize], bytes: &[u8]) {
    let weights = ModelWeights::open(model).unwrap();
    let names: Vec<String> = weights.names().map(String::from).collect();
    let specs = names
        .iter()
        .map(|n| match n.as_str() {
            "audio_head" => uniaudio_runtime::weights::TensorSpec::new(n.clone(), dtype, shape),
            _ => {
                let v = weights.get(n).unwrap();
                uniaudio_runtime::weights::TensorSpec::new(n.clone(), v.dtype(), v.shape())
            }
        })
        .collect();
    std::fs::create_dir(out).unwrap();
    std::fs::copy(model.join("config.json"), out.join("config.json")).unwrap();
    let metadata = std::collections::BTreeMap::from([("format".to_string(), "pt".to_string())]);
    let mut writer = uniaudio_runtime::weights::SafetensorsWriter::create(out.join("model.safetensors"), specs, &metadata).unwrap();
    for n in &names {
        let bytes = if n == "audio_head" { bytes.to_vec() } else { weights.get(n).unwrap().bytes().to_vec() };
        writer.write_tensor(n, &bytes).unwrap();
    }
    writer.finish().unwrap();
}

/// A q4 file whose audio heads are bf16 in upstream's [8, d_dec, V_a] (as q8 and q4 files
/// were written before the heads were quantized) still loads, its heads read K-major; heads
/// in blocks but in upstream's order are refused with the reason.
#[test]
fn old_bf16_audio_heads_load_and_untransposed_blocks_are_refused() {
    let (config, init) = config();
    let tmp = tempfile::tempdir().unwrap();
    let new = tmp.path().join("new");
    convert(&fixture("f32.checkpoint"), &config, &new, &opts(Some(DType::Q4_0), 1 << 30), &mut |_, _| {}).unwrap();
    let (c, dd, va) = (8, config.stacks.decoder.n_embd, config.audio_vocab());
    let head = init.tensor("audio_head", c * dd * va).unwrap();
    let old = tmp.path().join("old");
    with_audio_head(&new, &old, DType::BF16, &[c, dd, va], &f32_to_bytes(&head, DType::BF16));
    let lm = UniAudioLm::load(&Cpu::new(), &old).unwrap();
    assert_eq!(lm.weights.audio_head_layout, uniaudio_runtime::WeightLayout::InOut);
    assert_eq!((lm.weights.audio_head[5].dtype(), lm.weights.audio_head[5].shape()), (DType::BF16, &[dd, va][..]));
    assert_eq!(lm.weights.lm_head.dtype(), DType::Q4_0);
    // The heads' bytes are upstream's, codebook by codebook.
    let five = uniaudio_runtime::Backend::download(&Cpu::new(), &lm.weights.audio_head[5]).unwrap();
    assert_eq!(five, f32_to_bytes(&head[5 * dd * va..6 * dd * va], DType::BF16));
    // Blocks along V_a (upstream's order, which no writer here produces) are refused.
    let untransposed = tmp.path().join("untransposed");
    with_audio_head(&new, &untransposed, DType::Q8_0, &[c, dd, va], &f32_to_bytes(&head, DType::Q8_0));
    let err = UniAudioLm::load(&Cpu::new(), &untransposed).err().expect("refused").to_string();
    assert!(err.contains("audio_head") && err.contains("transposed") && err.contains(&format!("{:?}", [c, va, dd])), "{err}");
}
