//! WAV output: mono, 32-bit float or 16-bit PCM, written to a temporary file next to the
//! destination and renamed when complete. An existing file is never replaced without `force`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

pub struct WavTarget {
    path: PathBuf,
    tmp: PathBuf,
}

impl WavTarget {
    /// Checks the destination before any long work: its directory must exist and be
    /// writable, and the file must not exist unless `force`.
    pub fn prepare(path: &Path, force: bool) -> Result<Self> {
        if path.exists() && !force {
            bail!("{}: exists (pass --force to replace it)", path.display());
        }
        let name = path.file_name().with_context(|| format!("{}: not a file path", path.display()))?;
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(".tmp");
        let tmp = path.with_file_name(tmp_name);
        std::fs::File::create(&tmp).with_context(|| format!("{}: cannot write here", path.display()))?;
        Ok(WavTarget { path: path.to_path_buf(), tmp })
    }

    pub fn write(self, samples: &[f32], sample_rate: u32, pcm16: bool) -> Result<()> {
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate,
            bits_per_sample: if pcm16 { 16 } else { 32 },
            sample_format: if pcm16 { hound::SampleFormat::Int } else { hound::SampleFormat::Float },
        };
        let mut w = hound::WavWriter::create(&self.tmp, spec).with_context(|| format!("writing {}", self.tmp.display()))?;
        for &s in samples {
            if pcm16 {
                // Clip to the PCM range; the float output is left as decoded.
                w.write_sample((s.clamp(-1.0, 1.0) * 32767.0).round() as i16)?;
            } else {
                w.write_sample(s)?;
            }
        }
        w.finalize().with_context(|| format!("writing {}", self.tmp.display()))?;
        std::fs::rename(&self.tmp, &self.path).with_context(|| format!("renaming to {}", self.path.display()))?;
        Ok(())
    }
}

impl Drop for WavTarget {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.tmp);
    }
}
