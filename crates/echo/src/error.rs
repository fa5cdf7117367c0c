//! [`EchoError`]: everything the echo server and client can fail with, one line each.
//!
//! The client prints exactly one of these on stderr before exiting non-zero, so each
//! message says what happened and to whom, without needing a backtrace.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

/// The typed error of the echo library.
#[derive(Debug, thiserror::Error)]
pub enum EchoError {
    /// Resolving, connecting or binding failed (the message lists every address tried).
    #[error(transparent)]
    Net(#[from] netutil::NetError),
    /// The server closed the connection before echoing everything we sent.
    #[error("server {peer} closed the connection after echoing {echoed} of {sent} bytes")]
    ServerClosed {
        peer: SocketAddr,
        echoed: u64,
        sent: u64,
    },
    /// No echo arrived in time.
    #[error("no echo from {peer} within {waited:?} ({echoed} of {sent} bytes echoed)")]
    Timeout {
        peer: SocketAddr,
        waited: Duration,
        echoed: u64,
        sent: u64,
    },
    /// The echo differed from what was sent (not an echo server, or corruption).
    #[error("{peer} answered with different bytes than were sent (at byte {offset})")]
    Mismatch { peer: SocketAddr, offset: u64 },
    /// A message too large for the transport (a UDP datagram holds at most 65507 bytes).
    #[error("a message of {len} bytes is larger than {what} can carry ({max} bytes)")]
    TooLarge {
        len: usize,
        max: usize,
        what: &'static str,
    },
    /// Every probe of a ping run was lost.
    #[error("no echo received from {peer}: {sent} probes sent, all lost")]
    AllLost { peer: SocketAddr, sent: u64 },
    /// Every connection of a bench run failed before sending a message.
    #[error("benchmark failed: {0}")]
    Bench(String),
    /// A socket operation failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
}

impl EchoError {
    /// Wraps an I/O error with what we were doing.
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        EchoError::Io {
            context: context.into(),
            source,
        }
    }

    /// A socket error on the link to the server: "server closed" when the peer went away.
    pub fn closed_or_io(peer: SocketAddr, e: io::Error, echoed: u64, sent: u64) -> Self {
        if is_disconnect(&e) {
            EchoError::ServerClosed { peer, echoed, sent }
        } else {
            EchoError::io(format!("connection to {peer}"), e)
        }
    }
}

/// True when the error means the peer went away (closed or reset) rather than misbehaving.
pub fn is_disconnect(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof
    )
}
