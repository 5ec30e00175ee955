//! `uniaudio serve` on loopback with the LM fixture model: the /v1/generate contract
//! (equal to the reference fixture and to a solo run), streaming, limits, auth, faults,
//! client disconnects, deadlines, load with queue overflow, and graceful shutdown.

mod http;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use uniaudio::generate_json::output_json;
use uniaudio::AnyBackend;
use uniaudio_lm::synth::InitSpec;
use uniaudio_lm::synth_dir::write_synthetic_model;
use uniaudio_lm::{frame::parse_frames, generate, GenerateOptions, LmConfig, OutputKind, UniAudioLm};
use uniaudio_runtime::{Cpu, DType};
use uniaudio_server::{ServeOptions, ServerHandle};

use http::{request, Response};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../lm/tests/fixtures/public").join(name)
}

fn cases() -> Vec<Value> {
    serde_json::from_str::<Value>(&std::fs::read_to_string(fixture("cases.json")).unwrap()).unwrap().as_array().unwrap().clone()
}

/// The fixture model, written once per test binary.
fn model_dir() -> &'static Path {
    static DIR: std::sync::OnceLock<(tempfile::TempDir, PathBuf)> = std::sync::OnceLock::new();
    &DIR.get_or_init(|| {
        let text = std::fs::read_to_string(fixture("config.json")).unwrap();
        let config = LmConfig::from_json(&text).unwrap();
        let init = InitSpec::from_config_json(&text).unwrap().unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("lm");
        write_synthetic_model(&config, &init, DType::F32, &dir, &mut |_, _| {}).unwrap();
        (tmp, dir)
    })
    .1
}

fn start(opts: ServeOptions) -> ServerHandle {
    let opts = ServeOptions { port: 0, fault_injection: true, ..opts };
    let paths = uniaudio::ModelPaths::resolve(Some(model_dir()), None, None).unwrap();
    let server = uniaudio_server::start(paths, AnyBackend::Cpu(Cpu::new()), opts).unwrap();
    let t = Instant::now();
    while request(server.addr(), "GET", "/health", &[], b"").status != 200 {
        assert!(t.elapsed() < Duration::from_secs(60), "the server never became ready");
        std::thread::sleep(Duration::from_millis(20));
    }
    server
}

fn post(server: &ServerHandle, body: &Value) -> Response {
    request(server.addr(), "POST", "/v1/generate", &[("content-type", "application/json")], body.to_string().as_bytes())
}

