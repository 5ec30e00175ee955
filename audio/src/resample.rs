//! torchaudio 2.4.1's windowed-sinc resampler (`sinc_interp_hann`, lowpass width 6,
//! rolloff 0.99), reproduced operation by operation.
//!
//! With g = gcd(from, to), orig = from / g, new = to / g, output sample `n * new + j` is the
//! dot product of the zero-padded input at `n * orig` with the kernel row of phase `j`
//! (torch: `conv1d(pad(x, (width, width + orig)), kernel, stride=orig)`, phases interleaved).
//!
//! `functional.resample` computes the kernel in the waveform's dtype (f32); the
//! `transforms.Resample` module computes it in f64 and stores it as f32. Both recipes are
//! here, the arithmetic in the same order and precision as torch.
//!
//! Each kernel row is only stored where |t| < 6: outside, torch clamps t to ±6 where the Hann
//! window is cos(π/2)² ≈ 2e-15 and the sinc ≈ 5e-8, so those taps are ≈ 1e-22 and cannot
//! change an f32 sum. Skipping them keeps odd rate pairs (gcd 1: 44101 -> 24000 would have
//! 24000 × 44125 taps) small and fast.

use crate::polyphase::{convolve, Phase};

const LOWPASS_FILTER_WIDTH: f64 = 6.0;
const ROLLOFF: f64 = 0.99;

/// The reduced rate pair and its kernel rows, one per output phase.
struct SincKernel {
    orig: usize,
    new: usize,
    width: usize,
    phases: Vec<Phase>,
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Kernel arithmetic in one float type, in torch's order of operations.
trait KernelFloat: Copy + PartialEq + PartialOrd {
    fn from_f64(v: f64) -> Self;
    fn add(self, o: Self) -> Self;
    fn mul(self, o: Self) -> Self;
    fn div(self, o: Self) -> Self;
    fn cos(self) -> Self;
    fn sin(self) -> Self;
    fn to_f32(self) -> f32;
}

macro_rules! kernel_float {
    ($t:ty) => {
        impl KernelFloat for $t {
            fn from_f64(v: f64) -> Self {
                v as $t
            }
            fn add(self, o: Self) -> Self {
                self + o
            }
            fn mul(self, o: Self) -> Self {
                self * o
            }
            fn div(self, o: Self) -> Self {
                self / o
            }
            fn cos(self) -> Self {
                <$t>::cos(self)
            }
            fn sin(self) -> Self {
                <$t>::sin(self)
            }
            fn to_f32(self) -> f32 {
                self as f32
            }
        }
    };
}
kernel_float!(f32);
kernel_float!(f64);

/// t[j][k] before the clamp: `(-j / new + (k - width) / orig) * base`.
/// `-j / new` is always an f32 (torch divides an integer or f32 `arange`, giving f32).
fn t_unclamped<F: KernelFloat>(
    j: usize,
    k: usize,
    width: usize,
    orig: usize,
    new: usize,
    base: F,
) -> F {
    let tj = F::from_f64((-(j as f32) / new as f32) as f64);
    let idx = F::from_f64(k as f64 - width as f64).div(F::from_f64(orig as f64));
    tj.add(idx).mul(base)
}

/// One kernel value from a clamped t, in torch's order:
/// `window = cos(t * pi / 6 / 2) ** 2; t *= pi; sinc = sin(t) / t (1 at 0); sinc * (window * scale)`.
fn tap<F: KernelFloat>(t: F, scale: F) -> f32 {
    let pi = F::from_f64(std::f64::consts::PI);
    let lw = F::from_f64(LOWPASS_FILTER_WIDTH);
    let c = t.mul(pi).div(lw).div(F::from_f64(2.0)).cos();
    let window = c.mul(c);
    let tp = t.mul(pi);
    let sinc = if tp == F::from_f64(0.0) {
        F::from_f64(1.0)
    } else {
        tp.sin().div(tp)
    };
    sinc.mul(window.mul(scale)).to_f32()
}

impl SincKernel {
    /// `_get_sinc_resample_kernel` computed in float type `F`; `None` when a rate is 0.
    fn new<F: KernelFloat>(from: u32, to: u32) -> Option<SincKernel> {
        if from == 0 || to == 0 {
            return None;
        }
        let g = gcd(u64::from(from), u64::from(to));
        let (orig, new) = ((u64::from(from) / g) as usize, (u64::from(to) / g) as usize);
        let base64 = orig.min(new) as f64 * ROLLOFF;
        let width = (LOWPASS_FILTER_WIDTH * orig as f64 / base64).ceil() as usize;
        let base = F::from_f64(base64);
        let scale = F::from_f64(base64 / orig as f64);
        let (lo_t, hi_t) = (
            F::from_f64(-LOWPASS_FILTER_WIDTH),
            F::from_f64(LOWPASS_FILTER_WIDTH),
        );
        let n_taps = 2 * width + orig;
        // Taps with |t| < 6 lie near k = width + orig * j / new, within orig * 6 / base.
        let reach = LOWPASS_FILTER_WIDTH * orig as f64 / base64;
        let phases = (0..new)
            .map(|j| {
                let centre = width as f64 + orig as f64 * j as f64 / new as f64;
                let lo = ((centre - reach).floor() as i64 - 2).max(0) as usize;
                let hi = (((centre + reach).ceil() as i64 + 3).max(0) as usize).min(n_taps);
                let inside: Vec<(usize, F)> = (lo..hi)
                    .map(|k| (k, t_unclamped::<F>(j, k, width, orig, new, base)))
                    .filter(|&(_, t)| t > lo_t && t < hi_t)
                    .collect();
                match (inside.first(), inside.last()) {
                    (Some(&(first, _)), Some(&(last, _))) => Phase {
                        start: first,
                        taps: (first..=last)
                            .map(|k| tap(t_unclamped::<F>(j, k, width, orig, new, base), scale))
                            .collect(),
                    },
                    _ => Phase {
                        start: 0,
                        taps: Vec::new(),
                    },
                }
            })
            .collect();
        Some(SincKernel {
            orig,
            new,
            width,
            phases,
        })
    }

