//! Every task in one call: encode the input audio, build the prompt, generate (streaming
//! text as it comes), then detokenise or decode to a waveform. Only the parts a task needs
//! are loaded, and an input too long for the context is refused before any encoding.

use std::time::Instant;

use anyhow::{bail, Context, Result};
use uniaudio_codec::encode::{check_finite, ChunkPlan, Encoder, EncoderConfig};
use uniaudio_codec::{Codec, DecodeOptions, Noise};
use uniaudio_lm::config::CODEBOOKS;
use uniaudio_lm::tasks::{build_prompt, AudioTokens, BuiltPrompt, Task, TaskInputs};
use uniaudio_lm::tokenizer::TextTokenizer;
use uniaudio_lm::{GenerateOptions, GenerateOutput, Generator, LmConfig, OutputKind, StopReason, UniAudioLm};
use uniaudio_runtime::Backend;

use crate::error::refuse;
use crate::long_form;
use crate::paths::{ModelPaths, Part};
use crate::request::{check_text_inputs, takes_audio, AudioInput, Event, Sampling, Stage, TaskOutput, TaskRequest, Timings, MAX_CODEC_STEPS};
use crate::text_stream::TextStream;

/// The reference's caps: 500 text tokens; audio tasks may run longer (about 85 s of audio).
const TEXT_STEPS: usize = 500;
const AUDIO_STEPS: usize = 1500;
const SAMPLE_RATE: usize = 24_000;
/// A transcription prompt leaving fewer steps than this is split into windows instead.
const MIN_ROOM: usize = 200;

/// The loaded parts of a model. Parts load on first need and stay loaded, so one value
/// serves any number of tasks.
pub struct Models<B: Backend> {
    /// The LM.
    pub lm: Option<UniAudioLm<B>>,
    /// The text tokenizer.
    pub tokenizer: Option<TextTokenizer>,
    /// The codec encoder.
    pub encoder: Option<Encoder<B>>,
    /// The codec decoder.
    pub codec: Option<Codec<B>>,
}

/// A task ready for the LM: its prompt and generation settings.
pub struct Prepared {
    /// The prompt frames and the task's instruction and sampler defaults.
    pub prompt: BuiltPrompt,
    /// The generation settings.
    pub opts: GenerateOptions,
    /// The encoded input audio, if any.
    pub input_tokens: Option<AudioTokens>,
    /// Seconds of input audio, if any.
    pub input_seconds: Option<f64>,
    /// Time spent so far.
    pub timings: Timings,
    start: Instant,
}

/// What `Models::prepare` found.
pub enum Preparation {
    /// Ready to generate.
    Ready(Prepared),
    /// The input is too long for one prompt: the task runs window by window (`run`).
    Windows,
}

/// The parts `task` reads.
pub fn parts_for(task: Task) -> Vec<Part> {
    let mut parts = vec![Part::Lm, Part::Tokenizer];
    if takes_audio(task) {
        parts.push(Part::Encoder);
    }
    if task.output_kind() == OutputKind::Audio {
        parts.push(Part::Decoder);
    }
    parts
}

impl<B: Backend> Default for Models<B> {
    fn default() -> Self {
        Models { lm: None, tokenizer: None, encoder: None, codec: None }
    }
}

impl<B: Backend> Models<B> {
    /// Loads the `parts` not loaded yet: every path is checked first, then the codec parts
    /// (their errors come before the LM's larger load), then the LM and tokenizer. `what`
    /// names the work in errors.
    pub fn ensure(&mut self, bk: &B, paths: &ModelPaths, parts: &[Part], what: &str) -> Result<()> {
        paths.require_all(parts, what)?;
        if parts.contains(&Part::Decoder) && self.codec.is_none() {
            let dir = paths.require(Part::Decoder, what)?;
            self.codec = Some(Codec::load(bk, dir).with_context(|| format!("loading codec decoder {}", dir.display()))?);
        }
        if parts.contains(&Part::Encoder) && self.encoder.is_none() {
            let dir = paths.require(Part::Encoder, what)?;
            self.encoder = Some(Encoder::load(bk, dir).with_context(|| format!("loading codec encoder {}", dir.display()))?);
        }
        if parts.contains(&Part::Tokenizer) && self.tokenizer.is_none() {
            self.tokenizer = Some(TextTokenizer::from_file(paths.require(Part::Tokenizer, what)?)?);
        }
        if parts.contains(&Part::Lm) && self.lm.is_none() {
            let dir = paths.require(Part::Lm, what)?;
            self.lm = Some(UniAudioLm::load(bk, dir).with_context(|| format!("loading model {}", dir.display()))?);
        }
        Ok(())
    }

