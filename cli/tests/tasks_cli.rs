//! Every task from ordinary files in one command, on a synthetic bundle (tiny preset): the
//! one-shot command's text, ids or WAV equal what the composed commands (`codec encode`,
//! `prompt`, `generate`, `codec decode`) produce with the same seed and sampler settings,
//! and bad inputs get clear errors before any long work.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use serde_json::{json, Value};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_uniaudio"));
    c.env_remove("UNIAUDIO_MODEL");
    c
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("run uniaudio")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn ok(cmd: &mut Command) -> Output {
    let o = run(cmd);
    assert!(o.status.success(), "{cmd:?} failed: {}", stderr(&o));
    o
}

fn json_of(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", String::from_utf8_lossy(&o.stdout)))
}

/// A 3.2 s clip of the encoder fixture (24 kHz float WAV).
fn speech() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../codec/tests/fixtures/encode/a_24k_f32_3s2.wav")
}

/// The tiny synthetic bundle, written once through `uniaudio synth --bundle`.
fn bundle() -> &'static Path {
    static DIR: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, dir) = DIR.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("bundle");
        ok(bin().args(["synth", "--bundle"]).arg(&dir).args(["--preset", "tiny"]));
        (tmp, dir)
    });
    dir
}

fn scratch() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// `codec encode` of the clip with the bundle's codec.
fn encoded(tmp: &Path) -> PathBuf {
    let tokens = tmp.join("tokens.json");
    ok(bin().args(["codec", "encode", "--backend", "cpu", "--model"]).arg(bundle()).arg("--input").arg(speech()).arg("--out").arg(&tokens));
    tokens
}

/// `prompt` then `generate` with the sampler settings the one-shot command reported.
fn composed(tmp: &Path, task: &str, inputs: &[&str], tokens: Option<&Path>, kind: &str, reported: &Value, seed: &str, max_steps: &str) -> Value {
    let prompt = tmp.join(format!("{task}-prompt.json"));
    let b = bundle();
    let mut cmd = bin();
    cmd.args(["prompt", "--task", task, "--model"]).arg(b.join("lm")).arg("--tokenizer").arg(b.join("tokenizer.json")).args(["--seed", seed]).args(inputs).arg("--out").arg(&prompt);
    if let Some(t) = tokens {
        cmd.arg("--audio-tokens").arg(t);
    }
    ok(&mut cmd);
    let o = ok(bin()
        .args(["generate", "--backend", "cpu", "--model"])
        .arg(b.join("lm"))
        .arg("--prompt")
        .arg(&prompt)
        .args(["--output-kind", kind, "--seed", seed, "--max-steps", max_steps])
        .args(["--top-k", &reported["top_k"].to_string(), "--temperature", &reported["temperature"].to_string()]));
    json_of(&o)
}

/// The understanding commands: text and ids equal the composed commands', and the sampler
/// settings are the task's (greedy where the reference is greedy).
#[test]
fn text_tasks_equal_the_composed_commands() {
    let tmp = scratch();
    let tokens = encoded(tmp.path());
    let tok = uniaudio_lm::tokenizer::TextTokenizer::from_file(&bundle().join("tokenizer.json")).unwrap();
    let cases: [(&str, &str, &[&str], usize); 6] = [
        ("asr", "ASR", &[], 1),
        ("caption", "audio_caption", &[], 1),
        ("music-caption", "music_caption", &[], 1),
        ("lyrics", "lyric_recognition", &[], 1),
        ("ask", "audio_understanding", &["--question", "What is making the sound?"], 1),
        ("s2t", "speech_s2t", &[], 50),
    ];
    for (command, task, inputs, top_k) in cases {
        let seed = "7";
        let o = ok(bin().arg(command).arg(speech()).args(["--backend", "cpu", "--json", "--seed", seed, "--max-steps", "12", "--model"]).arg(bundle()).args(inputs));
        let got = json_of(&o);
        assert_eq!(got["top_k"], json!(top_k), "{command}: {got}");
        assert_eq!(got["seed"], json!(7), "{command}");
        for key in ["text", "text_ids", "stopped_by", "temperature", "timings"] {
            assert!(got.get(key).is_some(), "{command}: no `{key}` in {got}");
        }
        let want = composed(tmp.path(), task, inputs, Some(&tokens), "text", &got, seed, "12");
        assert_eq!(got["text_ids"], want["text_ids"], "{command}: ids");
        assert_eq!(got["stopped_by"], want["stopped_by"], "{command}: stop");
        let ids: Vec<u32> = serde_json::from_value(want["text_ids"].clone()).unwrap();
        assert!(!ids.is_empty(), "{command}: nothing generated");
        assert_eq!(got["text"], json!(tok.decode(&ids).unwrap()), "{command}: text");
        // Without --json the text streams to stdout: the same text, then a newline.
        if command == "asr" {
            let o = ok(bin().arg(command).arg(speech()).args(["--backend", "cpu", "--seed", seed, "--max-steps", "12", "--model"]).arg(bundle()));
            assert_eq!(String::from_utf8_lossy(&o.stdout), format!("{}\n", got["text"].as_str().unwrap()));
            assert!(stderr(&o).contains("prompt positions"), "{}", stderr(&o));
        }
    }
}

