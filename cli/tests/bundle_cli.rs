//! The bundle round trip: released-style checkpoints -> `convert --bundle` -> a bundle that
//! `verify` accepts and whose parts work; a changed or missing file is named by `verify`.

#[path = "../../codec/tests/common/torch_writer.rs"]
mod torch_writer;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use torch_writer::{write, Tensor};
use uniaudio::bundle_presets::BundlePreset;
use uniaudio_codec::encode::{encoder_tensors, EncoderConfig};
use uniaudio_codec::tensors::{codec_tensors, sq_tensors};
use uniaudio_codec::CodecConfig;
use uniaudio_runtime::synth::InitSpec;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_uniaudio"));
    c.env_remove("UNIAUDIO_MODEL");
    c
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn ok(cmd: &mut Command) -> Output {
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "{cmd:?} failed: {}", stderr(&o));
    o
}

fn lm_fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../lm/tests/fixtures/checkpoint").join(name)
}

fn speech() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../codec/tests/fixtures/encode/a_24k_f32_3s2.wav")
}

/// ReasoningCodec.checkpoint (decoder and encoder under `module.`) and sqcodec.pth with the
/// synthetic values of `config`.
fn codec_checkpoints(dir: &Path, config: &Value) -> (PathBuf, PathBuf) {
    let init: InitSpec = serde_json::from_value(config["init"].clone()).unwrap();
    let decoder: CodecConfig = serde_json::from_value(config.clone()).unwrap();
    let encoder = EncoderConfig::from_value(config).unwrap();
    let tensor = |name: &str, shape: &[usize], prefix: &str| Tensor { values: init.tensor(name, shape.iter().product()).unwrap(), name: format!("{prefix}{name}"), shape: shape.to_vec() };
    let mut codec: Vec<Tensor> = codec_tensors(&decoder).iter().filter(|(n, _)| !n.ends_with("pos_embed.pe")).map(|(n, s)| tensor(n, s, "module.")).collect();
    for (n, s) in encoder_tensors(&encoder) {
        if !codec.iter().any(|t| t.name == format!("module.{n}")) {
            codec.push(tensor(&n, &s, "module."));
        }
    }
    let sq: Vec<Tensor> = sq_tensors(&decoder).iter().map(|(n, s)| tensor(n, s, "")).collect();
    let (c, s) = (dir.join("ReasoningCodec.checkpoint"), dir.join("sqcodec.pth"));
    write(&c, "ReasoningCodec", &[("model", codec)], None);
    write(&s, "sqcodec", &[("codec_model", sq)], None);
    (c, s)
}