    fn lm(&self) -> Result<&UniAudioLm<B>> {
        self.lm.as_ref().context("the LM is not loaded")
    }

    fn tokenizer(&self) -> Result<&TextTokenizer> {
        self.tokenizer.as_ref().context("the tokenizer is not loaded")
    }

    /// Runs `req`, reporting progress and streamed text through `events`.
    pub fn run(&self, bk: &B, req: &TaskRequest, events: &mut dyn FnMut(Event)) -> Result<TaskOutput> {
        self.run_until(bk, req, events, &|| false)
    }

    /// `run`, ending early with `Error::Cancelled` once `stop` says so. It is asked at the
    /// start, before each batch of chunks the encoder computes (one chunk on the CPU),
    /// each generated step, and after each Euler step of the codec.
    pub fn run_until(&self, bk: &B, req: &TaskRequest, events: &mut dyn FnMut(Event), stop: &dyn Fn() -> bool) -> Result<TaskOutput> {
        check_stop(stop)?;
        let prepared = match self.prepare_until(bk, req, events, stop)? {
            Preparation::Ready(p) => p,
            Preparation::Windows => {
                let Some(AudioInput::Samples24k(samples)) = &req.audio else { bail!("long-form windows need input samples") };
                return self.run_windows(bk, req, samples, Instant::now(), events, stop);
            }
        };
        let mut g = Generator::new(self.lm()?, bk, &prepared.prompt.frames, &prepared.opts)?;
        let mut timings = prepared.timings.clone();
        let t = Instant::now();
        g.prefill()?;
        timings.prefill_s = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let mut stream = TextStream::new(self.tokenizer()?);
        let mut streamed = 0;
        loop {
            check_stop(stop)?;
            let more = g.step()?;
            for &id in &g.text_ids()[streamed..] {
                let piece = stream.push(id);
                if !piece.is_empty() {
                    events(Event::Text(&piece));
                }
            }
            streamed = g.text_ids().len();
            events(Event::Progress { stage: Stage::Generate, done: g.steps(), total: prepared.opts.max_steps });
            if !more {
                break;
            }
        }
        let rest = stream.finish();
        if !rest.is_empty() {
            events(Event::Text(&rest));
        }
        let generated = g.finish();
        timings.generate_s = t.elapsed().as_secs_f64();
        self.finish_until(bk, req, Prepared { timings, ..prepared }, generated, events, stop)
    }

    /// Everything before generation: checks, input encoding and the prompt. An input too
    /// long for one prompt of a task that can be windowed gives `Preparation::Windows`.
    pub fn prepare(&self, bk: &B, req: &TaskRequest, events: &mut dyn FnMut(Event)) -> Result<Preparation> {
        self.prepare_until(bk, req, events, &|| false)
    }

