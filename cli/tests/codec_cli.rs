//! `uniaudio codec`: the decode contract on the public fixture (WAV within the fixture's
//! tolerance) and clear errors for bad tokens, configs, weights and output paths.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{json, Value};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_uniaudio"))
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../codec/tests/fixtures/public").join(name)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn synth(dir: &Path, config: &Path) -> PathBuf {
    let out = dir.join("codec");
    let o = bin().args(["codec", "synth", "--config"]).arg(config).arg("--out").arg(&out).output().unwrap();
    assert!(o.status.success(), "codec synth failed: {}", stderr(&o));
    out
}

fn case(name: &str) -> Value {
    let cases: Value = serde_json::from_str(&std::fs::read_to_string(fixture("cases.json")).unwrap()).unwrap();
    cases["cases"].as_array().unwrap().iter().find(|c| c["name"] == name).unwrap().clone()
}

/// `reconstruction` frames [T][8] from the fixture's rows [8][T].
fn frames_of(rows: &Value) -> Value {
    let rows: Vec<Vec<u64>> = rows.as_array().unwrap().iter().map(|r| r.as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect()).collect();
    let t = rows[0].len();
    json!({ "reconstruction": (0..t).map(|i| rows.iter().map(|r| r[i]).collect::<Vec<_>>()).collect::<Vec<_>>() })
}

fn decode(codec: &Path, tokens: &Path, out: &Path, extra: &[&str]) -> Output {
    bin().args(["codec", "decode", "--backend", "cpu", "--codec"]).arg(codec).arg("--tokens").arg(tokens).arg("--out").arg(out).args(extra).output().unwrap()
}

fn read_wav(path: &Path) -> (hound::WavSpec, Vec<f32>) {
    let mut r = hound::WavReader::open(path).unwrap();
    let spec = r.spec();
    (spec, r.samples::<f32>().map(|s| s.unwrap()).collect())
}

