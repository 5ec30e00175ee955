//! The CPU inner loops, with AVX2+FMA(+F16C) and AVX-512 versions picked at run time and
//! portable fallbacks; `Isa` says which, per backend instance, so tests can run every level.

use std::sync::OnceLock;

#[cfg(target_arch = "x86_64")]
use super::{
    q4::Q4,
    q8::{self, Q8},
};
use super::view::WeightSlice;
use crate::precision::Precision;
use crate::dtype::bf16_bits_to_f32;

/// The instruction set a `Cpu` backend runs its kernels with, lowest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Isa {
    /// Portable Rust; the compiler vectorises what it can.
    Scalar,
    /// AVX2 + FMA + F16C (x86-64).
    Avx2,
    /// `Avx2` whose Q8_0 and Q4_0 products take 8-bit input blocks summed in int32 by
    /// `vpmaddubsw` + `vpmaddwd` (the `fast` precision on AVX2-only CPUs; every other
    /// product is `Avx2`'s, exact).
    Avx2Int8,
    /// AVX-512 F/BW/VL (with AVX2): 16-lane kernels, f32 arithmetic as `Avx2`.
    Avx512,
    /// AVX-512 with BF16 dot products: GEMM operands rounded to bf16, products summed in
    /// f32 by `vdpbf16ps` (the `fast` precision; never chosen for `exact`).
    Avx512Bf16,
    /// `Avx512Bf16` whose many-row GEMMs run on AMX tiles (`tdpbf16ps`: the same bf16
    /// operands and f32 sums, 16x16 outputs per instruction).
    Amx,
}

impl Isa {
    /// Every level, best first.
    pub const ALL: [Isa; 6] = [
        Isa::Amx,
        Isa::Avx512Bf16,
        Isa::Avx512,
        Isa::Avx2Int8,
        Isa::Avx2,
        Isa::Scalar,
    ];

    /// The `fast` precision's levels, best first.
    pub const FAST: [Isa; 3] = [Isa::Amx, Isa::Avx512Bf16, Isa::Avx2Int8];

    /// Whether this machine can run the level.
    pub fn available(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            let avx2 = has!("avx2") && has!("fma") && has!("f16c");
            let avx512 = avx2 && has!("avx512f") && has!("avx512bw") && has!("avx512vl");
            match self {
                Isa::Scalar => true,
                Isa::Avx2 | Isa::Avx2Int8 => avx2,
                Isa::Avx512 => avx512,
                Isa::Avx512Bf16 => avx512 && has!("avx512bf16"),
                Isa::Amx => avx512 && has!("avx512bf16") && super::gemm_amx::available(),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            self == Isa::Scalar
        }
    }

    /// The best exact level of this machine. `UNIAUDIO_CPU_ISA=scalar|avx2|avx2int8|avx512|avx512bf16|amx`
    /// forces a level (the best available one at or below it); `UNIAUDIO_CPU_NO_SIMD=1`
    /// forces `Scalar`.
    pub fn detect() -> Isa {
        static DETECTED: OnceLock<Isa> = OnceLock::new();
        *DETECTED.get_or_init(|| {
            if simd_disabled() {
                return Isa::Scalar;
            }
            let forced = std::env::var("UNIAUDIO_CPU_ISA").ok().and_then(|v| Isa::parse(&v));
            Isa::best_at_most(forced.unwrap_or(Isa::Avx512))
        })
    }

    /// The level for `precision`: `detect()`, raised to the best fast level (`Amx`, else
    /// `Avx512Bf16`, else `Avx2Int8`) for `Fast` where the machine has one (unless a level
    /// was forced or SIMD switched off).
    pub fn for_precision(precision: Precision) -> Isa {
        let isa = Isa::detect();
        let forced = std::env::var("UNIAUDIO_CPU_ISA").is_ok_and(|v| !v.is_empty()) || simd_disabled();
        if precision == Precision::Fast && isa.precision() == Precision::Exact && !forced {
            // A fast level below the exact one (`Avx2Int8` on an AVX-512 CPU without
            // BF16) would give up the wider f32 kernels for the 8-bit products alone.
            return Isa::best_at_most(Isa::Amx).max(isa);
        }
        isa
    }

    /// The best available level not above `cap`; below an exact cap, only exact levels.
    pub fn best_at_most(cap: Isa) -> Isa {
        let allowed = |l: &Isa| *l <= cap && (cap.precision() == Precision::Fast || l.precision() == Precision::Exact);
        Isa::ALL.into_iter().filter(allowed).find(|l| l.available()).unwrap_or(Isa::Scalar)
    }

