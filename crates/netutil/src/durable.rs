//! Durable file replacement: what a server writes either survives a crash whole or not at all.
//!
//! [`write_atomic`] writes a hidden temp file beside the target, fsyncs it, renames it over
//! the target and fsyncs the directory (the rename is durable only once the directory entry
//! is). The temp name carries the process id and a per-process counter, so neither processes
//! sharing a path (nodes writing one log) nor threads of one process writing the same path
//! ever write the same temp file, and a dot prefix, so programs that serve a directory's
//! files never list it. On failure the temp file is removed.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Makes every temp name this process uses unique, whichever thread writes.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Atomically and durably replaces `path` with what `fill` writes.
pub fn write_atomic_with(
    path: &Path,
    fill: impl FnOnce(&mut BufWriter<&mut File>) -> io::Result<()>,
) -> io::Result<()> {
    let dir = parent_dir(path);
    let temp = temp_path(path, &dir)?;
    let result = (|| {
        let mut file = File::create(&temp)?;
        let mut out = BufWriter::with_capacity(64 * 1024, &mut file);
        fill(&mut out)?;
        out.flush()?;
        drop(out);
        file.sync_all()?;
        fs::rename(&temp, path)?;
        sync_dir(&dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}

/// Atomically and durably replaces `path` with `contents`.
pub fn write_atomic(path: &Path, contents: &[u8]) -> io::Result<()> {
    write_atomic_with(path, |out| out.write_all(contents))
}

/// Makes the directory's entries (created, renamed, removed files) durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn temp_path(path: &Path, dir: &Path) -> io::Result<PathBuf> {
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} has no file name", path.display()),
        )
    })?;
    let mut temp = std::ffi::OsString::from(".");
    temp.push(name);
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    temp.push(format!(".{}.{n}.tmp", std::process::id()));
    Ok(dir.join(temp))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch_dir(tag: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("netutil-durable-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn replaces_the_file_and_leaves_no_temp_file() {
        let dir = scratch_dir("replace");
        let path = dir.join("doc.txt");
        write_atomic(&path, b"first").unwrap();
        write_atomic(&path, b"second").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"second");
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("doc.txt")]);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn concurrent_writers_in_one_process_each_replace_the_file_whole() {
        let dir = scratch_dir("concurrent");
        let path = dir.join("doc.txt");
        let contents: Vec<Vec<u8>> = (0..4u8).map(|i| vec![b'a' + i; 64 * 1024]).collect();
        std::thread::scope(|scope| {
            for content in &contents {
                let path = &path;
                scope.spawn(move || {
                    for _ in 0..10 {
                        write_atomic(path, content).unwrap();
                    }
                });
            }
        });
        let on_disk = fs::read(&path).unwrap();
        assert!(contents.contains(&on_disk), "the file mixes several writes");
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_failed_fill_keeps_the_old_file_and_removes_the_temp_file() {
        let dir = scratch_dir("fail");
        let path = dir.join("doc.txt");
        write_atomic(&path, b"kept").unwrap();
        let err = write_atomic_with(&path, |out| {
            out.write_all(b"partial")?;
            Err(io::Error::other("disk full"))
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "disk full");
        assert_eq!(fs::read(&path).unwrap(), b"kept");
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
        fs::remove_dir_all(dir).unwrap();
    }
}
