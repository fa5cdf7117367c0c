//! A small tmpfs mounted over a directory (root only), unmounted on drop: a disk that
//! fills up, for tests of what a program says when it cannot write.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A tmpfs of a given size mounted at a directory until dropped.
pub struct Tmpfs {
    at: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (`mount`'s syntax: `2m`) over `dir`, which must exist.
    pub fn mount(dir: &Path, size: &str) -> Tmpfs {
        crate::require_root("mounting a tmpfs");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .expect("mount runs");
        assert!(status.success(), "mount -t tmpfs over {}", dir.display());
        Tmpfs { at: dir.to_owned() }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a process of the test may still have a file open there.
        let _ = Command::new("umount").arg("-l").arg(&self.at).status();
    }
}
