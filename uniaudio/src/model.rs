//! One model on one backend, for programs that embed the runtime: load a bundle once,
//! then run any task. Parts load on first use (a TTS-only program never reads the encoder).
//!
//! ```no_run
//! use uniaudio::{Model, LoadOptions, Sampling};
//! let mut model = Model::load("models/uniaudio2", LoadOptions::default())?;
//! let speech = model.tts("Hello there.", &Sampling::default())?;
//! let text = model.transcribe(&speech)?;
//! # Ok::<(), uniaudio::Error>(())
//! ```

use std::path::{Path, PathBuf};

use anyhow::Context;
use uniaudio_codec::{DecodeOptions, Noise};
use uniaudio_lm::config::CODEBOOKS;
use uniaudio_lm::tasks::{AudioTokens, Task};
use uniaudio_lm::{Frame, GenerateOptions, GenerateOutput};
use uniaudio_runtime::{Backend, Precision};

use crate::backend::{AnyBackend, BackendKind};
use crate::error::{Error, Result};
use crate::paths::{ModelPaths, Part};
use crate::request::{AudioInput, CodecSettings, Event, Sampling, TaskOutput, TaskRequest, TaskText};
use crate::generation::{Generation, Inner};
use crate::run::{parts_for, Models};

/// How to load a model.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// The backend to run on (default: the best available).
    pub backend: BackendKind,
    /// `Exact` (default) or `Fast` (bf16 GEMM operands where the backend supports it).
    pub precision: Precision,
    /// A codec directory instead of the bundle's.
    pub codec: Option<PathBuf>,
    /// A tokenizer.json instead of the bundle's.
    pub tokenizer: Option<PathBuf>,
}

/// Mono audio samples and their rate.
#[derive(Clone, Debug, PartialEq)]
pub struct Audio {
    /// Samples in [-1, 1].
    pub samples: Vec<f32>,
    /// Samples per second.
    pub sample_rate: u32,
}

impl Audio {
    /// Reads an audio file (WAV, FLAC, MP3, Ogg/Vorbis; channels averaged to mono).
    pub fn read(path: impl AsRef<Path>) -> Result<Audio> {
        let a = uniaudio_audio::read_audio(path.as_ref()).map_err(|e| Error::Audio(e.to_string()))?;
        Ok(Audio { samples: a.samples, sample_rate: a.sample_rate })
    }

    /// The samples at the codec's 24 kHz.
    pub fn at_24k(&self) -> Result<Vec<f32>> {
        uniaudio_audio::check_rate(self.sample_rate, "audio").map_err(Error::invalid_input)?;
        Ok(uniaudio_audio::resample(&self.samples, self.sample_rate, 24_000))
    }
}

enum On {
    Cpu(uniaudio_runtime::Cpu, Models<uniaudio_runtime::Cpu>),
    #[cfg(feature = "wgpu")]
    Wgpu(uniaudio_runtime::Wgpu, Models<uniaudio_runtime::Wgpu>),
    #[cfg(feature = "cuda")]
    Cuda(uniaudio_runtime::Cuda, Models<uniaudio_runtime::Cuda>),
}

/// A model on a backend. Not shared between threads at once (`&mut self` per call).
pub struct Model {
    paths: ModelPaths,
    backend: String,
    on: On,
}

macro_rules! on {
    ($self:expr, |$b:ident, $m:ident| $body:expr) => {
        match &mut $self.on {
            On::Cpu($b, $m) => $body,
            #[cfg(feature = "wgpu")]
            On::Wgpu($b, $m) => $body,
            #[cfg(feature = "cuda")]
            On::Cuda($b, $m) => $body,
        }
    };
}

impl Model {
    /// Opens a bundle (or an LM directory with `codec`/`tokenizer` given) on a backend and
    /// loads the LM and tokenizer; the codec's parts load when a task first needs them.
    pub fn load(path: impl AsRef<Path>, options: LoadOptions) -> Result<Model> {
        let paths = ModelPaths::resolve(Some(path.as_ref()), options.codec.as_deref(), options.tokenizer.as_deref())?;
        let backend = AnyBackend::open(options.backend, options.precision)?;
        let mut model = Model::with_backend(paths, backend);
        model.ensure(&[Part::Lm, Part::Tokenizer], "loading")?;
        Ok(model)
    }

