//! Runs one task through the library on the chosen backend: progress on stderr, generated
//! text streamed to stdout (unless JSON was asked for), and a closing report of what was done.

use std::io::Write;

use anyhow::Result;
use indicatif::ProgressBar;
use uniaudio::{Event, Model, ModelPaths, Stage, TaskOutput, TaskRequest};
use uniaudio_lm::OutputKind;

use crate::backend::BackendChoice;
use crate::progress;

/// Loads the parts `req.task` needs and runs it (callers check the parts are there before
/// any slow input work); `stream_text` prints text as it comes.
pub fn run(paths: &ModelPaths, backend: BackendChoice, req: &TaskRequest, stream_text: bool) -> Result<TaskOutput> {
    let mut model = Model::with_backend(paths.clone(), backend.open()?);
    eprintln!("backend: {}", model.backend());
    let text_task = req.task.output_kind() == OutputKind::Text;
    let mut bar: Option<(Stage, ProgressBar)> = None;
    let mut stdout = std::io::stdout();
    let out = model.run(req, &mut |event| match event {
        Event::Note(n) => eprintln!("{n}"),
        Event::Text(piece) => {
            if stream_text {
                let _ = stdout.write_all(piece.as_bytes());
                let _ = stdout.flush();
            }
        }
        // Streamed text is its own progress; a bar would interleave with it on a terminal.
        Event::Progress { stage: Stage::Generate, .. } if text_task && stream_text => {}
        Event::Progress { stage, done, total } => {
            if bar.as_ref().map(|(s, _)| *s) != Some(stage) {
                if let Some((_, old)) = bar.take() {
                    old.finish_and_clear();
                }
                bar = Some((stage, progress::steps(total as u64, stage.name())));
            }
            if let Some((_, b)) = &bar {
                b.set_length(total as u64);
                b.set_position(done as u64);
            }
        }
    });
    if let Some((_, b)) = bar {
        b.finish_and_clear();
    }
    if stream_text && text_task {
        println!();
    }
    let out = out?;
    report(&out);
    Ok(out)
}

/// One summary on stderr: context used, rates, stop reason.
fn report(o: &TaskOutput) {
    let t = &o.timings;
    let steps = o.generated.steps;
    let mut parts = vec![format!("{}: {} prompt positions + {steps} steps ({} of max_seq_len {})", o.task.name(), o.prompt_positions, o.positions_used(), o.max_seq_len)];
    if o.windows.len() > 1 {
        parts.push(format!("{} windows", o.windows.len()));
    }
    if let Some(s) = o.input_seconds {
        parts.push(format!("encoded {s:.2} s of audio in {:.2} s ({:.2}x real time)", t.encode_s, s / t.encode_s.max(1e-9)));
    }
    parts.push(format!("prefill {:.2} s ({:.0} positions/s)", t.prefill_s, o.prompt_positions as f64 / t.prefill_s.max(1e-9)));
    let unit = if o.task.output_kind() == OutputKind::Text { "tokens" } else { "frames" };
    parts.push(format!("{steps} {unit} in {:.2} s ({:.1} {unit}/s)", t.generate_s, steps as f64 / t.generate_s.max(1e-9)));
    if let Some(audio) = &o.audio {
        let secs = audio.len() as f64 / o.sample_rate as f64;
        parts.push(format!("decoded {secs:.2} s of audio in {:.2} s", t.decode_s));
    }
    parts.push(format!("stopped by {}", uniaudio::run::stop_name(Some(o.stopped_by))));
    eprintln!("{}", parts.join("; "));
}
