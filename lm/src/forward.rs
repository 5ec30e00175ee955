//! The model's forward pass over rows of one or many sequences (spec §2.4), with a
//! = the audio-step flag of each row:
//!   u  = UnderstandingExpert(Σ_k mask·audio_embeddings[k·V_a + c_k])
//!   x  = a ? u : wte[text]
//!   h  = Backbone(x)
//!   g  = GenerationExpert(a ? h : 0)
//!   hf = a ? g : h                       -> lm_head, and the depth decoder's input
//! Both experts run at every position, text positions included.
//!
//! A pass takes segments: consecutive frames of one sequence each (a prefill is one long
//! segment, a batched decode step one single-frame segment per sequence). Each segment
//! attends over its own sequence's caches; the projections see all rows at once.

use uniaudio_runtime::{ops, Backend, DType, RowOrder, Tensor};

use crate::config::{LmConfig, StackConfig, CODEBOOKS, DECODER_POSITIONS};
use crate::error::{LmError, Result};
use crate::frame::Frame;
use crate::stack::{KvCache, Span, Stack};
use crate::UniAudioLm;

/// One sequence's KV caches: the three big stacks hold `capacity` positions, the depth
/// decoder its 8.
pub struct SeqCache<B: Backend> {
    pub(crate) understanding: KvCache<B>,
    pub(crate) backbone: KvCache<B>,
    pub(crate) generation: KvCache<B>,
    pub(crate) decoder: KvCache<B>,
    capacity: usize,
    /// Positions processed so far.
    len: usize,
}

impl<B: Backend> SeqCache<B> {
    pub fn new(b: &B, config: &LmConfig, capacity: usize) -> Result<Self> {
        let s = &config.stacks;
        Ok(SeqCache {
            understanding: KvCache::new(b, &s.understanding, capacity)?,
            backbone: KvCache::new(b, &s.backbone, capacity)?,
            generation: KvCache::new(b, &s.generation, capacity)?,
            decoder: KvCache::new(b, &s.decoder, DECODER_POSITIONS)?,
            capacity,
            len: 0,
        })
    }

    /// Positions processed so far (the next frame's position).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

/// Bytes of f32 K and V a sequence of `capacity` positions holds (`SeqCache::new`).
pub fn cache_bytes(config: &LmConfig, capacity: usize) -> usize {
    let s = &config.stacks;
    let per_position = |c: &StackConfig| c.n_layer * 2 * c.n_query_groups * c.head_size * 4;
    capacity * [&s.understanding, &s.backbone, &s.generation].into_iter().map(per_position).sum::<usize>() + DECODER_POSITIONS * per_position(&s.decoder)
}

/// Frames to run at the next positions of one sequence.
pub struct Segment<'a, B: Backend> {
    pub cache: &'a mut SeqCache<B>,
    pub frames: &'a [Frame],
}

/// Inputs and activations of a pass, for up to `capacity` rows.
struct RowBuffers<B: Backend> {
    capacity: usize,
    codes: Tensor<B>,     // [cap, 8] u32
    mask: Tensor<B>,      // [cap, 8] u32
    text: Tensor<B>,      // [cap] u32
    audio: Tensor<B>,     // [cap] u32, the audio-step flag a
    positions: Tensor<B>, // [cap] u32
    resid: Tensor<B>,     // [cap, d] residual stream, reused by each stack in turn
    u: Tensor<B>,         // [cap, d]
    t: Tensor<B>,         // [cap, d]
    h: Tensor<B>,         // [cap, d]
    g: Tensor<B>,         // [cap, d]
    zeros: Tensor<B>,     // [cap, d], never written
    hf: Tensor<B>,        // [cap, d]
}

impl<B: Backend> RowBuffers<B> {
    fn new(b: &B, capacity: usize, d: usize) -> Result<Self> {
        let u32s = |shape: &[usize]| b.alloc(DType::U32, shape);
        let f32s = || b.alloc(DType::F32, &[capacity, d]);
        Ok(RowBuffers {
            capacity,
            codes: u32s(&[capacity, CODEBOOKS])?,
            mask: u32s(&[capacity, CODEBOOKS])?,
            text: u32s(&[capacity])?,
            audio: u32s(&[capacity])?,
            positions: u32s(&[capacity])?,
            resid: f32s()?,
            u: f32s()?,
            t: f32s()?,
            h: f32s()?,
            g: f32s()?,
            zeros: f32s()?,
            hf: f32s()?,
        })
    }
}

/// The four stacks' scratch and the row buffers: what one runner of passes owns.
/// Caches live in the sequences, so one runner serves any number of them.
pub struct Runner<B: Backend> {
    pub(crate) understanding: Stack<B>,
    pub(crate) backbone: Stack<B>,
    pub(crate) generation: Stack<B>,
    pub(crate) decoder: Stack<B>,
    rows: Option<RowBuffers<B>>,
}

impl<B: Backend> Runner<B> {
    pub fn new(b: &B, config: &LmConfig) -> Result<Self> {
        let s = &config.stacks;
        Ok(Runner {
            understanding: Stack::new(b, &s.understanding, config.max_seq_len)?,
            backbone: Stack::new(b, &s.backbone, config.max_seq_len)?,
            generation: Stack::new(b, &s.generation, config.max_seq_len)?,
            decoder: Stack::new(b, &s.decoder, DECODER_POSITIONS)?,
            rows: None,
        })
    }

