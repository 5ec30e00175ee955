//! Decode steps replayed as one CUDA graph. `begin_step` starts a stream capture (callers
//! run one step eagerly first, so kernels are compiled and buffers sized); the step's
//! first `download` or `sync` ends it. The captured graph updates the executable graph of
//! the previous step in place when only kernel arguments changed (the usual case: the
//! cache length and sampler counters move every step) and is instantiated anew otherwise,
//! then launched as one unit. Host writes during a capture go through a pinned staging
//! area, so the graph's copies read the bytes written for its own step.

use std::sync::Mutex;

use cudarc::driver::{result, sys, PinnedHostSlice};

use super::{err, Cuda};
use crate::Result;

/// Bytes of host data one captured step may write.
const STAGING_BYTES: usize = 1 << 20;

struct Exec(sys::CUgraphExec);

impl Drop for Exec {
    fn drop(&mut self) {
        // SAFETY: the handle came from instantiate and is destroyed once.
        let _ = unsafe { result::graph::exec_destroy(self.0) };
    }
}

// SAFETY: the handle is only used under the StepGraph mutex.
unsafe impl Send for Exec {}

#[derive(Default)]
struct State {
    capturing: bool,
    exec: Option<Exec>,
    staging: Option<PinnedHostSlice<u8>>,
    staged: usize,
    /// Launches of an updated graph / of a newly instantiated one.
    updated: u64,
    instantiated: u64,
}

#[derive(Default)]
pub(crate) struct StepGraph {
    state: Mutex<State>,
}

impl StepGraph {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn capturing(&self) -> bool {
        self.lock().capturing
    }

    /// (updated, instantiated) graph launches so far.
    pub fn launches(&self) -> (u64, u64) {
        let s = self.lock();
        (s.updated, s.instantiated)
    }

    pub fn begin(&self, c: &Cuda) -> Result<()> {
        let mut s = self.lock();
        if s.capturing {
            return Err(err("begin_step inside a step that has not ended (no download or sync since)"));
        }
        if s.staging.is_none() {
            // SAFETY: the buffer is only read by copies enqueued after it is filled.
            s.staging = Some(unsafe { c.ctx.alloc_pinned::<u8>(STAGING_BYTES) }.map_err(|e| err(format!("pinned staging for graph capture: {e}")))?);
        }
        s.staged = 0;
        c.stream.begin_capture(sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_RELAXED).map_err(|e| err(format!("begin graph capture: {e}")))?;
        s.capturing = true;
        Ok(())
    }

    /// Enqueues a host-to-device copy of `bytes` inside the capture.
    pub fn write(&self, c: &Cuda, dst: u64, bytes: &[u8]) -> Result<()> {
        let mut s = self.lock();
        let start = s.staged;
        let end = start + bytes.len();
        if end > STAGING_BYTES {
            return Err(err(format!("a captured step writes more than {STAGING_BYTES} bytes of host data")));
        }
        s.staged = end.next_multiple_of(16);
        let staging = s.staging.as_mut().expect("staging exists while capturing");
        let host = staging.as_mut_slice().map_err(|e| err(e.to_string()))?;
        host[start..end].copy_from_slice(bytes);
        // SAFETY: dst lies inside a live allocation (checked views); the pinned source stays
        // untouched until the next step, which begins after this one's download.
        unsafe { result::memcpy_htod_async(dst, &host[start..end], c.stream.cu_stream()) }.map_err(|e| err(format!("captured upload: {e}")))
    }

    /// Ends the capture and launches the step's graph.
    pub fn end(&self, c: &Cuda) -> Result<()> {
        let mut s = self.lock();
        if !s.capturing {
            return Ok(());
        }
        s.capturing = false;
        // SAFETY: the stream is valid and capturing.
        let graph = unsafe { result::stream::end_capture(c.stream.cu_stream()) }.map_err(|e| err(format!("end graph capture: {e}")))?;
        if graph.is_null() {
            return Err(err("graph capture produced no graph"));
        }
        let outcome = Self::update_or_instantiate(&mut s, graph);
        // SAFETY: the executable graph no longer needs the captured one.
        let _ = unsafe { result::graph::destroy(graph) };
        let exec = outcome?;
        // SAFETY: exec and the stream are valid.
        unsafe { result::graph::launch(exec, c.stream.cu_stream()) }.map_err(|e| err(format!("graph launch: {e}")))
    }

    fn update_or_instantiate(s: &mut State, graph: sys::CUgraph) -> Result<sys::CUgraphExec> {
        if let Some(exec) = &s.exec {
            let mut info = std::mem::MaybeUninit::<sys::CUgraphExecUpdateResultInfo>::zeroed();
            // SAFETY: both handles are valid; info is written by the driver.
            let status = unsafe { sys::cuGraphExecUpdate_v2(exec.0, graph, info.as_mut_ptr()) };
            if status == sys::CUresult::CUDA_SUCCESS {
                s.updated += 1;
                return Ok(exec.0);
            }
        }
        // A different topology (e.g. attention switched to split-KV): instantiate anew.
        s.exec = None;
        // SAFETY: graph is a valid captured graph.
        let exec = unsafe { result::graph::instantiate(graph, sys::CUgraphInstantiate_flags(0)) }.map_err(|e| err(format!("graph instantiate: {e}")))?;
        s.exec = Some(Exec(exec));
        s.instantiated += 1;
        Ok(exec)
    }
}
