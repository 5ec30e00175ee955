//! The per-device cache file: `{format, version, key, choices}` as JSON under
//! `<cache dir>/tune/`. Written to a temporary file and renamed; a file that does not
//! parse, has another format version or another device key is ignored with a warning.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::DeviceKey;

const FORMAT: &str = "uniaudio-tune";
const VERSION: u32 = 1;
/// A tuning file is a few KiB; anything much larger is not one.
const MAX_BYTES: u64 = 1 << 20;

/// The chosen candidate of one (family, shape class), with what was measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    /// The chosen candidate's name.
    pub candidate: String,
    /// Every candidate's median time in microseconds, by name.
    pub medians_us: BTreeMap<String, f64>,
}

#[derive(Serialize, Deserialize)]
struct File {
    format: String,
    version: u32,
    key: DeviceKey,
    choices: BTreeMap<String, Choice>,
}

/// Tuned choices for one device, keyed by `family/shape class`.
#[derive(Debug)]
pub struct TuneCache {
    path: PathBuf,
    key: DeviceKey,
    choices: BTreeMap<String, Choice>,
}

impl TuneCache {
    /// The cache of `key` in `dir` (empty when there is none). Unreadable, corrupt or
    /// foreign files are reported through `warn` and ignored.
    pub fn open(dir: &Path, key: DeviceKey, warn: &mut dyn FnMut(String)) -> TuneCache {
        let path = dir.join(key.file_name());
        let mut cache = TuneCache { path, key, choices: BTreeMap::new() };
        match std::fs::metadata(&cache.path) {
            Err(_) => return cache,
            Ok(m) if m.len() > MAX_BYTES => {
                warn(format!("{}: {} bytes is not a tuning file; ignored", cache.path.display(), m.len()));
                return cache;
            }
            Ok(_) => {}
        }
        let parsed = std::fs::read(&cache.path).map_err(|e| e.to_string()).and_then(|b| serde_json::from_slice::<File>(&b).map_err(|e| e.to_string()));
        match parsed {
            Err(e) => warn(format!("{}: unreadable tuning file ({e}); ignored, defaults used until it is rewritten", cache.path.display())),
            Ok(f) if f.format != FORMAT || f.version != VERSION => {
                warn(format!("{}: tuning file format {} v{}, expected {FORMAT} v{VERSION}; ignored", cache.path.display(), f.format, f.version))
            }
            Ok(f) if f.key != cache.key => warn(format!("{}: tuned for another device or version ({:?}); ignored", cache.path.display(), f.key)),
            Ok(f) => cache.choices = f.choices,
        }
        cache
    }

    /// Where the cache lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The device this cache is for.
    pub fn key(&self) -> &DeviceKey {
        &self.key
    }

    /// The choice stored for `entry` (`family/shape class`).
    pub fn get(&self, entry: &str) -> Option<&Choice> {
        self.choices.get(entry)
    }

    /// Whether any choice is stored.
    pub fn is_empty(&self) -> bool {
        self.choices.is_empty()
    }

    /// Records a choice (kept in memory until `save`).
    pub fn insert(&mut self, entry: &str, choice: Choice) {
        self.choices.insert(entry.to_string(), choice);
    }

    /// Writes the cache: a temporary file beside it, then a rename, so a reader never sees
    /// half a file and a failed write leaves the old one.
    pub fn save(&self) -> std::io::Result<()> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = File { format: FORMAT.into(), version: VERSION, key: self.key.clone(), choices: self.choices.clone() };
        let text = serde_json::to_vec_pretty(&file).map_err(std::io::Error::other)?;
        let tmp = self.path.with_extension(format!("tmp{}", std::process::id()));
        let written = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, &self.path));
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written
    }
}