/// `prompt --audio FILE` encodes the file: the same frames as `--audio-tokens` of `codec encode`.
#[test]
fn prompt_takes_audio_files() {
    let tmp = scratch();
    let tokens = encoded(tmp.path());
    let frames = |flag: &str, path: &Path| {
        let o = ok(bin().args(["prompt", "--task", "ASR", "--backend", "cpu", "--model"]).arg(bundle()).arg(flag).arg(path));
        json_of(&o)["frames"].clone()
    };
    let from_file = frames("--audio", &speech());
    assert_eq!(from_file, frames("--audio-tokens", &tokens));
    assert!(from_file.as_array().unwrap().len() > 60);
}

fn wav_samples(path: &Path) -> Vec<f32> {
    let mut r = hound::WavReader::open(path).unwrap();
    assert_eq!((r.spec().channels, r.spec().sample_rate), (1, 24000));
    r.samples::<f32>().map(|s| s.unwrap()).collect()
}

/// The generation commands: the WAV equals `generate` then `codec decode` with the same seed.
#[test]
fn audio_tasks_equal_the_composed_commands() {
    let tmp = scratch();
    let tokens = encoded(tmp.path());
    let cases: [(&str, &str, &[&str]); 6] = [
        ("s2s", "speech_s2s", &[]),
        ("tts", "TTS", &["--text", "Hello there."]),
        ("tta", "TTA", &["--caption", "rain on a tin roof"]),
        ("ttm", "TTM", &["--caption", "calm piano"]),
        ("song", "LTS", &["--lyrics", "la la la"]),
        ("instruct-tts", "InstructTTS", &["--caption", "a calm low voice", "--text", "Good morning."]),
    ];
    for (command, task, inputs) in cases {
        let seed = "3";
        let out = tmp.path().join(format!("{command}.wav"));
        let mut cmd = bin();
        cmd.arg(command);
        if command == "s2s" {
            cmd.arg(speech());
        }
        let o = ok(cmd.args(["--backend", "cpu", "--json", "--seed", seed, "--max-steps", "80", "--steps", "2", "--model"]).arg(bundle()).args(inputs).arg("-o").arg(&out));
        let got = json_of(&o);
        let audio_in = (command == "s2s").then_some(tokens.as_path());
        let want = composed(tmp.path(), task, inputs, audio_in, "audio", &got, seed, "80");
        assert_eq!(got["reconstruction"], want["reconstruction"], "{command}: frames");
        assert_eq!(got["stopped_by"], want["stopped_by"], "{command}: stop");
        let frames = tmp.path().join(format!("{command}-frames.json"));
        std::fs::write(&frames, want.to_string()).unwrap();
        let reference = tmp.path().join(format!("{command}-composed.wav"));
        ok(bin().args(["codec", "decode", "--backend", "cpu", "--steps", "2", "--seed", seed, "--model"]).arg(bundle()).arg("--tokens").arg(&frames).arg("--out").arg(&reference));
        let (a, b) = (wav_samples(&out), wav_samples(&reference));
        assert!(!a.is_empty() && a.iter().all(|s| s.is_finite()), "{command}");
        assert!(a == b, "{command}: the one-shot WAV differs from the composed one ({} vs {} samples)", a.len(), b.len());
    }
}

