//! The C API: the checked-in header matches the code, the C example builds against the
//! header and the shared library and runs on a synthetic bundle, and bad calls return
//! errors instead of crashing.

use std::ffi::{CStr, CString};
use std::path::{Path, PathBuf};
use std::process::Command;

use uniaudio::bundle_presets::BundlePreset;
use uniaudio_c::*;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `UNIAUDIO_BLESS=1` rewrites include/uniaudio.h instead of comparing.
#[test]
fn header_is_current() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).unwrap();
    let mut generated = Vec::new();
    cbindgen::Builder::new().with_crate(crate_dir).with_config(config).generate().expect("cbindgen").write(&mut generated);
    let path = root().join("include/uniaudio.h");
    if std::env::var("UNIAUDIO_BLESS").is_ok_and(|v| v == "1") {
        std::fs::write(&path, &generated).unwrap();
    }
    let current = std::fs::read(&path).unwrap_or_default();
    assert!(current == generated, "include/uniaudio.h is stale: run UNIAUDIO_BLESS=1 cargo test -p uniaudio-capi --test c_api header_is_current");
}

fn bundle(tmp: &Path) -> PathBuf {
    let dir = tmp.join("bundle");
    uniaudio::synth_bundle::write_synthetic_bundle(&dir, BundlePreset::Tiny, None, &mut |_, _, _| {}).unwrap();
    dir
}

/// The shared library: beside the test binary (`target/<profile>/deps`, where a test build
/// leaves it) or in the profile directory (where `cargo build` puts it).
fn library_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap().to_path_buf();
    let has = |d: &Path| d.join("libuniaudio_c.so").is_file() || d.join("libuniaudio_c.dylib").is_file();
    [deps.clone(), deps.parent().unwrap().to_path_buf()]
        .into_iter()
        .find(|d| has(d))
        .unwrap_or_else(|| panic!("no libuniaudio_c beside {}", deps.display()))
}

/// Compiles `examples/c/{name}.c` against the header and the shared library into `dir`.
fn compile_example(name: &str, dir: &Path) -> PathBuf {
    let exe = dir.join(name);
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let source = root().join(format!("examples/c/{name}.c"));
    let o = Command::new(&cc)
        .args(["-std=c99", "-Wall", "-Werror"])
        .arg(&source)
        .arg("-I")
        .arg(root().join("include"))
        .arg("-L")
        .arg(library_dir())
        .arg("-luniaudio_c")
        .arg("-o")
        .arg(&exe)
        .output()
        .unwrap_or_else(|e| panic!("cannot run the C compiler `{cc}`: {e}"));
    assert!(o.status.success(), "compiling {}: {}", source.display(), String::from_utf8_lossy(&o.stderr));
    exe
}

#[test]
fn c_example_builds_and_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = bundle(tmp.path());
    let lib = library_dir();
    let exe = compile_example("tts", tmp.path());
    let wav = tmp.path().join("out.wav");
    let o = Command::new(&exe).arg(&dir).arg(&wav).env("LD_LIBRARY_PATH", &lib).output().unwrap();
    assert!(o.status.success(), "tts example: {}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    let reader = hound::WavReader::open(&wav).unwrap();
    assert_eq!(reader.spec().sample_rate, 24_000);
    assert!(reader.len() > 0);
    // A missing bundle: a message, exit 1.
    let o = Command::new(&exe).arg(tmp.path().join("nowhere")).arg(&wav).env("LD_LIBRARY_PATH", &lib).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("nowhere"), "{}", String::from_utf8_lossy(&o.stderr));
}

