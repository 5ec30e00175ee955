//! The uniaudio runtime behind a C ABI: opaque model handles, plain structs, status codes,
//! and a per-thread last-error message. The header `include/uniaudio.h` is generated from
//! this crate (a test keeps it current).
//!
//! Ownership: every `UniaudioModel *` from `uniaudio_model_load` is released with
//! `uniaudio_model_free`; every `UniaudioAudio` filled by the library with
//! `uniaudio_audio_free`; every `UniaudioTokens` with `uniaudio_tokens_free`; every
//! `char *` it returns with `uniaudio_string_free`. Strings
//! passed in are borrowed for the call only. No panic crosses the boundary: it becomes
//! `UNIAUDIO_STATUS_PANIC` with a message.

use std::cell::RefCell;
use std::ffi::{c_char, c_void, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};

use uniaudio::{BackendKind, Error, LoadOptions, Model};

mod audio;
mod codec;
mod generate;
mod task;

pub use audio::*;
pub use codec::*;
pub use generate::*;
pub use task::*;

/// The result of every fallible call. On any status but `UNIAUDIO_STATUS_OK`,
/// `uniaudio_last_error` says why and the outputs are untouched.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UniaudioStatus {
    /// Success; outputs are filled.
    Ok = 0,
    /// A fault inside the library (worth a bug report).
    Error = 1,
    /// A required pointer argument was null.
    NullArgument = 2,
    /// A panic was caught at the boundary; the model may be used again.
    Panic = 3,
    /// An argument or request was refused (a bad value, a missing input, too long).
    InvalidInput = 4,
    /// The model lacks a part the call needs (the message names it).
    MissingPart = 5,
    /// A model file is missing, unreadable or malformed.
    Model = 6,
    /// An audio file could not be read or decoded.
    Audio = 7,
    /// The backend could not be opened or failed.
    Backend = 8,
    /// A file could not be read or written.
    Io = 9,
    /// The caller's event callback or abort callback asked to stop.
    Cancelled = 10,
}

/// Asked by a running call, on the thread that made it, whether to stop: return 0 to go
/// on, anything else to stop (the call then returns `UNIAUDIO_STATUS_CANCELLED`). It is
/// asked at the start of a call, before each batch of encoder chunks and each generated
/// step, and after each Euler step of the codec decoder, so keep it cheap (reading an atomic flag that
/// another thread sets, or comparing a deadline). It must not call the library with its
/// model (refused, as from an event callback).
pub type UniaudioAbortFn = Option<unsafe extern "C" fn(user: *mut c_void) -> i32>;

/// A loaded model (opaque).
pub struct UniaudioModel {
    model: Model,
    /// Set while a call runs on the model: a second call on it (from an event callback,
    /// or from another thread) is refused instead of aliasing the running one.
    busy: AtomicBool,
    /// The caller's abort callback and its argument (`uniaudio_model_set_abort`).
    abort: Abort,
}

/// An abort callback with its argument; `asked` is false when there is none.
#[derive(Clone, Copy)]
struct Abort {
    f: UniaudioAbortFn,
    user: *mut c_void,
}

impl Abort {
    const NONE: Abort = Abort { f: None, user: std::ptr::null_mut() };

    fn asked(&self) -> bool {
        // SAFETY: the caller promised `f` is callable with `user` while it is set.
        self.f.is_some_and(|f| unsafe { f(self.user) } != 0)
    }
}

/// A model held by one call; released when dropped (a panic included).
struct InUse(*mut UniaudioModel);

impl InUse {
    /// Takes `model` for one call, or refuses when a call on it is running.
    unsafe fn take(model: *mut UniaudioModel, call: &str) -> Result<InUse, Error> {
        // Only the flag is touched here: a running call holds `&mut` to the model field.
        let busy = &(*model).busy;
        if busy.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed).is_err() {
            return Err(Error::invalid_input(format!("{call}: the model is busy with another call (one call at a time; an event callback must not call the library with its model)")));
        }
        Ok(InUse(model))
    }

    /// The model and its abort callback, for the call's duration.
    unsafe fn model_and_abort(&mut self) -> (&mut Model, Abort) {
        let m = &mut *self.0;
        (&mut m.model, m.abort)
    }
}

impl Drop for InUse {
    fn drop(&mut self) {
        // SAFETY: the model outlives the call (freeing a busy model is refused).
        unsafe { (*self.0).busy.store(false, Ordering::Release) };
    }
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_error(msg: &str) {
    let c = CString::new(msg.replace('\0', " ")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = c);
}

/// Why a call stopped: the library's error, or the caller's event callback.
enum Failure {
    Library(Error),
    Cancelled,
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        Failure::Library(e)
    }
}

fn status_of(e: &Error) -> UniaudioStatus {
    match e {
        Error::InvalidInput(_) => UniaudioStatus::InvalidInput,
        Error::MissingPart(_) => UniaudioStatus::MissingPart,
        Error::Model(_) => UniaudioStatus::Model,
        Error::Audio(_) => UniaudioStatus::Audio,
        Error::Backend(_) => UniaudioStatus::Backend,
        Error::Io(_) => UniaudioStatus::Io,
        Error::Cancelled(_) => UniaudioStatus::Cancelled,
        _ => UniaudioStatus::Error,
    }
}

