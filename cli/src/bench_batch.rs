//! The batched-decode scaling table of `uniaudio bench --batch`.

use uniaudio_lm::bench_batch::{BatchKindRow, BatchRow};

use crate::bench_codec::{bandwidth_cell, share_of_bandwidth, ABOVE_PROBE_NOTE};

fn scaling(r: &BatchKindRow) -> String {
    r.scaling.map_or("-".into(), |s| format!("{s:.2}x"))
}

/// Prints one row per batch size: audio then text, with GB/s against the bandwidth `bw`
/// measured in the same run.
pub fn print_table(rows: &[BatchRow], bw: f64) {
    println!();
    println!("batched decode (weights read once per step for all streams; GB/s counts weights + every stream's KV cache)");
    println!(
        "{:>5} | {:>10} {:>10} {:>9} {:>8} {:>6} {:>7} | {:>10} {:>9} {:>8} {:>6} {:>7}",
        "batch", "audio ms", "frames/s", "RTF/strm", "GB/s", "% bw", "scale", "text ms", "tokens/s", "GB/s", "% bw", "scale"
    );
    for r in rows {
        println!(
            "{:>5} | {:>10.1} {:>10.2} {:>9.3} {:>8.2} {} {:>7} | {:>10.1} {:>9.2} {:>8.2} {} {:>7}",
            r.batch,
            r.audio.ms_per_step,
            r.audio.per_second,
            r.audio_real_time_factor_per_stream,
            r.audio.gb_per_s,
            bandwidth_cell(r.audio.gb_per_s, bw, 6),
            scaling(&r.audio),
            r.text.ms_per_step,
            r.text.per_second,
            r.text.gb_per_s,
            bandwidth_cell(r.text.gb_per_s, bw, 6),
            scaling(&r.text),
        );
    }
    if rows.iter().any(|r| [r.audio.gb_per_s, r.text.gb_per_s].iter().any(|&g| share_of_bandwidth(g, bw).is_none())) {
        println!("{ABOVE_PROBE_NOTE}");
    }
}
