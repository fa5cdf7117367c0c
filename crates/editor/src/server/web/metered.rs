//! [`Metered`]: the browser's WebSocket pays for what it sends the way a binary client
//! does (netutil's codec): a message must complete within `--frame-timeout` of its first
//! byte, and the bytes of a message in progress are charged to the server's memory
//! budget, so a client that announces a large frame and stalls holds neither its buffer
//! for ever nor more than the budget allows.
//!
//! tungstenite buffers frames out of sight, so this wraps the byte stream under it and
//! follows the framing itself ([`FrameTracker`], RFC 6455 section 5.2): it only needs to
//! know where messages start and end. tungstenite still does all the decoding and
//! enforces the size limits; an error here reaches it as an I/O error on read, which
//! [`super::super::client_link`] turns into an `Error` for the client before closing.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use netutil::limits::{Charge, MemoryBudget};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// An I/O stream whose incoming WebSocket messages are timed and charged.
pub struct Metered<S> {
    inner: S,
    tracker: FrameTracker,
    timeout: Duration,
    deadline: Option<Pin<Box<Sleep>>>,
    charge: Charge,
}

impl<S> Metered<S> {
    pub fn new(inner: S, timeout: Duration, budget: &MemoryBudget) -> Self {
        Metered {
            inner,
            tracker: FrameTracker::default(),
            timeout,
            deadline: None,
            charge: budget.charge_nothing(),
        }
    }

    /// Accounts for bytes just read: starts, restarts or ends the deadline, and resizes
    /// the charge; an error when the budget cannot hold the message in progress.
    fn account(&mut self, bytes: &[u8]) -> io::Result<()> {
        let completed = self.tracker.feed(bytes);
        if self.tracker.is_idle() {
            self.deadline = None;
            self.charge.try_resize(0);
            return Ok(());
        }
        // A message started in these bytes (perhaps after others completed): its clock
        // starts now.
        if completed || self.deadline.is_none() {
            self.deadline = Some(Box::pin(tokio::time::sleep(self.timeout)));
        }
        let held = self.tracker.held();
        if !self.charge.try_resize(held) {
            return Err(io::Error::new(
                io::ErrorKind::OutOfMemory,
                format!(
                    "server memory budget exhausted while receiving a WebSocket message \
                     ({held} bytes of it received); closing"
                ),
            ));
        }
        Ok(())
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Metered<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let new = &buf.filled()[before..];
                Poll::Ready(this.account(new))
            }
            Poll::Pending => {
                if let Some(deadline) = this.deadline.as_mut() {
                    if deadline.as_mut().poll(cx).is_ready() {
                        let held = this.tracker.held();
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!(
                                "WebSocket message not completed within {:?} ({held} bytes of \
                                 it received); closing",
                                this.timeout
                            ),
                        )));
                    }
                }
                Poll::Pending
            }
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Metered<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Where a client's byte stream is in the WebSocket framing: between messages, or inside
/// one (in a frame's header or payload, or between the fragments of a data message).
#[derive(Debug, Default)]
pub struct FrameTracker {
    /// The header of the frame being read, as far as it arrived (at most 14 bytes).
    header: Vec<u8>,
    /// Payload bytes of the current frame still to come (its header complete).
    payload_left: u64,
    /// Whether the current frame (header complete) ends a message.
    ends_message: bool,
    /// A data message's first fragments arrived, its last not yet.
    fragmented: bool,
    /// Bytes since the last message ended.
    held: usize,
}

impl FrameTracker {
    /// Follows `bytes`; true when at least one message ended in them.
    pub fn feed(&mut self, mut bytes: &[u8]) -> bool {
        let mut completed = false;
        while !bytes.is_empty() {
            self.held = self.held.saturating_add(1);
            if self.payload_left > 0 {
                let n = usize::try_from(self.payload_left)
                    .unwrap_or(usize::MAX)
                    .min(bytes.len());
                self.held = self.held.saturating_add(n - 1);
                self.payload_left -= n as u64;
                bytes = &bytes[n..];
                if self.payload_left == 0 {
                    completed |= self.frame_done();
                }
                continue;
            }
            self.header.push(bytes[0]);
            bytes = &bytes[1..];
            if let Some(len) = self.header_complete() {
                self.payload_left = len;
                if len == 0 {
                    completed |= self.frame_done();
                }
            }
        }
        completed
    }