    /// `prepare`, its encoding ended early (`Error::Cancelled`) once `stop` says so.
    pub fn prepare_until(&self, bk: &B, req: &TaskRequest, events: &mut dyn FnMut(Event), stop: &dyn Fn() -> bool) -> Result<Preparation> {
        let start = Instant::now();
        let task = req.task;
        check_text_inputs(task, &req.text)?;
        if task.output_kind() == OutputKind::Audio && !(1..=MAX_CODEC_STEPS).contains(&req.codec.steps) {
            refuse!("codec steps must be 1..={MAX_CODEC_STEPS}, got {}", req.codec.steps);
        }
        let mut timings = Timings::default();
        let config = &self.lm()?.config;

        // Positions first, from the audio's length alone: a long input is refused before encoding.
        let (input_tokens, input_seconds) = match (&req.audio, takes_audio(task)) {
            (None, true) => refuse!("task {} needs input audio", task.name()),
            (Some(_), false) => refuse!("task {} takes no input audio", task.name()),
            (None, false) => (None, None),
            (Some(AudioInput::Tokens(t)), true) => (Some(t.clone()), None),
            (Some(AudioInput::Samples24k(samples)), true) => {
                let encoder = self.encoder.as_ref().context("no codec encoder loaded")?;
                let seconds = samples.len() as f64 / SAMPLE_RATE as f64;
                if samples.is_empty() {
                    refuse!("the input audio has no samples");
                }
                // Before windowing: long audio is encoded in windows, whose times would not
                // be the input's.
                check_finite(samples)?;
                let placeholder = placeholder_tokens(&encoder.config, samples.len());
                let prompt = self.prompt(req, Some(placeholder))?;
                let room = (config.max_seq_len + 1).saturating_sub(prompt.frames.len());
                if room < MIN_ROOM && long_form::windowable(task) && req.prompt_frames.is_none() && samples.len() > long_form::WINDOW_SECONDS * SAMPLE_RATE {
                    return Ok(Preparation::Windows);
                }
                // Only the refusal matters here; the budget is reported once, below.
                step_budget(config, task, prompt.frames.len(), &req.sampling, Some(seconds), &mut |_| {})?;
                let t = Instant::now();
                events(Event::Note(format!("encoding {seconds:.2} s of audio")));
                let tokens = encoder.encode_until(bk, samples, &mut |done, total| events(Event::Progress { stage: Stage::Encode, done, total }), stop)?;
                timings.encode_s = t.elapsed().as_secs_f64();
                (Some(audio_tokens(tokens)?), Some(seconds))
            }
        };

        let mut prompt = self.prompt(req, input_tokens.clone())?;
        if let Some(frames) = &req.prompt_frames {
            prompt.frames = frames.clone();
        }
        let max_steps = step_budget(config, task, prompt.frames.len(), &req.sampling, input_seconds, events)?;
        let opts = GenerateOptions {
            kind: task.output_kind(),
            top_k: req.sampling.top_k.unwrap_or(prompt.top_k),
            temperature: req.sampling.temperature.unwrap_or(prompt.temperature),
            seed: req.sampling.seed,
            max_steps,
            cfg_scale: req.sampling.cfg_scale,
        };
        Ok(Preparation::Ready(Prepared { prompt, opts, input_tokens, input_seconds, timings, start }))
    }

    /// Everything after generation: the text detokenised, or the reconstruction frames
    /// decoded to a waveform.
    pub fn finish(&self, bk: &B, req: &TaskRequest, prepared: Prepared, generated: GenerateOutput, events: &mut dyn FnMut(Event)) -> Result<TaskOutput> {
        self.finish_until(bk, req, prepared, generated, events, &|| false)
    }

    /// `finish`, its codec decoding ended early (`Error::Cancelled`) once `stop` says so.
    pub fn finish_until(&self, bk: &B, req: &TaskRequest, prepared: Prepared, generated: GenerateOutput, events: &mut dyn FnMut(Event), stop: &dyn Fn() -> bool) -> Result<TaskOutput> {
        let Prepared { prompt, opts, input_tokens, input_seconds, mut timings, start } = prepared;
        let task = req.task;
        let config = &self.lm()?.config;
        let (text, audio) = match task.output_kind() {
            OutputKind::Text => (Some(self.tokenizer()?.decode(&generated.text_ids)?), None),
            OutputKind::Audio => {
                let codec = self.codec.as_ref().context("no codec decoder loaded")?;
                if generated.reconstruction.is_empty() {
                    refuse!(
                        "the LM produced no reconstruction frames within {} steps (stopped by {}); raise --max-steps or change --seed",
                        opts.max_steps,
                        stop_name(generated.stopped_by)
                    );
                }
                let rows: Vec<Vec<u32>> = (0..CODEBOOKS).map(|r| generated.reconstruction.iter().map(|f| f[r]).collect()).collect();
                let decode = DecodeOptions { steps: req.codec.steps, mode: req.codec.mode, noise: Noise::Seeded(req.sampling.seed) };
                let t = Instant::now();
                let out = codec
                    .decode_until(bk, &rows, &decode, &mut |w, n, s, steps| events(Event::Progress { stage: Stage::Decode, done: w * steps + s, total: n * steps }), stop)
                    .context("decoding the generated tokens")?;
                timings.decode_s = t.elapsed().as_secs_f64();
                (None, Some(out.audio))
            }
        };
        timings.total_s = start.elapsed().as_secs_f64();
        Ok(TaskOutput {
            task,
            text,
            audio,
            sample_rate: SAMPLE_RATE as u32,
            stopped_by: generated.stopped_by.unwrap_or(StopReason::MaxSteps),
            generated,
            top_k: opts.top_k,
            temperature: opts.temperature,
            seed: opts.seed,
            max_steps: opts.max_steps,
            instruction: prompt.instruction,
            prompt_positions: prompt.frames.len(),
            max_seq_len: config.max_seq_len,
            input_tokens,
            input_seconds,
            windows: Vec::new(),
            timings,
        })
    }

