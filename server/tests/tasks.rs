//! The task endpoints on a tiny synthetic bundle: speech as WAV and PCM, transcription and
//! question answering from uploaded audio files, each equal to the library's own run of
//! the same task (what the command line prints), and bad uploads refused with reasons.

mod http;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use uniaudio::bundle_presets::BundlePreset;
use uniaudio::{AnyBackend, AudioInput, BackendKind, CodecSettings, LoadOptions, Model, Sampling, Task, TaskRequest, TaskText};
use uniaudio_runtime::Cpu;
use uniaudio_server::{ServeOptions, ServerHandle};

use http::request;

fn bundle() -> &'static Path {
    static DIR: std::sync::OnceLock<(tempfile::TempDir, PathBuf)> = std::sync::OnceLock::new();
    &DIR.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("bundle");
        uniaudio::synth_bundle::write_synthetic_bundle(&dir, BundlePreset::Tiny, None, &mut |_, _, _| {}).unwrap();
        (tmp, dir)
    })
    .1
}

fn start() -> ServerHandle {
    let paths = uniaudio::ModelPaths::resolve(Some(bundle()), None, None).unwrap();
    let server = uniaudio_server::start(paths, AnyBackend::Cpu(Cpu::new()), ServeOptions { port: 0, fault_injection: true, ..Default::default() }).unwrap();
    let t = Instant::now();
    while request(server.addr(), "GET", "/health", &[], b"").status != 200 {
        assert!(t.elapsed() < Duration::from_secs(120), "the server never became ready");
        std::thread::sleep(Duration::from_millis(20));
    }
    server
}

fn library() -> Model {
    Model::load(bundle(), LoadOptions { backend: BackendKind::Cpu, ..Default::default() }).unwrap()
}

/// A 2-second 24 kHz test tone as a 16-bit WAV file.
fn tone_wav() -> (Vec<u8>, Vec<f32>) {
    let samples: Vec<f32> = (0..48_000).map(|i| 0.3 * (i as f32 * 440.0 * std::f32::consts::TAU / 24_000.0).sin()).collect();
    let wav = wav_file(&samples, 24_000);
    let pcm = uniaudio_server_pcm(&samples);
    // What a reader of the file sees: the 16-bit values.
    let read: Vec<f32> = pcm.chunks(2).map(|b| i16::from_le_bytes([b[0], b[1]]) as f32 / 32768.0).collect();
    (wav, read)
}

/// Mono samples as a 16-bit WAV file at `rate`.
fn wav_file(samples: &[f32], rate: u32) -> Vec<u8> {
    let pcm = uniaudio_server_pcm(samples);
    let mut wav = Vec::new();
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + pcm.len() as u32).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    for v in [16u32.to_le_bytes().to_vec(), 1u16.to_le_bytes().to_vec(), 1u16.to_le_bytes().to_vec(), rate.to_le_bytes().to_vec(), (2 * rate).to_le_bytes().to_vec(), 2u16.to_le_bytes().to_vec(), 16u16.to_le_bytes().to_vec()] {
        wav.extend_from_slice(&v);
    }
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&(pcm.len() as u32).to_le_bytes());
    wav.extend_from_slice(&pcm);
    wav
}

fn uniaudio_server_pcm(samples: &[f32]) -> Vec<u8> {
    samples.iter().flat_map(|&s| ((s.clamp(-1.0, 1.0) * 32767.0).round() as i16).to_le_bytes()).collect()
}

