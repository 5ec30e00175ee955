//! One sequence's generation rules (spec §5.6 / §5.7): what a sampled frame or text id
//! does to it — the phase switch at reason_eos, the stop frame, the stored lists, the
//! step limit — and the sampler parameters of its next draw.

use uniaudio_runtime::SampleParams;

use crate::config::{LmConfig, CODEBOOKS, END_OF_TEXT};
use crate::frame::Frame;
use crate::generate::{GenerateOptions, GenerateOutput, OutputKind, StopReason};
use crate::heads::STREAMS;

pub(crate) struct Track {
    pub opts: GenerateOptions,
    reconstruction_phase: bool,
    stored_reason: Vec<[u32; CODEBOOKS]>,
    stored_recon: Vec<[u32; CODEBOOKS]>,
    pub out: GenerateOutput,
    /// The frame the next step feeds back (None before the first sample and once stopped).
    pub feedback: Option<Frame>,
}

impl Track {
    pub fn new(opts: GenerateOptions) -> Self {
        Track { opts, reconstruction_phase: false, stored_reason: Vec::new(), stored_recon: Vec::new(), out: GenerateOutput::default(), feedback: None }
    }

    pub fn stopped(&self) -> bool {
        self.out.stopped_by.is_some()
    }

    /// The draw of `stream` for the frame predicted at `position`.
    pub fn params(&self, config: &LmConfig, position: usize, stream: u64) -> SampleParams {
        let forbid_below = match self.opts.kind {
            OutputKind::Audio if self.reconstruction_phase => config.ids.audio_reason_card,
            _ => 0,
        };
        SampleParams { top_k: self.opts.top_k, temperature: self.opts.temperature, forbid_below, seed: self.opts.seed, counter: position as u64 * STREAMS + stream }
    }

    /// Takes one sampled audio frame.
    pub fn accept_audio(&mut self, config: &LmConfig, codes: [u32; CODEBOOKS]) {
        self.out.steps += 1;
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
        self.check_limit();
    }

    /// Takes one sampled text id; true when it is a token of the output (not the end).
    pub fn accept_text(&mut self, id: u32) -> bool {
        self.out.steps += 1;
        let token = id != END_OF_TEXT;
        if token {
            self.out.text_ids.push(id);
            self.feedback = Some(Frame::Text(id));
        } else {
            self.out.stopped_by = Some(StopReason::Eos);
        }
        self.check_limit();
        token
    }

    fn check_limit(&mut self) {
        if self.out.stopped_by.is_none() && self.out.steps == self.opts.max_steps {
            self.out.stopped_by = Some(StopReason::MaxSteps);
        }
        if self.out.stopped_by.is_some() {
            self.feedback = None;
        }
    }

    /// The output with the reference's list handling (first stored frame of each phase dropped).
    pub fn finish(mut self) -> GenerateOutput {
        self.out.stopped_by.get_or_insert(StopReason::MaxSteps);
        self.out.reasoning = self.stored_reason.into_iter().skip(1).collect();
        self.out.reconstruction = self.stored_recon.into_iter().skip(1).collect();
        self.out
    }
}
