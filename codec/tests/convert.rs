//! Codec checkpoints in torch's format -> a codec directory: the decode subset is kept bit
//! for bit (a `module.` prefix stripped, encoder tensors and other entries skipped unread),
//! the position table is computed when absent, and mismatches are named.

mod common;

use std::path::{Path, PathBuf};

use common::torch_writer::{write, Tensor};
use uniaudio_codec::convert::convert_codec;
use uniaudio_codec::synth::{init_spec, write_synthetic_codec};
use uniaudio_codec::tensors::{codec_tensors, sq_tensors};
use uniaudio_codec::CodecConfig;
use uniaudio_runtime::weights::ModelWeights;

fn fixture_config() -> CodecConfig {
    CodecConfig::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/public/config.json")).unwrap()
}

/// Synthetic tensors of `list` (minus `skip`), names prefixed.
fn tensors(config: &CodecConfig, list: Vec<(String, Vec<usize>)>, prefix: &str, skip: &str) -> Vec<Tensor> {
    let init = init_spec(config).unwrap();
    list.into_iter()
        .filter(|(n, _)| !n.ends_with(skip) || skip.is_empty())
        .map(|(name, shape)| {
            let n = shape.iter().product();
            Tensor { values: init.tensor(&name, n).unwrap(), name: format!("{prefix}{name}"), shape }
        })
        .collect()
}

fn checkpoints(dir: &Path, config: &CodecConfig, mutate: impl FnOnce(&mut Vec<Tensor>)) -> (PathBuf, PathBuf) {
    let mut codec = tensors(config, codec_tensors(config), "module.", "pos_embed.pe");
    // Encoder weights that a decode-only conversion must ignore.
    codec.push(Tensor { name: "module.whisper_encoder.conv1.weight".into(), shape: vec![4, 3], values: vec![0.5; 12] });
    mutate(&mut codec);
    let sq = tensors(config, sq_tensors(config), "", "");
    let (c, s) = (dir.join("ReasoningCodec.checkpoint"), dir.join("sqcodec.pth"));
    write(&c, "ReasoningCodec", &[("model", codec)], None);
    // An entry outside the decode subset that would run a command if executed.
    write(&s, "sqcodec", &[("codec_model", sq)], Some(("encoder.payload", "posix", "system")));
    (c, s)
}

#[test]
fn converts_the_decode_subset_bit_for_bit() {
    let config = fixture_config();
    let tmp = tempfile::tempdir().unwrap();
    let (c, s) = checkpoints(tmp.path(), &config, |_| {});
    let out = tmp.path().join("converted");
    std::fs::create_dir(&out).unwrap();
    convert_codec(&c, &s, &config, &out, &mut |_, _| {}).unwrap();
    let want = tmp.path().join("synth");
    std::fs::create_dir(&want).unwrap();
    write_synthetic_codec(&config, &want).unwrap();
    for file in ["codec.safetensors", "sqcodec.safetensors"] {
        let (a, b) = (ModelWeights::from_file(&out.join(file)).unwrap(), ModelWeights::from_file(&want.join(file)).unwrap());
        let names: Vec<String> = b.names().map(String::from).collect();
        assert_eq!(a.names().count(), names.len(), "{file}: tensor count");
        for name in names {
            assert_eq!(a.get(&name).unwrap().bytes(), b.get(&name).unwrap().bytes(), "{file}: {name}");
        }
    }
    // The converted directory loads and has no `init` block.
    let converted = CodecConfig::load(&out.join("config.json")).unwrap();
    assert!(converted.init.is_none());
    uniaudio_codec::Codec::load(&uniaudio_runtime::Cpu::new(), &out).unwrap();
}

#[test]
fn mismatches_are_listed_and_nothing_is_written() {
    let config = fixture_config();
    let tmp = tempfile::tempdir().unwrap();
    let (c, s) = checkpoints(tmp.path(), &config, |codec| {
        codec.retain(|t| !t.name.ends_with("transformer_blocks.1.attn1.to_q.bias"));
        let t = codec.iter_mut().find(|t| t.name.ends_with("cond_feature_emb.weight")).unwrap();
        t.shape = vec![32, 128];
    });
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let err = convert_codec(&c, &s, &config, &out, &mut |_, _| {}).unwrap_err().to_string();
    assert!(err.contains("transformer_blocks.1.attn1.to_q.bias` is missing"), "{err}");
    assert!(err.contains("cond_feature_emb.weight`: checkpoint has [32, 128], the config expects [64, 64]"), "{err}");
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0);
}

#[test]
fn a_needed_tensor_that_is_not_a_tensor_is_refused_by_name() {
    let config = fixture_config();
    let tmp = tempfile::tempdir().unwrap();
    let (c, _) = checkpoints(tmp.path(), &config, |_| {});
    // An SQ archive whose needed `decoder.0.bias` is a call of posix.system.
    let mut sq = tensors(&config, sq_tensors(&config), "", "");
    sq.retain(|t| t.name != "decoder.0.bias");
    let s = tmp.path().join("hostile.pth");
    write(&s, "sqcodec", &[("codec_model", sq)], Some(("decoder.0.bias", "posix", "system")));
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let err = convert_codec(&c, &s, &config, &out, &mut |_, _| {}).unwrap_err().to_string();
    assert!(err.contains("posix.system") && err.contains("nothing was executed"), "{err}");
    assert!(!Path::new("/tmp/pwned").exists());
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0);
}
