//! `torch.save` checkpoints (zip format): the archive is memory-mapped, `data.pkl` is read
//! with the restricted pickle reader, and tensor bytes are sliced from the stored entries
//! `<archive>/data/<key>` only when asked for.

use std::collections::HashMap;
use std::fs::File;
use std::io::Cursor;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use super::pickle::{self, StorageKind, TensorRef, Value};
use crate::{DType, Error, Result};

/// One tensor of a checkpoint, not yet read.
#[derive(Clone, Debug)]
pub struct TorchTensor {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
    tensor: TensorRef,
}

impl TorchTensor {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
    pub fn size_bytes(&self) -> usize {
        self.numel() * self.dtype.size_bytes()
    }
}

pub struct TorchCheckpoint {
    path: PathBuf,
    map: Mmap,
    /// Entry name -> (start, length) of stored (uncompressed) data in the file.
    entries: HashMap<String, (usize, usize)>,
    prefix: String,
    root: Value,
}

impl std::fmt::Debug for TorchCheckpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TorchCheckpoint({})", self.path.display())
    }
}

fn dtype_of(kind: StorageKind) -> Option<DType> {
    match kind {
        StorageKind::F32 => Some(DType::F32),
        StorageKind::F16 => Some(DType::F16),
        StorageKind::BF16 => Some(DType::BF16),
        StorageKind::I64 => None,
    }
}

impl TorchCheckpoint {
    /// Opens the archive and reads its pickle; no tensor data is touched.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let bad = |msg: String| Error::weights(&path, msg);
        let file = File::open(&path).map_err(|e| Error::io(&path, e))?;
        // SAFETY: read-only map; the file must not be truncated while it is open.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(&path, e))?;
        let mut archive = zip::ZipArchive::new(Cursor::new(&map[..]))
            .map_err(|e| bad(format!("not a torch zip checkpoint ({e}); legacy non-zip torch files are not supported")))?;
        let mut entries = HashMap::new();
        for i in 0..archive.len() {
            let f = archive.by_index_raw(i).map_err(|e| bad(format!("zip entry {i}: {e}")))?;
            let name = f.name().map_err(|e| bad(format!("zip entry {i}: {e}")))?.to_string();
            let stored = f.compression() == zip::CompressionMethod::Stored && f.size() == f.compressed_size();
            let start = f.data_start().ok_or_else(|| bad(format!("zip entry `{name}` has no data offset")))?;
            let (start, len) = (start as usize, f.compressed_size() as usize);
            if start.checked_add(len).is_none_or(|e| e > map.len()) {
                return Err(bad(format!("zip entry `{name}` extends past the end of the file")));
            }
            if stored {
                entries.insert(name, (start, len));
            }
        }
        let pkl = entries
            .keys()
            .filter(|n| n.ends_with("/data.pkl") && n.matches('/').count() == 1)
            .min()
            .cloned()
            .ok_or_else(|| bad("no uncompressed `<archive>/data.pkl` entry".into()))?;
        let prefix = pkl.trim_end_matches("data.pkl").to_string();
        if let Some(&(s, l)) = entries.get(&format!("{prefix}byteorder")) {
            if &map[s..s + l] != b"little" {
                return Err(bad("big-endian checkpoints are not supported".into()));
            }
        }
        let (s, l) = entries[&pkl];
        let root = pickle::load(&map[s..s + l]).map_err(|e| bad(format!("{pkl}: {e}")))?;
        Ok(TorchCheckpoint { path, map, entries, prefix, root })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The keys of the top-level dict (e.g. `model`, `optimizer`).
    pub fn top_level_keys(&self) -> Vec<String> {
        match &self.root {
            Value::Dict(d) => d.iter().filter_map(|(k, _)| if let Value::Str(s) = k { Some(s.clone()) } else { None }).collect(),
            _ => Vec::new(),
        }
    }

    /// The tensors of the state dict under top-level `key` (other entries are never read).
    /// Anything in it that is not a float tensor (a refused global, a non-tensor value) is
    /// an error naming it.
    pub fn state_dict(&self, key: &str) -> Result<Vec<TorchTensor>> {
        self.state_dict_where(key, &|_| true)
    }

