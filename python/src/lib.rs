//! Python bindings: `uniaudio.Model` over the library's `Model`. Compute runs with the
//! interpreter lock released; errors are `uniaudio.UniaudioError` with the library's message.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};

use numpy::{IntoPyArray, PyArray1, PyReadonlyArray1};
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use uniaudio::error::panic_message;
use uniaudio::{Audio, AudioInput, BackendKind, CodecSettings, Error, Event, LoadOptions, Precision, Sampling, Task, TaskRequest, TaskText};

mod generate;
mod task;

create_exception!(_uniaudio, UniaudioError, PyException, "Every error of the library; the subclasses say whose problem it is.");
create_exception!(_uniaudio, InvalidInputError, UniaudioError, "An argument or request was refused (names the argument or field).");
create_exception!(_uniaudio, MissingPartError, UniaudioError, "The model lacks a part the call needs (names it).");
create_exception!(_uniaudio, ModelError, UniaudioError, "A model file is missing, unreadable or malformed.");
create_exception!(_uniaudio, AudioError, UniaudioError, "An audio file could not be read or decoded.");
create_exception!(_uniaudio, BackendError, UniaudioError, "The backend could not be opened or failed.");

/// The library's error as the matching Python exception.
fn err(e: Error) -> PyErr {
    let msg = e.message().to_string();
    match e {
        Error::InvalidInput(_) => InvalidInputError::new_err(msg),
        Error::MissingPart(_) => MissingPartError::new_err(msg),
        Error::Model(_) => ModelError::new_err(msg),
        Error::Audio(_) => AudioError::new_err(msg),
        Error::Backend(_) => BackendError::new_err(msg),
        _ => UniaudioError::new_err(msg),
    }
}

/// A model bundle loaded on a backend.
#[pyclass(name = "Model", module = "uniaudio")]
struct PyModel {
    inner: Arc<Mutex<uniaudio::Model>>,
    /// The backend in words, kept so that reading it never waits for a running call.
    backend: String,
}

/// Runs `f` with the interpreter lock released; a panic in it becomes a `UniaudioError`
/// (PyO3 would raise its `PanicException`, which is not one).
fn compute<T: Send>(py: Python<'_>, f: impl FnOnce() -> Result<T, Error> + Send) -> PyResult<T> {
    let result = py.detach(|| std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)));
    match result {
        Ok(r) => r.map_err(err),
        Err(payload) => Err(UniaudioError::new_err(format!("internal error: {}", panic_message(&*payload).unwrap_or("no message")))),
    }
}

/// Runs a task with the interpreter lock released, on a worker thread, while this thread
/// looks for signals every 50 ms: on Ctrl-C (or any signal whose handler raises), `f`'s
/// stop check turns true, the task ends within one encoder batch of chunks, generated step or Euler
/// step, and the signal's exception (KeyboardInterrupt) is raised here. The model stays
/// usable. A panic in `f` becomes a `UniaudioError`.
fn compute_interruptible<T: Send>(py: Python<'_>, f: impl FnOnce(&dyn Fn() -> bool) -> Result<T, Error> + Send) -> PyResult<T> {
    compute_watched(py, f, &mut |_| Ok(()))
}

