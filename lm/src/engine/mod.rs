//! Continuous batching: many independent sequences decode in one step, each weight read
//! once for all of them.
//!
//! Requests are submitted at any time and wait in a FIFO queue; between steps, waiting
//! requests join while the batch has rows (`max_batch`; a CFG request takes two) and the
//! KV budget has room for their caches. A joiner's prompt is prefilled on its own; then
//! every running sequence steps together: one forward pass over one row per sequence
//! (each attending over its own cache), then the heads over all rows at once. A
//! sequence leaves as soon as it stops, freeing its caches.
//!
//! A sequence's output does not depend on what else is in the batch: every product runs
//! with `RowOrder::Invariant` (each row computed as it would be alone), attention and the
//! cache writes run per sequence, and each sequence samples from its own counter-based
//! RNG streams. `Generator` is this engine with one request.

mod kv_pool;
mod sequence;
mod step;

use std::collections::VecDeque;

use uniaudio_runtime::{ops, Backend, DType, RowOrder, Tensor};

use crate::config::DECODER_POSITIONS;
use crate::error::{LmError, Result};
use crate::forward::{cache_bytes, Runner, SeqCache, Segment};
use crate::frame::Frame;
use crate::generate::{check_request, negative_prompt, GenerateOptions, GenerateOutput, StopReason};
use crate::heads::Heads;
use crate::UniAudioLm;

pub use kv_pool::{rows_for, KvPool, BLOCK_POSITIONS};
use sequence::Track;

/// Identifies a submitted request.
pub type RequestId = u64;

#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// Most rows decoded per step (a CFG request takes two).
    pub max_batch: usize,
    /// Bytes the running sequences' KV caches may hold together; `None`: half the memory
    /// the backend reports free, or room for `max_batch` rows at `max_seq_len` where it
    /// reports nothing.
    pub kv_budget: Option<usize>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions { max_batch: 16, kv_budget: None }
    }
}

/// What one step produced, in batch order.
#[derive(Clone, Debug, PartialEq)]
pub enum EngineEvent {
    /// A sampled audio frame (including phase-switch and stop frames).
    Frame { id: RequestId, codes: [u32; 8] },
    /// A sampled text id (end-of-text is not reported as a token).
    Text { id: RequestId, token: u32 },
    /// The request's output is ready in `take_finished`.
    Finished { id: RequestId, stopped_by: StopReason },
    /// The request failed; its error is in `take_finished`.
    Failed { id: RequestId, error: String },
}

/// A request that left the engine.
#[derive(Debug)]
pub struct Finished {
    pub id: RequestId,
    /// The output, or the error that failed the request after it was accepted (its
    /// prefill or a step; shared with the other requests the step failed).
    pub result: std::result::Result<GenerateOutput, std::sync::Arc<LmError>>,
}

struct Waiting {
    id: RequestId,
    prompt: Vec<Frame>,
    opts: GenerateOptions,
    capacity: usize,
    bytes: usize,
}

struct Sequence<B: Backend> {
    id: RequestId,
    cond: SeqCache<B>,
    uncond: Option<SeqCache<B>>,
    /// h_final of the prompt's last position (cond, uncond rows) until the first sample.
    first_hf: Option<Tensor<B>>,
    track: Track,
    bytes: usize,
}

impl<B: Backend> Sequence<B> {
    fn rows(&self) -> usize {
        rows_for(&self.track.opts)
    }
}

/// Device buffers of a step, for up to `capacity` rows.
struct StepBuffers<B: Backend> {
    capacity: usize,
    hf: Tensor<B>,     // [cap, d]: every row's h_final, in plan order
    picked: Tensor<B>, // [cap, d]: the rows of one kind, gathered
    iota: Tensor<B>,   // [cap] u32: 0, 1, 2, ...
    gather: Tensor<B>, // [2 · cap] u32: text rows, then audio rows
    text: Tensor<B>,   // [cap] u32 sampled ids
    codes: Tensor<B>,  // [8 · cap] u32: codebook i's codes at i · cap + row
}

impl<B: Backend> StepBuffers<B> {
    fn new(b: &B, d: usize, capacity: usize) -> Result<Self> {
        let iota: Vec<u32> = (0..capacity as u32).collect();
        Ok(StepBuffers {
            capacity,
            hf: b.alloc(DType::F32, &[capacity, d])?,
            picked: b.alloc(DType::F32, &[capacity, d])?,
            iota: ops::upload_u32(b, &[capacity], &iota)?,
            gather: b.alloc(DType::U32, &[2 * capacity])?,
            text: b.alloc(DType::U32, &[capacity])?,
            codes: b.alloc(DType::U32, &[DECODER_POSITIONS * capacity])?,
        })
    }
}

