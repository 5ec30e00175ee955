//! The whole decode: tokens -> windows -> RVQ conditioning -> flow sampling -> SQ decoder
//! -> cross-fade -> crop.

use std::path::Path;

use uniaudio_runtime::{ops, Backend, Tensor};

use crate::config::CodecConfig;
use crate::error::{CodecError, Result};
use crate::flow::{Flow, WindowInput};
use crate::load::Loader;
use crate::noise::Noise;
use crate::rvq::Rvq;
use crate::sq::SqDecoder;
use crate::synth::{CODEC_FILE, CONFIG_FILE, SQ_FILE};
use crate::window::{plan, stitch, StitchMode};

pub struct DecodeOptions {
    pub steps: usize,
    pub mode: StitchMode,
    pub noise: Noise,
}

/// Progress of a decode: (window, windows, step within the window, steps).
pub type Progress<'a> = &'a mut dyn FnMut(usize, usize, usize, usize);

/// Per-window results, for parity tests and benchmarks.
pub struct WindowTrace {
    pub latent: Vec<f32>,
    pub flow_seconds: f64,
    pub sq_seconds: f64,
}

pub struct Decoded {
    pub audio: Vec<f32>,
    pub windows: Vec<WindowTrace>,
}

pub struct Codec<B: Backend> {
    pub config: CodecConfig,
    rvq: Rvq<B>,
    flow: Flow<B>,
    sq: SqDecoder<B>,
}

impl<B: Backend> Codec<B> {
    /// Loads a codec directory (config.json, codec.safetensors, sqcodec.safetensors).
    pub fn load(backend: &B, dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            return Err(CodecError::config(dir, "not a codec directory"));
        }
        let config = CodecConfig::load(&dir.join(CONFIG_FILE))?;
        let codec = Loader::open(backend, &dir.join(CODEC_FILE))?;
        let sqf = Loader::open(backend, &dir.join(SQ_FILE))?;
        let rvq = Rvq::load(&codec, &config)?;
        let flow = Flow::load(&codec, &config)?;
        let sq = SqDecoder::load(&sqf, &config)?;
        let window_latents = config.sampler.window_latents(config.latents_per_token);
        let produced = sq.output_len(window_latents);
        if produced < config.sampler.window_samples {
            return Err(CodecError::config(
                dir.join(CONFIG_FILE),
                format!("the SQ decoder makes {produced} samples from a {window_latents}-frame window, fewer than sampler.window_samples {}", config.sampler.window_samples),
            ));
        }
        Ok(Codec { config, rvq, flow, sq })
    }

    /// Checks the token matrix: `num_codebooks` rows of equal, non-zero length, ids in range.
    pub fn check_tokens(&self, tokens: &[Vec<u32>]) -> Result<()> {
        let rows = self.config.num_codebooks;
        if tokens.len() != rows {
            return Err(CodecError::Tokens(format!("expected {rows} rows (one per codebook), got {}", tokens.len())));
        }
        let t = tokens[0].len();
        if t == 0 {
            return Err(CodecError::Tokens("no frames".into()));
        }
        if let Some((i, r)) = tokens.iter().enumerate().find(|(_, r)| r.len() != t) {
            return Err(CodecError::Tokens(format!("row {i} has {} frames, row 0 has {t}", r.len())));
        }
        self.rvq.check_tokens(tokens)
    }

    pub fn flow_flops_per_step(&self) -> f64 {
        self.flow.flops_per_step(2 * self.config.sampler.window_latents(self.config.latents_per_token))
    }

    pub fn sq_flops_per_window(&self) -> f64 {
        self.sq.flops(self.config.sampler.window_latents(self.config.latents_per_token))
    }

    /// Decodes `tokens[row][t]` (ids without the LM's offset) to samples at `sample_rate`.
    pub fn decode(&self, b: &B, tokens: &[Vec<u32>], opts: &DecodeOptions, progress: Progress) -> Result<Decoded> {
        self.decode_until(b, tokens, opts, progress, &|| false)
    }

    /// `decode`, ending early with `CodecError::Cancelled` once `stop` says so (it is
    /// asked after every Euler step).
    pub fn decode_until(&self, b: &B, tokens: &[Vec<u32>], opts: &DecodeOptions, progress: Progress, stop: &dyn Fn() -> bool) -> Result<Decoded> {
        self.check_tokens(tokens)?;
        if opts.steps == 0 {
            return Err(CodecError::Invalid("steps must be >= 1".into()));
        }
        let c = &self.config;
        let p = plan(c, tokens, opts.mode);
        let (w, lat) = (c.sampler.window_tokens, c.flow.latent_dim);
        let frames = w * c.latents_per_token;
        let mut audio = Vec::new();
        let mut windows: Vec<WindowTrace> = Vec::new();
        let n = p.starts.len();
        for (k, &start) in p.starts.iter().enumerate() {
            let t0 = std::time::Instant::now();
            let cols: Vec<Vec<u32>> = p.tokens.iter().map(|r| r[start..start + w].to_vec()).collect();
            let cond = self.rvq.cond(b, &cols)?;
            let mut context = vec![0f32; frames * lat];
            let incontext = if k == 0 { 0 } else { p.prefix_frames };
            if let Some(prev) = windows.last() {
                let src = &prev.latent[p.prefix_from * lat..(p.prefix_from + incontext) * lat];
                context[..incontext * lat].copy_from_slice(src);
            }
            let x0 = opts.noise.x0(k, frames, lat)?;
            let input = WindowInput { cond: &cond, x0: &x0, context: &context, incontext, steps: opts.steps };
            let mut step = 0;
            let latent: Tensor<B> = self.flow.sample(b, &input, &mut || {
                step += 1;
                progress(k, n, step, opts.steps);
                if stop() {
                    std::ops::ControlFlow::Break(())
                } else {
                    std::ops::ControlFlow::Continue(())
                }
            })?;
            let latent_host = ops::download_f32(b, &latent)?;
            let t1 = std::time::Instant::now();
            let mut y = self.sq.decode(b, &latent)?;
            y.truncate(c.sampler.window_samples);
            let t2 = std::time::Instant::now();
            stitch(&mut audio, &y, k == 0, &p);
            windows.push(WindowTrace { latent: latent_host, flow_seconds: (t1 - t0).as_secs_f64(), sq_seconds: (t2 - t1).as_secs_f64() });
        }
        audio.truncate(p.target_len);
        Ok(Decoded { audio, windows })
    }
}
