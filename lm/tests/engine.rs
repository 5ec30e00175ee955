//! The batching engine: every request of a mixed, continuously batched run (audio and
//! text tasks, greedy and sampled, guided, different prompt lengths, joins and leaves
//! mid-way, one request reaching max_seq_len) decodes exactly what it decodes alone, on
//! the CPU and on wgpu; the KV budget bounds memory and refuses what can never fit.

mod common;

use uniaudio_lm::engine::{BLOCK_POSITIONS, KvPool};
use uniaudio_lm::{generate, Engine, EngineEvent, EngineOptions, Frame, GenerateOptions, GenerateOutput, Generator, LmError, OutputKind, StopReason, UniAudioLm};
use uniaudio_runtime::{Backend, Cpu};

use common::{frames, read_json, synthesize_with, wgpu_or_skip};

/// Short enough that `long_asr` (296 frames) plus 25 steps ends exactly at it.
const MAX_SEQ_LEN: usize = 320;

fn prompt(name: &str) -> Vec<Frame> {
    let cases = read_json("cases.json");
    let case = cases.as_array().unwrap().iter().find(|c| c["name"] == name).unwrap();
    frames(&case["prompt"])
}

fn opts(kind: OutputKind, top_k: usize, seed: u64, max_steps: usize, cfg_scale: Option<f32>) -> GenerateOptions {
    GenerateOptions { kind, top_k, temperature: 0.9, seed, max_steps, cfg_scale }
}

/// The mixed request set, or the requests at `subset` with step counts capped (lavapipe
/// is slow): the long prompt then stops by max_steps before reaching max_seq_len (the CPU
/// run reaches it).
fn requests_capped(subset: Option<&[usize]>) -> Vec<(Vec<Frame>, GenerateOptions)> {
    let all = requests();
    let Some(subset) = subset else { return all };
    subset
        .iter()
        .map(|&i| {
            let (p, mut o) = all[i].clone();
            o.max_steps = o.max_steps.min(5);
            (p, o)
        })
        .collect()
}

fn requests() -> Vec<(Vec<Frame>, GenerateOptions)> {
    use OutputKind::{Audio, Text};
    vec![
        (prompt("tts_short"), opts(Audio, 1, 888, 40, None)),
        (prompt("asr_short"), opts(Text, 1, 888, 40, None)),
        (prompt("tts_switch"), opts(Audio, 1, 888, 48, None)),
        (prompt("asr_eos"), opts(Text, 1, 888, 40, None)),
        (prompt("tts_switch"), opts(Audio, 20, 1, 48, None)),
        (prompt("asr_eos"), opts(Text, 5, 7, 40, None)),
        (prompt("long_asr"), opts(Text, 1, 888, MAX_SEQ_LEN - 296 + 1, None)),
        (prompt("long_tts"), opts(Audio, 30, 3, 16, None)),
        (prompt("tts_switch"), opts(Audio, 1, 5, 30, Some(1.5))),
        (prompt("asr_short"), opts(Text, 10, 9, 20, Some(2.0))),
        (prompt("tts_short"), opts(Audio, 0, 11, 12, None)),
    ]
}

fn solo<B: Backend>(lm: &UniAudioLm<B>, b: &B, reqs: &[(Vec<Frame>, GenerateOptions)]) -> Vec<GenerateOutput> {
    reqs.iter().map(|(p, o)| generate(lm, b, p, o, &mut |_, _| {}).unwrap()).collect()
}

fn same(a: &GenerateOutput, b: &GenerateOutput) -> bool {
    (&a.frames, &a.reasoning, &a.reconstruction, &a.text_ids, a.stopped_by, a.steps) == (&b.frames, &b.reasoning, &b.reconstruction, &b.text_ids, b.stopped_by, b.steps)
}