    pub fn parse(s: &str) -> Option<Isa> {
        Isa::ALL.into_iter().find(|l| l.key() == s)
    }

    /// The name `UNIAUDIO_CPU_ISA` takes.
    pub fn key(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Avx2Int8 => "avx2int8",
            Isa::Avx512 => "avx512",
            Isa::Avx512Bf16 => "avx512bf16",
            Isa::Amx => "amx",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Isa::Amx => "avx512+bf16+amx",
            Isa::Avx512Bf16 => "avx512+bf16",
            Isa::Avx512 => "avx512",
            Isa::Avx2Int8 => "avx2+fma+int8",
            Isa::Avx2 => "avx2+fma",
            Isa::Scalar => "scalar",
        }
    }

    /// The arithmetic this level does.
    pub fn precision(self) -> Precision {
        if self >= Isa::Avx512Bf16 || self == Isa::Avx2Int8 {
            Precision::Fast
        } else {
            Precision::Exact
        }
    }

    #[inline(always)]
    pub(crate) fn avx2(self) -> bool {
        // Levels above `Scalar` are only constructed after checking the CPU.
        cfg!(target_arch = "x86_64") && self >= Isa::Avx2
    }

    #[inline(always)]
    pub(crate) fn avx512(self) -> bool {
        cfg!(target_arch = "x86_64") && self >= Isa::Avx512
    }

    #[inline(always)]
    pub(crate) fn bf16_dot(self) -> bool {
        cfg!(target_arch = "x86_64") && self >= Isa::Avx512Bf16
    }

    /// Whether many-row bf16 GEMMs run on AMX tiles.
    #[inline(always)]
    pub(crate) fn amx(self) -> bool {
        cfg!(target_arch = "x86_64") && self == Isa::Amx
    }

    /// Whether Q8_0 and Q4_0 products take int8 activations and integer dot products
    /// (`Avx2Int8`, and the AVX-512 fast levels where the CPU has AVX512-VNNI).
    pub fn int8_dot(self) -> bool {
        static VNNI: OnceLock<bool> = OnceLock::new();
        if self == Isa::Avx2Int8 {
            return cfg!(target_arch = "x86_64");
        }
        self.bf16_dot() && *VNNI.get_or_init(|| {
            #[cfg(target_arch = "x86_64")]
            {
                std::arch::is_x86_feature_detected!("avx512vnni")
            }
            #[cfg(not(target_arch = "x86_64"))]
            {
                false
            }
        })
    }
}

/// `UNIAUDIO_CPU_NO_SIMD=1`: the portable fallbacks only, whatever the precision.
fn simd_disabled() -> bool {
    std::env::var("UNIAUDIO_CPU_NO_SIMD").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// A GEMV input vector, with the lane order the bf16 kernel wants precomputed once.
pub struct GemvX<'a> {
    x: &'a [f32],
    /// Per 16-element chunk: the 8 even-indexed then the 8 odd-indexed elements.
    /// A 32-byte load of 16 bf16 splits into evens (shift left) and odds (mask) for free.
    even_odd: Vec<f32>,
    /// The same per 32-element chunk (16 evens, 16 odds), for 64-byte AVX-512 loads.
    even_odd32: Vec<f32>,
    /// x in 8-bit blocks of 32 (made on first use by the fast level's Q8_0 products).
    q8: OnceLock<super::q8::QuantizedX>,
    /// The same blocks in pairs, for the fast level's Q4_0 products (made on first use).
    q4: OnceLock<super::q4::PairedX>,
    /// The prefetch distance those products use (`cpu.q8.prefetch_bytes`).
    q8_prefetch: usize,
}

/// `src` laid out per `chunk`-element chunk as the chunk's even-indexed elements, then its
/// odd ones: the lanes a load of `chunk` bf16 weights splits into by a shift and a mask.
/// `dst` holds whole chunks, zero padded past the end of `src`.
pub(crate) fn even_odd_chunks(chunk: usize, src: &[f32], dst: &mut [f32]) {
    for (c, out) in dst.chunks_exact_mut(chunk).enumerate() {
        let at = |i: usize| src.get(c * chunk + i).copied().unwrap_or(0.0);
        let (evens, odds) = out.split_at_mut(chunk / 2);
        for (l, (e, o)) in evens.iter_mut().zip(odds).enumerate() {
            *e = at(2 * l);
            *o = at(2 * l + 1);
        }
    }
}

