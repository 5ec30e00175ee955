//! Parity with the reference PyTorch implementation on the shipped fixture: weights are
//! regenerated from the fixture's init block, written as safetensors, loaded through the
//! normal path, and every case must decode exactly as the reference did (greedy), with
//! hidden-state and logit probes within relative L2 1e-4.

mod common;

use serde_json::Value;
use uniaudio_lm::{generate, Frame, GenerateOptions, OutputKind, StopReason, UniAudioLm};
use uniaudio_runtime::{ops, Backend, Cpu, Cuda, CudaOptions, Precision};

use common::{frames, read_json, synthesize, wgpu_variants_or_skip, Fixture};

fn code_lists(v: &Value) -> Vec<[u32; 8]> {
    v.as_array().unwrap().iter().map(|f| std::array::from_fn(|k| f[k].as_u64().unwrap() as u32)).collect()
}

/// The CUDA device with tensor cores and step graphs on, then with both off, or a
/// printed reason why these tests did not run on it.
fn cuda_variants_or_skip() -> Vec<Cuda> {
    let variants = [CudaOptions { tensor_cores: true, graphs: true, precision: Precision::Exact }, CudaOptions { tensor_cores: false, graphs: false, precision: Precision::Exact }];
    match variants.into_iter().map(Cuda::with_options).collect::<Result<Vec<_>, _>>() {
        Ok(gpus) => gpus,
        Err(e) => {
            println!("SKIPPED (no CUDA device): {e}");
            Vec::new()
        }
    }
}

#[test]
fn greedy_outputs_match_the_reference_on_cuda() {
    let fx = synthesize();
    for gpu in cuda_variants_or_skip() {
        println!("cuda: {}", gpu.describe());
        greedy_outputs_on(&gpu, &fx);
        let (updated, instantiated) = gpu.graph_launches();
        println!("decode-step graphs: {updated} updated, {instantiated} instantiated");
        if gpu.describe().contains("graphs: on") {
            assert!(updated + instantiated > 0, "no decode step ran as a CUDA graph");
        }
    }
}

#[test]
fn hidden_state_and_logit_probes_match_on_cuda() {
    let fx = synthesize();
    for gpu in cuda_variants_or_skip() {
        println!("cuda: {}", gpu.describe());
        probes_on(&gpu, &fx);
    }
}

#[test]
fn greedy_outputs_match_the_reference() {
    let fx = synthesize();
    greedy_outputs_on(&Cpu::new(), &fx);
}

#[test]
fn greedy_outputs_match_the_reference_on_wgpu() {
    let fx = synthesize();
    // Every case with the adapter's features on; without them (other reductions, no f16)
    // the short cases only: lavapipe takes ~10 s per long prompt.
    for (i, gpu) in wgpu_variants_or_skip().iter().enumerate() {
        println!("wgpu: {}", gpu.describe());
        greedy_cases_on(gpu, &fx, |name| i == 0 || !name.starts_with("long_"));
    }
}

fn greedy_outputs_on<B: Backend>(backend: &B, fx: &Fixture) {
    greedy_cases_on(backend, fx, |_| true);
}

