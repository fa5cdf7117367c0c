//! One server per data directory: an advisory lock on `.lock` in the directory, held for
//! the life of the process and released by the kernel when it dies (even by kill -9).
//!
//! Two servers on one directory would each keep its own copy of a document in memory and
//! overwrite the other's journal and text: every acknowledged change of one of them lost.

use std::fs::{self, File, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::Path;

pub const LOCK_FILE: &str = ".lock";

/// Held while the server runs; dropping it releases the directory.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

/// Locks `dir` (created if missing) or says which process holds it.
// std's File::try_lock (flock on Linux) is stable since Rust 1.89; the workspace's
// declared minimum is older, the toolchain used is newer.
#[allow(clippy::incompatible_msrv)]
pub fn lock_data_dir(dir: &Path) -> Result<DataDirLock, String> {
    fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let path = dir.join(LOCK_FILE);
    let mut file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            let who = if holder.is_empty() {
                "another process".to_owned()
            } else {
                format!("process {holder}")
            };
            return Err(format!(
                "data directory {} is in use by another editor-server ({who}); stop it or \
                 choose another --data-dir",
                dir.display()
            ));
        }
        Err(TryLockError::Error(e)) => {
            return Err(format!("cannot lock {}: {e}", path.display()));
        }
    }
    // Ours now: record who holds it, for the message above.
    let record = (|| {
        file.set_len(0)?;
        file.rewind()?;
        write!(file, "{}", std::process::id())?;
        file.flush()
    })();
    if let Err(e) = record {
        tracing::warn!("cannot write the process id into {}: {e}", path.display());
    }
    Ok(DataDirLock { _file: file })
}
