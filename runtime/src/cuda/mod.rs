//! The CUDA backend: hand-written kernels (`kernels/cuda/`) through cudarc, loaded
//! dynamically so the project builds and runs without CUDA; only the NVIDIA driver and
//! NVRTC are needed at run time.
//!
//! Kernels are compiled with NVRTC on first use for the device's architecture and cached
//! on disk as PTX keyed by a hash of the source and the architecture
//! (`$UNIAUDIO_CACHE_DIR/ptx`, or `~/.cache/uniaudio/ptx`). All work goes to one stream;
//! `download` and `sync` are the only points that wait.

mod buffer;
mod graph;
pub mod launch;
pub mod tune;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cudarc::driver::{CudaContext, CudaEvent, CudaFunction, CudaModule, CudaStream, DevicePtr, PinnedHostSlice};

pub use buffer::CudaBuffer;

use crate::op::{Op, ValidOp};
use crate::weights::WeightView;
use crate::{Backend, DType, Error, Precision, Result, Tensor};

fn err(msg: impl Into<String>) -> Error {
    Error::Backend { backend: "cuda", msg: msg.into() }
}

/// Smallest scratch allocation: split-KV decode partials for every cache length fit, so
/// captured steps never need to grow it.
pub(crate) const MIN_SCRATCH_BYTES: usize = 16 << 20;

/// Bytes per pinned staging buffer for weight uploads (two alternate).
const STAGE_BYTES: usize = 32 << 20;

/// A pinned host buffer and the event of the last copy that read it.
struct Stage {
    host: PinnedHostSlice<u8>,
    done: Option<CudaEvent>,
}

/// What a `Cuda` backend may use.
#[derive(Clone, Copy, Debug)]
pub struct CudaOptions {
    /// Tensor-core (mma) kernels where the device has them (sm_80+); off runs the
    /// CUDA-core kernels everywhere.
    pub tensor_cores: bool,
    /// Decode steps (`Backend::begin_step`) captured and replayed as CUDA graphs.
    pub graphs: bool,
    /// `Fast` runs the tensor-core GEMMs and convolutions on bf16 operands (`*_tc_fast_*`).
    pub precision: Precision,
}

impl CudaOptions {
    /// Everything on, except what `UNIAUDIO_CUDA_NO_TENSOR_CORES` / `UNIAUDIO_CUDA_NO_GRAPHS`
    /// turn off.
    pub fn from_env() -> Self {
        let off = |name: &str| std::env::var(name).is_ok_and(|v| !v.is_empty() && v != "0");
        CudaOptions { tensor_cores: !off("UNIAUDIO_CUDA_NO_TENSOR_CORES"), graphs: !off("UNIAUDIO_CUDA_NO_GRAPHS"), precision: Precision::Exact }
    }
}

pub struct Cuda {
    ctx: Arc<CudaContext>,
    tensor_cores: bool,
    precision: Precision,
    /// Decode steps captured and replayed as CUDA graphs (None: steps run eagerly).
    step_graph: Option<graph::StepGraph>,
    staging: Mutex<Vec<Stage>>,
    /// Device scratch for multi-kernel ops (split-KV partials), grown on demand.
    scratch: Mutex<Option<CudaBuffer>>,
    stream: Arc<CudaStream>,
    arch: u32,
    /// Streaming multiprocessors: launches with fewer blocks leave the device idle.
    sm_count: usize,
    name: String,
    modules: Mutex<HashMap<&'static str, Arc<CudaModule>>>,
    functions: Mutex<HashMap<String, CudaFunction>>,
    /// Driver version as the driver reports it (e.g. 12080), for the tuning cache key.
    driver_version: i32,
    /// `cuda.gemv.warps` in use (`tune`).
    gemv: crate::tune::table::Tuned,
    /// What the tunable families run with, in words.
    tune_status: String,
}

impl Cuda {
    /// Device 0, or an error saying why there is none (no driver, no device).
    /// `UNIAUDIO_CUDA_NO_TENSOR_CORES` and `UNIAUDIO_CUDA_NO_GRAPHS` keep those off.
    pub fn new() -> Result<Self> {
        Self::with_options(CudaOptions::from_env())
    }