    /// A model over resolved paths on an opened backend; nothing is loaded yet.
    pub fn with_backend(paths: ModelPaths, backend: AnyBackend) -> Model {
        let name = backend.describe();
        let on = match backend {
            AnyBackend::Cpu(b) => On::Cpu(b, Models::default()),
            #[cfg(feature = "wgpu")]
            AnyBackend::Wgpu(b) => On::Wgpu(b, Models::default()),
            #[cfg(feature = "cuda")]
            AnyBackend::Cuda(b) => On::Cuda(b, Models::default()),
        };
        Model { paths, backend: name, on }
    }

    /// The backend in words.
    pub fn backend(&self) -> &str {
        &self.backend
    }

    /// Where the parts are.
    pub fn paths(&self) -> &ModelPaths {
        &self.paths
    }

    fn ensure(&mut self, parts: &[Part], what: &str) -> Result<()> {
        let paths = &self.paths;
        Ok(on!(self, |b, m| m.ensure(b, paths, parts, what))?)
    }

    /// Runs any task, reporting progress and streamed text through `events`.
    pub fn run(&mut self, req: &TaskRequest, events: &mut dyn FnMut(Event)) -> Result<TaskOutput> {
        self.run_until(req, events, &|| false)
    }

    /// `run`, ending early with [`Error::Cancelled`](crate::Error::Cancelled) once `stop`
    /// returns true (from another thread's flag, say). It is asked at the start, before each
    /// batch of chunks the encoder computes (one chunk on the CPU) and each generated step,
    /// and after each Euler step of the codec decoder, so a stop takes effect within one of
    /// those; the model stays usable.
    pub fn run_until(&mut self, req: &TaskRequest, events: &mut dyn FnMut(Event), stop: &dyn Fn() -> bool) -> Result<TaskOutput> {
        crate::run::check_stop(stop)?;
        self.ensure(&parts_for(req.task), req.task.name())?;
        Ok(on!(self, |b, m| m.run_until(b, req, events, stop))?)
    }

    fn text_task(&mut self, task: Task, audio: &Audio, question: Option<&str>, stop: &dyn Fn() -> bool) -> Result<String> {
        let text = TaskText { question: question.map(str::to_string), ..Default::default() };
        let req = TaskRequest { task, text, audio: Some(AudioInput::Samples24k(audio.at_24k()?)), sampling: Sampling::default(), codec: CodecSettings::default(), prompt_frames: None };
        Ok(self.run_until(&req, &mut |_| {}, stop)?.text.unwrap_or_default())
    }

    /// Speech recognition (the reference's greedy settings by default).
    pub fn transcribe(&mut self, audio: &Audio) -> Result<String> {
        self.transcribe_until(audio, &|| false)
    }

    /// `transcribe`, ending early with [`Error::Cancelled`](crate::Error::Cancelled) once
    /// `stop` returns true (asked as `run_until` asks it).
    pub fn transcribe_until(&mut self, audio: &Audio, stop: &dyn Fn() -> bool) -> Result<String> {
        self.text_task(Task::Asr, audio, None, stop)
    }

    /// A description of the sounds in `audio`.
    pub fn caption(&mut self, audio: &Audio) -> Result<String> {
        self.text_task(Task::AudioCaption, audio, None, &|| false)
    }

    /// The answer to `question` about `audio`.
    pub fn ask(&mut self, audio: &Audio, question: &str) -> Result<String> {
        self.text_task(Task::AudioUnderstanding, audio, Some(question), &|| false)
    }

    /// Text to speech with 50 codec steps.
    pub fn tts(&mut self, text: &str, sampling: &Sampling) -> Result<Audio> {
        let req = TaskRequest {
            task: Task::Tts,
            text: TaskText { text: Some(text.to_string()), ..Default::default() },
            audio: None,
            sampling: sampling.clone(),
            codec: CodecSettings::default(),
            prompt_frames: None,
        };
        let out = self.run(&req, &mut |_| {})?;
        let samples = out.audio.ok_or_else(|| Error::Internal("no audio was produced".into()))?;
        Ok(Audio { samples, sample_rate: out.sample_rate })
    }

