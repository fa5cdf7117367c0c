//! [`NoiseStream`]: an encrypted, authenticated byte stream over any inner stream.
//!
//! Bytes written are cut into Noise transport messages of at most 65,535 bytes (a 2-byte
//! length, then the ciphertext and its 16-byte tag), so a framed codec runs on top
//! unchanged and a 1 MiB frame becomes 17 messages. Every message is sealed under the next
//! nonce of its direction: a message dropped, replayed, reordered or with one bit flipped
//! fails to open, the read returns `InvalidData`, and the caller closes the link.
//!
//! The two directions share nothing: the writer owns snow's stateless transport state, the
//! reader the receiving key, each counting its own nonces, so [`NoiseStream::into_halves`]
//! gives a reader and a writer that run in different tasks without a lock.
//!
//! Copies: a write is sealed straight from the caller's buffer into the output buffer
//! (small writes are gathered first, so a 4-byte header does not become a message of its
//! own); a read decrypts each message where the socket put it, in the read buffer, and
//! copies the plaintext once into the caller's buffer (snow's own `read_message` would copy
//! the ciphertext into the caller's buffer, after zeroing it, and decrypt there: two more
//! passes over every byte received). Sealing is snow's; opening is ring's AES-GCM with the
//! same key and nonce (see [`OpenKey`](super::handshake::OpenKey)).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use snow::StatelessTransportState;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::handshake::{OpenKey, Session};
use super::keys::PublicKey;

/// Largest Noise message, length prefix excluded.
pub const MAX_MESSAGE: usize = 65_535;
/// Authentication tag per message.
const TAG_LEN: usize = 16;
/// Most plaintext one message carries.
pub const MAX_PAYLOAD: usize = MAX_MESSAGE - TAG_LEN;
/// A message on the wire: length prefix and message.
const MAX_WIRE_MESSAGE: usize = 2 + MAX_MESSAGE;
/// Ciphertext buffered per direction: four messages, so the socket sees 256 KiB writes and
/// reads during bulk transfers.
const BUFFER: usize = 4 * MAX_WIRE_MESSAGE;

/// An encrypted stream: a reader and a writer over the two halves of one connection.
pub struct NoiseStream<R, W> {
    reader: NoiseReader<R>,
    writer: NoiseWriter<W>,
}

impl<R, W> std::fmt::Debug for NoiseStream<R, W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "NoiseStream({}, key {})",
            self.reader.peer, self.reader.remote
        )
    }
}

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> NoiseStream<R, W> {
    /// Encrypts over `read` and `write` with the keys of a completed handshake.
    pub fn new(session: Session, read: R, write: W) -> Self {
        let Session {
            transport,
            open,
            remote,
            peer,
        } = session;
        NoiseStream {
            reader: NoiseReader {
                inner: read,
                open,
                nonce: 0,
                buf: Vec::new(),
                start: 0,
                end: 0,
                plain_start: 0,
                plain_end: 0,
                eof: false,
                failed: false,
                peer,
                remote,
            },
            writer: NoiseWriter {
                inner: write,
                keys: transport,
                nonce: 0,
                staged: Vec::new(),
                buf: Vec::new(),
                start: 0,
                end: 0,
            },
        }
    }
}

impl<R, W> NoiseStream<R, W> {
    /// The public key the peer proved in the handshake.
    pub fn remote(&self) -> PublicKey {
        self.reader.remote
    }

    /// The peer's address.
    pub fn peer(&self) -> SocketAddr {
        self.reader.peer
    }

    /// The reading and the writing half, for use in different tasks.
    pub fn into_halves(self) -> (NoiseReader<R>, NoiseWriter<W>) {
        (self.reader, self.writer)
    }
}

/// The reading half: opens messages in order.
pub struct NoiseReader<R> {
    inner: R,
    open: OpenKey,
    nonce: u64,
    /// Ciphertext read from `inner`; `buf[start..end]` is not yet opened.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// Plaintext of the last message opened (in place, before `start`) not yet handed to
    /// the caller: `buf[plain_start..plain_end]`.
    plain_start: usize,
    plain_end: usize,
    eof: bool,
    /// A message failed to open: the stream is dead, every later read fails too.
    failed: bool,
    peer: SocketAddr,
    remote: PublicKey,
}

