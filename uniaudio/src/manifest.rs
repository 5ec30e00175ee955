//! The bundle manifest `uniaudio.json`: what each part is, its dtype, and the size and
//! sha256 of every file, so that `uniaudio verify` can name a damaged or missing file.
//! Hashing is only done on request: reading 10 GB takes time that a load should not pay.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The manifest's file name in a bundle.
pub const MANIFEST_FILE: &str = "uniaudio.json";
/// The manifest's `format`.
pub const FORMAT: &str = "uniaudio-bundle";
/// The manifest version this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;
/// A manifest is a few kilobytes; anything far larger is not one.
const MAX_MANIFEST_BYTES: u64 = 1 << 20;

/// A bundle's manifest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always `uniaudio-bundle`.
    pub format: String,
    /// The format version.
    pub version: u32,
    /// Part name (`lm`, `codec`, `tokenizer`) -> its entry.
    pub parts: BTreeMap<String, PartEntry>,
}

/// One part of a bundle.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PartEntry {
    /// Path relative to the bundle root: a directory (`lm`, `codec`) or a file.
    pub path: String,
    /// What the part is, in words.
    pub what: String,
    /// Stored dtype of its weights, where it has any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dtype: Option<String>,
    /// What the part can do (for the codec: `decoder`, `encoder`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub features: Vec<String>,
    /// Every file of the part.
    pub files: Vec<FileEntry>,
}

/// One file of a part.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Path relative to the bundle root.
    pub path: String,
    /// Its size.
    pub bytes: u64,
    /// Its sha256, lowercase hex.
    pub sha256: String,
}

/// One problem `verify` found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// The file is not there (or is not a file).
    Missing(String),
    /// The file's size differs from the manifest's.
    Size {
        /// The file.
        path: String,
        /// The manifest's size.
        expected: u64,
        /// The file's size.
        found: u64,
    },
    /// The file's sha256 differs from the manifest's.
    Hash {
        /// The file.
        path: String,
    },
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::Missing(p) => write!(f, "{p}: missing"),
            Problem::Size { path, expected, found } => write!(f, "{path}: {found} bytes, the manifest says {expected}"),
            Problem::Hash { path } => write!(f, "{path}: sha256 differs from the manifest (the file was changed or damaged)"),
        }
    }
}

impl Manifest {
    /// An empty manifest of the current format.
    pub fn new() -> Self {
        Manifest { format: FORMAT.into(), version: FORMAT_VERSION, parts: BTreeMap::new() }
    }

    /// Reads and checks `root/uniaudio.json`: format, version, and paths that stay inside the bundle.
    pub fn read(root: &Path) -> Result<Self> {
        let path = root.join(MANIFEST_FILE);
        let size = std::fs::metadata(&path).with_context(|| format!("{}: cannot read", path.display()))?.len();
        if size > MAX_MANIFEST_BYTES {
            bail!("{}: {size} bytes is too large for a bundle manifest", path.display());
        }
        let text = std::fs::read_to_string(&path).with_context(|| format!("{}: cannot read", path.display()))?;
        let m: Manifest = serde_json::from_str(&text).with_context(|| format!("{}: not a bundle manifest", path.display()))?;
        if m.format != FORMAT {
            bail!("{}: format `{}`, expected `{FORMAT}`", path.display(), m.format);
        }
        if m.version != FORMAT_VERSION {
            bail!("{}: version {} is not supported (this build reads version {FORMAT_VERSION})", path.display(), m.version);
        }
        for (name, part) in &m.parts {
            let paths = std::iter::once(&part.path).chain(part.files.iter().map(|f| &f.path));
            for p in paths {
                if !is_inside(p) {
                    bail!("{}: part `{name}` names `{p}`, which is not a path inside the bundle", path.display());
                }
            }
        }
        Ok(m)
    }

