//! The Llama 3.2 tokenizer against encodings produced by the reference library, the
//! reference's framing, UniAudio's special-token names, and prompt building per task.
//! tokenizer.json is fetched (once, cached) by `scripts/fetch-test-data`.

use std::path::{Path, PathBuf};

use uniaudio_lm::tasks::{build_prompt, AudioTokens, Task, TaskInputs};
use uniaudio_lm::tokenizer::TextTokenizer;
use uniaudio_lm::{Frame, LmConfig, OutputKind};

fn tokenizer_path() -> PathBuf {
    if let Some(p) = std::env::var_os("UNIAUDIO_TOKENIZER_JSON") {
        return PathBuf::from(p);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-data/llama3.2-tokenizer.json")
}

fn tokenizer() -> TextTokenizer {
    let path = tokenizer_path();
    assert!(path.is_file(), "{} is missing: run scripts/fetch-test-data (scripts/test does)", path.display());
    TextTokenizer::from_file(&path).unwrap()
}

#[test]
fn encodings_match_the_reference_library() {
    let tok = tokenizer();
    let cases: &[(&str, &[u32])] = &[
        ("Hello world", &[9906, 1917]),
        ("The quick brown fox jumps over the lazy dog.", &[791, 4062, 14198, 39935, 35308, 927, 279, 16053, 5679, 13]),
        ("  multiple   spaces\nand newline\n\n", &[220, 5361, 256, 12908, 198, 438, 40127, 271]),
        ("数字 12345 and émigré's café", &[83687, 220, 4513, 1774, 323, 4046, 76, 5346, 978, 596, 53050]),
    ];
    for (text, body) in cases {
        let mut want = vec![128_000];
        want.extend_from_slice(body);
        want.push(128_001);
        assert_eq!(tok.tokenize(text).unwrap(), want, "{text:?}");
        assert_eq!(tok.decode(&want).unwrap(), *text, "decode {text:?}");
    }
}

#[test]
fn uniaudio_special_names_map_to_their_ids() {
    let tok = tokenizer();
    let ids = tok.tokenize("<caption>rain</caption><transcription><text_pad_token>").unwrap();
    for id in [128_015, 128_016, 128_011, 128_020] {
        assert!(ids.contains(&id), "{id} missing from {ids:?}");
    }
    assert_eq!(tok.decode(&ids).unwrap(), "rain", "specials are skipped on decode");
    // As upstream: encode always prepends <|begin_of_text|>; <|end_of_text|> is appended
    // only when missing.
    let hi = tok.tokenize("hi").unwrap();
    let framed = tok.tokenize("<|begin_of_text|>hi<|end_of_text|>").unwrap();
    assert_eq!(framed[0], 128_000);
    assert_eq!(&framed[1..], &hi[..], "{framed:?}");
}

fn config() -> LmConfig {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/public/config.json")).unwrap();
    LmConfig::from_json(&text).unwrap()
}

fn texts(frames: &[Frame]) -> Vec<u32> {
    frames.iter().filter_map(|f| if let Frame::Text(t) = f { Some(*t) } else { None }).collect()
}

#[test]
fn prompts_follow_the_sequence_formats() {
    let (tok, c) = (tokenizer(), config());
    let rc = c.ids.audio_reason_card as u32;
    let inputs = TaskInputs { text: Some("Hello world".into()), instruction: Some("text to speech".into()), ..Default::default() };
    let p = build_prompt(&c, &tok, Task::Tts, &inputs, 1).unwrap();
    let mut want = tok.tokenize("text to speech\n\n").unwrap();
    want.extend([128_011, 128_000, 9906, 1917, 128_001, 128_012]);
    assert_eq!(texts(&p.frames), want);
    assert_eq!((p.output_kind, p.top_k), (OutputKind::Audio, 50));

    let audio = AudioTokens { reasoning: vec![[1; 8], [2; 8]], reconstruction: vec![[3; 8]] };
    let inputs = TaskInputs { audio: Some(audio.clone()), ..Default::default() };
    let p = build_prompt(&c, &tok, Task::Asr, &inputs, 7).unwrap();
    assert!(Task::Asr.instructions().contains(&p.instruction), "instruction drawn from the table");
    let tail: Vec<Frame> = p.frames[p.frames.len() - 7..].to_vec();
    let a = |v: u32| Frame::Audio([v; 8]);
    assert_eq!(tail, vec![a(c.ids.reason_bos), a(1), a(2), a(c.ids.reason_eos), a(c.ids.semantic_bos + rc), a(3 + rc), a(c.ids.semantic_eos + rc)]);
    assert_eq!((p.output_kind, p.top_k), (OutputKind::Text, 1));

    // The question comes unwrapped before the audio.
    let inputs = TaskInputs { audio: Some(audio), question: Some("Hello world".into()), instruction: Some("x".into()), ..Default::default() };
    let p = build_prompt(&c, &tok, Task::AudioUnderstanding, &inputs, 0).unwrap();
    assert_eq!(&texts(&p.frames)[texts(&p.frames).len() - 4..], &[128_000, 9906, 1917, 128_001]);

    // Every task builds with its inputs; missing inputs and bad codes are named.
    for task in Task::ALL {
        let full = TaskInputs {
            text: Some("a".into()),
            caption: Some("b".into()),
            lyrics: Some("c".into()),
            question: Some("d".into()),
            audio: Some(AudioTokens { reasoning: vec![[0; 8]], reconstruction: vec![[0; 8]] }),
            instruction: None,
        };
        build_prompt(&c, &tok, task, &full, 3).unwrap_or_else(|e| panic!("{}: {e}", task.name()));
        assert!(!task.instructions().is_empty(), "{}", task.name());
        let err = build_prompt(&c, &tok, task, &TaskInputs::default(), 3).unwrap_err().to_string();
        assert!(err.contains(task.name()) && err.contains("--"), "{err}");
    }
    let bad = TaskInputs { audio: Some(AudioTokens { reasoning: vec![[0, 0, 0, 0, 0, 0, 0, rc]], reconstruction: vec![] }), ..Default::default() };
    let err = build_prompt(&c, &tok, Task::Asr, &bad, 0).unwrap_err().to_string();
    assert!(err.contains("reasoning frame 0") && err.contains("codebook 7"), "{err}");
}