/// Runs `reqs` through one engine of `max_batch` rows: the first `early` submitted at
/// once, the rest after three steps. Checks the events against the outputs.
fn batched<B: Backend>(lm: &UniAudioLm<B>, b: &B, reqs: &[(Vec<Frame>, GenerateOptions)], max_batch: usize, early: usize) -> Vec<GenerateOutput> {
    let mut engine = Engine::new(lm, b, &EngineOptions { max_batch, kv_budget: None }).unwrap();
    let mut ids = Vec::new();
    for (p, o) in &reqs[..early] {
        ids.push(engine.submit(p, o).unwrap());
    }
    let mut streamed: Vec<(Vec<[u32; 8]>, Vec<u32>)> = vec![Default::default(); reqs.len()];
    let mut outputs: Vec<Option<GenerateOutput>> = vec![None; reqs.len()];
    let mut steps = 0;
    let mut widest = 0;
    while !engine.is_idle() || ids.len() < reqs.len() {
        if steps == 3 {
            for (p, o) in &reqs[early..] {
                ids.push(engine.submit(p, o).unwrap());
            }
        }
        for e in engine.step().unwrap() {
            match e {
                EngineEvent::Frame { id, codes } => streamed[id as usize].0.push(codes),
                EngineEvent::Text { id, token } => streamed[id as usize].1.push(token),
                EngineEvent::Finished { .. } => {}
                EngineEvent::Failed { id, error } => panic!("request {id} failed: {error}"),
            }
        }
        widest = widest.max(engine.rows());
        assert!(engine.rows() <= max_batch);
        for f in engine.take_finished() {
            outputs[f.id as usize] = Some(f.result.unwrap());
        }
        steps += 1;
    }
    assert!(widest > 2, "the batch never held more than {widest} rows");
    let outputs: Vec<GenerateOutput> = outputs.into_iter().map(|o| o.expect("every request finished")).collect();
    for (i, (out, (frames, text))) in outputs.iter().zip(&streamed).enumerate() {
        assert_eq!(&out.frames, frames, "request {i}: streamed frames");
        assert_eq!(&out.text_ids, text, "request {i}: streamed text");
    }
    outputs
}

fn mixed_batch_equals_solo<B: Backend>(b: &B, subset: Option<&[usize]>, batches: &[(usize, usize)]) {
    let fx = synthesize_with(Some(MAX_SEQ_LEN));
    let lm = UniAudioLm::load(b, &fx.model_dir).unwrap();
    let reqs = requests_capped(subset);
    let alone = solo(&lm, b, &reqs);
    if let Some(long) = subset.map_or(Some(6), |s| s.iter().position(|&i| i == 6)) {
        assert_eq!(alone[long].stopped_by, Some(StopReason::MaxSteps));
    }
    if subset.is_none() {
        assert_eq!((alone[2].stopped_by, alone[3].stopped_by), (Some(StopReason::Eos), Some(StopReason::Eos)), "the fixture's stopping cases stop");
    }
    for &(max_batch, early) in batches {
        let together = batched(&lm, b, &reqs, max_batch, early);
        for (i, (a, t)) in alone.iter().zip(&together).enumerate() {
            assert!(same(a, t), "[{}] request {i} (max_batch {max_batch}): alone {a:?}\nbatched {t:?}", B::NAME);
        }
    }
}

#[test]
fn mixed_batch_equals_solo_on_cpu() {
    mixed_batch_equals_solo(&Cpu::new(), None, &[(6, 6), (16, 4)]);
}

#[test]
fn mixed_batch_equals_solo_on_wgpu() {
    // The adapter's features on (subgroup reductions, f16), shorter runs and one long
    // prompt (every kind of request stays: greedy and sampled audio and text, guided,
    // stopping by EOS, the long prompt). The kernels without the features are the op
    // harness's and the LM fixtures'; batching is the same host code either way.
    let subset: &[usize] = &[0, 1, 2, 3, 4, 5, 6, 8, 9, 10];
    if let Some(gpu) = wgpu_or_skip().as_ref() {
        mixed_batch_equals_solo(gpu, Some(subset), &[(6, 4)]);
    }
}