    /// Writes `root/uniaudio.json` through a temporary file.
    pub fn write(&self, root: &Path) -> Result<()> {
        let path = root.join(MANIFEST_FILE);
        let tmp = root.join(".uniaudio.json.tmp");
        std::fs::write(&tmp, serde_json::to_string_pretty(self)?).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("renaming to {}", path.display()))
    }

    /// Every file of the manifest, in order.
    pub fn files(&self) -> impl Iterator<Item = &FileEntry> {
        self.parts.values().flat_map(|p| p.files.iter())
    }

    /// Checks every listed file's size, then its sha256. `progress(done_bytes, total_bytes)`.
    pub fn verify(&self, root: &Path, progress: &mut dyn FnMut(u64, u64)) -> Result<Vec<Problem>> {
        let total: u64 = self.files().map(|f| f.bytes).sum();
        let mut problems = Vec::new();
        let mut done = 0u64;
        for f in self.files() {
            let path = root.join(&f.path);
            let Ok(meta) = std::fs::metadata(&path) else {
                problems.push(Problem::Missing(f.path.clone()));
                done += f.bytes;
                continue;
            };
            if !meta.is_file() {
                problems.push(Problem::Missing(f.path.clone()));
            } else if meta.len() != f.bytes {
                problems.push(Problem::Size { path: f.path.clone(), expected: f.bytes, found: meta.len() });
            } else {
                let base = done;
                let (_, sha) = hash_file(&path, &mut |d| progress(base + d, total))?;
                if sha != f.sha256 {
                    problems.push(Problem::Hash { path: f.path.clone() });
                }
            }
            done += f.bytes;
            progress(done, total);
        }
        Ok(problems)
    }
}

impl Default for Manifest {
    fn default() -> Self {
        Self::new()
    }
}

/// A relative path with only normal components (no `..`, no root, no drive).
fn is_inside(p: &str) -> bool {
    let path = Path::new(p);
    !p.is_empty() && path.components().all(|c| matches!(c, Component::Normal(_)))
}

/// (bytes, lowercase hex sha256) of a file, streamed; `progress(bytes_done)`.
pub fn hash_file(path: &Path, progress: &mut dyn FnMut(u64)) -> Result<(u64, String)> {
    let mut file = std::fs::File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0u64;
    loop {
        let n = file.read(&mut buf).with_context(|| format!("{}: read error", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        done += n as u64;
        progress(done);
    }
    let hex = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
    Ok((done, hex))
}

/// The file entries of `rel` (a file, or every file below a directory, sorted), hashed.
pub fn describe(root: &Path, rel: &str, progress: &mut dyn FnMut(u64)) -> Result<Vec<FileEntry>> {
    let mut paths = Vec::new();
    collect(root, &root.join(rel), &mut paths)?;
    paths.sort();
    let mut out = Vec::new();
    for p in paths {
        let (bytes, sha256) = hash_file(&root.join(&p), progress)?;
        out.push(FileEntry { path: p.to_string_lossy().replace('\\', "/"), bytes, sha256 });
    }
    Ok(out)
}

fn collect(root: &Path, at: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let meta = std::fs::metadata(at).with_context(|| format!("{}: cannot read", at.display()))?;
    if meta.is_file() {
        out.push(at.strip_prefix(root).expect("below the root").to_path_buf());
        return Ok(());
    }
    for entry in std::fs::read_dir(at).with_context(|| format!("{}: cannot list", at.display()))? {
        let entry = entry?;
        // Hidden files are temporaries of an interrupted write, not part of the model.
        if !entry.file_name().to_string_lossy().starts_with('.') {
            collect(root, &entry.path(), out)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_must_stay_inside_the_bundle() {
        assert!(is_inside("lm/model.safetensors"));
        for bad in ["", "/etc/passwd", "../x", "lm/../../x"] {
            assert!(!is_inside(bad), "{bad}");
        }
    }

    #[test]
    fn sha256_of_a_known_string() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("abc");
        std::fs::write(&p, b"abc").unwrap();
        let (n, sha) = hash_file(&p, &mut |_| {}).unwrap();
        assert_eq!(n, 3);
        assert_eq!(sha, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
