//! `Model.run`: any task by name, with the checks of the C API's JSON requests
//! (`uniaudio::task_json::task_request`), returning the run's output object as a dict.

use std::sync::{Arc, Mutex};

use numpy::IntoPyArray;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use uniaudio::task_json;
use uniaudio::{AudioInput, Sampling, TaskText};

use crate::{compute_interruptible, lock_until, AudioArg, InvalidInputError};

/// Runs task `name` on a worker thread (Ctrl-C stops it); the dict holds the output object
/// (`text`, `stopped_by`, `steps`, the sampler settings used, `timings`, ...) and `audio`
/// (float32 samples, or None for text tasks) at `sample_rate`.
pub fn run(py: Python<'_>, model: &Arc<Mutex<uniaudio::Model>>, name: &str, audio: Option<AudioArg>, text: TaskText, sampling: Sampling, codec_steps: u64) -> PyResult<Py<PyAny>> {
    // Keyword arguments are named as Python has them; `steps` is the codec's.
    let named = |field: &str| if field == "codec_steps" { "`steps`".to_string() } else { format!("`{field}`") };
    let mut req = task_json::task_request(name, text, sampling, Some(codec_steps), audio.is_some(), &named).map_err(|e| InvalidInputError::new_err(format!("{e:#}")))?;
    let out = compute_interruptible(py, |stop| {
        req.audio = audio.map(|a| a.at_24k().map(AudioInput::Samples24k)).transpose()?;
        lock_until(model, stop)?.run_until(&req, &mut |_| {}, stop)
    })?;
    let dict = crate::generate::from_json(py, &task_json::output_json(&out).to_string())?;
    let d = dict.bind(py).cast::<PyDict>()?;
    match out.audio {
        Some(samples) => d.set_item("audio", samples.into_pyarray(py))?,
        None => d.set_item("audio", py.None())?,
    }
    d.set_item("sample_rate", out.sample_rate)?;
    Ok(dict)
}
