//! The reference's chunk geometry: token counts in f64 as Python computes them, and the
//! chunks whose tokens survive the crop (the reference computes at least two).

use super::config::ChunkingConfig;

/// Input sample rate of the encoder.
pub const SAMPLE_RATE: usize = 24_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkPlan {
    /// 24 kHz samples of the input.
    pub samples: usize,
    /// Reasoning frames kept: int(L / 24000 · rate_r) + 1.
    pub reasoning_frames: usize,
    /// Reconstruction frames kept: int(L / 24000 · rate_s) + 1.
    pub reconstruction_frames: usize,
    /// Chunks to compute (chunk k = samples [k·chunk, (k + 1)·chunk) of the periodic extension).
    pub chunks: usize,
}

impl ChunkPlan {
    pub fn new(samples: usize, c: &ChunkingConfig) -> Self {
        // A chunk counts as min_samples (30 s) of audio: 375 and 150 frames give 12.5 and 5 Hz.
        let seconds_per_chunk = c.min_samples as f64 / SAMPLE_RATE as f64;
        let rate_s = c.reconstruction_frames_per_chunk as f64 / seconds_per_chunk;
        let rate_r = c.reasoning_frames_per_chunk as f64 / seconds_per_chunk;
        let secs = samples as f64 / SAMPLE_RATE as f64;
        let reconstruction_frames = (secs * rate_s) as usize + 1;
        let reasoning_frames = (secs * rate_r) as usize + 1;
        let chunks = reconstruction_frames.div_ceil(c.reconstruction_frames_per_chunk).max(reasoning_frames.div_ceil(c.reasoning_frames_per_chunk));
        ChunkPlan { samples, reasoning_frames, reconstruction_frames, chunks }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunking() -> ChunkingConfig {
        ChunkingConfig { chunk_samples: 720_240, min_samples: 720_000, reasoning_frames_per_chunk: 150, reconstruction_frames_per_chunk: 375, batch_size: 6 }
    }

    #[test]
    fn frame_counts_follow_the_reference_in_f64() {
        // The fixture cases: (samples, T_r, T_s, chunks needed).
        for (l, t_r, t_s, chunks) in [(76_800, 17, 41, 1), (169_200, 36, 89, 1), (96_000, 21, 51, 1), (222_720, 47, 116, 1), (756_000, 158, 394, 2)] {
            let p = ChunkPlan::new(l, &chunking());
            assert_eq!((p.reasoning_frames, p.reconstruction_frames, p.chunks), (t_r, t_s, chunks), "L = {l}");
        }
        // 222720 / 24000 · 12.5 is just below 116 in f64: the +1 keeps 116 frames, not 117.
        assert_eq!(ChunkPlan::new(222_720, &chunking()).reconstruction_frames, 116);
        assert_eq!(ChunkPlan::new(720_000, &chunking()).chunks, 2);
    }
}
