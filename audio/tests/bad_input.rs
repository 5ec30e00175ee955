//! Malformed and edge-case input: each gives its own error, never a panic; valid variants
//! decode with torchaudio's scaling and the reference downmix.

mod common;
#[path = "common/synth.rs"]
mod synth;

use synth::{f32_wav, flac16, pcm16_wav, wav, XorShift, IEEE_FLOAT, PCM};
use uniaudio_audio::{
    decode_audio, decode_audio_limited, read_audio, AudioError, DecodeLimits, Downmix,
    MAX_AUDIO_BYTES,
};

fn err(bytes: &[u8]) -> AudioError {
    match decode_audio(bytes, "test.wav") {
        Ok(a) => panic!("expected an error, decoded {} samples", a.samples.len()),
        Err(e) => {
            let msg = e.to_string();
            println!("{msg}");
            assert!(
                msg.starts_with("test.wav: "),
                "error does not name the file: {msg}"
            );
            e
        }
    }
}

#[test]
fn empty_file() {
    assert!(matches!(err(&[]), AudioError::EmptyFile { .. }));
}

#[test]
fn random_bytes_are_not_audio() {
    let mut rng = XorShift(0x1234_5678);
    let mut bytes: Vec<u8> = (0..4096).map(|_| rng.byte()).collect();
    bytes[0] = b'x'; // not a magic number by chance
    assert!(matches!(err(&bytes), AudioError::NotAudio { .. }));
    assert!(matches!(
        err(b"hello world, not audio"),
        AudioError::NotAudio { .. }
    ));
}

#[test]
fn truncated_fixture_wav() {
    let full = common::read_bytes("a_24k_f32_3s2.wav");
    for cut in [full.len() - 1, full.len() / 2, 100] {
        match err(&full[..cut]) {
            AudioError::Truncated {
                declared, present, ..
            } => {
                assert_eq!(declared, 76_800 * 4);
                assert!(present < declared);
            }
            e => panic!("cut at {cut}: {e:?}"),
        }
    }
    // Cut inside the header: malformed, not truncated data.
    assert!(matches!(err(&full[..30]), AudioError::BadWav { .. }));
}

#[test]
fn lying_data_length() {
    let bytes = wav(PCM, 1, 16_000, 16, &[0; 100], Some(1 << 30));
    assert!(matches!(
        err(&bytes),
        AudioError::Truncated {
            declared: 1073741824,
            present: 100,
            ..
        }
    ));
}

#[test]
fn sample_rate_zero_and_absurd() {
    for rate in [0u32, 999, 768_001, u32::MAX] {
        match err(&wav(PCM, 1, rate, 16, &[0; 64], None)) {
            AudioError::BadSampleRate { rate: r, .. } => assert_eq!(r, rate),
            e => panic!("{rate}: {e:?}"),
        }
    }
    assert!(decode_audio(&wav(PCM, 1, 1000, 16, &[0; 64], None), "x").is_ok());
    assert!(decode_audio(&wav(PCM, 1, 768_000, 16, &[0; 64], None), "x").is_ok());
}

#[test]
fn zero_channels() {
    assert!(matches!(
        err(&wav(PCM, 0, 16_000, 16, &[0; 64], None)),
        AudioError::NoChannels { .. }
    ));
}

#[test]
fn nan_and_inf_samples() {
    let mut x = vec![0.25f32; 20];
    x[7] = f32::NAN;
    match err(&f32_wav(2, 24_000, &x)) {
        AudioError::NonFinite {
            frame: 3,
            channel: 1,
            value,
            ..
        } => assert!(value.is_nan()),
        e => panic!("{e:?}"),
    }
    x[7] = 0.0;
    x[12] = f32::NEG_INFINITY;
    assert!(matches!(
        err(&f32_wav(1, 24_000, &x)),
        AudioError::NonFinite {
            frame: 12,
            channel: 0,
            ..
        }
    ));
}

