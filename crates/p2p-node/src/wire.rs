//! The wire: every message nodes exchange, and the types both halves of the crate share
//! (node ids, terms, content and piece hashes). It imports nothing from the crate, so
//! `cluster` and `swarm` both depend on it and never on each other for these. Messages
//! are carried by `netutil::Connection` (postcard in length-prefixed frames, after
//! netutil's handshake naming protocol "p2p-node" version 2).
//!
//! A link starts with `Hello` from the dialer and `Hello` (or `Refused`) from the acceptor;
//! everything after is `Bully` election traffic plus the file index (`FileList` up to the
//! leader, `IndexRequest`/`Index` for the console). Every size is bounded: frames by
//! [`PROTOCOL`]`.max_frame`, lists by [`MAX_FILES`], names by [`MAX_NAME_LEN`]; a message
//! breaking a bound closes the link.
//!
//! Version 2 adds swarm downloads. [`FileEntry::hash`] is the file's identity (BLAKE3 over
//! its piece hashes, see [`crate::swarm::pieces`]) and [`FileEntry::partial`] marks a node
//! that is still downloading the file. A data connection is a separate, on-demand connection to
//! the same listener whose first message is [`Message::Open`] instead of `Hello`; the
//! holder answers [`Message::Opened`] (piece hashes and, for a partial holder, which
//! pieces it has) or `Refused`, then serves [`Message::Request`]s. Piece data travels in
//! raw frames ([`PIECE_TAG`], piece index, bytes) so that a MiB of data is not copied
//! through the serializer on either side.

use std::fmt;

use netutil::Protocol;
use serde::{Deserialize, Serialize};

/// A node id, as configured (`--id`).
pub type NodeId = u32;
/// An election term. Only one node can ever lead a given term
/// (see [`crate::cluster::election`]).
pub type Term = u64;

/// Terms above this are refused as hostile: real clusters never get near it (a new term
/// per election), and it leaves room to compute terms above any accepted one without
/// overflow.
pub const MAX_TERM: Term = u64::MAX / 4;

/// The election's messages ([`crate::cluster::election`]), carried inside `Message::Bully`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ElectionMsg {
    /// "I am starting an election; are you alive?" Sent to lower ids only. `term` is the
    /// highest term the sender has seen, so a stale leader learns it must re-assert.
    Election { term: Term },
    /// The answer to `Election`: a lower id is alive and takes the election over.
    Alive { term: Term },
    /// "I lead `term`." Sent by a new leader to every node, and to each node that connects.
    Coordinator { term: Term },
    /// The leader's periodic liveness message.
    Heartbeat { term: Term },
    /// A follower's answer to a heartbeat, so the leader sees silent followers.
    HeartbeatAck { term: Term },
}

impl ElectionMsg {
    pub fn term(&self) -> Term {
        match *self {
            ElectionMsg::Election { term }
            | ElectionMsg::Alive { term }
            | ElectionMsg::Coordinator { term }
            | ElectionMsg::Heartbeat { term }
            | ElectionMsg::HeartbeatAck { term } => term,
        }
    }
}

/// A BLAKE3 hash of one piece.
pub type PieceHash = [u8; 32];

/// Most pieces a shared file may have: its piece hashes must fit in one frame (120 000 x 32
/// bytes = 3.7 MiB of the 4 MiB frame), so files up to 117 GiB are shared.
pub const MAX_PIECES: usize = 120_000;

/// The wire protocol: name, version and frame limit (4 MiB is ample for 10 000 entries).
pub const PROTOCOL: Protocol = Protocol {
    name: "p2p-node",
    version: 2,
    max_frame: 4 * 1024 * 1024,
};

/// Most files one node may report (and index).
pub const MAX_FILES: usize = 10_000;
/// Longest file name, in bytes.
pub const MAX_NAME_LEN: usize = 255;
/// Most nodes one `Index` may list.
pub const MAX_NODES: usize = 1024;