    pub fn with_options(options: CudaOptions) -> Result<Self> {
        // SAFETY: only probes whether the driver library can be loaded.
        if !unsafe { cudarc::driver::sys::is_culib_present() } {
            return Err(err("no NVIDIA driver found (libcuda.so could not be loaded)"));
        }
        let ctx = CudaContext::new(0).map_err(|e| err(format!("cannot open device 0: {e}")))?;
        let (major, minor) = ctx.compute_capability().map_err(|e| err(e.to_string()))?;
        let name = ctx.name().unwrap_or_else(|_| "unknown NVIDIA GPU".into());
        let stream = ctx.default_stream();
        let arch = (major * 10 + minor) as u32;
        let sm_count = ctx.attribute(cudarc::driver::sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT).map_err(|e| err(e.to_string()))?.max(1) as usize;
        let step_graph = options.graphs.then(graph::StepGraph::default);
        let tensor_cores = options.tensor_cores && arch >= 80;
        // `fast` lives in the tensor-core kernels; without them every product is exact.
        let precision = if tensor_cores { options.precision } else { Precision::Exact };
        let mut driver_version = 0;
        // SAFETY: the driver is loaded (checked above); the call writes one int.
        unsafe { cudarc::driver::sys::cuDriverGetVersion(&mut driver_version) };
        let mut cuda = Cuda {
            ctx,
            tensor_cores,
            precision,
            step_graph,
            staging: Mutex::new(Vec::new()),
            scratch: Mutex::new(None),
            stream,
            arch,
            sm_count,
            name,
            modules: Mutex::new(HashMap::new()),
            functions: Mutex::new(HashMap::new()),
            driver_version,
            gemv: crate::tune::table::Tuned::new(&tune::GEMV_FAMILY),
            tune_status: String::new(),
        };
        cuda.tune_status = tune::load(&cuda);
        Ok(cuda)
    }

    /// What the tunable families run with: a tuned table, tuning on first use, or the defaults.
    pub fn tune_status(&self) -> &str {
        &self.tune_status
    }

    /// Built-in defaults for every class from now on (nothing timed on first use).
    pub fn use_tuning_defaults(&self) {
        self.gemv.reset(true);
    }

    /// The precision the kernels run at: `Fast` only with tensor cores.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    pub fn describe(&self) -> String {
        let on = |b: bool| if b { "on" } else { "off" };
        format!("{} (sm_{}) [tensor cores: {}, graphs: {}, {} precision]", self.name, self.arch, on(self.tensor_cores), on(self.step_graph.is_some()), self.precision.name())
    }

    /// (updated, newly instantiated) decode-step graph launches so far.
    pub fn graph_launches(&self) -> (u64, u64) {
        self.step_graph.as_ref().map_or((0, 0), |g| g.launches())
    }

    fn capturing(&self) -> bool {
        self.step_graph.as_ref().is_some_and(|g| g.capturing())
    }

    /// Ends a step being captured (launching its graph).
    fn end_step(&self) -> Result<()> {
        match &self.step_graph {
            Some(g) => g.end(self),
            None => Ok(()),
        }
    }

    /// The PTX of one source file for this device, from the cache or NVRTC.
    fn ptx(&self, file: &'static str) -> Result<String> {
        let source = uniaudio_kernels::cuda(file).ok_or_else(|| err(format!("no CUDA source `{file}`")))?;
        let text = format!("{}\n{}", uniaudio_kernels::CUDA_COMMON, source.text);
        let key = crate::synth::fnv1a64(format!("{}|{}", self.arch, text).as_bytes());
        let path = crate::cache_dir().join("ptx").join(format!("{file}-{key:016x}-sm{}.ptx", self.arch));
        if let Ok(ptx) = std::fs::read_to_string(&path) {
            return Ok(ptx);
        }
        // SAFETY: only probes whether the NVRTC library can be loaded.
        if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
            return Err(err(format!("NVRTC (libnvrtc.so) is needed once to compile `{file}.cu`; install the CUDA runtime or pip nvidia-cuda-nvrtc-cu12")));
        }
        let arch = self.arch.min(90);
        let opts = cudarc::nvrtc::CompileOptions { options: vec![format!("--gpu-architecture=compute_{arch}"), "--std=c++17".into()], ..Default::default() };
        let ptx = cudarc::nvrtc::compile_ptx_with_opts(&text, opts).map_err(|e| err(format!("compiling {file}.cu: {e}")))?.to_src();
        // A failed cache write only costs a recompile next time.
        if std::fs::create_dir_all(path.parent().expect("cache path has a parent")).is_ok() {
            let tmp = path.with_extension("ptx.tmp");
            if std::fs::write(&tmp, &ptx).is_ok() {
                let _ = std::fs::rename(&tmp, &path);
            }
        }
        Ok(ptx)
    }

    pub(crate) fn function(&self, file: &'static str, name: &str) -> Result<CudaFunction> {
        let key = format!("{file}/{name}");
        if let Some(f) = self.functions.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
            return Ok(f.clone());
        }
        let module = {
            let mut modules = self.modules.lock().unwrap_or_else(|p| p.into_inner());
            match modules.get(file) {
                Some(m) => m.clone(),
                None => {
                    let m = self.ctx.load_module(cudarc::nvrtc::Ptx::from_src(self.ptx(file)?)).map_err(|e| err(format!("loading {file}: {e}")))?;
                    modules.insert(file, m.clone());
                    m
                }
            }
        };
        let f = module.load_function(name).map_err(|e| err(format!("{file}.cu has no kernel `{name}`: {e}")))?;
        self.functions.lock().unwrap_or_else(|p| p.into_inner()).insert(key, f.clone());
        Ok(f)
    }

    /// Device-to-device copy bandwidth (bytes read + written per second), best of `reps`.
    pub fn measure_copy_bandwidth(&self, bytes: usize, reps: usize) -> Result<f64> {
        let (src, dst) = (self.buffer(bytes)?, self.buffer(bytes)?);
        let mut best = f64::INFINITY;
        for _ in 0..reps.max(1) + 1 {
            self.sync()?;
            let t = std::time::Instant::now();
            // SAFETY: both allocations hold `bytes` bytes.
            unsafe { cudarc::driver::result::memcpy_dtod_async(dst.0.ptr, src.0.ptr, bytes, self.stream.cu_stream()) }.map_err(|e| err(e.to_string()))?;
            self.sync()?;
            best = best.min(t.elapsed().as_secs_f64());
        }
        Ok(2.0 * bytes as f64 / best / 1e9)
    }

    /// Address of at least `bytes` of device scratch, valid until the next call (ops on the
    /// one stream run in order, so consecutive users do not overlap).
    pub(crate) fn scratch(&self, bytes: usize) -> Result<u64> {
        let mut s = self.scratch.lock().unwrap_or_else(|p| p.into_inner());
        if s.as_ref().is_none_or(|b| b.0.slice.len() < bytes) {
            if self.capturing() {
                return Err(err(format!("{bytes} bytes of scratch needed inside a captured step (set UNIAUDIO_CUDA_NO_GRAPHS=1)")));
            }
            // Kernels already enqueued may still read the old buffer.
            self.sync()?;
            *s = Some(self.buffer(bytes.max(MIN_SCRATCH_BYTES).next_power_of_two())?);
        }
        Ok(s.as_ref().expect("scratch allocated above").0.ptr)
    }

    fn buffer(&self, len: usize) -> Result<CudaBuffer> {
        if self.capturing() {
            return Err(err(format!("allocating {len} bytes inside a captured decode step (steps must reuse their buffers)")));
        }
        let slice = self.stream.alloc_zeros::<u8>(len.max(4)).map_err(|e| err(format!("cannot allocate {len} bytes: {e}")))?;
        let ptr = {
            let (ptr, _sync) = slice.device_ptr(&self.stream);
            ptr
        };
        Ok(CudaBuffer(Arc::new(buffer::Inner { ptr, slice })))
    }
}

