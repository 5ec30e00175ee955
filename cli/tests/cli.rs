//! The `uniaudio` command line contract: JSON output of `generate` on the reference
//! fixture, and clear errors for bad models, prompts and options.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use serde_json::Value;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_uniaudio"))
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../lm/tests/fixtures/public").join(name)
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("run uniaudio")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The fixture model, synthesized once through `uniaudio synth` (bf16: exact for these weights).
fn model_dir() -> &'static Path {
    static DIR: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, dir) = DIR.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("model");
        let o = run(bin().args(["synth", "--dtype", "bf16", "--config"]).arg(fixture("config.json")).arg("--out").arg(&dir));
        assert!(o.status.success(), "synth failed: {}", stderr(&o));
        (tmp, dir)
    });
    dir
}

fn write_prompt(dir: &Path, frames: &Value) -> PathBuf {
    let path = dir.join(format!("prompt-{}.json", rand_suffix()));
    std::fs::write(&path, serde_json::json!({ "frames": frames }).to_string()).unwrap();
    path
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

fn cases() -> Vec<Value> {
    serde_json::from_str::<Value>(&std::fs::read_to_string(fixture("cases.json")).unwrap()).unwrap().as_array().unwrap().clone()
}

#[test]
fn generate_prints_the_reference_outputs() {
    let tmp = tempfile::tempdir().unwrap();
    for case in cases() {
        let name = case["name"].as_str().unwrap();
        if name.starts_with("long") {
            continue; // covered by the library parity test; keep this one quick
        }
        let kind = if case["task_kind"] == "audio_out" { "audio" } else { "text" };
        let prompt = write_prompt(tmp.path(), &case["prompt"]);
        let o = run(bin()
            .args(["generate", "--model"])
            .arg(model_dir())
            .arg("--prompt")
            .arg(&prompt)
            .args(["--output-kind", kind, "--top-k", "1", "--backend", "cpu", "--max-steps"])
            .arg(case["max_steps"].to_string()));
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        let got: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{name}: stdout is not one JSON object: {e}"));
        let exp = &case["expected"];
        let keys: &[&str] = if kind == "audio" { &["frames", "reasoning", "reconstruction", "stopped_by"] } else { &["text_ids", "stopped_by"] };
        for k in keys {
            assert_eq!(got[k], exp[k], "{name}: {k}");
        }
    }
}

/// q8 and q4 models (their projections and audio heads in blocks) synthesize smaller than
/// bf16 and generate audio frames through the CLI in both precisions.
#[test]
fn quantized_models_generate_audio_through_the_cli() {
    let tmp = tempfile::tempdir().unwrap();
    let case = cases().into_iter().find(|c| c["name"] == "tts_short").unwrap();
    let prompt = write_prompt(tmp.path(), &case["prompt"]);
    let config: Value = serde_json::from_str(&std::fs::read_to_string(fixture("config.json")).unwrap()).unwrap();
    let audio_vocab = config["audio_reason_card"].as_u64().unwrap() + config["audio_semantic_card"].as_u64().unwrap();
    let size = |dir: &Path| std::fs::metadata(dir.join("model.safetensors")).unwrap().len();
    let mut previous = size(model_dir());
    for dtype in ["q8", "q4"] {
        let dir = tmp.path().join(dtype);
        let o = run(bin().args(["synth", "--dtype", dtype, "--config"]).arg(fixture("config.json")).arg("--out").arg(&dir));
        assert!(o.status.success(), "synth {dtype}: {}", stderr(&o));
        assert!(size(&dir) < previous, "{dtype}: {} bytes, not below {previous}", size(&dir));
        previous = size(&dir);
        for precision in ["exact", "fast"] {
            let o = run(bin()
                .args(["generate", "--model"])
                .arg(&dir)
                .arg("--prompt")
                .arg(&prompt)
                .args(["--output-kind", "audio", "--top-k", "1", "--backend", "cpu", "--max-steps", "6", "--precision", precision]));
            assert!(o.status.success(), "{dtype} {precision}: {}", stderr(&o));
            let got: Value = serde_json::from_slice(&o.stdout).unwrap();
            let frames = got["frames"].as_array().unwrap();
            assert!(!frames.is_empty() && frames.len() <= 6, "{dtype} {precision}: {got}");
            for frame in frames {
                let codes = frame.as_array().unwrap();
                assert!(codes.len() == 8 && codes.iter().all(|c| c.as_u64().unwrap() < audio_vocab), "{dtype} {precision}: {frame}");
            }
        }
    }
}

/// `generate --requests`: one output line per request, in order, each the single-prompt
/// object; bad lines get an error line and the rest still run.
#[test]
fn requests_file_gives_one_line_per_request() {
    let tmp = tempfile::tempdir().unwrap();
    let picked: Vec<Value> = cases().into_iter().filter(|c| !c["name"].as_str().unwrap().starts_with("long")).collect();
    let mut lines: Vec<String> = Vec::new();
    for case in &picked {
        let kind = if case["task_kind"] == "audio_out" { "audio" } else { "text" };
        lines.push(serde_json::json!({"frames": case["prompt"], "output_kind": kind, "top_k": 1, "max_steps": case["max_steps"]}).to_string());
    }
    lines.insert(1, "{not json".into());
    lines.insert(2, serde_json::json!({"frames": [{"text": 999_999_999u64}], "output_kind": "text"}).to_string());
    lines.push(serde_json::json!({"frames": picked[0]["prompt"], "output_kind": "speech"}).to_string());
    // Sampled with a seed: equal to the single-prompt command with the same settings.
    lines.push(serde_json::json!({"frames": picked[0]["prompt"], "output_kind": "audio", "top_k": 50, "temperature": 0.9, "seed": 7, "max_steps": 5}).to_string());
    let reqs = tmp.path().join("reqs.jsonl");
    std::fs::write(&reqs, lines.join("\n")).unwrap();
    let o = run(bin().args(["generate", "--backend", "cpu", "--model"]).arg(model_dir()).arg("--requests").arg(&reqs));
    assert!(o.status.success(), "{}", stderr(&o));
    let out: Vec<Value> = String::from_utf8_lossy(&o.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(out.len(), lines.len());
    // Narrower batches and a tight KV budget change the schedule, never an output.
    let narrow = run(bin().args(["generate", "--backend", "cpu", "--max-batch", "2", "--kv-budget", "8M", "--model"]).arg(model_dir()).arg("--requests").arg(&reqs));
    assert!(narrow.status.success(), "{}", stderr(&narrow));
    assert_eq!(String::from_utf8_lossy(&narrow.stdout), String::from_utf8_lossy(&o.stdout));
    let bad = run(bin().args(["generate", "--backend", "cpu", "--kv-budget", "lots", "--model"]).arg(model_dir()).arg("--requests").arg(&reqs));
    assert!(!bad.status.success() && stderr(&bad).contains("kv-budget"), "{}", stderr(&bad));
    assert!(out[1]["error"].as_str().unwrap().starts_with("line 2: not a JSON object"), "{}", out[1]);
    assert!(out[2]["error"].as_str().unwrap().contains("line 3"), "{}", out[2]);
    assert!(out[lines.len() - 2]["error"].as_str().unwrap().contains("output_kind"), "{}", out[lines.len() - 2]);
    let answers: Vec<&Value> = out.iter().enumerate().filter(|(i, _)| ![1, 2].contains(i) && *i < lines.len() - 2).map(|(_, v)| v).collect();
    for (case, got) in picked.iter().zip(answers) {
        let exp = &case["expected"];
        let keys: &[&str] = if case["task_kind"] == "audio_out" { &["frames", "reasoning", "reconstruction", "stopped_by"] } else { &["text_ids", "stopped_by"] };
        for k in keys {
            assert_eq!(got[k], exp[k], "{}: {k}", case["name"]);
        }
    }
    let prompt = write_prompt(tmp.path(), &picked[0]["prompt"]);
    let solo = run(bin()
        .args(["generate", "--backend", "cpu", "--model"])
        .arg(model_dir())
        .arg("--prompt")
        .arg(&prompt)
        .args(["--output-kind", "audio", "--top-k", "50", "--temperature", "0.9", "--seed", "7", "--max-steps", "5"]));
    assert_eq!(out[lines.len() - 1], serde_json::from_slice::<Value>(&solo.stdout).unwrap());
}

#[test]
fn sampling_is_seeded_and_cfg_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let case = &cases()[0];
    let prompt = write_prompt(tmp.path(), &case["prompt"]);
    let gen = |seed: &str, extra: &[&str]| {
        let o = run(bin()
            .args(["generate", "--model"])
            .arg(model_dir())
            .arg("--prompt")
            .arg(&prompt)
            .args(["--output-kind", "audio", "--top-k", "50", "--temperature", "0.9", "--max-steps", "6", "--seed", seed])
            .args(extra));
        assert!(o.status.success(), "{}", stderr(&o));
        serde_json::from_slice::<Value>(&o.stdout).unwrap()["frames"].clone()
    };
    let a = gen("1", &[]);
    assert_eq!(a, gen("1", &[]), "same seed, same frames");
    assert_ne!(a, gen("2", &[]), "another seed, other frames");
    let guided = gen("1", &["--cfg-scale", "3.0"]);
    assert_eq!(guided.as_array().unwrap().len(), 6);
    assert_ne!(a, guided, "guidance changes the distribution");
}

fn generate_err(model: &Path, frames: &Value, extra: &[&str]) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let prompt = write_prompt(tmp.path(), frames);
    let o = run(bin().args(["generate", "--model"]).arg(model).arg("--prompt").arg(&prompt).args(["--output-kind", "text"]).args(extra));
    assert!(!o.status.success(), "expected failure, got {}", String::from_utf8_lossy(&o.stdout));
    assert!(o.stdout.is_empty(), "nothing on stdout on failure");
    stderr(&o)
}

