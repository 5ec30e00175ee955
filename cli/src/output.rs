//! Output files are written to a temporary name and renamed, so an interrupted run never
//! leaves a half-written file where the user expects a result.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

pub fn write_atomically(path: &Path, contents: &str) -> Result<()> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, contents).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))
}

/// Checks a report's path (`--json`) before the work that fills it: not a directory, and
/// in a directory that exists.
pub fn check_report_path(path: Option<&Path>) -> Result<()> {
    let Some(path) = path else { return Ok(()) };
    refuse_directory(path)?;
    match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(dir) if !dir.is_dir() => bail!("{}: the directory {} does not exist", path.display(), dir.display()),
        _ => Ok(()),
    }
}

fn refuse_directory(path: &Path) -> Result<()> {
    if path.is_dir() {
        bail!("{}: is a directory; give the path of the file to write", path.display());
    }
    Ok(())
}

/// A destination checked before long work: its directory must be writable and the file
/// must not exist unless `force`. Content goes to a hidden temporary file beside it,
/// renamed by `commit`; dropped uncommitted, the temporary file is removed.
pub struct Target {
    path: PathBuf,
    tmp: PathBuf,
}

impl Target {
    pub fn prepare(path: &Path, force: bool) -> Result<Self> {
        refuse_directory(path)?;
        if path.exists() && !force {
            bail!("{}: exists (pass --force to replace it)", path.display());
        }
        let name = path.file_name().with_context(|| format!("{}: not a file path", path.display()))?;
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(".tmp");
        let tmp = path.with_file_name(tmp_name);
        std::fs::File::create(&tmp).with_context(|| format!("{}: cannot write here", path.display()))?;
        Ok(Target { path: path.to_path_buf(), tmp })
    }

    pub fn tmp(&self) -> &Path {
        &self.tmp
    }

    /// Writes `bytes` and renames into place.
    pub fn write(self, bytes: &[u8]) -> Result<()> {
        std::fs::write(&self.tmp, bytes).with_context(|| format!("writing {}", self.tmp.display()))?;
        self.commit()
    }

    pub fn commit(self) -> Result<()> {
        std::fs::rename(&self.tmp, &self.path).with_context(|| format!("renaming to {}", self.path.display()))
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.tmp);
    }
}