    /// Sizes every buffer for passes of up to `rows` rows, so that later passes of that
    /// size allocate nothing (a recorded decode step may not).
    pub fn reserve(&mut self, b: &B, config: &LmConfig, rows: usize) -> Result<()> {
        self.reserve_rows(b, config, rows)?;
        for stack in [&mut self.understanding, &mut self.backbone, &mut self.generation, &mut self.decoder] {
            stack.reserve(b, rows)?;
        }
        Ok(())
    }

    fn reserve_rows(&mut self, b: &B, config: &LmConfig, rows: usize) -> Result<()> {
        if self.rows.as_ref().is_none_or(|r| r.capacity < rows) {
            self.rows = Some(RowBuffers::new(b, rows, config.stacks.backbone.n_embd)?);
        }
        Ok(())
    }

    /// Runs every segment's frames at its sequence's next positions in one pass and
    /// returns h_final of all rows, [T, d], in segment order (a view valid until the next
    /// pass). `order`: how the projections may schedule rows (`Invariant` for decode).
    pub fn forward(&mut self, lm: &UniAudioLm<B>, b: &B, segments: &mut [Segment<'_, B>], order: RowOrder) -> Result<Tensor<B>> {
        let (c, w) = (&lm.config, &lm.weights);
        let t: usize = segments.iter().map(|s| s.frames.len()).sum();
        if t == 0 {
            return Err(LmError::Prompt("no frames to process".into()));
        }
        for seg in segments.iter() {
            let (start, end) = (seg.cache.len, seg.cache.len + seg.frames.len());
            if seg.frames.is_empty() {
                return Err(LmError::Prompt("a sequence has no frames to process".into()));
            }
            if end > seg.cache.capacity {
                let what = if seg.cache.capacity == c.max_seq_len { "max_seq_len" } else { "the sequence's reserved positions" };
                return Err(LmError::Prompt(format!("positions {start}..{end} exceed {what} {}", seg.cache.capacity)));
            }
            for (i, f) in seg.frames.iter().enumerate() {
                f.validate(c, start + i)?;
            }
        }
        // Each stack sizes its own scratch; the depth decoder's stays at the decode batch.
        self.reserve_rows(b, c, t)?;
        let r = self.rows.as_ref().expect("reserved above");
        let first = |x: &Tensor<B>| x.narrow(0, t);
        let (codes, mask, text, audio, positions) = (first(&r.codes)?, first(&r.mask)?, first(&r.text)?, first(&r.audio)?, first(&r.positions)?);
        let (resid, u, tt, h, g, zeros, hf) = (first(&r.resid)?, first(&r.u)?, first(&r.t)?, first(&r.h)?, first(&r.g)?, first(&r.zeros)?, first(&r.hf)?);
        write_inputs(b, segments, [&codes, &mask, &text, &audio, &positions])?;
        let spans = |pick: fn(&SeqCache<B>) -> &KvCache<B>| -> Vec<Span<'_, B>> {
            segments.iter().map(|s| Span { cache: pick(s.cache), rows: s.frames.len(), kv_len: s.cache.len + s.frames.len() }).collect()
        };
        ops::embed_codebook_sum(b, &w.audio_embeddings, &codes, &mask, c.audio_vocab(), &resid)?;
        self.understanding.forward(b, &w.understanding, &spans(|s| &s.understanding), &resid, &positions, &u, order)?;
        ops::embed_rows(b, &w.wte, &text, &tt)?;
        ops::select_rows(b, &audio, &u, &tt, &resid)?;
        self.backbone.forward(b, &w.backbone, &spans(|s| &s.backbone), &resid, &positions, &h, order)?;
        ops::select_rows(b, &audio, &h, &zeros, &resid)?;
        self.generation.forward(b, &w.generation, &spans(|s| &s.generation), &resid, &positions, &g, order)?;
        ops::select_rows(b, &audio, &g, &h, &hf)?;
        for seg in segments.iter_mut() {
            seg.cache.len += seg.frames.len();
        }
        Ok(hf)
    }
}

fn write_inputs<B: Backend>(b: &B, segments: &[Segment<'_, B>], [codes_t, mask_t, text_t, audio_t, positions_t]: [&Tensor<B>; 5]) -> Result<()> {
    let t: usize = segments.iter().map(|s| s.frames.len()).sum();
    let (mut codes, mut mask) = (vec![0u32; t * CODEBOOKS], vec![0u32; t * CODEBOOKS]);
    let (mut text, mut audio, mut positions) = (vec![0u32; t], vec![0u32; t], Vec::with_capacity(t));
    let mut i = 0;
    for seg in segments {
        for (p, f) in seg.frames.iter().enumerate() {
            match *f {
                Frame::Text(id) => text[i] = id,
                Frame::Audio(c) => {
                    codes[i * CODEBOOKS..(i + 1) * CODEBOOKS].copy_from_slice(&c);
                    mask[i * CODEBOOKS..(i + 1) * CODEBOOKS].fill(1);
                    audio[i] = 1;
                }
            }
            positions.push((seg.cache.len + p) as u32);
            i += 1;
        }
    }
    for (dst, src) in [(codes_t, &codes), (mask_t, &mask), (text_t, &text), (audio_t, &audio), (positions_t, &positions)] {
        b.write(dst, bytemuck::cast_slice(src))?;
    }
    Ok(())
}