impl<'a> GemvX<'a> {
    pub fn new(x: &'a [f32], q8_prefetch: usize) -> Self {
        let mut even_odd = vec![0.0; x.len() / 16 * 16];
        even_odd_chunks(16, x, &mut even_odd);
        let mut even_odd32 = vec![0.0; x.len() / 32 * 32];
        even_odd_chunks(32, x, &mut even_odd32);
        GemvX { x, even_odd, even_odd32, q8: OnceLock::new(), q4: OnceLock::new(), q8_prefetch }
    }

    /// x in 8-bit blocks (the fast level's Q8_0 products), made once.
    pub(crate) fn quantized(&self) -> &super::q8::QuantizedX {
        self.q8.get_or_init(|| super::q8::QuantizedX::new(self.x, self.q8_prefetch))
    }

    /// x in paired 8-bit blocks (the fast level's Q4_0 products), made once.
    pub(crate) fn paired(&self) -> &super::q4::PairedX {
        self.q4.get_or_init(|| super::q4::PairedX::new(self.quantized()))
    }

    pub fn len(&self) -> usize {
        self.x.len()
    }
}

/// Dot products of four weight rows (each `x.len()` long, starting at element
/// `starts[r]` of `w`) with `x`.
pub fn dot4(isa: Isa, w: WeightSlice, starts: [usize; 4], x: &GemvX) -> [f32; 4] {
    let k = x.len();
    for s in starts {
        assert!(s + k <= w.len(), "dot4 row out of bounds");
    }
    #[cfg(target_arch = "x86_64")]
    if isa.avx512() {
        // SAFETY: the features were detected; rows are in bounds (asserted above).
        unsafe {
            return match w {
                WeightSlice::F32(s) => avx512::dot4_f32(starts.map(|o| s.as_ptr().add(o)), x.x.as_ptr(), k),
                WeightSlice::F16(s) => avx512::dot4_f16(starts.map(|o| s.as_ptr().add(o)), x.x.as_ptr(), k),
                WeightSlice::BF16(s) => avx512::dot4_bf16(starts.map(|o| s.as_ptr().add(o)), x.x.as_ptr(), x.even_odd32.as_ptr(), k),
                WeightSlice::Q8_0(b) if isa.int8_dot() => q8::int8::dot4_vnni(block_rows::<Q8>(b, starts, k), x.quantized(), k),
                WeightSlice::Q8_0(b) => q8::avx512::dot4::<Q8>(block_rows::<Q8>(b, starts, k), x.x.as_ptr(), k),
                WeightSlice::Q4_0(b) if isa.int8_dot() => super::q4::int8::dot4(block_rows::<Q4>(b, starts, k), x.paired(), k),
                WeightSlice::Q4_0(b) => q8::avx512::dot4::<Q4>(block_rows::<Q4>(b, starts, k), x.x.as_ptr(), k),
            };
        }
    }
    #[cfg(target_arch = "x86_64")]
    if isa.avx2() {
        // SAFETY: the features were detected; rows are in bounds (asserted above).
        unsafe {
            return match w {
                WeightSlice::F32(s) => avx2::dot4_f32(starts.map(|o| s.as_ptr().add(o)), x.x.as_ptr(), k),
                WeightSlice::F16(s) => avx2::dot4_f16(starts.map(|o| s.as_ptr().add(o)), x.x.as_ptr(), k),
                WeightSlice::BF16(s) => avx2::dot4_bf16(starts.map(|o| s.as_ptr().add(o)), x.x.as_ptr(), x.even_odd.as_ptr(), k),
                WeightSlice::Q8_0(b) if isa.int8_dot() => q8::int8::dot4_avx2(block_rows::<Q8>(b, starts, k), x.quantized(), k),
                WeightSlice::Q8_0(b) => q8::avx2::dot4::<Q8>(block_rows::<Q8>(b, starts, k), x.x.as_ptr(), k),
                WeightSlice::Q4_0(b) if isa.int8_dot() => super::q4::int8::dot4(block_rows::<Q4>(b, starts, k), x.paired(), k),
                WeightSlice::Q4_0(b) => q8::avx2::dot4::<Q4>(block_rows::<Q4>(b, starts, k), x.x.as_ptr(), k),
            };
        }
    }
    starts.map(|s| dot_fallback(w, s, x.x))
}