    /// A recording too long for one prompt, transcribed window by window (see `long_form`).
    fn run_windows(&self, bk: &B, req: &TaskRequest, samples: &[f32], start: Instant, events: &mut dyn FnMut(Event), stop: &dyn Fn() -> bool) -> Result<TaskOutput> {
        let plan = long_form::windows(samples);
        let seconds = |i: usize| i as f64 / SAMPLE_RATE as f64;
        events(Event::Note(format!(
            "{:.1} s of audio is too long for one prompt: transcribing {} windows of at most {} s, cut at the quietest moments",
            seconds(samples.len()),
            plan.len(),
            long_form::WINDOW_SECONDS
        )));
        let mut merged: Option<TaskOutput> = None;
        for range in &plan {
            let window = req.with_audio(Some(AudioInput::Samples24k(samples[range.clone()].to_vec())));
            if merged.as_ref().is_some_and(|m| m.text.as_deref().is_some_and(|t| !t.is_empty())) {
                events(Event::Text(" "));
            }
            let out = self.run_until(bk, &window, events, stop)?;
            merged = Some(match merged {
                None => out,
                Some(mut m) => {
                    m.text = Some(long_form::join(m.text.take().unwrap_or_default(), out.text.as_deref().unwrap_or_default()));
                    m.generated.text_ids.extend(&out.generated.text_ids);
                    m.generated.steps += out.generated.steps;
                    m.stopped_by = out.stopped_by;
                    m.prompt_positions = m.prompt_positions.max(out.prompt_positions);
                    if let (Some(t), Some(u)) = (&mut m.input_tokens, out.input_tokens) {
                        t.reasoning.extend(u.reasoning);
                        t.reconstruction.extend(u.reconstruction);
                    }
                    let (t, u) = (&mut m.timings, &out.timings);
                    t.encode_s += u.encode_s;
                    t.prefill_s += u.prefill_s;
                    t.generate_s += u.generate_s;
                    m
                }
            });
        }
        let mut out = merged.context("no windows")?;
        out.input_seconds = Some(seconds(samples.len()));
        out.windows = plan.iter().map(|r| (seconds(r.start), seconds(r.end))).collect();
        out.timings.total_s = start.elapsed().as_secs_f64();
        Ok(out)
    }

    fn prompt(&self, req: &TaskRequest, audio: Option<AudioTokens>) -> Result<BuiltPrompt> {
        let t = &req.text;
        let inputs = TaskInputs {
            text: t.text.clone(),
            caption: t.caption.clone(),
            lyrics: t.lyrics.clone(),
            question: t.question.clone(),
            audio,
            instruction: t.instruction.clone(),
        };
        Ok(build_prompt(&self.lm()?.config, self.tokenizer()?, req.task, &inputs, req.sampling.seed)?)
    }
}

/// The error of a run its caller stopped.
pub(crate) fn cancelled() -> crate::error::Error {
    crate::error::Error::Cancelled("cancelled".into())
}

/// `cancelled()` once `stop` says so: the check a stoppable call makes at its start and
/// between its units of work.
pub(crate) fn check_stop(stop: &dyn Fn() -> bool) -> std::result::Result<(), crate::error::Error> {
    if stop() {
        return Err(cancelled());
    }
    Ok(())
}

/// The steps a task runs at most when the request does not say (text 500, audio 1500).
pub fn default_max_steps(task: Task) -> usize {
    if task.output_kind() == OutputKind::Text {
        TEXT_STEPS
    } else {
        AUDIO_STEPS
    }
}

