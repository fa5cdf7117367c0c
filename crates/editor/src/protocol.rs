//! The editor's wire protocol: the messages a client and the server exchange.
//!
//! Carried by netutil (4-byte length-prefixed postcard frames, handshake naming protocol
//! `editor` version 1). A session is:
//!
//! 1. client → `Join { document, name, key, known_revision, token }`
//! 2. server → `Access` (what the token allows: read-only or not, the display name used),
//!    then `Snapshot` (the whole text) or, when the client said which revision it has
//!    and the server still holds every change since, `Catchup` (just those changes).
//! 3. then, in any order: client → `Change` / `Presence`; server → `Ack` (to the author),
//!    `Remote` (to everyone else), `Presence`, `Left`, and `Error` just before it closes.
//!
//! Identity: `key` is a random secret chosen by the client once per run and reused on
//! reconnect; the server derives the public participant id from it ([`author_id`]) and
//! never sends the key to anyone. The public id breaks ties between concurrent inserts and
//! lets a reconnecting client recognise its own committed change in a catch-up.

use serde::{Deserialize, Serialize};

use crate::ot::TextOperation;
use crate::presence::{Participant, Selection};

/// Protocol name, version and frame limit for netutil's handshake and framing.
pub const PROTOCOL: netutil::Protocol = netutil::Protocol {
    name: "editor",
    version: 2,
    max_frame: MAX_FRAME,
};

/// Largest frame either side sends or accepts.
pub const MAX_FRAME: usize = 8 * 1024 * 1024;

/// Largest document, in UTF-8 bytes: a snapshot of it must fit in one frame.
pub const MAX_DOCUMENT_BYTES: usize = 6 * 1024 * 1024;

/// Longest display name, in characters.
pub const MAX_NAME_CHARS: usize = 64;

/// What a client sends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientMsg {
    /// First message of every connection.
    Join {
        document: String,
        name: String,
        /// The client's secret, random, reused across its reconnects.
        key: u64,
        /// The document incarnation and revision the client already has (None: send me
        /// a snapshot).
        known_revision: Option<Known>,
        /// An access token minted by `editor-server token` (needed from other machines,
        /// or from anywhere with `--require-token`); checked before the document is loaded.
        token: Option<String>,
    },
    /// An edit made on revision `base_revision`. `seq` counts the client's changes (per
    /// key, strictly increasing); the server applies each `(key, seq)` at most once.
    Change {
        base_revision: u64,
        seq: u64,
        op: TextOperation,
    },
    /// The client's selection in the text of revision `base_revision` (only sent when the
    /// client has no unacknowledged change, so the server can place it exactly).
    Presence {
        base_revision: u64,
        selection: Option<Selection>,
    },
}

/// What a reconnecting client already has. `epoch` identifies one incarnation of a
/// document (a new one starts when its files are replaced or created afresh), so revision
/// numbers from a different incarnation are never mistaken for this one's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Known {
    pub epoch: u64,
    pub revision: u64,
}

/// One committed change, as delivered to clients.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteChange {
    /// The revision this change created (the previous one plus one).
    pub revision: u64,
    /// Public id of its author.
    pub author: u64,
    /// The author's sequence number of the change.
    pub seq: u64,
    pub op: TextOperation,
}

/// What the server sends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServerMsg {
    /// The whole document at `revision`; `you` is the client's public id.
    Snapshot {
        you: u64,
        epoch: u64,
        revision: u64,
        text: String,
        participants: Vec<Participant>,
    },
    /// Every change after the client's `known_revision`, in order; participants are at
    /// the revision of the last change (or `known_revision` when there are none).
    Catchup {
        you: u64,
        epoch: u64,
        changes: Vec<RemoteChange>,
        participants: Vec<Participant>,
    },
    /// The client's change `seq` was committed (durably) as `revision`.
    Ack { revision: u64, seq: u64 },
    /// Someone else's committed change.
    Remote(RemoteChange),
    /// A participant joined or moved; the selection is at the client's current revision.
    Presence(Participant),
    /// A participant left.
    Left { id: u64 },
    /// The request was refused; the server closes the connection after sending it, except
    /// for `ReadOnly` (a change from a read-only participant is dropped, the session goes on).
    Error { code: ErrorCode, reason: String },
    /// Sent once after a `Join` is accepted, before the snapshot or catch-up: whether this
    /// participant may change the document, and the display name the others see (a
    /// token's label overrides the name the client asked for).
    Access { read_only: bool, name: String },
}

