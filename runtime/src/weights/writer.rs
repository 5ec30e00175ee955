//! Streaming safetensors writer: the header is laid out from the tensor list up front,
//! then tensors are written one at a time, so a model larger than memory can be written.
//! Output goes to `<path>.tmp` and is renamed into place by `finish`.
//!
//! The data section starts at a multiple of `DATA_ALIGN` bytes, and tensors whose size is
//! a multiple of it come first, so each of those starts on a cache line of the mapped file:
//! kernels read their rows in place (the AMX GEMM needs that to skip a copy) and no vector
//! load straddles two lines where a row's length is a multiple of it. The format has no
//! holes, so the others follow, by falling dtype alignment.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::dtype::Q8_BLOCK;
use crate::{DType, Error, Result};

/// Alignment of the data section and of each tensor whose size is a multiple of it.
pub const DATA_ALIGN: usize = 64;

/// The `__metadata__` key listing (comma-separated) the U8 tensors that hold Q8_0 blocks.
pub const Q8_METADATA_KEY: &str = "uniaudio.q8_0";
/// The same for Q4_0 blocks.
pub const Q4_METADATA_KEY: &str = "uniaudio.q4_0";

/// The metadata key listing the tensors of a block-quantized dtype.
pub fn quantized_metadata_key(dtype: DType) -> Option<&'static str> {
    match dtype {
        DType::Q8_0 => Some(Q8_METADATA_KEY),
        DType::Q4_0 => Some(Q4_METADATA_KEY),
        _ => None,
    }
}

#[derive(Clone, Debug)]
pub struct TensorSpec {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
}

impl TensorSpec {
    pub fn new(name: impl Into<String>, dtype: DType, shape: &[usize]) -> Self {
        TensorSpec { name: name.into(), dtype, shape: shape.to_vec() }
    }
    pub fn size_bytes(&self) -> usize {
        self.dtype.bytes(self.shape.iter().product::<usize>())
    }
    /// The shape in the file: for Q8_0 and Q4_0, the last dimension counts bytes of blocks.
    pub fn stored_shape(&self) -> Vec<usize> {
        let mut shape = self.shape.clone();
        if let (true, Some(last)) = (self.dtype.is_quantized(), shape.last_mut()) {
            *last = self.dtype.bytes(*last);
        }
        shape
    }
}

pub struct SafetensorsWriter {
    path: PathBuf,
    tmp: PathBuf,
    out: BufWriter<File>,
    specs: Vec<TensorSpec>,
    /// Each spec's file offset (header included), in the order of `specs`.
    starts: Vec<u64>,
    /// Where the buffered output stands.
    position: u64,
    next: usize,
}

