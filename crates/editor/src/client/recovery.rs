//! Recovery files: what a client could not get the server to save, kept on disk instead of
//! thrown away when the user quits anyway (full-screen) or line mode gives up waiting.
//!
//! A file holds the local text and the unacknowledged changes with the key and sequence
//! numbers they were sent under ([`Unsaved`]), as JSON, in the user's state directory
//! (`$XDG_STATE_HOME/editor-client/`, else `~/.local/state/editor-client/`), named by
//! server and document: `localhost_8080_notes.json` (`.2.json`, `.3.json`... when an older
//! one is still there). The next `editor-client` for that server and document mentions it;
//! `editor-client --recover FILE` resumes from it: joins, catches up from the saved revision
//! and resends only what the server never committed (a change that did get committed is
//! recognised by its author and sequence number), then deletes the file.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::sync::{SyncClient, Unsaved};

/// Format version written in every file.
const FORMAT: u32 = 1;

/// The contents of a recovery file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recovery {
    pub format: u32,
    /// `host:port` the changes were meant for.
    pub server: String,
    pub document: String,
    /// How many changes the server had not acknowledged.
    pub changes: usize,
    pub unsaved: Unsaved,
}

/// Why a recovery file could not be written or used.
#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a recovery file: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("nothing to save: no document was loaded")]
    NothingLoaded,
}

/// Where recovery files live: `$XDG_STATE_HOME/editor-client`, else
/// `$HOME/.local/state/editor-client`, else the system's temp directory.
pub fn state_dir() -> PathBuf {
    let non_empty = |var: &str| std::env::var_os(var).filter(|v| !v.is_empty());
    if let Some(state) = non_empty("XDG_STATE_HOME") {
        return PathBuf::from(state).join("editor-client");
    }
    if let Some(home) = non_empty("HOME") {
        return PathBuf::from(home).join(".local/state/editor-client");
    }
    std::env::temp_dir().join("editor-client")
}

/// The file name prefix for a server and document: `host_port_document`, with anything but
/// `[A-Za-z0-9.-]` in the host (an IPv6 address's colons) replaced by `_`.
fn stem(host: &str, port: u16, document: &str) -> String {
    let host: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{host}_{port}_{document}")
}

/// Recovery files left for this server and document, oldest name first.
pub fn existing(host: &str, port: u16, document: &str) -> Vec<PathBuf> {
    let stem = stem(host, port, document);
    let Ok(entries) = std::fs::read_dir(state_dir()) else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n.strip_prefix(&stem)
                    .and_then(|rest| rest.strip_suffix(".json"))
                    .is_some_and(|middle| {
                        middle.is_empty()
                            || middle
                                .strip_prefix('.')
                                .is_some_and(|n| n.chars().all(|c| c.is_ascii_digit()))
                    })
            })
        })
        .collect();
    found.sort();
    found
}

/// Saves what `sync` has not had acknowledged to a new file in [`state_dir`]; returns its
/// path and the number of changes in it. Durable (fsynced) and readable by the user only.
pub fn save(
    host: &str,
    port: u16,
    document: &str,
    sync: &SyncClient,
) -> Result<(PathBuf, usize), RecoveryError> {
    let unsaved = sync.unsaved().ok_or(RecoveryError::NothingLoaded)?;
    let changes = sync.pending_changes();
    let recovery = Recovery {
        format: FORMAT,
        server: format!("{host}:{port}"),
        document: document.to_owned(),
        changes,
        unsaved,
    };
    let dir = state_dir();
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| RecoveryError::Io { path, source }
    };
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let stem = stem(host, port, document);
    let path = std::iter::once(dir.join(format!("{stem}.json")))
        .chain((2..).map(|n| dir.join(format!("{stem}.{n}.json"))))
        .find(|p| !p.exists())
        .unwrap_or_else(|| dir.join(format!("{stem}.json")));
    let json = serde_json::to_vec_pretty(&recovery).map_err(|e| RecoveryError::Invalid {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    netutil::durable::write_atomic_with(&path, |out| {
        use std::io::Write;
        use std::os::unix::fs::PermissionsExt;
        // The key in the file lets its holder write as us: keep it private.
        out.get_ref()
            .set_permissions(std::fs::Permissions::from_mode(0o600))?;
        out.write_all(&json)
    })
    .map_err(io(&path))?;
    Ok((path, changes))
}

/// Reads a recovery file.
pub fn load(path: &Path) -> Result<Recovery, RecoveryError> {
    let bytes = std::fs::read(path).map_err(|source| RecoveryError::Io {
        path: path.to_owned(),
        source,
    })?;
    let invalid = |reason: String| RecoveryError::Invalid {
        path: path.to_owned(),
        reason,
    };
    let recovery: Recovery = serde_json::from_slice(&bytes).map_err(|e| invalid(e.to_string()))?;
    if recovery.format != FORMAT {
        return Err(invalid(format!(
            "format {}, expected {FORMAT}",
            recovery.format
        )));
    }
    Ok(recovery)
}

/// A client resumed from `recovery` (see [`SyncClient::resume`]).
pub fn resume(path: &Path, recovery: &Recovery) -> Result<SyncClient, RecoveryError> {
    SyncClient::resume(recovery.unsaved.clone()).map_err(|e| RecoveryError::Invalid {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ServerMsg;

    #[test]
    fn names_are_made_of_server_and_document() {
        assert_eq!(stem("::1", 8080, "notes"), "__1_8080_notes");
        assert_eq!(stem("example.org", 9000, "a.b"), "example.org_9000_a.b");
    }

    fn joined_client() -> SyncClient {
        let mut sync = SyncClient::new(7);
        sync.join("notes", "alice");
        let snapshot = ServerMsg::Snapshot {
            you: 1,
            epoch: 3,
            revision: 5,
            text: "abc".to_owned(),
            participants: Vec::new(),
        };
        sync.receive(snapshot).unwrap();
        sync
    }

    #[test]
    fn a_resumed_client_has_the_text_and_resends_the_same_change() {
        let mut sync = joined_client();
        let first = sync.insert(3, "d").unwrap().unwrap();
        assert_eq!(sync.insert(4, "e").unwrap(), None);
        assert_eq!(sync.pending_changes(), 2);
        let saved = sync.unsaved().unwrap();
        let json = serde_json::to_string(&saved).unwrap();
        let mut resumed = SyncClient::resume(serde_json::from_str(&json).unwrap()).unwrap();
        assert_eq!(resumed.text().to_string(), "abcde");
        assert_eq!(resumed.pending_changes(), 2);
        resumed.join("notes", "alice");
        let catchup = ServerMsg::Catchup {
            you: 1,
            epoch: 3,
            changes: Vec::new(),
            participants: Vec::new(),
        };
        let events = resumed.receive(catchup).unwrap();
        assert!(
            events.contains(&crate::client::sync::Event::Send(first)),
            "{events:?}"
        );
    }

    #[test]
    fn saved_changes_that_do_not_lead_to_the_saved_text_are_refused() {
        let mut sync = joined_client();
        sync.insert(0, "x").unwrap();
        let mut saved = sync.unsaved().unwrap();
        saved.text.push('!');
        assert!(SyncClient::resume(saved).is_err());
    }
}
