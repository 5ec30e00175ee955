//! The wgpu backend: hand-written WGSL kernels (`kernels/wgsl/`) on Vulkan, Metal or DX12.
//!
//! `exec` records into one command encoder; `write`, `download` and `sync` submit it. Op
//! parameters go to a uniform arena written with `queue.write_buffer`; pipelines are cached
//! by (kernel, entry point, defines). Tensors are bound as whole buffers with element
//! offsets in the parameters, so views need no alignment.

mod bind_cache;
mod buffer;
mod launch;
mod launch_codec;
mod launch_encode;
mod peak;
mod preprocess;
pub mod tune;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub use buffer::WgpuBuffer;
use wgpu::util::DeviceExt;

use crate::op::{Op, ValidOp};
use crate::{Backend, DType, Error, Precision, Result, Tensor};

const ARENA_BYTES: u64 = 1 << 20;

fn err(msg: impl Into<String>) -> Error {
    Error::Backend { backend: "wgpu", msg: msg.into() }
}

struct Recording {
    encoder: Option<wgpu::CommandEncoder>,
    arena_used: u64,
}

/// What a `Wgpu` backend may use. Features the adapter lacks stay off regardless.
#[derive(Clone, Copy, Debug)]
pub struct WgpuOptions {
    /// Cap on one storage binding (None: the adapter's limit).
    pub max_binding: Option<u64>,
    /// Subgroup reductions (`subgroupAdd`).
    pub subgroups: bool,
    /// The SHADER_F16 feature.
    pub shader_f16: bool,
    /// `Fast`: the tiled GEMMs and convolutions take f16 operands (needs SHADER_F16; exact
    /// without it).
    pub precision: Precision,
}

impl WgpuOptions {
    /// Everything on, except what `UNIAUDIO_WGPU_NO_SUBGROUPS` / `UNIAUDIO_WGPU_NO_F16` turn off.
    pub fn from_env() -> Self {
        WgpuOptions { max_binding: None, subgroups: !env_flag("UNIAUDIO_WGPU_NO_SUBGROUPS"), shader_f16: !env_flag("UNIAUDIO_WGPU_NO_F16"), precision: Precision::Exact }
    }
}

pub struct Wgpu {
    device: wgpu::Device,
    queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    limits: wgpu::Limits,
    subgroups: bool,
    shader_f16: bool,
    precision: Precision,
    arena: wgpu::Buffer,
    arena_align: u64,
    /// Largest storage binding (the device's, or a lower cap).
    binding_limit: u64,
    pipelines: Mutex<HashMap<String, Arc<wgpu::ComputePipeline>>>,
    bind_groups: bind_cache::BindCache,
    recording: Mutex<Recording>,
    /// Partial results of split-KV attention (created on first use).
    split_scratch: std::sync::OnceLock<WgpuBuffer>,
    /// Tuned rows per workgroup of the GEMV kernels and tile of the tiled GEMM (`tune.rs`).
    gemv: crate::tune::table::Tuned,
    gemm: crate::tune::table::Tuned,
    tune_status: String,
}

/// Bytes of the split-KV scratch; larger requests use the single-pass kernel.
pub(crate) const SPLIT_SCRATCH_BYTES: usize = 8 << 20;

fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !v.is_empty() && v != "0")
}

impl Wgpu {
    /// Opens the highest-performance adapter. `UNIAUDIO_WGPU_NO_SUBGROUPS` and
    /// `UNIAUDIO_WGPU_NO_F16` keep those features off even where the adapter has them.
    pub fn new() -> Result<Self> {
        Self::with_options(WgpuOptions::from_env())
    }

    /// Like `new`, with storage bindings capped at `max_binding` bytes (tests use a small
    /// cap to exercise the splitting of large weights).
    pub fn with_binding_limit(max_binding: Option<u64>) -> Result<Self> {
        Self::with_options(WgpuOptions { max_binding, ..WgpuOptions::from_env() })
    }