/// `compute_interruptible` that also calls `tick` with the interpreter lock held every
/// 50 ms while the task runs, and once when it has ended well (to report progress, say): an
/// exception from `tick` stops the task as Ctrl-C does and is raised (from the last tick,
/// in place of the finished output).
fn compute_watched<T: Send>(py: Python<'_>, f: impl FnOnce(&dyn Fn() -> bool) -> Result<T, Error> + Send, tick: &mut dyn FnMut(Python<'_>) -> PyResult<()>) -> PyResult<T> {
    let stop = AtomicBool::new(false);
    let (tx, rx) = channel();
    let rx = Mutex::new(rx);
    std::thread::scope(|s| {
        let stop = &stop;
        s.spawn(move || {
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&|| stop.load(Ordering::Relaxed))));
            let _ = tx.send(result);
        });
        let mut interrupted = None;
        let result = loop {
            match py.detach(|| rx.lock().unwrap_or_else(|p| p.into_inner()).recv_timeout(std::time::Duration::from_millis(50))) {
                Ok(result) => break result,
                Err(RecvTimeoutError::Timeout) => {
                    if interrupted.is_none() {
                        if let Err(e) = py.check_signals().and_then(|()| tick(py)) {
                            stop.store(true, Ordering::Relaxed);
                            interrupted = Some(e);
                        }
                    }
                }
                Err(RecvTimeoutError::Disconnected) => break Ok(Err(Error::Internal("the worker thread ended without an answer".into()))),
            }
        };
        if let Some(e) = interrupted {
            return Err(e);
        }
        // The last tick only after a run that succeeded: a failed run's own error comes first.
        if matches!(result, Ok(Ok(_))) {
            tick(py)?;
        }
        match result {
            Ok(r) => r.map_err(err),
            Err(payload) => Err(UniaudioError::new_err(format!("internal error: {}", panic_message(&*payload).unwrap_or("no message")))),
        }
    })
}

/// The model, once no other call holds it, or `Error::Cancelled` if `stop` turns true
/// while waiting (a stream still running on it, say).
fn lock_until<'a>(model: &'a Mutex<uniaudio::Model>, stop: &dyn Fn() -> bool) -> Result<std::sync::MutexGuard<'a, uniaudio::Model>, Error> {
    loop {
        match model.try_lock() {
            Ok(guard) => return Ok(guard),
            Err(std::sync::TryLockError::Poisoned(p)) => return Ok(p.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) if stop() => return Err(Error::Cancelled("cancelled while waiting for the model".into())),
            Err(std::sync::TryLockError::WouldBlock) => std::thread::sleep(std::time::Duration::from_millis(5)),
        }
    }
}

/// Runs a worker thread's body; a panic in it becomes an error for the iterator to raise
/// (else the hung-up channel would read as a normal end).
fn catch_worker<T>(tx: &std::sync::mpsc::Sender<Result<T, Error>>, body: impl FnOnce()) {
    if let Err(payload) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)) {
        let _ = tx.send(Err(Error::Internal(format!("internal error in the worker thread: {}", panic_message(&*payload).unwrap_or("no message")))));
    }
}

/// Text pieces of a transcription as they are generated (an iterator of str). Dropping
/// it stops the transcription at its next step, freeing the model.
#[pyclass(module = "uniaudio")]
struct TextPieces {
    rx: Mutex<Receiver<Result<String, Error>>>,
    dropped: Arc<AtomicBool>,
}

impl Drop for TextPieces {
    fn drop(&mut self) {
        self.dropped.store(true, Ordering::Relaxed);
    }
}

#[pymethods]
impl TextPieces {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<String>> {
        let msg = py.detach(|| self.rx.lock().unwrap_or_else(|p| p.into_inner()).recv());
        match msg {
            Ok(Ok(piece)) => Ok(Some(piece)),
            Ok(Err(e)) => Err(err(e)),
            // The worker finished and hung up: the end of the text.
            Err(_) => Ok(None),
        }
    }
}

/// An audio argument: a file to read, or samples copied out of an array. Reading and
/// resampling wait until the interpreter lock is released (`AudioArg::read`).
enum AudioArg {
    File(std::path::PathBuf),
    Samples(Audio),
}

impl AudioArg {
    fn read(self) -> Result<Audio, Error> {
        match self {
            AudioArg::File(path) => Audio::read(path),
            AudioArg::Samples(audio) => Ok(audio),
        }
    }

    /// The samples at the codec's 24 kHz.
    fn at_24k(self) -> Result<Vec<f32>, Error> {
        self.read()?.at_24k()
    }
}

