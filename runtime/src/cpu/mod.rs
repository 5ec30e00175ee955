//! The CPU backend: the reference every other backend is tested against, and the
//! default where no GPU exists. Multi-threaded with rayon; weights are read in their
//! stored dtype straight from the memory map and widened to f32 in registers.

mod attention;
mod attention_bf16;
mod attention_blocked;
pub mod bandwidth;
pub mod peak;
mod conv;
mod conv_bf16;
mod conv2d;
mod conv2d_bf16;
mod encode;
mod elementwise;
mod embed;
mod gemm;
mod gemm_pack;
mod gemm_q8;
#[cfg(target_arch = "x86_64")]
pub mod gemm_amx;
/// AMX exists only on x86-64: elsewhere the level is never available.
#[cfg(not(target_arch = "x86_64"))]
pub mod gemm_amx {
    use super::view::WeightSlice;
    use crate::op::WeightLayout;

    pub fn available() -> bool {
        false
    }

    #[allow(clippy::too_many_arguments)]
    pub fn gemm(_: &[f32], _: usize, _: usize, _: WeightSlice, _: WeightLayout, _: usize, _: &mut [f32], _: bool) {
        unreachable!("the AMX level exists only on x86-64")
    }

    pub(super) fn linear(_: &[f32], _: usize, _: usize, _: WeightSlice, _: usize, _: &mut [f32], _: &super::store::Store) {
        unreachable!("the AMX level exists only on x86-64")
    }

    pub(super) fn with_tiles<R>(_: impl FnOnce() -> R) -> R {
        unreachable!("the AMX level exists only on x86-64")
    }

    /// # Safety
    /// Never called: the AMX level exists only on x86-64.
    pub(super) unsafe fn rows_product(_: *const u32, _: usize, _: super::pair_tile::Runs, _: *const u32, _: usize, _: *mut f32, _: usize) {
        unreachable!("the AMX level exists only on x86-64")
    }

    pub fn peak_loop(_: usize) -> f32 {
        unreachable!("the AMX level exists only on x86-64")
    }

    pub const PEAK_FLOPS_PER_ITER: f64 = 0.0;
}
mod gemm_avx512;
mod gemm_bf16;
mod gemm_bf16_rows;
mod linear;
mod matmul;
mod norm;
mod pair_tile;
mod pool;
mod prefetch;
mod q4;
mod q8;
mod rope;
mod sample;
mod scratch;
mod simd;
mod storage;
mod store;
pub mod tune;
mod vexp;
#[cfg(target_arch = "x86_64")]
mod vexp_avx2;
#[cfg(target_arch = "x86_64")]
mod verf_avx2;
#[cfg(target_arch = "x86_64")]
mod verf_avx512;
mod view;

use std::sync::Mutex;

pub use storage::CpuBuffer;

pub use simd::Isa;
use crate::precision::Precision;

use crate::aligned::AlignedBytes;
use crate::op::{Epilogue, Op, ValidOp};
use crate::weights::WeightView;
use crate::{Backend, DType, Error, Result, Tensor};
use view::{f32s, f32s_mut, paired, u32s, u32s_mut, weight_rows};

pub use pool::in_pool;

/// A note for Q4_0 weights on a level that widens each weight to f32 (`exact`) where
/// the `fast` level would sum them in 8-bit blocks: several times slower per token.
fn q4_precision_note(isa: Isa, fast: Isa) -> Option<&'static str> {
    (!isa.int8_dot() && fast.int8_dot()).then_some(
        "note: 4-bit weights in `exact` precision widen every weight to f32 on the CPU (about 3x slower per token on two AVX2 cores); `--precision fast` (Precision::Fast) sums them in 8-bit blocks at the rate of memory",
    )
}

/// The CPU backend. Ops run synchronously on the calling thread plus rayon's pool.
pub struct Cpu {
    isa: Isa,
    /// Serialises `exec`/`write`/`download`, so tensors handed to one op are never
    /// written by another thread meanwhile (the slices built from them stay valid).
    lock: Mutex<()>,
}

impl Default for Cpu {
    fn default() -> Self {
        Cpu::new()
    }
}

impl Cpu {
    /// A backend using the best exact instruction set of this machine.
    pub fn new() -> Self {
        Cpu::with_isa(Isa::detect())
    }

