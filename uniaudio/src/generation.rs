//! Raw generation from prompt frames: streamed as an iterator of events, or many
//! requests at once through the continuously batched engine.

use std::collections::VecDeque;

use anyhow::{Context, Result};
use uniaudio_lm::{Engine, EngineOptions, Frame, GenerateOptions, GenerateOutput, Generator};
use uniaudio_runtime::{Backend, Cpu};
#[cfg(feature = "cuda")]
use uniaudio_runtime::Cuda;
#[cfg(feature = "wgpu")]
use uniaudio_runtime::Wgpu;

use crate::run::Models;

/// One event of a streamed generation.
#[derive(Clone, Debug)]
pub enum GenerateEvent {
    /// A sampled audio frame (phase-switch and stop frames included).
    Frame([u32; 8]),
    /// A sampled text id (the end of text is not reported as a token).
    Text(u32),
    /// The whole output, last.
    Done(GenerateOutput),
}

pub(crate) enum Inner<'a> {
    Cpu(Generator<'a, Cpu>),
    #[cfg(feature = "wgpu")]
    Wgpu(Generator<'a, Wgpu>),
    #[cfg(feature = "cuda")]
    Cuda(Generator<'a, Cuda>),
}

/// A generation in progress (`Model::generate`): each `next` runs one step when no event
/// is pending, and the last event is `Done`.
pub struct Generation<'a> {
    inner: Option<Inner<'a>>,
    pending: VecDeque<GenerateEvent>,
    /// Frames and text ids already reported.
    seen: (usize, usize),
}

impl<'a> Generation<'a> {
    pub(crate) fn new<B: Backend>(models: &'a Models<B>, b: &'a B, frames: &[Frame], options: &GenerateOptions, wrap: fn(Generator<'a, B>) -> Inner<'a>) -> Result<Self> {
        let lm = models.lm.as_ref().context("the LM is not loaded")?;
        let mut g = Generator::new(lm, b, frames, options)?;
        g.prefill()?;
        Ok(Generation { inner: Some(wrap(g)), pending: VecDeque::new(), seen: (0, 0) })
    }
}

/// One step of `g`: the new frames and text ids as events, and `Done` at the end.
fn step<B: Backend>(g: &mut Generator<'_, B>, seen: &mut (usize, usize), pending: &mut VecDeque<GenerateEvent>) -> Result<bool> {
    let more = g.step()?;
    if let Some(out) = g.output() {
        pending.extend(out.frames[seen.0..].iter().map(|&f| GenerateEvent::Frame(f)));
        pending.extend(out.text_ids[seen.1..].iter().map(|&t| GenerateEvent::Text(t)));
        *seen = (out.frames.len(), out.text_ids.len());
    }
    Ok(more)
}

impl Generation<'_> {
    /// The next event, asking `stop` before each step it runs: once it says so, the
    /// generation ends with [`Error::Cancelled`](crate::Error::Cancelled) (its caches
    /// dropped) and yields nothing more.
    pub fn next_until(&mut self, stop: &dyn Fn() -> bool) -> Option<crate::Result<GenerateEvent>> {
        while self.pending.is_empty() {
            let inner = self.inner.as_mut()?;
            if stop() {
                self.inner = None;
                return Some(Err(crate::run::cancelled()));
            }
            let stepped = match inner {
                Inner::Cpu(g) => step(g, &mut self.seen, &mut self.pending),
                #[cfg(feature = "wgpu")]
                Inner::Wgpu(g) => step(g, &mut self.seen, &mut self.pending),
                #[cfg(feature = "cuda")]
                Inner::Cuda(g) => step(g, &mut self.seen, &mut self.pending),
            };
            match stepped {
                Err(e) => {
                    self.inner = None;
                    return Some(Err(e.into()));
                }
                Ok(true) => {}
                Ok(false) => {
                    let out = match self.inner.take()? {
                        Inner::Cpu(g) => g.finish(),
                        #[cfg(feature = "wgpu")]
                        Inner::Wgpu(g) => g.finish(),
                        #[cfg(feature = "cuda")]
                        Inner::Cuda(g) => g.finish(),
                    };
                    self.pending.push_back(GenerateEvent::Done(out));
                }
            }
        }
        self.pending.pop_front().map(Ok)
    }
}

impl Iterator for Generation<'_> {
    type Item = crate::Result<GenerateEvent>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_until(&|| false)
    }
}

/// Every request through one engine of up to `max_batch` rows; results in input order
/// (a request refused at submission gets its error, the others still run). `stop` is
/// asked before each batched step; once it says so the whole batch ends with
/// `Error::Cancelled` (the engine, and every sequence's cache, dropped).
pub(crate) fn generate_batch<B: Backend>(models: &Models<B>, b: &B, requests: &[(Vec<Frame>, GenerateOptions)], max_batch: usize, stop: &dyn Fn() -> bool) -> Result<Vec<Result<GenerateOutput>>> {
    let lm = models.lm.as_ref().context("the LM is not loaded")?;
    let mut engine = Engine::new(lm, b, &EngineOptions { max_batch, kv_budget: None })?;
    let mut results: Vec<Option<Result<GenerateOutput>>> = (0..requests.len()).map(|_| None).collect();
    let mut index = std::collections::HashMap::new();
    for (i, (frames, options)) in requests.iter().enumerate() {
        match engine.submit(frames, options) {
            Ok(id) => {
                index.insert(id, i);
            }
            Err(e) => results[i] = Some(Err(e.into())),
        }
    }
    while !engine.is_idle() {
        crate::run::check_stop(stop)?;
        // A failed step is reported per request through `take_finished`.
        let _ = engine.step();
        for f in engine.take_finished() {
            results[index[&f.id]] = Some(f.result.map_err(|e| anyhow::Error::new(uniaudio_lm::LmError::Shared(e))));
        }
    }
    Ok(results.into_iter().map(|r| r.unwrap_or_else(|| Err(anyhow::anyhow!("the request did not finish")))).collect())
}
