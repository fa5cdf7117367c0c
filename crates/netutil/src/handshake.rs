//! The handshake: the first frame each side sends names its protocol and version.
//!
//! Both sides send their hello at once and then read the peer's, so neither waits for the
//! other. A peer of another program, or of another version of ours, is told apart before
//! any message is decoded, and both ends report the same clear mismatch
//! ("peer speaks editor protocol 2, this is 1") and close.

use std::time::Duration;

use crate::connection::{encode, Connection};
use crate::error::HandshakeMismatch;
use crate::transport::Transport;
use crate::NetError;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Marks a netutil hello frame, so a stray client of another kind is recognised as such.
const HELLO_MAGIC: [u8; 8] = *b"NETUTIL1";

/// Largest hello accepted. A real one is under 100 bytes; keeping the limit this low until
/// the peer has proved it speaks our protocol means a stranger's 4-byte header cannot make
/// us reserve the protocol's full frame size (megabytes) per connection.
pub const MAX_HELLO_FRAME: usize = 1024;

/// How long a peer may take to send its hello before we give up on it.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A program's wire protocol: its name, version and frame size limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Protocol {
    /// Short, unique per program, for example `"editor"`.
    pub name: &'static str,
    /// Bumped on every incompatible change.
    pub version: u32,
    /// Largest frame accepted or sent.
    pub max_frame: usize,
}

#[derive(Debug, Serialize, Deserialize)]
struct Hello {
    magic: [u8; 8],
    protocol: String,
    version: u32,
}

impl<Rx: DeserializeOwned, Tx: Serialize, S: Transport> Connection<Rx, Tx, S> {
    /// Wraps `stream` and exchanges hellos; fails unless the peer speaks exactly `protocol`.
    pub async fn establish(stream: S, protocol: &Protocol) -> Result<Self, NetError> {
        let mut conn = Connection::new(stream, protocol.max_frame);
        conn.handshake(protocol).await?;
        Ok(conn)
    }

    /// Exchanges hellos on an already wrapped connection.
    pub async fn handshake(&mut self, protocol: &Protocol) -> Result<(), NetError> {
        let peer = self.peer();
        let ours = Hello {
            magic: HELLO_MAGIC,
            protocol: protocol.name.to_owned(),
            version: protocol.version,
        };
        self.send_frame(encode(&ours, peer)?).await?;
        let full_limit = self.codec_mut().max_frame();
        self.codec_mut()
            .set_max_frame(full_limit.min(MAX_HELLO_FRAME));
        let received = tokio::time::timeout(HANDSHAKE_TIMEOUT, self.recv_frame()).await;
        self.codec_mut().set_max_frame(full_limit);
        let frame = match received {
            Err(_) => {
                return Err(NetError::NoHandshake {
                    peer,
                    reason: format!("nothing received within {HANDSHAKE_TIMEOUT:?}"),
                })
            }
            Ok(Ok(None)) => {
                return Err(NetError::NoHandshake {
                    peer,
                    reason: "connection closed before the handshake".into(),
                })
            }
            Ok(result) => result?,
        };
        let theirs = frame
            .as_deref()
            .and_then(|bytes| postcard::from_bytes::<Hello>(bytes).ok())
            .filter(|hello| hello.magic == HELLO_MAGIC)
            .ok_or_else(|| NetError::NoHandshake {
                peer,
                reason: format!(
                    "the first frame is not a handshake: the peer does not speak a {} protocol",
                    protocol.name
                ),
            })?;
        if theirs.protocol != protocol.name || theirs.version != protocol.version {
            return Err(NetError::Handshake {
                peer,
                mismatch: HandshakeMismatch {
                    ours: (protocol.name.to_owned(), protocol.version),
                    theirs: (printable(&theirs.protocol), theirs.version),
                },
            });
        }
        Ok(())
    }
}

/// Longest part of a peer's protocol name quoted in an error.
const MAX_SHOWN_NAME: usize = 64;

/// The peer's protocol name as it may appear in an error and so in a log line: control
/// characters escaped and the length bounded, so a hostile peer can neither forge log lines
/// nor make one megabytes long.
fn printable(name: &str) -> String {
    let mut shown: String = name
        .chars()
        .take(MAX_SHOWN_NAME)
        .flat_map(char::escape_debug)
        .collect();
    if name.chars().nth(MAX_SHOWN_NAME).is_some() {
        shown.push_str("...");
    }
    shown
}