    /// Between messages: nothing of a message is held.
    pub fn is_idle(&self) -> bool {
        self.held == 0
    }

    /// Bytes of the message in progress received so far (headers included).
    pub fn held(&self) -> usize {
        self.held
    }

    /// The payload length once the whole header is in (and then resets it), else None.
    fn header_complete(&mut self) -> Option<u64> {
        let h = &self.header;
        if h.len() < 2 {
            return None;
        }
        let extended = match h[1] & 0x7f {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let mask = if h[1] & 0x80 != 0 { 4 } else { 0 };
        if h.len() < 2 + extended + mask {
            return None;
        }
        let len = match extended {
            0 => u64::from(h[1] & 0x7f),
            n => h[2..2 + n]
                .iter()
                .fold(0u64, |acc, &b| (acc << 8) | u64::from(b)),
        };
        let fin = h[0] & 0x80 != 0;
        let control = h[0] & 0x08 != 0;
        // A control frame (close, ping, pong) ends "its message" only if no data message
        // is in progress around it; a data frame ends its message when FIN is set.
        self.ends_message = if control { !self.fragmented } else { fin };
        if !control {
            self.fragmented = !fin;
        }
        self.header.clear();
        Some(len)
    }

    /// The current frame is complete; true if that ended a message.
    fn frame_done(&mut self) -> bool {
        if self.ends_message {
            self.held = 0;
            self.ends_message = false;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked client frame: FIN/opcode byte, then the payload.
    fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![first];
        match payload.len() {
            n if n < 126 => f.push(0x80 | n as u8),
            n if n < 65_536 => {
                f.push(0x80 | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(0x80 | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(&[1, 2, 3, 4]);
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn whole_messages_leave_it_idle_byte_by_byte_or_at_once() {
        let mut bytes = frame(0x81, b"{\"join\":{}}");
        bytes.extend(frame(0x89, b"")); // ping
        bytes.extend(frame(0x82, &vec![7u8; 70_000]));
        let mut at_once = FrameTracker::default();
        assert!(at_once.feed(&bytes));
        assert!(at_once.is_idle());
        let mut one_by_one = FrameTracker::default();
        for (i, b) in bytes.iter().enumerate() {
            one_by_one.feed(std::slice::from_ref(b));
            assert_eq!(
                one_by_one.is_idle(),
                i + 1 == 17 || i + 1 == 23 || i + 1 == bytes.len()
            );
        }
    }

    #[test]
    fn a_partial_frame_is_held_until_it_completes() {
        let big = frame(0x81, &vec![b'a'; 1 << 20]);
        let mut t = FrameTracker::default();
        assert!(!t.feed(&big[..1000]));
        assert_eq!(t.held(), 1000);
        assert!(!t.is_idle());
        assert!(t.feed(&big[1000..]));
        assert!(t.is_idle());
        // The end of one message and the start of the next in one read.
        let mut two = frame(0x81, b"one");
        let second = frame(0x81, b"two");
        two.extend_from_slice(&second[..4]);
        assert!(t.feed(&two));
        assert_eq!(t.held(), 4);
    }

    #[test]
    fn fragments_and_interleaved_pings_are_one_message() {
        let mut t = FrameTracker::default();
        t.feed(&frame(0x01, b"first half")); // text, no FIN
        assert!(!t.is_idle());
        t.feed(&frame(0x89, b"ping")); // a ping between the fragments
        assert!(!t.is_idle(), "the message is still in progress");
        assert!(t.feed(&frame(0x80, b"second half"))); // continuation with FIN
        assert!(t.is_idle());
    }
}
