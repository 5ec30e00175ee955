//! Where uniaudio keeps generated files (synthesized bench models, compiled kernels).

use std::path::PathBuf;

/// `$UNIAUDIO_CACHE_DIR`, else `$XDG_CACHE_HOME/uniaudio`, else `~/.cache/uniaudio`, else
/// the system temp directory's `uniaudio`.
pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("UNIAUDIO_CACHE_DIR") {
        return PathBuf::from(d);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("uniaudio")
}