    /// A backend for `precision`: `Fast` uses the BF16 dot products where the CPU has them.
    pub fn with_precision(precision: Precision) -> Self {
        Cpu::with_isa(Isa::for_precision(precision))
    }

    /// A backend restricted to `isa` (`Isa::Scalar` runs the portable fallbacks). Asking
    /// for a level the machine lacks gives the best one it has below it.
    pub fn with_isa(isa: Isa) -> Self {
        // The tuned table (or the defaults) is in place before the first kernel runs.
        tune::load_once();
        Cpu { isa: Isa::best_at_most(isa), lock: Mutex::new(()) }
    }

    /// The arithmetic the kernels do.
    pub fn precision(&self) -> Precision {
        self.isa.precision()
    }

    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// Number of worker threads ops use.
    pub fn threads(&self) -> usize {
        rayon::current_num_threads()
    }

    fn guard(&self) -> std::sync::MutexGuard<'_, ()> {
        if rayon::current_thread_index().is_some() {
            return pool::lock_from_pool(&self.lock);
        }
        self.lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn alloc_bytes(len: usize) -> Result<AlignedBytes> {
    AlignedBytes::zeroed(len).ok_or_else(|| Error::Backend { backend: "cpu", msg: format!("cannot allocate {len} bytes") })
}

fn conv_dims(x: &Tensor<Cpu>, w: &Tensor<Cpu>, out: &Tensor<Cpu>) -> conv::ConvDims {
    let (xs, ws, os) = (x.shape(), w.shape(), out.shape());
    conv::ConvDims { batch: xs[0], l_in: xs[1], c_in: xs[2], l_out: os[1], c_out: os[2], k: ws[1] }
}

impl Backend for Cpu {
    fn run_step<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        in_pool(f)
    }

