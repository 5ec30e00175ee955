//! The synthetic tokenizer loads like the real Llama 3.2 one, covers every id, and
//! round-trips text.

use std::collections::HashSet;
use std::time::Instant;

use uniaudio_lm::synthetic_tokenizer::synthetic_tokenizer_json;
use uniaudio_lm::tokenizer::TextTokenizer;

fn tokenizer() -> TextTokenizer {
    let t = Instant::now();
    let json = synthetic_tokenizer_json();
    let generated = t.elapsed();
    let tok = TextTokenizer::from_json(&json).unwrap();
    eprintln!("synthetic tokenizer: {} bytes, generated in {generated:?}, loaded in {:?}", json.len(), t.elapsed() - generated);
    tok
}

#[test]
fn text_with_specials_round_trips() {
    let tok = tokenizer();
    let ids = tok.tokenize("Hello there, <caption> ünïcode 123").unwrap();
    assert_eq!(ids.first(), Some(&128_000), "{ids:?}");
    assert_eq!(ids.last(), Some(&128_001), "{ids:?}");
    assert!(ids.contains(&128_015), "<caption> missing from {ids:?}");
    assert_eq!(tok.decode(&ids).unwrap(), "Hello there,  ünïcode 123", "specials are skipped on decode");
}

#[test]
fn every_id_decodes() {
    let tok = tokenizer();
    for id in 0..128_256 {
        tok.decode(&[id]).unwrap_or_else(|e| panic!("id {id}: {e}"));
    }
    let mut seen = HashSet::new();
    for id in 256..128_000 {
        let text = tok.decode(&[id]).unwrap();
        let word = text.strip_prefix(' ').unwrap_or_else(|| panic!("id {id}: {text:?} is not space-led"));
        assert!(!word.is_empty() && word.bytes().all(|b| b.is_ascii_lowercase()), "id {id}: {text:?}");
        assert!(seen.insert(text), "id {id} repeats an earlier word");
    }
}

#[test]
fn pseudo_words_decode_as_words_and_encode_back() {
    let tok = tokenizer();
    let ids = [256, 1_000, 50_000, 127_999];
    let text = tok.decode(&ids).unwrap();
    assert_eq!(text.split(' ').skip(1).count(), ids.len(), "{text:?}");
    assert!(text.starts_with(' ') && !text.contains("  "), "{text:?}");
    let mut framed = vec![128_000];
    framed.extend(ids);
    framed.push(128_001);
    assert_eq!(tok.tokenize(&text).unwrap(), framed, "{text:?}");
}

#[test]
fn json_is_compact_and_deterministic() {
    let json = synthetic_tokenizer_json();
    assert!(json.len() < 3_000_000, "{} bytes", json.len());
    assert_eq!(json, synthetic_tokenizer_json());
}
