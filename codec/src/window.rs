//! Decode windowing (RT `token2audio_no_reason`): tiling of short inputs, fixed windows
//! at a hop, the in-context prefix, the linear cross-fade and the final crop.

use crate::config::CodecConfig;

/// How windows after the first are placed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StitchMode {
    /// As the reference: a 32-frame prefix taken from the wrong place, a 360000-sample hop.
    Reference,
    /// Aligned: the prefix is the frames both windows share, the hop is the token hop.
    Fixed,
}

impl std::str::FromStr for StitchMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "reference" => Ok(StitchMode::Reference),
            "fixed" => Ok(StitchMode::Fixed),
            other => Err(format!("unknown mode `{other}` (expected reference or fixed)")),
        }
    }
}

/// The windows of one decode.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// Tokens after tiling/extension, `[row][t]`.
    pub tokens: Vec<Vec<u32>>,
    /// First token of each window.
    pub starts: Vec<usize>,
    /// Samples of the final output (f64 arithmetic, as the reference).
    pub target_len: usize,
    /// Latent frames of window k−1 (from this index on) that become window k's prefix.
    pub prefix_from: usize,
    pub prefix_frames: usize,
    pub hop_samples: usize,
    pub overlap_samples: usize,
}

/// `int(T / rate · sample_rate)` in f64: one sample short of T·1920 for some T (T = 29 -> 55679).
pub fn target_samples(tokens: usize, token_rate: f64, sample_rate: u32) -> usize {
    (tokens as f64 / token_rate * sample_rate as f64) as usize
}

/// Periodic extension s[i] = c[i mod len] (what repeated doubling + crop yields).
fn extend(row: &[u32], len: usize) -> Vec<u32> {
    (0..len).map(|i| row[i % row.len()]).collect()
}

pub fn plan(c: &CodecConfig, tokens: &[Vec<u32>], mode: StitchMode) -> Plan {
    let s = &c.sampler;
    let t = tokens[0].len();
    let (w, hop, ovl) = (s.window_tokens, s.hop_tokens, s.overlap_tokens);
    let mut rows: Vec<Vec<u32>> = tokens.to_vec();
    if t < w {
        rows = rows.iter().map(|r| extend(r, w)).collect();
    }
    let l1 = rows[0].len();
    let l2 = if !(l1 - ovl).is_multiple_of(hop) { (l1 - ovl).div_ceil(hop) * hop + ovl } else { l1 };
    if l2 != l1 {
        rows = rows.iter().map(|r| extend(r, l2)).collect();
    }
    // range(0, L − hop, hop), at least one window.
    let mut starts: Vec<usize> = (0..l2.saturating_sub(hop)).step_by(hop).collect();
    if starts.is_empty() {
        starts.push(0);
    }
    let lpt = c.latents_per_token;
    let window_latents = w * lpt;
    let (prefix_frames, hop_samples, overlap_samples) = match mode {
        StitchMode::Reference => (s.incontext_frames, s.hop_samples, s.overlap_samples),
        StitchMode::Fixed => {
            let hop_samples = hop * c.samples_per_token;
            (ovl * lpt, hop_samples, s.window_samples - hop_samples)
        }
    };
    let prefix_from = match mode {
        // The reference takes the previous window's last frames.
        StitchMode::Reference => window_latents - prefix_frames,
        // The frames the next window starts with, in the previous window's coordinates.
        StitchMode::Fixed => hop * lpt,
    };
    Plan {
        tokens: rows,
        starts,
        target_len: target_samples(t, c.token_rate, c.sample_rate),
        prefix_from,
        prefix_frames,
        hop_samples,
        overlap_samples,
    }
}

/// Appends window k's samples (already cropped to the window) with the linear cross-fade
/// r = linspace(0, 1, overlap) in f64: out[-O:] = out·(1 − r) + y[:O]·r, then y[O:hop+O].
pub fn stitch(out: &mut Vec<f32>, y: &[f32], first: bool, p: &Plan) {
    if first {
        out.extend_from_slice(y);
        return;
    }
    let o = p.overlap_samples.min(out.len()).min(y.len());
    let base = out.len() - o;
    // numpy.linspace: r_i = i · (1 / (O − 1)), the last value exactly 1.
    let step = if o > 1 { 1.0 / (o - 1) as f64 } else { 0.0 };
    for i in 0..o {
        let r = if i + 1 == o && o > 1 { 1.0 } else { i as f64 * step };
        out[base + i] = (out[base + i] as f64 * (1.0 - r) + y[i] as f64 * r) as f32;
    }
    out.extend_from_slice(&y[o..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::presets::CodecPreset;

    fn rows(t: usize) -> Vec<Vec<u32>> {
        (0..8).map(|r| (0..t).map(|i| (r * 1000 + i) as u32).collect()).collect()
    }

    #[test]
    fn reference_plan_tiles_extends_and_crops_in_f64() {
        let c = CodecPreset::Small.config();
        // Short input: periodic tiling to one window.
        let p = plan(&c, &rows(13), StitchMode::Reference);
        assert_eq!(p.starts, vec![0]);
        assert_eq!(p.tokens[0].len(), 250);
        assert_eq!(p.tokens[2][13], p.tokens[2][0]);
        assert_eq!(p.target_len, 24960);
        // T = 29: int(29 / 12.5 * 24000) = 55679 in f64.
        assert_eq!(plan(&c, &rows(29), StitchMode::Reference).target_len, 55679);
        // 400 tokens: extended to 436 = 2·186 + 64, windows at 0 and 186.
        let p = plan(&c, &rows(400), StitchMode::Reference);
        assert_eq!((p.tokens[0].len(), p.starts.clone()), (436, vec![0, 186]));
        assert_eq!((p.prefix_from, p.prefix_frames, p.hop_samples, p.overlap_samples), (468, 32, 360000, 120000));
    }

    #[test]
    fn fixed_plan_aligns_prefix_and_hop_with_the_token_hop() {
        let c = CodecPreset::Small.config();
        let p = plan(&c, &rows(400), StitchMode::Fixed);
        // Window k starts 186 tokens = 372 latent frames = 357120 samples after window k-1;
        // its first 128 frames are window k-1's frames 372..500.
        assert_eq!((p.prefix_from, p.prefix_frames), (372, 128));
        assert_eq!((p.hop_samples, p.overlap_samples), (357120, 122880));
        let mut out = Vec::new();
        let y0: Vec<f32> = (0..480000).map(|i| i as f32).collect();
        stitch(&mut out, &y0, true, &p);
        // A second window holding the same timeline shifted by the hop stitches seamlessly.
        let y1: Vec<f32> = (0..480000).map(|i| (i + 357120) as f32).collect();
        stitch(&mut out, &y1, false, &p);
        assert_eq!(out.len(), 357120 + 480000);
        assert!(out.iter().enumerate().all(|(i, &v)| (v - i as f32).abs() <= 0.5), "misaligned cross-fade");
    }

    #[test]
    fn cross_fade_uses_numpy_linspace() {
        let c = CodecPreset::Small.config();
        let p = plan(&c, &rows(400), StitchMode::Reference);
        let mut out = vec![1.0f32; 480000];
        stitch(&mut out, &vec![0.0f32; 480000], false, &p);
        assert_eq!(out.len(), 480000 + 360000);
        let o = 480000 - 120000;
        assert_eq!((out[o], out[o + 119999]), (1.0, 0.0));
        assert_eq!(out[o + 60000], (1.0 - 60000.0 * (1.0 / 119999.0f64)) as f32);
    }
}
