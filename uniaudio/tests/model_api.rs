//! The embedding API on a tiny synthetic bundle: load once, run several tasks, and get
//! what the task runner gives for the same request.

use std::path::{Path, PathBuf};

use uniaudio::bundle_presets::BundlePreset;
use uniaudio::{Audio, BackendKind, LoadOptions, Model, Sampling, Task, TaskRequest, TaskText};

fn speech() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../codec/tests/fixtures/encode/a_24k_f32_3s2.wav")
}

/// A tiny synthetic bundle (in the returned directory's `bundle/`) loaded on the CPU.
fn tiny_model() -> (tempfile::TempDir, Model) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("bundle");
    uniaudio::synth_bundle::write_synthetic_bundle(&dir, BundlePreset::Tiny, None, &mut |_, _, _| {}).unwrap();
    let model = Model::load(&dir, LoadOptions { backend: BackendKind::Cpu, ..Default::default() }).unwrap();
    (tmp, model)
}

/// Speech recognition of `audio` with the default settings.
fn asr_request(audio: &Audio) -> TaskRequest {
    TaskRequest {
        task: Task::Asr,
        text: TaskText::default(),
        audio: Some(uniaudio::AudioInput::Samples24k(audio.at_24k().unwrap())),
        sampling: Sampling::default(),
        codec: Default::default(),
        prompt_frames: None,
    }
}

#[test]
fn one_model_runs_every_kind_of_task() {
    let (tmp, mut model) = tiny_model();
    let dir = tmp.path().join("bundle");
    assert!(model.backend().starts_with("cpu"));

    let audio = Audio::read(speech()).unwrap();
    let text = model.transcribe(&audio).unwrap();
    // The same request through `run` gives the same text.
    let req = asr_request(&audio);
    let mut streamed = String::new();
    let out = model.run(&req, &mut |e| if let uniaudio::Event::Text(t) = e { streamed.push_str(t) }).unwrap();
    assert_eq!(out.text.as_deref(), Some(text.as_str()));
    assert_eq!(streamed, text, "the streamed pieces make up the text");
    assert!(!text.is_empty());

    // Encode: the chunk plan's counts; decode: int(T / 12.5 · 24000) samples.
    let tokens = model.encode(&audio).unwrap();
    assert_eq!(tokens.reasoning.len(), (3.2f64 * 5.0) as usize + 1);
    assert_eq!(tokens.reconstruction.len(), (3.2f64 * 12.5) as usize + 1);
    let back = model.decode(&tokens, 2, 1).unwrap();
    assert_eq!(back.sample_rate, 24_000);
    assert_eq!(back.samples.len(), (tokens.reconstruction.len() as f64 / 12.5 * 24000.0) as usize);

    let speech = model.tts("Hello there.", &Sampling { seed: 3, max_steps: Some(80), ..Default::default() }).unwrap();
    assert!(!speech.samples.is_empty() && speech.samples.iter().all(|s| s.is_finite()));

    // A bad input is an error, not a panic, and the model stays usable.
    let silent = Audio { samples: vec![], sample_rate: 16_000 };
    assert!(matches!(model.transcribe(&silent), Err(uniaudio::Error::InvalidInput(_))));
    assert_eq!(model.transcribe(&audio).unwrap(), text);
    assert!(matches!(Audio::read(dir.join("uniaudio.json")), Err(uniaudio::Error::Audio(_))));
}