    pub fn with_options(options: WgpuOptions) -> Result<Self> {
        let max_binding = options.max_binding;
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let adapter = pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions {
            power_preference: wgpu::PowerPreference::HighPerformance,
            ..Default::default()
        }))
        .map_err(|e| err(format!("no GPU adapter found ({e}); on Linux install a Vulkan driver (e.g. Mesa's mesa-vulkan-drivers)")))?;
        let available = adapter.features();
        let mut features = wgpu::Features::empty();
        let subgroups = available.contains(wgpu::Features::SUBGROUP) && options.subgroups;
        let shader_f16 = available.contains(wgpu::Features::SHADER_F16) && options.shader_f16;
        if subgroups {
            features |= wgpu::Features::SUBGROUP;
        }
        if shader_f16 {
            features |= wgpu::Features::SHADER_F16;
        }
        // Ask for the adapter's real limits: the defaults cap bindings at 128 MiB.
        let limits = adapter.limits();
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("uniaudio"),
            required_features: features,
            required_limits: limits.clone(),
            ..Default::default()
        }))
        .map_err(|e| err(format!("cannot open device: {e}")))?;
        let arena = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("op parameters"),
            size: ARENA_BYTES,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let arena_align = limits.min_uniform_buffer_offset_alignment.max(16) as u64;
        let device_limit = limits.max_storage_buffer_binding_size as u64;
        let binding_limit = max_binding.map_or(device_limit, |v| v.min(device_limit));
        Ok(Wgpu {
            device,
            queue,
            info: adapter.get_info(),
            limits,
            subgroups,
            shader_f16,
            // `fast` lives in f16 arithmetic; without SHADER_F16 every product is exact.
            precision: if shader_f16 { options.precision } else { Precision::Exact },
            arena,
            arena_align,
            binding_limit,
            pipelines: Mutex::new(HashMap::new()),
            bind_groups: bind_cache::BindCache::default(),
            recording: Mutex::new(Recording { encoder: None, arena_used: 0 }),
            split_scratch: std::sync::OnceLock::new(),
            gemv: crate::tune::table::Tuned::new(&tune::GEMV_FAMILY),
            gemm: crate::tune::table::Tuned::new(&tune::GEMM_FAMILY),
            tune_status: String::new(),
        }
        .with_tuning())
    }

    /// Loads this adapter's tuned choices as `UNIAUDIO_TUNE` says.
    fn with_tuning(mut self) -> Self {
        let mode = crate::tune::TuneMode::from_env().unwrap_or_else(|e| {
            eprintln!("warning: {e}; using built-in defaults");
            crate::tune::TuneMode::Off
        });
        self.tune_status = crate::tune::table::load(&[&self.gemv, &self.gemm], mode, &crate::cpu::tune::cache_dir(), tune::device_key(&self));
        self
    }

    /// "name (backend, driver) [enabled features]".
    pub fn describe(&self) -> String {
        let mut variants = Vec::new();
        if self.subgroups {
            variants.push("subgroup");
        }
        if self.shader_f16 {
            variants.push("shader-f16");
        }
        format!("{} ({:?}, {} {}) [features: {}; {} precision]", self.info.name, self.info.backend, self.info.driver, self.info.driver_info, variants.join(", "), self.precision.name())
    }

    /// The precision the kernels run at: `Fast` only with SHADER_F16.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// True for CPU-emulated adapters (lavapipe, WARP, SwiftShader).
    pub fn is_software(&self) -> bool {
        self.info.device_type == wgpu::DeviceType::Cpu
    }

    /// Device-memory bandwidth in GB/s, from timed buffer-to-buffer copies of `bytes`
    /// (each copy reads and writes them); the best of `reps`.
    pub fn measure_copy_bandwidth(&self, bytes: usize, reps: usize) -> Result<f64> {
        let src = self.new_buffer(bytes, None)?;
        let dst = self.new_buffer(bytes, None)?;
        let mut best = f64::INFINITY;
        for _ in 0..reps.max(1) + 1 {
            self.sync_all()?;
            let t = std::time::Instant::now();
            let mut encoder = self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("bandwidth") });
            encoder.copy_buffer_to_buffer(src.raw(), 0, dst.raw(), 0, buffer::padded(bytes));
            self.queue.submit([encoder.finish()]);
            self.wait()?;
            best = best.min(t.elapsed().as_secs_f64());
        }
        Ok(2.0 * bytes as f64 / best / 1e9)
    }

    fn sync_all(&self) -> Result<()> {
        self.flush();
        self.wait()
    }

    /// Bind groups currently cached (made once, reused by later identical dispatches).
    pub fn cached_bind_groups(&self) -> usize {
        self.bind_groups.len()
    }

    pub fn has_subgroups(&self) -> bool {
        self.subgroups
    }

    pub fn has_shader_f16(&self) -> bool {
        self.shader_f16
    }

    pub fn max_binding_bytes(&self) -> u64 {
        self.binding_limit
    }

    /// Alignment of storage binding offsets.
    pub(crate) fn storage_align(&self) -> u64 {
        self.limits.min_storage_buffer_offset_alignment.max(4) as u64
    }

    pub(crate) fn split_scratch(&self) -> Result<&WgpuBuffer> {
        if let Some(b) = self.split_scratch.get() {
            return Ok(b);
        }
        let b = self.new_buffer(SPLIT_SCRATCH_BYTES, None)?;
        Ok(self.split_scratch.get_or_init(|| b))
    }

    fn new_buffer(&self, len: usize, contents: Option<&[u8]>) -> Result<WgpuBuffer> {
        let size = buffer::padded(len);
        if size > self.limits.max_buffer_size {
            return Err(err(format!("a buffer of {size} bytes exceeds this adapter's limit of {} bytes", self.limits.max_buffer_size)));
        }
        let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST;
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let buffer = match contents {
            None => self.device.create_buffer(&wgpu::BufferDescriptor { label: None, size, usage, mapped_at_creation: false }),
            Some(bytes) => {
                let mut padded = bytes.to_vec();
                padded.resize(size as usize, 0);
                self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor { label: None, contents: &padded, usage })
            }
        };
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(err(format!("cannot allocate a buffer of {size} bytes on {}: {e}", self.info.name)));
        }
        Ok(WgpuBuffer(Arc::new(buffer::Inner { buffer, len })))
    }

    /// Submits everything recorded so far.
    fn flush(&self) {
        let mut rec = self.recording.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(encoder) = rec.encoder.take() {
            self.queue.submit([encoder.finish()]);
        }
        rec.arena_used = 0;
    }

    fn wait(&self) -> Result<()> {
        self.device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| err(format!("device lost or timed out: {e}")))?;
        Ok(())
    }

    fn pipeline(&self, file: &str, entry: &str, defines: &[(&str, &str)]) -> Result<Arc<wgpu::ComputePipeline>> {
        let key = format!("{file}:{entry}:{defines:?}");
        if let Some(p) = self.pipelines.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
            return Ok(p.clone());
        }
        let lookup = |name: &str| uniaudio_kernels::wgsl(name).map(|s| s.text);
        let source = preprocess::preprocess(file, defines, &lookup).map_err(|e| err(format!("shader {file}: {e}")))?;
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = self.device.create_shader_module(wgpu::ShaderModuleDescriptor { label: Some(file), source: wgpu::ShaderSource::Wgsl(source.into()) });
        let pipeline = self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(entry),
            layout: None,
            module: &module,
            entry_point: Some(entry),
            compilation_options: Default::default(),
            cache: None,
        });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(err(format!("shader {file}::{entry} {defines:?} failed to compile: {e}")));
        }
        let pipeline = Arc::new(pipeline);
        self.pipelines.lock().unwrap_or_else(|p| p.into_inner()).insert(key, pipeline.clone());
        Ok(pipeline)
    }

    /// Records one dispatch: `groups` workgroups (linearised over x and y), the tensors at
    /// their bindings, and the parameter words at `params_binding`.
    fn dispatch(&self, k: &launch::Kernel, groups: u32) -> Result<()> {
        let pipeline = self.pipeline(k.file, k.entry, &k.defines)?;
        let params: Vec<u8> = k.params.iter().flat_map(|w| w.to_le_bytes()).collect();
        let mut rec = self.recording.lock().unwrap_or_else(|p| p.into_inner());
        let size = (params.len() as u64).next_multiple_of(16);
        if rec.arena_used + size > ARENA_BYTES {
            drop(rec);
            self.flush();
            rec = self.recording.lock().unwrap_or_else(|p| p.into_inner());
        }
        let offset = rec.arena_used;
        rec.arena_used = (offset + size).next_multiple_of(self.arena_align);
        let mut padded = params;
        padded.resize(size as usize, 0);
        self.queue.write_buffer(&self.arena, offset, &padded);
        let bind_group = self.bind_groups.get(&pipeline, &k.bindings, (offset, size), || {
            let mut entries: Vec<wgpu::BindGroupEntry> = k
                .bindings
                .iter()
                .map(|(binding, buf, range)| wgpu::BindGroupEntry {
                    binding: *binding,
                    resource: match range {
                        None => buf.raw().as_entire_binding(),
                        Some((offset, size)) => wgpu::BindingResource::Buffer(wgpu::BufferBinding { buffer: buf.raw(), offset: *offset, size: wgpu::BufferSize::new(*size) }),
                    },
                })
                .collect();
            entries.push(wgpu::BindGroupEntry {
                binding: k.params_binding,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding { buffer: &self.arena, offset, size: wgpu::BufferSize::new(size) }),
            });
            let layout = pipeline.get_bind_group_layout(0);
            self.device.create_bind_group(&wgpu::BindGroupDescriptor { label: None, layout: &layout, entries: &entries })
        });
        let encoder = rec.encoder.get_or_insert_with(|| self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("uniaudio step") }));
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some(k.entry), timestamp_writes: None });
        pass.set_pipeline(&pipeline);
        pass.set_bind_group(0, &bind_group, &[]);
        let max = self.limits.max_compute_workgroups_per_dimension.max(1);
        let (x, y) = if groups <= max { (groups.max(1), 1) } else { (max, groups.div_ceil(max)) };
        pass.dispatch_workgroups(x, y, 1);
        Ok(())
    }
}

