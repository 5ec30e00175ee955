//! The backend contract: small enough to implement on CPU, wgpu and CUDA.
//!
//! `exec` only *enqueues* work on GPU backends: a whole decode step is recorded and
//! submitted without host round-trips, and `download`/`sync` are the only points that wait.

use crate::op::{Op, ValidOp};
use crate::weights::WeightView;
use crate::{DType, DeviceBuffer, Result, Tensor};

pub trait Backend: Sized + Send + Sync {
    type Buffer: DeviceBuffer;
    /// Short lower-case name used in errors, test output and bench ids ("cpu", "wgpu", "cuda").
    const NAME: &'static str;

    /// A zero-filled tensor.
    fn alloc(&self, dtype: DType, shape: &[usize]) -> Result<Tensor<Self>>;
    /// A new tensor holding `bytes` (little-endian elements of `dtype`).
    fn upload(&self, dtype: DType, shape: &[usize], bytes: &[u8]) -> Result<Tensor<Self>>;
    /// Overwrites the contents of `dst` with `bytes` (ordered after previously enqueued work).
    fn write(&self, dst: &Tensor<Self>, bytes: &[u8]) -> Result<()>;
    /// Makes a model weight available to ops. Backends that can use the mapped file
    /// in place (CPU) do so without copying.
    fn upload_weight(&self, weight: &WeightView) -> Result<Tensor<Self>> {
        self.upload(weight.dtype(), weight.shape(), weight.bytes())
    }
    /// `upload_weight` for a weight that meets many-row products again and again (the
    /// codec flow's linears): a backend may also keep it in the layout its GEMM wants,
    /// holding up to the weight's size again (the CPU's bf16 fast path pairs it once).
    fn upload_gemm_weight(&self, weight: &WeightView) -> Result<Tensor<Self>> {
        self.upload_weight(weight)
    }
    /// Waits for enqueued work and returns the bytes of `src`.
    fn download(&self, src: &Tensor<Self>) -> Result<Vec<u8>>;
    /// Whether `exec` can run this op (dtype/shape combination) on this backend.
    fn supports(&self, op: &Op<'_, Self>) -> bool;
    /// Enqueues one validated op.
    fn exec(&self, op: ValidOp<'_, '_, Self>) -> Result<()>;
    /// Waits until all enqueued work has finished.
    fn sync(&self) -> Result<()>;
    /// Marks the start of one decode step, which ends at the next `download` or `sync`.
    /// A backend may record the step and replay it as one unit (CUDA graphs); so a step
    /// must not allocate, and consecutive steps should enqueue the same ops, differing
    /// only in scalars and written data.
    fn begin_step(&self) -> Result<()> {
        Ok(())
    }
    /// Runs `f`, host code that issues many ops (one decode step), where this backend
    /// issues ops fastest: the CPU backend runs it on a thread of its pool, one caller
    /// at a time (in arrival order). `f` must not wait for other threads that use the
    /// backend.
    fn run_step<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        f()
    }
    /// The largest activation tensor, in bytes, an op can bind (None: no limit beyond memory).
    /// Callers that batch size their batches to it.
    fn max_tensor_bytes(&self) -> Option<u64> {
        None
    }
    /// Bytes of device memory free for new allocations now, where the backend can tell
    /// (sizes default budgets such as the KV pool's).
    fn memory_available(&self) -> Option<usize> {
        None
    }
}