/// `dot4` of the same four weight rows against two inputs, each weight load shared by
/// both. Each input's result is bit-identical to `dot4` on it alone (same accumulators,
/// same order), so a row does not depend on whether it was paired.
pub fn dot4x2(isa: Isa, w: WeightSlice, starts: [usize; 4], a: &GemvX, b: &GemvX) -> [[f32; 4]; 2] {
    let k = a.len();
    assert_eq!(k, b.len(), "dot4x2 input lengths");
    for s in starts {
        assert!(s + k <= w.len(), "dot4x2 row out of bounds");
    }
    #[cfg(target_arch = "x86_64")]
    if isa.avx512() {
        // SAFETY: the features were detected; rows are in bounds (asserted above).
        unsafe {
            let x = [a.x.as_ptr(), b.x.as_ptr()];
            return match w {
                WeightSlice::F32(s) => avx512::dot4x2_f32(starts.map(|o| s.as_ptr().add(o)), x, k),
                WeightSlice::F16(s) => avx512::dot4x2_f16(starts.map(|o| s.as_ptr().add(o)), x, k),
                WeightSlice::BF16(s) => avx512::dot4x2_bf16(starts.map(|o| s.as_ptr().add(o)), x, [a.even_odd32.as_ptr(), b.even_odd32.as_ptr()], k),
                WeightSlice::Q8_0(q) if isa.int8_dot() => q8::int8::dot4x2_vnni(block_rows::<Q8>(q, starts, k), [a.quantized(), b.quantized()], k),
                WeightSlice::Q8_0(q) => q8::avx512::dot4x2::<Q8>(block_rows::<Q8>(q, starts, k), x, k),
                WeightSlice::Q4_0(q) if isa.int8_dot() => super::q4::int8::dot4_n(block_rows::<Q4>(q, starts, k), [a.paired(), b.paired()], k),
                WeightSlice::Q4_0(q) => q8::avx512::dot4x2::<Q4>(block_rows::<Q4>(q, starts, k), x, k),
            };
        }
    }
    #[cfg(target_arch = "x86_64")]
    if isa.avx2() && isa.int8_dot() {
        // SAFETY: the features were detected; rows are in bounds (asserted above).
        unsafe {
            match w {
                WeightSlice::Q8_0(q) => return q8::int8::dot4x2_avx2(block_rows::<Q8>(q, starts, k), [a.quantized(), b.quantized()], k),
                WeightSlice::Q4_0(q) => return super::q4::int8::dot4_n(block_rows::<Q4>(q, starts, k), [a.paired(), b.paired()], k),
                _ => {}
            }
        }
    }
    [dot4(isa, w, starts, a), dot4(isa, w, starts, b)]
}

/// `dot4` of the same four weight rows against four inputs. Q4_0 weights at the 8-bit
/// levels share each weight load and unpacking among all four; other weights run as two
/// `dot4x2`. Each input's result is bit-identical to `dot4` on it alone.
pub fn dot4x4(isa: Isa, w: WeightSlice, starts: [usize; 4], x: [&GemvX; 4]) -> [[f32; 4]; 4] {
    let k = x[0].len();
    assert!(x.iter().all(|x| x.len() == k), "dot4x4 input lengths");
    #[cfg(target_arch = "x86_64")]
    if isa.avx2() && isa.int8_dot() {
        if let WeightSlice::Q4_0(q) = w {
            for s in starts {
                assert!(s + k <= w.len(), "dot4x4 row out of bounds");
            }
            // SAFETY: the features were detected; rows are in bounds (asserted above).
            return unsafe { super::q4::int8::dot4_n(block_rows::<Q4>(q, starts, k), [x[0].paired(), x[1].paired(), x[2].paired(), x[3].paired()], k) };
        }
    }
    let ([a, b], [c, d]) = (dot4x2(isa, w, starts, x[0], x[1]), dot4x2(isa, w, starts, x[2], x[3]));
    [a, b, c, d]
}

/// Pointers to the first block of four Q8_0 or Q4_0 rows (rows start on blocks and hold
/// whole blocks: `Tensor` views guarantee it; checked here because the kernels rely on it).
#[cfg(target_arch = "x86_64")]
fn block_rows<F: q8::BlockFormat>(blocks: &[u8], starts: [usize; 4], k: usize) -> [*const u8; 4] {
    use crate::dtype::Q8_BLOCK;
    assert!(k.is_multiple_of(Q8_BLOCK) && starts.iter().all(|s| s.is_multiple_of(Q8_BLOCK)), "quantized rows must hold whole blocks");
    starts.map(|s| blocks[s / Q8_BLOCK * F::BYTES..].as_ptr())
}

fn dot_fallback(w: WeightSlice, start: usize, x: &[f32]) -> f32 {
    // Eight partial sums, as a vector unit would keep them.
    let mut acc = [0f32; 8];
    let chunks = x.len() / 8;
    for c in 0..chunks {
        for l in 0..8 {
            let i = c * 8 + l;
            acc[l] += w.get(start + i) * x[i];
        }
    }
    let mut sum: f32 = acc.iter().sum();
    for i in chunks * 8..x.len() {
        sum += w.get(start + i) * x[i];
    }
    sum
}

