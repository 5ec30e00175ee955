//! Timing candidates and picking the fastest. The clock is a parameter, so the selection
//! logic is tested with a deterministic one.

use std::time::Duration;

/// One candidate's measurement.
#[derive(Clone, Debug, PartialEq)]
pub struct Timing {
    /// The candidate's name.
    pub candidate: String,
    /// Median of the timed repetitions.
    pub median: Duration,
}

/// Runs each candidate `warmup` times untimed, then `reps` times through `time` (which
/// runs it once, synchronised, and returns how long it took), and returns the index of
/// the lowest median (the first on ties) with every candidate's timing.
pub fn pick<C>(candidates: &[C], name: impl Fn(&C) -> String, warmup: usize, reps: usize, mut time: impl FnMut(&C) -> Duration) -> (usize, Vec<Timing>) {
    assert!(!candidates.is_empty() && reps > 0, "tuning needs candidates and repetitions");
    let mut timings = Vec::with_capacity(candidates.len());
    for c in candidates {
        for _ in 0..warmup {
            time(c);
        }
        let mut samples: Vec<Duration> = (0..reps).map(|_| time(c)).collect();
        samples.sort();
        timings.push(Timing { candidate: name(c), median: samples[samples.len() / 2] });
    }
    let best = (0..timings.len()).min_by_key(|&i| (timings[i].median, i)).expect("non-empty");
    (best, timings)
}