#[test]
fn convert_bundle_then_verify_and_run() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let config = BundlePreset::Tiny.codec_config();
    let codec_config = t.join("codec-config.json");
    std::fs::write(&codec_config, config.to_string()).unwrap();
    let (ckpt, sq) = codec_checkpoints(t, &config);
    let tokenizer = t.join("tokenizer.json");
    std::fs::write(&tokenizer, uniaudio_lm::synthetic_tokenizer::synthetic_tokenizer_json()).unwrap();
    let bundle = t.join("bundle");
    let convert = |out: &Path| {
        let mut c = bin();
        c.arg("convert").arg("--bundle").arg(out);
        c.arg("--checkpoint").arg(lm_fixture("with_optimizer.checkpoint")).arg("--config").arg(lm_fixture("config.json")).arg("--llm-config").arg(lm_fixture("llm_config.yaml"));
        c.arg("--codec-checkpoint").arg(&ckpt).arg("--codec-config").arg(&codec_config).arg("--sqcodec").arg(&sq).arg("--tokenizer").arg(&tokenizer);
        c
    };
    ok(&mut convert(&bundle));
    let manifest: Value = serde_json::from_str(&std::fs::read_to_string(bundle.join("uniaudio.json")).unwrap()).unwrap();
    assert_eq!(manifest["format"], "uniaudio-bundle");
    assert_eq!(manifest["parts"]["codec"]["features"], serde_json::json!(["decoder", "encoder"]));
    assert!(manifest["parts"]["lm"]["dtype"].is_string());
    let o = ok(bin().arg("verify").arg(&bundle));
    assert!(stderr(&o).contains("match the manifest"), "{}", stderr(&o));

    // The converted codec encodes as the synthesized one does (same values, same tokens).
    let synth_codec = t.join("synth-codec");
    ok(bin().args(["codec", "synth", "--config"]).arg(&codec_config).arg("--out").arg(&synth_codec));
    let encode = |codec: &Path, out: &Path| {
        ok(bin().args(["codec", "encode", "--backend", "cpu", "--codec"]).arg(codec).arg("--input").arg(speech()).arg("--out").arg(out));
        std::fs::read_to_string(out).unwrap()
    };
    assert_eq!(encode(&bundle.join("codec"), &t.join("a.json")), encode(&synth_codec, &t.join("b.json")));
    // And the LM is found through the bundle (this checkpoint fixture's vocabularies are
    // tiny, so the prompt is written by hand).
    let prompt = t.join("prompt.json");
    std::fs::write(&prompt, r#"{"frames": [{"text": 5}, {"text": 7}, {"text": 11}]}"#).unwrap();
    let o = ok(bin().args(["generate", "--backend", "cpu", "--output-kind", "text", "--max-steps", "3", "--model"]).arg(&bundle).arg("--prompt").arg(&prompt));
    let out: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(!out["text_ids"].as_array().unwrap().is_empty(), "{out}");

    // An existing non-empty bundle directory is never overwritten.
    let o = convert(&bundle).output().unwrap();
    assert!(!o.status.success() && stderr(&o).contains("not empty"), "{}", stderr(&o));

    // A changed byte (same size) and a missing file are each named.
    let weights = bundle.join("codec/codec.safetensors");
    let mut bytes = std::fs::read(&weights).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    std::fs::write(&weights, bytes).unwrap();
    std::fs::remove_file(bundle.join("tokenizer.json")).unwrap();
    let o = bin().arg("verify").arg(&bundle).output().unwrap();
    let err = stderr(&o);
    assert!(!o.status.success(), "{err}");
    assert!(err.contains("codec/codec.safetensors: sha256 differs"), "{err}");
    assert!(err.contains("tokenizer.json: missing"), "{err}");
    assert!(err.contains("2 of 6 files"), "{err}");
    // A task on the damaged bundle names the missing tokenizer.
    let o = bin().arg("asr").arg(speech()).arg("--model").arg(&bundle).output().unwrap();
    assert!(!o.status.success() && stderr(&o).contains("tokenizer.json"), "{}", stderr(&o));
}

#[test]
fn hostile_or_broken_manifests_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let write_manifest = |v: Value| std::fs::write(tmp.path().join("uniaudio.json"), v.to_string()).unwrap();
    let file = serde_json::json!({"path": "../../etc/passwd", "bytes": 1, "sha256": "00"});
    write_manifest(serde_json::json!({"format": "uniaudio-bundle", "version": 1, "parts": {"lm": {"path": "lm", "what": "x", "files": [file]}}}));
    let o = bin().arg("verify").arg(tmp.path()).output().unwrap();
    assert!(!o.status.success() && stderr(&o).contains("not a path inside the bundle"), "{}", stderr(&o));
    write_manifest(serde_json::json!({"format": "uniaudio-bundle", "version": 9, "parts": {}}));
    let o = bin().arg("verify").arg(tmp.path()).output().unwrap();
    assert!(!o.status.success() && stderr(&o).contains("version 9"), "{}", stderr(&o));
    std::fs::write(tmp.path().join("uniaudio.json"), "{not json").unwrap();
    let o = bin().arg("asr").arg(speech()).arg("--model").arg(tmp.path()).output().unwrap();
    assert!(!o.status.success() && stderr(&o).contains("not a bundle manifest"), "{}", stderr(&o));
}