/// Each error names whose problem it is: a missing path, a missing part, a refused argument.
#[test]
fn errors_say_what_kind_they_are() {
    let tmp = tempfile::tempdir().unwrap();
    let cpu = || LoadOptions { backend: BackendKind::Cpu, ..Default::default() };
    let e = Model::load(tmp.path().join("nowhere"), cpu()).err().unwrap();
    assert!(matches!(e, uniaudio::Error::Model(_)) && e.to_string().contains("nowhere"), "{e:?}");
    let dir = tmp.path().join("bundle");
    uniaudio::synth_bundle::write_synthetic_bundle(&dir, BundlePreset::Tiny, None, &mut |_, _, _| {}).unwrap();
    let e = Model::load(dir.join("lm"), cpu()).err().unwrap();
    assert!(matches!(e, uniaudio::Error::MissingPart(_)) && e.to_string().contains("--tokenizer"), "{e:?}");
    let mut lm_only = Model::load(dir.join("lm"), LoadOptions { tokenizer: Some(dir.join("tokenizer.json")), ..cpu() }).unwrap();
    let e = lm_only.tts("Hi.", &Sampling { max_steps: Some(4), ..Default::default() }).err().unwrap();
    assert!(matches!(e, uniaudio::Error::MissingPart(_)) && e.to_string().contains("--codec"), "{e:?}");
    let mut model = Model::load(&dir, cpu()).unwrap();
    let e = model.tts("Hi.", &Sampling { max_steps: Some(0), ..Default::default() }).err().unwrap();
    assert!(matches!(e, uniaudio::Error::InvalidInput(_)) && e.to_string().contains("--max-steps"), "{e:?}");
}

/// A backend left out of the build (cargo features `wgpu`, `cuda`) is refused by name;
/// `Auto` picks among the built ones and always has the CPU.
#[test]
fn backends_outside_the_build_are_refused() {
    use uniaudio::{AnyBackend, Precision};
    for (kind, name) in [(BackendKind::Wgpu, "wgpu"), (BackendKind::Cuda, "cuda")] {
        if !kind.is_built() {
            let e = AnyBackend::open(kind, Precision::Exact).err().unwrap();
            assert!(matches!(e, uniaudio::Error::Backend(_)) && e.to_string().contains(name) && e.to_string().contains("feature"), "{e:?}");
        }
    }
    assert_eq!(cfg!(feature = "wgpu"), BackendKind::Wgpu.is_built());
    assert!(AnyBackend::open(BackendKind::Cpu, Precision::Exact).is_ok());
}

/// `generate` streams one event per frame or token and ends with the output a plain run
/// gives; `generate_batch` runs requests together with each output equal to its solo run.
#[test]
fn generation_streams_events_and_batches_requests() {
    use uniaudio::{Frame, GenerateEvent, GenerateOptions, OutputKind};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("bundle");
    uniaudio::synth_bundle::write_synthetic_bundle(&dir, BundlePreset::Tiny, None, &mut |_, _, _| {}).unwrap();
    let mut model = Model::load(&dir, LoadOptions { backend: BackendKind::Cpu, ..Default::default() }).unwrap();
    let prompt: Vec<Frame> = [128_000u32, 40, 41, 42, 43, 128_001].into_iter().map(Frame::Text).collect();
    let opts = |kind, seed| GenerateOptions { kind, top_k: 20, temperature: 0.9, seed, max_steps: 12, cfg_scale: None };
    let requests = vec![(prompt.clone(), opts(OutputKind::Audio, 1)), (prompt.clone(), opts(OutputKind::Text, 2)), (prompt[..3].to_vec(), opts(OutputKind::Audio, 3))];

    let mut solo = Vec::new();
    for (frames, o) in &requests {
        let (mut streamed_frames, mut streamed_text, mut done) = (Vec::new(), Vec::new(), None);
        for event in model.generate(frames, o).unwrap() {
            match event.unwrap() {
                GenerateEvent::Frame(f) => streamed_frames.push(f),
                GenerateEvent::Text(t) => streamed_text.push(t),
                GenerateEvent::Done(out) => done = Some(out),
            }
        }
        let out = done.expect("the stream ends with Done");
        assert_eq!((&out.frames, &out.text_ids), (&streamed_frames, &streamed_text));
        assert!(out.steps > 0 && out.stopped_by.is_some());
        solo.push(out);
    }
    let batched = model.generate_batch(&requests, 4).unwrap();
    for (i, (a, b)) in solo.iter().zip(&batched).enumerate() {
        let b = b.as_ref().unwrap();
        assert_eq!((&a.frames, &a.reconstruction, &a.text_ids, a.stopped_by, a.steps), (&b.frames, &b.reconstruction, &b.text_ids, b.stopped_by, b.steps), "request {i}");
    }
    // Errors are per request (an empty prompt) or before any work (streaming).
    let mixed = model.generate_batch(&[(Vec::new(), opts(OutputKind::Text, 1)), requests[1].clone()], 2).unwrap();
    assert!(mixed[0].as_ref().unwrap_err().to_string().contains("no frames"));
    assert_eq!(mixed[1].as_ref().unwrap().text_ids, solo[1].text_ids);
    assert!(model.generate(&[Frame::Text(u32::MAX)], &opts(OutputKind::Text, 1)).is_err());
}

