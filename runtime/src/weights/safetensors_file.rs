//! One memory-mapped `.safetensors` file. The header is parsed and validated by the
//! `safetensors` crate (bounds, contiguity, sizes); nothing past the header is read
//! until a tensor is asked for.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;

use super::view::{WeightBytes, WeightView};
use crate::aligned::AlignedBytes;
use crate::{DType, Error, Result};

struct Entry {
    dtype: safetensors::Dtype,
    shape: Vec<usize>,
    /// Absolute byte range in the file.
    start: usize,
    len: usize,
}

pub struct SafetensorsFile {
    path: PathBuf,
    map: Arc<Mmap>,
    entries: HashMap<String, Entry>,
    metadata: HashMap<String, String>,
    /// Tensors whose U8 bytes are Q8_0 or Q4_0 blocks (listed in the metadata).
    quantized: HashMap<String, DType>,
}

impl std::fmt::Debug for SafetensorsFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SafetensorsFile({}, {} tensors)", self.path.display(), self.entries.len())
    }
}

impl SafetensorsFile {
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = File::open(&path).map_err(|e| Error::io(&path, e))?;
        // SAFETY: the map is read-only. Like every mmap-based loader we rely on the
        // file not being truncated by another process while it is mapped.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(&path, e))?;
        crate::huge_pages::advise_map(&map);
        let (header_len, meta) = safetensors::SafeTensors::read_metadata(&map)
            .map_err(|e| Error::weights(&path, format!("not a valid safetensors file: {e}")))?;
        let data_start = 8 + header_len;
        let mut entries = HashMap::new();
        for (name, info) in meta.tensors() {
            let (s, e) = info.data_offsets;
            // read_metadata checked that offsets tile the data section exactly.
            entries.insert(
                name,
                Entry { dtype: info.dtype, shape: info.shape.clone(), start: data_start + s, len: e - s },
            );
        }
        let metadata = meta.metadata().clone().unwrap_or_default();
        let mut quantized = HashMap::new();
        for dtype in [DType::Q8_0, DType::Q4_0] {
            let key = super::writer::quantized_metadata_key(dtype).expect("a quantized dtype");
            for name in metadata.get(key).into_iter().flat_map(|l| l.split(',')).filter(|n| !n.is_empty()) {
                if quantized.insert(name.to_string(), dtype).is_some_and(|d| d != dtype) {
                    return Err(Error::weights(&path, format!("`{name}` is listed as both q8_0 and q4_0")));
                }
            }
        }
        Ok(SafetensorsFile { path, map: Arc::new(map), entries, metadata, quantized })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    /// The `__metadata__` string map of the header.
    pub fn metadata(&self) -> &HashMap<String, String> {
        &self.metadata
    }

    /// Stored dtype name and shape, without touching the data.
    pub fn info(&self, name: &str) -> Option<(String, &[usize])> {
        self.entries.get(name).map(|e| (format!("{:?}", e.dtype), e.shape.as_slice()))
    }

    /// Shape of `name` in elements (q8_0 and q4_0 rows counted in weights, not bytes).
    pub fn shape(&self, name: &str) -> Option<Vec<usize>> {
        let entry = self.entries.get(name)?;
        self.dtype_and_shape(name, entry).ok().map(|(_, s)| s)
    }

    /// A view of tensor `name`; zero-copy unless its offset is misaligned for its dtype.
    pub fn view(&self, name: &str) -> Result<WeightView> {
        let entry = self
            .entries
            .get(name)
            .ok_or_else(|| Error::MissingTensor { name: name.into(), path: self.path.clone() })?;
        let (dtype, shape) = self.dtype_and_shape(name, entry)?;
        let bytes = if (self.map.as_ptr() as usize + entry.start).is_multiple_of(dtype.align()) {
            WeightBytes::Mapped { map: self.map.clone(), start: entry.start, len: entry.len }
        } else {
            let copy = AlignedBytes::from_slice(&self.map[entry.start..entry.start + entry.len])
                .ok_or_else(|| Error::weights(&self.path, format!("cannot allocate {} bytes for `{name}`", entry.len)))?;
            WeightBytes::Owned(Arc::new(copy))
        };
        Ok(WeightView { name: name.into(), path: self.path.clone(), dtype, shape, bytes })
    }

    /// The runtime dtype and logical shape of an entry: a U8 tensor listed as Q8_0 (Q4_0)
    /// holds rows of 34-byte (18-byte) blocks of 32 weights.
    fn dtype_and_shape(&self, name: &str, entry: &Entry) -> Result<(DType, Vec<usize>)> {
        if let Some(&dtype) = self.quantized.get(name) {
            let block_bytes = dtype.size_bytes();
            let rows_of_blocks = entry.shape.last().is_some_and(|b| *b > 0 && b.is_multiple_of(block_bytes));
            if entry.dtype != safetensors::Dtype::U8 || !rows_of_blocks {
                return Err(Error::weights(&self.path, format!("`{name}` is listed as {dtype} but is {:?} {:?} (expected u8 rows of {block_bytes}-byte blocks)", entry.dtype, entry.shape)));
            }
            let mut shape = entry.shape.clone();
            if let Some(last) = shape.last_mut() {
                *last = *last / block_bytes * crate::dtype::Q8_BLOCK;
            }
            return Ok((dtype, shape));
        }
        let dtype = DType::from_safetensors(entry.dtype).ok_or_else(|| Error::WeightDType {
            name: name.into(),
            path: self.path.clone(),
            expected: "f32, f16, bf16, u32 (or u8 listed as q8_0 or q4_0)".into(),
            found: format!("{:?}", entry.dtype),
        })?;
        Ok((dtype, entry.shape.clone()))
    }
}
