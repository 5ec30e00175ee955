//! One batched step: the fed-back frames' forward pass (one row per sequence and guidance
//! row), then the heads over all rows: lm_head for text sequences, the depth decoder's 8
//! codebooks for audio sequences, each sequence sampling from its own RNG streams.

use uniaudio_runtime::{ops, Backend, RowOrder, Tensor};

use super::{Engine, EngineEvent, Finished, Sequence, StepBuffers};
use crate::config::CODEBOOKS;
use crate::error::Result;
use crate::forward::Segment;
use crate::frame::Frame;
use crate::generate::OutputKind;
use crate::heads::TEXT_STREAM;
use crate::stack::KvCache;

/// Where a sequence's rows sit in the step's h_final.
struct Placed {
    seq: usize,
    cond: usize,
    uncond: Option<usize>,
}

impl<B: Backend> Engine<'_, B> {
    pub(super) fn step_active(&mut self) -> Result<Vec<EngineEvent>> {
        let (lm, b) = (self.lm, self.b);
        let c = &lm.config;
        let rows = self.rows();
        self.runner.reserve(b, c, rows)?;
        self.heads.reserve(b, c, rows)?;
        if self.buffers.capacity < rows {
            self.buffers = StepBuffers::new(b, c.stacks.backbone.n_embd, rows)?;
        }
        // Plan: sequences with a fed-back frame first (their forward pass writes rows
        // 0..), then those sampling from their prompt for the first time.
        let (mut order, joining): (Vec<usize>, Vec<usize>) = (0..self.active.len()).partition(|&i| self.active[i].first_hf.is_none());
        let decoding = order.len();
        order.extend(joining);
        let mut placed = Vec::with_capacity(order.len());
        let mut row = 0;
        for &i in &order {
            let has_uncond = self.active[i].uncond.is_some();
            placed.push(Placed { seq: i, cond: row, uncond: has_uncond.then_some(row + 1) });
            row += self.active[i].rows();
        }
        let shape: Vec<(OutputKind, bool)> = order.iter().map(|&i| (self.active[i].track.opts.kind, self.active[i].uncond.is_some())).collect();
        let joiners = decoding < order.len();
        if !joiners && self.last_shape.as_ref() == Some(&shape) {
            b.begin_step()?;
        }
        self.forward_fed_back(&order[..decoding])?;
        for p in &placed[decoding..] {
            let seq = &mut self.active[p.seq];
            let first = seq.first_hf.take().expect("joiners hold their prompt's h_final");
            let n = seq.rows();
            ops::embed_rows(b, &first, &self.buffers.iota.narrow(0, n)?, &self.buffers.hf.narrow(p.cond, n)?)?;
        }
        self.steps += 1;
        let mut events = Vec::with_capacity(placed.len());
        let (text, audio): (Vec<&Placed>, Vec<&Placed>) = placed.iter().partition(|p| self.active[p.seq].track.opts.kind == OutputKind::Text);
        if !text.is_empty() {
            let ids = self.sample_text(&text)?;
            for (p, id) in text.iter().zip(ids) {
                let seq = &mut self.active[p.seq];
                if seq.track.accept_text(id) {
                    events.push(EngineEvent::Text { id: seq.id, token: id });
                }
            }
        }
        if !audio.is_empty() {
            let frames = self.sample_audio(&audio)?;
            for (p, codes) in audio.iter().zip(frames) {
                let seq = &mut self.active[p.seq];
                seq.track.accept_audio(c, codes);
                events.push(EngineEvent::Frame { id: seq.id, codes });
            }
        }
        // After joiners the next step has a new shape: it runs eagerly once more.
        self.last_shape = (!joiners).then_some(shape);
        self.retire(&mut events);
        Ok(events)
    }

    /// The forward pass of the sequences in `order` (all with a fed-back frame): rows
    /// 0.. of the step's h_final.
    fn forward_fed_back(&mut self, order: &[usize]) -> Result<()> {
        if order.is_empty() {
            return Ok(());
        }
        let (lm, b) = (self.lm, self.b);
        let frames: Vec<[Frame; 1]> = order.iter().map(|&i| [self.active[i].track.feedback.expect("running sequences feed back a frame")]).collect();
        let mut wanted: Vec<Option<&mut Sequence<B>>> = self.active.iter_mut().map(Some).collect();
        let mut segments = Vec::new();
        for (&i, frame) in order.iter().zip(&frames) {
            let seq = wanted[i].take().expect("each sequence once");
            segments.push(Segment { cache: &mut seq.cond, frames: frame });
            if let Some(u) = seq.uncond.as_mut() {
                segments.push(Segment { cache: u, frames: frame });
            }
        }
        let rows = segments.len();
        let hf = self.runner.forward(lm, b, &mut segments, RowOrder::Invariant)?;
        ops::embed_rows(b, &hf, &self.buffers.iota.narrow(0, rows)?, &self.buffers.hf.narrow(0, rows)?)?;
        Ok(())
    }

    /// Gathers the listed rows of the step's h_final into `picked` (ids at `slot`).
    fn gather(&self, rows: &[u32], slot: usize) -> Result<Tensor<B>> {
        let buf = &self.buffers;
        let ids = buf.gather.narrow(slot * buf.capacity, rows.len())?;
        self.b.write(&ids, bytemuck::cast_slice(rows))?;
        let picked = buf.picked.narrow(0, rows.len())?;
        ops::embed_rows(self.b, &buf.hf, &ids, &picked)?;
        Ok(picked)
    }

    /// One text id per listed sequence.
    fn sample_text(&mut self, seqs: &[&Placed]) -> Result<Vec<u32>> {
        let (lm, b, c) = (self.lm, self.b, &self.lm.config);
        let (rows, local) = local_rows(seqs);
        let hf = self.gather(&rows, 0)?;
        let logits = self.heads.text_logits(b, lm, &hf)?;
        for (j, (p, (rc, ru))) in seqs.iter().zip(local).enumerate() {
            let track = &self.active[p.seq].track;
            let cond = logits.narrow(rc, 1)?;
            let chosen = match (track.opts.cfg_scale, ru) {
                (Some(scale), Some(ru)) => self.heads.guide(b, &cond, &logits.narrow(ru, 1)?, scale, j)?,
                _ => cond,
            };
            let params = track.params(c, self.active[p.seq].cond.len() - 1, TEXT_STREAM);
            ops::top_k_sample(b, &chosen, &self.buffers.text.narrow(j, 1)?, params)?;
        }
        Ok(ops::download_u32(b, &self.buffers.text.narrow(0, seqs.len())?)?)
    }

    /// One frame of 8 codes per listed sequence, through the depth decoder.
    fn sample_audio(&mut self, seqs: &[&Placed]) -> Result<Vec<[u32; CODEBOOKS]>> {
        let (lm, b, c) = (self.lm, self.b, &self.lm.config);
        let (rows, local) = local_rows(seqs);
        let n = rows.len();
        let hf = self.gather(&rows, 1)?;
        self.heads.decoder_begin(b, lm, &hf)?;
        let mut caches: Vec<&KvCache<B>> = Vec::with_capacity(n);
        for p in seqs {
            let seq = &self.active[p.seq];
            caches.push(&seq.cond.decoder);
            if let Some(u) = &seq.uncond {
                caches.push(&u.decoder);
            }
        }
        let cap = self.buffers.capacity;
        let codes = &self.buffers.codes;
        for i in 0..CODEBOOKS {
            let logits = self.heads.decoder_logits(b, lm, &mut self.runner.decoder, &caches, i)?;
            for (j, (p, &(rc, ru))) in seqs.iter().zip(&local).enumerate() {
                let seq = &self.active[p.seq];
                let cond = logits.narrow(rc, 1)?;
                let chosen = match (seq.track.opts.cfg_scale, ru) {
                    (Some(scale), Some(ru)) => self.heads.guide(b, &cond, &logits.narrow(ru, 1)?, scale, j)?,
                    _ => cond,
                };
                let params = seq.track.params(c, seq.cond.len() - 1, i as u64);
                // The guidance row decodes the same code as its conditional row.
                for r in std::iter::once(rc).chain(ru) {
                    ops::top_k_sample(b, &chosen, &codes.narrow(i * cap + r, 1)?, params)?;
                }
            }
            if i + 1 < CODEBOOKS {
                self.heads.decoder_feed(b, lm, i, &codes.narrow(i * cap, n)?)?;
            }
        }
        let ids = ops::download_u32(b, &codes.narrow(0, CODEBOOKS * cap)?)?;
        Ok(local.iter().map(|&(rc, _)| std::array::from_fn(|i| ids[i * cap + rc])).collect())
    }

    /// Moves stopped sequences out, freeing their caches.
    fn retire(&mut self, events: &mut Vec<EngineEvent>) {
        let mut i = 0;
        while i < self.active.len() {
            if !self.active[i].track.stopped() {
                i += 1;
                continue;
            }
            let seq = self.active.remove(i);
            self.pool.release(seq.bytes);
            let out = seq.track.finish();
            events.push(EngineEvent::Finished { id: seq.id, stopped_by: out.stopped_by.expect("finish sets the reason") });
            self.finished.push(Finished { id: seq.id, result: Ok(out) });
            self.last_shape = None;
        }
    }
}

/// The step rows of the listed sequences, and each sequence's (cond, uncond) index
/// among them.
fn local_rows(seqs: &[&Placed]) -> (Vec<u32>, Vec<(usize, Option<usize>)>) {
    let mut rows = Vec::new();
    let mut local = Vec::new();
    for p in seqs {
        let rc = rows.len();
        rows.push(p.cond as u32);
        let ru = p.uncond.map(|u| {
            rows.push(u as u32);
            rc + 1
        });
        local.push((rc, ru));
    }
    (rows, local)
}
