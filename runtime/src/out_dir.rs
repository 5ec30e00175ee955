//! Writing a new directory so that it appears complete or not at all: the files go to a
//! hidden sibling, which is renamed into place only when everything has been written.

use std::path::Path;

use crate::{Error, Result};

/// Refuses an `out` that exists with anything in it, so nothing the user had is lost.
pub fn check_empty(out: &Path) -> Result<()> {
    if out.exists() && std::fs::read_dir(out).map(|mut d| d.next().is_some()).unwrap_or(true) {
        return Err(Error::Output { path: out.to_path_buf(), msg: "output directory exists and is not empty".into() });
    }
    Ok(())
}

/// Runs `write` on a fresh temporary directory beside `out`, then renames it to `out`.
/// On any error the temporary directory is removed and `out` is left untouched.
pub fn write_atomically<E: From<Error>>(out: &Path, write: impl FnOnce(&Path) -> Result<(), E>) -> Result<(), E> {
    check_empty(out)?;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |e| Error::Io { path, cause: e }
    };
    let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(io(parent))?;
    let name = out.file_name().and_then(|n| n.to_str()).unwrap_or("model");
    let tmp = parent.join(format!(".{name}.partial-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    let result = write(&tmp).and_then(|_| {
        if out.exists() {
            std::fs::remove_dir(out).map_err(io(out))?;
        }
        std::fs::rename(&tmp, out).map_err(|e| io(out)(e).into())
    });
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result
}
