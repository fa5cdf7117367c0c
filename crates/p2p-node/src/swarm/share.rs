//! This node's shared directory: the files it offers, each cut into hashed pieces.
//!
//! [`LocalIndex`] scans `--dir` (regular files directly inside it; a symlink counts only
//! when it resolves to a regular file inside the directory; downloads in progress,
//! `NAME.part` and its record, are not files of their own) and hashes each file's pieces
//! with BLAKE3 ([`crate::swarm::pieces`]); the file's identity is the hash over its piece hashes.
//! Piece hashes are cached by (size, mtime), so an unchanged file is read once; a file
//! modified within the last second is not trusted to the cache (a second write in the same
//! mtime tick would go unnoticed), so it is hashed again on the next scan. The list goes to
//! the leader's [`crate::cluster::index::ClusterIndex`]; the pieces to [`crate::swarm::serve`].

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::cluster::index::TERM_FILE;
use crate::swarm::pieces::{hash_file, is_download_artifact, FilePieces};
use crate::wire::{is_safe_name, ContentHash, FileEntry, MAX_FILES};

#[derive(Debug, Clone)]
struct Cached {
    size: u64,
    mtime: SystemTime,
    hash: ContentHash,
    pieces: Arc<FilePieces>,
    /// False when the file was modified so recently that a later write could keep its mtime.
    trusted: bool,
}

/// This node's shared directory and the hash cache. Scanning does blocking file I/O: run it
/// on a blocking thread (`spawn_blocking`).
#[derive(Debug)]
pub struct LocalIndex {
    dir: PathBuf,
    cache: HashMap<String, Cached>,
    /// Files hashed by the last scan (for tests and logs: proves the cache works).
    pub last_hashed: usize,
}

