//! RoPE frequencies exactly as litgpt's `build_rope_cache` computes them (all f32).

use crate::config::StackConfig;

/// θ'_j for j in 0..head_size/2: base^(-2j/hd), then Llama-3 frequency scaling.
pub fn inv_freq(stack: &StackConfig) -> Vec<f32> {
    let hd = stack.head_size;
    let base = stack.rope_base as f32;
    let theta = (0..hd / 2).map(|j| 1.0 / base.powf((2 * j) as f32 / hd as f32));
    match stack.rope_scaling {
        None => theta.collect(),
        Some(s) => {
            let (factor, low, high, orig) = (s.factor as f32, s.low_freq_factor as f32, s.high_freq_factor as f32, s.original_max_seq_len as f32);
            theta
                .map(|t| {
                    let wavelen = 2.0 * std::f32::consts::PI / t;
                    let ratio = orig / wavelen;
                    let smooth = ((ratio - low) / (high - low)).clamp(0.0, 1.0);
                    (1.0 - smooth) * (t / factor) + smooth * t
                })
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RopeScaling;

    fn stack(hd: usize) -> StackConfig {
        StackConfig {
            n_layer: 1,
            n_embd: hd,
            n_head: 1,
            n_query_groups: 1,
            head_size: hd,
            intermediate_size: 1,
            vocab_size: None,
            rope_base: 500000.0,
            rope_scaling: Some(RopeScaling::LLAMA3),
            norm_eps: 1e-5,
        }
    }

    /// The spec's split: hd=128 has 29 unscaled, 29 divided by 32 and 6 interpolated
    /// frequencies; hd=64 has 15, 14 and 3. θ'_0 = 1 and θ'_1 ≈ 0.8146.
    #[test]
    fn llama3_frequency_split() {
        for (hd, unscaled, divided) in [(128, 29, 29), (64, 15, 14)] {
            let scaled = inv_freq(&stack(hd));
            let plain = inv_freq(&StackConfig { rope_scaling: None, ..stack(hd) });
            let same = scaled.iter().zip(&plain).filter(|(a, b)| a == b).count();
            let div = scaled.iter().zip(&plain).filter(|(a, b)| (**a - **b / 32.0).abs() <= 1e-7 * **b).count();
            assert_eq!((same, div), (unscaled, divided), "hd {hd}");
        }
        let f = inv_freq(&stack(128));
        assert_eq!(f[0], 1.0);
        assert!((f[1] - 0.8146).abs() < 1e-4, "{}", f[1]);
        assert!((f[63] / 7.67e-8 - 1.0).abs() < 1e-2, "{}", f[63]);
    }
}
