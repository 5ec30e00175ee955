//! The front end against the reference intermediates of the encoder fixture:
//! load + resample to 24 kHz, chunk 0 -> 16 kHz, Whisper log-mel, MusicFM mel.

mod common;

use common::{head_columns, read_json, read_tensors, rel_l2};
use uniaudio_audio::{
    chunk_24k, decode_audio, musicfm_mel, resample, resample_24k_to_16k, whisper_log_mel, Downmix,
    CHUNK_24K, MEL_FRAMES, MUSICFM_MELS,
};

const WAVE_TOL: f64 = 1e-6;
const MEL_TOL: f64 = 2e-5;

fn case_info(name: &str) -> serde_json::Value {
    let cases = read_json("cases.json");
    cases["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no case {name}"))
        .clone()
}

fn whisper_n_mels() -> usize {
    read_json("config.json")["whisper"]["feature_extractor"]["n_mels"]
        .as_u64()
        .expect("n_mels") as usize
}

fn check(name: &str, stage: &str, ours: &[f32], reference: &[f32], tol: f64) -> usize {
    let err = rel_l2(ours, reference);
    println!("{name:32} {stage:22} rel L2 = {err:.3e}");
    assert!(err <= tol, "{name} {stage}: rel L2 {err:e} > {tol:e}");
    1
}

/// Runs every stage the case's intermediates file has; returns how many were compared.
fn run_case(name: &str) -> usize {
    let info = case_info(name);
    let input = &info["input"];
    let audio = decode_audio(&common::read_bytes(&format!("{name}.wav")), name).expect("decode");
    assert_eq!(
        u64::from(audio.sample_rate),
        input["sample_rate"].as_u64().unwrap()
    );
    assert_eq!(
        u64::from(audio.channels),
        input["channels"].as_u64().unwrap()
    );
    assert_eq!(
        audio.samples.len() as u64,
        input["frames"].as_u64().unwrap()
    );
    let expect_downmix = if audio.channels == 2 {
        Downmix::Stereo
    } else {
        Downmix::None
    };
    assert_eq!(audio.downmix, expect_downmix);

    let wav24k = resample(&audio.samples, audio.sample_rate, 24_000);
    assert_eq!(wav24k.len() as u64, info["samples_24k"].as_u64().unwrap());

    let inter = read_tensors(&format!("inter_{name}.safetensors"));
    let mut compared = 0;
    if let Some((_, r)) = inter.get("wav24k_head") {
        compared += check(name, "wav24k_head", &wav24k[..r.len()], r, WAVE_TOL);
    }
    if let Some((_, r)) = inter.get("wav24k_tail") {
        compared += check(
            name,
            "wav24k_tail",
            &wav24k[wav24k.len() - r.len()..],
            r,
            WAVE_TOL,
        );
    }

    let chunk0 = chunk_24k(&wav24k, 0, CHUNK_24K);
    let wav16k = resample_24k_to_16k(&chunk0);
    assert_eq!(wav16k.len(), 480_160);
    if let Some((_, r)) = inter.get("wav16k_head") {
        compared += check(name, "wav16k_head", &wav16k[..r.len()], r, WAVE_TOL);
    }
    if let Some((_, r)) = inter.get("wav16k_tail") {
        compared += check(
            name,
            "wav16k_tail",
            &wav16k[wav16k.len() - r.len()..],
            r,
            WAVE_TOL,
        );
    }

    if let Some((shape, r)) = inter.get("whisper_logmel_head") {
        let n_mels = whisper_n_mels();
        assert_eq!(shape[0], n_mels);
        let mel = whisper_log_mel(&wav16k, n_mels);
        let ours = head_columns(&mel, n_mels, MEL_FRAMES, shape[1]);
        compared += check(name, "whisper_logmel_head", &ours, r, MEL_TOL);
    }
    if let Some((shape, r)) = inter.get("musicfm_mel_head") {
        assert_eq!(shape[0], MUSICFM_MELS);
        let mel = musicfm_mel(&chunk0);
        let ours = head_columns(&mel, MUSICFM_MELS, MEL_FRAMES, shape[1]);
        compared += check(name, "musicfm_mel_head", &ours, r, MEL_TOL);
    }
    compared
}

#[test]
fn case_a_24k_f32_all_front_end_stages() {
    // a has no resampling to 24 kHz, so no wav24k tensors: 16 kHz + both mels.
    assert_eq!(run_case("a_24k_f32_3s2"), 4);
}

#[test]
fn case_b_16k_to_24k() {
    assert_eq!(run_case("b_16k_pcm16_7s05"), 2);
}

#[test]
fn case_c_44k1_stereo_to_24k() {
    assert_eq!(run_case("c_44k1_stereo_pcm16_4s"), 2);
}

#[test]
fn case_d_24k_pcm16_loads() {
    // d's intermediates file has no front-end tensors; this checks loading and lengths.
    run_case("d_24k_pcm16_9s28");
}

#[test]
fn case_e_length_rate_mono() {
    let audio = decode_audio(&common::read_bytes("e_24k_pcm16_31s5.wav"), "e").expect("decode");
    assert_eq!(audio.samples.len(), 756_000);
    assert_eq!(audio.sample_rate, 24_000);
    assert_eq!((audio.channels, audio.downmix), (1, Downmix::None));
    // Two chunks; chunk 1 = [720240, 756000) then the wrap to sample 0.
    let c1 = chunk_24k(&audio.samples, 1, CHUNK_24K);
    assert_eq!(c1[0], audio.samples[720_240]);
    assert_eq!(c1[756_000 - 720_240], audio.samples[0]);
}