#[test]
fn zero_frames() {
    assert!(matches!(
        err(&pcm16_wav(1, 24_000, &[])),
        AudioError::NoSamples { .. }
    ));
    assert!(matches!(
        err(&f32_wav(2, 24_000, &[])),
        AudioError::NoSamples { .. }
    ));
}

#[test]
fn unsupported_encodings() {
    // 64-bit float and 12-bit PCM (hound: unsupported / malformed) are refused cleanly.
    assert!(matches!(
        err(&wav(IEEE_FLOAT, 1, 24_000, 64, &[0; 64], None)),
        AudioError::BadWav { .. }
    ));
    assert!(matches!(
        err(&wav(0x0055, 1, 24_000, 16, &[0; 64], None)),
        AudioError::Unsupported { .. }
    ));
}

#[test]
fn too_long() {
    // 4 h at 1 kHz is 14.4 M frames; one more 8-bit frame is refused before decoding.
    let frames = 4 * 3600 * 1000 + 1;
    let e = err(&wav(PCM, 1, 1000, 8, &vec![128u8; frames], None));
    assert!(
        matches!(
            e,
            AudioError::TooLong {
                frames: 14_400_001,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn pcm_scaling_matches_torchaudio() {
    // 8-bit unsigned: (k - 128) / 128.
    let a = decode_audio(&wav(PCM, 1, 8000, 8, &[0, 128, 255], None), "x").unwrap();
    assert_eq!(a.samples, vec![-1.0, 0.0, 127.0 / 128.0]);
    // 16-bit: k / 32768.
    let a = decode_audio(&pcm16_wav(1, 8000, &[-32768, 0, 16384, 32767]), "x").unwrap();
    assert_eq!(a.samples, vec![-1.0, 0.0, 0.5, 32767.0 / 32768.0]);
    // 24-bit: k / 8388608.
    let data = [0x00, 0x00, 0x80, 0xff, 0xff, 0x7f, 0x00, 0x00, 0x40];
    let a = decode_audio(&wav(PCM, 1, 8000, 24, &data, None), "x").unwrap();
    assert_eq!(a.samples, vec![-1.0, 8_388_607.0 / 8_388_608.0, 0.5]);
    // 32-bit int: k / 2^31.
    let data: Vec<u8> = [i32::MIN, 1 << 30]
        .iter()
        .flat_map(|k| k.to_le_bytes())
        .collect();
    let a = decode_audio(&wav(PCM, 1, 8000, 32, &data, None), "x").unwrap();
    assert_eq!(a.samples, vec![-1.0, 0.5]);
}

#[test]
fn downmix_rules() {
    let a = decode_audio(&f32_wav(2, 24_000, &[0.1, 0.2, -1.0, 0.5]), "x").unwrap();
    assert_eq!(a.downmix, Downmix::Stereo);
    assert_eq!(a.samples, vec![(0.1f32 + 0.2) / 2.0, (-1.0f32 + 0.5) / 2.0]);
    let a = decode_audio(&f32_wav(3, 24_000, &[0.3, 0.6, 0.9, 0.0, 0.0, 0.3]), "x").unwrap();
    assert_eq!((a.downmix, a.channels), (Downmix::Mean(3), 3));
    assert_eq!(a.samples, vec![(0.3f32 + 0.6 + 0.9) / 3.0, 0.1]);
    let a = decode_audio(&f32_wav(1, 24_000, &[0.5]), "x").unwrap();
    assert_eq!((a.downmix, a.samples), (Downmix::None, vec![0.5]));
}

#[test]
fn flac_decodes_like_wav() {
    let mut rng = XorShift(7);
    let x: Vec<i16> = (0..2 * 3000).map(|_| rng.next_u64() as i16).collect();
    let flac = decode_audio(&flac16(2, 44_100, &x, 1024), "x.flac").expect("flac");
    let wav = decode_audio(&pcm16_wav(2, 44_100, &x), "x.wav").expect("wav");
    assert_eq!(
        (flac.sample_rate, flac.channels, flac.downmix),
        (44_100, 2, Downmix::Stereo)
    );
    assert_eq!(flac.samples, wav.samples);
}

/// A caller's limits stop a decode: by length at the file's rate, and by the samples of all
/// channels (a FLAC stops block by block, before the rest is decoded).
#[test]
fn decode_limits_refuse_long_and_wide_files() {
    let two_seconds: Vec<i16> = (0..2 * 8000 * 2).map(|i| (i % 300) as i16).collect();
    let files = [
        ("x.wav", pcm16_wav(2, 8000, &two_seconds)),
        ("x.flac", flac16(2, 8000, &two_seconds, 1024)),
    ];
    for (name, bytes) in &files {
        let fits = DecodeLimits::seconds(2);
        assert_eq!(
            decode_audio_limited(bytes, name, fits)
                .expect(name)
                .samples
                .len(),
            16_000
        );
        match decode_audio_limited(bytes, name, DecodeLimits::seconds(1)) {
            Err(AudioError::TooLong {
                frames, max_frames, ..
            }) => {
                assert!(
                    frames > 8000 && max_frames == 8000,
                    "{name}: {frames} of {max_frames}"
                )
            }
            other => panic!("{name}: expected TooLong, got {other:?}"),
        }
        let narrow = DecodeLimits {
            max_seconds: 10,
            max_samples: 20_000,
        };
        match decode_audio_limited(bytes, name, narrow) {
            Err(
                e @ AudioError::TooManySamples {
                    channels: 2,
                    max_samples: 20_000,
                    ..
                },
            ) => {
                assert!(e.to_string().starts_with(name), "{e}")
            }
            other => panic!("{name}: expected TooManySamples, got {other:?}"),
        }
    }
    assert_eq!(DecodeLimits::seconds(30).max_samples, 30 * 384_000);
    assert_eq!(DecodeLimits::seconds(u64::MAX), DecodeLimits::default());
}

#[test]
fn broken_compressed_streams() {
    // Magic numbers followed by garbage reach symphonia and come back as errors.
    for head in [
        &b"fLaC"[..],
        b"OggS",
        b"ID3\x04\x00\x00\x00\x00\x00\x10",
        &[0xFF, 0xFB, 0x90, 0x00],
    ] {
        let mut bytes = head.to_vec();
        let mut rng = XorShift(99);
        bytes.extend((0..2000).map(|_| rng.byte()));
        let e = match decode_audio(&bytes, "test.bin") {
            Err(e) => e,
            Ok(a) => {
                // Random bytes after an MPEG sync may decode as frames; they must be sane.
                assert!(a.samples.iter().all(|v| v.is_finite()));
                continue;
            }
        };
        println!("{e}");
        assert!(matches!(
            e,
            AudioError::Decode { .. }
                | AudioError::NoSamples { .. }
                | AudioError::Unsupported { .. }
        ));
    }
}

#[test]
fn file_errors_and_size_limit() {
    let missing = std::path::Path::new("/nonexistent/dir/missing.wav");
    let e = read_audio(missing).unwrap_err();
    assert!(matches!(e, AudioError::Io { .. }));
    // The cause is said once: in the message, not again as a source a chain would print.
    assert!(
        e.to_string()
            .contains("missing.wav: cannot read the file: "),
        "{e}"
    );
    assert!(std::error::Error::source(&e).is_none());

    // A sparse file just over the limit is refused from its size alone.
    let path = std::env::temp_dir().join(format!("uniaudio-audio-big-{}.wav", std::process::id()));
    let file = std::fs::File::create(&path).expect("temp file");
    file.set_len(MAX_AUDIO_BYTES + 1).expect("sparse file");
    drop(file);
    let result = read_audio(&path);
    let _ = std::fs::remove_file(&path);
    assert!(
        matches!(result, Err(AudioError::FileTooLarge { .. })),
        "{result:?}"
    );

    let path = common::fixture_dir().join("a_24k_f32_3s2.wav");
    let a = read_audio(&path).expect("fixture");
    assert_eq!((a.samples.len(), a.sample_rate), (76_800, 24_000));
}