#[test]
fn decode_writes_the_reference_waveform() {
    let tmp = tempfile::tempdir().unwrap();
    let codec = synth(tmp.path(), &fixture("config.json"));
    let c = case("t29");
    let tokens = tmp.path().join("t29.json");
    std::fs::write(&tokens, frames_of(&c["tokens"]).to_string()).unwrap();
    let out = tmp.path().join("t29.wav");
    let noise = fixture("noise_t29.safetensors");
    let o = decode(&codec, &tokens, &out, &["--steps", "2", "--noise", noise.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (spec, got) = read_wav(&out);
    assert_eq!((spec.channels, spec.sample_rate, spec.bits_per_sample), (1, 24000, 32));
    let expected = uniaudio_runtime::weights::ModelWeights::from_file(&fixture("expected_t29.safetensors")).unwrap();
    let want = expected.get("audio").unwrap().to_f32();
    assert_eq!(got.len(), want.len());
    let err: f64 = got.iter().zip(&want).map(|(&a, &b)| (a as f64 - b as f64).powi(2)).sum::<f64>().sqrt();
    let norm: f64 = want.iter().map(|&b| (b as f64).powi(2)).sum::<f64>().sqrt();
    assert!(err / norm <= 1e-3, "rel L2 {}", err / norm);

    // The output exists now: a second run refuses to replace it, --force does.
    let again = decode(&codec, &tokens, &out, &["--steps", "1"]);
    assert!(!again.status.success() && stderr(&again).contains("exists"), "{}", stderr(&again));
    let forced = decode(&codec, &tokens, &out, &["--steps", "1", "--force", "--pcm16", "--seed", "3"]);
    assert!(forced.status.success(), "{}", stderr(&forced));
    let spec = hound::WavReader::open(&out).unwrap().spec();
    assert_eq!(spec.bits_per_sample, 16);
    // A directory is refused before any work, --force or not.
    let dir = decode(&codec, &tokens, tmp.path(), &["--steps", "1", "--force"]);
    assert!(!dir.status.success() && stderr(&dir).contains("is a directory"), "{}", stderr(&dir));
}

#[test]
fn bad_inputs_get_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let codec = synth(tmp.path(), &fixture("config.json"));
    let c = case("t13");
    let write = |name: &str, v: &Value| {
        let p = tmp.path().join(name);
        std::fs::write(&p, v.to_string()).unwrap();
        p
    };
    let out = tmp.path().join("out.wav");
    let expect_err = |tokens: &Path, extra: &[&str], needle: &str| {
        let o = decode(&codec, tokens, &out, extra);
        assert!(!o.status.success(), "expected failure containing `{needle}`");
        let e = stderr(&o);
        assert!(e.contains(needle), "stderr `{e}` lacks `{needle}`");
        assert!(!out.exists(), "no output on failure");
    };
    // An id past the codebook (128 codes in this fixture), named by row and position.
    let mut rows = c["tokens"].clone();
    rows[3][5] = json!(128);
    expect_err(&write("oob.json", &json!({ "tokens": rows })), &["--steps", "1"], "row 3, position 5: id 128");
    // Wrong number of rows; ragged rows; ragged frames; not a token list.
    let seven: Vec<Value> = c["tokens"].as_array().unwrap()[..7].to_vec();
    expect_err(&write("seven.json", &json!({ "tokens": seven })), &["--steps", "1"], "expected 8 rows");
    let mut ragged = c["tokens"].clone();
    ragged[2].as_array_mut().unwrap().pop();
    expect_err(&write("ragged.json", &json!({ "tokens": ragged })), &["--steps", "1"], "row 2 has 12 frames");
    expect_err(&write("frames.json", &json!({ "reconstruction": [[1, 2, 3, 4, 5, 6, 7, 8], [1, 2]] })), &["--steps", "1"], "reconstruction[1] has 2 ids");
    expect_err(&write("neg.json", &json!({ "tokens": [[-1]] })), &["--steps", "1"], "tokens[0][0] is not a token id");
    expect_err(&write("none.json", &json!({ "frames": [] })), &["--steps", "1"], "expected an object with `reconstruction`");
    let good = write("good.json", &json!({ "tokens": c["tokens"] }));
    expect_err(&good, &["--steps", "0"], "--steps must be >= 1");
    expect_err(&good, &["--mode", "sideways"], "unknown mode `sideways`");
    // Noise without the draw the window needs.
    expect_err(&good, &["--steps", "1", "--noise", fixture("expected_t13.safetensors").to_str().unwrap()], "no draw `1`");

    // Unwritable output: a directory that does not exist.
    let o = decode(&codec, &good, &tmp.path().join("missing/dir/out.wav"), &["--steps", "1"]);
    assert!(!o.status.success() && stderr(&o).contains("cannot write here"), "{}", stderr(&o));
}

#[test]
fn bad_configs_and_weights_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let base: Value = serde_json::from_str(&std::fs::read_to_string(fixture("config.json")).unwrap()).unwrap();
    let c = case("t13");
    let tokens = tmp.path().join("t.json");
    std::fs::write(&tokens, json!({ "tokens": c["tokens"] }).to_string()).unwrap();
    let out = tmp.path().join("o.wav");

    // A config whose heads do not multiply to inner_dim is refused by synth and decode.
    let mut bad = base.clone();
    bad["flow"]["inner_dim"] = json!(100);
    let bad_path = tmp.path().join("bad.json");
    std::fs::write(&bad_path, bad.to_string()).unwrap();
    let o = bin().args(["codec", "synth", "--config"]).arg(&bad_path).arg("--out").arg(tmp.path().join("x")).output().unwrap();
    assert!(!o.status.success() && stderr(&o).contains("flow.inner_dim 100"), "{}", stderr(&o));

    // Weights made for another size: the loader names the tensor and both shapes.
    let codec = synth(tmp.path(), &fixture("config.json"));
    let mut other = base.clone();
    other["flow"]["ffn_dim"] = json!(256);
    std::fs::write(codec.join("config.json"), other.to_string()).unwrap();
    let o = decode(&codec, &tokens, &out, &["--steps", "1"]);
    let e = stderr(&o);
    assert!(!o.status.success() && e.contains("ff.net.0.proj.weight") && e.contains("256"), "{e}");

    // An encoder-only config: the decoder's missing sections are named.
    let encoder_only = Path::new(env!("CARGO_MANIFEST_DIR")).join("../codec/tests/fixtures/encode/config.json");
    std::fs::copy(encoder_only, codec.join("config.json")).unwrap();
    let o = decode(&codec, &tokens, &out, &["--steps", "1"]);
    assert!(!o.status.success() && stderr(&o).contains("missing section(s) rvq, flow, sampler, sq_decoder"), "{}", stderr(&o));

    // A missing weight file.
    std::fs::write(codec.join("config.json"), base.to_string()).unwrap();
    std::fs::remove_file(codec.join("sqcodec.safetensors")).unwrap();
    let o = decode(&codec, &tokens, &out, &["--steps", "1"]);
    assert!(!o.status.success() && stderr(&o).contains("sqcodec.safetensors"), "{}", stderr(&o));
    assert!(!out.exists());
}

