//! The values one kernel family runs with, one per shape class, and tuning on first use:
//! the first op of an undecided class times the candidates on its own shape, keeps the
//! fastest and stores it in the device's cache, so later runs load it and never re-time.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use super::{pick, Choice, DeviceKey, Timing, TuneCache, TuneMode};

/// A tunable kernel family: its cache name, shape classes and candidate values.
#[derive(Debug)]
pub struct Family {
    /// Name in the cache (`name/class` per entry).
    pub name: &'static str,
    /// Shape classes sharing one value each.
    pub classes: &'static [&'static str],
    /// Candidate values, all giving the same results.
    pub candidates: &'static [usize],
    /// The built-in default (one of the candidates).
    pub default: usize,
}

impl Family {
    /// The cache entry of `class`.
    pub fn entry(&self, class: usize) -> String {
        format!("{}/{}", self.name, self.classes[class])
    }
}

/// The values in use for one family (shared by every thread using the kernels).
#[derive(Debug)]
pub struct Tuned {
    family: &'static Family,
    values: Vec<AtomicUsize>,
    /// A class is decided once a value was loaded, tuned or fixed (`UNIAUDIO_TUNE=off`).
    decided: Vec<AtomicBool>,
    busy: Mutex<()>,
}

impl Tuned {
    /// Defaults everywhere, every class undecided.
    pub fn new(family: &'static Family) -> Tuned {
        Tuned {
            family,
            values: family.classes.iter().map(|_| AtomicUsize::new(family.default)).collect(),
            decided: family.classes.iter().map(|_| AtomicBool::new(false)).collect(),
            busy: Mutex::new(()),
        }
    }

    pub fn family(&self) -> &'static Family {
        self.family
    }

    /// The value in use for `class`.
    pub fn get(&self, class: usize) -> usize {
        self.values[class].load(Ordering::Relaxed)
    }

    /// Sets (and decides) `class`.
    pub fn set(&self, class: usize, value: usize) {
        self.values[class].store(value, Ordering::Relaxed);
        self.decided[class].store(true, Ordering::Relaxed);
    }

    pub fn is_decided(&self, class: usize) -> bool {
        self.decided[class].load(Ordering::Relaxed)
    }

    /// Built-in defaults; `decided` says whether first use may still tune.
    pub fn reset(&self, decided: bool) {
        for (v, d) in self.values.iter().zip(&self.decided) {
            v.store(self.family.default, Ordering::Relaxed);
            d.store(decided, Ordering::Relaxed);
        }
    }

    /// Takes the cached choices (known candidates only); returns how many classes were set.
    pub fn apply(&self, cache: &TuneCache) -> usize {
        let mut applied = 0;
        for class in 0..self.family.classes.len() {
            let chosen = cache.get(&self.family.entry(class)).and_then(|c| c.candidate.parse::<usize>().ok());
            if let Some(v) = chosen.filter(|v| self.family.candidates.contains(v)) {
                self.set(class, v);
                applied += 1;
            }
        }
        applied
    }

    /// Configures the table for `mode` from the cache in `dir` (see `load`).
    pub fn load(&self, mode: TuneMode, dir: &Path, key: DeviceKey) -> String {
        load(&[self], mode, dir, key)
    }

    /// Tuning on first use: when `class` is undecided and no other thread is tuning it,
    /// times `candidates` (those that differ for this shape) with `time` and keeps the
    /// fastest. Returns the winner's index and the timings when it tuned.
    pub fn tune_once(&self, class: usize, candidates: &[usize], warmup: usize, reps: usize, time: impl FnMut(&usize) -> Duration) -> Option<(usize, Vec<Timing>)> {
        if self.is_decided(class) || candidates.is_empty() {
            return None;
        }
        // Another thread tuning: run with the current value meanwhile.
        let _guard = self.busy.try_lock().ok()?;
        if self.is_decided(class) {
            return None;
        }
        let (best, timings) = pick(candidates, |c| c.to_string(), warmup, reps, time);
        self.set(class, candidates[best]);
        Some((best, timings))
    }
}

/// Configures one device's tables for `mode` from the cache in `dir`: `On` applies stored
/// choices (other classes tune on first use), `Force` ignores them (every class re-times
/// on first use), `Off` fixes the defaults. Says what is in use.
pub fn load(tables: &[&Tuned], mode: TuneMode, dir: &Path, key: DeviceKey) -> String {
    match mode {
        TuneMode::Off => {
            tables.iter().for_each(|t| t.reset(true));
            "off (UNIAUDIO_TUNE=off): built-in defaults".into()
        }
        TuneMode::Force => {
            tables.iter().for_each(|t| t.reset(false));
            "re-timed on first use (UNIAUDIO_TUNE=force: stored choices ignored)".into()
        }
        TuneMode::On => {
            tables.iter().for_each(|t| t.reset(false));
            let cache = TuneCache::open(dir, key, &mut |w| eprintln!("warning: {w}"));
            match tables.iter().map(|t| t.apply(&cache)).sum::<usize>() {
                0 => "no tuned table yet: each kernel family is timed on first use (or ahead of time by `uniaudio tune`)".into(),
                n => format!("tuned table {} ({n} entries)", cache.path().display()),
            }
        }
    }
}

/// The cache entry of a tuning run.
pub fn choice(best: usize, timings: &[Timing]) -> Choice {
    Choice {
        candidate: timings[best].candidate.clone(),
        medians_us: timings.iter().map(|t| (t.candidate.clone(), t.median.as_secs_f64() * 1e6)).collect(),
    }
}

/// Adds one choice to the device's cache file (re-read first, so entries stored meanwhile
/// by another process are kept). A failed write is a warning: the choice stays in use.
pub fn persist(dir: &Path, key: DeviceKey, entry: &str, choice: Choice) {
    let mut cache = TuneCache::open(dir, key, &mut |w| eprintln!("warning: {w}"));
    cache.insert(entry, choice);
    if let Err(e) = cache.save() {
        eprintln!("warning: {}: cannot store the tuned choice for {entry}: {e}", cache.path().display());
    }
}