fn fails(cmd: &mut Command, needle: &str) {
    let o = run(cmd);
    let err = stderr(&o);
    assert!(!o.status.success(), "{cmd:?} succeeded");
    assert!(err.contains(needle), "{cmd:?}: expected {needle:?} in: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// A bundle without a part names the part; an LM directory alone needs --codec.
#[test]
fn missing_parts_are_named() {
    let tmp = scratch();
    let partial = tmp.path().join("partial");
    std::fs::create_dir(&partial).unwrap();
    for f in ["lm", "tokenizer.json"] {
        let from = bundle().join(f);
        if from.is_dir() {
            std::fs::create_dir(partial.join(f)).unwrap();
            for e in std::fs::read_dir(&from).unwrap() {
                let e = e.unwrap();
                std::fs::copy(e.path(), partial.join(f).join(e.file_name())).unwrap();
            }
        } else {
            std::fs::copy(&from, partial.join(f)).unwrap();
        }
    }
    let mut manifest: Value = serde_json::from_str(&std::fs::read_to_string(bundle().join("uniaudio.json")).unwrap()).unwrap();
    manifest["parts"].as_object_mut().unwrap().remove("codec");
    std::fs::write(partial.join("uniaudio.json"), manifest.to_string()).unwrap();
    fails(bin().arg("asr").arg(speech()).arg("--model").arg(&partial), "codec encoder");
    fails(bin().args(["tts", "--text", "hi", "-o"]).arg(tmp.path().join("x.wav")).arg("--model").arg(&partial), "codec decoder");
    assert!(!tmp.path().join("x.wav").exists());
    // An LM directory with no codec: the flag that provides it is named.
    fails(bin().arg("asr").arg(speech()).arg("--model").arg(bundle().join("lm")).arg("--tokenizer").arg(bundle().join("tokenizer.json")), "--codec");
    // No model at all.
    fails(bin().arg("asr").arg(speech()), "--model BUNDLE");
    // UNIAUDIO_MODEL names the default bundle.
    let o = ok(bin().env("UNIAUDIO_MODEL", bundle()).arg("asr").arg(speech()).args(["--backend", "cpu", "--max-steps", "2", "--json"]));
    assert_eq!(json_of(&o)["text_ids"].as_array().unwrap().len(), 2);
    fails(bin().env("UNIAUDIO_MODEL", tmp.path().join("nowhere")).arg("asr").arg(speech()), "UNIAUDIO_MODEL");
}

/// Wrong flags for a task, unreadable audio and over-long inputs fail clearly and early.
#[test]
fn bad_inputs_get_clear_errors() {
    let tmp = scratch();
    let b = bundle();
    fails(bin().arg("ask").arg(speech()).arg("--model").arg(b), "needs --question");
    fails(bin().arg("asr").arg(speech()).args(["--question", "why?", "--model"]).arg(b), "does not use --question");
    fails(bin().args(["tts", "--caption", "x", "--text", "y", "-o"]).arg(tmp.path().join("a.wav")).arg("--model").arg(b), "does not use --caption");
    fails(bin().args(["s2s", "-o"]).arg(tmp.path().join("a.wav")).arg("--model").arg(b), "needs an input audio file");
    fails(bin().args(["tts", "--text", "x", "-o"]).arg(tmp.path().join("a.wav")).arg(speech()).arg("--model").arg(b), "takes no input audio");
    // Text where audio was expected: the flag it belongs in is named.
    fails(bin().args(["tts", "hello", "-o"]).arg(tmp.path().join("a.wav")).arg("--model").arg(b), "its text goes in --text");
    fails(bin().args(["tts", "--text", " \n", "-o"]).arg(tmp.path().join("a.wav")).arg("--model").arg(b), "needs a non-blank --text");
    fails(bin().arg("ask").arg(speech()).args(["--question", "", "--model"]).arg(b), "needs a non-blank --question");
    fails(bin().arg("asr").arg(speech()).args(["--instruction", " ", "--model"]).arg(b), "--instruction is blank");
    // `prompt` checks the same, before it encodes any audio.
    fails(bin().args(["prompt", "--task", "TTS", "--text", " ", "--model"]).arg(b), "needs a non-blank --text");
    fails(bin().args(["prompt", "--task", "ASR", "--question", "why?", "--audio"]).arg(speech()).arg("--model").arg(b), "does not use --question");
    let junk = tmp.path().join("junk.wav");
    std::fs::write(&junk, b"RIFF not really").unwrap();
    fails(bin().arg("asr").arg(&junk).arg("--model").arg(b), "junk.wav");
    fails(bin().arg("asr").arg(tmp.path().join("missing.wav")).arg("--model").arg(b), "missing.wav");
    fails(bin().arg("asr").arg(speech()).args(["--max-steps", "5000", "--backend", "cpu", "--model"]).arg(b), "max_seq_len 2048");

    // Two minutes of audio need more than 2048 positions: refused before encoding (a caption
    // depends on the whole input).
    let long = tmp.path().join("long.wav");
    write_wav(&long, 16000, &(0..16000 * 120).map(|i| (i as f32 * 0.05).sin() * 0.25).collect::<Vec<_>>());
    let o = run(bin().arg("caption").arg(&long).args(["--backend", "cpu", "--model"]).arg(b));
    let err = stderr(&o);
    assert!(!o.status.success() && err.contains("120.0 s of input audio") && err.contains("max_seq_len 2048"), "{err}");
    assert!(!err.contains("encoding"), "encoding started: {err}");
}

fn write_wav(path: &Path, rate: u32, samples: &[f32]) {
    let spec = hound::WavSpec { channels: 1, sample_rate: rate, bits_per_sample: 32, sample_format: hound::SampleFormat::Float };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for &s in samples {
        w.write_sample(s).unwrap();
    }
    w.finalize().unwrap();
}

/// A recording too long for one prompt is transcribed in windows cut at its quiet moments:
/// the ids are those of transcribing each window on its own, in order.
#[test]
fn long_recordings_are_transcribed_in_windows() {
    let tmp = scratch();
    let rate = 24_000;
    let mut x: Vec<f32> = (0..rate * 125).map(|i| (i as f32 * 0.013).sin() * 0.3 * (1.0 + (i as f32 * 1e-5).sin())).collect();
    for gap in [27, 55, 80, 108] {
        x[gap * rate..gap * rate + rate / 5].fill(0.0);
    }
    let long = tmp.path().join("long.wav");
    write_wav(&long, rate as u32, &x);
    let args = ["--backend", "cpu", "--json", "--max-steps", "4", "--seed", "5"];
    let o = ok(bin().arg("asr").arg(&long).args(args).arg("--model").arg(bundle()));
    let got = json_of(&o);
    let windows = got["windows"].as_array().unwrap();
    assert_eq!(windows.len(), 5, "{got}");
    let mut ids = Vec::new();
    for (i, w) in windows.iter().enumerate() {
        let (a, b) = (w[0].as_f64().unwrap(), w[1].as_f64().unwrap());
        let (a, b) = ((a * rate as f64).round() as usize, (b * rate as f64).round() as usize);
        if i > 0 {
            // Cut inside a planted gap.
            assert!(x[a..a + 480].iter().all(|&s| s == 0.0), "window {i} starts at {a}");
        }
        let part = tmp.path().join(format!("part{i}.wav"));
        write_wav(&part, rate as u32, &x[a..b]);
        let o = ok(bin().arg("asr").arg(&part).args(args).arg("--model").arg(bundle()));
        ids.extend(json_of(&o)["text_ids"].as_array().unwrap().clone());
    }
    assert_eq!(got["text_ids"].as_array().unwrap(), &ids);
}