/// Waits (up to 10 s) until `/metrics` holds `line`: a request is observed when the
/// server drops its answer's body, just after the client has read the last byte.
fn wait_for_metric(server: &ServerHandle, line: &str) {
    let t = Instant::now();
    loop {
        let metrics = request(server.addr(), "GET", "/metrics", &[], b"").text();
        if metrics.contains(line) {
            return;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "`{line}` not in\n{metrics}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A request line for a fixture case, and the answer a solo run gives it.
fn solo(case: &Value, top_k: usize, seed: u64, max_steps: usize) -> (Value, Value) {
    let kind = if case["task_kind"] == "audio_out" { OutputKind::Audio } else { OutputKind::Text };
    let frames = parse_frames(&json!({"frames": case["prompt"]}).to_string()).unwrap();
    let opts = GenerateOptions { kind, top_k, temperature: 0.9, seed, max_steps, cfg_scale: None };
    let cpu = Cpu::new();
    let lm = UniAudioLm::load(&cpu, model_dir()).unwrap();
    let out = generate(&lm, &cpu, &frames, &opts, &mut |_, _| {}).unwrap();
    let kind_name = if kind == OutputKind::Audio { "audio" } else { "text" };
    let line = json!({"frames": case["prompt"], "output_kind": kind_name, "top_k": top_k, "temperature": 0.9, "seed": seed, "max_steps": max_steps});
    (line, output_json(kind, &out))
}

#[test]
fn generate_matches_the_reference_and_a_solo_run() {
    let server = start(ServeOptions::default());
    for case in cases() {
        let kind = if case["task_kind"] == "audio_out" { "audio" } else { "text" };
        let r = post(&server, &json!({"frames": case["prompt"], "output_kind": kind, "top_k": 1, "max_steps": case["max_steps"]}));
        assert_eq!(r.status, 200, "{}", r.text());
        let got = r.json();
        let exp = &case["expected"];
        let keys: &[&str] = if kind == "audio" { &["frames", "reasoning", "reconstruction", "stopped_by"] } else { &["text_ids", "stopped_by"] };
        for k in keys {
            assert_eq!(got[k], exp[k], "{}: {k}", case["name"]);
        }
    }
    // Sampled: equal to generating alone with the same seed; streamed: the same object
    // at the end, after one event per frame.
    let (line, want) = solo(&cases()[0], 40, 7, 12);
    assert_eq!(post(&server, &line).json(), want);
    let mut streaming = line.clone();
    streaming["stream"] = json!(true);
    let r = post(&server, &streaming);
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap_or_default().starts_with("text/event-stream"));
    let events = r.sse();
    let frames: Vec<Value> = events.iter().filter(|(e, _)| e == "frame").map(|(_, d)| d["frame"].clone()).collect();
    let (last, done) = events.last().unwrap();
    assert_eq!(last, "done");
    assert_eq!(done, &want);
    assert_eq!(Value::Array(frames), want["frames"]);
    let models = request(server.addr(), "GET", "/v1/models", &[], b"").json();
    assert_eq!(models["data"][0]["object"], "model");
    // The stream that was read to its end counts as answered (200), like the others.
    let answered = format!("uniaudio_requests_total{{endpoint=\"/v1/generate\",status=\"200\"}} {}", cases().len() + 2);
    wait_for_metric(&server, &answered);
    server.stop().unwrap();
}

#[test]
fn bad_requests_get_clear_errors_and_the_server_goes_on() {
    let server = start(ServeOptions { max_steps_limit: 100, max_body_bytes: 8 << 20, ..Default::default() });
    let addr = server.addr();
    let case = &cases()[0];
    let good = json!({"frames": case["prompt"], "output_kind": "audio", "top_k": 1, "max_steps": 3});
    let expect = |r: Response, status: u16, words: &str| {
        assert_eq!(r.status, status, "{}", r.text());
        let msg = r.json()["error"]["message"].as_str().unwrap_or_default().to_string();
        assert!(msg.contains(words), "expected `{words}` in: {msg}");
    };
    expect(request(addr, "POST", "/v1/generate", &[], b"{not json"), 400, "not JSON");
    expect(post(&server, &json!({"frames": case["prompt"]})), 400, "output_kind");
    expect(post(&server, &json!({"frames": [{"audio": [1, 2]}], "output_kind": "audio"})), 400, "frame 0");
    expect(post(&server, &json!({"frames": case["prompt"], "output_kind": "audio", "max_steps": 101})), 400, "max_steps");
    // Without `max_steps` the default (500) is capped to the limit, not refused.
    let r = post(&server, &json!({"frames": case["prompt"], "output_kind": "audio", "top_k": 1}));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json()["frames"].as_array().is_some_and(|f| !f.is_empty() && f.len() <= 100), "{}", r.text());
    expect(post(&server, &json!({"frames": case["prompt"], "output_kind": "text", "temperature": -1, "max_steps": 3})), 400, "temperature");
    expect(post(&server, &json!({"frames": case["prompt"], "output_kind": "audio", "stream": "yes"})), 400, "stream");
    // Every answer carries its request's id: the client's, or a fresh one.
    let r = request(addr, "POST", "/v1/generate", &[("x-request-id", "client-7")], b"{}");
    assert_eq!((r.status, r.header("x-request-id").as_deref()), (400, Some("client-7")));
    let (a, b) = (request(addr, "GET", "/v1/models", &[], b""), request(addr, "GET", "/v1/models", &[("x-request-id", "not ok")], b""));
    let (a, b) = (a.header("x-request-id").unwrap(), b.header("x-request-id").unwrap());
    assert!(a != b && b != "not ok" && !a.is_empty(), "{a} {b}");
    // JSON bodies have their own limits, below --max-body-mib: a generate body over 4 MiB
    // and a speech body over 256 KiB are refused from their Content-Length, unread.
    for (path, length, words) in [("/v1/generate", 5 << 20, "/v1/generate takes at most 4194304"), ("/v1/audio/speech", 300 << 10, "/v1/audio/speech takes at most 262144")] {
        expect(http::head_only(addr, "POST", path, &[("content-type", "application/json"), ("content-length", &length.to_string())]), 413, words);
    }
    // A chunked body past its route's limit is cut off as it streams in, with a JSON 413:
    // each just past it (both below this server's --max-body-mib of 8).
    for (path, length) in [("/v1/generate", (4 << 20) + 1024), ("/v1/audio/speech", (256 << 10) + 1024)] {
        let huge = format!("{{\"frames\": [], \"pad\": \"{}\"}}", " ".repeat(length));
        let r = http::request_chunked(addr, path, huge.as_bytes());
        assert_eq!(r.status, 413, "{path}: {}", r.text());
        assert_eq!(r.json()["error"]["type"], "invalid_request_error", "{path}: {}", r.text());
    }
    // A 2 GB body is refused from its Content-Length, before any of it is sent.
    let r = http::head_only(addr, "POST", "/v1/generate", &[("content-type", "application/json"), ("content-length", "2000000000")]);
    assert_eq!(r.status, 413, "{}", r.text());
    // Injected faults: this request fails, the next one is served.
    let mut faulty = good.clone();
    for fault in ["error", "panic", "step_panic", "prefill_panic"] {
        faulty["test_fault"] = json!(fault);
        expect(post(&server, &faulty), 500, if fault == "error" { "injected" } else { "internal error" });
        assert_eq!(post(&server, &good).status, 200);
    }
    // This model directory has no tokenizer or codec: the task endpoints say so.
    expect(request(addr, "POST", "/v1/audio/speech", &[], br#"{"input": "hi"}"#), 501, "tokenizer");
    assert_eq!(request(addr, "GET", "/nowhere", &[], b"").status, 404);
    let metrics = request(addr, "GET", "/metrics", &[], b"").text();
    assert!(metrics.contains("uniaudio_requests_total{endpoint=\"/v1/generate\",status=\"400\"} 7"), "{metrics}");
    // The panics in submission, in a batched step and in a prefill; the server stays up.
    assert!(metrics.contains("uniaudio_panics_total 3"), "{metrics}");
    assert_eq!(request(addr, "GET", "/health", &[], b"").status, 200);
    server.stop().unwrap();
}

#[test]
fn the_api_key_guards_every_route_but_health() {
    let server = start(ServeOptions { api_key: Some("s3cret".into()), ..Default::default() });
    let addr = server.addr();
    assert_eq!(request(addr, "GET", "/health", &[], b"").status, 200);
    assert_eq!(request(addr, "GET", "/metrics", &[], b"").status, 401);
    assert_eq!(request(addr, "GET", "/v1/models", &[("authorization", "Bearer wrong!")], b"").status, 401);
    assert_eq!(request(addr, "GET", "/v1/models", &[("authorization", "Bearer s3cret")], b"").status, 200);
    let body = json!({"frames": cases()[0]["prompt"], "output_kind": "audio", "top_k": 1, "max_steps": 2}).to_string();
    assert_eq!(request(addr, "POST", "/v1/generate", &[("authorization", "s3cret")], body.as_bytes()).status, 401);
    assert_eq!(request(addr, "POST", "/v1/generate", &[("authorization", "Bearer s3cret")], body.as_bytes()).status, 200);
    server.stop().unwrap();
}

#[test]
fn a_client_that_leaves_cancels_its_sequence_and_deadlines_hold() {
    let server = start(ServeOptions { timeout: Some(Duration::from_millis(1500)), ..Default::default() });
    let case = &cases()[2];
    let long = json!({"frames": case["prompt"], "output_kind": "text", "top_k": 5, "seed": 3, "max_steps": 1500});
    // Leave mid-generation: the sequence is cancelled and its caches freed.
    for streamed in [false, true] {
        let mut body = long.clone();
        body["stream"] = json!(streamed);
        let connection = http::send_and_leave_open(server.addr(), "/v1/generate", body.to_string().as_bytes());
        let t = Instant::now();
        while server.shared().active() == 0 {
            assert!(t.elapsed() < Duration::from_secs(20), "the request never started");
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(100));
        drop(connection);
        let t = Instant::now();
        while server.shared().active() > 0 || server.shared().kv_used() > 0 {
            assert!(t.elapsed() < Duration::from_secs(20), "the sequence kept running after its client left");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let metrics = request(server.addr(), "GET", "/metrics", &[], b"").text();
    assert!(metrics.contains("uniaudio_cancelled_total 2"), "{metrics}");
    // Both left before their answer ended: 499, the stream too, though it had sent its head.
    wait_for_metric(&server, "uniaudio_requests_total{endpoint=\"/v1/generate\",status=\"499\"} 2");
    // Past the deadline: 504, and the caches are free again.
    let r = post(&server, &long);
    assert_eq!(r.status, 504, "{}", r.text());
    assert_eq!(server.shared().kv_used(), 0);
    // An upload still arriving at the deadline gets 408, and gives its place back.
    use std::io::{Read, Write};
    let mut slow = std::net::TcpStream::connect(server.addr()).unwrap();
    let head = "POST /v1/audio/transcriptions HTTP/1.1\r\nhost: x\r\ncontent-type: multipart/form-data; boundary=zz\r\ncontent-length: 100000\r\n\r\n";
    slow.write_all(format!("{head}--zz\r\ncontent-disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\r\nRIFF").as_bytes()).unwrap();
    let t = Instant::now();
    let mut answer = String::new();
    let _ = slow.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 408") && answer.contains("deadline"), "{answer}");
    assert!(t.elapsed() < Duration::from_secs(10), "answered after {:?}", t.elapsed());
    assert_eq!(server.shared().in_flight.load(std::sync::atomic::Ordering::Relaxed), 0);
    server.stop().unwrap();
}

#[test]
fn load_many_clients_with_queue_overflow_and_graceful_shutdown() {
    let queue_limit = 6;
    let server = start(ServeOptions { queue_limit, engine: uniaudio_lm::EngineOptions { max_batch: 4, kv_budget: Some(48 << 20) }, ..Default::default() });
    // 64 requests over 16 clients: mixed audio and text, greedy and sampled.
    let mut work = Vec::new();
    for i in 0..64u64 {
        let case = &cases()[(i % 4) as usize];
        work.push(solo(case, if i % 2 == 0 { 1 } else { 30 }, 100 + i % 8, 4 + (i % 5) as usize));
    }
    let work = std::sync::Arc::new(work);
    let addr = server.addr();
    let results: Vec<(usize, u32)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..16)
            .map(|client| {
                let work = work.clone();
                s.spawn(move || {
                    let mut rejected = 0u32;
                    let mut done = Vec::new();
                    for i in (client..64).step_by(16) {
                        let (line, want) = &work[i];
                        loop {
                            let r = request(addr, "POST", "/v1/generate", &[], line.to_string().as_bytes());
                            match r.status {
                                200 => {
                                    assert_eq!(&r.json(), want, "request {i}");
                                    done.push(i);
                                    break;
                                }
                                429 => {
                                    assert_eq!(r.header("retry-after").as_deref(), Some("1"));
                                    rejected += 1;
                                    std::thread::sleep(Duration::from_millis(50));
                                }
                                other => panic!("request {i}: status {other}: {}", r.text()),
                            }
                        }
                    }
                    (done, rejected)
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| {
            let (done, rejected) = h.join().unwrap();
            done.into_iter().map(move |i| (i, rejected))
        }).collect()
    });
    let mut served: Vec<usize> = results.iter().map(|&(i, _)| i).collect();
    served.sort();
    assert_eq!(served, (0..64).collect::<Vec<_>>(), "every request answered exactly once");
    let metrics = request(addr, "GET", "/metrics", &[], b"").text();
    assert!(metrics.contains("endpoint=\"/v1/generate\",status=\"429\""), "the queue limit was reached: {metrics}");
    assert!(!metrics.contains("status=\"500\""), "{metrics}");
    assert_eq!(server.shared().kv_used(), 0);
    // Graceful shutdown: a request in flight when the stop comes still gets its answer.
    let (line, want) = work[1].clone();
    let client = std::thread::spawn(move || request(addr, "POST", "/v1/generate", &[], line.to_string().as_bytes()));
    let t = Instant::now();
    while server.shared().in_flight.load(std::sync::atomic::Ordering::Relaxed) == 0 && t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(1));
    }
    server.stop().unwrap();
    let r = client.join().unwrap();
    assert_eq!((r.status, r.json()), (200, want));
    assert!(std::net::TcpStream::connect(addr).is_err(), "still listening after stop");
}

#[test]
fn a_full_queue_refuses_uploads_before_reading_them() {
    let server = start(ServeOptions { queue_limit: 2, engine: uniaudio_lm::EngineOptions { max_batch: 1, kv_budget: None }, ..Default::default() });
    let case = &cases()[2];
    let long = json!({"frames": case["prompt"], "output_kind": "text", "top_k": 5, "seed": 3, "max_steps": 1500});
    // One request decoding, one waiting for room behind it: the queue is full.
    let running = http::send_and_leave_open(server.addr(), "/v1/generate", long.to_string().as_bytes());
    let waiting = http::send_and_leave_open(server.addr(), "/v1/generate", long.to_string().as_bytes());
    let t = Instant::now();
    while server.shared().active() == 0 || server.shared().in_flight.load(std::sync::atomic::Ordering::Relaxed) < 2 {
        assert!(t.elapsed() < Duration::from_secs(20), "the requests never started");
        std::thread::sleep(Duration::from_millis(5));
    }
    wait_for_metric(&server, "uniaudio_queue_depth 1");
    // Not audio at all: refused for the full queue before its body is read or decoded.
    let boundary = "xQx";
    let body = format!("--{boundary}\r\ncontent-disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\r\nnot audio\r\n--{boundary}--\r\n");
    let r = request(server.addr(), "POST", "/v1/audio/transcriptions", &[("content-type", &format!("multipart/form-data; boundary={boundary}"))], body.as_bytes());
    assert_eq!(r.status, 429, "{}", r.text());
    assert!(r.text().contains("--queue-limit"), "{}", r.text());
    drop((running, waiting));
    let t = Instant::now();
    while server.shared().in_flight.load(std::sync::atomic::Ordering::Relaxed) > 0 || server.shared().kv_used() > 0 {
        assert!(t.elapsed() < Duration::from_secs(20), "the requests kept running after their clients left");
        std::thread::sleep(Duration::from_millis(20));
    }
    // With room again, the same upload is read and refused for what it holds.
    let r = request(server.addr(), "POST", "/v1/audio/transcriptions", &[("content-type", &format!("multipart/form-data; boundary={boundary}"))], body.as_bytes());
    assert_eq!(r.status, 400, "{}", r.text());
    // Real audio is decoded and held until its answer (this model has no codec: 501).
    let mut wav = b"RIFF\x00\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00\xc0\x5d\x00\x00\x80\xbb\x00\x00\x02\x00\x10\x00data".to_vec();
    wav.extend_from_slice(&96_000u32.to_le_bytes());
    wav.extend((0..48_000).flat_map(|i: i32| (((i % 50) - 25) as i16 * 400).to_le_bytes()));
    let mut form = format!("--{boundary}\r\ncontent-disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\r\n").into_bytes();
    form.extend_from_slice(&wav);
    form.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let r = request(server.addr(), "POST", "/v1/audio/transcriptions", &[("content-type", &format!("multipart/form-data; boundary={boundary}"))], &form);
    assert_eq!(r.status, 501, "{}", r.text());
    wait_for_metric(&server, "uniaudio_queue_depth 0");
    wait_for_metric(&server, "uniaudio_uploaded_audio_seconds 0");
    server.stop().unwrap();
}

/// Upload bodies are held in memory against their own budget while they arrive and wait to
/// be decoded: with one slow upload holding most of it, a second is refused with 429; each
/// gives its bytes back when it ends, however it ends.
#[test]
fn upload_bodies_in_memory_stay_within_their_budget() {
    use std::io::Write;
    let server = start(ServeOptions { max_body_bytes: 1 << 20, max_upload_buffer_bytes: 1 << 20, ..Default::default() });
    let addr = server.addr();
    let held = || server.shared().upload_bytes_held();
    let part = |bytes: usize| {
        let mut body = b"--zz\r\ncontent-disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\r\n".to_vec();
        body.extend(std::iter::repeat_n(b'x', bytes));
        body
    };
    // A slow sender: 700 kB of its body sent, the rest never.
    let mut slow = std::net::TcpStream::connect(addr).unwrap();
    let head = "POST /v1/audio/transcriptions HTTP/1.1\r\nhost: x\r\ncontent-type: multipart/form-data; boundary=zz\r\ncontent-length: 900000\r\n\r\n";
    slow.write_all(head.as_bytes()).unwrap();
    slow.write_all(&part(700_000)).unwrap();
    let t = Instant::now();
    while held() < 650_000 {
        assert!(t.elapsed() < Duration::from_secs(20), "the slow upload's bytes were never counted ({} held)", held());
        std::thread::sleep(Duration::from_millis(5));
    }
    // A whole second upload of the same size does not fit beside it.
    let mut whole = part(700_000);
    whole.extend_from_slice(b"\r\n--zz--\r\n");
    let multipart = [("content-type", "multipart/form-data; boundary=zz")];
    let r = http::request_refused_early(addr, "POST", "/v1/audio/transcriptions", &multipart, &whole);
    assert_eq!(r.status, 429, "{}", r.text());
    assert!(r.text().contains("--max-upload-buffer-mib"), "{}", r.text());
    assert!(held() <= 700_000 + 1024, "the refused upload kept its bytes: {} held", held());
    // The slow sender leaves: its bytes are given back, and the same upload is now read
    // whole (and refused as not audio, its bytes given back too).
    drop(slow);
    let t = Instant::now();
    while held() > 0 || server.shared().in_flight.load(std::sync::atomic::Ordering::Relaxed) > 0 {
        assert!(t.elapsed() < Duration::from_secs(20), "{} bytes still held after the client left", held());
        std::thread::sleep(Duration::from_millis(5));
    }
    let r = request(addr, "POST", "/v1/audio/transcriptions", &multipart, &whole);
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("not audio"), "{}", r.text());
    assert_eq!(held(), 0);
    let metrics = request(addr, "GET", "/metrics", &[], b"").text();
    assert!(metrics.contains("uniaudio_upload_buffer_bytes 0"), "{metrics}");
    server.stop().unwrap();
    // A budget below the largest body could never receive one: refused at start.
    let paths = uniaudio::ModelPaths::resolve(Some(model_dir()), None, None).unwrap();
    let opts = ServeOptions { port: 0, max_body_bytes: 2 << 20, max_upload_buffer_bytes: 1 << 20, ..Default::default() };
    let e = uniaudio_server::start(paths, AnyBackend::Cpu(Cpu::new()), opts).err().expect("refused");
    assert!(e.to_string().contains("upload buffer budget"), "{e}");
}
