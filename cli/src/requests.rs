//! `uniaudio generate --requests REQS.jsonl`: many requests through one loaded model, one
//! output object per input line, in input order. A malformed or failing line gets
//! `{"error": "line N: ..."}` and the others still run. Requests currently run one after
//! another on the shared model.

use std::io::{BufRead, Write};

use anyhow::{Context, Result};
use serde_json::{json, Value};
use uniaudio_lm::{frame::parse_frames, generate, Frame, GenerateOptions, OutputKind, UniAudioLm};
use uniaudio_runtime::Backend;

use crate::backend::Opened;
use crate::generate::{output_json, GenerateArgs};

/// A line longer than this is refused without parsing (a prompt is at most 2048 frames).
const MAX_LINE_BYTES: usize = 4 << 20;

pub fn run(args: &GenerateArgs) -> Result<()> {
    let path = args.requests.as_ref().expect("--requests given");
    let file = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut lines = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("{}: line {}", path.display(), i + 1))?;
        if !line.trim().is_empty() {
            lines.push((i + 1, line));
        }
    }
    if args.max_batch == 0 {
        anyhow::bail!("--max-batch must be at least 1");
    }
    let opened = args.backend().open()?;
    eprintln!("backend: {}", opened.describe());
    match &opened {
        Opened::Cpu(b) => run_on(b, args, &lines),
        Opened::Wgpu(b) => run_on(b, args, &lines),
        Opened::Cuda(b) => run_on(b, args, &lines),
    }
}

fn run_on<B: Backend>(b: &B, args: &GenerateArgs, lines: &[(usize, String)]) -> Result<()> {
    let lm = args.load(b)?;
    let mut stdout = std::io::stdout().lock();
    let (mut ok, mut failed) = (0, 0);
    for (n, line) in lines {
        let out = match parse_request(line, args) {
            Err(e) => json!({"error": format!("line {n}: {e}")}),
            Ok((frames, opts)) => match run_one(&lm, b, &frames, &opts) {
                Ok(v) => v,
                Err(e) => json!({"error": format!("line {n}: {e:#}")}),
            },
        };
        if out.get("error").is_some() {
            failed += 1;
        } else {
            ok += 1;
        }
        writeln!(stdout, "{out}")?;
        stdout.flush()?;
    }
    eprintln!("{ok} requests done, {failed} failed");
    Ok(())
}

/// One request, with a panic in it reported as that request's error.
fn run_one<B: Backend>(lm: &UniAudioLm<B>, b: &B, frames: &[Frame], opts: &GenerateOptions) -> Result<Value> {
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| generate(lm, b, frames, opts, &mut |_, _| {})));
    match result {
        Ok(out) => Ok(output_json(opts.kind, &out?)),
        Err(_) => anyhow::bail!("internal error while generating (the other requests are unaffected)"),
    }
}

fn parse_request(line: &str, args: &GenerateArgs) -> Result<(Vec<Frame>, GenerateOptions)> {
    if line.len() > MAX_LINE_BYTES {
        anyhow::bail!("{} bytes is longer than the {MAX_LINE_BYTES}-byte limit", line.len());
    }
    let v: Value = serde_json::from_str(line).context("not a JSON object")?;
    let obj = v.as_object().context("expected a JSON object")?;
    let frames = parse_frames(&json!({"frames": obj.get("frames").context("missing `frames`")?}).to_string())?;
    let (top_k, temperature, seed, max_steps, cfg_scale) = args.defaults();
    let kind = match obj.get("output_kind").map(|k| k.as_str()) {
        None => args.kind().context("missing `output_kind` (and no --output-kind)")?,
        Some(Some("audio")) => OutputKind::Audio,
        Some(Some("text")) => OutputKind::Text,
        Some(_) => anyhow::bail!("`output_kind` must be \"audio\" or \"text\""),
    };
    let uint = |name: &str, default: u64| -> Result<u64> {
        match obj.get(name) {
            None => Ok(default),
            Some(x) => x.as_u64().with_context(|| format!("`{name}` must be a non-negative integer")),
        }
    };
    let float = |name: &str| -> Result<Option<f64>> {
        match obj.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(x) => x.as_f64().map(Some).with_context(|| format!("`{name}` must be a number")),
        }
    };
    let opts = GenerateOptions {
        kind,
        top_k: uint("top_k", top_k as u64)? as usize,
        temperature: float("temperature")?.map_or(temperature, |t| t as f32),
        seed: uint("seed", seed)?,
        max_steps: uint("max_steps", max_steps as u64)? as usize,
        cfg_scale: if obj.contains_key("cfg_scale") { float("cfg_scale")?.map(|c| c as f32) } else { cfg_scale },
    };
    Ok((frames, opts))
}