fn multipart(fields: &[(&str, &str)], file: Option<(&str, &[u8])>) -> (String, Vec<u8>) {
    let boundary = "xUNIAUDIOx";
    let mut body = Vec::new();
    for (k, v) in fields {
        body.extend_from_slice(format!("--{boundary}\r\ncontent-disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n").as_bytes());
    }
    if let Some((name, bytes)) = file {
        body.extend_from_slice(format!("--{boundary}\r\ncontent-disposition: form-data; name=\"file\"; filename=\"{name}\"\r\ncontent-type: application/octet-stream\r\n\r\n").as_bytes());
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

#[test]
fn speech_transcription_and_answers_equal_the_library() {
    let server = start();
    let addr = server.addr();
    let mut model = library();

    // Speech: WAV, and the same samples as raw PCM.
    let body = json!({"model": "x", "voice": "alloy", "input": "hello there", "seed": 5, "steps": 2});
    let r = request(addr, "POST", "/v1/audio/speech", &[("content-type", "application/json")], body.to_string().as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type").as_deref(), Some("audio/wav"));
    let sampling = Sampling { seed: 5, ..Default::default() };
    let req = TaskRequest { task: Task::Tts, text: TaskText { text: Some("hello there".into()), ..Default::default() }, audio: None, sampling, codec: CodecSettings { steps: 2, ..Default::default() }, prompt_frames: None };
    let want = model.run(&req, &mut |_| {}).unwrap();
    let want_pcm = uniaudio_server_pcm(want.audio.as_ref().unwrap());
    assert!(!want_pcm.is_empty());
    assert_eq!(&r.body[..4], b"RIFF");
    assert_eq!(u32::from_le_bytes(r.body[24..28].try_into().unwrap()), 24_000);
    assert_eq!(&r.body[44..], &want_pcm[..], "the WAV's samples are the library's");
    let mut pcm_body = body.clone();
    pcm_body["response_format"] = json!("pcm");
    let r = request(addr, "POST", "/v1/audio/speech", &[], pcm_body.to_string().as_bytes());
    assert_eq!((r.status, r.header("content-type").as_deref()), (200, Some("audio/pcm")));
    assert_eq!(r.body, want_pcm);

    // Transcription and question answering from an uploaded WAV.
    let (wav, samples) = tone_wav();
    let run_text = |model: &mut Model, task, text: TaskText| {
        let req = TaskRequest { task, text, audio: Some(AudioInput::Samples24k(samples.clone())), sampling: Sampling::default(), codec: CodecSettings::default(), prompt_frames: None };
        model.run(&req, &mut |_| {}).unwrap().text.unwrap()
    };
    for (task_field, task) in [("asr", Task::Asr), ("caption", Task::AudioCaption)] {
        let (ct, form) = multipart(&[("model", "x"), ("task", task_field)], Some(("tone.wav", &wav)));
        let r = request(addr, "POST", "/v1/audio/transcriptions", &[("content-type", &ct)], &form);
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["text"], Value::String(run_text(&mut model, task, TaskText::default())), "{task_field}");
    }
    // `response_format=text`: the same text alone.
    let (ct, form) = multipart(&[("response_format", "text")], Some(("tone.wav", &wav)));
    let r = request(addr, "POST", "/v1/audio/transcriptions", &[("content-type", &ct)], &form);
    assert_eq!((r.status, r.header("content-type").as_deref()), (200, Some("text/plain; charset=utf-8")), "{}", r.text());
    assert_eq!(r.text(), run_text(&mut model, Task::Asr, TaskText::default()));
    let (ct, form) = multipart(&[("question", "what do you hear?")], Some(("tone.wav", &wav)));
    let r = request(addr, "POST", "/v1/audio/answer", &[("content-type", &ct)], &form);
    assert_eq!(r.status, 200, "{}", r.text());
    let question = TaskText { question: Some("what do you hear?".into()), ..Default::default() };
    assert_eq!(r.json()["text"], Value::String(run_text(&mut model, Task::AudioUnderstanding, question)));
    // A request spoken in the file, answered in text (s2t) and in speech (reply).
    let (ct, form) = multipart(&[("task", "s2t")], Some(("tone.wav", &wav)));
    let r = request(addr, "POST", "/v1/audio/answer", &[("content-type", &ct)], &form);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["text"], Value::String(run_text(&mut model, Task::SpeechS2t, TaskText::default())));
    let (ct, form) = multipart(&[("seed", "3"), ("steps", "2"), ("max_steps", "80"), ("response_format", "pcm")], Some(("tone.wav", &wav)));
    let r = request(addr, "POST", "/v1/audio/reply", &[("content-type", &ct)], &form);
    assert_eq!((r.status, r.header("content-type").as_deref()), (200, Some("audio/pcm")), "{}", r.text());
    let sampling = Sampling { seed: 3, max_steps: Some(80), ..Default::default() };
    let req = TaskRequest { task: Task::SpeechS2s, text: TaskText::default(), audio: Some(AudioInput::Samples24k(samples.clone())), sampling, codec: CodecSettings { steps: 2, ..Default::default() }, prompt_frames: None };
    let spoken = uniaudio_server_pcm(model.run(&req, &mut |_| {}).unwrap().audio.as_ref().unwrap());
    assert!(!spoken.is_empty());
    assert_eq!(r.body, spoken, "the reply's samples are the library's");

    // Bad uploads and fields: clear 4xx answers, and the server goes on.
    let expect = |r: http::Response, status: u16, words: &str| {
        assert_eq!(r.status, status, "{}", r.text());
        let msg = r.json()["error"]["message"].as_str().unwrap_or_default().to_string();
        assert!(msg.contains(words), "expected `{words}` in: {msg}");
    };
    let (ct, form) = multipart(&[], Some(("notes.txt", b"this is not audio at all")));
    expect(request(addr, "POST", "/v1/audio/transcriptions", &[("content-type", &ct)], &form), 400, "`file`");
    let (ct, form) = multipart(&[("task", "poetry")], Some(("tone.wav", &wav)));
    expect(request(addr, "POST", "/v1/audio/transcriptions", &[("content-type", &ct)], &form), 400, "`task`");
    let (ct, form) = multipart(&[("response_format", "srt")], Some(("tone.wav", &wav)));
    expect(request(addr, "POST", "/v1/audio/transcriptions", &[("content-type", &ct)], &form), 400, "`response_format`");
    let (ct, form) = multipart(&[], None);
    expect(request(addr, "POST", "/v1/audio/transcriptions", &[("content-type", &ct)], &form), 400, "`file`");
    let (ct, form) = multipart(&[], Some(("tone.wav", &wav)));
    expect(request(addr, "POST", "/v1/audio/answer", &[("content-type", &ct)], &form), 400, "`question`");
    let (ct, form) = multipart(&[("task", "s2t"), ("question", "why?")], Some(("tone.wav", &wav)));
    expect(request(addr, "POST", "/v1/audio/answer", &[("content-type", &ct)], &form), 400, "leave out `question`");
    let (ct, form) = multipart(&[("task", "sing")], Some(("tone.wav", &wav)));
    expect(request(addr, "POST", "/v1/audio/answer", &[("content-type", &ct)], &form), 400, "`task`");
    // Checked before the file is decoded: a file that is not audio is not what they name.
    for (field, value) in [("steps", "0"), ("steps", "many"), ("max_steps", "-1"), ("max_steps", "0"), ("temperature", "warm"), ("temperature", "nan"), ("temperature", "0"), ("response_format", "mp3")] {
        let (ct, form) = multipart(&[(field, value)], Some(("notes.txt", b"this is not audio at all")));
        expect(request(addr, "POST", "/v1/audio/reply", &[("content-type", &ct)], &form), 400, &format!("`{field}`"));
    }
    let long = wav_file(&vec![0.1; 601 * 8000], 8000);
    let (ct, form) = multipart(&[], Some(("long.wav", &long)));
    expect(request(addr, "POST", "/v1/audio/transcriptions", &[("content-type", &ct)], &form), 413, "at most 600 s");
    expect(request(addr, "POST", "/v1/audio/transcriptions", &[("content-type", "multipart/form-data; boundary=zz")], b"--zz\r\ngarbage"), 400, "multipart");
    expect(request(addr, "POST", "/v1/audio/speech", &[], br#"{"input": "hi", "response_format": "mp3"}"#), 400, "response_format");
    expect(request(addr, "POST", "/v1/audio/speech", &[], br#"{"input": "hi", "speed": 2}"#), 400, "speed");
    expect(request(addr, "POST", "/v1/audio/speech", &[], br#"{"input": "hi", "task": "ttx"}"#), 400, "`task`");
    expect(request(addr, "POST", "/v1/audio/speech", &[], br#"{"voice": "alloy"}"#), 400, "`input`");
    expect(request(addr, "POST", "/v1/audio/speech", &[], br#"{"input": " "}"#), 400, "`input` is blank");
    expect(request(addr, "POST", "/v1/audio/speech", &[], br#"{"input": "hi", "task": "instruct-tts", "caption": ""}"#), 400, "`caption`");
    let long = json!({"input": "a".repeat(5000)});
    expect(request(addr, "POST", "/v1/audio/speech", &[], long.to_string().as_bytes()), 413, "`input`");
    let r = request(addr, "POST", "/v1/audio/speech", &[], pcm_body.to_string().as_bytes());
    assert_eq!((r.status, r.body == want_pcm), (200, true));
    server.stop().unwrap();
}

/// An upload too long for one prompt is transcribed in windows, run as one batch: the text
/// is the library's windowed transcription of the same samples. A task whose answer needs
/// the whole input refuses it.
#[test]
fn long_uploads_are_transcribed_in_windows_like_the_library() {
    let server = start();
    let addr = server.addr();
    let rate = 24_000;
    let mut x: Vec<f32> = (0..rate * 125).map(|i| (i as f32 * 0.013).sin() * 0.3 * (1.0 + (i as f32 * 1e-5).sin())).collect();
    for gap in [27, 55, 80, 108] {
        x[gap * rate..gap * rate + rate / 5].fill(0.0);
    }
    let wav = wav_file(&x, rate as u32);
    let read: Vec<f32> = uniaudio_server_pcm(&x).chunks(2).map(|b| i16::from_le_bytes([b[0], b[1]]) as f32 / 32768.0).collect();
    let req = TaskRequest { task: Task::Asr, text: TaskText::default(), audio: Some(AudioInput::Samples24k(read)), sampling: Sampling::default(), codec: CodecSettings::default(), prompt_frames: None };
    let want = library().run(&req, &mut |_| {}).unwrap();
    assert_eq!(want.windows.len(), 5, "the library cut {:?}", want.windows);
    let (ct, form) = multipart(&[], Some(("long.wav", &wav)));
    let r = request(addr, "POST", "/v1/audio/transcriptions", &[("content-type", &ct)], &form);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["text"], Value::String(want.text.unwrap()));
    // The five windows ran together (steps of 5 to 8 rows), and none is left running.
    let metrics = request(addr, "GET", "/metrics", &[], b"").text();
    let bucket = |le: &str| -> u64 {
        let line = metrics.lines().find(|l| l.starts_with(&format!("uniaudio_batch_size_bucket{{le=\"{le}\"}}"))).unwrap_or_else(|| panic!("no bucket {le}: {metrics}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert!(bucket("8") > bucket("4"), "no step had 5 rows: {metrics}");
    assert!(metrics.contains("uniaudio_active_sequences 0"), "{metrics}");
    let generated = |metrics: &str| -> u64 { metrics.lines().find_map(|l| l.strip_prefix("uniaudio_generated_total ")).unwrap().parse().unwrap() };
    let whole = generated(&metrics);
    // A client that leaves mid-way stops every window, counted once.
    let connection = http::send_typed_and_leave_open(addr, "/v1/audio/transcriptions", &ct, &form);
    let t = Instant::now();
    while server.shared().active() == 0 {
        assert!(t.elapsed() < Duration::from_secs(60), "the windows never started");
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(connection);
    let t = Instant::now();
    while server.shared().active() > 0 || server.shared().kv_used() > 0 {
        assert!(t.elapsed() < Duration::from_secs(20), "windows kept running after their client left");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(server.shared().active(), 0, "a queued window started after its client left");
    let metrics = request(addr, "GET", "/metrics", &[], b"").text();
    assert!(metrics.contains("uniaudio_cancelled_total 1"), "{metrics}");
    let left = generated(&metrics) - whole;
    assert!(left < whole / 2, "{left} tokens generated after the client left, against {whole} for the whole upload");
    // A window that fails answers for the whole upload, once: the window already running
    // is cancelled and the queued ones are dropped.
    let (ct_fault, form_fault) = multipart(&[("test_fault", "window_error")], Some(("long.wav", &wav)));
    let r = request(addr, "POST", "/v1/audio/transcriptions", &[("content-type", &ct_fault)], &form_fault);
    assert_eq!(r.status, 500, "{}", r.text());
    assert!(r.text().contains("injected window failure"), "{}", r.text());
    // Cancelled before the answer was sent.
    assert_eq!((server.shared().active(), server.shared().kv_used()), (0, 0), "windows kept running after one failed");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(server.shared().active(), 0, "a queued window started after its group failed");
    let metrics = request(addr, "GET", "/metrics", &[], b"").text();
    assert!(metrics.contains("uniaudio_queue_depth 0\n") && metrics.contains("uniaudio_uploaded_audio_seconds 0\n"), "{metrics}");
    let failed = generated(&metrics) - whole - left;
    assert!(failed < whole / 2, "{failed} tokens generated for the failed upload, against {whole} for a whole one");
    let (ct, form) = multipart(&[("task", "caption")], Some(("long.wav", &wav)));
    let r = request(addr, "POST", "/v1/audio/transcriptions", &[("content-type", &ct)], &form);
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("max_seq_len"), "{}", r.text());
    server.stop().unwrap();
}

/// A speech request whose client leaves while the codec decodes its audio stops at the
/// next Euler step: the engine thread is free for the next request long before the decode
/// would have ended.
#[test]
fn a_client_that_leaves_during_the_codec_frees_the_engine_thread() {
    let server = start();
    let addr = server.addr();
    let generated = || -> u64 {
        let metrics = request(addr, "GET", "/metrics", &[], b"").text();
        metrics.lines().find_map(|l| l.strip_prefix("uniaudio_generated_total ")).unwrap().parse().unwrap()
    };
    let speech = |steps: u32| json!({"input": "hello there", "seed": 3, "max_steps": 80, "steps": steps}).to_string();
    let timed = |body: &str| {
        let t = Instant::now();
        assert_eq!(request(addr, "POST", "/v1/audio/speech", &[], body.as_bytes()).status, 200);
        t.elapsed()
    };
    // Most of this request's time is the codec's 100 Euler steps (against one).
    let short = timed(&speech(1));
    let before = generated();
    let whole = timed(&speech(100));
    let frames = generated() - before;
    assert!(whole > 3 * short, "the codec is not most of the run: {whole:?} with 100 steps, {short:?} with 1");
    let quick = json!({"frames": [{"text": 1}, {"text": 2}], "output_kind": "text", "max_steps": 2}).to_string();
    let t = Instant::now();
    assert_eq!(request(addr, "POST", "/v1/generate", &[], quick.as_bytes()).status, 200);
    let alone = t.elapsed();
    // Leave once the generation is over (as many frames as before: the same seed), that
    // is while the codec decodes.
    let before = generated();
    let connection = http::send_and_leave_open(addr, "/v1/audio/speech", speech(100).as_bytes());
    let t = Instant::now();
    while generated() < before + frames {
        assert!(t.elapsed() < Duration::from_secs(30), "the generation never ended");
        std::thread::sleep(Duration::from_millis(2));
    }
    drop(connection);
    let t = Instant::now();
    assert_eq!(request(addr, "POST", "/v1/generate", &[], quick.as_bytes()).status, 200);
    let waited = t.elapsed();
    assert!(waited < alone + (whole - short) / 3, "waited {waited:?} behind an abandoned decode; the whole request took {whole:?}");
    let metrics = request(addr, "GET", "/metrics", &[], b"").text();
    assert!(metrics.contains("uniaudio_cancelled_total 1"), "{metrics}");
    server.stop().unwrap();
}
