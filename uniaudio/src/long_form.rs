//! Long recordings for the transcription tasks: an input whose prompt would not leave room
//! to generate is cut into windows of at most 30 s at the quietest moments, each window is
//! transcribed as its own request, and the texts are joined. Other tasks refuse such inputs
//! (their answer depends on the whole input).

use std::ops::Range;

use uniaudio_lm::tasks::Task;

/// Longest window: one encoder chunk, about 530 positions, leaving room for the text.
pub const WINDOW_SECONDS: usize = 30;
/// Cuts are placed in the last third of a full window.
const SEARCH_SECONDS: usize = 10;
/// Loudness is measured over 20 ms frames.
const FRAME: usize = 480;

/// Tasks whose output for consecutive windows, joined, is the output for the whole.
pub fn windowable(task: Task) -> bool {
    matches!(task, Task::Asr | Task::YueAsr | Task::LyricRecognition)
}

/// Consecutive sample ranges covering `samples` (24 kHz), each at most `max` samples; a
/// cut is placed at the start of the quietest 20 ms frame in the last third of the window.
pub fn split_at_silences(samples: &[f32], max: usize, search: usize) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    while samples.len() - start > max {
        let lo = start + max.saturating_sub(search).max(FRAME);
        let hi = start + max;
        let mut best = (f64::INFINITY, hi);
        let mut at = lo;
        while at + FRAME <= hi {
            let energy: f64 = samples[at..at + FRAME].iter().map(|&s| (s as f64) * (s as f64)).sum();
            // Ties go to the later frame: windows as long as possible.
            if energy <= best.0 {
                best = (energy, at);
            }
            at += FRAME;
        }
        out.push(start..best.1);
        start = best.1;
    }
    out.push(start..samples.len());
    out
}

/// Two consecutive windows' texts as one: a space between them unless one is empty.
pub fn join(a: String, b: &str) -> String {
    if a.is_empty() || b.is_empty() {
        a + b
    } else {
        a + " " + b
    }
}

/// The default window plan of [`split_at_silences`] at 24 kHz.
pub fn windows(samples: &[f32]) -> Vec<Range<usize>> {
    split_at_silences(samples, WINDOW_SECONDS * 24_000, SEARCH_SECONDS * 24_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_land_in_the_quiet_gaps_and_cover_everything() {
        // 70 s of tone with 100 ms of silence at 25 s and at 52 s.
        let rate = 24_000;
        let mut x: Vec<f32> = (0..70 * rate).map(|i| (i as f32 * 0.01).sin() * 0.5).collect();
        for gap in [25 * rate, 52 * rate] {
            x[gap..gap + rate / 10].fill(0.0);
        }
        let w = windows(&x);
        assert_eq!(w.len(), 3, "{w:?}");
        assert_eq!(w[0].start, 0);
        assert_eq!(w[2].end, x.len());
        for pair in w.windows(2) {
            assert_eq!(pair[0].end, pair[1].start);
        }
        assert!((25 * rate..25 * rate + rate / 10).contains(&w[0].end), "{w:?}");
        assert!((52 * rate..52 * rate + rate / 10).contains(&w[1].end), "{w:?}");
        assert!(w.iter().all(|r| r.len() <= 30 * rate));
    }

    #[test]
    fn short_inputs_are_one_window() {
        assert_eq!(windows(&[0.0; 1000]), vec![0..1000]);
        assert_eq!(split_at_silences(&[0.0; 10], 4, 2), vec![0..4, 4..8, 8..10]);
    }
}
