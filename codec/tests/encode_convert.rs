//! The encoder from released-style files: the codec checkpoint (AudioThinking and the
//! reconstruction branches), a Hugging Face whisper folder, a WavLM folder with the old
//! weight-norm spelling and a fairseq MusicFM checkpoint -> a codec directory that encodes
//! the fixture exactly; a missing sub-model is named with the flag that provides it.

mod common;

use std::path::{Path, PathBuf};

use common::torch_writer::{write, Tensor};
use uniaudio_codec::encode::convert::EncoderSources;
use uniaudio_codec::encode::Encoder;
use uniaudio_runtime::weights::{ModelWeights, SafetensorsWriter, TensorSpec};
use uniaudio_runtime::{Cpu, DType};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/encode").join(name)
}

fn config() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixture("config.json")).unwrap()).unwrap()
}

/// The fixture's tensors whose names start with `prefix`, renamed by `rename`.
fn tensors(prefix: &str, rename: impl Fn(&str) -> String) -> Vec<Tensor> {
    let w = ModelWeights::from_file(&fixture("codec.safetensors")).unwrap();
    let mut names: Vec<String> = w.names().filter(|n| n.starts_with(prefix)).map(String::from).collect();
    names.sort();
    names.into_iter().map(|n| Tensor { values: w.get(&n).unwrap().to_f32(), shape: w.shape(&n).unwrap().to_vec(), name: rename(&n) }).collect()
}

fn safetensors(dir: &Path, tensors: Vec<Tensor>) {
    std::fs::create_dir_all(dir).unwrap();
    let specs = tensors.iter().map(|t| TensorSpec::new(t.name.clone(), DType::F32, &t.shape)).collect();
    let mut w = SafetensorsWriter::create(dir.join("model.safetensors"), specs, &Default::default()).unwrap();
    for t in &tensors {
        w.write_tensor(&t.name, bytemuck_f32(&t.values)).unwrap();
    }
    w.finish().unwrap();
}

fn bytemuck_f32(v: &[f32]) -> &[u8] {
    // SAFETY: f32 has no padding; any byte view of it is valid.
    unsafe { std::slice::from_raw_parts(v.as_ptr() as *const u8, std::mem::size_of_val(v)) }
}

/// The released layout: returns (codec checkpoint, sources).
fn released(tmp: &Path) -> (PathBuf, EncoderSources) {
    let own = |n: &str| !["whisper_encoder.", "wavlm_encoder.", "pretrained_model."].iter().any(|p| n.starts_with(p));
    let mut codec: Vec<Tensor> = tensors("", |n| format!("module.{n}")).into_iter().filter(|t| own(&t.name["module.".len()..])).collect();
    codec.push(Tensor { name: "module.structure_semantic_decoder.unused".into(), shape: vec![2], values: vec![1.0, 2.0] });
    let ckpt = tmp.join("ReasoningCodec.checkpoint");
    // A hostile entry outside the needed tensors: never inspected, never run.
    write(&ckpt, "ReasoningCodec", &[("model", codec)], Some(("module.vq_acoustic.layers.0._codebook.initted", "posix", "system")));
    let mut whisper = tensors("whisper_encoder.", |n| n.replacen("whisper_encoder.", "model.encoder.", 1));
    whisper.push(Tensor { name: "model.decoder.embed_tokens.weight".into(), shape: vec![3, 2], values: vec![0.0; 6] });
    safetensors(&tmp.join("whisper-medium"), whisper);
    let wavlm = tensors("wavlm_encoder.", |n| {
        n.strip_prefix("wavlm_encoder.").unwrap().replace("parametrizations.weight.original0", "weight_g").replace("parametrizations.weight.original1", "weight_v")
    });
    safetensors(&tmp.join("wavlm"), wavlm);
    let music = tensors("pretrained_model.", |n| n.replacen("pretrained_model.model.", "", 1));
    let music_ssl = tmp.join("music_ssl.pt");
    write(&music_ssl, "music_ssl", &[("model", music)], None);
    (ckpt, EncoderSources { whisper: Some(tmp.join("whisper-medium")), wavlm: Some(tmp.join("wavlm")), music_ssl: Some(music_ssl) })
}

#[test]
fn converts_the_encoder_from_the_released_files() {
    let tmp = tempfile::tempdir().unwrap();
    let (ckpt, sources) = released(tmp.path());
    let out = tmp.path().join("codec");
    std::fs::create_dir(&out).unwrap();
    uniaudio_codec::convert::convert(&ckpt, None, &config(), &sources, &out, &mut |_, _| {}).unwrap();
    let got = ModelWeights::from_file(&out.join("codec.safetensors")).unwrap();
    let want = ModelWeights::from_file(&fixture("codec.safetensors")).unwrap();
    // Every converted tensor is the fixture's, bit for bit (the WavLM g/v under the old spelling).
    for name in got.names() {
        let src = name.replace("weight_g", "parametrizations.weight.original0").replace("weight_v", "parametrizations.weight.original1");
        assert_eq!(got.get(name).unwrap().bytes(), want.get(&src).unwrap().bytes(), "{name}");
    }
    assert!(got.contains("wavlm_encoder.encoder.pos_conv_embed.conv.weight_g"));
    assert!(!got.contains("structure_semantic_decoder.unused"));
    // And the directory encodes the fixture exactly.
    let cpu = Cpu::new();
    let encoder = Encoder::load(&cpu, &out).unwrap();
    let cases: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(fixture("cases.json")).unwrap()).unwrap();
    let case = &cases["cases"][0];
    let audio = uniaudio_audio::read_audio(&fixture(case["input"]["file"].as_str().unwrap())).unwrap();
    let tokens = encoder.encode(&cpu, &audio.samples, &mut |_, _| {}).unwrap();
    assert_eq!(serde_json::to_value(&tokens.reasoning).unwrap(), case["reasoning"]);
    assert_eq!(serde_json::to_value(&tokens.reconstruction).unwrap(), case["reconstruction"]);
}

#[test]
fn a_missing_sub_model_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let (ckpt, mut sources) = released(tmp.path());
    sources.music_ssl = None;
    let out = tmp.path().join("codec");
    std::fs::create_dir(&out).unwrap();
    let err = uniaudio_codec::convert::convert(&ckpt, None, &config(), &sources, &out, &mut |_, _| {}).unwrap_err().to_string();
    assert!(err.contains("pretrained_model.model.model.conv.conv.0.conv1.weight") && err.contains("--music-ssl"), "{err}");
    // A decoder config without --sqcodec is refused before anything is written.
    let decoder: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/public/config.json")).unwrap()).unwrap();
    let err = uniaudio_codec::convert::convert(&ckpt, None, &decoder, &sources, &out, &mut |_, _| {}).unwrap_err().to_string();
    assert!(err.contains("sqcodec"), "{err}");
}