/// Audio from a path (str or os.PathLike) or a 1-D float32 array (with its sample rate;
/// any strides).
fn audio_arg(audio: &Bound<'_, PyAny>, sample_rate: Option<u32>) -> PyResult<AudioArg> {
    if let Ok(path) = audio.extract::<std::path::PathBuf>() {
        if sample_rate.is_some() {
            return Err(InvalidInputError::new_err("sample_rate is only for arrays; a file says its own rate"));
        }
        return Ok(AudioArg::File(path));
    }
    let array: PyReadonlyArray1<'_, f32> = audio.extract().map_err(|_| InvalidInputError::new_err("audio must be a path or a 1-D float32 numpy array"))?;
    let rate = sample_rate.ok_or_else(|| InvalidInputError::new_err("an audio array needs sample_rate"))?;
    Ok(AudioArg::Samples(Audio { samples: array.as_array().iter().copied().collect(), sample_rate: rate }))
}

impl PyModel {
    #[allow(clippy::too_many_arguments)]
    fn text_task(&self, py: Python<'_>, task: Task, audio: AudioArg, question: Option<String>, seed: u64, max_steps: Option<usize>, on_progress: Option<Py<PyAny>>) -> PyResult<String> {
        let req = TaskRequest {
            task,
            text: TaskText { question, ..Default::default() },
            audio: None,
            sampling: Sampling { seed, max_steps, ..Default::default() },
            codec: CodecSettings::default(),
            prompt_frames: None,
        };
        let out = task::run_reporting(py, &self.inner, req, Some(audio), on_progress)?;
        Ok(out.text.unwrap_or_default())
    }
}

#[pymethods]
impl PyModel {
    /// Loads a bundle on `backend` ("auto", "cpu", "wgpu", "cuda") at `precision` ("exact", "fast").
    #[staticmethod]
    #[pyo3(signature = (path, backend = "auto", precision = "exact"))]
    fn load(py: Python<'_>, path: String, backend: &str, precision: &str) -> PyResult<PyModel> {
        let backend = BackendKind::parse(backend).ok_or_else(|| InvalidInputError::new_err(format!("backend `{backend}`: expected auto, cpu, wgpu or cuda")))?;
        let precision = Precision::parse(precision).ok_or_else(|| InvalidInputError::new_err(format!("precision `{precision}`: expected exact or fast")))?;
        let model = compute(py, || uniaudio::Model::load(&path, LoadOptions { backend, precision, ..Default::default() }))?;
        let backend = model.backend().to_string();
        Ok(PyModel { inner: Arc::new(Mutex::new(model)), backend })
    }

    /// The backend in words.
    #[getter]
    fn backend(&self) -> String {
        self.backend.clone()
    }