pub struct Engine<'m, B: Backend> {
    lm: &'m UniAudioLm<B>,
    b: &'m B,
    max_batch: usize,
    pool: KvPool,
    runner: Runner<B>,
    heads: Heads<B>,
    buffers: StepBuffers<B>,
    waiting: VecDeque<Waiting>,
    active: Vec<Sequence<B>>,
    finished: Vec<Finished>,
    /// `Failed` events of requests whose prefill failed, for the next step's events.
    failed_in_admission: Vec<EngineEvent>,
    next_id: RequestId,
    /// The previous step's batch shape, when it had no joiners: a step of the same shape
    /// enqueues the same ops and may be recorded and replayed (`Backend::begin_step`).
    last_shape: Option<Vec<(crate::OutputKind, bool)>>,
    steps: u64,
    /// Test hooks: the next batched step, or the next prefill, panics.
    panic_next_step: bool,
    panic_next_prefill: bool,
}

impl<'m, B: Backend> Engine<'m, B> {
    pub fn new(lm: &'m UniAudioLm<B>, b: &'m B, opts: &EngineOptions) -> Result<Self> {
        let c = &lm.config;
        if opts.max_batch == 0 {
            return Err(LmError::Invalid("max_batch must be at least 1".into()));
        }
        let full = cache_bytes(c, c.max_seq_len) * opts.max_batch;
        let budget = opts.kv_budget.unwrap_or_else(|| b.memory_available().map_or(full, |free| (free / 2).min(full)));
        let mut runner = Runner::new(b, c)?;
        runner.reserve(b, c, opts.max_batch)?;
        Ok(Engine {
            lm,
            b,
            max_batch: opts.max_batch,
            pool: KvPool::new(budget),
            runner,
            heads: Heads::new(b, c, opts.max_batch)?,
            buffers: StepBuffers::new(b, c.stacks.backbone.n_embd, opts.max_batch)?,
            waiting: VecDeque::new(),
            active: Vec::new(),
            finished: Vec::new(),
            failed_in_admission: Vec::new(),
            next_id: 0,
            last_shape: None,
            steps: 0,
            panic_next_step: false,
            panic_next_prefill: false,
        })
    }

    /// Queues a request after checking it (prompt ids, options, positions) and that its
    /// caches can ever fit the KV budget.
    pub fn submit(&mut self, prompt: &[Frame], opts: &GenerateOptions) -> Result<RequestId> {
        let c = &self.lm.config;
        check_request(c, prompt, opts)?;
        let rows = rows_for(opts);
        if rows > self.max_batch {
            return Err(LmError::Invalid(format!("a guided request takes 2 rows, but the batch holds at most {}", self.max_batch)));
        }
        let (capacity, bytes) = KvPool::reservation(c, prompt.len(), opts);
        if bytes > self.pool.budget() {
            return Err(LmError::Invalid(format!(
                "the request needs {:.1} MiB of KV cache ({capacity} positions{}), more than the whole KV budget of {:.1} MiB",
                mib(bytes),
                if rows == 2 { " × 2 for guidance" } else { "" },
                mib(self.pool.budget())
            )));
        }
        let id = self.next_id;
        self.next_id += 1;
        self.waiting.push_back(Waiting { id, prompt: prompt.to_vec(), opts: opts.clone(), capacity, bytes });
        Ok(id)
    }

    /// Removes a waiting or running request (its caches are freed at once); false if unknown.
    pub fn cancel(&mut self, id: RequestId) -> bool {
        if let Some(i) = self.waiting.iter().position(|w| w.id == id) {
            self.waiting.remove(i);
            return true;
        }
        match self.active.iter().position(|s| s.id == id) {
            Some(i) => {
                let seq = self.active.remove(i);
                self.pool.release(seq.bytes);
                self.last_shape = None;
                true
            }
            None => false,
        }
    }