/// `run_until`'s stop check ends a run in each stage: before the encoder's first chunk,
/// between generated steps, and between the codec's Euler steps; the model goes on after.
#[test]
fn a_stop_check_ends_each_stage_and_the_model_goes_on() {
    use std::cell::Cell;
    use uniaudio::{CodecSettings, Event, Stage};
    let (_tmp, mut model) = tiny_model();
    let audio = Audio::read(speech()).unwrap();
    let asr = asr_request(&audio);
    let tts = TaskRequest {
        task: Task::Tts,
        text: TaskText { text: Some("Hello there.".into()), ..Default::default() },
        audio: None,
        sampling: Sampling { seed: 3, max_steps: Some(80), ..Default::default() },
        codec: CodecSettings { steps: 4, ..Default::default() },
        prompt_frames: None,
    };
    // Progress events per stage, and a stop that turns true once `stage` reported `after`.
    let run = |model: &mut Model, req: &TaskRequest, stage: Stage, after: usize| {
        let seen = Cell::new([0usize; 3]);
        let index = |s: Stage| match s {
            Stage::Encode => 0,
            Stage::Generate => 1,
            _ => 2,
        };
        let result = model.run_until(
            req,
            &mut |e| {
                if let Event::Progress { stage, .. } = e {
                    let mut n = seen.get();
                    n[index(stage)] += 1;
                    seen.set(n);
                }
            },
            &|| seen.get()[index(stage)] >= after,
        );
        (result, seen.get())
    };
    // The whole runs first, to compare with after the stops.
    let text = model.run(&asr, &mut |_| {}).unwrap().text;
    let speech = model.run(&tts, &mut |_| {}).unwrap().audio;
    let (r, seen) = run(&mut model, &asr, Stage::Encode, 0);
    assert!(matches!(r, Err(uniaudio::Error::Cancelled(_))), "{r:?}");
    assert_eq!(seen, [0, 0, 0], "stopped before the first chunk");
    let (r, seen) = run(&mut model, &asr, Stage::Generate, 2);
    assert!(matches!(r, Err(uniaudio::Error::Cancelled(_))), "{r:?}");
    assert_eq!(seen[1], 2, "stopped after the second generated step");
    let (r, seen) = run(&mut model, &tts, Stage::Decode, 1);
    assert!(matches!(r, Err(uniaudio::Error::Cancelled(_))), "{r:?}");
    assert_eq!(seen[2], 1, "stopped after the codec's first Euler step");
    assert!(seen[1] > 1, "the generation ran to its end first");
    // Nothing is left half-done: the same requests give what they gave before the stops.
    assert_eq!(model.run_until(&asr, &mut |_| {}, &|| false).unwrap().text, text);
    let (r, seen) = run(&mut model, &tts, Stage::Decode, usize::MAX);
    assert_eq!(r.unwrap().audio, speech);
    assert!(speech.is_some_and(|a| !a.is_empty()));
    assert_eq!(seen[2], 4, "four Euler steps");
}
