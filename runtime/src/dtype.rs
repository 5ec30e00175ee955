//! Element types. Weights keep their stored dtype; activations are f32; ids are u32.

use std::fmt;

/// An element type a tensor can hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    F16,
    BF16,
    U32,
    /// 8-bit weights in blocks of 32 along a row: an f16 scale `d` then 32 int8 `q`
    /// (34 bytes; weight = d · q), the layout llama.cpp calls Q8_0.
    Q8_0,
    /// 4-bit weights in blocks of 32 along a row: an f16 scale `d` then 16 bytes whose low
    /// nibbles are weights 0..16 and high nibbles weights 16..32, each stored as q + 8
    /// (18 bytes; weight = d · q, q in -8..=7), the layout llama.cpp calls Q4_0.
    Q4_0,
}

/// Elements per Q8_0 block, and its bytes.
pub const Q8_BLOCK: usize = 32;
pub const Q8_BLOCK_BYTES: usize = 34;
/// Bytes of a Q4_0 block (of `Q8_BLOCK` weights too).
pub const Q4_BLOCK_BYTES: usize = 18;

impl DType {
    /// Bytes per element; for Q8_0 and Q4_0, bytes per block (see `block`).
    pub const fn size_bytes(self) -> usize {
        match self {
            DType::F32 | DType::U32 => 4,
            DType::F16 | DType::BF16 => 2,
            DType::Q8_0 => Q8_BLOCK_BYTES,
            DType::Q4_0 => Q4_BLOCK_BYTES,
        }
    }

    /// Elements per storage unit: 32 for Q8_0 and Q4_0 blocks, else 1. Views start and end
    /// on them.
    pub const fn block(self) -> usize {
        match self {
            DType::Q8_0 | DType::Q4_0 => Q8_BLOCK,
            _ => 1,
        }
    }

    /// True for the block-quantized weight dtypes (Q8_0, Q4_0).
    pub const fn is_quantized(self) -> bool {
        matches!(self, DType::Q8_0 | DType::Q4_0)
    }

    /// The dtype a weight asked to be stored as `requested` gets, given whether the model
    /// chose it for quantized storage (`quantizable`): with Q8_0 or Q4_0, a chosen 2-D
    /// weight whose rows are whole 32-weight blocks gets it and everything else bf16; other
    /// requests are kept as they are.
    pub fn stored_for(requested: DType, quantizable: bool, shape: &[usize]) -> DType {
        let whole_block_rows = shape.len() == 2 && shape[1].is_multiple_of(Q8_BLOCK);
        if !requested.is_quantized() || (quantizable && whole_block_rows) {
            requested
        } else {
            DType::BF16
        }
    }

    /// Bytes holding `n` elements (`n` rounded up to whole blocks).
    pub const fn bytes(self, n: usize) -> usize {
        n.div_ceil(self.block()) * self.size_bytes()
    }

    /// `bytes`, or `None` on overflow.
    pub fn checked_bytes(self, n: usize) -> Option<usize> {
        n.div_ceil(self.block()).checked_mul(self.size_bytes())
    }

    /// Bytes of a tensor of `shape`; None when the count overflows.
    pub fn shape_bytes(self, shape: &[usize]) -> Option<usize> {
        crate::tensor::numel_checked(shape).and_then(|n| self.checked_bytes(n))
    }

    /// Alignment the kernels need for a view's start, in bytes.
    pub const fn align(self) -> usize {
        match self {
            DType::Q8_0 | DType::Q4_0 => 2,
            _ => self.size_bytes(),
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
            DType::U32 => "u32",
            DType::Q8_0 => "q8_0",
            DType::Q4_0 => "q4_0",
        }
    }

