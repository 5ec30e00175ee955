//! The CUDA backend's kernels and op mapping without a GPU: `CudaEmu` implements the
//! runtime's `Backend` with host memory as "device" memory and launches the kernels of
//! `kernels/cuda/`, compiled for the CPU emulation of the execution model
//! (`kernels/cuda/emulate/`), through the same op-to-kernel mapping as `Cuda`
//! (`uniaudio_runtime::cuda::launch`). Every thread of a block is a host thread, so it is
//! slow: it exists to test the CUDA code path in CI, on shapes kept small.

use std::cell::UnsafeCell;
use std::ffi::CString;
use std::sync::{Arc, Mutex};

use uniaudio_runtime::cuda::launch::{self, Arg, KernelDevice, LaunchConfig};
use uniaudio_runtime::cuda::tune;
use uniaudio_runtime::op::ValidOp;
use uniaudio_runtime::tune::table::Tuned;
use uniaudio_runtime::tune::DeviceKey;
use uniaudio_runtime::{Backend, DType, DeviceBuffer, Error, Op, Precision, Result, Tensor};

extern "C" {
    fn emu_launch(name: *const std::ffi::c_char, grid: u32, block_x: u32, block_y: u32, args: *mut *mut std::ffi::c_void) -> i32;
}

fn err(msg: impl Into<String>) -> Error {
    Error::Backend { backend: "cuda-emu", msg: msg.into() }
}

/// Host memory standing in for a device allocation (16-byte aligned for vector loads).
struct Memory {
    words: UnsafeCell<Box<[u128]>>,
    len: usize,
}

// SAFETY: kernels and copies run one at a time (launches are serialised by the emulator,
// copies happen on the calling thread between them).
unsafe impl Sync for Memory {}
unsafe impl Send for Memory {}

impl Memory {
    fn new(len: usize) -> Self {
        Memory { words: UnsafeCell::new(vec![0u128; len.div_ceil(16).max(1)].into_boxed_slice()), len }
    }

    fn address(&self) -> u64 {
        // SAFETY: only the address of the (never reallocated) box is taken.
        unsafe { (*self.words.get()).as_ptr() as u64 }
    }
}

#[derive(Clone)]
pub struct EmuBuffer(Arc<Memory>);

impl DeviceBuffer for EmuBuffer {
    fn same_storage(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
    fn len_bytes(&self) -> usize {
        self.0.len
    }
}

/// Options mirroring the device properties the op mapping looks at.
#[derive(Clone, Copy, Debug)]
pub struct EmuOptions {
    /// Take the tensor-core kernels (mma.sync emulated with the PTX fragment layout).
    pub tensor_cores: bool,
    /// Multiprocessors reported to the mapping (few: split-KV attention triggers early).
    pub sm_count: usize,
    /// `Fast`: the tensor-core GEMMs and convolutions take bf16 operands (mma.sync
    /// m16n8k16 emulated); exact without tensor cores, as on a GPU.
    pub precision: Precision,
}

pub struct CudaEmu {
    options: EmuOptions,
    scratch: Mutex<Option<EmuBuffer>>,
    /// `cuda.gemv.warps` in use: the built-in defaults unless `load_tuning` is called.
    gemv: Tuned,
}

impl CudaEmu {
    /// The emulator with the tunable families at their built-in defaults (tests see the
    /// same kernels whatever a cache holds).
    pub fn new(options: EmuOptions) -> Self {
        let emu = CudaEmu { options, scratch: Mutex::new(None), gemv: Tuned::new(&tune::GEMV_FAMILY) };
        emu.gemv.reset(true);
        emu
    }

    /// Tunes like a device from now on, as `UNIAUDIO_TUNE` says, under the emulator's own
    /// cache key (stored choices applied, other classes timed on first use); says what is
    /// in use.
    pub fn load_tuning(&self) -> String {
        tune::load(self)
    }

    pub fn describe(&self) -> String {
        format!("CPU emulation of kernels/cuda [tensor cores: {}, {} SMs, {} precision]", if self.options.tensor_cores { "on" } else { "off" }, self.options.sm_count, self.precision().name())
    }

    fn buffer(&self, len: usize) -> EmuBuffer {
        EmuBuffer(Arc::new(Memory::new(len)))
    }
}

fn bytes_of(dtype: DType, shape: &[usize]) -> Result<usize> {
    shape.iter().try_fold(dtype.size_bytes(), |acc, &d| acc.checked_mul(d)).ok_or_else(|| err(format!("alloc: shape {shape:?} overflows")))
}

impl Backend for CudaEmu {
    type Buffer = EmuBuffer;
    const NAME: &'static str = "cuda-emu";

