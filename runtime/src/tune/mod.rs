//! Kernel variants picked by measurement on the machine they run on, and remembered per
//! device. A tunable kernel family offers a few candidate parameter sets, all correct
//! (each runs through the op harness); on the first op of a shape class with no stored
//! choice the tuner times them on that op's shape (warm-up, repetitions, median) and
//! stores the fastest in a per-device cache file (`uniaudio tune` does the same ahead of
//! time, on probe shapes). Later runs load the choice and never re-time. A cache written
//! for another device, driver or runtime version is ignored, never trusted.
//!
//! `UNIAUDIO_TUNE=off` uses the built-in defaults and never times; `UNIAUDIO_TUNE=force`
//! ignores stored choices and re-times every class on first use.

pub mod cache;
pub mod select;
pub mod table;

pub use cache::{Choice, TuneCache};
pub use select::{pick, Timing};

use serde::{Deserialize, Serialize};

/// What `UNIAUDIO_TUNE` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TuneMode {
    /// Use cached choices; classes without one are timed on first use.
    On,
    /// Built-in defaults only; nothing is timed, the cache is neither read nor written.
    Off,
    /// Ignore stored choices: every class is re-timed on first use (and stored).
    Force,
}

impl TuneMode {
    /// `UNIAUDIO_TUNE` (unset or empty: `On`), or an error naming the bad value.
    pub fn from_env() -> Result<TuneMode, String> {
        match std::env::var("UNIAUDIO_TUNE").unwrap_or_default().to_ascii_lowercase().as_str() {
            "" | "on" | "1" => Ok(TuneMode::On),
            "off" | "0" => Ok(TuneMode::Off),
            "force" => Ok(TuneMode::Force),
            other => Err(format!("UNIAUDIO_TUNE={other}: expected on, off or force")),
        }
    }
}

/// An ahead-of-time tuning run of one class on a probe shape.
#[derive(Clone, Debug)]
pub struct ProbeTuning {
    /// Index of the chosen candidate.
    pub best: usize,
    /// Every candidate's median.
    pub timings: Vec<Timing>,
    /// Weight bytes read per timing (for GB/s).
    pub bytes_per_timing: f64,
    /// Floating-point operations per timing (for GFLOP/s).
    pub flops_per_timing: f64,
}

/// Everything a tuned choice depends on: a cache written under another key is ignored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceKey {
    /// `cpu`, `wgpu` or `cuda`.
    pub backend: String,
    /// The device's name (CPU model, adapter or GPU name).
    pub device: String,
    /// Vendor, driver version, instruction set, thread count: whatever changes timings.
    pub driver: String,
    /// The runtime's version: kernels change between versions.
    pub runtime: String,
}

impl DeviceKey {
    /// A key for this runtime version.
    pub fn new(backend: &str, device: &str, driver: &str) -> DeviceKey {
        DeviceKey { backend: backend.into(), device: device.into(), driver: driver.into(), runtime: env!("CARGO_PKG_VERSION").into() }
    }

    /// A file name that differs for every key (backend first, for people reading the directory).
    pub fn file_name(&self) -> String {
        // FNV-1a over the key's JSON: stable across runs and platforms.
        let text = serde_json::to_string(self).unwrap_or_default();
        let hash = text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3));
        format!("{}-{hash:016x}.json", self.backend)
    }
}