/// Device address of a tensor's element 0.
pub(crate) fn addr(t: &Tensor<Cuda>) -> u64 {
    t.buffer().0.ptr + t.byte_offset() as u64
}

impl launch::KernelDevice for Cuda {
    fn address(t: &Tensor<Self>) -> u64 {
        addr(t)
    }

    fn launch(&self, file: &'static str, name: &str, args: &[launch::Arg], cfg: cudarc::driver::LaunchConfig) -> Result<()> {
        use cudarc::driver::PushKernelArg;
        let f = self.function(file, name)?;
        let mut builder = self.stream.launch_builder(&f);
        for a in args {
            match a {
                launch::Arg::U32(v) => builder.arg(v),
                launch::Arg::F32(v) => builder.arg(v),
                launch::Arg::Ptr(v) => builder.arg(v),
            };
        }
        // SAFETY: the arguments follow the kernel's parameter list in `kernels/cuda/<file>.cu`;
        // every address lies inside its tensor's allocation (validated op, checked views).
        unsafe { builder.launch(cfg) }.map(|_| ()).map_err(|e| err(format!("launching {name}: {e}")))
    }

    fn scratch(&self, bytes: usize) -> Result<u64> {
        Cuda::scratch(self, bytes)
    }

    fn has_tensor_cores(&self) -> bool {
        self.tensor_cores
    }

    fn precision(&self) -> Precision {
        self.precision
    }

    fn sm_count(&self) -> usize {
        self.sm_count
    }

    fn gemv_tuning(&self) -> &crate::tune::table::Tuned {
        &self.gemv
    }

    /// Name, architecture, driver, multiprocessors and what the kernels may use.
    fn tune_key(&self) -> crate::tune::DeviceKey {
        let driver = format!("driver {}, sm_{}, {} SMs, tensor cores {}, {} precision", self.driver_version, self.arch, self.sm_count, self.tensor_cores, self.precision.name());
        crate::tune::DeviceKey::new("cuda", &self.name, &driver)
    }