    fn alloc(&self, dtype: DType, shape: &[usize]) -> Result<Tensor<Self>> {
        Tensor::from_parts(self.buffer(bytes_of(dtype, shape)?), 0, shape.to_vec(), dtype)
    }

    fn upload(&self, dtype: DType, shape: &[usize], bytes: &[u8]) -> Result<Tensor<Self>> {
        let t = self.alloc(dtype, shape)?;
        self.write(&t, bytes)?;
        Ok(t)
    }

    fn write(&self, dst: &Tensor<Self>, bytes: &[u8]) -> Result<()> {
        if bytes.len() != dst.size_bytes() {
            return Err(err(format!("write: {} bytes for a tensor of {}", bytes.len(), dst.size_bytes())));
        }
        // SAFETY: the range lies inside the allocation (checked views); no kernel is running.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), Self::address(dst) as *mut u8, bytes.len()) };
        Ok(())
    }

    fn download(&self, src: &Tensor<Self>) -> Result<Vec<u8>> {
        let mut out = vec![0u8; src.size_bytes()];
        // SAFETY: as in `write`.
        unsafe { std::ptr::copy_nonoverlapping(Self::address(src) as *const u8, out.as_mut_ptr(), out.len()) };
        Ok(out)
    }

    fn supports(&self, op: &Op<'_, Self>) -> bool {
        launch::supports(op)
    }

    fn exec(&self, op: ValidOp<'_, '_, Self>) -> Result<()> {
        launch::exec(self, &op)
    }

    fn sync(&self) -> Result<()> {
        Ok(())
    }
}

impl KernelDevice for CudaEmu {
    fn address(t: &Tensor<Self>) -> u64 {
        t.buffer().0.address() + t.byte_offset() as u64
    }

    fn launch(&self, _file: &'static str, name: &str, args: &[Arg], cfg: LaunchConfig) -> Result<()> {
        // One 8-byte slot per argument (scalars in the low bytes, little-endian).
        let mut slots: Vec<u64> = args
            .iter()
            .map(|a| match *a {
                Arg::U32(v) => v as u64,
                Arg::F32(v) => v.to_bits() as u64,
                Arg::Ptr(v) => v,
            })
            .collect();
        let mut pointers: Vec<*mut std::ffi::c_void> = slots.iter_mut().map(|s| s as *mut u64 as *mut std::ffi::c_void).collect();
        let (gx, gy, _) = cfg.grid_dim;
        let (bx, by, bz) = cfg.block_dim;
        if bz != 1 {
            return Err(err(format!("{name}: 3-D blocks are not emulated")));
        }
        let cname = CString::new(name).map_err(|_| err("kernel name has a NUL byte"))?;
        // SAFETY: the argument slots follow the kernel's parameter list (the mapping's
        // contract) and outlive the call; addresses point into live host allocations.
        match unsafe { emu_launch(cname.as_ptr(), gx * gy, bx, by, pointers.as_mut_ptr()) } {
            0 => Ok(()),
            1 => Err(err(format!("no kernel `{name}` in kernels/cuda"))),
            _ => Err(err(format!("{name}: block of {bx}x{by} threads is larger than the emulator's"))),
        }
    }

    fn scratch(&self, bytes: usize) -> Result<u64> {
        let mut s = self.scratch.lock().unwrap_or_else(|p| p.into_inner());
        if s.as_ref().is_none_or(|b| b.0.len < bytes) {
            *s = Some(self.buffer(bytes));
        }
        Ok(s.as_ref().expect("allocated above").0.address())
    }

    fn has_tensor_cores(&self) -> bool {
        self.options.tensor_cores
    }

    fn precision(&self) -> Precision {
        if self.options.tensor_cores {
            self.options.precision
        } else {
            Precision::Exact
        }
    }

    fn sm_count(&self) -> usize {
        self.options.sm_count
    }

    fn gemv_tuning(&self) -> &Tuned {
        &self.gemv
    }

    fn tune_key(&self) -> DeviceKey {
        DeviceKey::new("cuda-emu", "CPU emulation of kernels/cuda", &format!("{} SMs, tensor cores {}, {} precision", self.options.sm_count, self.options.tensor_cores, self.precision().name()))
    }

    fn runs_launches_now(&self) -> bool {
        true
    }
}