    /// `_apply_sinc_resample_kernel`: pad, strided polyphase convolution, crop to
    /// `ceil(f32(new * L / orig))` (torch puts the Python float through a float32 tensor).
    fn apply(&self, x: &[f32]) -> Vec<f32> {
        let (orig, new, width) = (self.orig, self.new, self.width);
        let len = x.len();
        let mut padded = vec![0.0f32; len + 2 * width + orig];
        padded[width..width + len].copy_from_slice(x);
        let blocks = len / orig + 1;
        let target = ((new as f64 * len as f64 / orig as f64) as f32).ceil() as usize;
        let out_len = target.min(blocks * new);

        let mut out = convolve(&padded, &self.phases, orig, blocks);
        out.truncate(out_len);
        out
    }
}

/// `torchaudio.functional.resample(x, from, to)` with the default sinc-Hann settings; the
/// kernel is computed in f32 (the waveform's dtype). Identity when `from == to`; an empty
/// vector when either rate is 0 (no such rate gets past `read_audio`).
pub fn resample(x: &[f32], from: u32, to: u32) -> Vec<f32> {
    if from == to {
        return x.to_vec();
    }
    match SincKernel::new::<f32>(from, to) {
        Some(k) => k.apply(x),
        None => Vec::new(),
    }
}

/// `torchaudio.transforms.Resample(24000, 16000)`: kernel computed in f64 and stored as f32
/// (orig 3, new 2, width 10, 23 taps). 720240 samples -> 480160.
pub fn resample_24k_to_16k(x: &[f32]) -> Vec<f32> {
    match SincKernel::new::<f64>(24_000, 16_000) {
        Some(k) => k.apply(x),
        None => Vec::new(),
    }
}

/// Number of samples `resample(x, from, to)` returns for `len` input samples.
pub fn resampled_len(len: usize, from: u32, to: u32) -> usize {
    if from == to {
        return len;
    }
    if from == 0 || to == 0 {
        return 0;
    }
    let g = gcd(u64::from(from), u64::from(to));
    let (orig, new) = (u64::from(from) / g, u64::from(to) / g);
    let target = ((new as f64 * len as f64 / orig as f64) as f32).ceil() as usize;
    target.min((len / orig as usize + 1) * new as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_match_torchaudio() {
        assert_eq!(resampled_len(112_800, 16_000, 24_000), 169_200);
        assert_eq!(resampled_len(176_400, 44_100, 24_000), 96_000);
        assert_eq!(resampled_len(720_240, 24_000, 16_000), 480_160);
        assert_eq!(resample(&vec![0.1; 112_800], 16_000, 24_000).len(), 169_200);
        assert_eq!(resample(&vec![0.1; 176_400], 44_100, 24_000).len(), 96_000);
        assert_eq!(resample_24k_to_16k(&vec![0.1; 720_240]).len(), 480_160);
        assert_eq!(resample(&[], 16_000, 24_000).len(), 0);
        assert_eq!(resample(&[1.0, 2.0], 24_000, 24_000), vec![1.0, 2.0]);
    }

    #[test]
    fn transform_kernel_shape() {
        let k = SincKernel::new::<f64>(24_000, 16_000).unwrap();
        assert_eq!((k.orig, k.new, k.width), (3, 2, 10));
        // torch's kernel has 23 taps per phase; the stored span lies inside it.
        for p in &k.phases {
            assert!(
                p.start + p.taps.len() <= 23 && p.taps.len() >= 18,
                "{}",
                p.taps.len()
            );
        }
    }

    #[test]
    fn passes_dc_and_low_tones() {
        // A slow sine survives resampling with a small error away from the edges.
        let x: Vec<f32> = (0..16_000).map(|i| (i as f32 * 0.01).sin()).collect();
        let y = resample(&x, 16_000, 24_000);
        for (i, v) in y.iter().enumerate().skip(100).take(20_000) {
            let expect = (i as f32 * 2.0 / 3.0 * 0.01).sin();
            assert!((v - expect).abs() < 2e-3, "{i}: {v} vs {expect}");
        }
        assert!(resample(&x, 0, 24_000).is_empty());
    }
}
