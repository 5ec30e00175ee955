//! A tensor is a typed, shaped, contiguous row-major view into a backend buffer.
//! Shapes are in PyTorch order (`[T, C]`, `[T, H, D]`): the last dimension is contiguous.

use crate::{Backend, DType, Error, Result};

/// A device buffer handle. Cloning shares the storage (it is a reference, not a copy).
pub trait DeviceBuffer: Clone + Send + Sync {
    /// True when both handles refer to the same allocation.
    fn same_storage(&self, other: &Self) -> bool;
    /// Size of the allocation in bytes.
    fn len_bytes(&self) -> usize;
}

pub struct Tensor<B: Backend> {
    buffer: B::Buffer,
    /// Offset of element 0 from the start of `buffer`, in elements of `dtype`.
    offset: usize,
    shape: Vec<usize>,
    dtype: DType,
}

impl<B: Backend> Clone for Tensor<B> {
    fn clone(&self) -> Self {
        Tensor { buffer: self.buffer.clone(), offset: self.offset, shape: self.shape.clone(), dtype: self.dtype }
    }
}

impl<B: Backend> std::fmt::Debug for Tensor<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tensor<{}>({:?} {}, offset {})", B::NAME, self.shape, self.dtype, self.offset)
    }
}

/// Bytes of a new tensor of `shape` (a backend's alloc or upload), or an error naming
/// the shape when the count overflows.
pub(crate) fn byte_len(dtype: DType, shape: &[usize]) -> Result<usize> {
    dtype.shape_bytes(shape).ok_or_else(|| Error::invalid("alloc", format!("shape {shape:?} {dtype} overflows")))
}

pub fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

impl<B: Backend> Tensor<B> {
    /// Wraps a buffer; fails if the view does not fit inside it (or, for block dtypes,
    /// does not start and end on whole blocks).
    pub fn from_parts(buffer: B::Buffer, offset: usize, shape: Vec<usize>, dtype: DType) -> Result<Self> {
        let block = dtype.block();
        if !offset.is_multiple_of(block) || !shape.last().copied().unwrap_or(1).is_multiple_of(block) {
            return Err(Error::invalid("tensor view", format!("{shape:?} {dtype} at element offset {offset}: {dtype} rows and views must hold whole blocks of {block}")));
        }
        let end = numel_checked(&shape)
            .and_then(|n| n.checked_add(offset))
            .and_then(|n| dtype.checked_bytes(n));
        match end {
            Some(end) if end <= buffer.len_bytes() => Ok(Tensor { buffer, offset, shape, dtype }),
            _ => Err(Error::invalid(
                "tensor view",
                format!("{shape:?} {dtype} at element offset {offset} exceeds a buffer of {} bytes", buffer.len_bytes()),
            )),
        }
    }

    pub fn buffer(&self) -> &B::Buffer {
        &self.buffer
    }
    pub fn offset(&self) -> usize {
        self.offset
    }
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    pub fn dtype(&self) -> DType {
        self.dtype
    }
    pub fn numel(&self) -> usize {
        numel(&self.shape)
    }
    pub fn size_bytes(&self) -> usize {
        self.dtype.bytes(self.numel())
    }
    pub fn byte_offset(&self) -> usize {
        self.dtype.bytes(self.offset)
    }
    pub fn rank(&self) -> usize {
        self.shape.len()
    }
    /// Size of dimension `i` counted from the end (`dim_back(0)` is the last dimension).
    pub fn dim_back(&self, i: usize) -> usize {
        self.shape.len().checked_sub(i + 1).map(|j| self.shape[j]).unwrap_or(1)
    }
    /// Product of all dimensions but the last: the number of rows of a row-major matrix view.
    pub fn rows(&self) -> usize {
        if self.shape.is_empty() {
            1
        } else {
            numel(&self.shape[..self.shape.len() - 1])
        }
    }

    /// The same elements under another shape with the same element count.
    pub fn reshape(&self, shape: &[usize]) -> Result<Self> {
        if numel(shape) != self.numel() {
            return Err(Error::shape("reshape", "element count", self.numel(), numel(shape)));
        }
        if !shape.last().copied().unwrap_or(1).is_multiple_of(self.dtype.block()) {
            return Err(Error::invalid("reshape", format!("{shape:?}: {} rows must hold whole blocks of {}", self.dtype, self.dtype.block())));
        }
        Ok(Tensor { buffer: self.buffer.clone(), offset: self.offset, shape: shape.to_vec(), dtype: self.dtype })
    }

    /// Rows `start..start + len` of the leading dimension (zero-copy).
    pub fn narrow(&self, start: usize, len: usize) -> Result<Self> {
        let lead = *self.shape.first().ok_or_else(|| Error::invalid("narrow", "scalar tensor"))?;
        if start.checked_add(len).is_none_or(|e| e > lead) {
            return Err(Error::invalid("narrow", format!("rows {start}..{} of {lead}", start.saturating_add(len))));
        }
        let row = numel(&self.shape[1..]);
        let mut shape = self.shape.clone();
        shape[0] = len;
        let block = self.dtype.block();
        if !(start * row).is_multiple_of(block) || !shape.last().copied().unwrap_or(1).is_multiple_of(block) {
            return Err(Error::invalid("narrow", format!("rows {start}..{} of a {} tensor split a block of {block}", start + len, self.dtype)));
        }
        Ok(Tensor { buffer: self.buffer.clone(), offset: self.offset + start * row, shape, dtype: self.dtype })
    }

    /// True when the byte ranges of the two views intersect in one allocation.
    pub fn overlaps(&self, other: &Tensor<B>) -> bool {
        if !self.buffer.same_storage(&other.buffer) || self.numel() == 0 || other.numel() == 0 {
            return false;
        }
        let (a0, a1) = (self.byte_offset(), self.byte_offset() + self.size_bytes());
        let (b0, b1) = (other.byte_offset(), other.byte_offset() + other.size_bytes());
        a0 < b1 && b0 < a1
    }

    /// True when both views cover exactly the same bytes.
    pub fn same_view(&self, other: &Tensor<B>) -> bool {
        self.buffer.same_storage(&other.buffer)
            && self.byte_offset() == other.byte_offset()
            && self.size_bytes() == other.size_bytes()
    }
}

/// The element count of `shape`; None when it overflows.
pub(crate) fn numel_checked(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}
