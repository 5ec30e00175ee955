//! A view of one stored tensor: mapped file bytes, or an aligned copy when the
//! file placed the tensor at an offset its dtype cannot be read from.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;

use crate::aligned::AlignedBytes;
use crate::DType;

#[derive(Clone)]
pub(crate) enum WeightBytes {
    Mapped { map: Arc<Mmap>, start: usize, len: usize },
    Owned(Arc<AlignedBytes>),
}

#[derive(Clone)]
pub struct WeightView {
    pub(crate) name: String,
    pub(crate) path: PathBuf,
    pub(crate) dtype: DType,
    pub(crate) shape: Vec<usize>,
    pub(crate) bytes: WeightBytes,
}

impl std::fmt::Debug for WeightView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WeightView(`{}` {:?} {} in {})", self.name, self.shape, self.dtype, self.path.display())
    }
}

impl WeightView {
    /// A weight held in memory (a copy of `bytes`, little-endian elements of `dtype`), not
    /// read from a file.
    pub fn from_bytes(name: &str, dtype: DType, shape: &[usize], bytes: &[u8]) -> crate::Result<Self> {
        let len = dtype.shape_bytes(shape).ok_or_else(|| crate::Error::invalid("weight", format!("`{name}` shape {shape:?} overflows")))?;
        if bytes.len() != len {
            return Err(crate::Error::shape("weight", format!("bytes of `{name}` {shape:?} {dtype}"), len, bytes.len()));
        }
        let copy = AlignedBytes::from_slice(bytes).ok_or_else(|| crate::Error::Backend { backend: "host", msg: format!("cannot allocate {len} bytes for `{name}`") })?;
        Ok(WeightView { name: name.to_string(), path: PathBuf::from("<memory>"), dtype, shape: shape.to_vec(), bytes: WeightBytes::Owned(Arc::new(copy)) })
    }
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The file the tensor was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }
    pub fn dtype(&self) -> DType {
        self.dtype
    }
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
    /// The tensor's bytes, aligned to its dtype.
    pub fn bytes(&self) -> &[u8] {
        match &self.bytes {
            WeightBytes::Mapped { map, start, len } => &map[*start..*start + *len],
            WeightBytes::Owned(b) => b.as_slice(),
        }
    }
    /// True when the view reads the mapped file in place (no copy was made).
    pub fn is_zero_copy(&self) -> bool {
        matches!(self.bytes, WeightBytes::Mapped { .. })
    }
    /// Widened to f32 (a copy; for tests and small tensors).
    pub fn to_f32(&self) -> Vec<f32> {
        crate::dtype::bytes_to_f32(self.bytes(), self.dtype)
    }
}
