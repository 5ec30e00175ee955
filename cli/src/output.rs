//! Output files are written to a temporary name and renamed, so an interrupted run never
//! leaves a half-written file where the user expects a result.

use std::path::Path;

use anyhow::{Context, Result};

pub fn write_atomically(path: &Path, contents: &str) -> Result<()> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, contents).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))
}