fn tokenizer_json() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-data/llama3.2-tokenizer.json");
    assert!(p.is_file(), "{} is missing: run scripts/fetch-test-data (scripts/test does)", p.display());
    p
}

/// tts: prompt -> LM (the LM fixture's tiny model) -> codec -> WAV, in one process.
#[test]
fn tts_runs_prompt_lm_and_codec_in_one_process() {
    let tmp = tempfile::tempdir().unwrap();
    let lm_dir = tmp.path().join("lm");
    let lm_config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../lm/tests/fixtures/public/config.json");
    let o = bin().args(["synth", "--dtype", "bf16", "--config"]).arg(&lm_config).arg("--out").arg(&lm_dir).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    // A codec whose codebooks cover every id this LM can emit in the reconstruction phase
    // (its audio vocabulary 14103 minus the offset 4100; unmasked specials included).
    let mut config: Value = serde_json::from_str(&std::fs::read_to_string(fixture("config.json")).unwrap()).unwrap();
    config["rvq"]["codebook_size"] = json!(10003);
    let config_path = tmp.path().join("codec-config.json");
    std::fs::write(&config_path, config.to_string()).unwrap();
    let codec = synth(tmp.path(), &config_path);
    // The fixture's `tts_switch` prompt: its weights are patched so greedy decoding switches
    // to reconstruction frames at step 6 and stops at step 14.
    let cases: Value = serde_json::from_str(&std::fs::read_to_string(lm_config.with_file_name("cases.json")).unwrap()).unwrap();
    let case = cases.as_array().unwrap().iter().find(|c| c["name"] == "tts_switch").unwrap();
    let prompt = tmp.path().join("prompt.json");
    std::fs::write(&prompt, json!({ "frames": case["prompt"] }).to_string()).unwrap();
    let out = tmp.path().join("speech.wav");
    let run = |codec: &Path, out: &Path| {
        bin()
            .args(["tts", "--backend", "cpu", "--text", "Hello there.", "--max-steps", "48", "--steps", "1", "--top-k", "1", "--temperature", "1.0"])
            .arg("--prompt")
            .arg(&prompt)
            .arg("--model")
            .arg(&lm_dir)
            .arg("--codec")
            .arg(codec)
            .arg("--tokenizer")
            .arg(tokenizer_json())
            .arg("-o")
            .arg(out)
            .output()
            .unwrap()
    };
    let o = run(&codec, &out);
    assert!(o.status.success(), "{}", stderr(&o));
    let (spec, samples) = read_wav(&out);
    assert_eq!((spec.channels, spec.sample_rate), (1, 24000));
    // Six reconstruction frames (the fixture's expected output): int(6 / 12.5 · 24000) samples.
    assert_eq!(samples.len(), 11520);
    assert!(samples.iter().all(|s| s.is_finite()));

    // The fixture's 128-entry codebooks cannot hold the LM's ids: a clear error, no file.
    let small = tmp.path().join("small");
    std::fs::create_dir(&small).unwrap();
    let small_codec = synth(&small, &fixture("config.json"));
    let bad_out = tmp.path().join("bad.wav");
    let o = run(&small_codec, &bad_out);
    assert!(!o.status.success() && stderr(&o).contains("outside the codebook"), "{}", stderr(&o));
    assert!(!bad_out.exists());
}

/// `uniaudio convert --codec` needs a codec config and, for a decoder, its SQ-Codec file,
/// and says so.
#[test]
fn convert_codec_names_missing_arguments() {
    let tmp = tempfile::tempdir().unwrap();
    let o = bin().args(["convert", "--codec", "--checkpoint", "x", "--sqcodec", "y", "--out"]).arg(tmp.path().join("o")).output().unwrap();
    assert!(!o.status.success() && stderr(&o).contains("--config"), "{}", stderr(&o));
    let o = bin().args(["convert", "--codec", "--checkpoint", "x.checkpoint", "--config"]).arg(fixture("config.json")).arg("--out").arg(tmp.path().join("o")).output().unwrap();
    assert!(!o.status.success() && stderr(&o).contains("--sqcodec"), "{}", stderr(&o));
    let o = bin()
        .args(["convert", "--codec", "--checkpoint", "missing.checkpoint", "--sqcodec", "y", "--config"])
        .arg(fixture("config.json"))
        .arg("--out")
        .arg(tmp.path().join("o"))
        .output()
        .unwrap();
    assert!(!o.status.success() && stderr(&o).contains("missing.checkpoint"), "{}", stderr(&o));
    assert!(!tmp.path().join("o").exists());
}