/// The `run` example: ASR's text streamed before its output object (which holds the same
/// text), a text-to-audio WAV, and Ctrl-C (SIGINT) stopping a long run through the abort
/// callback.
#[test]
fn c_run_example_streams_writes_and_stops_on_ctrl_c() {
    use std::io::Read;
    let tmp = tempfile::tempdir().unwrap();
    let dir = bundle(tmp.path());
    let lib = library_dir();
    let exe = compile_example("run", tmp.path());
    let speech = root().join("codec/tests/fixtures/encode/a_24k_f32_3s2.wav");
    let o = Command::new(&exe).arg(&dir).arg(r#"{"task": "ASR"}"#).arg(&speech).env("LD_LIBRARY_PATH", &lib).output().unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "run example: {stdout}{}", String::from_utf8_lossy(&o.stderr));
    let (streamed, object) = stdout.trim_end().rsplit_once('\n').expect("text, then the output object");
    let v: serde_json::Value = serde_json::from_str(object).unwrap();
    assert!(!streamed.is_empty());
    assert_eq!(v["text"].as_str(), Some(streamed), "{stdout}");
    let wav = tmp.path().join("rain.wav");
    let request = r#"{"task": "TTA", "caption": "Rain on a roof.", "seed": 3, "max_steps": 80, "codec_steps": 2}"#;
    let o = Command::new(&exe).arg(&dir).arg(request).arg("").arg(&wav).env("LD_LIBRARY_PATH", &lib).output().unwrap();
    assert!(o.status.success(), "run example: {}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("decoding 2/2"), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(hound::WavReader::open(&wav).unwrap().len() > 0);
    // Ctrl-C once the codec is decoding a 1000-step run: exit 130, and no WAV.
    let long = r#"{"task": "TTA", "caption": "Rain on a roof.", "seed": 3, "max_steps": 80, "codec_steps": 1000}"#;
    let stopped = tmp.path().join("stopped.wav");
    let mut child = Command::new(&exe).arg(&dir).arg(long).arg("").arg(&stopped).env("LD_LIBRARY_PATH", &lib).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    while !String::from_utf8_lossy(&seen).contains("decoding") {
        let n = stderr.read(&mut buf).unwrap();
        assert!(n > 0, "the run ended before decoding: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    let t = std::time::Instant::now();
    assert!(Command::new("kill").arg("-INT").arg(child.id().to_string()).status().unwrap().success());
    stderr.read_to_end(&mut seen).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{}", String::from_utf8_lossy(&seen));
    assert!(String::from_utf8_lossy(&seen).contains("stopped: stopped by the abort callback"), "{}", String::from_utf8_lossy(&seen));
    assert!(t.elapsed() < std::time::Duration::from_secs(20), "stopped {:?} after Ctrl-C", t.elapsed());
    assert!(!stopped.exists());
}

/// The bundle at `dir` loaded on the CPU through the C API.
unsafe fn load_cpu(dir: &Path) -> *mut UniaudioModel {
    let mut model = std::ptr::null_mut();
    let path = CString::new(dir.to_str().unwrap()).unwrap();
    let cpu = CString::new("cpu").unwrap();
    assert_eq!(uniaudio_model_load(path.as_ptr(), cpu.as_ptr(), &mut model), UniaudioStatus::Ok, "{}", last_error());
    model
}

fn last_error() -> String {
    unsafe { CStr::from_ptr(uniaudio_last_error()) }.to_string_lossy().into_owned()
}

#[test]
fn bad_calls_return_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = bundle(tmp.path());
    unsafe {
        let mut model = std::ptr::null_mut();
        assert_eq!(uniaudio_model_load(std::ptr::null(), std::ptr::null(), &mut model), UniaudioStatus::NullArgument);
        let path = CString::new(dir.to_str().unwrap()).unwrap();
        let bad = CString::new("tpu").unwrap();
        assert_eq!(uniaudio_model_load(path.as_ptr(), bad.as_ptr(), &mut model), UniaudioStatus::InvalidInput);
        assert!(last_error().contains("tpu"), "{}", last_error());
        let cpu = CString::new("cpu").unwrap();
        assert_eq!(uniaudio_model_load(path.as_ptr(), cpu.as_ptr(), &mut model), UniaudioStatus::Ok);
        // Transcription from samples; an empty input is an error and the model lives on.
        let wav = root().join("codec/tests/fixtures/encode/a_24k_f32_3s2.wav");
        let mut audio = UniaudioAudio { samples: std::ptr::null_mut(), len: 0, sample_rate: 0 };
        let wav_c = CString::new(wav.to_str().unwrap()).unwrap();
        assert_eq!(uniaudio_audio_read(wav_c.as_ptr(), &mut audio), UniaudioStatus::Ok);
        let mut text = std::ptr::null_mut();
        assert_eq!(uniaudio_transcribe(model, audio.samples, audio.len, audio.sample_rate, &mut text), UniaudioStatus::Ok);
        let first = CStr::from_ptr(text).to_string_lossy().into_owned();
        assert!(!first.is_empty());
        uniaudio_string_free(text);
        let empty = [0f32; 0];
        assert_eq!(uniaudio_transcribe(model, empty.as_ptr(), 0, 16_000, &mut text), UniaudioStatus::InvalidInput);
        assert!(!last_error().is_empty());
        // A garbage rate is refused before any resampling kernel is built for it.
        for rate in [0, 999, 999_999_937] {
            assert_eq!(uniaudio_transcribe(model, audio.samples, audio.len, rate, &mut text), UniaudioStatus::InvalidInput);
            assert!(last_error().contains("sample rate"), "{}", last_error());
        }
        assert_eq!(uniaudio_transcribe(model, audio.samples, audio.len, audio.sample_rate, &mut text), UniaudioStatus::Ok);
        assert_eq!(CStr::from_ptr(text).to_string_lossy(), first);
        uniaudio_string_free(text);
        uniaudio_audio_free(&mut audio);
        assert!(audio.samples.is_null() && audio.len == 0);
        uniaudio_audio_free(&mut audio); // twice is harmless
        assert_eq!(uniaudio_tts(model, std::ptr::null(), std::ptr::null(), &mut audio), UniaudioStatus::NullArgument);
        // A negative or NaN temperature is refused, not taken as "the task's default".
        let hello = CString::new("Hello.").unwrap();
        for temperature in [-1.0, f32::NAN] {
            let options = UniaudioOptions { temperature, ..Default::default() };
            assert_eq!(uniaudio_tts(model, hello.as_ptr(), &options, &mut audio), UniaudioStatus::InvalidInput);
            assert!(last_error().contains("temperature"), "{}", last_error());
        }
        uniaudio_model_free(model);
        uniaudio_model_free(std::ptr::null_mut());
    }
}

unsafe extern "C" fn collect(user: *mut std::ffi::c_void, event: *const UniaudioEvent) -> i32 {
    let seen = &mut *(user as *mut Vec<UniaudioEvent>);
    seen.push(*event);
    0
}

unsafe extern "C" fn stop_at_third(user: *mut std::ffi::c_void, _event: *const UniaudioEvent) -> i32 {
    let n = &mut *(user as *mut usize);
    *n += 1;
    i32::from(*n == 3)
}

/// Calls the library with the running call's model from the callback: every call must be
/// refused (and the free ignored) while the generation goes on.
unsafe extern "C" fn reenter(user: *mut std::ffi::c_void, _event: *const UniaudioEvent) -> i32 {
    let (model, statuses) = &mut *(user as *mut (*mut UniaudioModel, Vec<UniaudioStatus>));
    let req = CString::new(r#"{"frames": [{"text": 1}], "output_kind": "text"}"#).unwrap();
    let mut out = std::ptr::null_mut();
    statuses.push(uniaudio_generate(*model, req.as_ptr(), None, std::ptr::null_mut(), &mut out));
    let samples = [0f32; 160];
    statuses.push(uniaudio_transcribe(*model, samples.as_ptr(), samples.len(), 16_000, &mut out));
    uniaudio_model_free(*model);
    0
}

fn json(p: *mut std::ffi::c_char) -> serde_json::Value {
    let v = serde_json::from_str(&unsafe { CStr::from_ptr(p) }.to_string_lossy()).unwrap();
    unsafe { uniaudio_string_free(p) };
    v
}

/// One request streamed through a callback: the events are the output's frames and ids;
/// a batch of requests gives each request's solo output (and an error object for a bad
/// one); a callback can stop a generation and the model lives on.
#[test]
fn generation_streams_through_a_callback_and_batches() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = bundle(tmp.path());
    let requests = [
        r#"{"frames": [{"text": 128000}, {"text": 40}, {"text": 41}, {"text": 128001}], "output_kind": "audio", "top_k": 20, "seed": 1, "max_steps": 12}"#,
        r#"{"frames": [{"text": 128000}, {"text": 40}, {"text": 41}, {"text": 128001}], "output_kind": "text", "top_k": 20, "seed": 2, "max_steps": 12}"#,
    ];
    unsafe {
        let model = load_cpu(&dir);
        let mut solo = Vec::new();
        for r in requests {
            let req = CString::new(r).unwrap();
            let mut events: Vec<UniaudioEvent> = Vec::new();
            let mut out = std::ptr::null_mut();
            let status = uniaudio_generate(model, req.as_ptr(), Some(collect), &mut events as *mut _ as *mut _, &mut out);
            assert_eq!(status, UniaudioStatus::Ok, "{}", last_error());
            let v = json(out);
            let frames: Vec<[u32; 8]> = events.iter().filter(|e| e.kind == UniaudioEventKind::Frame).map(|e| e.codes).collect();
            let ids: Vec<u32> = events.iter().filter(|e| e.kind == UniaudioEventKind::Text).map(|e| e.text_id).collect();
            if v.get("frames").is_some() {
                assert_eq!(serde_json::to_value(&frames).unwrap(), v["frames"]);
                assert!(!frames.is_empty() && ids.is_empty());
            } else {
                assert_eq!(serde_json::to_value(&ids).unwrap(), v["text_ids"]);
                assert!(!ids.is_empty() && frames.is_empty());
            }
            solo.push(v);
        }
        // Batched, with a malformed request between them; blank lines are skipped.
        let jsonl = CString::new(format!("{}\n\n{{\"frames\": 7}}\n{}\n", requests[0], requests[1])).unwrap();
        let mut out = std::ptr::null_mut();
        assert_eq!(uniaudio_generate_batch(model, jsonl.as_ptr(), 2, &mut out), UniaudioStatus::Ok, "{}", last_error());
        let text = CStr::from_ptr(out).to_string_lossy().into_owned();
        uniaudio_string_free(out);
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0], solo[0]);
        assert!(lines[1]["error"].as_str().unwrap().contains("frames"), "{}", lines[1]);
        assert_eq!(lines[2], solo[1]);
        // The callback stops the run; the next call works.
        let req = CString::new(requests[0]).unwrap();
        let mut calls = 0usize;
        let mut out = std::ptr::null_mut();
        assert_eq!(uniaudio_generate(model, req.as_ptr(), Some(stop_at_third), &mut calls as *mut _ as *mut _, &mut out), UniaudioStatus::Cancelled);
        assert!(out.is_null() && calls == 3);
        assert_eq!(uniaudio_generate(model, req.as_ptr(), None, std::ptr::null_mut(), &mut out), UniaudioStatus::Ok);
        assert_eq!(json(out), solo[0]);
        // Calls from the callback on the running model are refused; the run completes.
        let mut reentry: (*mut UniaudioModel, Vec<UniaudioStatus>) = (model, Vec::new());
        assert_eq!(uniaudio_generate(model, req.as_ptr(), Some(reenter), &mut reentry as *mut _ as *mut _, &mut out), UniaudioStatus::Ok, "{}", last_error());
        assert_eq!(json(out), solo[0]);
        assert!(!reentry.1.is_empty() && reentry.1.iter().all(|&s| s == UniaudioStatus::InvalidInput), "{:?}", reentry.1);
        // Bad requests and null pointers.
        let bad = CString::new(r#"{"frames": [{"text": 1}]}"#).unwrap();
        assert_eq!(uniaudio_generate(model, bad.as_ptr(), None, std::ptr::null_mut(), &mut out), UniaudioStatus::InvalidInput);
        assert!(last_error().contains("output_kind"), "{}", last_error());
        assert_eq!(uniaudio_generate(model, std::ptr::null(), None, std::ptr::null_mut(), &mut out), UniaudioStatus::NullArgument);
        assert_eq!(uniaudio_generate_batch(std::ptr::null_mut(), jsonl.as_ptr(), 2, &mut out), UniaudioStatus::NullArgument);
        uniaudio_model_free(model);
    }
}

/// An abort callback that answers "stop" on its `fire_at`-th question (0: never), counting
/// the questions.
struct AbortAt {
    asked: std::cell::Cell<usize>,
    fire_at: std::cell::Cell<usize>,
}

impl AbortAt {
    fn new(fire_at: usize) -> Self {
        AbortAt { asked: std::cell::Cell::new(0), fire_at: std::cell::Cell::new(fire_at) }
    }

    /// Counts afresh, firing at question `fire_at` (0: never).
    fn reset(&self, fire_at: usize) {
        self.asked.set(0);
        self.fire_at.set(fire_at);
    }
}

unsafe extern "C" fn abort_at(user: *mut std::ffi::c_void) -> i32 {
    // Shared, not unique: the test reads and resets the counts through the same reference.
    let a = &*(user as *const AbortAt);
    a.asked.set(a.asked.get() + 1);
    i32::from(a.asked.get() == a.fire_at.get())
}

unsafe extern "C" fn abort_on_flag(user: *mut std::ffi::c_void) -> i32 {
    let (asked, flag) = &*(user as *const (std::sync::atomic::AtomicUsize, std::sync::atomic::AtomicBool));
    asked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    i32::from(flag.load(std::sync::atomic::Ordering::SeqCst))
}

unsafe extern "C" fn set_abort_inside(user: *mut std::ffi::c_void, _event: *const UniaudioEvent) -> i32 {
    let (model, statuses) = &mut *(user as *mut (*mut UniaudioModel, Vec<UniaudioStatus>));
    statuses.push(uniaudio_model_set_abort(*model, None, std::ptr::null_mut()));
    0
}

/// A call on a model giving (status, its output as text, events reported).
type CallOnModel<'a> = dyn Fn(*mut UniaudioModel) -> (UniaudioStatus, String, usize) + 'a;

/// The abort callback stops every kind of call when it says so, and only then: a call
/// ends at the question that fired (none is asked after it) with `_CANCELLED`, from the
/// first question to the last; firing after the last changes nothing, and neither does a
/// removed callback. Another thread can stop a call through it.
#[test]
fn abort_callback_stops_every_call() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = bundle(tmp.path());
    let request = r#"{"frames": [{"text": 128000}, {"text": 40}, {"text": 41}, {"text": 128001}], "output_kind": "audio", "top_k": 20, "seed": 1, "max_steps": 12}"#;
    let hello = CString::new("Hello.").unwrap();
    let req = CString::new(request).unwrap();
    let jsonl = CString::new(format!("{request}\n{request}\n")).unwrap();
    let wav = root().join("codec/tests/fixtures/encode/a_24k_f32_3s2.wav");
    let wav_c = CString::new(wav.to_str().unwrap()).unwrap();
    unsafe {
        let model = load_cpu(&dir);
        assert_eq!(uniaudio_model_set_abort(std::ptr::null_mut(), Some(abort_at), std::ptr::null_mut()), UniaudioStatus::NullArgument);
        let mut audio = UniaudioAudio { samples: std::ptr::null_mut(), len: 0, sample_rate: 0 };
        assert_eq!(uniaudio_audio_read(wav_c.as_ptr(), &mut audio), UniaudioStatus::Ok);
        let options = UniaudioOptions { seed: 3, max_steps: 80, codec_steps: 3, ..Default::default() };
        let tts = |model: *mut UniaudioModel| {
            let mut out = UniaudioAudio { samples: std::ptr::null_mut(), len: 0, sample_rate: 0 };
            let status = uniaudio_tts(model, hello.as_ptr(), &options, &mut out);
            let samples = if out.len > 0 { format!("{:?}", std::slice::from_raw_parts(out.samples, out.len)) } else { String::new() };
            uniaudio_audio_free(&mut out);
            (status, samples, 0)
        };
        let transcribe = |model: *mut UniaudioModel| {
            let mut text = std::ptr::null_mut();
            let status = uniaudio_transcribe(model, audio.samples, audio.len, audio.sample_rate, &mut text);
            let out = if text.is_null() { String::new() } else { CStr::from_ptr(text).to_string_lossy().into_owned() };
            uniaudio_string_free(text);
            (status, out, 0)
        };
        let generate = |model: *mut UniaudioModel| {
            let mut events: Vec<UniaudioEvent> = Vec::new();
            let mut out = std::ptr::null_mut();
            let status = uniaudio_generate(model, req.as_ptr(), Some(collect), &mut events as *mut _ as *mut _, &mut out);
            let text = if out.is_null() { String::new() } else { json(out).to_string() };
            (status, text, events.len())
        };
        let batch = |model: *mut UniaudioModel| {
            let mut out = std::ptr::null_mut();
            let status = uniaudio_generate_batch(model, jsonl.as_ptr(), 2, &mut out);
            let text = if out.is_null() { String::new() } else { CStr::from_ptr(out).to_string_lossy().into_owned() };
            uniaudio_string_free(out);
            (status, text, 0)
        };
        let calls: [(&str, &CallOnModel); 4] = [("tts", &tts), ("transcribe", &transcribe), ("generate", &generate), ("generate_batch", &batch)];
        for (name, call) in calls {
            let (status, whole, _) = call(model);
            assert_eq!(status, UniaudioStatus::Ok, "{name}: {}", last_error());
            assert!(!whole.is_empty());
            // Counted with a callback that never fires: nothing changes.
            let abort = AbortAt::new(0);
            assert_eq!(uniaudio_model_set_abort(model, Some(abort_at), &abort as *const _ as *mut _), UniaudioStatus::Ok);
            assert_eq!(call(model).1, whole, "{name}");
            let questions = abort.asked.get();
            assert!(questions >= 3, "{name}: asked {questions} times");
            for fire_at in [1, 2, questions] {
                abort.reset(fire_at);
                let (status, out, events) = call(model);
                assert_eq!((status, abort.asked.get(), out.as_str()), (UniaudioStatus::Cancelled, fire_at, ""), "{name}: stop at question {fire_at} of {questions}");
                assert!(last_error().contains("abort callback"), "{}", last_error());
                if name == "generate" {
                    // Asked at the start, then before each step; each step reports a frame.
                    assert_eq!(events, fire_at.saturating_sub(2), "{name}: stop at question {fire_at}");
                }
            }
            abort.reset(questions + 1);
            assert_eq!(call(model).1, whole, "{name}");
            assert_eq!(abort.asked.get(), questions, "{name}");
            assert_eq!(uniaudio_model_set_abort(model, None, std::ptr::null_mut()), UniaudioStatus::Ok);
            assert_eq!(call(model).1, whole, "{name}");
        }
        uniaudio_audio_free(&mut audio);

        // Fired from another thread's flag while a long run goes on.
        let shared = (std::sync::atomic::AtomicUsize::new(0), std::sync::atomic::AtomicBool::new(false));
        assert_eq!(uniaudio_model_set_abort(model, Some(abort_on_flag), &shared as *const _ as *mut _), UniaudioStatus::Ok);
        let long = UniaudioOptions { seed: 3, max_steps: 1000, codec_steps: 500, ..Default::default() };
        let done = std::sync::atomic::AtomicBool::new(false);
        let status = std::thread::scope(|s| {
            s.spawn(|| {
                // Until the run has asked 3 times (or ended, so that a failing run cannot hang the test).
                while shared.0.load(std::sync::atomic::Ordering::SeqCst) < 3 && !done.load(std::sync::atomic::Ordering::SeqCst) {
                    std::thread::yield_now();
                }
                shared.1.store(true, std::sync::atomic::Ordering::SeqCst);
            });
            let mut out = UniaudioAudio { samples: std::ptr::null_mut(), len: 0, sample_rate: 0 };
            let status = uniaudio_tts(model, hello.as_ptr(), &long, &mut out);
            uniaudio_audio_free(&mut out);
            done.store(true, std::sync::atomic::Ordering::SeqCst);
            status
        });
        assert_eq!(status, UniaudioStatus::Cancelled, "{}", last_error());
        // Not while a call runs (here: from its event callback).
        assert_eq!(uniaudio_model_set_abort(model, None, std::ptr::null_mut()), UniaudioStatus::Ok);
        let mut inside: (*mut UniaudioModel, Vec<UniaudioStatus>) = (model, Vec::new());
        let mut out = std::ptr::null_mut();
        assert_eq!(uniaudio_generate(model, req.as_ptr(), Some(set_abort_inside), &mut inside as *mut _ as *mut _, &mut out), UniaudioStatus::Ok);
        uniaudio_string_free(out);
        assert!(!inside.1.is_empty() && inside.1.iter().all(|&s| s == UniaudioStatus::InvalidInput), "{:?}", inside.1);
        uniaudio_model_free(model);
    }
}

/// What a run reported: progress, and text pieces.
#[derive(Default)]
struct Reported {
    progress: Vec<(UniaudioStage, usize, usize)>,
    text: Vec<String>,
}

unsafe extern "C" fn count_progress(user: *mut std::ffi::c_void, stage: UniaudioStage, done: usize, total: usize) {
    (*(user as *mut Reported)).progress.push((stage, done, total));
}

unsafe extern "C" fn collect_text(user: *mut std::ffi::c_void, piece: *const std::ffi::c_char) {
    (*(user as *mut Reported)).text.push(CStr::from_ptr(piece).to_string_lossy().into_owned());
}

/// Any task from a JSON request: TTS and ASR give what their own calls give, a task
/// without a call of its own (text to audio, audio question answering) runs with progress
/// reported, and bad requests are refused naming what is wrong, outputs untouched.
#[test]
fn any_task_runs_from_a_json_request() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = bundle(tmp.path());
    let wav = root().join("codec/tests/fixtures/encode/a_24k_f32_3s2.wav");
    let wav_c = CString::new(wav.to_str().unwrap()).unwrap();
    let empty = || UniaudioAudio { samples: std::ptr::null_mut(), len: 0, sample_rate: 0 };
    unsafe {
        let model = load_cpu(&dir);
        let run = |request: &str, input: Option<&UniaudioAudio>, reported: Option<&mut Reported>| {
            let req = CString::new(request).unwrap();
            let mut audio = empty();
            let mut out = std::ptr::null_mut();
            let events = reported.map(|r| UniaudioRunEvents { user: r as *mut _ as *mut _, on_progress: Some(count_progress), on_text: Some(collect_text) });
            let status = uniaudio_run(model, req.as_ptr(), input.map_or(std::ptr::null(), |a| a as *const _), events.as_ref().map_or(std::ptr::null(), |e| e as *const _), &mut audio, &mut out);
            let samples = if audio.len > 0 { std::slice::from_raw_parts(audio.samples, audio.len).to_vec() } else { Vec::new() };
            uniaudio_audio_free(&mut audio);
            let v = if out.is_null() { serde_json::Value::Null } else { json(out) };
            (status, samples, v)
        };
        // TTS as uniaudio_tts gives it.
        let hello = CString::new("Hello.").unwrap();
        let options = UniaudioOptions { seed: 3, max_steps: 80, codec_steps: 2, ..Default::default() };
        let mut want = empty();
        assert_eq!(uniaudio_tts(model, hello.as_ptr(), &options, &mut want), UniaudioStatus::Ok);
        let (status, samples, v) = run(r#"{"task": "tts", "text": "Hello.", "seed": 3, "max_steps": 80, "codec_steps": 2}"#, None, None);
        assert_eq!(status, UniaudioStatus::Ok, "{}", last_error());
        assert_eq!(samples, std::slice::from_raw_parts(want.samples, want.len));
        assert_eq!((v["task"].as_str(), v["seed"].as_u64(), v["max_steps"].as_u64()), (Some("TTS"), Some(3), Some(80)), "{v}");
        uniaudio_audio_free(&mut want);
        // ASR as uniaudio_transcribe gives it, from the same samples.
        let mut input = empty();
        assert_eq!(uniaudio_audio_read(wav_c.as_ptr(), &mut input), UniaudioStatus::Ok);
        let mut text = std::ptr::null_mut();
        assert_eq!(uniaudio_transcribe(model, input.samples, input.len, input.sample_rate, &mut text), UniaudioStatus::Ok);
        let transcript = CStr::from_ptr(text).to_string_lossy().into_owned();
        uniaudio_string_free(text);
        let mut reported = Reported::default();
        let (status, samples, v) = run(r#"{"task": "ASR"}"#, Some(&input), Some(&mut reported));
        assert_eq!(status, UniaudioStatus::Ok, "{}", last_error());
        assert!(samples.is_empty());
        // Streamed as it was generated: the pieces joined are the text.
        assert!(!reported.text.is_empty());
        assert_eq!(reported.text.concat(), transcript);
        // A text task empties the out_audio it is given.
        let asr = CString::new(r#"{"task": "ASR", "max_steps": 2}"#).unwrap();
        let mut stale = UniaudioAudio { samples: std::ptr::NonNull::dangling().as_ptr(), len: 7, sample_rate: 1 };
        let mut out = std::ptr::null_mut();
        assert_eq!(uniaudio_run(model, asr.as_ptr(), &input, std::ptr::null(), &mut stale, &mut out), UniaudioStatus::Ok);
        assert!(stale.samples.is_null() && stale.len == 0, "{:p} {}", stale.samples, stale.len);
        uniaudio_string_free(out);
        assert_eq!(v["text"].as_str(), Some(transcript.as_str()), "{v}");
        // Tasks without a call of their own, with progress.
        let mut reported = Reported::default();
        let (status, samples, v) = run(r#"{"task": "tta", "caption": "Rain on a roof.", "seed": 3, "max_steps": 80, "codec_steps": 2}"#, None, Some(&mut reported));
        let progress = &reported.progress;
        assert_eq!(status, UniaudioStatus::Ok, "{}", last_error());
        assert!(!samples.is_empty() && v["task"] == "TTA", "{v}");
        let steps = v["steps"].as_u64().unwrap() as usize;
        let generated: Vec<usize> = progress.iter().filter(|p| p.0 == UniaudioStage::Generate).map(|p| p.1).collect();
        assert_eq!(generated, (1..=steps).collect::<Vec<_>>(), "{progress:?}");
        let decoded: Vec<&(UniaudioStage, usize, usize)> = progress.iter().filter(|p| p.0 == UniaudioStage::Decode).collect();
        assert!(decoded.last().is_some_and(|&&(_, done, total)| done == total && total >= 2), "{progress:?}");
        let mut reported = Reported::default();
        let (status, _, v) = run(r#"{"task": "audio_understanding", "question": "What is this?", "max_steps": 5}"#, Some(&input), Some(&mut reported));
        assert_eq!(status, UniaudioStatus::Ok, "{}", last_error());
        assert!(v["text"].is_string() && reported.progress.iter().any(|p| p.0 == UniaudioStage::Encode), "{v} {:?}", reported.progress);
        // Refused, naming what is wrong; nothing written.
        for (request, input, want) in [
            (r#"{"task": "asr"}"#, None, "needs input audio"),
            (r#"{"task": "tts", "text": "Hi."}"#, Some(&input), "takes no input audio"),
            (r#"{"task": "tts", "text": "Hi.", "sede": 3}"#, None, "unknown field `sede`"),
            (r#"{"task": "tta"}"#, None, "caption"),
            (r#"{"task": "tts", "text": "Hi.", "temperature": -1}"#, None, "temperature"),
            (r#"{"task": "tts", "text": "Hi.", "codec_steps": 100000}"#, None, "`codec_steps` must be 1..=1000"),
        ] {
            let (status, samples, v) = run(request, input, None);
            assert_eq!(status, UniaudioStatus::InvalidInput, "{request}");
            assert!(last_error().contains(want), "{request}: {}", last_error());
            assert!(samples.is_empty() && v.is_null());
        }
        let req = CString::new(r#"{"task": "tts", "text": "Hi."}"#).unwrap();
        let mut out = std::ptr::null_mut();
        assert_eq!(uniaudio_run(model, req.as_ptr(), std::ptr::null(), std::ptr::null(), std::ptr::null_mut(), &mut out), UniaudioStatus::InvalidInput);
        assert!(last_error().contains("out_audio") && out.is_null(), "{}", last_error());
        let mut audio = empty();
        assert_eq!(uniaudio_run(model, std::ptr::null(), std::ptr::null(), std::ptr::null(), &mut audio, &mut out), UniaudioStatus::NullArgument);
        let asr = CString::new(r#"{"task": "asr"}"#).unwrap();
        let hollow = UniaudioAudio { samples: std::ptr::null_mut(), len: 10, sample_rate: 16_000 };
        assert_eq!(uniaudio_run(model, asr.as_ptr(), &hollow, std::ptr::null(), &mut audio, &mut out), UniaudioStatus::NullArgument);
        let bad_rate = UniaudioAudio { sample_rate: 7, ..input };
        assert_eq!(uniaudio_run(model, asr.as_ptr(), &bad_rate, std::ptr::null(), &mut audio, &mut out), UniaudioStatus::InvalidInput);
        assert!(last_error().contains("sample rate") && out.is_null(), "{}", last_error());
        uniaudio_audio_free(&mut input);
        uniaudio_model_free(model);
    }
}

/// The codec alone: `uniaudio_encode` gives the library's tokens for the same samples,
/// `uniaudio_decode` the library's audio for the same frames, steps and seed; bad frames,
/// step counts and pointers are refused, and the abort callback stops both.
#[test]
fn codec_calls_equal_the_library() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = bundle(tmp.path());
    let wav = root().join("codec/tests/fixtures/encode/a_24k_f32_3s2.wav");
    let audio = uniaudio::Audio::read(&wav).unwrap();
    let mut library = uniaudio::Model::load(&dir, uniaudio::LoadOptions { backend: uniaudio::BackendKind::Cpu, ..Default::default() }).unwrap();
    let want = library.encode(&audio).unwrap();
    let want_audio = library.decode(&want, 2, 7).unwrap();
    unsafe {
        let model = load_cpu(&dir);
        let input = UniaudioAudio { samples: audio.samples.as_ptr() as *mut f32, len: audio.samples.len(), sample_rate: audio.sample_rate };
        let mut tokens = UniaudioTokens { reasoning: std::ptr::null_mut(), reasoning_len: 0, reconstruction: std::ptr::null_mut(), reconstruction_len: 0 };
        assert_eq!(uniaudio_encode(model, &input, &mut tokens), UniaudioStatus::Ok, "{}", last_error());
        let frames = |p: *mut u32, n: usize| std::slice::from_raw_parts(p, n * 8).chunks_exact(8).map(|f| <[u32; 8]>::try_from(f).unwrap()).collect::<Vec<_>>();
        assert_eq!(frames(tokens.reasoning, tokens.reasoning_len), want.reasoning);
        assert_eq!(frames(tokens.reconstruction, tokens.reconstruction_len), want.reconstruction);
        assert!(!want.reconstruction.is_empty());
        let mut out = UniaudioAudio { samples: std::ptr::null_mut(), len: 0, sample_rate: 0 };
        assert_eq!(uniaudio_decode(model, tokens.reconstruction, tokens.reconstruction_len, 2, 7, &mut out), UniaudioStatus::Ok, "{}", last_error());
        assert_eq!((std::slice::from_raw_parts(out.samples, out.len), out.sample_rate), (&want_audio.samples[..], want_audio.sample_rate));
        uniaudio_audio_free(&mut out);
        // Refused: step counts outside 1..=1000, codes outside the codebook, null frames.
        for steps in [0, 1001] {
            assert_eq!(uniaudio_decode(model, tokens.reconstruction, tokens.reconstruction_len, steps, 7, &mut out), UniaudioStatus::InvalidInput);
            assert!(last_error().contains("steps"), "{}", last_error());
        }
        let bad = [u32::MAX; 16];
        assert_eq!(uniaudio_decode(model, bad.as_ptr(), 2, 2, 7, &mut out), UniaudioStatus::InvalidInput, "{}", last_error());
        assert_eq!(uniaudio_decode(model, std::ptr::null(), 3, 2, 7, &mut out), UniaudioStatus::NullArgument);
        assert_eq!(uniaudio_decode(model, std::ptr::null(), 0, 2, 7, &mut out), UniaudioStatus::InvalidInput, "no frames: {}", last_error());
        assert!(out.samples.is_null());
        // The abort callback stops both at their first question.
        let abort = AbortAt::new(1);
        assert_eq!(uniaudio_model_set_abort(model, Some(abort_at), &abort as *const _ as *mut _), UniaudioStatus::Ok);
        let mut again = UniaudioTokens { reasoning: std::ptr::null_mut(), reasoning_len: 0, reconstruction: std::ptr::null_mut(), reconstruction_len: 0 };
        assert_eq!(uniaudio_encode(model, &input, &mut again), UniaudioStatus::Cancelled);
        assert!(last_error().contains("abort callback"), "{}", last_error());
        assert!(again.reasoning.is_null() && again.reconstruction.is_null());
        abort.reset(1);
        assert_eq!(uniaudio_decode(model, tokens.reconstruction, tokens.reconstruction_len, 2, 7, &mut out), UniaudioStatus::Cancelled);
        assert_eq!(abort.asked.get(), 1);
        assert_eq!(uniaudio_model_set_abort(model, None, std::ptr::null_mut()), UniaudioStatus::Ok);
        uniaudio_tokens_free(&mut tokens);
        assert!(tokens.reasoning.is_null() && tokens.reconstruction_len == 0);
        uniaudio_tokens_free(&mut tokens); // twice is harmless
        uniaudio_tokens_free(std::ptr::null_mut());
        uniaudio_model_free(model);
    }
}
