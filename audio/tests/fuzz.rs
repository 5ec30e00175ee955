//! Bounded mutation fuzzing of `decode_audio`: real and hand-made WAV and FLAC files,
//! truncated at many positions and with random bytes overwritten (fixed seeds). The decoder
//! must never panic, and whatever it accepts must be valid audio.

mod common;
#[path = "common/synth.rs"]
mod synth;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Once;

use synth::{f32_wav, flac16, pcm16_wav, XorShift};
use uniaudio_audio::{decode_audio, Audio, MAX_SAMPLE_RATE, MIN_SAMPLE_RATE};

/// Panics raised (and caught) anywhere, including inside third-party decoders.
static PANICS: AtomicUsize = AtomicUsize::new(0);

fn count_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        std::panic::set_hook(Box::new(|_| {
            PANICS.fetch_add(1, Ordering::Relaxed);
        }))
    });
}

fn check_valid(a: &Audio, what: &str) {
    assert!(!a.samples.is_empty(), "{what}: empty audio accepted");
    assert!(
        (MIN_SAMPLE_RATE..=MAX_SAMPLE_RATE).contains(&a.sample_rate),
        "{what}: rate {}",
        a.sample_rate
    );
    assert!(a.channels > 0, "{what}: 0 channels");
    if let Some(i) = a.samples.iter().position(|v| !v.is_finite()) {
        panic!("{what}: non-finite sample {} at {i}", a.samples[i]);
    }
}

/// Decodes one input; fails the test if `decode_audio` itself panics. Returns whether it was accepted.
fn decode_one(bytes: &[u8], what: &str) -> bool {
    match catch_unwind(AssertUnwindSafe(|| decode_audio(bytes, "fuzz"))) {
        Err(_) => panic!("decode_audio panicked on {what}"),
        Ok(Ok(a)) => {
            check_valid(&a, what);
            true
        }
        Ok(Err(e)) => {
            assert!(e.to_string().starts_with("fuzz: "), "{what}: {e}");
            false
        }
    }
}

/// Truncations at `cuts` positions and `mutations` random overwrites (half of them in the
/// first 64 bytes, where the headers are).
fn fuzz(
    name: &str,
    seed: u64,
    original: &[u8],
    cut_step: usize,
    mutations: usize,
) -> (usize, usize) {
    count_panics();
    let before = PANICS.load(Ordering::Relaxed);
    let mut accepted = 0;
    let mut tried = 0;
    assert!(
        decode_one(original, name),
        "{name}: the unmutated file must decode"
    );
    for cut in (0..original.len()).step_by(cut_step.max(1)) {
        accepted += usize::from(decode_one(
            &original[..cut],
            &format!("{name} cut at {cut}"),
        ));
        tried += 1;
    }
    let mut rng = XorShift(seed);
    for it in 0..mutations {
        let mut bytes = original.to_vec();
        for _ in 0..1 + rng.below(4) {
            let at = if rng.below(2) == 0 {
                rng.below(64.min(bytes.len()))
            } else {
                rng.below(bytes.len())
            };
            bytes[at] = rng.byte();
        }
        if rng.below(4) == 0 {
            bytes.truncate(rng.below(bytes.len()));
        }
        accepted += usize::from(decode_one(&bytes, &format!("{name} mutation {it}")));
        tried += 1;
    }
    let caught = PANICS.load(Ordering::Relaxed) - before;
    println!("{name}: {tried} inputs, {accepted} accepted, {caught} decoder panics caught");
    (tried, accepted)
}

fn tone(frames: usize, channels: usize) -> Vec<i16> {
    (0..frames * channels)
        .map(|i| ((i as f32 * 0.05).sin() * 20_000.0) as i16)
        .collect()
}

#[test]
fn fuzz_pcm16_stereo_wav() {
    fuzz(
        "pcm16 stereo wav",
        1,
        &pcm16_wav(2, 44_100, &tone(300, 2)),
        1,
        20_000,
    );
}

#[test]
fn fuzz_float_wav() {
    let x: Vec<f32> = tone(400, 1)
        .iter()
        .map(|&v| f32::from(v) / 32768.0)
        .collect();
    fuzz("f32 mono wav", 2, &f32_wav(1, 24_000, &x), 1, 20_000);
}

#[test]
fn fuzz_fixture_wav() {
    // The real fixture file (~300 KB): coarser truncation steps, fewer mutations.
    let bytes = common::read_bytes("b_16k_pcm16_7s05.wav");
    fuzz("fixture b wav", 3, &bytes, 499, 1000);
}

#[test]
fn fuzz_flac() {
    fuzz(
        "flac stereo",
        4,
        &flac16(2, 48_000, &tone(700, 2), 256),
        1,
        20_000,
    );
}
