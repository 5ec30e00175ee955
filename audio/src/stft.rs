//! Power STFT frames as `torch.stft(center=True, pad_mode="reflect", onesided=True)` followed
//! by `.abs() ** 2`, handed frame by frame to a callback that reduces them (the mel GEMM), so
//! the full [frames, bins] power spectrogram never exists in memory.

use std::sync::Arc;

use rayon::prelude::*;
use realfft::num_complex::Complex;
use realfft::{RealFftPlanner, RealToComplex};

/// `torch.hann_window(n)` (periodic) in f32, in torch's order of operations:
/// `arange(n + 1) * f32(2π / n)`, `cos`, `* -0.5`, `+ 0.5`, first n values.
pub(crate) fn hann_periodic(n: usize) -> Vec<f32> {
    let step = (std::f64::consts::PI * 2.0 / n as f64) as f32;
    (0..n)
        .map(|i| (i as f32 * step).cos() * -0.5 + 0.5)
        .collect()
}

/// `F.pad(x, (pad, pad), "reflect")`: mirror without repeating the edge sample.
/// Needs `x.len() > pad` (torch refuses otherwise); callers pad short input with zeros first.
pub(crate) fn reflect_pad(x: &[f32], pad: usize) -> Vec<f32> {
    debug_assert!(x.len() > pad);
    let n = x.len();
    let mut out = Vec::with_capacity(n + 2 * pad);
    out.extend((1..=pad).rev().map(|i| x[i]));
    out.extend_from_slice(x);
    out.extend((0..pad).map(|i| x[n - 2 - i]));
    out
}

/// One FFT plan and window, shared by all frames of a call.
pub(crate) struct PowerStft {
    n_fft: usize,
    hop: usize,
    window: Vec<f32>,
    fft: Arc<dyn RealToComplex<f32>>,
}

impl PowerStft {
    pub(crate) fn new(n_fft: usize, hop: usize) -> Self {
        PowerStft {
            n_fft,
            hop,
            window: hann_periodic(n_fft),
            fft: RealFftPlanner::<f32>::new().plan_fft_forward(n_fft),
        }
    }

    /// Number of one-sided frequency bins.
    pub(crate) fn bins(&self) -> usize {
        self.n_fft / 2 + 1
    }

    /// For frames `0..n_frames` of the already padded signal (frame t = `padded[t * hop ..]`),
    /// computes the power spectrum and lets `reduce(power, row)` fill that frame's row of the
    /// frame-major `[n_frames, row_len]` result. Frames run in parallel.
    /// Requires `padded.len() >= (n_frames - 1) * hop + n_fft`.
    pub(crate) fn map_frames<F>(
        &self,
        padded: &[f32],
        n_frames: usize,
        row_len: usize,
        reduce: F,
    ) -> Vec<f32>
    where
        F: Fn(&[f32], &mut [f32]) + Sync,
    {
        let mut out = vec![0.0f32; n_frames * row_len];
        if row_len == 0 {
            return out;
        }
        const FRAMES_PER_TASK: usize = 32;
        out.par_chunks_mut(FRAMES_PER_TASK * row_len)
            .enumerate()
            .for_each(|(task, rows)| {
                let mut frame = self.fft.make_input_vec();
                let mut spec: Vec<Complex<f32>> = self.fft.make_output_vec();
                let mut scratch = self.fft.make_scratch_vec();
                let mut power = vec![0.0f32; self.bins()];
                for (i, row) in rows.chunks_exact_mut(row_len).enumerate() {
                    let start = (task * FRAMES_PER_TASK + i) * self.hop;
                    let src = &padded[start..start + self.n_fft];
                    for ((f, &s), &w) in frame.iter_mut().zip(src).zip(&self.window) {
                        *f = s * w;
                    }
                    // Lengths come from the plan itself, so this cannot fail.
                    if self
                        .fft
                        .process_with_scratch(&mut frame, &mut spec, &mut scratch)
                        .is_err()
                    {
                        continue;
                    }
                    for (p, c) in power.iter_mut().zip(&spec) {
                        *p = abs_squared(*c);
                    }
                    reduce(&power, row);
                }
            });
        out
    }
}

/// torch's `z.abs() ** 2` for complex64: a correctly rounded hypot, then squared in f32
/// (not re² + im², which rounds differently).
#[inline]
fn abs_squared(c: Complex<f32>) -> f32 {
    let (re, im) = (f64::from(c.re), f64::from(c.im));
    let m = (re * re + im * im).sqrt() as f32;
    m * m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reflect_pad_mirrors_without_edge() {
        let x = [0.0, 1.0, 2.0, 3.0, 4.0];
        assert_eq!(
            reflect_pad(&x, 2),
            vec![2.0, 1.0, 0.0, 1.0, 2.0, 3.0, 4.0, 3.0, 2.0]
        );
    }

    #[test]
    fn hann_is_periodic() {
        let w = hann_periodic(400);
        assert_eq!(w.len(), 400);
        assert_eq!(w[0], 0.0);
        assert!((w[200] - 1.0).abs() < 1e-7);
        assert!((w[100] - 0.5).abs() < 1e-6 && (w[300] - 0.5).abs() < 1e-6);
    }

    #[test]
    fn power_of_a_tone_peaks_in_its_bin() {
        let stft = PowerStft::new(400, 160);
        // 1 kHz at 16 kHz = bin 25 of a 400-point FFT.
        let x: Vec<f32> = (0..4000)
            .map(|i| (2.0 * std::f32::consts::PI * 1000.0 * i as f32 / 16000.0).sin())
            .collect();
        let rows = stft.map_frames(&x, 10, 201, |p, row| row.copy_from_slice(p));
        let frame = &rows[201 * 5..201 * 6];
        let peak = (0..201)
            .max_by(|&a, &b| frame[a].total_cmp(&frame[b]))
            .unwrap();
        assert_eq!(peak, 25);
    }
}