    /// Text to speech: (float32 samples, sample rate). `steps` is the codec's Euler steps;
    /// `on_progress(stage, done, total)` is called as for `run`.
    #[pyo3(signature = (text, *, seed = 888, max_steps = None, steps = 50, top_k = None, temperature = None, on_progress = None))]
    #[allow(clippy::too_many_arguments)]
    fn tts<'py>(
        &self,
        py: Python<'py>,
        text: String,
        seed: u64,
        max_steps: Option<usize>,
        steps: usize,
        top_k: Option<usize>,
        temperature: Option<f32>,
        on_progress: Option<Py<PyAny>>,
    ) -> PyResult<(Bound<'py, PyArray1<f32>>, u32)> {
        let req = TaskRequest {
            task: Task::Tts,
            text: TaskText { text: Some(text), ..Default::default() },
            audio: None,
            sampling: Sampling { seed, max_steps, top_k, temperature, cfg_scale: None, step_limit: None },
            codec: CodecSettings { steps, ..Default::default() },
            prompt_frames: None,
        };
        let out = task::run_reporting(py, &self.inner, req, None, on_progress)?;
        let samples = out.audio.ok_or_else(|| UniaudioError::new_err("no audio was produced"))?;
        Ok((samples.into_pyarray(py), out.sample_rate))
    }

    /// Speech recognition of a file path or a float32 array (with `sample_rate`).
    /// `on_progress(stage, done, total)` is called as for `run`.
    #[pyo3(signature = (audio, sample_rate = None, *, seed = 888, max_steps = None, on_progress = None))]
    fn transcribe(&self, py: Python<'_>, audio: &Bound<'_, PyAny>, sample_rate: Option<u32>, seed: u64, max_steps: Option<usize>, on_progress: Option<Py<PyAny>>) -> PyResult<String> {
        let audio = audio_arg(audio, sample_rate)?;
        self.text_task(py, Task::Asr, audio, None, seed, max_steps, on_progress)
    }

    /// Speech recognition whose text arrives piece by piece, as it is generated.
    #[pyo3(signature = (audio, sample_rate = None, *, seed = 888, max_steps = None))]
    fn transcribe_stream(&self, py: Python<'_>, audio: &Bound<'_, PyAny>, sample_rate: Option<u32>, seed: u64, max_steps: Option<usize>) -> PyResult<TextPieces> {
        let audio = audio_arg(audio, sample_rate)?;
        let samples = compute(py, || audio.at_24k())?;
        let req = TaskRequest {
            task: Task::Asr,
            text: TaskText::default(),
            audio: Some(AudioInput::Samples24k(samples)),
            sampling: Sampling { seed, max_steps, ..Default::default() },
            codec: CodecSettings::default(),
            prompt_frames: None,
        };
        let (tx, rx) = channel();
        let inner = Arc::clone(&self.inner);
        let dropped = Arc::new(AtomicBool::new(false));
        let stop = Arc::clone(&dropped);
        std::thread::spawn(move || {
            catch_worker(&tx, || {
                let mut model = inner.lock().unwrap_or_else(|p| p.into_inner());
                let result = model.run_until(
                    &req,
                    &mut |e| {
                        if let Event::Text(t) = e {
                            let _ = tx.send(Ok(t.to_string()));
                        }
                    },
                    &|| stop.load(Ordering::Relaxed),
                );
                if let Err(e) = result {
                    let _ = tx.send(Err(e));
                }
            })
        });
        Ok(TextPieces { rx: Mutex::new(rx), dropped })
    }

    /// A description of the sounds.
    #[pyo3(signature = (audio, sample_rate = None, *, seed = 888, max_steps = None, on_progress = None))]
    fn caption(&self, py: Python<'_>, audio: &Bound<'_, PyAny>, sample_rate: Option<u32>, seed: u64, max_steps: Option<usize>, on_progress: Option<Py<PyAny>>) -> PyResult<String> {
        let audio = audio_arg(audio, sample_rate)?;
        self.text_task(py, Task::AudioCaption, audio, None, seed, max_steps, on_progress)
    }

    /// The answer to `question` about the audio.
    #[pyo3(signature = (audio, question, sample_rate = None, *, seed = 888, max_steps = None, on_progress = None))]
    #[allow(clippy::too_many_arguments)]
    fn ask(&self, py: Python<'_>, audio: &Bound<'_, PyAny>, question: String, sample_rate: Option<u32>, seed: u64, max_steps: Option<usize>, on_progress: Option<Py<PyAny>>) -> PyResult<String> {
        let audio = audio_arg(audio, sample_rate)?;
        self.text_task(py, Task::AudioUnderstanding, audio, Some(question), seed, max_steps, on_progress)
    }

    /// Runs any task by name (`TTS`, `TTA`, `TTM`, `LTS` or `song`, `InstructTTS`,
    /// `speech_s2s`, `ASR`, `audio_caption`, `music_caption`, `lyric_recognition`,
    /// `speech_s2t`, `audio_understanding`, `Yue_TTS`, `Yue_ASR`; any case) with the text
    /// inputs it reads and `audio` for the tasks that read audio; the keyword `steps` is the
    /// codec's Euler steps (1 to 1000). `on_progress(stage, done, total)`, if given, is
    /// called with the latest progress of stage "encode", "generate" or "decode" at most
    /// every 50 ms and when the run ends well; an exception it raises stops the run and is
    /// raised in place of its output. Returns a dict: `text` (text tasks) or `audio` (float32 samples) at
    /// `sample_rate`, `stopped_by`, `steps` (LM steps generated), `top_k`, `temperature`,
    /// `seed` and `max_steps` as used, and `timings`.
    #[pyo3(signature = (task, audio = None, sample_rate = None, *, text = None, caption = None, lyrics = None, question = None, instruction = None, seed = 888, max_steps = None, top_k = None, temperature = None, cfg_scale = None, steps = 50, on_progress = None))]
    #[allow(clippy::too_many_arguments)]
    fn run(
        &self,
        py: Python<'_>,
        task: &str,
        audio: Option<&Bound<'_, PyAny>>,
        sample_rate: Option<u32>,
        text: Option<String>,
        caption: Option<String>,
        lyrics: Option<String>,
        question: Option<String>,
        instruction: Option<String>,
        seed: u64,
        max_steps: Option<usize>,
        top_k: Option<usize>,
        temperature: Option<f32>,
        cfg_scale: Option<f32>,
        steps: u64,
        on_progress: Option<Py<PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let audio = match audio {
            Some(a) => Some(audio_arg(a, sample_rate)?),
            None if sample_rate.is_some() => return Err(InvalidInputError::new_err("sample_rate is only for an audio array")),
            None => None,
        };
        let texts = TaskText { text, caption, lyrics, question, instruction };
        let sampling = Sampling { seed, max_steps, top_k, temperature, cfg_scale, step_limit: None };
        task::run(py, &self.inner, task, audio, texts, sampling, steps, on_progress)
    }

    /// Streams one raw generation request (a dict or JSON text: `frames`, `output_kind`,
    /// and optionally `top_k`, `temperature`, `seed`, `max_steps`, `cfg_scale`): yields
    /// `("frame", codes)` and `("text", id)` as they are sampled, then `("done", output)`.
    fn generate(&self, py: Python<'_>, request: &Bound<'_, PyAny>) -> PyResult<generate::Events> {
        generate::start(py, &self.inner, request)
    }

    /// Runs many raw generation requests together (up to `max_batch` rows per step):
    /// one output dict per request, in order, each what the request gives alone, or
    /// `{"error": message}` for one that was refused or failed.
    #[pyo3(signature = (requests, max_batch = 8))]
    fn generate_batch(&self, py: Python<'_>, requests: &Bound<'_, PyAny>, max_batch: usize) -> PyResult<Vec<Py<PyAny>>> {
        generate::batch(py, &self.inner, requests, max_batch)
    }

    /// Audio to its tokens: (reasoning, reconstruction), each [[8 codes], ...].
    #[pyo3(signature = (audio, sample_rate = None))]
    fn encode(&self, py: Python<'_>, audio: &Bound<'_, PyAny>, sample_rate: Option<u32>) -> PyResult<(Vec<[u32; 8]>, Vec<[u32; 8]>)> {
        let audio = audio_arg(audio, sample_rate)?;
        let tokens = compute_interruptible(py, |stop| {
            let audio = audio.read()?;
            lock_until(&self.inner, stop)?.encode_until(&audio, stop)
        })?;
        Ok((tokens.reasoning, tokens.reconstruction))
    }

    /// Reconstruction frames ([[8 codes], ...]) to (float32 samples, 24000).
    #[pyo3(signature = (reconstruction, steps = 10, seed = 0))]
    fn decode<'py>(&self, py: Python<'py>, reconstruction: Vec<[u32; 8]>, steps: usize, seed: u64) -> PyResult<(Bound<'py, PyArray1<f32>>, u32)> {
        let tokens = uniaudio::AudioTokens { reasoning: Vec::new(), reconstruction };
        let audio = compute_interruptible(py, |stop| lock_until(&self.inner, stop)?.decode_until(&tokens, steps, seed, stop))?;
        Ok((audio.samples.into_pyarray(py), audio.sample_rate))
    }
}

#[pymodule]
fn _uniaudio(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyModel>()?;
    m.add_class::<TextPieces>()?;
    m.add_class::<generate::Events>()?;
    m.add("UniaudioError", m.py().get_type::<UniaudioError>())?;
    m.add("InvalidInputError", m.py().get_type::<InvalidInputError>())?;
    m.add("MissingPartError", m.py().get_type::<MissingPartError>())?;
    m.add("ModelError", m.py().get_type::<ModelError>())?;
    m.add("AudioError", m.py().get_type::<AudioError>())?;
    m.add("BackendError", m.py().get_type::<BackendError>())?;
    Ok(())
}