    /// True for the dtypes a weight may be stored in (and matmul/norm/embedding read).
    pub const fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F16 | DType::BF16)
    }

    pub fn parse(name: &str) -> Option<DType> {
        match name.to_ascii_lowercase().as_str() {
            "f32" | "float32" => Some(DType::F32),
            "f16" | "float16" => Some(DType::F16),
            "bf16" | "bfloat16" => Some(DType::BF16),
            "u32" => Some(DType::U32),
            "q8" | "q8_0" => Some(DType::Q8_0),
            "q4" | "q4_0" => Some(DType::Q4_0),
            _ => None,
        }
    }

    /// Maps a safetensors dtype to ours; `None` for dtypes the runtime does not compute with.
    pub fn from_safetensors(d: safetensors::Dtype) -> Option<DType> {
        match d {
            safetensors::Dtype::F32 => Some(DType::F32),
            safetensors::Dtype::F16 => Some(DType::F16),
            safetensors::Dtype::BF16 => Some(DType::BF16),
            safetensors::Dtype::U32 => Some(DType::U32),
            _ => None,
        }
    }

    /// The safetensors dtype of the stored bytes (Q8_0 and Q4_0 blocks are stored as U8,
    /// marked in the header's metadata: `weights::Q8_METADATA_KEY`, `Q4_METADATA_KEY`).
    pub fn to_safetensors(self) -> safetensors::Dtype {
        match self {
            DType::F32 => safetensors::Dtype::F32,
            DType::F16 => safetensors::Dtype::F16,
            DType::BF16 => safetensors::Dtype::BF16,
            DType::U32 => safetensors::Dtype::U32,
            DType::Q8_0 | DType::Q4_0 => safetensors::Dtype::U8,
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Converts f32 values to the bytes of `dtype` (round-to-nearest-even for f16/bf16).
pub fn f32_to_bytes(values: &[f32], dtype: DType) -> Vec<u8> {
    match dtype {
        DType::F32 => bytemuck::cast_slice(values).to_vec(),
        DType::F16 => values
            .iter()
            .flat_map(|&v| half::f16::from_f32(v).to_bits().to_le_bytes())
            .collect(),
        DType::BF16 => values
            .iter()
            .flat_map(|&v| half::bf16::from_f32(v).to_bits().to_le_bytes())
            .collect(),
        DType::U32 => values.iter().flat_map(|&v| (v as u32).to_le_bytes()).collect(),
        DType::Q8_0 => quantize_q8_0(values),
        DType::Q4_0 => quantize_q4_0(values),
    }
}

/// Q8_0 blocks of `values` (a last partial block padded with zeros), as llama.cpp makes
/// them: d = max|x| / 127, q = round(x / d) (halves away from zero), d stored as f16.
pub fn quantize_q8_0(values: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(DType::Q8_0.bytes(values.len()));
    for block in values.chunks(Q8_BLOCK) {
        let amax = block.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let inv = if d != 0.0 { 1.0 / d } else { 0.0 };
        out.extend(half::f16::from_f32(d).to_bits().to_le_bytes());
        out.extend(block.iter().map(|&v| (v * inv).round() as i8 as u8));
        out.resize(out.len() + Q8_BLOCK - block.len(), 0);
    }
    out
}

/// The weights of Q8_0 blocks (exact: an f16 scale times an int8 needs 19 bits).
pub fn dequantize_q8_0(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(Q8_BLOCK_BYTES)
        .flat_map(|b| {
            let d = half::f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32();
            b[2..].iter().map(move |&q| d * (q as i8) as f32)
        })
        .collect()
}

/// Q4_0 blocks of `values` (a last partial block padded with zeros), as llama.cpp makes
/// them: the value of largest magnitude `max` gives d = max / -8, q = min(15, trunc(x / d
/// + 8.5)) stored as a nibble (so `max` itself maps to -8), d stored as f16.
pub fn quantize_q4_0(values: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(DType::Q4_0.bytes(values.len()));
    for block in values.chunks(Q8_BLOCK) {
        let mut padded = [0f32; Q8_BLOCK];
        padded[..block.len()].copy_from_slice(block);
        let max = padded.iter().fold(0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
        let d = max / -8.0;
        let inv = if d != 0.0 { 1.0 / d } else { 0.0 };
        let nibble = |v: f32| ((v * inv + 8.5) as i8).min(15) as u8;
        out.extend(half::f16::from_f32(d).to_bits().to_le_bytes());
        out.extend((0..Q8_BLOCK / 2).map(|j| nibble(padded[j]) | nibble(padded[j + Q8_BLOCK / 2]) << 4));
    }
    out
}

/// The weights of Q4_0 blocks (exact: an f16 scale times a 4-bit integer needs 15 bits).
pub fn dequantize_q4_0(bytes: &[u8]) -> Vec<f32> {
    let mut out = Vec::with_capacity(bytes.len() / Q4_BLOCK_BYTES * Q8_BLOCK);
    for b in bytes.chunks_exact(Q4_BLOCK_BYTES) {
        let d = half::f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32();
        out.extend(b[2..].iter().map(|&q| d * ((q & 15) as i32 - 8) as f32));
        out.extend(b[2..].iter().map(|&q| d * ((q >> 4) as i32 - 8) as f32));
    }
    out
}

/// Widens the bytes of a float `dtype` to f32 (exact for f16 and bf16).
pub fn bytes_to_f32(bytes: &[u8], dtype: DType) -> Vec<f32> {
    match dtype {
        DType::F32 => bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        DType::F16 => bytes
            .chunks_exact(2)
            .map(|b| half::f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32())
            .collect(),
        DType::BF16 => bytes
            .chunks_exact(2)
            .map(|b| bf16_bits_to_f32(u16::from_le_bytes([b[0], b[1]])))
            .collect(),
        DType::U32 => bytes
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32)
            .collect(),
        DType::Q8_0 => dequantize_q8_0(bytes),
        DType::Q4_0 => dequantize_q4_0(bytes),
    }
}

/// bf16 is the top half of an f32: widening is a shift.
#[inline(always)]
pub fn bf16_bits_to_f32(bits: u16) -> f32 {
    f32::from_bits((bits as u32) << 16)
}
