//! The generation loop (spec §5): prefill, then one frame per step, with the
//! reference's stop, phase-switch and list rules, optional classifier-free guidance.

use uniaudio_runtime::{ops, Backend, SampleParams, Tensor};

use crate::config::{LmConfig, CODEBOOKS, END_OF_TEXT};
use crate::error::{LmError, Result};
use crate::frame::Frame;
use crate::model::{Session, UniAudioLm};

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

/// Stream ids of the RNG counter: one stream per codebook, one for text.
const TEXT_STREAM: u64 = CODEBOOKS as u64;
const STREAMS: u64 = 16;

struct Sampler {
    opts: GenerateOptions,
}

impl Sampler {
    fn params(&self, position: usize, stream: u64, forbid_below: usize) -> SampleParams {
        SampleParams {
            top_k: self.opts.top_k,
            temperature: self.opts.temperature,
            forbid_below,
            seed: self.opts.seed,
            counter: position as u64 * STREAMS + stream,
        }
    }
}

/// Samples the next frame's 8 codes through the depth decoder(s).
fn sample_audio<B: Backend>(sessions: &mut [Session<'_, B>], hfs: &[Tensor<B>], sampler: &Sampler, forbid: usize, position: usize) -> Result<[u32; CODEBOOKS]> {
    for (s, hf) in sessions.iter().zip(hfs) {
        s.decoder_begin(hf)?;
    }
    let codes = sessions[0].codes_buffer().clone();
    for i in 0..CODEBOOKS {
        let code = codes.narrow(i, 1)?;
        let params = sampler.params(position, i as u64, forbid);
        match (sampler.opts.cfg_scale, &mut *sessions) {
            (Some(scale), [cond, uncond]) => {
                let lu = uncond.decoder_logits(i)?.clone();
                let lc = cond.decoder_logits(i)?.clone();
                let guided = cond.guide(&lc, &lu, scale)?;
                cond.sample(&guided, &code, params)?;
            }
            (_, sessions) => {
                let logits = sessions[0].decoder_logits(i)?.clone();
                sessions[0].sample(&logits, &code, params)?;
            }
        }
        if i + 1 < CODEBOOKS {
            for s in sessions.iter() {
                s.decoder_feed(i, &code)?;
            }
        }
    }
    let ids = ops::download_u32(sessions[0].backend(), &codes)?;
    Ok(std::array::from_fn(|k| ids[k]))
}

fn sample_text<B: Backend>(sessions: &mut [Session<'_, B>], hfs: &[Tensor<B>], sampler: &Sampler, position: usize) -> Result<u32> {
    let dst = sessions[0].text_id_buffer().clone();
    let params = sampler.params(position, TEXT_STREAM, 0);
    match (sampler.opts.cfg_scale, &mut *sessions) {
        (Some(scale), [cond, uncond]) => {
            let lu = uncond.text_logits(&hfs[1])?.clone();
            let lc = cond.text_logits(&hfs[0])?.clone();
            let guided = cond.guide(&lc, &lu, scale)?;
            cond.sample(&guided, &dst, params)?;
        }
        (_, sessions) => {
            let logits = sessions[0].text_logits(&hfs[0])?.clone();
            sessions[0].sample(&logits, &dst, params)?;
        }
    }
    Ok(ops::download_u32(sessions[0].backend(), &dst)?[0])
}

/// Step-by-step generation: `prefill` once, then `step` until it returns `false`.
/// Lets callers stream frames and time the phases separately.
pub struct Generator<'m, B: Backend> {
    sessions: Vec<Session<'m, B>>,
    prompts: Vec<Vec<Frame>>,
    sampler: Sampler,
    hfs: Vec<Tensor<B>>,
    feedback: Option<Frame>,
    reconstruction_phase: bool,
    /// Decode steps (one fed-back frame) run so far.
    decode_steps: usize,
    stored_reason: Vec<[u32; CODEBOOKS]>,
    stored_recon: Vec<[u32; CODEBOOKS]>,
    out: GenerateOutput,
}

impl<'m, B: Backend> Generator<'m, B> {
    /// Checks the request (before any work) and allocates the session(s).
    pub fn new(lm: &'m UniAudioLm<B>, backend: &'m B, prompt: &[Frame], opts: &GenerateOptions) -> Result<Self> {
        check_request(&lm.config, prompt, opts)?;
        let mut sessions = vec![lm.session(backend)?];
        let mut prompts = vec![prompt.to_vec()];
        if opts.cfg_scale.is_some() {
            sessions.push(lm.session(backend)?);
            prompts.push(negative_prompt(&lm.config, prompt));
        }
        Ok(Generator {
            sessions,
            prompts,
            sampler: Sampler { opts: opts.clone() },
            hfs: Vec::new(),
            feedback: None,
            reconstruction_phase: false,
            decode_steps: 0,
            stored_reason: Vec::new(),
            stored_recon: Vec::new(),
            out: GenerateOutput::default(),
        })
    }

    /// Processes the whole prompt in one batched pass.
    pub fn prefill(&mut self) -> Result<()> {
        self.hfs = self.sessions.iter_mut().zip(&self.prompts).map(|(s, p)| s.forward(p)).collect::<Result<Vec<_>>>()?;
        Ok(())
    }

    /// Runs one model evaluation and sampling step; `false` once generation has stopped.
    pub fn step(&mut self) -> Result<bool> {
        if self.out.stopped_by.is_some() {
            return Ok(false);
        }
        if self.hfs.is_empty() {
            self.prefill()?;
        }
        if let Some(f) = self.feedback.take() {
            // Decode steps after the first (which sizes the per-row buffers) enqueue the same
            // ops up to the sampled ids' download: a backend may replay them as one unit.
            if self.decode_steps > 0 {
                self.sessions[0].backend().begin_step()?;
            }
            self.decode_steps += 1;
            self.hfs = self.sessions.iter_mut().map(|s| s.forward(&[f])).collect::<Result<Vec<_>>>()?;
        }
        let config = self.sessions[0].config();
        let position = self.sessions[0].len() - 1;
        self.out.steps += 1;
        match self.sampler.opts.kind {
            OutputKind::Audio => {
                let forbid = if self.reconstruction_phase { config.ids.audio_reason_card } else { 0 };
                let codes = sample_audio(&mut self.sessions, &self.hfs, &self.sampler, forbid, position)?;
                self.out.frames.push(codes);
                if codes.iter().all(|&c| c == config.stop_code()) {
                    self.out.stopped_by = Some(StopReason::Eos);
                } else {
                    if codes.iter().all(|&c| c == config.ids.reason_eos) {
                        self.reconstruction_phase = true;
                    } else if self.reconstruction_phase {
                        self.stored_recon.push(codes.map(|c| c.wrapping_sub(config.ids.audio_reason_card as u32)));
                    } else {
                        self.stored_reason.push(codes);
                    }
                    self.feedback = Some(Frame::Audio(codes));
                }
            }
            OutputKind::Text => {
                let id = sample_text(&mut self.sessions, &self.hfs, &self.sampler, position)?;
                if id == END_OF_TEXT {
                    self.out.stopped_by = Some(StopReason::Eos);
                } else {
                    self.out.text_ids.push(id);
                    self.feedback = Some(Frame::Text(id));
                }
            }
        }
        if self.out.stopped_by.is_none() && self.out.steps == self.sampler.opts.max_steps {
            self.out.stopped_by = Some(StopReason::MaxSteps);
        }
        Ok(self.out.stopped_by.is_none())
    }

    /// Steps run so far.
    pub fn steps(&self) -> usize {
        self.out.steps
    }

    /// Text ids sampled so far (text tasks), for streaming.
    pub fn text_ids(&self) -> &[u32] {
        &self.out.text_ids
    }

    /// The output with the reference's list handling (first stored frame of each phase dropped).
    pub fn finish(mut self) -> GenerateOutput {
        self.out.stopped_by.get_or_insert(StopReason::MaxSteps);
        self.out.reasoning = self.stored_reason.into_iter().skip(1).collect();
        self.out.reconstruction = self.stored_recon.into_iter().skip(1).collect();
        self.out
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