#[test]
fn kv_budget_bounds_memory_and_refuses_what_cannot_fit() {
    let b = Cpu::new();
    let fx = synthesize_with(Some(MAX_SEQ_LEN));
    let lm = UniAudioLm::load(&b, &fx.model_dir).unwrap();
    let c = &lm.config;
    let reqs: Vec<_> = requests().into_iter().filter(|(p, o)| p.len() < 100 && o.cfg_scale.is_none()).collect();
    let alone = solo(&lm, &b, &reqs);
    // Room for exactly two of the largest requests' caches.
    let capacity = reqs.iter().map(|(p, o)| KvPool::capacity_for(c, p.len() + o.max_steps - 1)).max().unwrap();
    assert!(capacity <= BLOCK_POSITIONS * 2);
    let budget = KvPool::bytes_for(c, capacity, 2);
    let mut engine = Engine::new(&lm, &b, &EngineOptions { max_batch: 16, kv_budget: Some(budget) }).unwrap();
    for (p, o) in &reqs {
        engine.submit(p, o).unwrap();
    }
    let mut outputs = vec![None; reqs.len()];
    let mut most = 0;
    while !engine.is_idle() {
        engine.step().unwrap();
        assert!(engine.kv().used() <= budget, "{} bytes held, budget {budget}", engine.kv().used());
        assert!(engine.active() <= 2, "{} sequences running in a budget for two", engine.active());
        most = most.max(engine.active());
        for f in engine.take_finished() {
            outputs[f.id as usize] = Some(f.result.unwrap());
        }
    }
    assert_eq!(most, 2, "the budget was filled");
    assert_eq!(engine.kv().used(), 0, "every cache was returned");
    assert!(engine.kv().peak() <= budget);
    for (i, (a, t)) in alone.iter().zip(&outputs).enumerate() {
        assert!(same(a, t.as_ref().unwrap()), "request {i}");
    }
    // A request whose caches exceed the whole budget is refused at once, with the numbers.
    let long = prompt("long_asr");
    let err = engine.submit(&long, &opts(OutputKind::Text, 1, 1, 24, None)).unwrap_err().to_string();
    assert!(err.contains("KV budget") && err.contains("MiB"), "{err}");
    // Cancelling a running request frees its caches at once.
    let id = engine.submit(&reqs[0].0, &reqs[0].1).unwrap();
    engine.step().unwrap();
    assert!(engine.kv().used() > 0);
    assert!(engine.cancel(id));
    assert_eq!(engine.kv().used(), 0);
    assert!(engine.is_idle());
    assert!(!engine.cancel(id));
}

#[test]
fn bad_requests_are_refused_before_any_work() {
    let b = Cpu::new();
    let fx = synthesize_with(Some(MAX_SEQ_LEN));
    let lm = UniAudioLm::load(&b, &fx.model_dir).unwrap();
    let mut engine = Engine::new(&lm, &b, &EngineOptions { max_batch: 1, kv_budget: None }).unwrap();
    let p = prompt("asr_short");
    let cases = [
        (vec![], opts(OutputKind::Text, 1, 1, 4, None), "no frames"),
        (p.clone(), opts(OutputKind::Text, 1, 1, 0, None), "max_steps"),
        (p.clone(), opts(OutputKind::Text, 1, 1, MAX_SEQ_LEN, None), "max_seq_len"),
        (vec![Frame::Text(u32::MAX)], opts(OutputKind::Text, 1, 1, 4, None), "text id"),
        (p.clone(), opts(OutputKind::Audio, 1, 1, 4, Some(1.5)), "2 rows"),
    ];
    for (prompt, o, want) in cases {
        let err = engine.submit(&prompt, &o).unwrap_err().to_string();
        assert!(err.contains(want), "expected `{want}` in: {err}");
    }
    assert!(engine.is_idle());
    assert!(Engine::new(&lm, &b, &EngineOptions { max_batch: 0, kv_budget: None }).is_err());
}