/// Machine-readable class of an [`ServerMsg::Error`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorCode {
    /// The document name is not `[A-Za-z0-9._-]{1,64}` or starts with a dot.
    BadName,
    /// The display name is empty, too long or contains control characters.
    BadDisplayName,
    /// The first message was not `Join`, or `Join` came twice.
    NotJoined,
    /// The frame was oversized or did not decode.
    Malformed,
    /// The change's base revision is newer than the document's.
    FutureRevision,
    /// The change's base revision is older than the history the server keeps, or too far
    /// behind for a change that large; catch up and resend.
    TooOld,
    /// The change does not fit the document (wrong length, past the end).
    BadChange,
    /// The change would make the document larger than the limit.
    TooLarge,
    /// The client did not read its messages fast enough; reconnect to catch up.
    TooSlow,
    /// Another connection joined with the same key.
    Replaced,
    /// The document cannot be opened or written (I/O, invalid UTF-8).
    Unavailable,
    /// The server is full or shutting down.
    Busy,
    /// A second change was sent before the first was acknowledged.
    InFlight,
    /// This connection needs an access token and sent none.
    TokenRequired,
    /// The token is not one this server signed (forged, damaged, or from another server).
    BadToken,
    /// The token has expired.
    TokenExpired,
    /// The token was revoked on the server.
    TokenRevoked,
    /// The token does not cover this document.
    WrongDocument,
    /// A read-only participant sent a change; it was dropped and the session goes on.
    ReadOnly,
}

/// Checks a document name: 1 to 64 of `[A-Za-z0-9._-]`, not starting with a dot, so a name
/// is never a path (`../x`, `a/b`) nor a hidden file.
pub fn validate_document_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 64 {
        return Err(format!(
            "invalid document name {name:?}: must be 1 to 64 characters"
        ));
    }
    if name.starts_with('.') {
        return Err(format!(
            "invalid document name {name:?}: must not start with a dot"
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "invalid document name {name:?}: {bad:?} is not allowed (only A-Z a-z 0-9 . _ -)"
        ));
    }
    Ok(())
}

/// Checks a display name: 1 to 64 characters, none that would disguise it or forge a line
/// on another screen (control characters, bidirectional overrides, line separators).
pub fn validate_display_name(name: &str) -> Result<(), String> {
    let chars = name.chars().count();
    if chars == 0 || chars > MAX_NAME_CHARS {
        return Err(format!(
            "invalid display name: must be 1 to {MAX_NAME_CHARS} characters"
        ));
    }
    if let Some(bad) = netutil::names::forbidden_char(name) {
        return Err(format!(
            "invalid display name: {bad:?} is not allowed (control and text-direction characters are refused)"
        ));
    }
    Ok(())
}

/// The public participant id for a client's secret key (one-way, so ids seen on the wire
/// do not reveal keys).
pub fn author_id(key: u64) -> u64 {
    let hash = blake3::hash(&key.to_le_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&hash.as_bytes()[..8]);
    u64::from_le_bytes(first)
}

/// A fresh random key for a client run.
pub fn random_key() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.write_u32(std::process::id());
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for good in ["notes", "a.b-c_d", "README.md", "x", &"a".repeat(64)] {
            assert!(validate_document_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "../x",
            ".hidden",
            "a/b",
            "a b",
            "é",
            &"a".repeat(65),
            "a\\b",
            "..",
        ] {
            assert!(validate_document_name(bad).is_err(), "{bad}");
        }
        assert!(validate_display_name("alice").is_ok());
        assert!(validate_display_name("").is_err());
        assert!(validate_display_name("a\nb").is_err());
        assert!(validate_display_name("bob\u{202e}evil").is_err());
        assert!(validate_display_name("a\u{2028}b").is_err());
    }

    #[test]
    fn messages_round_trip_through_postcard() {
        let op = TextOperation::splice(3, 1, 1, "é").unwrap();
        let msg = ClientMsg::Change {
            base_revision: 7,
            seq: 2,
            op,
        };
        let bytes = postcard::to_stdvec(&msg).unwrap();
        assert_eq!(postcard::from_bytes::<ClientMsg>(&bytes).unwrap(), msg);
        assert_ne!(author_id(1), author_id(2));
    }
}