/// f32 dot product (attention scores, norms).
pub fn dot_f32(isa: Isa, a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "dot_f32 lengths");
    #[cfg(target_arch = "x86_64")]
    if isa.avx2() {
        // SAFETY: the features were detected; both slices have the same length.
        return unsafe { avx2::dot_f32(a.as_ptr(), b.as_ptr(), a.len()) };
    }
    dot_fallback(WeightSlice::F32(a), 0, b)
}

/// out[j] += Σ_r a[r] · w[starts[r] + j] for four weight rows (the K-major matmul).
pub fn axpy4(isa: Isa, out: &mut [f32], a: [f32; 4], w: WeightSlice, starts: [usize; 4]) {
    let n = out.len();
    for s in starts {
        assert!(s + n <= w.len(), "axpy4 row out of bounds");
    }
    #[cfg(target_arch = "x86_64")]
    if isa.avx2() {
        // SAFETY: the features were detected; rows are in bounds (asserted above).
        unsafe {
            match w {
                WeightSlice::F32(s) => return avx2::axpy4_f32(out, a, starts.map(|o| s.as_ptr().add(o))),
                WeightSlice::F16(s) => return avx2::axpy4_f16(out, a, starts.map(|o| s.as_ptr().add(o))),
                WeightSlice::BF16(s) => return avx2::axpy4_bf16(out, a, starts.map(|o| s.as_ptr().add(o))),
                // K-major products never hold 8-bit weights (validated); the loop below
                // would serve them.
                WeightSlice::Q8_0(_) | WeightSlice::Q4_0(_) => {}
            }
        }
    }
    for (j, o) in out.iter_mut().enumerate() {
        *o += a[0] * w.get(starts[0] + j) + a[1] * w.get(starts[1] + j) + a[2] * w.get(starts[2] + j) + a[3] * w.get(starts[3] + j);
    }
}

/// out[j] += a · v[j].
pub fn axpy_f32(isa: Isa, out: &mut [f32], a: f32, v: &[f32]) {
    assert_eq!(out.len(), v.len(), "axpy_f32 lengths");
    #[cfg(target_arch = "x86_64")]
    if isa.avx2() {
        // SAFETY: the features were detected; both slices have the same length.
        return unsafe { avx2::axpy_f32(out, a, v.as_ptr()) };
    }
    for (o, &x) in out.iter_mut().zip(v) {
        *o += a * x;
    }
}

pub fn widen_bf16(src: &[u16], dst: &mut [f32]) {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = bf16_bits_to_f32(s);
    }
}

pub fn widen_f16(src: &[u16], dst: &mut [f32]) {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = half::f16::from_bits(s).to_f32();
    }
}

#[cfg(target_arch = "x86_64")]
pub(super) mod avx2;

#[cfg(target_arch = "x86_64")]
mod avx512;

/// Sum of `x` (used by the read-bandwidth probe: one load per element, nothing else).
pub fn sum_f32(isa: Isa, x: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if isa.avx2() {
        // SAFETY: features detected; reads stay within x.
        return unsafe { avx2_sum(x) };
    }
    let mut acc = [0f32; 8];
    for c in x.chunks_exact(8) {
        for l in 0..8 {
            acc[l] += c[l];
        }
    }
    acc.iter().sum::<f32>() + x.chunks_exact(8).remainder().iter().sum::<f32>()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn avx2_sum(x: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let p = x.as_ptr();
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    while i + 32 <= x.len() {
        for (l, a) in acc.iter_mut().enumerate() {
            *a = _mm256_add_ps(*a, _mm256_loadu_ps(p.add(i + 8 * l)));
        }
        i += 32;
    }
    let v = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    let mut lanes = [0f32; 8];
    _mm256_storeu_ps(lanes.as_mut_ptr(), v);
    lanes.iter().sum::<f32>() + x[i..].iter().sum::<f32>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exact_cap_never_yields_a_fast_level() {
        for cap in Isa::ALL {
            let level = Isa::best_at_most(cap);
            assert!(level <= cap && level.available(), "{cap:?} gave {level:?}");
            if cap.precision() == Precision::Exact {
                assert_eq!(level.precision(), Precision::Exact, "{cap:?} gave the fast {level:?}");
            }
            assert_eq!(Isa::parse(cap.key()), Some(cap));
        }
        if std::env::var_os("UNIAUDIO_CPU_ISA").is_none() {
            assert_eq!(Isa::detect().precision(), Precision::Exact);
        }
    }
}
