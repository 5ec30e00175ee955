//! The shipped fixture model, regenerated from its init block into a temporary directory.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use serde_json::Value;
use uniaudio_lm::synth::InitSpec;
use uniaudio_lm::synth_dir::write_synthetic_model;
use uniaudio_lm::{Frame, LmConfig};
use uniaudio_runtime::{DType, Precision, Wgpu, WgpuOptions};

pub fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/public")
}

pub fn read_json(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture_dir().join(name)).unwrap()).unwrap()
}

pub fn frames(v: &Value) -> Vec<Frame> {
    uniaudio_lm::frame::parse_frames(&v.to_string()).unwrap()
}

pub struct Fixture {
    pub _dir: tempfile::TempDir,
    pub model_dir: PathBuf,
    pub config: LmConfig,
}

/// The fixture model, with `max_seq_len` replaced where given (weights do not depend on it).
pub fn synthesize_with(max_seq_len: Option<usize>) -> Fixture {
    synthesize_as(max_seq_len, DType::F32)
}

/// The fixture model stored as `dtype` (q8_0: 8-bit projections, see `stored_dtype`).
pub fn synthesize_as(max_seq_len: Option<usize>, dtype: DType) -> Fixture {
    let text = std::fs::read_to_string(fixture_dir().join("config.json")).unwrap();
    let mut config = LmConfig::from_json(&text).unwrap();
    if let Some(n) = max_seq_len {
        config.max_seq_len = n;
    }
    let init = InitSpec::from_config_json(&text).unwrap().expect("fixture has an init block");
    // The initialiser's own test vectors.
    let raw: Value = serde_json::from_str(&text).unwrap();
    for check in raw["init_check"].as_array().unwrap() {
        let name = check["tensor"].as_str().unwrap();
        let got = init.generate(name, 8);
        let want: Vec<f32> = check["first8"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
        assert_eq!(got, want, "init_check {name}");
    }
    let dir = tempfile::tempdir().unwrap();
    let model_dir = dir.path().join("model");
    write_synthetic_model(&config, &init, dtype, &model_dir, &mut |_, _| {}).unwrap();
    Fixture { _dir: dir, model_dir, config }
}

pub fn synthesize() -> Fixture {
    synthesize_with(None)
}

/// The wgpu backend with the adapter's features on and with them forced off (the
/// UNIAUDIO_WGPU_NO_* switches), or a loud skip (a failure where CI promised an adapter).
pub fn wgpu_variants_or_skip() -> Vec<Wgpu> {
    let variants = [
        WgpuOptions {
            max_binding: None,
            subgroups: true,
            shader_f16: true,
            precision: Precision::Exact,
        },
        WgpuOptions {
            max_binding: None,
            subgroups: false,
            shader_f16: false,
            precision: Precision::Exact,
        },
    ];
    open_or_skip(&variants)
}

/// The adapter with its optional features on, or nothing (skipped as above).
pub fn wgpu_or_skip() -> Option<Wgpu> {
    wgpu_at_or_skip(Precision::Exact)
}

/// The adapter with its optional features on, at `precision`, or nothing (skipped as above).
pub fn wgpu_at_or_skip(precision: Precision) -> Option<Wgpu> {
    open_or_skip(&[WgpuOptions {
        max_binding: None,
        subgroups: true,
        shader_f16: true,
        precision,
    }])
    .pop()
}

fn open_or_skip(variants: &[WgpuOptions]) -> Vec<Wgpu> {
    match variants
        .iter()
        .cloned()
        .map(Wgpu::with_options)
        .collect::<Result<Vec<_>, _>>()
    {
        Ok(gpus) => gpus,
        Err(e) if std::env::var("UNIAUDIO_REQUIRE_WGPU").is_ok_and(|v| v == "1") => panic!("wgpu required but unavailable: {e}"),
        Err(e) => {
            println!("SKIPPED wgpu: {e}");
            Vec::new()
        }
    }
}