/// The step cap for a prompt of `prompt` positions: the asked `max_steps` if it fits the
/// context (and the `step_limit`), else an error with the numbers; by default the task's
/// cap, lowered to the `step_limit`, reduced to what fits (with a note).
pub fn step_budget(config: &LmConfig, task: Task, prompt: usize, sampling: &Sampling, seconds: Option<f64>, events: &mut dyn FnMut(Event)) -> Result<usize> {
    let asked = sampling.max_steps;
    let max = config.max_seq_len;
    // The last of n steps runs at position prompt + n − 2: n ≤ max + 1 − prompt.
    let room = (max + 1).saturating_sub(prompt);
    let audio = match seconds {
        Some(s) => format!("{s:.1} s of input audio make a prompt of {prompt} positions"),
        None => format!("the prompt has {prompt} positions"),
    };
    if room < 2 {
        let per_second = 17.5;
        let hint = match seconds {
            Some(s) => {
                let fixed = prompt as f64 - s * per_second;
                format!("; inputs up to about {:.0} s fit", ((max as f64 - 2.0 - fixed) / per_second).max(0.0))
            }
            None => String::new(),
        };
        refuse!("{audio}, which leaves no room to generate within max_seq_len {max}{hint}");
    }
    if let (Some(n), Some(limit)) = (asked, sampling.step_limit) {
        if n > limit {
            refuse!("max_steps {n} is above the limit of {limit}");
        }
    }
    let cap = default_max_steps(task).min(sampling.step_limit.unwrap_or(usize::MAX));
    match asked {
        Some(0) => refuse!("--max-steps must be at least 1"),
        Some(n) if n > room => refuse!("{audio}; with --max-steps {n} it needs {} positions, more than max_seq_len {max} (at most {room} steps fit)", prompt + n - 1),
        Some(n) => Ok(n),
        None if cap > room => {
            events(Event::Note(format!("{audio}: at most {room} steps fit in max_seq_len {max} (the task's cap is {cap})")));
            Ok(room)
        }
        None => Ok(cap),
    }
}

/// Zero tokens of the counts the encoder will produce for `samples`, to size the prompt.
fn placeholder_tokens(c: &EncoderConfig, samples: usize) -> AudioTokens {
    let plan = ChunkPlan::new(samples, &c.chunking);
    AudioTokens { reasoning: vec![[0; CODEBOOKS]; plan.reasoning_frames], reconstruction: vec![[0; CODEBOOKS]; plan.reconstruction_frames] }
}

/// The encoder's tokens as the LM's input frames.
pub fn audio_tokens(t: uniaudio_codec::encode::Tokens) -> Result<AudioTokens> {
    Ok(AudioTokens { reasoning: frames(t.reasoning)?, reconstruction: frames(t.reconstruction)? })
}

/// Encoder frames (eight codes each) as the LM's frame arrays.
fn frames(rows: Vec<Vec<u32>>) -> Result<Vec<[u32; CODEBOOKS]>> {
    rows.into_iter()
        .map(|f| <[u32; CODEBOOKS]>::try_from(f.as_slice()).map_err(|_| anyhow::anyhow!("the encoder produced a frame of {} codes, the LM reads {CODEBOOKS}", f.len())))
        .collect()
}

/// `eos` or `max_steps`.
pub fn stop_name(s: Option<StopReason>) -> &'static str {
    match s {
        Some(StopReason::Eos) => "eos",
        _ => "max_steps",
    }
}

#[cfg(test)]
mod tests {
    use super::{step_budget, Sampling, Task};
    use uniaudio_lm::presets::Preset;

    #[test]
    fn a_step_limit_lowers_the_default_cap_and_still_fits_long_prompts() {
        let config = Preset::Small.config();
        let room = config.max_seq_len + 1;
        let budget = |task, prompt: usize, max_steps, step_limit| step_budget(&config, task, prompt, &Sampling { max_steps, step_limit, ..Sampling::default() }, None, &mut |_| {});
        // Below the tasks' caps (text 500, audio 1500) the limit is the default.
        assert_eq!(budget(Task::Tts, 10, None, Some(100)).unwrap(), 100);
        assert_eq!(budget(Task::Asr, 10, None, Some(100)).unwrap(), 100);
        // Above a task's cap the task keeps its own.
        assert_eq!(budget(Task::Asr, 10, None, Some(1500)).unwrap(), 500);
        // A prompt that leaves less room than the limit is shortened, not refused.
        assert_eq!(budget(Task::Tts, room - 50, None, Some(100)).unwrap(), 50);
        assert_eq!(budget(Task::Tts, 10, Some(40), Some(100)).unwrap(), 40);
        let refused = budget(Task::Tts, 10, Some(101), Some(100)).unwrap_err();
        assert!(refused.to_string().contains("limit of 100"), "{refused}");
    }
}
