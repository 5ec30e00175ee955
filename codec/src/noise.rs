//! Where each window's initial noise x0 comes from.

use std::collections::HashMap;
use std::path::Path;

use uniaudio_runtime::rng::{stream_key, uniform};
use uniaudio_runtime::weights::ModelWeights;

use crate::error::{CodecError, Result};

pub enum Noise {
    /// Standard normal draws from a counter-based generator: window k, element i depends
    /// only on (seed, k, i).
    Seeded(u64),
    /// The reference's `torch.randn` draws by call index (draw `1` is window 0's x0,
    /// draw `2k+1` window k's; the others are multiplied by zero upstream).
    Injected(HashMap<String, Vec<f32>>),
}

impl Noise {
    /// Reads every tensor of a noise file (`noise_<case>.safetensors` layout).
    pub fn from_file(path: &Path) -> Result<Self> {
        let w = ModelWeights::from_file(path)?;
        let mut draws = HashMap::new();
        for name in w.names().map(str::to_string).collect::<Vec<_>>() {
            draws.insert(name.clone(), w.get(&name)?.to_f32());
        }
        Ok(Noise::Injected(draws))
    }

    /// x0 of window `k`: `frames · channels` values.
    pub fn x0(&self, k: usize, frames: usize, channels: usize) -> Result<Vec<f32>> {
        let n = frames * channels;
        match self {
            Noise::Seeded(seed) => Ok(normal(*seed, k as u64, n)),
            Noise::Injected(draws) => {
                let name = if k == 0 { "1".to_string() } else { (2 * k + 1).to_string() };
                let v = draws.get(&name).ok_or_else(|| CodecError::Invalid(format!("noise file has no draw `{name}` (x0 of window {k})")))?;
                if v.len() != n {
                    return Err(CodecError::Invalid(format!("noise draw `{name}` has {} values, expected {n} ([{frames}, {channels}])", v.len())));
                }
                Ok(v.clone())
            }
        }
    }
}

/// Box–Muller over two uniform (0, 1] draws per pair.
fn normal(seed: u64, stream: u64, n: usize) -> Vec<f32> {
    let key = stream_key(seed, stream);
    (0..n)
        .map(|i| {
            let pair = (i / 2) as u32;
            let u1 = uniform(key, 2 * pair) as f64;
            let u2 = uniform(key, 2 * pair + 1) as f64;
            let r = (-2.0 * u1.ln()).sqrt();
            let a = 2.0 * std::f64::consts::PI * u2;
            (if i % 2 == 0 { r * a.cos() } else { r * a.sin() }) as f32
        })
        .collect()
}