    /// As `state_dict`, for the entries whose names `keep` accepts; the others (of any
    /// type: integer buffers, refused globals) are skipped without being inspected.
    pub fn state_dict_where(&self, key: &str, keep: &dyn Fn(&str) -> bool) -> Result<Vec<TorchTensor>> {
        let bad = |msg: String| Error::weights(&self.path, msg);
        let Value::Dict(top) = &self.root else {
            return Err(bad(refusal_or("the checkpoint is not a dict", &self.root)));
        };
        let (_, model) = top
            .iter()
            .find(|(k, _)| *k == Value::Str(key.into()))
            .ok_or_else(|| bad(format!("no `{key}` entry (top-level keys: {})", self.top_level_keys().join(", "))))?;
        self.tensors_of(model, key, keep)
    }

    /// As `state_dict_where` for a file whose top level is the state dict itself
    /// (`torch.save(model.state_dict())`, e.g. Hugging Face's `pytorch_model.bin`).
    pub fn root_state_dict_where(&self, keep: &dyn Fn(&str) -> bool) -> Result<Vec<TorchTensor>> {
        self.tensors_of(&self.root, "the top level", keep)
    }

    fn tensors_of(&self, dict: &Value, what: &str, keep: &dyn Fn(&str) -> bool) -> Result<Vec<TorchTensor>> {
        let bad = |msg: String| Error::weights(&self.path, msg);
        let Value::Dict(items) = dict else {
            return Err(bad(refusal_or(&format!("`{what}` is not a state dict"), dict)));
        };
        items
            .iter()
            .filter(|(k, _)| !matches!(k, Value::Str(name) if !keep(name)))
            .map(|(k, v)| {
                let Value::Str(name) = k else { return Err(bad(format!("`{what}` has a non-string key"))) };
                match v {
                    Value::Tensor(t) => self.describe(name, t),
                    other => Err(bad(refusal_or(&format!("`{name}` is not a tensor"), other))),
                }
            })
            .collect()
    }

    fn describe(&self, name: &str, t: &TensorRef) -> Result<TorchTensor> {
        let bad = |msg: String| Error::weights(&self.path, format!("tensor `{name}`: {msg}"));
        let dtype = dtype_of(t.kind).ok_or_else(|| bad(format!("{:?} storage is not a float type", t.kind)))?;
        let shape: Vec<usize> = t.shape.iter().map(|&d| usize::try_from(d).map_err(|_| bad("size too large".into()))).collect::<Result<_>>()?;
        let numel = shape.iter().try_fold(1u64, |a, &d| a.checked_mul(d as u64)).ok_or_else(|| bad("size overflows".into()))?;
        if !view_fits(t, numel) {
            return Err(bad(format!(
                "view (offset {}, size {:?}, stride {:?}) exceeds its storage of {} elements",
                t.offset, t.shape, t.stride, t.storage_numel
            )));
        }
        let entry = format!("{}data/{}", self.prefix, t.storage_key);
        let &(_, len) = self.entries.get(&entry).ok_or_else(|| bad(format!("storage entry `{entry}` is missing or compressed")))?;
        if (len as u64) != t.storage_numel.saturating_mul(t.kind.elem_size() as u64) {
            return Err(bad(format!("storage `{entry}` holds {len} bytes, expected {} elements", t.storage_numel)));
        }
        Ok(TorchTensor { name: name.into(), dtype, shape, tensor: t.clone() })
    }

    /// The tensor's elements in row-major order, as little-endian bytes of its dtype.
    pub fn read(&self, t: &TorchTensor) -> Result<Vec<u8>> {
        let entry = format!("{}data/{}", self.prefix, t.tensor.storage_key);
        let (start, len) = self.entries[&entry];
        let storage = &self.map[start..start + len];
        let es = t.dtype.size_bytes();
        let contiguous = is_contiguous(&t.tensor.shape, &t.tensor.stride);
        let n = t.numel();
        if n == 0 {
            return Ok(Vec::new());
        }
        if contiguous {
            let s = t.tensor.offset as usize * es;
            return Ok(storage[s..s + n * es].to_vec());
        }
        // A strided view (checked against the storage bounds in `describe`).
        let mut out = Vec::with_capacity(n * es);
        let mut index = vec![0u64; t.shape.len()];
        for _ in 0..n {
            let e = t.tensor.offset + index.iter().zip(&t.tensor.stride).map(|(i, s)| i * s).sum::<u64>();
            let e = e as usize * es;
            out.extend_from_slice(&storage[e..e + es]);
            for d in (0..index.len()).rev() {
                index[d] += 1;
                if index[d] < t.tensor.shape[d] {
                    break;
                }
                index[d] = 0;
            }
        }
        Ok(out)
    }
}

