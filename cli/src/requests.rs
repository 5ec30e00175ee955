//! `uniaudio generate --requests REQS.jsonl`: every request through one continuously
//! batched engine, one output object per input line, in input order (printed as soon as
//! it and every line before it are done). A malformed or failing line gets
//! `{"error": "line N: ..."}` and the others still run.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::time::Instant;

use anyhow::{Context, Result};
use serde_json::{json, Value};
use uniaudio::generate_json::{self, output_json, RequestDefaults};
use uniaudio_lm::{Engine, EngineOptions, Frame, GenerateOptions, OutputKind};
use uniaudio_runtime::Backend;

use crate::backend::Opened;
use crate::generate::GenerateArgs;

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
    let mut engine = Engine::new(&lm, b, &EngineOptions { max_batch: args.max_batch, kv_budget: args.kv_budget })?;
    eprintln!("batching up to {} rows, KV budget {:.1} MiB", engine.max_batch(), engine.kv().budget() as f64 / (1 << 20) as f64);
    let mut results: Vec<Option<Value>> = vec![None; lines.len()];
    let mut line_of = HashMap::new();
    let mut kinds = HashMap::new();
    for (i, (n, line)) in lines.iter().enumerate() {
        match parse_request(line, args).and_then(|(frames, opts)| Ok((engine.submit(&frames, &opts)?, opts.kind))) {
            Ok((id, kind)) => {
                line_of.insert(id, i);
                kinds.insert(id, kind);
            }
            Err(e) => results[i] = Some(json!({"error": format!("line {n}: {e:#}")})),
        }
    }
    let mut stdout = std::io::stdout().lock();
    let (mut printed, mut failed) = (0, 0);
    let start = Instant::now();
    loop {
        // Print every finished line whose predecessors are printed.
        while printed < results.len() {
            let Some(out) = results[printed].take() else { break };
            failed += out.get("error").is_some() as usize;
            writeln!(stdout, "{out}")?;
            stdout.flush()?;
            printed += 1;
        }
        if engine.is_idle() {
            break;
        }
        if let Err(e) = engine.step() {
            eprintln!("a batched step failed: {e} (its requests are reported as errors)");
        }
        for f in engine.take_finished() {
            let i = line_of[&f.id];
            results[i] = Some(match f.result {
                Ok(out) => output_json(kinds[&f.id], &out),
                Err(e) => json!({"error": format!("line {}: {e}", lines[i].0)}),
            });
        }
    }
    let peak = engine.kv().peak() as f64 / (1 << 20) as f64;
    eprintln!("{} requests done, {failed} failed, in {:.1} s ({} steps, KV peak {peak:.1} MiB)", printed - failed, start.elapsed().as_secs_f64(), engine.steps());
    Ok(())
}

/// A byte count with an optional K/M/G (binary) suffix.
pub fn parse_bytes(s: &str) -> std::result::Result<usize, String> {
    let t = s.trim();
    let (digits, scale) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let scale = match c.to_ascii_uppercase() {
                'K' => 1usize << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                _ => return Err(format!("`{s}`: unknown suffix {c} (use K, M or G)")),
            };
            (&t[..i], scale)
        }
        _ => (t, 1),
    };
    let n: f64 = digits.trim().parse().map_err(|_| format!("`{s}` is not a byte count (e.g. 512M, 8G)"))?;
    if !(n.is_finite() && n > 0.0) {
        return Err(format!("`{s}`: the budget must be positive"));
    }
    Ok((n * scale as f64) as usize)
}

fn parse_request(line: &str, args: &GenerateArgs) -> Result<(Vec<Frame>, GenerateOptions)> {
    let (top_k, temperature, seed, max_steps, cfg_scale) = args.defaults();
    let defaults = RequestDefaults { kind: args.kind(), options: GenerateOptions { kind: OutputKind::Audio, top_k, temperature, seed, max_steps, cfg_scale } };
    generate_json::parse_request(line, &defaults)
}