    /// Streams a generation from prompt frames (as `uniaudio generate` takes them): one
    /// event per sampled frame or text id, then `Done` with the whole output. The prompt
    /// is checked and prefilled before this returns.
    pub fn generate(&mut self, frames: &[Frame], options: &GenerateOptions) -> Result<Generation<'_>> {
        self.ensure(&[Part::Lm], "generate")?;
        Ok(match &self.on {
            On::Cpu(b, m) => Generation::new(m, b, frames, options, Inner::Cpu),
            #[cfg(feature = "wgpu")]
            On::Wgpu(b, m) => Generation::new(m, b, frames, options, Inner::Wgpu),
            #[cfg(feature = "cuda")]
            On::Cuda(b, m) => Generation::new(m, b, frames, options, Inner::Cuda),
        }?)
    }

    /// Runs many generation requests together through the continuously batched engine
    /// (up to `max_batch` rows per step); results in input order, each exactly what the
    /// request gives alone.
    pub fn generate_batch(&mut self, requests: &[(Vec<Frame>, GenerateOptions)], max_batch: usize) -> Result<Vec<Result<GenerateOutput>>> {
        self.generate_batch_until(requests, max_batch, &|| false)
    }

    /// `generate_batch`, the whole batch ending early with
    /// [`Error::Cancelled`](crate::Error::Cancelled) once `stop` returns true (asked before
    /// each batched step).
    pub fn generate_batch_until(&mut self, requests: &[(Vec<Frame>, GenerateOptions)], max_batch: usize, stop: &dyn Fn() -> bool) -> Result<Vec<Result<GenerateOutput>>> {
        crate::run::check_stop(stop)?;
        self.ensure(&[Part::Lm], "generate")?;
        let results = on!(self, |b, m| crate::generation::generate_batch(m, b, requests, max_batch, stop))?;
        Ok(results.into_iter().map(|r| r.map_err(Error::from)).collect())
    }

    /// Audio to reasoning and reconstruction tokens.
    pub fn encode(&mut self, audio: &Audio) -> Result<AudioTokens> {
        self.encode_until(audio, &|| false)
    }

    /// `encode`, ending early with [`Error::Cancelled`](crate::Error::Cancelled) once
    /// `stop` returns true (asked at the start and before each batch of chunks).
    pub fn encode_until(&mut self, audio: &Audio, stop: &dyn Fn() -> bool) -> Result<AudioTokens> {
        crate::run::check_stop(stop)?;
        self.ensure(&[Part::Encoder], "encode")?;
        let samples = audio.at_24k()?;
        Ok(on!(self, |b, m| encode_on(b, m, &samples, stop))?)
    }

    /// Reconstruction tokens to 24 kHz audio (`steps` Euler steps, noise seeded by `seed`).
    pub fn decode(&mut self, tokens: &AudioTokens, steps: usize, seed: u64) -> Result<Audio> {
        self.decode_until(tokens, steps, seed, &|| false)
    }

    /// `decode`, ending early with [`Error::Cancelled`](crate::Error::Cancelled) once
    /// `stop` returns true (asked at the start and after each Euler step).
    pub fn decode_until(&mut self, tokens: &AudioTokens, steps: usize, seed: u64, stop: &dyn Fn() -> bool) -> Result<Audio> {
        if !(1..=crate::request::MAX_CODEC_STEPS).contains(&steps) {
            return Err(Error::invalid_input(format!("steps must be 1..={}, got {steps}", crate::request::MAX_CODEC_STEPS)));
        }
        crate::run::check_stop(stop)?;
        self.ensure(&[Part::Decoder], "decode")?;
        let rows: Vec<Vec<u32>> = (0..CODEBOOKS).map(|r| tokens.reconstruction.iter().map(|f| f[r]).collect()).collect();
        let opts = DecodeOptions { steps, mode: uniaudio_codec::StitchMode::Reference, noise: Noise::Seeded(seed) };
        on!(self, |b, m| {
            let codec = m.codec.as_ref().context("no codec decoder")?;
            let out = codec.decode_until(b, &rows, &opts, &mut |_, _, _, _| {}, stop).map_err(anyhow::Error::from)?;
            Ok(Audio { samples: out.audio, sample_rate: codec.config.sample_rate })
        })
    }
}

fn encode_on<B: Backend>(b: &B, m: &Models<B>, samples: &[f32], stop: &dyn Fn() -> bool) -> anyhow::Result<AudioTokens> {
    let encoder = m.encoder.as_ref().context("no codec encoder")?;
    crate::run::audio_tokens(encoder.encode_until(b, samples, &mut |_, _| {}, stop)?)
}

// A model moves between threads (a binding releases its interpreter lock around calls).
const _: fn() = || {
    fn send<T: Send>() {}
    send::<Model>();
};