impl Backend for Wgpu {
    type Buffer = WgpuBuffer;
    const NAME: &'static str = "wgpu";

    fn alloc(&self, dtype: DType, shape: &[usize]) -> Result<Tensor<Self>> {
        let len = crate::tensor::byte_len(dtype, shape)?;
        Tensor::from_parts(self.new_buffer(len, None)?, 0, shape.to_vec(), dtype)
    }

    fn upload(&self, dtype: DType, shape: &[usize], bytes: &[u8]) -> Result<Tensor<Self>> {
        let len = crate::tensor::byte_len(dtype, shape)?;
        if bytes.len() != len {
            return Err(Error::shape("upload", format!("bytes for {shape:?} {dtype}"), len, bytes.len()));
        }
        Tensor::from_parts(self.new_buffer(len, Some(bytes))?, 0, shape.to_vec(), dtype)
    }

    fn write(&self, dst: &Tensor<Self>, bytes: &[u8]) -> Result<()> {
        if bytes.len() != dst.size_bytes() {
            return Err(Error::shape("write", "byte count", dst.size_bytes(), bytes.len()));
        }
        if !dst.byte_offset().is_multiple_of(4) || !bytes.len().is_multiple_of(4) {
            return Err(err("write: offset and size must be multiples of 4 bytes"));
        }
        // Work recorded before this write must run before it lands.
        self.flush();
        self.queue.write_buffer(dst.buffer().raw(), dst.byte_offset() as u64, bytes);
        Ok(())
    }