#[test]
fn malformed_frames_name_the_position() {
    let m = model_dir();
    let err = generate_err(m, &serde_json::json!([{"text": 128000}, {"audio": [1, 2, 3]}]), &[]);
    assert!(err.contains("frame 1") && err.contains("3 codes"), "{err}");
    let err = generate_err(m, &serde_json::json!([{"text": 128000}, {"text": 5}, {"audio": [1, 2, 3, 4, 5, 6, 7, 99999]}]), &[]);
    assert!(err.contains("frame 2") && err.contains("codebook 7") && err.contains("99999"), "{err}");
    let err = generate_err(m, &serde_json::json!([{"text": 128256}]), &[]);
    assert!(err.contains("frame 0") && err.contains("128256"), "{err}");
    let err = generate_err(m, &serde_json::json!([]), &[]);
    assert!(err.contains("no frames"), "{err}");
}

#[test]
fn over_long_requests_fail_before_any_work() {
    let frames: Vec<Value> = (0..2000).map(|_| serde_json::json!({"text": 100})).collect();
    let err = generate_err(model_dir(), &Value::Array(frames), &["--max-steps", "100"]);
    assert!(err.contains("max_seq_len 2048") && err.contains("2099"), "{err}");
}

#[test]
fn bad_configs_and_mismatched_weights_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let frames = serde_json::json!([{"text": 128000}]);
    // Missing model directory.
    let err = generate_err(&tmp.path().join("absent"), &frames, &[]);
    assert!(err.contains("absent"), "{err}");

    // A config with a missing field.
    let bad = tmp.path().join("bad-config");
    std::fs::create_dir(&bad).unwrap();
    let mut config: Value = serde_json::from_str(&std::fs::read_to_string(fixture("config.json")).unwrap()).unwrap();
    config.as_object_mut().unwrap().remove("reason_eos");
    std::fs::write(bad.join("config.json"), config.to_string()).unwrap();
    std::fs::copy(model_dir().join("model.safetensors"), bad.join("model.safetensors")).unwrap();
    let err = generate_err(&bad, &frames, &[]);
    assert!(err.contains("config.json") && err.contains("reason_eos"), "{err}");

    // Weights that disagree with the config's sizes.
    let mismatched = tmp.path().join("mismatched");
    std::fs::create_dir(&mismatched).unwrap();
    let mut config: Value = serde_json::from_str(&std::fs::read_to_string(fixture("config.json")).unwrap()).unwrap();
    config["stacks"]["backbone"]["intermediate_size"] = serde_json::json!(400);
    std::fs::write(mismatched.join("config.json"), config.to_string()).unwrap();
    std::fs::copy(model_dir().join("model.safetensors"), mismatched.join("model.safetensors")).unwrap();
    let err = generate_err(&mismatched, &frames, &[]);
    assert!(err.contains("backbone.transformer.h.0.mlp.fc_1.weight") && err.contains("[400, 128]") && err.contains("[344, 128]"), "{err}");

    // Inconsistent values.
    config["stacks"]["backbone"]["intermediate_size"] = serde_json::json!(344);
    config["stacks"]["backbone"]["n_query_groups"] = serde_json::json!(3);
    std::fs::write(mismatched.join("config.json"), config.to_string()).unwrap();
    let err = generate_err(&mismatched, &frames, &[]);
    assert!(err.contains("n_query_groups"), "{err}");
}

