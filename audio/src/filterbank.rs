//! The two mel filterbanks, built with the reference libraries' arithmetic, stored sparsely.
//!
//! Each triangular filter is non-zero over a short contiguous run of FFT bins, so storing
//! only that run turns the [frames × bins] × [bins × mels] GEMM into ~2 multiply-adds per
//! bin. Skipped entries are exact zeros, so the sums are those of the dense product.

/// One mel filter: weights for bins `start..start + weights.len()`.
pub(crate) struct MelFilter {
    pub start: usize,
    pub weights: Vec<f32>,
}

/// Keeps the non-zero run of each column of a dense `[n_bins][n_mels]` matrix.
fn sparsify(dense: &[Vec<f32>], n_mels: usize) -> Vec<MelFilter> {
    (0..n_mels)
        .map(|m| {
            let nonzero: Vec<usize> = (0..dense.len()).filter(|&b| dense[b][m] != 0.0).collect();
            match (nonzero.first(), nonzero.last()) {
                (Some(&lo), Some(&hi)) => MelFilter {
                    start: lo,
                    weights: (lo..=hi).map(|b| dense[b][m]).collect(),
                },
                _ => MelFilter {
                    start: 0,
                    weights: Vec::new(),
                },
            }
        })
        .collect()
}

/// `np.linspace(start, stop, num)`: `i * step + start`, the last point exactly `stop`.
fn np_linspace(start: f64, stop: f64, num: usize) -> Vec<f64> {
    let step = (stop - start) / (num as f64 - 1.0);
    (0..num)
        .map(|i| {
            if i + 1 == num {
                stop
            } else {
                i as f64 * step + start
            }
        })
        .collect()
}

fn slaney_hz_to_mel(f: f64) -> f64 {
    if f >= 1000.0 {
        15.0 + (f / 1000.0).ln() * (27.0 / 6.4f64.ln())
    } else {
        3.0 * f / 200.0
    }
}

fn slaney_mel_to_hz(m: f64) -> f64 {
    if m >= 15.0 {
        1000.0 * ((6.4f64.ln() / 27.0) * (m - 15.0)).exp()
    } else {
        200.0 * m / 3.0
    }
}

/// transformers `mel_filter_bank(num_frequency_bins=201, num_mel_filters=n_mels,
/// min_frequency=0, max_frequency=8000, sampling_rate=16000, norm="slaney",
/// mel_scale="slaney")`, computed in f64 as numpy does, then cast to f32 as the torch path of
/// `WhisperFeatureExtractor` does.
pub(crate) fn whisper_filters(n_mels: usize) -> Vec<MelFilter> {
    const N_BINS: usize = 201;
    let fft_freqs = np_linspace(0.0, 8000.0, N_BINS);
    let mels = np_linspace(slaney_hz_to_mel(0.0), slaney_hz_to_mel(8000.0), n_mels + 2);
    let f: Vec<f64> = mels.iter().map(|&m| slaney_mel_to_hz(m)).collect();
    let dense: Vec<Vec<f32>> = fft_freqs
        .iter()
        .map(|&bin| {
            (0..n_mels)
                .map(|m| {
                    let down = -(f[m] - bin) / (f[m + 1] - f[m]);
                    let up = (f[m + 2] - bin) / (f[m + 2] - f[m + 1]);
                    let tri = down.min(up).max(0.0);
                    (tri * (2.0 / (f[m + 2] - f[m]))) as f32
                })
                .collect()
        })
        .collect();
    sparsify(&dense, n_mels)
}

/// `torch.linspace(start, end, steps)` for float32 on CPU (scalar formula): the first half
/// counts up from `start`, the second half down from `end`, with an f32 step.
fn torch_linspace_f32(start: f32, end: f32, steps: usize) -> Vec<f32> {
    let step = (end - start) / (steps as f32 - 1.0);
    let half = steps / 2;
    (0..steps)
        .map(|i| {
            if i < half {
                start + step * i as f32
            } else {
                end - step * (steps - i - 1) as f32
            }
        })
        .collect()
}

/// torchaudio `melscale_fbanks(n_freqs, f_min, f_max, n_mels, sample_rate, norm=None,
/// mel_scale="htk")`, all in f32 as torchaudio computes it (the HTK mel range in f64).
pub(crate) fn htk_filters(
    n_freqs: usize,
    f_min: f64,
    f_max: f64,
    n_mels: usize,
    sample_rate: u32,
) -> Vec<MelFilter> {
    let all_freqs = torch_linspace_f32(0.0, (sample_rate / 2) as f32, n_freqs);
    let hz_to_mel = |f: f64| 2595.0 * (1.0 + f / 700.0).log10();
    let m_pts = torch_linspace_f32(hz_to_mel(f_min) as f32, hz_to_mel(f_max) as f32, n_mels + 2);
    let f: Vec<f32> = m_pts
        .iter()
        .map(|&m| 700.0f32 * (10.0f32.powf(m / 2595.0f32) - 1.0f32))
        .collect();
    let dense: Vec<Vec<f32>> = all_freqs
        .iter()
        .map(|&bin| {
            (0..n_mels)
                .map(|m| {
                    let down = -(f[m] - bin) / (f[m + 1] - f[m]);
                    let up = (f[m + 2] - bin) / (f[m + 2] - f[m + 1]);
                    down.min(up).max(0.0)
                })
                .collect()
        })
        .collect();
    sparsify(&dense, n_mels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whisper_filters_are_area_normalised_triangles() {
        let fb = whisper_filters(80);
        assert_eq!(fb.len(), 80);
        for filt in &fb {
            assert!(!filt.weights.is_empty() && filt.start + filt.weights.len() <= 201);
        }
        // Slaney norm: the area of each triangle in Hz (bin spacing 40 Hz) is about 1.
        let area: f32 = fb[40].weights.iter().sum::<f32>() * 40.0;
        assert!((area - 1.0).abs() < 0.1, "{area}");
    }

    #[test]
    fn htk_filters_peak_at_one() {
        let fb = htk_filters(1025, 0.0, 12000.0, 128, 24000);
        assert_eq!(fb.len(), 128);
        for filt in &fb[8..] {
            let peak = filt.weights.iter().cloned().fold(0.0f32, f32::max);
            assert!(peak > 0.5 && peak <= 1.0, "{peak}");
        }
    }

    #[test]
    fn linspace_endpoints() {
        let v = torch_linspace_f32(0.0, 12000.0, 1025);
        assert_eq!((v[0], v[512], v[1024]), (0.0, 6000.0, 12000.0));
        let n = np_linspace(0.0, 8000.0, 201);
        assert_eq!((n[1], n[200]), (40.0, 8000.0));
    }
}
