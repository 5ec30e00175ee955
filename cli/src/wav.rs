//! WAV output: mono, 32-bit float or 16-bit PCM, written through an `output::Target`
//! (a temporary file renamed when complete; an existing file is never replaced without `force`).

use std::path::Path;

use anyhow::{Context, Result};

use crate::output::Target;

pub struct WavTarget(Target);

impl WavTarget {
    /// Checks the destination before any long work (see `Target::prepare`).
    pub fn prepare(path: &Path, force: bool) -> Result<Self> {
        Ok(WavTarget(Target::prepare(path, force)?))
    }

    pub fn write(self, samples: &[f32], sample_rate: u32, pcm16: bool) -> Result<()> {
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate,
            bits_per_sample: if pcm16 { 16 } else { 32 },
            sample_format: if pcm16 { hound::SampleFormat::Int } else { hound::SampleFormat::Float },
        };
        let tmp = self.0.tmp();
        let mut w = hound::WavWriter::create(tmp, spec).with_context(|| format!("writing {}", tmp.display()))?;
        for &s in samples {
            if pcm16 {
                // Clip to the PCM range; the float output is left as decoded.
                w.write_sample((s.clamp(-1.0, 1.0) * 32767.0).round() as i16)?;
            } else {
                w.write_sample(s)?;
            }
        }
        w.finalize().with_context(|| format!("writing {}", tmp.display()))?;
        self.0.commit()
    }
}