impl SafetensorsWriter {
    /// Starts a file holding `specs` (written in this order, laid out as the module says),
    /// with `metadata` in `__metadata__`.
    /// Q8_0 and Q4_0 tensors are stored as U8 rows of blocks and listed under
    /// `Q8_METADATA_KEY` and `Q4_METADATA_KEY`.
    pub fn create(path: impl AsRef<Path>, specs: Vec<TensorSpec>, metadata: &BTreeMap<String, String>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let mut header = serde_json::Map::new();
        let mut metadata = metadata.clone();
        for dtype in [DType::Q8_0, DType::Q4_0] {
            let quantized: Vec<&str> = specs.iter().filter(|s| s.dtype == dtype).map(|s| s.name.as_str()).collect();
            if quantized.is_empty() {
                continue;
            }
            if let Some(bad) = quantized.iter().find(|n| n.contains(',')) {
                return Err(Error::weights(&path, format!("{dtype} tensor name `{bad}` contains a comma")));
            }
            if let Some(bad) = specs.iter().find(|s| s.dtype == dtype && !s.shape.last().is_some_and(|k| k.is_multiple_of(Q8_BLOCK))) {
                return Err(Error::weights(&path, format!("{dtype} tensor `{}` {:?}: rows must hold whole blocks of {Q8_BLOCK}", bad.name, bad.shape)));
            }
            let key = quantized_metadata_key(dtype).expect("a quantized dtype");
            metadata.insert(key.into(), quantized.join(","));
        }
        if !metadata.is_empty() {
            header.insert("__metadata__".into(), serde_json::to_value(&metadata).expect("string map"));
        }
        for s in &specs {
            if header.contains_key(&s.name) {
                return Err(Error::weights(&path, format!("tensor `{}` listed twice", s.name)));
            }
            header.insert(s.name.clone(), serde_json::Value::Null);
        }
        // Whole lines first in the given order, then the rest by falling element alignment,
        // so each of those stays aligned for its dtype too.
        let whole = |s: &TensorSpec| s.size_bytes().is_multiple_of(DATA_ALIGN);
        let mut rest: Vec<(usize, &TensorSpec)> = specs.iter().enumerate().filter(|(_, s)| !whole(s)).collect();
        rest.sort_by_key(|(_, s)| std::cmp::Reverse(s.dtype.align()));
        let layout = specs.iter().enumerate().filter(|(_, s)| whole(s)).chain(rest);
        let mut offsets = vec![0usize; specs.len()];
        let mut offset = 0usize;
        for (i, s) in layout {
            let end = offset + s.size_bytes();
            header.insert(
                s.name.clone(),
                serde_json::json!({"dtype": s.dtype.to_safetensors(), "shape": s.stored_shape(), "data_offsets": [offset, end]}),
            );
            offsets[i] = offset;
            offset = end;
        }
        let mut json = serde_json::to_string(&header).expect("serialisable header");
        // Pad with spaces so the data section starts on a `DATA_ALIGN` boundary.
        while !(8 + json.len()).is_multiple_of(DATA_ALIGN) {
            json.push(' ');
        }
        let data = (8 + json.len()) as u64;
        let starts = offsets.iter().map(|&o| data + o as u64).collect();
        let tmp = tmp_path(&path);
        let file = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let mut out = BufWriter::with_capacity(1 << 22, file);
        out.write_all(&(json.len() as u64).to_le_bytes()).map_err(|e| Error::io(&tmp, e))?;
        out.write_all(json.as_bytes()).map_err(|e| Error::io(&tmp, e))?;
        Ok(SafetensorsWriter { path, tmp, out, specs, starts, position: data, next: 0 })
    }

    /// Writes the next tensor's bytes (tensors must come in the order given to `create`;
    /// each lands at its laid-out offset).
    pub fn write_tensor(&mut self, name: &str, bytes: &[u8]) -> Result<()> {
        let spec = self
            .specs
            .get(self.next)
            .ok_or_else(|| Error::weights(&self.path, format!("`{name}` written after the last listed tensor")))?;
        if spec.name != name || spec.size_bytes() != bytes.len() {
            return Err(Error::weights(
                &self.path,
                format!("expected `{}` ({} bytes) next, got `{name}` ({} bytes)", spec.name, spec.size_bytes(), bytes.len()),
            ));
        }
        let start = self.starts[self.next];
        // A seek flushes the buffer; skip it where the tensor follows the last one written.
        if self.position != start {
            self.out.seek(SeekFrom::Start(start)).map_err(|e| Error::io(&self.tmp, e))?;
        }
        self.out.write_all(bytes).map_err(|e| Error::io(&self.tmp, e))?;
        self.position = start + bytes.len() as u64;
        self.next += 1;
        Ok(())
    }

    /// Flushes, syncs and renames the file into place.
    pub fn finish(mut self) -> Result<PathBuf> {
        if self.next != self.specs.len() {
            return Err(Error::weights(&self.path, format!("only {} of {} tensors were written", self.next, self.specs.len())));
        }
        self.out.flush().map_err(|e| Error::io(&self.tmp, e))?;
        self.out.get_ref().sync_all().map_err(|e| Error::io(&self.tmp, e))?;
        std::fs::rename(&self.tmp, &self.path).map_err(|e| Error::io(&self.path, e))?;
        Ok(self.path.clone())
    }
}

impl Drop for SafetensorsWriter {
    fn drop(&mut self) {
        // An unfinished file never appears under its final name.
        if self.next != self.specs.len() || self.tmp.exists() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".tmp");
    path.with_file_name(name)
}