#[test]
fn synth_never_overwrites_existing_files() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("occupied");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("keep.txt"), "mine").unwrap();
    let o = run(bin().args(["synth", "--config"]).arg(fixture("config.json")).arg("--out").arg(&out));
    assert!(!o.status.success());
    assert!(stderr(&o).contains("not empty"), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(out.join("keep.txt")).unwrap(), "mine");
}

#[test]
fn bad_options_are_rejected() {
    let frames = serde_json::json!([{"text": 128000}]);
    let err = generate_err(model_dir(), &frames, &["--temperature", "0"]);
    assert!(err.contains("temperature"), "{err}");
    let err = generate_err(model_dir(), &frames, &["--max-steps", "0"]);
    assert!(err.contains("max_steps"), "{err}");
    let err = generate_err(model_dir(), &frames, &["--backend", "metal"]);
    assert!(err.contains("metal"), "{err}");
}

fn checkpoint_fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../lm/tests/fixtures/checkpoint").join(name)
}

fn tokenizer_json() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-data/llama3.2-tokenizer.json");
    assert!(p.is_file(), "{} is missing: run scripts/fetch-test-data (scripts/test does)", p.display());
    p
}

#[test]
fn convert_then_prompt_then_generate() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model");
    let o = run(bin()
        .args(["convert", "--checkpoint"])
        .arg(checkpoint_fixture("with_optimizer.checkpoint"))
        .arg("--config")
        .arg(checkpoint_fixture("config.json"))
        .arg("--llm-config")
        .arg(checkpoint_fixture("llm_config.yaml"))
        .arg("--tokenizer")
        .arg(tokenizer_json())
        .args(["--dtype", "bf16", "--out"])
        .arg(&model));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(model.join("tokenizer.json").is_file() && model.join("config.json").is_file());

    // The fixture's text vocabulary is cut to 512 rows: a text id above that must be refused,
    // so build an audio-input prompt whose text comes from the tokenizer (ASR).
    let tokens = tmp.path().join("tokens.json");
    std::fs::write(&tokens, r#"{"reasoning": [[1,2,3,4,5,6,7,8]], "reconstruction": [[0,1,2,3,4,5,6,7]]}"#).unwrap();
    let frames = tmp.path().join("frames.json");
    let o = run(bin().args(["prompt", "--task", "asr", "--model"]).arg(&model).arg("--audio-tokens").arg(&tokens).arg("--out").arg(&frames));
    assert!(o.status.success(), "{}", stderr(&o));
    let built: Value = serde_json::from_str(&std::fs::read_to_string(&frames).unwrap()).unwrap();
    assert_eq!(built["output_kind"], "text");
    let n = built["frames"].as_array().unwrap().len();
    assert_eq!(built["frames"][n - 1]["audio"], serde_json::json!([56u32; 8].to_vec()), "semantic_eos + rc closes the prompt");
    // The instruction's text ids exceed this tiny model's vocabulary: generate names the frame.
    let o = run(bin().args(["generate", "--model"]).arg(&model).arg("--prompt").arg(&frames).args(["--output-kind", "text", "--max-steps", "2"]));
    assert!(!o.status.success());
    assert!(stderr(&o).contains("frame 0") && stderr(&o).contains("text vocabulary of 512"), "{}", stderr(&o));

    // With a full text vocabulary (the public fixture model) the same path generates.
    let tts = tmp.path().join("tts.json");
    let o = run(bin()
        .args(["prompt", "--task", "TTS", "--text", "Hello world", "--config"])
        .arg(fixture("config.json"))
        .arg("--tokenizer")
        .arg(tokenizer_json())
        .arg("--out")
        .arg(&tts));
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(bin().args(["generate", "--model"]).arg(model_dir()).arg("--prompt").arg(&tts).args(["--output-kind", "audio", "--max-steps", "3", "--top-k", "1"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let out: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(out["frames"].as_array().unwrap().len(), 3);
}

#[test]
fn convert_refuses_hostile_files_and_bad_arguments() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let o = run(bin().args(["convert", "--checkpoint"]).arg(checkpoint_fixture("hostile.checkpoint")).arg("--config").arg(checkpoint_fixture("config.json")).arg("--out").arg(&out));
    assert!(!o.status.success());
    assert!(stderr(&o).contains("posix.system"), "{}", stderr(&o));
    assert!(!out.exists());
    let o = run(bin().args(["convert", "--checkpoint"]).arg(checkpoint_fixture("f32.checkpoint")).arg("--llm-config").arg(checkpoint_fixture("llm_config.yaml")).arg("--out").arg(&out));
    assert!(!o.status.success());
    assert!(stderr(&o).contains("custom") && stderr(&o).contains("--config"), "{}", stderr(&o));
    let o = run(bin().args(["prompt", "--task", "karaoke", "--config"]).arg(checkpoint_fixture("config.json")));
    assert!(!o.status.success() && stderr(&o).contains("karaoke"), "{}", stderr(&o));
}

#[test]
fn wgpu_backend_generates_what_the_cpu_does() {
    if let Err(e) = uniaudio_runtime::Wgpu::new() {
        assert!(std::env::var("UNIAUDIO_REQUIRE_WGPU").map_or(true, |v| v != "1"), "wgpu required: {e}");
        println!("SKIPPED wgpu CLI test: {e}");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let case = &cases()[2]; // asr_short: text output
    let prompt = write_prompt(tmp.path(), &case["prompt"]);
    let gen = |backend: &str| {
        let o = run(bin()
            .args(["generate", "--model"])
            .arg(model_dir())
            .arg("--prompt")
            .arg(&prompt)
            .args(["--output-kind", "text", "--max-steps", "6", "--top-k", "20", "--seed", "5", "--backend", backend]));
        assert!(o.status.success(), "{backend}: {}", stderr(&o));
        serde_json::from_slice::<Value>(&o.stdout).unwrap()
    };
    assert_eq!(gen("wgpu"), gen("cpu"), "same seed, same samples on both backends");
}

/// `uniaudio serve`: answers /v1/generate with exactly what `generate` prints, logs each
/// answer with its request id, and on SIGTERM finishes and exits 0.
#[cfg(unix)]
#[test]
fn serve_answers_like_generate_and_stops_on_sigterm() {
    use std::io::{BufRead, BufReader, Read, Write};
    let mut child = bin()
        .args(["serve", "--backend", "cpu", "--port", "0", "--model"])
        .arg(model_dir())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("serve printed its address").unwrap();
        if let Some(rest) = line.split("http://").nth(1) {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    // Read on: a full pipe would block the server's log.
    let log = std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<String>>());
    let call = |method: &str, path: &str, body: &str| -> (u16, String) {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        write!(s, "{method} {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\nx-request-id: cli-{method}\r\ncontent-length: {}\r\n\r\n{body}", body.len()).unwrap();
        let mut raw = String::new();
        s.read_to_string(&mut raw).unwrap();
        assert!(raw.split("\r\n\r\n").next().unwrap().to_lowercase().contains(&format!("x-request-id: cli-{}", method.to_lowercase())), "{raw}");
        let status = raw.split_whitespace().nth(1).unwrap().parse().unwrap();
        (status, raw.split("\r\n\r\n").nth(1).unwrap_or_default().to_string())
    };
    let t = std::time::Instant::now();
    while call("GET", "/health", "").0 != 200 {
        assert!(t.elapsed().as_secs() < 60, "never ready");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let case = &cases()[3];
    let line = serde_json::json!({"frames": case["prompt"], "output_kind": "text", "top_k": 1, "max_steps": case["max_steps"]});
    let (status, body) = call("POST", "/v1/generate", &line.to_string());
    assert_eq!(status, 200, "{body}");
    let tmp = tempfile::tempdir().unwrap();
    let prompt = write_prompt(tmp.path(), &case["prompt"]);
    let solo = run(bin().args(["generate", "--backend", "cpu", "--model"]).arg(model_dir()).arg("--prompt").arg(&prompt).args(["--output-kind", "text", "--top-k", "1", "--max-steps"]).arg(case["max_steps"].to_string()));
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap(), serde_json::from_slice::<Value>(&solo.stdout).unwrap());
    // SAFETY: kill with a valid pid and signal number.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let status = child.wait().unwrap();
    assert!(status.success(), "exit status {status}");
    let log = log.join().unwrap();
    assert!(log.iter().any(|l| l.contains(" POST /v1/generate 200 ") && l.ends_with("ms id=cli-POST")), "{log:?}");
    assert!(log.iter().any(|l| l.contains(" GET /health 200 ") && l.ends_with("id=cli-GET")), "{log:?}");
    assert!(log.iter().any(|l| l.contains("stopped")), "{log:?}");
}

/// `uniaudio tune` times the CPU's (and wgpu's) candidates, prints the table and writes
/// the per-device cache; `UNIAUDIO_TUNE=off` refuses, a bad value is named.
#[test]
fn tune_writes_the_device_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let o = run(bin().args(["tune", "--backend", "cpu", "--reps", "1"]).env("UNIAUDIO_CACHE_DIR", tmp.path()).env_remove("UNIAUDIO_TUNE"));
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("cpu.gemm.pass_bytes") && out.contains("k>2048") && out.contains("saved"), "{out}");
    let files: Vec<_> = std::fs::read_dir(tmp.path().join("tune")).unwrap().collect();
    assert_eq!(files.len(), 1);
    // The wgpu GEMV family on the adapter (lavapipe in CI) for the small preset's shapes,
    // in its own cache file (the GEMM family's probes take minutes on lavapipe; the
    // runtime's tests time it on small shapes).
    let o = run(bin().args(["tune", "--backend", "wgpu", "--reps", "1", "--family", "wgpu.gemv.rows", "--preset", "small"]).env("UNIAUDIO_CACHE_DIR", tmp.path()).env_remove("UNIAUDIO_TUNE"));
    if o.status.success() {
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(out.contains("wgpu.gemv.rows") && out.contains("gate_up") && out.contains("of limit") && !out.contains("wgpu.gemm.tile"), "{out}");
        assert!(out.contains("probe 1x1024x4096 bf16 (preset small)"), "{out}");
        assert_eq!(std::fs::read_dir(tmp.path().join("tune")).unwrap().count(), 2);
    } else {
        assert!(!std::env::var("UNIAUDIO_REQUIRE_WGPU").is_ok_and(|v| v == "1"), "wgpu tuning failed: {}", stderr(&o));
        println!("SKIPPED wgpu tuning: {}", stderr(&o));
    }
    // The bench says what is in use: the table by default, the defaults with off or force.
    for (mode, says) in [("on", "tuned table"), ("force", "UNIAUDIO_TUNE=force"), ("off", "UNIAUDIO_TUNE=off")] {
        let o = run(bin().args(["bench", "--backend", "cpu", "--preset", "none", "--codec", "none", "--encoder", "none"]).env("UNIAUDIO_CACHE_DIR", tmp.path()).env("UNIAUDIO_TUNE", mode));
        let first = String::from_utf8_lossy(&o.stdout).lines().next().unwrap_or_default().to_string();
        assert!(o.status.success() && first.starts_with("tuning ") && first.contains(says), "{mode}: {first} {}", stderr(&o));
    }
    // A report path that cannot be written is refused before the run.
    let o = run(bin().args(["bench", "--backend", "cpu", "--preset", "none", "--codec", "none", "--encoder", "none", "--json"]).arg(tmp.path()).env("UNIAUDIO_CACHE_DIR", tmp.path()));
    assert!(!o.status.success() && stderr(&o).contains("is a directory") && !String::from_utf8_lossy(&o.stdout).contains("read bandwidth"), "{}", stderr(&o));
    let o = run(bin().args(["bench", "--backend", "cpu", "--preset", "none", "--codec", "none", "--encoder", "none", "--json"]).arg(tmp.path().join("no/such/r.json")).env("UNIAUDIO_CACHE_DIR", tmp.path()));
    assert!(!o.status.success() && stderr(&o).contains("does not exist"), "{}", stderr(&o));
    let o = run(bin().args(["tune", "--reps", "1"]).env("UNIAUDIO_CACHE_DIR", tmp.path()).env("UNIAUDIO_TUNE", "off"));
    assert!(!o.status.success() && stderr(&o).contains("UNIAUDIO_TUNE=off"), "{}", stderr(&o));
    let o = run(bin().args(["tune", "--reps", "1"]).env("UNIAUDIO_CACHE_DIR", tmp.path()).env("UNIAUDIO_TUNE", "sometimes"));
    assert!(!o.status.success() && stderr(&o).contains("sometimes"), "{}", stderr(&o));
    let o = run(bin().args(["tune", "--reps", "1", "--family", "cpu.gemm.tiles"]).env("UNIAUDIO_CACHE_DIR", tmp.path()).env_remove("UNIAUDIO_TUNE"));
    assert!(!o.status.success() && stderr(&o).contains("--family") && stderr(&o).contains("cpu.gemm.pass_bytes"), "{}", stderr(&o));
    let o = run(bin().args(["tune", "--reps", "1", "--preset", "huge"]).env("UNIAUDIO_CACHE_DIR", tmp.path()).env_remove("UNIAUDIO_TUNE"));
    assert!(!o.status.success() && stderr(&o).contains("--preset"), "{}", stderr(&o));
}
