//! `uniaudio codec encode`: the acceptance contract on the public encoder fixture (a
//! directory holding exactly its config.json and codec.safetensors; codes compared
//! exactly) and clear errors, with no output file, for bad audio and codec directories.

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../codec/tests/fixtures/encode").join(name)
}

fn encode(codec: &Path, input: &Path, out: &Path, extra: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_uniaudio"))
        .args(["codec", "encode", "--backend", "cpu", "--codec"])
        .arg(codec)
        .arg("--input")
        .arg(input)
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A codec directory with exactly the fixture's two files.
fn codec_dir(tmp: &Path) -> PathBuf {
    let dir = tmp.join("codec");
    std::fs::create_dir(&dir).unwrap();
    for f in ["config.json", "codec.safetensors"] {
        std::fs::copy(fixture(f), dir.join(f)).unwrap();
    }
    dir
}

#[test]
fn encode_writes_the_reference_tokens() {
    let tmp = tempfile::tempdir().unwrap();
    let codec = codec_dir(tmp.path());
    let cases: Value = serde_json::from_str(&std::fs::read_to_string(fixture("cases.json")).unwrap()).unwrap();
    for name in ["c_44k1_stereo_pcm16_4s", "d_24k_pcm16_9s28"] {
        let case = cases["cases"].as_array().unwrap().iter().find(|c| c["name"] == name).unwrap();
        let out = tmp.path().join(format!("{name}.json"));
        let o = encode(&codec, &fixture(&format!("{name}.wav")), &out, &[]);
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        let got: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
        assert_eq!(got["reasoning"], case["reasoning"], "{name}: reasoning codes");
        assert_eq!(got["reconstruction"], case["reconstruction"], "{name}: reconstruction codes");
        // An existing output is kept unless --force.
        let again = encode(&codec, &fixture(&format!("{name}.wav")), &out, &[]);
        assert!(!again.status.success() && stderr(&again).contains("--force"), "{}", stderr(&again));
    }
}

/// Runs a failing encode and checks the message and that no output (or temp file) is left.
fn expect_error(codec: &Path, input: &Path, needle: &str) {
    let out = input.with_extension("tokens.json");
    let o = encode(codec, input, &out, &[]);
    let err = stderr(&o);
    assert!(!o.status.success(), "{} succeeded", input.display());
    assert!(err.contains(needle), "{}: expected {needle:?} in: {err}", input.display());
    assert!(!err.contains("panicked"), "{err}");
    assert!(!out.exists(), "{} was written", out.display());
    let leftovers: Vec<_> = std::fs::read_dir(out.parent().unwrap()).unwrap().filter_map(|e| e.ok()).filter(|e| e.file_name().to_string_lossy().ends_with(".tmp")).collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

/// A mono 16-bit WAV with the given header fields and sample bytes.
fn wav(rate: u32, channels: u16, bits: u16, format: u16, data: &[u8], declared: Option<u32>) -> Vec<u8> {
    let block = channels as u32 * bits as u32 / 8;
    let mut v = b"RIFF".to_vec();
    v.extend((36 + data.len() as u32).to_le_bytes());
    v.extend(b"WAVEfmt ");
    v.extend(16u32.to_le_bytes());
    v.extend(format.to_le_bytes());
    v.extend(channels.to_le_bytes());
    v.extend(rate.to_le_bytes());
    v.extend((rate * block).to_le_bytes());
    v.extend((block as u16).to_le_bytes());
    v.extend(bits.to_le_bytes());
    v.extend(b"data");
    v.extend(declared.unwrap_or(data.len() as u32).to_le_bytes());
    v.extend(data);
    v
}

#[test]
fn bad_audio_is_a_clear_error_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let codec = codec_dir(tmp.path());
    let put = |name: &str, bytes: &[u8]| -> PathBuf {
        let p = tmp.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    let pcm: Vec<u8> = (0..2000i16).flat_map(|i| (i * 7).to_le_bytes()).collect();
    let mut nan = vec![0u8; 400];
    nan[40..44].copy_from_slice(&f32::NAN.to_le_bytes());
    let real = std::fs::read(fixture("a_24k_f32_3s2.wav")).unwrap();
    for (name, bytes, needle) in [
        ("text.wav", b"this is not audio at all".to_vec(), "text.wav"),
        ("empty.wav", Vec::new(), "empty.wav"),
        ("truncated.wav", real[..real.len() / 3].to_vec(), "truncated.wav"),
        ("lying.wav", wav(16000, 1, 16, 1, &pcm, Some(1 << 30)), "lying.wav"),
        ("zero_rate.wav", wav(0, 1, 16, 1, &pcm, None), "zero_rate.wav"),
        ("absurd_rate.wav", wav(4_000_000, 1, 16, 1, &pcm, None), "absurd_rate.wav"),
        ("no_channels.wav", wav(16000, 0, 16, 1, &pcm, None), "no_channels.wav"),
        ("no_samples.wav", wav(16000, 1, 16, 1, &[], None), "no_samples.wav"),
        ("nan.wav", wav(16000, 1, 32, 3, &nan, None), "nan.wav"),
    ] {
        expect_error(&codec, &put(name, &bytes), needle);
    }
    expect_error(&codec, &tmp.path().join("missing.wav"), "missing.wav");
}

#[test]
fn a_codec_directory_without_an_encoder_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let input = fixture("a_24k_f32_3s2.wav");
    // The decoder fixture's config has no encoder sections.
    let decoder_only = tmp.path().join("decoder");
    std::fs::create_dir(&decoder_only).unwrap();
    std::fs::copy(Path::new(env!("CARGO_MANIFEST_DIR")).join("../codec/tests/fixtures/public/config.json"), decoder_only.join("config.json")).unwrap();
    let out = tmp.path().join("out.json");
    let o = encode(&decoder_only, &input, &out, &[]);
    assert!(!o.status.success() && stderr(&o).contains("missing section(s) chunking, whisper"), "{}", stderr(&o));
    assert!(!out.exists());
    // The encoder's config with weights that lack the encoder: the missing tensors are named.
    let no_weights = codec_dir(tmp.path());
    let mut w = uniaudio_runtime::weights::SafetensorsWriter::create(
        no_weights.join("codec.safetensors"),
        vec![uniaudio_runtime::weights::TensorSpec::new("cond_feature_emb.bias", uniaudio_runtime::DType::F32, &[96])],
        &Default::default(),
    )
    .unwrap();
    w.write_tensor("cond_feature_emb.bias", &[0u8; 384]).unwrap();
    w.finish().unwrap();
    let o = encode(&no_weights, &input, &out, &[]);
    let err = stderr(&o);
    assert!(!o.status.success() && err.contains("encoder tensors are missing") && err.contains("whisper_encoder.conv1.weight"), "{err}");
    assert!(!out.exists());
}