/// Runs `f`, turning errors and panics into a status and the last-error message.
fn guard(f: impl FnOnce() -> Result<(), Failure>) -> UniaudioStatus {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => UniaudioStatus::Ok,
        // The abort callback is the only stop a call hands the library.
        Ok(Err(Failure::Library(Error::Cancelled(_)))) => {
            set_error("stopped by the abort callback (uniaudio_model_set_abort)");
            UniaudioStatus::Cancelled
        }
        Ok(Err(Failure::Library(e))) => {
            set_error(e.message());
            status_of(&e)
        }
        Ok(Err(Failure::Cancelled)) => {
            set_error("cancelled by the event callback");
            UniaudioStatus::Cancelled
        }
        Err(payload) => {
            let what = uniaudio::error::panic_message(&*payload).unwrap_or("no message");
            set_error(&format!("internal error (caught at the C boundary): {what}"));
            UniaudioStatus::Panic
        }
    }
}

/// A borrowed C string as UTF-8, naming the argument when it is not.
unsafe fn str_arg<'a>(p: *const c_char, name: &str) -> Result<&'a str, Error> {
    CStr::from_ptr(p).to_str().map_err(|_| Error::invalid_input(format!("{name} is not valid UTF-8")))
}

/// A library-owned copy of `s` for the caller (free with `uniaudio_string_free`).
fn c_string(s: &str) -> *mut c_char {
    CString::new(s.replace('\0', " ")).unwrap_or_default().into_raw()
}

/// Checks that no pointer in `args` is null, naming them all in the message.
fn non_null(call: &str, names: &str, args: &[bool]) -> Result<(), UniaudioStatus> {
    if args.iter().any(|&null| null) {
        set_error(&format!("{call}: {names} must not be null"));
        return Err(UniaudioStatus::NullArgument);
    }
    Ok(())
}

/// The message of the last failed call on this thread ("" if none). Valid until the next
/// call on this thread; do not free it.
#[no_mangle]
pub extern "C" fn uniaudio_last_error() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

/// Loads a bundle (a directory with uniaudio.json) on `backend` ("auto", "cpu", "wgpu",
/// "cuda"; null means "auto") into `*out`.
///
/// # Safety
/// `path` and `backend` (if not null) are NUL-terminated strings; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn uniaudio_model_load(path: *const c_char, backend: *const c_char, out: *mut *mut UniaudioModel) -> UniaudioStatus {
    if let Err(s) = non_null("uniaudio_model_load", "path and out", &[path.is_null(), out.is_null()]) {
        return s;
    }
    guard(|| {
        let path = str_arg(path, "path")?;
        let kind = if backend.is_null() { BackendKind::Auto } else {
            let b = str_arg(backend, "backend")?;
            BackendKind::parse(b).ok_or_else(|| Error::invalid_input(format!("backend `{b}`: expected auto, cpu, wgpu or cuda")))?
        };
        let model = Model::load(path, LoadOptions { backend: kind, ..Default::default() })?;
        *out = Box::into_raw(Box::new(UniaudioModel { model, busy: AtomicBool::new(false), abort: Abort::NONE }));
        Ok(())
    })
}

/// Sets the abort callback that every later call on `model` asks whether to stop (see
/// `UniaudioAbortFn`); a null `abort` removes it. Refused with
/// `UNIAUDIO_STATUS_INVALID_INPUT` while a call runs on the model.
///
/// # Safety
/// `model` is a live model; `abort`, if not null, is callable with `user` until it is
/// replaced or the model is freed.
#[no_mangle]
pub unsafe extern "C" fn uniaudio_model_set_abort(model: *mut UniaudioModel, abort: UniaudioAbortFn, user: *mut c_void) -> UniaudioStatus {
    if let Err(s) = non_null("uniaudio_model_set_abort", "model", &[model.is_null()]) {
        return s;
    }
    guard(|| {
        let held = InUse::take(model, "uniaudio_model_set_abort")?;
        (*held.0).abort = Abort { f: abort, user };
        Ok(())
    })
}

/// Releases a model (null is ignored). A model with a call running on it (freed from an
/// event callback) is not released: `uniaudio_last_error` says so, and the model stays
/// valid until it is freed after the call returns.
///
/// # Safety
/// `model` came from `uniaudio_model_load` and is not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn uniaudio_model_free(model: *mut UniaudioModel) {
    if model.is_null() {
        return;
    }
    match InUse::take(model, "uniaudio_model_free") {
        Ok(held) => {
            std::mem::forget(held);
            drop(Box::from_raw(model));
        }
        Err(e) => set_error(e.message()),
    }
}

/// Releases a string returned by the library (null is ignored).
///
/// # Safety
/// `s` came from this library and is not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn uniaudio_string_free(s: *mut c_char) {
    if !s.is_null() {
        drop(CString::from_raw(s));
    }
}
