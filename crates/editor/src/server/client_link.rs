//! [`ClientLink`]: what a session talks through, so one session loop serves both kinds of
//! client: the binary protocol's netutil [`Connection`] and a browser's WebSocket carrying
//! the same messages as JSON ([`super::web::wire`]).
//!
//! An enum rather than a trait: two cases, both known here, and no boxed futures on the
//! per-message path.

use futures_util::{SinkExt, StreamExt};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;

use super::web::metered::Metered;
use super::web::wire::{self, WebClientMsg};
use crate::protocol::{ClientMsg, ServerMsg};
use crate::stream::Stream;
use netutil::Connection;

/// The browser's WebSocket, over the upgraded HTTP connection (its messages timed and
/// charged to the memory budget by [`Metered`]).
pub type WebSocket = WebSocketStream<Metered<TokioIo<Upgraded>>>;

/// One client's connection, whichever encoding it speaks. One per connection task, so the
/// variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
pub enum ClientLink {
    Binary(Connection<ClientMsg, ServerMsg, Stream>),
    Web(WebSocket),
}

/// Why a message could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct LinkError {
    /// The peer went away (as opposed to sending something malformed).
    pub disconnect: bool,
    pub message: String,
}

impl LinkError {
    fn malformed(message: String) -> Self {
        LinkError {
            disconnect: false,
            message,
        }
    }
}

impl From<netutil::NetError> for LinkError {
    fn from(e: netutil::NetError) -> Self {
        LinkError {
            disconnect: e.is_disconnect(),
            message: e.to_string(),
        }
    }
}

impl From<tungstenite::Error> for LinkError {
    fn from(e: tungstenite::Error) -> Self {
        use std::io::ErrorKind;
        use tungstenite::Error as E;
        let disconnect = match &e {
            // A message over its deadline or the memory budget (`Metered`): the client is
            // told why, as a binary client is.
            E::Io(io) => !matches!(io.kind(), ErrorKind::TimedOut | ErrorKind::OutOfMemory),
            E::ConnectionClosed | E::AlreadyClosed | E::Protocol(_) => true,
            _ => false,
        };
        LinkError {
            disconnect,
            message: format!("websocket: {e}"),
        }
    }
}

/// Why a browser's message is refused, in words: serde_json calls a lone surrogate
/// escape (half an emoji, `\ud83d`) "unexpected end of hex escape".
fn bad_json(text: &str, e: &serde_json::Error) -> String {
    match lone_surrogate_escape(text) {
        Some(escape) => format!(
            "bad message: text with a lone UTF-16 surrogate ({escape}, half of a surrogate \
             pair) is not Unicode; the document holds only Unicode text"
        ),
        None => format!("bad message: {e}"),
    }
}

/// The first `\uXXXX` escape in JSON `text` that is a surrogate without its other half.
fn lone_surrogate_escape(text: &str) -> Option<&str> {
    let bytes = text.as_bytes();
    let escape_at = |i: usize| -> Option<u16> {
        let hex = text.get(i + 2..i + 6)?;
        (bytes.get(i + 1) == Some(&b'u'))
            .then(|| u16::from_str_radix(hex, 16).ok())
            .flatten()
    };
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            i += 1;
            continue;
        }
        match escape_at(i) {
            Some(0xd800..=0xdbff) => {
                let low = bytes.get(i + 6) == Some(&b'\\')
                    && matches!(escape_at(i + 6), Some(0xdc00..=0xdfff));
                if !low {
                    return text.get(i..i + 6);
                }
                i += 12;
            }
            Some(0xdc00..=0xdfff) => return text.get(i..i + 6),
            Some(_) => i += 6,
            // `\\`, `\"`, `\n`...: the escaped character is skipped with it.
            None => i += 2,
        }
    }
    None
}

impl ClientLink {
    /// The next message, `None` when the client closed the connection.
    pub async fn recv(&mut self) -> Result<Option<ClientMsg>, LinkError> {
        match self {
            ClientLink::Binary(conn) => Ok(conn.recv().await?),
            ClientLink::Web(socket) => {
                loop {
                    let Some(frame) = socket.next().await else {
                        return Ok(None);
                    };
                    match frame? {
                        Message::Text(text) => {
                            let msg: WebClientMsg = serde_json::from_str(text.as_str())
                                .map_err(|e| LinkError::malformed(bad_json(text.as_str(), &e)))?;
                            return Ok(Some(msg.into_client_msg()));
                        }
                        Message::Binary(_) => return Err(LinkError::malformed(
                            "binary WebSocket frames are not part of the protocol; send JSON text"
                                .into(),
                        )),
                        Message::Close(_) => return Ok(None),
                        // Pings are answered by tungstenite itself on the next write or flush.
                        Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
                    }
                }
            }
        }
    }

    /// Queues a message without flushing.
    pub async fn feed(&mut self, msg: &ServerMsg) -> Result<(), LinkError> {
        match self {
            ClientLink::Binary(conn) => Ok(conn.feed(msg).await?),
            ClientLink::Web(socket) => {
                let text = wire::encode(msg);
                Ok(socket.feed(Message::text(text)).await?)
            }
        }
    }

    /// Writes one message already encoded for the binary protocol in parts (a snapshot
    /// whose text is shared between joiners, see [`super::outgoing`]). A browser gets it
    /// decoded and re-encoded as JSON.
    pub async fn send_frame_parts(&mut self, parts: &[bytes::Bytes]) -> Result<(), LinkError> {
        match self {
            ClientLink::Binary(conn) => Ok(conn.send_frame_parts(parts).await?),
            ClientLink::Web(_) => {
                let frame = parts.concat();
                let msg: ServerMsg = postcard::from_bytes(&frame).map_err(|e| LinkError {
                    disconnect: false,
                    message: format!("cannot re-encode a snapshot for the browser: {e}"),
                })?;
                self.feed(&msg).await
            }
        }
    }

    pub async fn flush(&mut self) -> Result<(), LinkError> {
        match self {
            ClientLink::Binary(conn) => Ok(conn.flush().await?),
            ClientLink::Web(socket) => Ok(socket.flush().await?),
        }
    }

    pub async fn send(&mut self, msg: &ServerMsg) -> Result<(), LinkError> {
        self.feed(msg).await?;
        self.flush().await
    }

    /// Ends the connection politely where the encoding has a way to (a WebSocket close).
    pub async fn close(&mut self) {
        if let ClientLink::Web(socket) = self {
            let frame = CloseFrame {
                code: tungstenite::protocol::frame::coding::CloseCode::Normal,
                reason: "".into(),
            };
            let _ = WebSocketStream::close(socket, Some(frame)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::lone_surrogate_escape;

    #[test]
    fn lone_surrogate_escapes_are_found_and_pairs_and_escaped_backslashes_are_not() {
        assert_eq!(
            lone_surrogate_escape(r#"{"a":"x\ud83dy"}"#),
            Some(r"\ud83d")
        );
        assert_eq!(lone_surrogate_escape(r#"{"a":"\uDE00"}"#), Some(r"\uDE00"));
        assert_eq!(
            lone_surrogate_escape(r#"{"a":"\ud83d\ude00 \u00e9"}"#),
            None
        );
        assert_eq!(lone_surrogate_escape(r#"{"a":"\\ud83d"}"#), None);
        assert_eq!(lone_surrogate_escape(r#"{"a":"\ud83d"#), Some(r"\ud83d"));
    }
}