    /// Admits waiting requests in order while rows and KV budget allow, prefilling each.
    /// Returns how many joined. A request whose prefill fails (or panics) finishes with the
    /// error, reported in `take_finished` and as `EngineEvent::Failed` among the next
    /// step's events; the others go on.
    pub fn admit(&mut self) -> usize {
        let mut joined = 0;
        while let Some(w) = self.waiting.front() {
            if self.rows() + rows_for(&w.opts) > self.max_batch || !self.pool.try_reserve(w.bytes) {
                break;
            }
            let w = self.waiting.pop_front().expect("front exists");
            let prefilled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.prefill(&w)))
                .unwrap_or_else(|panic| Err(LmError::StepPanicked(format!("a request's prefill panicked: {}", crate::error::panic_message(&*panic).unwrap_or("unknown panic")))));
            match prefilled {
                Ok(seq) => {
                    self.active.push(seq);
                    joined += 1;
                }
                Err(e) => {
                    self.pool.release(w.bytes);
                    self.failed_in_admission.push(EngineEvent::Failed { id: w.id, error: e.to_string() });
                    self.finished.push(Finished { id: w.id, result: Err(std::sync::Arc::new(e)) });
                }
            }
        }
        joined
    }

    fn prefill(&mut self, w: &Waiting) -> Result<Sequence<B>> {
        if std::mem::take(&mut self.panic_next_prefill) {
            panic!("injected prefill panic");
        }
        let (lm, b, c) = (self.lm, self.b, &self.lm.config);
        let mut cond = SeqCache::new(b, c, w.capacity)?;
        let mut uncond = match w.opts.cfg_scale {
            Some(_) => Some(SeqCache::new(b, c, w.capacity)?),
            None => None,
        };
        let first_hf = b.alloc(DType::F32, &[rows_for(&w.opts), c.stacks.backbone.n_embd])?;
        let negative = uncond.as_ref().map(|_| negative_prompt(c, &w.prompt));
        let first_row = self.buffers.iota.narrow(0, 1)?;
        for (row, cache, frames) in [(0, Some(&mut cond), &w.prompt), (1, uncond.as_mut(), negative.as_ref().unwrap_or(&w.prompt))] {
            let Some(cache) = cache else { continue };
            let hf = self.runner.forward(lm, b, &mut [Segment { cache, frames }], RowOrder::Free)?;
            // Copy the last position's row (row 0 of a one-row view).
            ops::embed_rows(b, &hf.narrow(frames.len() - 1, 1)?, &first_row, &first_hf.narrow(row, 1)?)?;
        }
        Ok(Sequence { id: w.id, cond, uncond, first_hf: Some(first_hf), track: Track::new(w.opts.clone()), bytes: w.bytes })
    }

    /// Admits what fits, then runs one step for every running sequence: the fed-back
    /// frames' forward pass and one sample each. A request whose prefill fails is reported
    /// as `EngineEvent::Failed` (its error in `take_finished`) and the step goes on without
    /// it. If the step itself fails, every running sequence fails with the error (reported
    /// in `take_finished`) and the error is returned; the engine stays usable.
    pub fn step(&mut self) -> Result<Vec<EngineEvent>> {
        let b = self.b;
        b.run_step(|| self.admit_and_step())
    }

    fn admit_and_step(&mut self) -> Result<Vec<EngineEvent>> {
        self.admit();
        let mut events = std::mem::take(&mut self.failed_in_admission);
        if self.active.is_empty() {
            return Ok(events);
        }
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            if std::mem::take(&mut self.panic_next_step) {
                panic!("injected step panic");
            }
            self.step_active()
        }));
        match result {
            Ok(Ok(stepped)) => {
                events.extend(stepped);
                Ok(events)
            }
            Ok(Err(e)) => Err(self.fail_active(e)),
            Err(panic) => {
                let msg = crate::error::panic_message(&*panic).unwrap_or("unknown panic");
                Err(self.fail_active(LmError::StepPanicked(format!("a batched step panicked: {msg}"))))
            }
        }
    }

    fn fail_active(&mut self, e: LmError) -> LmError {
        let e = std::sync::Arc::new(e);
        for seq in std::mem::take(&mut self.active) {
            self.pool.release(seq.bytes);
            self.finished.push(Finished { id: seq.id, result: Err(e.clone()) });
        }
        self.last_shape = None;
        LmError::Shared(e)
    }

    /// Makes the next batched step panic, so that tests can check what a bug there does
    /// (the running sequences fail with `LmError::StepPanicked`; the engine goes on).
    #[doc(hidden)]
    pub fn inject_step_panic(&mut self) {
        self.panic_next_step = true;
    }

    /// Makes the next request's prefill panic (that request fails with
    /// `LmError::StepPanicked`; the others are admitted and go on).
    #[doc(hidden)]
    pub fn inject_prefill_panic(&mut self) {
        self.panic_next_prefill = true;
    }

    /// Runs steps until every submitted request has finished.
    pub fn run_all(&mut self, on_events: &mut dyn FnMut(&[EngineEvent])) -> Result<()> {
        while !self.is_idle() {
            let events = self.step()?;
            on_events(&events);
        }
        Ok(())
    }

    /// Requests that left since the last call (finished or failed), in the order they left.
    pub fn take_finished(&mut self) -> Vec<Finished> {
        std::mem::take(&mut self.finished)
    }

    /// The output so far of a running request.
    pub fn partial(&self, id: RequestId) -> Option<&GenerateOutput> {
        self.active.iter().find(|s| s.id == id).map(|s| &s.track.out)
    }

    /// No request waiting or running.
    pub fn is_idle(&self) -> bool {
        self.waiting.is_empty() && self.active.is_empty()
    }

    /// Running sequences.
    pub fn active(&self) -> usize {
        self.active.len()
    }

    /// Whether `id` is admitted and decoding (not waiting, not finished).
    pub fn is_running(&self, id: RequestId) -> bool {
        self.active.iter().any(|s| s.id == id)
    }

    /// Rows the running sequences decode per step.
    pub fn rows(&self) -> usize {
        self.active.iter().map(Sequence::rows).sum()
    }

    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    pub fn max_batch(&self) -> usize {
        self.max_batch
    }

    /// The KV pool: budget, bytes held now and at most.
    pub fn kv(&self) -> &KvPool {
        &self.pool
    }

    /// Steps run so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1 << 20) as f64
}