    fn runs_launches_now(&self) -> bool {
        !self.capturing()
    }
}

impl Backend for Cuda {
    type Buffer = CudaBuffer;
    const NAME: &'static str = "cuda";

    fn alloc(&self, dtype: DType, shape: &[usize]) -> Result<Tensor<Self>> {
        let buf = self.buffer(crate::tensor::byte_len(dtype, shape)?)?;
        Tensor::from_parts(buf, 0, shape.to_vec(), dtype)
    }

    fn upload(&self, dtype: DType, shape: &[usize], bytes: &[u8]) -> Result<Tensor<Self>> {
        let len = crate::tensor::byte_len(dtype, shape)?;
        if bytes.len() != len {
            return Err(Error::shape("upload", format!("bytes for {shape:?} {dtype}"), len, bytes.len()));
        }
        let t = self.alloc(dtype, shape)?;
        self.write(&t, bytes)?;
        Ok(t)
    }

    fn write(&self, dst: &Tensor<Self>, bytes: &[u8]) -> Result<()> {
        if bytes.len() != dst.size_bytes() {
            return Err(Error::shape("write", "byte count", dst.size_bytes(), bytes.len()));
        }
        if let Some(g) = self.step_graph.as_ref().filter(|g| g.capturing()) {
            return g.write(self, addr(dst), bytes);
        }
        // Synchronous with respect to the host buffer: it may be freed right after.
        self.stream.synchronize().map_err(|e| err(e.to_string()))?;
        // SAFETY: the destination range lies inside the allocation (checked by from_parts).
        unsafe { cudarc::driver::result::memcpy_htod_sync(addr(dst), bytes) }.map_err(|e| err(format!("upload: {e}")))
    }

    /// Streams the memory-mapped bytes through two pinned buffers: the host fills one while
    /// the DMA engine copies the other.
    fn upload_weight(&self, weight: &WeightView) -> Result<Tensor<Self>> {
        let t = self.alloc(weight.dtype(), weight.shape())?;
        let mut stages = self.staging.lock().unwrap_or_else(|p| p.into_inner());
        while stages.len() < 2 {
            // SAFETY: the buffer is only read by copies this backend enqueues after filling it.
            let host = unsafe { self.ctx.alloc_pinned::<u8>(STAGE_BYTES) }.map_err(|e| err(format!("pinned staging buffer: {e}")))?;
            stages.push(Stage { host, done: None });
        }
        for (i, chunk) in weight.bytes().chunks(STAGE_BYTES).enumerate() {
            let stage = &mut stages[i % 2];
            if let Some(done) = stage.done.take() {
                done.synchronize().map_err(|e| err(e.to_string()))?;
            }
            let host = stage.host.as_mut_slice().map_err(|e| err(e.to_string()))?;
            host[..chunk.len()].copy_from_slice(chunk);
            let dst = addr(&t) + (i * STAGE_BYTES) as u64;
            // SAFETY: dst..dst+len lies inside the new tensor; the pinned source is not touched
            // again until the event recorded after this copy has completed.
            unsafe { cudarc::driver::result::memcpy_htod_async(dst, &host[..chunk.len()], self.stream.cu_stream()) }
                .map_err(|e| err(format!("uploading {}: {e}", weight.name())))?;
            stage.done = Some(self.stream.record_event(None).map_err(|e| err(e.to_string()))?);
        }
        Ok(t)
    }

    fn download(&self, src: &Tensor<Self>) -> Result<Vec<u8>> {
        self.sync()?;
        let mut out = vec![0u8; src.size_bytes()];
        // SAFETY: the source range lies inside the allocation; the stream is idle.
        unsafe { cudarc::driver::result::memcpy_dtoh_sync(&mut out, addr(src)) }.map_err(|e| err(format!("download: {e}")))?;
        Ok(out)
    }

    fn supports(&self, op: &Op<'_, Self>) -> bool {
        launch::supports(op)
    }

    fn exec(&self, op: ValidOp<'_, '_, Self>) -> Result<()> {
        launch::exec(self, &op)
    }

    fn memory_available(&self) -> Option<usize> {
        // The calling thread may never have used the context (a C caller's new thread).
        self.ctx.bind_to_thread().ok()?;
        cudarc::driver::result::mem_get_info().ok().map(|(free, _total)| free)
    }

    fn sync(&self) -> Result<()> {
        self.end_step()?;
        self.stream.synchronize().map_err(|e| err(e.to_string()))
    }

    fn begin_step(&self) -> Result<()> {
        match &self.step_graph {
            Some(g) => {
                // Captured steps cannot allocate: size the scratch (split-KV partials) now.
                self.scratch(MIN_SCRATCH_BYTES)?;
                g.begin(self)
            }
            None => Ok(()),
        }
    }
}
