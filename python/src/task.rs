//! `Model.run`: any task by name, with the checks of the C API's JSON requests
//! (`uniaudio::task_json::task_request`), returning the run's output object as a dict.

use std::sync::{Arc, Mutex};

use numpy::IntoPyArray;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use uniaudio::task_json;
use uniaudio::{AudioInput, Sampling, TaskOutput, TaskRequest, TaskText};

use uniaudio::request::{Event, Stage};

use crate::{compute_watched, lock_until, AudioArg, InvalidInputError};

/// The latest progress a run reported, and whether it is new since the last delivery.
#[derive(Default)]
struct Progress {
    latest: Option<(Stage, usize, usize)>,
    fresh: bool,
}

/// Runs task `name` on a worker thread (Ctrl-C stops it); the dict holds the output object
/// (`text`, `stopped_by`, `steps`, the sampler settings used, `timings`, ...) and `audio`
/// (float32 samples, or None for text tasks) at `sample_rate`.
#[allow(clippy::too_many_arguments)]
pub fn run(py: Python<'_>, model: &Arc<Mutex<uniaudio::Model>>, name: &str, audio: Option<AudioArg>, text: TaskText, sampling: Sampling, codec_steps: u64, on_progress: Option<Py<PyAny>>) -> PyResult<Py<PyAny>> {
    // Keyword arguments are named as Python has them; `steps` is the codec's.
    let named = |field: &str| if field == "codec_steps" { "`steps`".to_string() } else { format!("`{field}`") };
    let req = task_json::task_request(name, text, sampling, Some(codec_steps), audio.is_some(), &named).map_err(|e| InvalidInputError::new_err(format!("{e:#}")))?;
    let out = run_reporting(py, model, req, audio, on_progress)?;
    let dict = crate::generate::from_json(py, &task_json::output_json(&out).to_string())?;
    let d = dict.bind(py).cast::<PyDict>()?;
    match out.audio {
        Some(samples) => d.set_item("audio", samples.into_pyarray(py))?,
        None => d.set_item("audio", py.None())?,
    }
    d.set_item("sample_rate", out.sample_rate)?;
    Ok(dict)
}

/// Runs `req` on a worker thread (Ctrl-C stops it), its input audio read there from
/// `audio` when given, reporting progress to `on_progress(stage, done, total)`: the latest
/// of each moment, every 50 ms, with the interpreter lock held.
pub fn run_reporting(py: Python<'_>, model: &Arc<Mutex<uniaudio::Model>>, mut req: TaskRequest, audio: Option<AudioArg>, on_progress: Option<Py<PyAny>>) -> PyResult<TaskOutput> {
    let progress = Mutex::new(Progress::default());
    let report = |e: Event| {
        if let Event::Progress { stage, done, total } = e {
            let mut p = progress.lock().unwrap_or_else(|p| p.into_inner());
            *p = Progress { latest: Some((stage, done, total)), fresh: true };
        }
    };
    // The callback runs here, with the interpreter lock, on the latest progress only.
    let mut deliver = |py: Python<'_>| -> PyResult<()> {
        let Some(callback) = &on_progress else { return Ok(()) };
        let latest = {
            let mut p = progress.lock().unwrap_or_else(|p| p.into_inner());
            std::mem::take(&mut p.fresh).then_some(p.latest).flatten()
        };
        if let Some((stage, done, total)) = latest {
            let stage = match stage {
                Stage::Encode => "encode",
                Stage::Generate => "generate",
                Stage::Decode => "decode",
            };
            callback.call1(py, (stage, done, total))?;
        }
        Ok(())
    };
    compute_watched(
        py,
        |stop| {
            if let Some(a) = audio {
                req.audio = Some(AudioInput::Samples24k(a.at_24k()?));
            }
            let mut report = report;
            lock_until(model, stop)?.run_until(&req, &mut report, stop)
        },
        &mut deliver,
    )
}
