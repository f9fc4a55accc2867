//! Small file-system helpers whose point is crash safety.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;

use crate::error::{Result, StorageError};

/// Replaces `path` with `contents` so that after a crash it holds either the old or the new bytes: write a
/// temporary file, sync it, rename it over the target, sync the directory.
pub(crate) fn write_atomic(path: &Path, contents: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(|e| StorageError::io(&tmp, e))?;
    file.write_all(contents)
        .and_then(|()| file.sync_data())
        .map_err(|e| {
            let _ = fs::remove_file(&tmp);
            StorageError::io(&tmp, e)
        })?;
    fs::rename(&tmp, path).map_err(|e| StorageError::io(path, e))?;
    sync_parent(path)
}

/// Syncs the directory that holds `path`, so that a created, renamed or removed entry survives a crash.
pub(crate) fn sync_parent(path: &Path) -> Result<()> {
    match path.parent() {
        Some(dir) => sync_dir(dir),
        None => Ok(()),
    }
}

pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StorageError::io(dir, e))
}
