//! The sampler's time grid and the timestep sinusoid, in f32 exactly as the reference
//! forms them (one ulp in t or in a frequency moves the latents by ~1e-5).

use crate::config::FlowConfig;

/// One Euler step: the estimator's time t and the step size dt.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Step {
    pub t: f32,
    pub dt: f32,
}

/// torch.linspace(0, 1, n + 1) in f32 (CPU kernel: step = 1/n; the first half counts up
/// from 0, the second half down from 1).
pub fn linspace01(n: usize) -> Vec<f32> {
    let step = 1.0f32 / n as f32;
    let half = n.div_ceil(2);
    (0..=n).map(|i| if i < half { i as f32 * step } else { 1.0 - (n - i) as f32 * step }).collect()
}

/// BASECFM.solve_euler's loop: t = t_span[0], dt = t_span[1] − t_span[0]; after each step
/// t += dt and dt = t_span[k + 1] − t.
pub fn time_grid(steps: usize) -> Vec<Step> {
    let span = linspace01(steps);
    let mut t = span[0];
    let mut dt = span[1] - span[0];
    let mut out = Vec::with_capacity(steps);
    for k in 1..=steps {
        out.push(Step { t, dt });
        t += dt;
        if k < steps {
            dt = span[k + 1] - t;
        }
    }
    out
}

/// Frequencies exp(f32(−ln P) · j / half) in f32, or the config's exact table.
pub fn frequencies(f: &FlowConfig) -> Vec<f32> {
    if let Some(freqs) = &f.timestep_freqs {
        return freqs.clone();
    }
    let half = f.timestep_embed_dim / 2;
    let neg_log = -(f.timestep_max_period as f64).ln() as f32;
    (0..half).map(|j| (((neg_log * j as f32) / half as f32) as f64).exp() as f32).collect()
}

/// [cos(args), sin(args)] with args = (t · freqs) · scale in f32, one row per time.
pub fn sinusoid(f: &FlowConfig, times: &[f32]) -> Vec<f32> {
    let freqs = frequencies(f);
    let half = freqs.len();
    let mut out = vec![0f32; times.len() * 2 * half];
    for (row, &t) in out.chunks_mut(2 * half).zip(times) {
        for (j, &fr) in freqs.iter().enumerate() {
            let arg = ((t * fr) * f.timestep_scale) as f64;
            row[j] = arg.cos() as f32;
            row[half + j] = arg.sin() as f32;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The grid the fixture lists for 3 steps: torch's linspace gives 0.6666666 (numpy 0.6666667).
    #[test]
    fn three_step_grid_matches_torch() {
        let span = linspace01(3);
        assert_eq!(span, vec![0.0, 0.33333334, 0.6666666, 1.0]);
        let ts: Vec<f32> = time_grid(3).iter().map(|s| s.t).collect();
        assert_eq!(ts, vec![0.0, 0.33333334, 0.6666666]);
        let ts2: Vec<f32> = time_grid(2).iter().map(|s| s.t).collect();
        assert_eq!(ts2, vec![0.0, 0.5]);
    }
}