/// A file's identity: BLAKE3 over its size, piece size and piece hashes
/// ([`crate::swarm::pieces::identity`]).
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
    /// The content's identity (see [`crate::swarm::pieces::identity`]).
    pub hash: ContentHash,
    /// True while the node is still downloading it: it has some verified pieces.
    pub partial: bool,
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
    Hello {
        id: NodeId,
        term: Term,
    },
    /// The acceptor's answer instead of `Hello`; the link closes after it. `duplicate` means
    /// "we are already linked", so the dialer must not presume the acceptor dead.
    Refused {
        reason: String,
        duplicate: bool,
    },
    /// Election traffic.
    Bully(ElectionMsg),
    /// A node's full file list, sent to its leader after each election and on every change.
    FileList {
        files: Vec<FileEntry>,
    },
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
    /// The first message of a data connection: "send me pieces of the file with this
    /// identity". Answered by `Opened` or `Refused`.
    Open {
        hash: ContentHash,
    },
    /// The holder has the file: its size, piece size and piece hashes (the downloader
    /// checks them against the identity) and, from a partial holder, the pieces it has.
    Opened {
        size: u64,
        piece_size: u32,
        hashes: Vec<PieceHash>,
        have: Option<Vec<u8>>,
    },
    /// Asks for one piece; answered by a piece frame or `Missing`. Several may be in flight.
    Request {
        piece: u32,
    },
    /// A partial holder does not have that piece (yet).
    Missing {
        piece: u32,
    },
    /// Asks a partial holder which pieces it has now; answered by `Have`.
    HaveQuery,
    Have {
        have: Vec<u8>,
    },
}

/// First byte of a frame carrying piece data: `[PIECE_TAG][piece index, u32 LE][bytes]`.
/// No postcard-encoded `Message` starts with it (variant indexes are small varints).
pub const PIECE_TAG: u8 = 0xff;
/// Bytes before the piece data in a piece frame.
pub const PIECE_HEADER: usize = 5;

/// Parses a piece frame's header: the piece index, or None when `frame` is not one.
pub fn piece_frame_index(frame: &[u8]) -> Option<u32> {
    match frame {
        [PIECE_TAG, a, b, c, d, ..] => Some(u32::from_le_bytes([*a, *b, *c, *d])),
        _ => None,
    }
}

/// True when `name` is safe to use as a file name inside a directory and as one line of
/// `Peer_files.log`: one non-empty path component, not `.` or `..`, no separators, no
/// control characters (a newline would forge log lines) nor text-direction overrides and
/// line separators (`rtl\u{202e}txt.exe` would show as "rtlexe.txt"), see
/// [`netutil::names`]; at most [`MAX_NAME_LEN`] bytes.
pub fn is_safe_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name != "."
        && name != ".."
        && !name.contains(['/', '\\'])
        && netutil::names::forbidden_char(name).is_none()
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
            "rtl\u{202e}txt.exe",
            "line\u{2028}break",
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
            partial: false,
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
            partial: true,
        };
        let msg = Message::FileList {
            files: vec![entry; MAX_FILES],
        };
        let bytes = postcard_len(&msg);
        assert!(bytes < PROTOCOL.max_frame, "{bytes}");
    }

    #[test]
    fn all_piece_hashes_of_the_largest_file_fit_in_a_frame() {
        let msg = Message::Opened {
            size: u64::MAX,
            piece_size: u32::MAX,
            hashes: vec![[0xff; 32]; MAX_PIECES],
            have: Some(vec![0xff; MAX_PIECES.div_ceil(8)]),
        };
        let bytes = postcard_len(&msg);
        assert!(bytes < PROTOCOL.max_frame, "{bytes}");
    }

    #[test]
    fn piece_frames_are_not_messages() {
        let msg = Message::Have { have: vec![1] };
        let bytes = postcard::to_stdvec(&msg).unwrap();
        assert_ne!(bytes[0], PIECE_TAG);
        assert_eq!(piece_frame_index(&bytes), None);
        assert_eq!(piece_frame_index(&[PIECE_TAG, 7, 1, 0, 0, 42]), Some(263));
        assert_eq!(piece_frame_index(&[PIECE_TAG, 7]), None);
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