    fn download(&self, src: &Tensor<Self>) -> Result<Vec<u8>> {
        self.flush();
        let start = (src.byte_offset() / 4 * 4) as u64;
        let end = buffer::padded(src.byte_offset() + src.size_bytes()).min(src.buffer().raw().size());
        let size = end - start;
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("download"),
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut encoder = self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("download") });
        encoder.copy_buffer_to_buffer(src.buffer().raw(), start, &staging, 0, size);
        self.queue.submit([encoder.finish()]);
        let slice = staging.slice(..);
        let (tx, rx) = std::sync::mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        self.wait()?;
        rx.recv().map_err(|_| err("download: mapping was dropped"))?.map_err(|e| err(format!("download: {e}")))?;
        let skip = src.byte_offset() - start as usize;
        let bytes = slice.get_mapped_range().map_err(|e| err(format!("download: {e}")))?[skip..skip + src.size_bytes()].to_vec();
        staging.unmap();
        Ok(bytes)
    }

    fn supports(&self, op: &Op<'_, Self>) -> bool {
        launch::supports(self, op)
    }

    fn exec(&self, op: ValidOp<'_, '_, Self>) -> Result<()> {
        for (kernel, groups) in launch::kernels(self, &op)? {
            self.dispatch(&kernel, groups)?;
        }
        Ok(())
    }

    fn sync(&self) -> Result<()> {
        self.flush();
        self.wait()
    }

    fn max_tensor_bytes(&self) -> Option<u64> {
        Some(self.binding_limit)
    }
}
