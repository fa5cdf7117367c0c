//! One port, two kinds of client: the first byte a client sends tells whether it speaks
//! the editor protocol or HTTP (a browser: the page, the bundle, the WebSocket).
//!
//! The editor protocol starts with netutil's hello frame, whose 4-byte big-endian length
//! is far below 16 MiB, so its first byte is 0; every HTTP request starts with a method
//! name in ASCII letters. Both kinds of client speak first, so peeking never waits on us.
//! This is the single place that decides; with TLS the same choice is made after the TLS
//! handshake (ALPN `http/1.1` or the first byte), so https and wss work the same way.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::stream::Stream;
use tokio_util::sync::CancellationToken;

use super::registry::Registry;
use super::session::{self, Admission};
use super::web;

/// How long a new connection may stay silent before it is closed.
const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(10);

/// Which protocol a connection speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Editor,
    Http,
}

/// Classifies a connection by its first byte.
pub fn classify(first: u8) -> Kind {
    if first == 0 {
        Kind::Editor
    } else {
        Kind::Http
    }
}

/// Serves one accepted connection with the protocol it speaks.
pub async fn dispatch(
    stream: Stream,
    addr: SocketAddr,
    registry: Arc<Registry>,
    token: CancellationToken,
    admission: Admission,
) {
    // After TLS, the negotiated ALPN says it: browsers ask for `http/1.1`, editor clients
    // for `editor` (a TLS client that names neither is taken for an editor client).
    if let Stream::ServerTls(tls) = &stream {
        let http = tls.get_ref().1.alpn_protocol() == Some(crate::tls::ALPN_HTTP1);
        return match http {
            true => web::serve(stream, addr, registry, token, admission).await,
            false => session::run(stream, addr, registry, token, admission).await,
        };
    }
    let mut first = [0u8; 1];
    let peeked = tokio::select! {
        _ = token.cancelled() => return,
        peeked = tokio::time::timeout(FIRST_BYTE_TIMEOUT, stream.tcp().peek(&mut first)) => peeked,
    };
    match peeked {
        Ok(Ok(0)) => tracing::debug!("{addr}: closed before sending anything"),
        Ok(Ok(_)) => match classify(first[0]) {
            Kind::Editor => session::run(stream, addr, registry, token, admission).await,
            Kind::Http => web::serve(stream, addr, registry, token, admission).await,
        },
        Ok(Err(e)) => tracing::info!("{addr}: {e}"),
        Err(_) => tracing::info!("{addr}: sent nothing within {FIRST_BYTE_TIMEOUT:?}, closed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_frames_and_http_methods_differ_in_their_first_byte() {
        let hello_len = (crate::protocol::PROTOCOL.name.len() as u32 + 16).to_be_bytes();
        assert_eq!(classify(hello_len[0]), Kind::Editor);
        for method in ["GET", "HEAD", "POST", "OPTIONS", "PRI"] {
            assert_eq!(classify(method.as_bytes()[0]), Kind::Http);
        }
    }
}
