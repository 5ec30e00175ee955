//! Raw generation from prompt frames: one request streamed as events, or many batched.
//! Requests and outputs are the JSON objects of `uniaudio generate --requests`, as dicts.

use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Mutex};

use pyo3::prelude::*;
use uniaudio::generate_json::{self, RequestDefaults};
use uniaudio::{Error, GenerateEvent};

use crate::{catch_worker, compute_interruptible, err, lock_until, InvalidInputError};

enum Item {
    Frame([u32; 8]),
    Text(u32),
    Done(String),
}

/// Events of one generation as they happen: `("frame", [8 codes])`, `("text", id)`, and
/// last `("done", output)` with the dict `uniaudio generate` prints.
#[pyclass(module = "uniaudio")]
pub struct Events {
    rx: Mutex<Receiver<Result<Item, Error>>>,
}

#[pymethods]
impl Events {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<(&'static str, Py<PyAny>)>> {
        let msg = py.detach(|| self.rx.lock().unwrap_or_else(|p| p.into_inner()).recv());
        match msg {
            Ok(Ok(Item::Frame(codes))) => Ok(Some(("frame", codes.into_pyobject(py)?.into_any().unbind()))),
            Ok(Ok(Item::Text(id))) => Ok(Some(("text", id.into_pyobject(py)?.into_any().unbind()))),
            Ok(Ok(Item::Done(json))) => Ok(Some(("done", from_json(py, &json)?))),
            Ok(Err(e)) => Err(err(e)),
            Err(_) => Ok(None),
        }
    }
}

/// A request given as a dict or as JSON text, as JSON text.
fn request_text(py: Python<'_>, request: &Bound<'_, PyAny>) -> PyResult<String> {
    if let Ok(text) = request.extract::<String>() {
        return Ok(text);
    }
    py.import("json")?
        .call_method1("dumps", (request,))
        .map_err(|e| InvalidInputError::new_err(format!("request: not JSON-serialisable ({e})")))?
        .extract()
}

pub(crate) fn from_json(py: Python<'_>, json: &str) -> PyResult<Py<PyAny>> {
    Ok(py.import("json")?.call_method1("loads", (json,))?.unbind())
}

/// Parses the request now (malformed JSON or fields raise here) and runs it on a worker
/// thread that holds the model until the generation ends or the iterator is dropped; the
/// model's own checks (ids, prompt length) raise from the first `next()`.
pub fn start(py: Python<'_>, model: &Arc<Mutex<uniaudio::Model>>, request: &Bound<'_, PyAny>) -> PyResult<Events> {
    let text = request_text(py, request)?;
    let (frames, options) = generate_json::parse_request(&text, &RequestDefaults::default()).map_err(|e| InvalidInputError::new_err(format!("request: {e:#}")))?;
    let (tx, rx) = channel();
    let model = Arc::clone(model);
    std::thread::spawn(move || {
        catch_worker(&tx, || {
            let mut model = model.lock().unwrap_or_else(|p| p.into_inner());
            let generation = match model.generate(&frames, &options) {
                Ok(g) => g,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            for event in generation {
                let item = event.map(|e| match e {
                    GenerateEvent::Frame(codes) => Item::Frame(codes),
                    GenerateEvent::Text(id) => Item::Text(id),
                    GenerateEvent::Done(out) => Item::Done(generate_json::output_json(options.kind, &out).to_string()),
                });
                // A dropped iterator ends the generation.
                if tx.send(item).is_err() {
                    return;
                }
            }
        })
    });
    Ok(Events { rx: Mutex::new(rx) })
}

/// Every request through the batched engine; one output dict per request, in order
/// (`{"error": ...}` for one that was refused or failed).
pub fn batch(py: Python<'_>, model: &Arc<Mutex<uniaudio::Model>>, requests: &Bound<'_, PyAny>, max_batch: usize) -> PyResult<Vec<Py<PyAny>>> {
    if max_batch == 0 {
        return Err(InvalidInputError::new_err("max_batch must be at least 1"));
    }
    // A str, bytes or dict iterates (characters, keys) but is not a list of requests.
    if requests.is_instance_of::<pyo3::types::PyString>() || requests.is_instance_of::<pyo3::types::PyBytes>() || requests.is_instance_of::<pyo3::types::PyDict>() {
        return Err(InvalidInputError::new_err("requests must be an iterable of requests (dicts or JSON texts), not a single str, bytes or dict"));
    }
    let texts = requests.try_iter()?.map(|r| request_text(py, &r?)).collect::<PyResult<Vec<String>>>()?;
    let outputs = compute_interruptible(py, |stop| {
        let mut model = lock_until(model, stop)?;
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        generate_json::run_batch_until(&mut model, &refs, max_batch, &RequestDefaults::default(), stop)
    })?;
    outputs.iter().map(|v| from_json(py, &v.to_string())).collect()
}