fn greedy_cases_on<B: Backend>(cpu: &B, fx: &Fixture, wanted: impl Fn(&str) -> bool) {
    let lm = UniAudioLm::load(cpu, &fx.model_dir).unwrap();
    assert_eq!(lm.config, fx.config);
    let cases = read_json("cases.json");
    let mut failures = Vec::new();
    for case in cases.as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        if !wanted(name) {
            continue;
        }
        let kind = match case["task_kind"].as_str().unwrap() {
            "audio_out" => OutputKind::Audio,
            _ => OutputKind::Text,
        };
        let opts = GenerateOptions {
            kind,
            top_k: case["topk"].as_u64().unwrap() as usize,
            temperature: case["temperature"].as_f64().unwrap() as f32,
            seed: 888,
            max_steps: case["max_steps"].as_u64().unwrap() as usize,
            cfg_scale: None,
        };
        let out = generate(&lm, cpu, &frames(&case["prompt"]), &opts, &mut |_, _| {}).unwrap();
        let exp = &case["expected"];
        let stopped = match exp["stopped_by"].as_str().unwrap() {
            "eos" => StopReason::Eos,
            _ => StopReason::MaxSteps,
        };
        let ok = match kind {
            OutputKind::Audio => {
                out.frames == code_lists(&exp["frames"])
                    && out.reasoning == code_lists(&exp["reasoning"])
                    && out.reconstruction == code_lists(&exp["reconstruction"])
            }
            OutputKind::Text => {
                let want: Vec<u32> = exp["text_ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
                out.text_ids == want
            }
        } && out.stopped_by == Some(stopped);
        if !ok {
            failures.push(format!("[{}] {name}: got {:?} {:?} text {:?} stop {:?}\nexpected {exp}", B::NAME, out.frames, out.reconstruction, out.text_ids, out.stopped_by));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn rel_l2(got: &[f64], want: &[f64]) -> f64 {
    let err: f64 = got.iter().zip(want).map(|(a, b)| (a - b).powi(2)).sum();
    let norm: f64 = want.iter().map(|b| b * b).sum();
    (err / norm.max(1e-300)).sqrt()
}

/// Top-5 (id, value) by descending value, lowest id first on ties.
fn top5(logits: &[f32]) -> Vec<(u32, f64)> {
    let mut idx: Vec<usize> = (0..logits.len()).collect();
    idx.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
    idx.into_iter().take(5).map(|i| (i as u32, logits[i] as f64)).collect()
}

fn check_top5(what: &str, got: &[(u32, f64)], want: &Value, tol: f64, failures: &mut Vec<String>) {
    let want: Vec<(u32, f64)> = want.as_array().unwrap().iter().map(|p| (p[0].as_u64().unwrap() as u32, p[1].as_f64().unwrap())).collect();
    let (gv, wv): (Vec<f64>, Vec<f64>) = (got.iter().map(|p| p.1).collect(), want.iter().map(|p| p.1).collect());
    let e = rel_l2(&gv, &wv);
    if e > tol {
        failures.push(format!("{what}: top-5 values rel L2 {e:.2e} > {tol:.0e}: {got:?} vs {want:?}"));
    }
    let max = wv.iter().fold(0f64, |m, v| m.max(v.abs()));
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        // Ids may differ only where the reference values are near-ties.
        if g.0 != w.0 && !want.iter().any(|o| o.0 == g.0 && (o.1 - w.1).abs() <= 2.0 * tol * max) {
            failures.push(format!("{what}: top-5 rank {i} id {} vs reference {}", g.0, w.0));
        }
    }
}

#[test]
fn hidden_state_and_logit_probes_match() {
    probes_on(&Cpu::new(), &synthesize());
}

#[test]
fn hidden_state_and_logit_probes_match_on_wgpu() {
    let fx = synthesize();
    for gpu in wgpu_variants_or_skip() {
        println!("wgpu: {}", gpu.describe());
        probes_on(&gpu, &fx);
    }
}

fn probes_on<B: Backend>(cpu: &B, fx: &Fixture) {
    let lm = UniAudioLm::load(cpu, &fx.model_dir).unwrap();
    let hidden = read_json("hidden.json");
    let tol = hidden["tolerance"]["rel_l2"].as_f64().unwrap();
    let cases = read_json("cases.json");
    let mut failures = Vec::new();
    let mut probes_checked = 0;
    for case in cases.as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let audio = case["task_kind"] == "audio_out";
        let Some(probes) = hidden["cases"][name].as_array() else { continue };
        let mut session = lm.session(cpu).unwrap();
        let mut feed = frames(&case["prompt"]);
        for probe in probes {
            let hf = session.forward(&feed).unwrap();
            assert_eq!(session.len() - 1, probe["position"].as_u64().unwrap() as usize, "{name}: position");
            let h: Vec<f64> = ops::download_f32(cpu, &hf).unwrap().into_iter().map(f64::from).collect();
            let want16: Vec<f64> = probe["h_final_first16"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
            let step = probe["step"].as_u64().unwrap();
            let e = rel_l2(&h[..16], &want16);
            if e > tol {
                failures.push(format!("{name} step {step}: h_final_first16 rel L2 {e:.2e}"));
            }
            let norm = h.iter().map(|v| v * v).sum::<f64>().sqrt();
            let want_norm = probe["h_final_norm"].as_f64().unwrap();
            if ((norm - want_norm) / want_norm).abs() > tol {
                failures.push(format!("{name} step {step}: h_final_norm {norm} vs {want_norm}"));
            }
            let text_logits = ops::download_f32(cpu, &session.text_logits(&hf).unwrap()).unwrap();
            if let Some(want) = probe.get("text_top5") {
                check_top5(&format!("{name} step {step} text"), &top5(&text_logits), want, tol, &mut failures);
            }
            if audio {
                session.decoder_begin(&hf).unwrap();
                let mut codes = [0u32; 8];
                for (i, code) in codes.iter_mut().enumerate() {
                    let logits = ops::download_f32(cpu, &session.decoder_logits(i).unwrap()).unwrap();
                    if let Some(want) = probe["audio_top5"].get(i.to_string()) {
                        check_top5(&format!("{name} step {step} codebook {i}"), &top5(&logits), want, tol, &mut failures);
                    }
                    *code = top5(&logits)[0].0;
                    let t = ops::upload_u32(cpu, &[1], &[*code]).unwrap();
                    session.decoder_feed(i, &t).unwrap();
                }
                feed = vec![Frame::Audio(codes)];
            } else {
                feed = vec![Frame::Text(top5(&text_logits)[0].0)];
            }
            probes_checked += 1;
        }
    }
    assert!(probes_checked >= 6, "only {probes_checked} probes ran");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A variant (`lm_v` on `bv`) against exact (`lm_e` on `be`) on every fixture case: the
/// worst relative L2 error of a prompt's text logits, and how many greedy steps agree
/// before the first divergence, of how many.
fn error_against_exact<V: Backend>(label: &str, lm_e: &UniAudioLm<Cpu>, be: &Cpu, lm_v: &UniAudioLm<V>, bv: &V) -> (f64, usize, usize) {
    error_against_exact_on(label, lm_e, be, lm_v, bv, |_| true)
}

/// `error_against_exact` on the cases `wanted` names.
fn error_against_exact_on<V: Backend>(label: &str, lm_e: &UniAudioLm<Cpu>, be: &Cpu, lm_v: &UniAudioLm<V>, bv: &V, wanted: impl Fn(&str) -> bool) -> (f64, usize, usize) {
    let mut worst = 0f64;
    let (mut agreeing, mut total) = (0usize, 0usize);
    for case in read_json("cases.json").as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        if !wanted(name) {
            continue;
        }
        let prompt = frames(&case["prompt"]);
        let e = rel_l2(&prompt_logits(lm_v, bv, &prompt), &prompt_logits(lm_e, be, &prompt));
        worst = worst.max(e);
        let kind = if case["task_kind"] == "audio_out" { OutputKind::Audio } else { OutputKind::Text };
        let opts = GenerateOptions { kind, top_k: 1, temperature: 1.0, seed: 888, max_steps: case["max_steps"].as_u64().unwrap() as usize, cfg_scale: None };
        let (a, b) = (generate(lm_e, be, &prompt, &opts, &mut |_, _| {}).unwrap(), generate(lm_v, bv, &prompt, &opts, &mut |_, _| {}).unwrap());
        let steps = match kind {
            OutputKind::Audio => a.frames.iter().zip(&b.frames).take_while(|(x, y)| x == y).count(),
            OutputKind::Text => a.text_ids.iter().zip(&b.text_ids).take_while(|(x, y)| x == y).count(),
        };
        let len = a.frames.len().max(a.text_ids.len());
        println!("{label} {name}: text logits rel L2 {e:.2e}; greedy agrees for {steps} of {len} steps");
        agreeing += steps;
        total += len;
    }
    println!("{label} vs exact: worst logits rel L2 {worst:.2e}; greedy agreement {agreeing}/{total} steps");
    (worst, agreeing, total)
}

/// Every codebook's audio logits for the first frame after each audio-output prompt, both
/// models fed the reference's greedy codes: the worst relative L2 (the audio heads and the
/// depth decoder, which text logits never reach).
fn audio_logits_error<V: Backend>(label: &str, lm_e: &UniAudioLm<Cpu>, be: &Cpu, lm_v: &UniAudioLm<V>, bv: &V, wanted: impl Fn(&str) -> bool) -> f64 {
    let mut worst = 0f64;
    for case in read_json("cases.json").as_array().unwrap().iter().filter(|c| c["task_kind"] == "audio_out" && wanted(c["name"].as_str().unwrap())) {
        let prompt = frames(&case["prompt"]);
        let (mut se, mut sv) = (lm_e.session(be).unwrap(), lm_v.session(bv).unwrap());
        let (he, hv) = (se.forward(&prompt).unwrap(), sv.forward(&prompt).unwrap());
        se.decoder_begin(&he).unwrap();
        sv.decoder_begin(&hv).unwrap();
        for i in 0..uniaudio_lm::config::CODEBOOKS {
            let want: Vec<f64> = ops::download_f32(be, &se.decoder_logits(i).unwrap()).unwrap().into_iter().map(f64::from).collect();
            let got: Vec<f64> = ops::download_f32(bv, &sv.decoder_logits(i).unwrap()).unwrap().into_iter().map(f64::from).collect();
            let e = rel_l2(&got, &want);
            println!("{label} {} codebook {i}: audio logits rel L2 {e:.2e}", case["name"].as_str().unwrap());
            worst = worst.max(e);
            let code = (0..want.len()).max_by(|&a, &b| want[a].total_cmp(&want[b])).unwrap() as u32;
            se.decoder_feed(i, &ops::upload_u32(be, &[1], &[code]).unwrap()).unwrap();
            sv.decoder_feed(i, &ops::upload_u32(bv, &[1], &[code]).unwrap()).unwrap();
        }
    }
    println!("{label}: worst audio logits rel L2 {worst:.2e}");
    worst
}

/// The text logits after a prompt.
fn prompt_logits<B: Backend>(lm: &UniAudioLm<B>, b: &B, prompt: &[Frame]) -> Vec<f64> {
    let mut s = lm.session(b).unwrap();
    let hf = s.forward(prompt).unwrap();
    ops::download_f32(b, &s.text_logits(&hf).unwrap()).unwrap().into_iter().map(f64::from).collect()
}

/// wgpu's `fast` (f16 operands in the tiled GEMMs) against the CPU's `exact`, on the short
/// prompts (lavapipe is slow; the long ones add nothing the kernels meet).
#[test]
fn fast_precision_on_wgpu_error_is_bounded() {
    let Some(gpu) = common::wgpu_at_or_skip(Precision::Fast) else { return };
    if gpu.precision() != Precision::Fast {
        return println!("SKIPPED wgpu fast precision: {} lacks SHADER_F16", gpu.describe());
    }
    let fx = synthesize();
    let cpu = Cpu::new();
    let (lm_e, lm_g) = (UniAudioLm::load(&cpu, &fx.model_dir).unwrap(), UniAudioLm::load(&gpu, &fx.model_dir).unwrap());
    let label = "fast wgpu";
    let (worst, agreeing, total) = error_against_exact_on(label, &lm_e, &cpu, &lm_g, &gpu, |name| !name.starts_with("long_"));
    // Measured on lavapipe: worst 1.95e-3, agreement 103/103. f16 operands round each to
    // 2^-11 relative (8x finer than bf16, whose bound is 3e-2 below); a broken product
    // has errors of order 1.
    assert!(worst <= 1e-2, "{label} logits rel L2 {worst:.2e}");
    assert!(agreeing * 10 >= total * 7, "{label} greedy agreement {agreeing}/{total}");
}

/// CUDA's `fast` (bf16 mma.sync in the tensor-core GEMMs) against the CPU's `exact`, on
/// every fixture case, at the CPU fast levels' bounds (the same bf16 operands).
#[test]
fn fast_precision_on_cuda_error_is_bounded() {
    let gpu = match Cuda::with_options(CudaOptions { precision: Precision::Fast, ..CudaOptions::from_env() }) {
        Ok(gpu) if gpu.precision() == Precision::Fast => gpu,
        Ok(gpu) => return println!("SKIPPED cuda fast precision: {} has no tensor cores", gpu.describe()),
        Err(e) => return println!("SKIPPED (no CUDA device): {e}"),
    };
    let fx = synthesize();
    let cpu = Cpu::new();
    let (lm_e, lm_g) = (UniAudioLm::load(&cpu, &fx.model_dir).unwrap(), UniAudioLm::load(&gpu, &fx.model_dir).unwrap());
    let label = "fast cuda";
    let (worst, agreeing, total) = error_against_exact(label, &lm_e, &cpu, &lm_g, &gpu);
    assert!(worst <= 3e-2, "{label} logits rel L2 {worst:.2e}");
    assert!(agreeing * 10 >= total * 7, "{label} greedy agreement {agreeing}/{total}");
}

/// `--precision fast` against `exact` on every fixture case.
#[test]
fn fast_precision_error_is_bounded() {
    use uniaudio_runtime::cpu::Isa;
    let fx = synthesize();
    let exact = Cpu::with_isa(Isa::Avx512);
    let lm_e = UniAudioLm::load(&exact, &fx.model_dir).unwrap();
    // The bf16 fast levels: AMX tiles for the many-row products, and vdpbf16ps
    // (`avx2int8` changes only 8-bit products: the q8 test runs it).
    for level in Isa::FAST.into_iter().filter(|l| *l != Isa::Avx2Int8) {
        if !level.available() {
            println!("SKIPPED fast {}: this CPU lacks it", level.key());
            continue;
        }
        let fast = Cpu::with_isa(level);
        let lm_f = UniAudioLm::load(&fast, &fx.model_dir).unwrap();
        let label = format!("fast {}", level.key());
        let (worst, agreeing, total) = error_against_exact(&label, &lm_e, &exact, &lm_f, &fast);
        // Measured (avx512bf16): worst 1.7e-2 (the long ASR prompt, 296 tokens, whose
        // attention from 256 keys on takes P·V in bf16 too; 1.2e-2 with it in f32),
        // agreement 120/143; amx: the same operands, other sum orders. bf16 operands give ~3e-3 relative error per
        // product sum; 3e-2 leaves margin while a broken product (errors of order 1)
        // fails. Near-ties flip greedy choices now and then: at least 70 % must agree.
        assert!(worst <= 3e-2, "{label} logits rel L2 {worst:.2e}");
        assert!(
            agreeing * 10 >= total * 7,
            "{label} greedy agreement {agreeing}/{total}"
        );
    }
}

/// q8_0 weights (the projections in 8-bit blocks) against the f32 model, both `exact`.
#[test]
fn q8_weights_error_is_bounded() {
    let fx = synthesize();
    let q8 = common::synthesize_as(None, uniaudio_runtime::DType::Q8_0);
    let cpu = Cpu::new();
    let (lm_e, lm_q) = (UniAudioLm::load(&cpu, &fx.model_dir).unwrap(), UniAudioLm::load(&cpu, &q8.model_dir).unwrap());
    let (worst, agreeing, total) = error_against_exact("q8_0", &lm_e, &cpu, &lm_q, &cpu);
    // Measured: worst 5.1e-2 (long ASR prompt), agreement 22/143 (26 with bf16 audio
    // heads). A block of 32 with an f16 scale rounds each weight to within half of
    // max|w|/127 (about 0.4 % RMS of uniform weights, 4x bf16's), and the fixture's random
    // model has near-tied logits, so greedy paths part early. 0.1 leaves margin while a
    // wrong block layout or scale (errors of order 1, no agreement) fails.
    assert!(worst <= 0.1, "q8_0 logits rel L2 {worst:.2e}");
    assert!(agreeing * 100 >= total * 12, "greedy agreement {agreeing}/{total}");
    // The audio heads are 8-bit too (stored transposed): measured 5.03e-2 (5.02e-2 with
    // bf16 heads); the same margin. Heads stored untransposed give about 1.4.
    let audio = audio_logits_error("q8_0", &lm_e, &cpu, &lm_q, &cpu, |_| true);
    assert!(audio <= 0.1, "q8_0 audio logits rel L2 {audio:.2e}");
    // The fast level on the q8_0 model: inputs of the 8-bit products rounded to 8-bit
    // blocks as well (VNNI), the other products' operands to bf16.
    use uniaudio_runtime::cpu::Isa;
    for level in Isa::FAST {
        if !level.available() {
            println!("SKIPPED fast q8_0 {}: this CPU lacks it", level.key());
            continue;
        }
        let fast = Cpu::with_isa(level);
        let lm_f = UniAudioLm::load(&fast, &q8.model_dir).unwrap();
        let label = format!("fast {} q8_0", level.key());
        let (worst, agreeing, total) = error_against_exact(&label, &lm_e, &cpu, &lm_f, &fast);
        // Measured: avx512bf16 worst 5.5e-2, agreement 16/143 (the random model's
        // near-ties part greedy paths at the first rounding change); avx2int8, whose
        // prefill GEMMs take 8-bit input blocks as well, 1.11e-1 (long ASR prompt), 16/143.
        // Bounds with margin over each; a broken product (errors of order 1) fails both.
        let bound = if level == Isa::Avx2Int8 { 0.2 } else { 0.1 };
        assert!(worst <= bound, "{label} logits rel L2 {worst:.2e}");
        // Audio logits: measured 5.52e-2 at avx2int8 (the 8-bit weights' error, 5.03e-2,
        // dominates); heads stored untransposed give about 1.4.
        let audio = audio_logits_error(&label, &lm_e, &cpu, &lm_f, &fast, |_| true);
        assert!(audio <= 0.15, "{label} audio logits rel L2 {audio:.2e}");
        assert!(
            agreeing * 100 >= total * 5,
            "{label} greedy agreement {agreeing}/{total}"
        );
    }
}

/// q4_0 weights (the projections in 4-bit blocks) against the f32 model, `exact`; the fast
/// level's 8-bit inputs against the q4_0 model's `exact` products.
#[test]
fn q4_weights_error_is_bounded() {
    let fx = synthesize();
    let q4 = common::synthesize_as(None, uniaudio_runtime::DType::Q4_0);
    let cpu = Cpu::new();
    let (lm_e, lm_q) = (UniAudioLm::load(&cpu, &fx.model_dir).unwrap(), UniAudioLm::load(&cpu, &q4.model_dir).unwrap());
    let (worst, _, _) = error_against_exact("q4_0", &lm_e, &cpu, &lm_q, &cpu);
    // Measured: worst 5.4e-1 (10x q8_0's: a block's 16 levels round each weight to within
    // half of max|w|/8, against max|w|/127), greedy agreement 1/143 on the random model's
    // near-tied logits. 0.8 leaves margin; a wrong nibble order or scale (uncorrelated
    // errors, rel L2 about 1.4) fails.
    assert!(worst <= 0.8, "q4_0 logits rel L2 {worst:.2e}");
    // Measured 6.00e-1 with 4-bit audio heads (5.99e-1 with bf16 ones): the layers before
    // them set the error. Heads stored untransposed give about 1.4.
    let audio = audio_logits_error("q4_0", &lm_e, &cpu, &lm_q, &cpu, |_| true);
    assert!(audio <= 0.9, "q4_0 audio logits rel L2 {audio:.2e}");
    use uniaudio_runtime::cpu::Isa;
    for level in Isa::FAST {
        if !level.available() {
            println!("SKIPPED fast q4_0 {}: this CPU lacks it", level.key());
            continue;
        }
        let fast = Cpu::with_isa(level);
        let lm_f = UniAudioLm::load(&fast, &q4.model_dir).unwrap();
        let label = format!("fast {} q4_0 (against exact q4_0)", level.key());
        let (worst, agreeing, total) = error_against_exact(&label, &lm_q, &cpu, &lm_f, &fast);
        // Measured (avx2int8, whose prefill GEMMs take 8-bit input blocks as well): worst
        // 7.2e-2 (long prompts), agreement 33/208; only the inputs' 8-bit rounding
        // differs. A broken product (errors of order 1) fails.
        assert!(worst <= 0.15, "{label} logits rel L2 {worst:.2e}");
        // Audio logits (the 4-bit heads' GEMV with 8-bit inputs included): measured 3.85e-2.
        let audio = audio_logits_error(&label, &lm_q, &cpu, &lm_f, &fast, |_| true);
        assert!(audio <= 0.1, "{label} audio logits rel L2 {audio:.2e}");
        assert!(agreeing * 100 >= total * 10, "{label} greedy agreement {agreeing}/{total}");
    }
}

/// The q8_0 and q4_0 models on wgpu (the block-reading GEMV, gated MLP input and tiled
/// GEMM, a text head split into binding-sized ranges on small adapters) give the CPU's
/// logits.
#[test]
fn quantized_weights_on_wgpu_match_the_cpu() {
    let gpus = wgpu_variants_or_skip();
    let Some(gpu) = gpus.first() else { return };
    for dtype in [uniaudio_runtime::DType::Q8_0, uniaudio_runtime::DType::Q4_0] {
        quantized_model_on_wgpu_matches_the_cpu(gpu, dtype);
    }
}

fn quantized_model_on_wgpu_matches_the_cpu(gpu: &uniaudio_runtime::Wgpu, dtype: uniaudio_runtime::DType) {
    let model = common::synthesize_as(None, dtype);
    let cpu = Cpu::new();
    let lm_c = UniAudioLm::load(&cpu, &model.model_dir).unwrap();
    let lm_g = UniAudioLm::load(gpu, &model.model_dir).unwrap();
    let mut worst = 0f64;
    // The short prompts (lavapipe is slow; the long ones add nothing the kernels meet).
    for case in read_json("cases.json").as_array().unwrap().iter().filter(|c| !c["name"].as_str().unwrap().starts_with("long_")) {
        let prompt = frames(&case["prompt"]);
        let mut sc = lm_c.session(&cpu).unwrap();
        let hc = sc.forward(&prompt).unwrap();
        let want: Vec<f64> = ops::download_f32(&cpu, &sc.text_logits(&hc).unwrap()).unwrap().into_iter().map(f64::from).collect();
        let mut sg = lm_g.session(gpu).unwrap();
        let hg = sg.forward(&prompt).unwrap();
        let got: Vec<f64> = ops::download_f32(gpu, &sg.text_logits(&hg).unwrap()).unwrap().into_iter().map(f64::from).collect();
        worst = worst.max(rel_l2(&got, &want));
    }
    println!("{dtype} wgpu vs cpu: worst text logits rel L2 {worst:.2e}");
    let audio = audio_logits_error(&format!("{dtype} wgpu vs cpu"), &lm_c, &cpu, &lm_g, gpu, |name| !name.starts_with("long_"));
    assert!(audio <= 3e-5, "{dtype} audio logits on wgpu differ from the CPU's: rel L2 {audio:.2e}");
    // Both compute in f32 over the same exactly widened weights; only summation order
    // differs (measured 4.8e-6 over all cases for q8_0).
    assert!(worst <= 3e-5, "{dtype} logits on wgpu differ from the CPU's: rel L2 {worst:.2e}");
}
