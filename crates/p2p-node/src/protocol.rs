//! The messages nodes exchange, carried by `netutil::Connection` (postcard in
//! length-prefixed frames, after netutil's handshake naming protocol "p2p-node" version 1).
//!
//! A link starts with `Hello` from the dialer and `Hello` (or `Refused`) from the acceptor;
//! everything after is `Bully` election traffic plus the file index (`FileList` up to the
//! leader, `IndexRequest`/`Index` for the console). Every size is bounded: frames by
//! [`PROTOCOL`]`.max_frame`, lists by [`MAX_FILES`], names by [`MAX_NAME_LEN`]; a message
//! breaking a bound closes the link.
//!
//! Room for the swarm issue: [`FileEntry`] identifies a file's content by its BLAKE3 hash
//! today; piece hashes and the info-hash come in protocol version 2 as new fields and new
//! message variants (postcard is not self-describing, so the version must be bumped).

use std::fmt;

use netutil::Protocol;
use serde::{Deserialize, Serialize};

use crate::election::{self, NodeId, Term};

/// The wire protocol: name, version and frame limit (4 MiB is ample for 10 000 entries).
pub const PROTOCOL: Protocol = Protocol {
    name: "p2p-node",
    version: 1,
    max_frame: 4 * 1024 * 1024,
};

/// Most files one node may report (and index).
pub const MAX_FILES: usize = 10_000;
/// Longest file name, in bytes.
pub const MAX_NAME_LEN: usize = 255;
/// Most nodes one `Index` may list.
pub const MAX_NODES: usize = 1024;

/// A BLAKE3 hash of a file's whole content.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ContentHash(pub [u8; 32]);

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentHash({self})")
    }
}

/// One shared file.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct FileEntry {
    /// The file's name inside its node's directory: one path component, never `..`.
    pub name: String,
    pub size: u64,
    pub hash: ContentHash,
}

/// One node's files, as the leader keeps them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeFiles {
    pub id: NodeId,
    pub files: Vec<FileEntry>,
}

/// Every message on a link between two nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// The first message each way: who I am, and the highest term I have seen.
    Hello { id: NodeId, term: Term },
    /// The acceptor's answer instead of `Hello`; the link closes after it. `duplicate` means
    /// "we are already linked", so the dialer must not presume the acceptor dead.
    Refused { reason: String, duplicate: bool },
    /// Election traffic.
    Bully(election::Msg),
    /// A node's full file list, sent to its leader after each election and on every change.
    FileList { files: Vec<FileEntry> },
    /// Asks the leader for the cluster index (the console's `files`).
    IndexRequest,
    /// The leader's cluster index. At most [`MAX_FILES`] entries in all so it fits a frame;
    /// `truncated` says some were left out.
    Index {
        leader: NodeId,
        term: Term,
        nodes: Vec<NodeFiles>,
        truncated: bool,
    },
}

/// True when `name` is safe to use as a file name inside a directory and as one line of
/// `Peer_files.log`: one non-empty path component, not `.` or `..`, no separators, no
/// control characters (a newline would forge log lines), at most [`MAX_NAME_LEN`] bytes.
pub fn is_safe_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name != "."
        && name != ".."
        && !name.contains(['/', '\\'])
        && !name.chars().any(char::is_control)
}

/// Checks a received file list against the bounds; the error says what was wrong.
pub fn validate_files(files: &[FileEntry]) -> Result<(), String> {
    if files.len() > MAX_FILES {
        return Err(format!(
            "{} files listed, at most {MAX_FILES} allowed",
            files.len()
        ));
    }
    if let Some(bad) = files.iter().find(|f| !is_safe_name(&f.name)) {
        return Err(format!("unsafe file name {:?}", bad.name));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn names_that_leave_the_directory_are_unsafe() {
        for bad in [
            "",
            ".",
            "..",
            "../x",
            "a/b",
            "/etc/passwd",
            "a\\b",
            "a\0b",
            "a\nNode 9 files:",
            "tab\there",
            "esc\u{1b}[2J",
        ] {
            assert!(!is_safe_name(bad), "{bad:?}");
        }
        for good in ["a.txt", "with space", "naïve ✓.bin", "..hidden", "x..y"] {
            assert!(is_safe_name(good), "{good:?}");
        }
        assert!(!is_safe_name(&"x".repeat(MAX_NAME_LEN + 1)));
    }

    #[test]
    fn file_lists_are_bounded() {
        let entry = FileEntry {
            name: "a".into(),
            size: 1,
            hash: ContentHash([0; 32]),
        };
        assert!(validate_files(&vec![entry.clone(); MAX_FILES]).is_ok());
        assert!(validate_files(&vec![entry; MAX_FILES + 1]).is_err());
    }

    #[test]
    fn a_full_file_list_fits_in_a_frame() {
        let entry = FileEntry {
            name: "x".repeat(MAX_NAME_LEN),
            size: u64::MAX,
            hash: ContentHash([0xff; 32]),
        };
        let msg = Message::FileList {
            files: vec![entry; MAX_FILES],
        };
        let bytes = postcard_len(&msg);
        assert!(bytes < PROTOCOL.max_frame, "{bytes}");
    }

    fn postcard_len(msg: &Message) -> usize {
        postcard::to_stdvec(msg).unwrap().len()
    }

    #[test]
    fn hashes_print_as_hex() {
        let mut h = [0u8; 32];
        h[0] = 0xab;
        h[31] = 0x01;
        let s = ContentHash(h).to_string();
        assert_eq!(s.len(), 64);
        assert!(s.starts_with("ab00") && s.ends_with("01"));
    }
}
