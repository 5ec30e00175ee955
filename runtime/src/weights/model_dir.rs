//! A model directory: `model.safetensors`, or shards listed by
//! `model.safetensors.index.json` (`{"weight_map": {tensor: shard file}}`).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use super::{SafetensorsFile, WeightView};
use crate::{Error, Result};

pub const SINGLE_FILE: &str = "model.safetensors";
pub const INDEX_FILE: &str = "model.safetensors.index.json";

pub struct ModelWeights {
    dir: PathBuf,
    files: Vec<SafetensorsFile>,
    /// Tensor name -> index into `files`.
    location: HashMap<String, usize>,
}

#[derive(serde::Deserialize)]
struct Index {
    weight_map: BTreeMap<String, String>,
}

impl std::fmt::Debug for ModelWeights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ModelWeights({}, {} tensors in {} files)", self.dir.display(), self.location.len(), self.files.len())
    }
}

impl ModelWeights {
    /// Opens a model directory (single file or sharded with an index).
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        let single = dir.join(SINGLE_FILE);
        let index = dir.join(INDEX_FILE);
        if single.is_file() {
            Self::from_file(&single)
        } else if index.is_file() {
            Self::from_index(&dir, &index)
        } else if !dir.is_dir() {
            Err(Error::weights(&dir, "model directory does not exist"))
        } else {
            Err(Error::weights(&dir, format!("neither {SINGLE_FILE} nor {INDEX_FILE} found")))
        }
    }

    /// Opens one safetensors file as a model.
    pub fn from_file(path: &Path) -> Result<Self> {
        let file = SafetensorsFile::open(path)?;
        let location = file.names().map(|n| (n.to_string(), 0)).collect();
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Ok(ModelWeights { dir, files: vec![file], location })
    }

    fn from_index(dir: &Path, index_path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(index_path).map_err(|e| Error::io(index_path, e))?;
        let index: Index = serde_json::from_str(&text)
            .map_err(|e| Error::weights(index_path, format!("invalid index: {e}")))?;
        let mut files: Vec<SafetensorsFile> = Vec::new();
        let mut by_name: HashMap<String, usize> = HashMap::new();
        let mut location = HashMap::new();
        for (tensor, shard) in index.weight_map {
            if !is_plain_file_name(&shard) {
                return Err(Error::weights(index_path, format!("shard `{shard}` of `{tensor}` is not a file name inside the model directory")));
            }
            let slot = match by_name.get(&shard) {
                Some(&i) => i,
                None => {
                    files.push(SafetensorsFile::open(dir.join(&shard))?);
                    by_name.insert(shard.clone(), files.len() - 1);
                    files.len() - 1
                }
            };
            if !files[slot].contains(&tensor) {
                return Err(Error::weights(index_path, format!("index maps `{tensor}` to {shard}, which does not contain it")));
            }
            location.insert(tensor, slot);
        }
        Ok(ModelWeights { dir: dir.to_path_buf(), files, location })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.location.keys().map(String::as_str)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.location.contains_key(name)
    }

    /// Shape of `name` (in elements, also for q8_0 and q4_0), if present and readable.
    pub fn shape(&self, name: &str) -> Option<Vec<usize>> {
        let &i = self.location.get(name)?;
        self.files[i].shape(name)
    }

    /// A view of `name`, whatever its shape and float dtype.
    pub fn get(&self, name: &str) -> Result<WeightView> {
        let &i = self
            .location
            .get(name)
            .ok_or_else(|| Error::MissingTensor { name: name.into(), path: self.dir.clone() })?;
        self.files[i].view(name)
    }

    /// A view of `name`, checked to have exactly `shape` and a float dtype.
    pub fn get_checked(&self, name: &str, shape: &[usize]) -> Result<WeightView> {
        let view = self.get(name)?;
        if view.shape() != shape {
            return Err(Error::WeightShape {
                name: name.into(),
                path: view.path().to_path_buf(),
                expected: shape.to_vec(),
                found: view.shape().to_vec(),
            });
        }
        if !view.dtype().is_float() && !view.dtype().is_quantized() {
            return Err(Error::WeightDType {
                name: name.into(),
                path: view.path().to_path_buf(),
                expected: "f32, f16, bf16, q8_0 or q4_0".into(),
                found: view.dtype().to_string(),
            });
        }
        Ok(view)
    }
}

fn is_plain_file_name(name: &str) -> bool {
    let p = Path::new(name);
    !name.is_empty() && p.components().count() == 1 && p.file_name().is_some_and(|f| f == name) && name != ".."
}
