//! Wall time of the per-chunk front end on one real 30 s chunk (printed; run with
//! `--nocapture`), with sanity checks on the outputs.

mod common;

use std::time::Instant;

use uniaudio_audio::{
    chunk_24k, decode_audio, musicfm_mel, resample, resample_24k_to_16k, whisper_log_mel,
    CHUNK_24K, MEL_FRAMES, MUSICFM_MELS,
};

#[test]
fn one_chunk_front_end_timing() {
    let audio = decode_audio(&common::read_bytes("e_24k_pcm16_31s5.wav"), "e").expect("decode");
    let chunk = chunk_24k(&audio.samples, 0, CHUNK_24K);

    let t = Instant::now();
    let x16 = resample_24k_to_16k(&chunk);
    let t_16k = t.elapsed();
    let t = Instant::now();
    let whisper = whisper_log_mel(&x16, 80);
    let t_whisper = t.elapsed();
    let t = Instant::now();
    let musicfm = musicfm_mel(&chunk);
    let t_musicfm = t.elapsed();
    // 30 s of 44.1 kHz audio to 24 kHz, the costliest common input rate.
    let x44: Vec<f32> = (0..1_323_000)
        .map(|i| (i as f32 * 0.013).sin() * 0.5)
        .collect();
    let t = Instant::now();
    let y = resample(&x44, 44_100, 24_000);
    let t_44k = t.elapsed();

    println!(
        "30 s chunk: 24k->16k {:.1} ms, Whisper log-mel {:.1} ms, MusicFM mel {:.1} ms \
         (both mels {:.1} ms); 30 s 44.1k->24k {:.1} ms; {} rayon threads",
        t_16k.as_secs_f64() * 1e3,
        t_whisper.as_secs_f64() * 1e3,
        t_musicfm.as_secs_f64() * 1e3,
        (t_whisper + t_musicfm).as_secs_f64() * 1e3,
        t_44k.as_secs_f64() * 1e3,
        rayon::current_num_threads(),
    );
    assert_eq!(x16.len(), 480_160);
    assert_eq!(whisper.len(), 80 * MEL_FRAMES);
    assert_eq!(musicfm.len(), MUSICFM_MELS * MEL_FRAMES);
    assert_eq!(y.len(), 720_000);
    assert!(whisper.iter().chain(&musicfm).all(|v| v.is_finite()));
    // Whisper's floor: nothing below max - 8 in log10 units, i.e. a spread of at most 2.
    let (lo, hi) = whisper
        .iter()
        .fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
    assert!(hi - lo <= 2.0 + 1e-6, "{lo} {hi}");
}