#[test]
fn a_panic_in_a_step_fails_its_requests_with_a_typed_error_and_the_engine_goes_on() {
    let b = Cpu::new();
    let fx = synthesize_with(Some(MAX_SEQ_LEN));
    let lm = UniAudioLm::load(&b, &fx.model_dir).unwrap();
    let p = prompt("asr_short");
    let o = opts(OutputKind::Text, 1, 1, 4, None);
    // Through the engine: the step's error and the request's finish.
    let mut engine = Engine::new(&lm, &b, &EngineOptions { max_batch: 1, kv_budget: None }).unwrap();
    let id = engine.submit(&p, &o).unwrap();
    engine.inject_step_panic();
    assert!(matches!(engine.step().as_ref().map_err(LmError::root), Err(LmError::StepPanicked(_))));
    let finished = engine.take_finished();
    assert_eq!(finished.len(), 1);
    assert_eq!(finished[0].id, id);
    assert!(matches!(finished[0].result.as_ref().map_err(|e| e.root()), Err(LmError::StepPanicked(m)) if m.contains("injected")));
    assert!(engine.is_idle());
    // The next request runs as if nothing happened.
    let again = engine.submit(&p, &o).unwrap();
    engine.run_all(&mut |_| {}).unwrap();
    assert_eq!(engine.take_finished().last().map(|f| (f.id, f.result.is_ok())), Some((again, true)));
    // Through the single-request generator: the typed error, not a request's fault.
    let mut g = Generator::new(&lm, &b, &p, &o).unwrap();
    g.prefill().unwrap();
    g.inject_step_panic();
    assert!(matches!(g.step().as_ref().map_err(LmError::root), Err(LmError::StepPanicked(_))));
}

#[test]
fn a_panic_in_one_prefill_fails_that_request_only() {
    let b = Cpu::new();
    let fx = synthesize_with(Some(MAX_SEQ_LEN));
    let lm = UniAudioLm::load(&b, &fx.model_dir).unwrap();
    let p = prompt("asr_short");
    let o = opts(OutputKind::Text, 1, 1, 4, None);
    let mut engine = Engine::new(&lm, &b, &EngineOptions { max_batch: 2, kv_budget: None }).unwrap();
    let first = engine.submit(&p, &o).unwrap();
    let second = engine.submit(&p, &o).unwrap();
    engine.inject_prefill_panic();
    let events = engine.step().expect("the step goes on with the request that was admitted");
    assert!(matches!(&events[0], EngineEvent::Failed { id, error } if *id == first && error.contains("prefill")), "{events:?}");
    assert!(events[1..].iter().all(|e| !matches!(e, EngineEvent::Failed { .. })), "{events:?}");
    let finished = engine.take_finished();
    assert_eq!(finished.len(), 1);
    assert_eq!(finished[0].id, first);
    assert!(matches!(finished[0].result.as_ref().map_err(|e| e.root()), Err(LmError::StepPanicked(m)) if m.contains("prefill") && m.contains("injected")));
    assert_eq!(engine.active(), 1, "the second request runs");
    engine.run_all(&mut |_| {}).unwrap();
    let done = engine.take_finished();
    assert_eq!(done.iter().map(|f| f.id).collect::<Vec<_>>(), vec![second]);
    let solo = generate(&lm, &b, &p, &o, &mut |_, _| {}).unwrap();
    assert_eq!(done[0].result.as_ref().unwrap().text_ids, solo.text_ids, "the survivor's output is its solo output");
    assert_eq!(engine.kv().used(), 0, "the failed request's KV reservation was released");
    // Through the single-request generator: its prefill reports the typed error.
    let mut g = Generator::new(&lm, &b, &p, &o).unwrap();
    g.inject_prefill_panic();
    assert!(matches!(g.prefill().as_ref().map_err(LmError::root), Err(LmError::StepPanicked(m)) if m.contains("prefill")));
}