impl LocalIndex {
    pub fn new(dir: PathBuf) -> Self {
        LocalIndex {
            dir,
            cache: HashMap::new(),
            last_hashed: 0,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Lists the shared files, sorted by name, at most [`MAX_FILES`]. Files that vanish or
    /// cannot be read mid-scan are skipped (the next scan sees them again).
    pub fn scan(&mut self) -> io::Result<Vec<FileEntry>> {
        let started = SystemTime::now();
        let root = fs::canonicalize(&self.dir)?;
        let mut found: Vec<(String, PathBuf, fs::Metadata)> = Vec::new();
        for entry in fs::read_dir(&root)? {
            let Ok(entry) = entry else { continue };
            let Ok(name) = entry.file_name().into_string() else {
                tracing::debug!("skipping a file whose name is not UTF-8");
                continue;
            };
            if !is_safe_name(&name) || is_term_file(&name) || is_download_artifact(&root, &name) {
                continue;
            }
            if let Some(meta) = shareable(&root, &entry.path()) {
                found.push((name, entry.path(), meta));
            }
        }
        found.sort_by(|a, b| a.0.cmp(&b.0));
        if found.len() > MAX_FILES {
            tracing::warn!(
                "{} has {} files; sharing the first {MAX_FILES} by name",
                self.dir.display(),
                found.len()
            );
            found.truncate(MAX_FILES);
        }
        let mut files = Vec::with_capacity(found.len());
        let mut cache = HashMap::with_capacity(found.len());
        self.last_hashed = 0;
        for (name, path, meta) in found {
            let size = meta.len();
            let mtime = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            let hit = self
                .cache
                .remove(&name)
                .filter(|c| c.trusted && c.size == size && c.mtime == mtime);
            let cached = match hit {
                Some(c) => c,
                None => {
                    let pieces = match hash_file(&path) {
                        Ok(p) if p.size == size => p,
                        Ok(_) => continue,
                        Err(e) => {
                            tracing::debug!("cannot hash {name:?}: {e}");
                            continue;
                        }
                    };
                    self.last_hashed += 1;
                    let age = started.duration_since(mtime).unwrap_or(Duration::ZERO);
                    Cached {
                        size,
                        mtime,
                        hash: pieces.identity(),
                        pieces: Arc::new(pieces),
                        trusted: age > Duration::from_secs(1),
                    }
                }
            };
            files.push(FileEntry {
                name: name.clone(),
                size: cached.size,
                hash: cached.hash,
                partial: false,
            });
            cache.insert(name, cached);
        }
        self.cache = cache;
        Ok(files)
    }

    /// The piece hashes of a file listed by the last scan.
    pub fn pieces(&self, name: &str) -> Option<Arc<FilePieces>> {
        self.cache.get(name).map(|c| c.pieces.clone())
    }
}

/// The metadata of `path` if it is a regular file inside `root` (symlinks resolved, and
/// refused when they point outside `root`).
fn shareable(root: &Path, path: &Path) -> Option<fs::Metadata> {
    let meta = fs::symlink_metadata(path).ok()?;
    if meta.file_type().is_file() {
        return Some(meta);
    }
    if !meta.file_type().is_symlink() {
        return None;
    }
    let target = fs::canonicalize(path).ok()?;
    if !target.starts_with(root) {
        return None;
    }
    let meta = fs::metadata(&target).ok()?;
    meta.is_file().then_some(meta)
}

/// The node's term record and the temp files it is written through
/// (`netutil::durable::write_atomic` names them `.NAME.PID.N.tmp`): never shared, even when
/// a scan catches one of the temp files before its rename.
fn is_term_file(name: &str) -> bool {
    name.starts_with(TERM_FILE)
        || name
            .strip_prefix('.')
            .is_some_and(|n| n.starts_with(TERM_FILE))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn scan_lists_regular_files_with_size_and_hash() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("b.txt"), b"hello").unwrap();
        fs::write(dir.path().join("a b ü.bin"), b"").unwrap();
        fs::create_dir(dir.path().join("sub")).unwrap();
        fs::write(dir.path().join("sub").join("hidden"), b"x").unwrap();
        let mut index = LocalIndex::new(dir.path().to_owned());
        let files = index.scan().unwrap();
        let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, vec!["a b ü.bin", "b.txt"]);
        assert_eq!(files[1].size, 5);
        let pieces = index.pieces("b.txt").unwrap();
        assert_eq!(pieces.hashes, vec![*blake3::hash(b"hello").as_bytes()]);
        assert_eq!(files[1].hash, pieces.identity());
        let record = crate::swarm::pieces::Record {
            identity: crate::wire::ContentHash([3; 32]),
            size: 7,
            piece_size: crate::swarm::pieces::PIECE_SIZE,
            have: crate::swarm::pieces::Bitfield::new(1),
        };
        fs::write(dir.path().join("c.part"), b"partial").unwrap();
        fs::write(dir.path().join("c.part.pieces"), record.encode()).unwrap();
        assert_eq!(
            index.scan().unwrap().len(),
            2,
            "downloads in progress are not listed"
        );
        // Nor is the term record, or a temp file of it caught before its rename.
        fs::write(dir.path().join(TERM_FILE), b"3\n").unwrap();
        fs::write(dir.path().join(format!(".{TERM_FILE}.4242.0.tmp")), b"6\n").unwrap();
        assert_eq!(index.scan().unwrap().len(), 2);
        // A user's own file named like one is.
        fs::remove_file(dir.path().join("c.part.pieces")).unwrap();
        let names: Vec<String> = index.scan().unwrap().into_iter().map(|f| f.name).collect();
        assert_eq!(names, ["a b ü.bin", "b.txt", "c.part"]);
    }

    #[test]
    fn symlinks_leaving_the_directory_are_ignored() {
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("secret"), b"s").unwrap();
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("real"), b"r").unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), dir.path().join("out")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("real"), dir.path().join("in")).unwrap();
        std::os::unix::fs::symlink("/nonexistent", dir.path().join("dangling")).unwrap();
        let files = LocalIndex::new(dir.path().to_owned()).scan().unwrap();
        let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, vec!["in", "real"]);
    }

    #[test]
    fn unchanged_old_files_are_not_hashed_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        fs::write(&path, b"one").unwrap();
        let old = SystemTime::now() - Duration::from_secs(60);
        fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(old)
            .unwrap();
        let mut index = LocalIndex::new(dir.path().to_owned());
        index.scan().unwrap();
        assert_eq!(index.last_hashed, 1);
        index.scan().unwrap();
        assert_eq!(index.last_hashed, 0);
        fs::write(&path, b"two!").unwrap();
        let files = index.scan().unwrap();
        assert_eq!(index.last_hashed, 1);
        assert_eq!(files[0].size, 4);
        // Freshly modified: hashed again until its mtime is safely in the past.
        index.scan().unwrap();
        assert_eq!(index.last_hashed, 1);
    }
}