/// Whether the view of `numel` elements lies inside its storage: the furthest element it
/// reaches is inside (an empty view reaches none).
fn view_fits(t: &TensorRef, numel: u64) -> bool {
    // As torch's own check: a view of no elements reads nothing, wherever it starts.
    if numel == 0 {
        return true;
    }
    let last = t.shape.iter().zip(&t.stride).try_fold(t.offset, |acc, (&d, &s)| acc.checked_add((d - 1).checked_mul(s)?));
    last.is_some_and(|l| l < t.storage_numel)
}

fn is_contiguous(shape: &[u64], stride: &[u64]) -> bool {
    let mut expect = 1u64;
    for (&d, &s) in shape.iter().zip(stride).rev() {
        if d != 1 && s != expect {
            return false;
        }
        expect *= d;
    }
    true
}

fn refusal_or(msg: &str, v: &Value) -> String {
    match find_refused(v) {
        Some(global) => format!("refused to load: it calls `{global}`, which is not a tensor or container type (nothing was executed)"),
        None => msg.to_string(),
    }
}

fn find_refused(v: &Value) -> Option<&str> {
    match v {
        Value::Refused(name) => Some(name),
        Value::Tuple(items) | Value::List(items) => items.iter().find_map(find_refused),
        Value::Dict(d) => d.iter().find_map(|(k, v)| find_refused(k).or_else(|| find_refused(v))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    /// Writes and opens a checkpoint whose top level is `{'w': tensor}`: a view (`offset`,
    /// `shape`, `stride`) of a FloatStorage of two elements, 1.0 and 2.0.
    fn checkpoint(dir: &Path, offset: u8, shape: &[u8], stride: &[u8]) -> TorchCheckpoint {
        let ints = |dims: &[u8]| dims.iter().flat_map(|&d| [b'K', d]).collect::<Vec<u8>>();
        let mut p = b"\x80\x02}X\x01\x00\x00\x00wctorch._utils\n_rebuild_tensor_v2\n(".to_vec();
        p.extend(b"(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x02tQ");
        p.extend([b'K', offset, b'(']);
        p.extend(ints(shape));
        p.extend(b"t(");
        p.extend(ints(stride));
        p.extend(b"t\x89ccollections\nOrderedDict\n)RtRs.");
        let path = dir.join(format!("view-{offset}-{shape:?}.pt"));
        let mut zip = zip::ZipWriter::new(File::create(&path).unwrap());
        let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
        for (name, data) in [("archive/data.pkl", p), ("archive/data/0", [1f32, 2.0].iter().flat_map(|v| v.to_le_bytes()).collect())] {
            zip.start_file(name, opts).unwrap();
            zip.write_all(&data).unwrap();
        }
        zip.finish().unwrap();
        TorchCheckpoint::open(&path).unwrap()
    }

    #[test]
    fn views_must_lie_inside_their_storage_and_empty_ones_read_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let all = |_: &str| true;
        // A whole storage, and empty views anywhere (torch accepts any offset for them):
        // they read as empty without slicing the storage.
        for (offset, shape, stride, want) in [(0, &[2][..], &[1][..], 8), (2, &[0], &[1], 0), (1, &[0, 3], &[3, 1], 0), (10, &[0], &[1], 0), (3, &[0, 2], &[2, 1], 0)] {
            let ckpt = checkpoint(dir.path(), offset, shape, stride);
            let tensors = ckpt.root_state_dict_where(&all).unwrap();
            assert_eq!(ckpt.read(&tensors[0]).unwrap().len(), want, "offset {offset}, shape {shape:?}");
        }
        // Views that start or end past the storage's two elements.
        for (offset, shape, stride) in [(1, &[2][..], &[1][..]), (2, &[1], &[1]), (0, &[2, 2], &[2, 1])] {
            let err = checkpoint(dir.path(), offset, shape, stride).root_state_dict_where(&all).unwrap_err().to_string();
            assert!(err.contains("exceeds its storage of 2 elements"), "offset {offset}, shape {shape:?}: {err}");
        }
    }
}
