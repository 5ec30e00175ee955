//! The generation loop (spec §5): prefill, then one frame per step, with the
//! reference's stop, phase-switch and list rules, optional classifier-free guidance.

use uniaudio_runtime::Backend;

use crate::config::{LmConfig, CODEBOOKS};
use crate::engine::{rows_for, Engine, EngineOptions, KvPool, RequestId};
use crate::error::{LmError, Result};
use crate::frame::Frame;
use crate::model::UniAudioLm;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputKind {
    Audio,
    Text,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    Eos,
    MaxSteps,
}

#[derive(Clone, Debug)]
pub struct GenerateOptions {
    pub kind: OutputKind,
    /// 1 is greedy; 0 keeps every id.
    pub top_k: usize,
    pub temperature: f32,
    pub seed: u64,
    pub max_steps: usize,
    /// Classifier-free guidance scale; `None` reproduces the reference (never applied).
    pub cfg_scale: Option<f32>,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions { kind: OutputKind::Audio, top_k: 50, temperature: 0.9, seed: 888, max_steps: 500, cfg_scale: None }
    }
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct GenerateOutput {
    /// Every sampled audio frame, including the phase-switch and stop frames.
    pub frames: Vec<[u32; CODEBOOKS]>,
    /// Stored reasoning frames without their first entry.
    pub reasoning: Vec<[u32; CODEBOOKS]>,
    /// Stored reconstruction frames (− audio_reason_card) without their first entry.
    pub reconstruction: Vec<[u32; CODEBOOKS]>,
    pub text_ids: Vec<u32>,
    pub stopped_by: Option<StopReason>,
    /// Model evaluations run after the prompt.
    pub steps: usize,
}

/// Called after each step with (steps done, max steps).
pub type Progress<'a> = &'a mut dyn FnMut(usize, usize);

/// Checks the prompt and options before any work.
pub fn check_request(config: &LmConfig, prompt: &[Frame], opts: &GenerateOptions) -> Result<()> {
    if prompt.is_empty() {
        return Err(LmError::Prompt("the prompt has no frames".into()));
    }
    for (i, f) in prompt.iter().enumerate() {
        f.validate(config, i)?;
    }
    if opts.max_steps == 0 {
        return Err(LmError::Invalid("max_steps must be at least 1".into()));
    }
    if !(opts.temperature.is_finite() && opts.temperature > 0.0) {
        return Err(LmError::Invalid(format!("temperature must be > 0, got {}", opts.temperature)));
    }
    if let Some(s) = opts.cfg_scale {
        if !s.is_finite() {
            return Err(LmError::Invalid(format!("cfg scale must be finite, got {s}")));
        }
    }
    // The last step runs at position len + max_steps − 2 and needs one cache row more.
    let needed = prompt.len() + opts.max_steps - 1;
    if needed > config.max_seq_len {
        return Err(LmError::Prompt(format!(
            "prompt of {} frames plus {} steps needs {needed} positions, more than max_seq_len {}",
            prompt.len(),
            opts.max_steps,
            config.max_seq_len
        )));
    }
    Ok(())
}

/// The negative prompt of classifier-free guidance: same length, every text id replaced by
/// text_pad_token and every audio id by its block's pad (reason_pad, or semantic_pad + rc).
pub fn negative_prompt(config: &LmConfig, prompt: &[Frame]) -> Vec<Frame> {
    let rc = config.ids.audio_reason_card as u32;
    prompt
        .iter()
        .map(|f| match *f {
            Frame::Text(_) => Frame::Text(config.ids.text_pad_token),
            Frame::Audio(c) => Frame::Audio(c.map(|x| if x < rc { config.ids.reason_pad_token } else { config.ids.semantic_pad_token + rc })),
        })
        .collect()
}

/// Step-by-step generation of one request: `prefill` once, then `step` until it returns
/// `false`. Lets callers stream frames and time the phases separately. It is the batching
/// engine with a single request, so a request's output is the same alone or batched.
pub struct Generator<'m, B: Backend> {
    engine: Engine<'m, B>,
    id: RequestId,
    output: Option<GenerateOutput>,
}

impl<'m, B: Backend> Generator<'m, B> {
    /// Checks the request (before any work) and sizes the engine to it.
    pub fn new(lm: &'m UniAudioLm<B>, backend: &'m B, prompt: &[Frame], opts: &GenerateOptions) -> Result<Self> {
        check_request(&lm.config, prompt, opts)?;
        let (_, budget) = KvPool::reservation(&lm.config, prompt.len(), opts);
        let mut engine = Engine::new(lm, backend, &EngineOptions { max_batch: rows_for(opts), kv_budget: Some(budget) })?;
        let id = engine.submit(prompt, opts)?;
        Ok(Generator { engine, id, output: None })
    }

    /// Processes the whole prompt in one batched pass.
    pub fn prefill(&mut self) -> Result<()> {
        self.engine.admit();
        self.collect()
    }

    /// Runs one model evaluation and sampling step; `false` once generation has stopped.
    pub fn step(&mut self) -> Result<bool> {
        if self.output.is_some() {
            return Ok(false);
        }
        if let Err(e) = self.engine.step() {
            // The step failed the request with this error (its finished entry holds the same).
            self.engine.take_finished();
            return Err(e);
        }
        self.collect()?;
        Ok(self.output.is_none())
    }

    /// Takes the request's result once it has left the engine.
    fn collect(&mut self) -> Result<()> {
        for f in self.engine.take_finished() {
            if f.id == self.id {
                self.output = Some(f.result.map_err(LmError::Shared)?);
            }
        }
        Ok(())
    }

    /// Makes the next step panic (see `Engine::inject_step_panic`).
    #[doc(hidden)]
    pub fn inject_step_panic(&mut self) {
        self.engine.inject_step_panic();
    }

    /// Makes the prefill panic (see `Engine::inject_prefill_panic`).
    #[doc(hidden)]
    pub fn inject_prefill_panic(&mut self) {
        self.engine.inject_prefill_panic();
    }

    /// The output so far (before `finish`, without the reference's list handling).
    pub fn output(&self) -> Option<&GenerateOutput> {
        self.output.as_ref().or_else(|| self.engine.partial(self.id))
    }

    /// Steps run so far.
    pub fn steps(&self) -> usize {
        self.output().map_or(0, |o| o.steps)
    }

    /// Text ids sampled so far (text tasks), for streaming.
    pub fn text_ids(&self) -> &[u32] {
        self.output().map_or(&[], |o| &o.text_ids)
    }

    /// The output with the reference's list handling (first stored frame of each phase dropped).
    pub fn finish(self) -> GenerateOutput {
        let mut out = self.output.unwrap_or_default();
        out.stopped_by.get_or_insert(StopReason::MaxSteps);
        out
    }
}

/// Generates from `prompt` with the reference's rules (spec §5.6 / §5.7).
pub fn generate<B: Backend>(lm: &UniAudioLm<B>, backend: &B, prompt: &[Frame], opts: &GenerateOptions, progress: Progress) -> Result<GenerateOutput> {
    let mut g = Generator::new(lm, backend, prompt, opts)?;
    g.prefill()?;
    while g.step()? {
        progress(g.steps(), opts.max_steps);
    }
    progress(g.steps(), opts.max_steps);
    Ok(g.finish())
}
