//! The error type of every fallible netutil API.
//!
//! Each variant that concerns one connection names the peer, so a server that logs the error
//! says which client misbehaved, and the message says what was wrong with its input.

use std::fmt;
use std::io;
use std::net::SocketAddr;

/// Everything that can go wrong in framing, handshaking, binding and connecting.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The peer announced a frame longer than the configured limit. Nothing was allocated.
    #[error("{peer}: frame of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge {
        peer: SocketAddr,
        len: u64,
        max: usize,
    },
    /// The stream ended in the middle of a frame.
    #[error("{peer}: connection closed in the middle of a frame ({buffered} bytes of an incomplete frame)")]
    Truncated { peer: SocketAddr, buffered: usize },
    /// A frame was started and not completed within the connection's frame deadline.
    #[error(
        "{peer}: frame not completed within {timeout:?} ({buffered} bytes of it received); closing"
    )]
    FrameTimeout {
        peer: SocketAddr,
        timeout: std::time::Duration,
        buffered: usize,
    },
    /// The server's memory budget could not hold the frame this peer was sending.
    #[error("{peer}: server memory budget exhausted while receiving a frame ({buffered} bytes of it received); closing")]
    OverBudget { peer: SocketAddr, buffered: usize },
    /// A complete frame arrived but its payload is not a valid message.
    #[error("{peer}: malformed message: {source}")]
    Decode {
        peer: SocketAddr,
        #[source]
        source: postcard::Error,
    },
    /// A message could not be encoded (only possible for types serde cannot represent).
    #[error("{peer}: cannot encode message: {source}")]
    Encode {
        peer: SocketAddr,
        #[source]
        source: postcard::Error,
    },
    /// The socket failed.
    #[error("{peer}: {source}")]
    Io {
        peer: SocketAddr,
        #[source]
        source: io::Error,
    },
    /// The peer speaks another protocol, or another version of ours.
    #[error("{peer}: {mismatch}")]
    Handshake {
        peer: SocketAddr,
        mismatch: HandshakeMismatch,
    },
    /// The peer closed or stalled before completing the handshake.
    #[error("{peer}: no handshake: {reason}")]
    NoHandshake { peer: SocketAddr, reason: String },
    /// A host name did not resolve, or resolved to no address of the wanted family.
    #[error("cannot resolve {host}: {reason}")]
    Resolve { host: String, reason: String },
    /// Every address of a host was tried and none accepted a connection.
    #[error("cannot connect to {host} port {port}: {}", ConnectAttempts(attempts))]
    Connect {
        host: String,
        port: u16,
        attempts: Vec<(SocketAddr, String)>,
    },
    /// Binding a listening socket failed.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    /// An address given on the command line could not be parsed.
    #[error("invalid address {input:?}: expected an IP address, optionally with a port ([::1]:8080, 127.0.0.1:8080)")]
    BadAddress { input: String },
}

/// What differed between our handshake and the peer's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeMismatch {
    pub ours: (String, u32),
    pub theirs: (String, u32),
}

impl fmt::Display for HandshakeMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (our_name, our_version) = &self.ours;
        let (their_name, their_version) = &self.theirs;
        if our_name == their_name {
            write!(
                f,
                "peer speaks {their_name} protocol {their_version}, this is {our_version}"
            )
        } else {
            write!(
                f,
                "peer speaks {their_name} protocol {their_version}, this is {our_name} protocol {our_version}"
            )
        }
    }
}

struct ConnectAttempts<'a>(&'a [(SocketAddr, String)]);

impl fmt::Display for ConnectAttempts<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return write!(f, "no address was tried");
        }
        for (i, (addr, why)) in self.0.iter().enumerate() {
            if i > 0 {
                write!(f, "; ")?;
            }
            write!(f, "{addr}: {why}")?;
        }
        Ok(())
    }
}

impl NetError {
    /// True when the error means the peer went away (closed or reset), as opposed to
    /// misbehaving. Servers log the first quietly and the second as a warning.
    pub fn is_disconnect(&self) -> bool {
        match self {
            NetError::Io { source, .. } => matches!(
                source.kind(),
                io::ErrorKind::ConnectionReset
                    | io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::BrokenPipe
                    | io::ErrorKind::UnexpectedEof
            ),
            NetError::Truncated { .. } => true,
            _ => false,
        }
    }
}