/// The writing half: seals messages in order.
pub struct NoiseWriter<W> {
    inner: W,
    keys: StatelessTransportState,
    nonce: u64,
    /// Small writes gathered into one message.
    staged: Vec<u8>,
    /// Sealed messages not yet written; `buf[start..end]` is pending.
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl<R> NoiseReader<R> {
    /// The next complete message in the buffer, as its range, if one is there.
    fn next_message(&self) -> io::Result<Option<(usize, usize)>> {
        let pending = &self.buf[self.start..self.end];
        if pending.len() < 2 {
            return Ok(None);
        }
        let len = usize::from(u16::from_be_bytes([pending[0], pending[1]]));
        if len < TAG_LEN {
            return Err(invalid("a message shorter than its authentication tag"));
        }
        if pending.len() < 2 + len {
            return Ok(None);
        }
        Ok(Some((self.start + 2, self.start + 2 + len)))
    }

    /// Opens `buf[from..to]` in place under the next nonce: its plaintext becomes the
    /// pending `buf[plain_start..plain_end]`.
    fn open(&mut self, from: usize, to: usize) -> io::Result<()> {
        let Some(opened) = self.open.open(self.nonce, &mut self.buf[from..to]) else {
            self.failed = true;
            return Err(invalid(
                "a message failed authentication (tampered, replayed or reordered)",
            ));
        };
        self.nonce += 1;
        self.start = to;
        self.plain_start = from;
        self.plain_end = from + opened;
        Ok(())
    }

    /// Makes room at the end of the buffer for at least one whole message. Only called
    /// once the pending plaintext is consumed (compacting moves what lies before `start`).
    fn make_room(&mut self) {
        if self.buf.is_empty() {
            self.buf = vec![0u8; BUFFER];
        }
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.buf.len() - self.start < MAX_WIRE_MESSAGE {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for NoiseReader<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.failed {
            return Poll::Ready(Err(invalid("the stream failed authentication earlier")));
        }
        loop {
            if this.plain_start < this.plain_end {
                let n = out.remaining().min(this.plain_end - this.plain_start);
                out.put_slice(&this.buf[this.plain_start..this.plain_start + n]);
                this.plain_start += n;
                return Poll::Ready(Ok(()));
            }
            if out.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            let next = this.next_message().inspect_err(|_| this.failed = true)?;
            if let Some((from, to)) = next {
                // An empty message (a tag alone) opens to nothing: go on to the next one
                // rather than return a read of 0 bytes, which would mean the end.
                this.open(from, to)?;
                continue;
            }
            if this.eof {
                return Poll::Ready(if this.start == this.end {
                    Ok(())
                } else {
                    Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "closed in the middle of an encrypted message",
                    ))
                });
            }
            this.make_room();
            let mut read = ReadBuf::new(&mut this.buf[this.end..]);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut read))?;
            let n = read.filled().len();
            if n == 0 {
                this.eof = true;
            }
            this.end += n;
        }
    }
}

impl<R> NoiseReader<R> {
    /// The public key the peer proved in the handshake.
    pub fn remote(&self) -> PublicKey {
        self.remote
    }

    pub fn peer(&self) -> SocketAddr {
        self.peer
    }
}

impl<W> NoiseWriter<W> {
    /// The inner stream; ciphertext not yet written to it is lost.
    pub fn into_inner(self) -> W {
        self.inner
    }
}

impl<W: AsyncWrite + Unpin> NoiseWriter<W> {
    /// Seals `payload` (at most [`MAX_PAYLOAD`] bytes) as the next message into the buffer,
    /// which must have room for it.
    fn seal(&mut self, payload: &[u8]) -> io::Result<()> {
        let at = self.end;
        let sealed = self
            .keys
            .write_message(self.nonce, payload, &mut self.buf[at + 2..])
            .map_err(|e| io::Error::other(format!("cannot encrypt: {e}")))?;
        let len = u16::try_from(sealed).map_err(|_| io::Error::other("message too long"))?;
        self.buf[at..at + 2].copy_from_slice(&len.to_be_bytes());
        self.nonce += 1;
        self.end = at + 2 + sealed;
        Ok(())
    }

    fn seal_staged(&mut self) -> io::Result<()> {
        if self.staged.is_empty() {
            return Ok(());
        }
        let staged = std::mem::take(&mut self.staged);
        let result = self.seal(&staged);
        self.staged = staged;
        self.staged.clear();
        result
    }

    /// Whether one more message fits behind what is pending (compacting if that helps).
    fn has_room(&mut self) -> bool {
        if self.buf.is_empty() {
            self.buf = vec![0u8; BUFFER];
        }
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        if self.buf.len() - self.end >= MAX_WIRE_MESSAGE {
            return true;
        }
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        self.buf.len() - self.end >= MAX_WIRE_MESSAGE
    }

