//! A stand-in for the Llama 3.2 `tokenizer.json`, so that synthetic models can run the
//! text paths (prompt building, decoding generated text) without the real file.

use serde_json::{json, Map, Value};

/// Regular (BPE) ids are `0..REGULAR_TOKENS`; the specials follow.
pub const REGULAR_TOKENS: u32 = 128_000;
/// Special ids are `REGULAR_TOKENS..REGULAR_TOKENS + SPECIAL_TOKENS`.
pub const SPECIAL_TOKENS: u32 = 256;

/// Llama 3's pre-tokenizer split, so text is cut into words exactly as upstream.
const LLAMA3_SPLIT: &str =
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

const CONSONANTS: &[u8] = b"bdfghjklmnprstvz";
const VOWELS: &[u8] = b"aeiou";

/// A small Hugging Face tokenizer.json that covers every id of the Llama 3.2 text vocabulary
/// (128000 regular ids + 256 specials), for synthetic models: ids 0..256 are the byte-level
/// alphabet (so any text encodes and decodes back exactly), ids 256..128000 are distinct
/// pseudo-words ("Ġkamo") so generated ids read as words, and the specials carry Llama 3's
/// names and ids. It has no merges: text that is not a whole pseudo-word encodes to bytes.
pub fn synthetic_tokenizer_json() -> String {
    let mut vocab = Map::new();
    for (id, ch) in byte_alphabet().into_iter().enumerate() {
        vocab.insert(ch.to_string(), json!(id));
    }
    for id in 256..REGULAR_TOKENS {
        vocab.insert(pseudo_word(id), json!(id));
    }
    let added: Vec<Value> = (REGULAR_TOKENS..REGULAR_TOKENS + SPECIAL_TOKENS)
        .map(|id| {
            json!({
                "id": id, "content": special_name(id), "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": false, "special": true,
            })
        })
        .collect();
    let bos = special_name(REGULAR_TOKENS);
    let byte_level = json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false});
    json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": {
            "type": "Sequence",
            "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": LLAMA3_SPLIT}, "behavior": "Isolated", "invert": false},
                byte_level,
            ],
        },
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [
                {"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                {"SpecialToken": {"id": bos, "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}},
            ],
            "special_tokens": {bos.clone(): {"id": bos, "ids": [REGULAR_TOKENS], "tokens": [bos]}},
        },
        "decoder": byte_level,
        "model": {
            "type": "BPE",
            "dropout": null,
            "unk_token": null,
            "continuing_subword_prefix": null,
            "end_of_word_suffix": null,
            "fuse_unk": false,
            "byte_fallback": false,
            // As in Llama 3: a pre-token that is itself in the vocab maps to that id, which
            // is what lets pseudo-words round-trip without merges.
            "ignore_merges": true,
            "vocab": vocab,
            "merges": [],
        },
    })
    .to_string()
}

/// GPT-2's byte-to-character map (printable bytes stand for themselves, the rest are
/// shifted past 255), in code-point order, which is the order of ids 0..256 in Llama 3.
fn byte_alphabet() -> Vec<char> {
    let mut shifted = 0;
    let mut chars: Vec<char> = (0..=255u8)
        .map(|b| match b {
            b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF => b as char,
            _ => {
                shifted += 1;
                char::from_u32(255 + shifted).unwrap()
            }
        })
        .collect();
    chars.sort_unstable();
    chars
}

/// A space-led word of consonant-vowel syllables: the id above 256 in bijective base 80,
/// so every id gets its own word and smaller ids get shorter words.
fn pseudo_word(id: u32) -> String {
    let syllables = (CONSONANTS.len() * VOWELS.len()) as u32;
    let mut word = String::from('\u{120}');
    let mut n = id - 256;
    loop {
        let s = (n % syllables) as usize;
        word.push(CONSONANTS[s / VOWELS.len()] as char);
        word.push(VOWELS[s % VOWELS.len()] as char);
        n /= syllables;
        if n == 0 {
            return word;
        }
        n -= 1;
    }
}

/// Llama 3.1/3.2 special-token names; the unnamed ones are numbered reserved tokens.
fn special_name(id: u32) -> String {
    let name = match id - REGULAR_TOKENS {
        0 => "begin_of_text",
        1 => "end_of_text",
        4 => "finetune_right_pad_id",
        6 => "start_header_id",
        7 => "end_header_id",
        8 => "eom_id",
        9 => "eot_id",
        10 => "python_tag",
        k => {
            let n = match k {
                2 | 3 => k - 2,
                5 => 2,
                _ => k - 8,
            };
            return format!("<|reserved_special_token_{n}|>");
        }
    };
    format!("<|{name}|>")
}