    fn memory_available(&self) -> Option<usize> {
        // MemAvailable of /proc/meminfo, in kB.
        let info = std::fs::read_to_string("/proc/meminfo").ok()?;
        let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
        let kb: usize = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb * 1024)
    }

    type Buffer = CpuBuffer;
    const NAME: &'static str = "cpu";

    fn alloc(&self, dtype: DType, shape: &[usize]) -> Result<Tensor<Self>> {
        let bytes = alloc_bytes(crate::tensor::byte_len(dtype, shape)?)?;
        Tensor::from_parts(CpuBuffer::owned(bytes), 0, shape.to_vec(), dtype)
    }

    fn upload(&self, dtype: DType, shape: &[usize], bytes: &[u8]) -> Result<Tensor<Self>> {
        let len = crate::tensor::byte_len(dtype, shape)?;
        if bytes.len() != len {
            return Err(Error::shape("upload", format!("bytes for {shape:?} {dtype}"), len, bytes.len()));
        }
        let owned = AlignedBytes::from_slice(bytes).ok_or_else(|| Error::Backend { backend: "cpu", msg: format!("cannot allocate {len} bytes") })?;
        Tensor::from_parts(CpuBuffer::owned(owned), 0, shape.to_vec(), dtype)
    }

    fn write(&self, dst: &Tensor<Self>, bytes: &[u8]) -> Result<()> {
        let _g = self.guard();
        if bytes.len() != dst.size_bytes() {
            return Err(Error::shape("write", "byte count", dst.size_bytes(), bytes.len()));
        }
        let base = dst.buffer().base_ptr_mut().ok_or(Error::ReadOnly { op: "write" })?;
        // SAFETY: from_parts checked that the view lies inside the buffer; the lock
        // keeps other ops from reading it meanwhile.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), base.add(dst.byte_offset()), bytes.len()) };
        Ok(())
    }

    fn upload_weight(&self, weight: &WeightView) -> Result<Tensor<Self>> {
        if weight.dtype() == DType::Q4_0 {
            if let Some(note) = q4_precision_note(self.isa, Isa::for_precision(Precision::Fast)) {
                static ONCE: std::sync::Once = std::sync::Once::new();
                ONCE.call_once(|| eprintln!("{note}"));
            }
        }
        Tensor::from_parts(CpuBuffer::weight(weight.clone()), 0, weight.shape().to_vec(), weight.dtype())
    }

    fn upload_gemm_weight(&self, weight: &WeightView) -> Result<Tensor<Self>> {
        if let (DType::BF16, &[n, k]) = (weight.dtype(), weight.shape()) {
            let bits: &[u16] = bytemuck::try_cast_slice(weight.bytes()).map_err(|e| Error::Backend { backend: "cpu", msg: format!("bf16 weight bytes: {e}") })?;
            if let Some(pairs) = gemm_bf16::PairedWeight::new(self.isa, bits, n, k)? {
                return Tensor::from_parts(CpuBuffer::paired_weight(weight.clone(), pairs), 0, vec![n, k], DType::BF16);
            }
        }
        self.upload_weight(weight)
    }

    fn download(&self, src: &Tensor<Self>) -> Result<Vec<u8>> {
        let _g = self.guard();
        // SAFETY: the view lies inside the buffer (checked by from_parts).
        let bytes = unsafe { std::slice::from_raw_parts(src.buffer().base_ptr().add(src.byte_offset()), src.size_bytes()) };
        Ok(bytes.to_vec())
    }

    fn supports(&self, _op: &Op<'_, Self>) -> bool {
        true
    }

    fn exec(&self, op: ValidOp<'_, '_, Self>) -> Result<()> {
        let _g = self.guard();
        match *op {
            Op::EmbedRows { table, ids, out } => embed::rows(weight_rows(table), u32s(ids), f32s_mut(out)?),
            Op::EmbedCodebookSum { table, codes, mask, card, out } => {
                embed::codebook_sum(weight_rows(table), u32s(codes), u32s(mask), card, codes.dim_back(0), f32s_mut(out)?)
            }
            Op::RmsNorm { x, weight, out, eps } => {
                norm::rms_norm(self.isa, f32s(x), weight_rows(weight), f32s_mut(out)?, eps);
                Ok(())
            }
            Op::MatMul { x, w, out, layout, accumulate, rows } => {
                matmul::matmul(self.isa, f32s(x), x.dim_back(0), weight_rows(w), layout, f32s_mut(out)?, accumulate, rows);
                Ok(())
            }
            Op::GateUp { x, w_gate, w_up, out, rows } => {
                matmul::gate_up(self.isa, f32s(x), x.dim_back(0), weight_rows(w_gate), weight_rows(w_up), f32s_mut(out)?, rows);
                Ok(())
            }
            Op::Rope { x, positions, table, out } => rope::rope(f32s(x), x.dim_back(1), u32s(positions), f32s(table), f32s_mut(out)?),
            Op::KvAppend { k, v, positions, k_cache, v_cache, rope } => {
                let capacity = k_cache.shape()[1];
                let kv_heads = k.shape()[1];
                attention::kv_append(f32s(k), f32s(v), u32s(positions), kv_heads, capacity, f32s_mut(k_cache)?, f32s_mut(v_cache)?, rope.map(f32s))
            }
            Op::Attention { q, k_cache, v_cache, out, kv_len, causal } if q.shape()[0] >= attention::BLOCKED_FROM => {
                attention::attention_blocked(self.isa, f32s(q), f32s(k_cache), f32s(v_cache), f32s_mut(out)?, attention::AttnShape::new(q.shape(), k_cache.shape(), kv_len, causal));
                Ok(())
            }
            Op::Attention { q, k_cache, v_cache, out, kv_len, causal } => {
                let shape = attention::AttnShape::new(q.shape(), k_cache.shape(), kv_len, causal);
                attention::attention(self.isa, f32s(q), f32s(k_cache), f32s(v_cache), f32s_mut(out)?, shape);
                Ok(())
            }
            Op::SwiGlu { gate, up, out } => elementwise::swiglu(gate, up, out),
            Op::Add { a, b, out } => elementwise::add(a, b, out),
            Op::Guidance { cond, uncond, scale, out } => elementwise::guidance(cond, uncond, scale, out),
            Op::SelectRows { mask, a, b, out } => elementwise::select_rows(u32s(mask), a, b, out),
            Op::Softmax { x, out } => elementwise::softmax(x, out),
            Op::Argmax { x, out } => {
                sample::argmax_rows(f32s(x), x.dim_back(0), u32s_mut(out)?);
                Ok(())
            }
            Op::TopKSample { logits, out, params } => {
                sample::top_k_rows(f32s(logits), logits.dim_back(0), &params, u32s_mut(out)?);
                Ok(())
            }
            Op::Linear { x, w, bias, out, epilogue } => {
                let epilogue = match epilogue {
                    Epilogue::Store => linear::LinearEpilogue::Store,
                    Epilogue::Act(f) => linear::LinearEpilogue::Act(f),
                    Epilogue::GatedAdd { gate } => linear::LinearEpilogue::GatedAdd(f32s(gate)),
                };
                linear::linear(self.isa, f32s(x), x.dim_back(0), w.shape()[0], weight_rows(w), paired(w), bias.map(weight_rows), f32s_mut(out)?, epilogue);
                Ok(())
            }
            Op::Unary { x, out, f } => elementwise::unary(self.isa, x, out, f),
            Op::LayerNormModulate { x, shift, scale, out, eps } => {
                norm::layer_norm_modulate(f32s(x), f32s(shift), f32s(scale), f32s_mut(out)?, eps);
                Ok(())
            }
            Op::Conv1d { x, w, bias, out, conv } => {
                conv::conv1d(self.isa, f32s(x), weight_rows(w), bias.map(weight_rows), f32s_mut(out)?, conv_dims(x, w, out), conv);
                Ok(())
            }
            Op::ConvTranspose1d { x, w, bias, out, stride, padding } => {
                let dims = conv_dims(x, w, out);
                conv::conv_transpose1d(self.isa, f32s(x), weight_rows(w), bias.map(weight_rows), f32s_mut(out)?, dims, stride, padding);
                Ok(())
            }
            Op::EulerCfg { x, cond, uncond, scale, dt } => elementwise::euler_cfg(x, cond, uncond, scale, dt),
            Op::Blend { a, b, wa, wb, out } => elementwise::blend(a, b, wa, wb, out),
            Op::Conv2d { x, w, bias, out, conv } => {
                let (xs, ws, os) = (x.shape(), w.shape(), out.shape());
                let d = conv2d::Conv2dDims { batch: xs[0], h: xs[1], w: xs[2], c_in: xs[3], oh: os[1], ow: os[2], c_out: os[3], kh: ws[1], kw: ws[2] };
                conv2d::conv2d(self.isa, f32s(x), weight_rows(w), bias.map(weight_rows), f32s_mut(out)?, d, conv);
                Ok(())
            }
            Op::GroupNorm { x, weight, bias, out, groups, eps } => {
                encode::group_norm(f32s(x), weight_rows(weight), weight_rows(bias), f32s_mut(out)?, x.shape()[1], x.shape()[2], groups, eps);
                Ok(())
            }
            Op::Glu { x, out } => {
                encode::glu(f32s(x), f32s_mut(out)?, out.dim_back(0));
                Ok(())
            }
            Op::Film { x, p, out, gamma_scale } => {
                let c = x.dim_back(0);
                if out.same_view(x) {
                    encode::film(None, f32s(p), f32s_mut(out)?, c, gamma_scale);
                } else {
                    encode::film(Some(f32s(x)), f32s(p), f32s_mut(out)?, c, gamma_scale);
                }
                Ok(())
            }
            Op::RvqEncode { x, codebooks, codes, quantized } => {
                let [levels, k, d] = [codebooks.shape()[0], codebooks.shape()[1], codebooks.shape()[2]];
                encode::rvq_encode(self.isa, f32s(x), d, weight_rows(codebooks), levels, k, u32s_mut(codes)?, f32s_mut(quantized)?);
                Ok(())
            }
            Op::RelPosAttention { q, k, v, gate, gate_const, rel, out } => {
                let s = encode::RelPosShape { t: q.shape()[0], heads: q.shape()[1], d: q.shape()[2] };
                encode::rel_pos_attention(self.isa, f32s(q), f32s(k), f32s(v), f32s(gate), f32s(gate_const), f32s(rel), f32s_mut(out)?, s);
                Ok(())
            }
        }
    }

    fn sync(&self) -> Result<()> {
        Ok(())
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::{q4_precision_note, Isa};

    #[test]
    fn four_bit_weights_get_a_note_only_where_fast_would_sum_them_in_blocks() {
        assert!(q4_precision_note(Isa::Avx2, Isa::Avx2Int8).is_some(), "exact AVX2 with an 8-bit level to go to");
        assert!(q4_precision_note(Isa::Avx2Int8, Isa::Avx2Int8).is_none(), "already fast");
        assert!(q4_precision_note(Isa::Scalar, Isa::Scalar).is_none(), "no faster level on this CPU");
    }
}