    /// Writes pending ciphertext until it is all written or the inner stream is full.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.start < self.end {
            let n =
                ready!(Pin::new(&mut self.inner).poll_write(cx, &self.buf[self.start..self.end]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.start += n;
        }
        Poll::Ready(Ok(()))
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for NoiseWriter<W> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        while !this.has_room() {
            ready!(this.poll_drain(cx))?;
        }
        if this.staged.is_empty() && data.len() >= MAX_PAYLOAD {
            this.seal(&data[..MAX_PAYLOAD])?;
            return Poll::Ready(Ok(MAX_PAYLOAD));
        }
        let n = data.len().min(MAX_PAYLOAD - this.staged.len());
        this.staged.extend_from_slice(&data[..n]);
        if this.staged.len() == MAX_PAYLOAD {
            this.seal_staged()?;
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.staged.is_empty() {
            while !this.has_room() {
                ready!(this.poll_drain(cx))?;
            }
            this.seal_staged()?;
        }
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.as_mut().poll_flush(cx))?;
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl<R: AsyncRead + Unpin, W: Unpin> AsyncRead for NoiseStream<R, W> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().reader).poll_read(cx, out)
    }
}

impl<R: Unpin, W: AsyncWrite + Unpin> AsyncWrite for NoiseStream<R, W> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().writer).poll_write(cx, data)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().writer).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().writer).poll_shutdown(cx)
    }
}

fn invalid(reason: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, reason.to_owned())
}

impl<R, W> crate::Transport for NoiseStream<R, W>
where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send,
{
    type ReadHalf = NoiseReader<R>;
    type WriteHalf = NoiseWriter<W>;

    /// Each half owns its direction's nonce and buffers: no lock between them.
    fn into_halves(self) -> (NoiseReader<R>, NoiseWriter<W>) {
        NoiseStream::into_halves(self)
    }

    fn peer_addr(&self) -> Option<SocketAddr> {
        Some(self.reader.peer)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

    use std::net::SocketAddr;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::super::handshake::{handshake, Role, Session};
    use super::super::keys::SecretKey;
    use super::*;

    async fn sessions() -> (Session, Session) {
        let (a, b) = (
            SecretKey::generate().unwrap(),
            SecretKey::generate().unwrap(),
        );
        let peer = SocketAddr::from(([127, 0, 0, 1], 1));
        let (mut x, mut y) = tokio::io::duplex(4096);
        let dial = tokio::spawn(async move {
            let role = Role::Initiator { expect: None };
            handshake(&mut x, role, &a, b"wire test", peer).await
        });
        let accepted = handshake(&mut y, Role::Responder, &b, b"wire test", peer)
            .await
            .unwrap();
        (dial.await.unwrap().unwrap(), accepted)
    }

    fn payloads() -> Vec<Vec<u8>> {
        [1, 1000, MAX_PAYLOAD, 3 * MAX_PAYLOAD + 17]
            .iter()
            .enumerate()
            .map(|(i, &n)| (0..n).map(|b| (b * 7 + i) as u8).collect())
            .collect()
    }

    /// The wire format is standard Noise transport messages: what snow itself seals, the
    /// in-place reader opens, and what the writer sends, snow itself opens, message by
    /// message with the same nonces (an initiator's stream against a responder's snow
    /// state, and the reverse).
    #[tokio::test]
    async fn messages_are_snows_both_ways() {
        for initiator_stream in [true, false] {
            let (a, b) = sessions().await;
            let (ours, theirs) = if initiator_stream { (a, b) } else { (b, a) };
            let sent = payloads();
            // Snow seals, the stream opens.
            let mut wire = Vec::new();
            let mut nonce = 0;
            for payload in &sent {
                for chunk in payload.chunks(MAX_PAYLOAD) {
                    let mut message = vec![0u8; MAX_MESSAGE];
                    let len = theirs
                        .transport
                        .write_message(nonce, chunk, &mut message)
                        .unwrap();
                    nonce += 1;
                    wire.extend_from_slice(&u16::try_from(len).unwrap().to_be_bytes());
                    wire.extend_from_slice(&message[..len]);
                }
            }
            let mut stream = NoiseStream::new(ours, &wire[..], Vec::new());
            let mut opened = Vec::new();
            stream.read_to_end(&mut opened).await.unwrap();
            assert_eq!(opened, sent.concat());
            // The stream seals, snow opens.
            for payload in &sent {
                stream.write_all(payload).await.unwrap();
                stream.flush().await.unwrap();
            }
            let (_, writer) = stream.into_halves();
            let wire = writer.into_inner();
            let (mut rest, mut nonce, mut received) = (&wire[..], 0, Vec::new());
            while !rest.is_empty() {
                let len = 2 + usize::from(u16::from_be_bytes([rest[0], rest[1]]));
                let mut plain = vec![0u8; MAX_MESSAGE];
                let n = theirs
                    .transport
                    .read_message(nonce, &rest[2..len], &mut plain)
                    .unwrap();
                received.extend_from_slice(&plain[..n]);
                nonce += 1;
                rest = &rest[len..];
            }
            assert_eq!(received, sent.concat());
        }
    }
}
