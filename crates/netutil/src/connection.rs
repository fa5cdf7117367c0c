//! [`Connection`]: one byte stream carrying typed messages.
//!
//! A connection owns the framed stream (see [`codec`](crate::codec)) and turns frames into
//! messages with postcard. `Rx` is what the peer sends us, `Tx` what we send it; the two differ
//! for client/server protocols and coincide for peer-to-peer ones. Every error names the peer.
//!
//! The stream `S` is a TCP stream by default, or anything else that implements
//! [`Transport`](crate::transport::Transport): a TLS stream, an encrypted channel.
//!
//! `recv` is cancel-safe (a partly received frame stays buffered), so a session can
//! `tokio::select!` between `recv` and its outgoing queue, as mini-redis does.

use std::io::Cursor;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use futures_util::{Sink, SinkExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt, Chain};
use tokio::net::TcpStream;
use tokio_util::codec::{Framed, FramedRead, FramedWrite};

use crate::codec::{next_frame, FrameCodec, FrameDeadline, FrameError};
use crate::limits::MemoryBudget;
use crate::listen::display_addr;
use crate::transport::Transport;
use crate::NetError;

/// A framed, typed, bidirectional connection to one peer over the stream `S`.
pub struct Connection<Rx, Tx = Rx, S = TcpStream> {
    framed: Framed<S, FrameCodec>,
    peer: SocketAddr,
    deadline: FrameDeadline,
    _types: PhantomData<fn(Tx) -> Rx>,
}

/// Bytes already read off the stream before a split, then the stream's read half.
type ReadSide<S> = Chain<Cursor<BytesMut>, <S as Transport>::ReadHalf>;

/// The receiving half of a split [`Connection`].
pub struct RecvHalf<Rx, S: Transport = TcpStream> {
    framed: FramedRead<ReadSide<S>, FrameCodec>,
    peer: SocketAddr,
    deadline: FrameDeadline,
    _types: PhantomData<fn() -> Rx>,
}

/// The sending half of a split [`Connection`].
pub struct SendHalf<Tx, S: Transport = TcpStream> {
    framed: FramedWrite<S::WriteHalf, FrameCodec>,
    peer: SocketAddr,
    _types: PhantomData<fn(Tx)>,
}

impl<Rx: DeserializeOwned, Tx: Serialize, S: Transport> Connection<Rx, Tx, S> {
    /// Wraps a connected stream, naming the peer by the address the stream reports
    /// (`0.0.0.0:0` if it reports none; see [`with_peer`](Self::with_peer)). Tunes the
    /// stream for latency (TCP_NODELAY: our messages are small).
    /// No handshake is done here; see [`Connection::establish`].
    pub fn new(stream: S, max_frame: usize) -> Self {
        let peer = stream
            .peer_addr()
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
        Self::with_peer(stream, peer, max_frame)
    }

    /// Wraps a connected stream whose peer address is known to the caller (a TLS stream
    /// over a socket the caller accepted, a stream that cannot tell its peer).
    pub fn with_peer(stream: S, peer: SocketAddr, max_frame: usize) -> Self {
        stream.tune_for_latency();
        Connection {
            framed: Framed::new(stream, FrameCodec::new(max_frame)),
            peer: display_addr(peer),
            deadline: FrameDeadline::default(),
            _types: PhantomData,
        }
    }

    /// The peer's address, IPv4-mapped addresses shown as plain IPv4.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Gives up on a frame that has not completed `timeout` after its first byte arrived
    /// ([`NetError::FrameTimeout`]); `None` (the default) waits for ever. Time between
    /// frames is not limited here: an idle peer is the application's business.
    pub fn set_frame_timeout(&mut self, timeout: Option<Duration>) {
        self.deadline.set_timeout(timeout);
    }

    /// Charges the buffer of a large frame in progress to `budget`, shared with the other
    /// connections of the server; a frame that does not fit is refused
    /// ([`NetError::OverBudget`]).
    pub fn set_memory_budget(&mut self, budget: MemoryBudget) {
        self.framed.codec_mut().set_budget(budget);
    }

    /// Receives the next message; `Ok(None)` when the peer closed cleanly between frames.
    pub async fn recv(&mut self) -> Result<Option<Rx>, NetError> {
        let frame = next_frame(&mut self.framed, framed_codec, &mut self.deadline).await;
        release_large_buffer(self.framed.read_buffer_mut());
        decode_next(frame, self.peer)
    }

    /// Receives the next raw frame, undecoded.
    pub async fn recv_frame(&mut self) -> Result<Option<BytesMut>, NetError> {
        let peer = self.peer;
        next_frame(&mut self.framed, framed_codec, &mut self.deadline)
            .await
            .transpose()
            .map_err(|e| frame_error(e, peer))
    }

    /// Sends one message and flushes it.
    pub async fn send(&mut self, msg: &Tx) -> Result<(), NetError> {
        let frame = encode(msg, self.peer)?;
        self.send_frame(frame).await
    }

    /// Queues one message without flushing, for batching; call [`flush`](Self::flush) after.
    /// The write buffer is flushed on its own when it grows past a few KiB.
    pub async fn feed(&mut self, msg: &Tx) -> Result<(), NetError> {
        let frame = encode(msg, self.peer)?;
        let peer = self.peer;
        self.framed
            .feed(frame)
            .await
            .map_err(|e| frame_error(e, peer))
    }

    /// Sends a frame produced by [`encode`] (encode once, send to many peers).
    pub async fn send_frame(&mut self, frame: Bytes) -> Result<(), NetError> {
        let max = self.framed.codec().max_frame();
        send_frame_on(&mut self.framed, frame, self.peer, max, Framed::get_mut).await
    }

    /// Sends one frame whose payload is `parts` one after the other, written straight from
    /// them after whatever is queued: a large payload shared by many peers (a document
    /// snapshot) is never copied per peer.
    pub async fn send_frame_parts(&mut self, parts: &[Bytes]) -> Result<(), NetError> {
        let peer = self.peer;
        let max = self.framed.codec().max_frame();
        let len: usize = parts.iter().map(Bytes::len).sum();
        let header = match u32::try_from(len) {
            Ok(n) if len <= max => n.to_be_bytes(),
            _ => {
                return Err(NetError::FrameTooLarge {
                    peer,
                    len: len as u64,
                    max,
                })
            }
        };
        SinkExt::<Bytes>::flush(&mut self.framed)
            .await
            .map_err(|e| frame_error(e, peer))?;
        let io = |source| NetError::Io { peer, source };
        let writer = self.framed.get_mut();
        writer.write_all(&header).await.map_err(io)?;
        for part in parts {
            writer.write_all(part).await.map_err(io)?;
        }
        writer.flush().await.map_err(io)
    }

    /// Flushes messages queued by [`feed`](Self::feed).
    pub async fn flush(&mut self) -> Result<(), NetError> {
        let peer = self.peer;
        SinkExt::<Bytes>::flush(&mut self.framed)
            .await
            .map_err(|e| frame_error(e, peer))
    }

    /// The codec, to adjust its frame limit (see the handshake).
    pub(crate) fn codec_mut(&mut self) -> &mut FrameCodec {
        self.framed.codec_mut()
    }

    /// Splits into halves that can live in different tasks. A TCP stream splits into its
    /// owned halves at no cost; other streams as their [`Transport`] says.
    pub fn split(self) -> (RecvHalf<Rx, S>, SendHalf<Tx, S>) {
        let parts = self.framed.into_parts();
        let codec = parts.codec;
        let (read, write) = parts.io.into_halves();
        // Frames that arrived with the handshake may already sit in the read buffer. They are
        // replayed ahead of the socket, so the receiving half decodes them at once instead of
        // waiting for more bytes (a FramedRead given a pre-filled buffer would not look at it
        // until the socket is readable again).
        // Copied to a buffer of exactly their size: the cursor lives as long as the half does,
        // and the framed read buffer's capacity may be far larger than what is left in it.
        let leftover = BytesMut::from(&parts.read_buf[..]);
        let read_side = AsyncReadExt::chain(Cursor::new(leftover), read);
        let framed_read = FramedRead::new(read_side, codec.clone());
        let mut framed_write = FramedWrite::new(write, codec);
        *framed_write.write_buffer_mut() = parts.write_buf;
        (
            RecvHalf {
                framed: framed_read,
                peer: self.peer,
                deadline: self.deadline,
                _types: PhantomData,
            },
            SendHalf {
                framed: framed_write,
                peer: self.peer,
                _types: PhantomData,
            },
        )
    }

    /// The underlying stream, for shutting it down or reading socket options.
    pub fn stream(&self) -> &S {
        self.framed.get_ref()
    }

    /// The underlying stream, mutably (to read what a TLS session negotiated, say).
    pub fn stream_mut(&mut self) -> &mut S {
        self.framed.get_mut()
    }
}

impl<Rx: DeserializeOwned, S: Transport> RecvHalf<Rx, S> {
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Receives the next message; `Ok(None)` when the peer closed cleanly between frames.
    pub async fn recv(&mut self) -> Result<Option<Rx>, NetError> {
        let frame = next_frame(&mut self.framed, read_half_codec, &mut self.deadline).await;
        release_large_buffer(self.framed.read_buffer_mut());
        decode_next(frame, self.peer)
    }
}

fn framed_codec<S>(framed: &Framed<S, FrameCodec>) -> (&FrameCodec, usize) {
    (framed.codec(), framed.read_buffer().len())
}

fn read_half_codec<R>(framed: &FramedRead<R, FrameCodec>) -> (&FrameCodec, usize) {
    (framed.decoder(), framed.read_buffer().len())
}

impl<Tx: Serialize, S: Transport> SendHalf<Tx, S> {
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Sends one message and flushes it.
    pub async fn send(&mut self, msg: &Tx) -> Result<(), NetError> {
        let frame = encode(msg, self.peer)?;
        self.send_frame(frame).await
    }

    /// Queues one message without flushing; see [`Connection::feed`].
    pub async fn feed(&mut self, msg: &Tx) -> Result<(), NetError> {
        let frame = encode(msg, self.peer)?;
        let peer = self.peer;
        self.framed
            .feed(frame)
            .await
            .map_err(|e| frame_error(e, peer))
    }

    /// Sends a pre-encoded frame.
    pub async fn send_frame(&mut self, frame: Bytes) -> Result<(), NetError> {
        let max = self.framed.encoder().max_frame();
        send_frame_on(
            &mut self.framed,
            frame,
            self.peer,
            max,
            FramedWrite::get_mut,
        )
        .await
    }

    pub async fn flush(&mut self) -> Result<(), NetError> {
        let peer = self.peer;
        SinkExt::<Bytes>::flush(&mut self.framed)
            .await
            .map_err(|e| frame_error(e, peer))
    }
}

/// Frames at least this large skip the write buffer (see [`write_frame_direct`]).
const DIRECT_WRITE_MIN: usize = 64 * 1024;

/// The send path shared by [`Connection`] and [`SendHalf`]: small frames go through the
/// framed write buffer; large ones, after what is queued, straight to the socket.
async fn send_frame_on<S, W>(
    sink: &mut S,
    frame: Bytes,
    peer: SocketAddr,
    max_frame: usize,
    writer: fn(&mut S) -> &mut W,
) -> Result<(), NetError>
where
    S: Sink<Bytes, Error = FrameError> + Unpin,
    W: AsyncWrite + Unpin,
{
    if frame.len() < DIRECT_WRITE_MIN {
        return sink.send(frame).await.map_err(|e| frame_error(e, peer));
    }
    // Frames queued before this one go first.
    SinkExt::<Bytes>::flush(sink)
        .await
        .map_err(|e| frame_error(e, peer))?;
    write_frame_direct(writer(sink), frame, max_frame, peer).await
}

/// Writes the 4-byte header and the payload straight to the socket with one vectored write,
/// instead of copying the payload into the framed write buffer first: for bulk data (the
/// swarm's 1 MiB pieces) that copy is a measurable share of the sender's CPU.
async fn write_frame_direct<W: AsyncWrite + Unpin>(
    writer: &mut W,
    frame: Bytes,
    max: usize,
    peer: SocketAddr,
) -> Result<(), NetError> {
    let len = frame.len();
    let header = match u32::try_from(len) {
        Ok(n) if len <= max => n.to_be_bytes(),
        _ => {
            return Err(NetError::FrameTooLarge {
                peer,
                len: len as u64,
                max,
            })
        }
    };
    let mut bytes = Buf::chain(&header[..], frame);
    let io = |source| NetError::Io { peer, source };
    writer.write_all_buf(&mut bytes).await.map_err(io)?;
    writer.flush().await.map_err(io)
}

/// Encodes a message as a frame payload, for [`Connection::send_frame`].
pub fn encode<T: Serialize>(msg: &T, peer: SocketAddr) -> Result<Bytes, NetError> {
    postcard::to_stdvec(msg)
        .map(Bytes::from)
        .map_err(|source| NetError::Encode { peer, source })
}

fn decode_next<Rx: DeserializeOwned>(
    frame: Option<Result<BytesMut, FrameError>>,
    peer: SocketAddr,
) -> Result<Option<Rx>, NetError> {
    match frame {
        None => Ok(None),
        Some(Err(e)) => Err(frame_error(e, peer)),
        Some(Ok(bytes)) => postcard::from_bytes(&bytes)
            .map(Some)
            .map_err(|source| NetError::Decode { peer, source }),
    }
}

/// Read buffers above this capacity are given back once they are empty.
const RETAINED_READ_CAPACITY: usize = 64 * 1024;
/// What a released buffer starts again with: tokio-util's own initial read capacity, so
/// reads stay large (an empty buffer would be refilled a few bytes at a time at first).
const FRESH_READ_CAPACITY: usize = 8 * 1024;

/// A read buffer grows to hold the largest frame received; without this, every connection
/// that once received a 1 MiB message would keep 1 MiB for the rest of its life.
fn release_large_buffer(buffer: &mut BytesMut) {
    if buffer.is_empty() && buffer.capacity() > RETAINED_READ_CAPACITY {
        *buffer = BytesMut::with_capacity(FRESH_READ_CAPACITY);
    }
}

pub(crate) fn frame_error(e: FrameError, peer: SocketAddr) -> NetError {
    match e {
        FrameError::TooLarge { len, max } => NetError::FrameTooLarge { peer, len, max },
        FrameError::Truncated { buffered } => NetError::Truncated { peer, buffered },
        FrameError::TimedOut { timeout, buffered } => NetError::FrameTimeout {
            peer,
            timeout,
            buffered,
        },
        FrameError::OverBudget { buffered } => NetError::OverBudget { peer, buffered },
        FrameError::Io(source) => NetError::Io { peer, source },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_large_frame_does_not_pin_its_buffer_for_the_connection_lifetime() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let sender = tokio::spawn(async move {
            let stream = TcpStream::connect(addr).await.unwrap();
            let mut conn: Connection<Vec<u8>> = Connection::new(stream, 4 << 20);
            conn.send(&vec![7u8; 1 << 20]).await.unwrap();
            conn
        });
        let (stream, _) = listener.accept().await.unwrap();
        let mut conn: Connection<Vec<u8>> = Connection::new(stream, 4 << 20);
        let big = conn.recv().await.unwrap().unwrap();
        assert_eq!(big.len(), 1 << 20);
        assert!(conn.framed.read_buffer().capacity() <= RETAINED_READ_CAPACITY);
        drop(sender.await.unwrap());
    }

    #[tokio::test]
    async fn a_frame_started_and_not_finished_times_out() {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut raw = TcpStream::connect(addr).await.unwrap();
        let (stream, _) = listener.accept().await.unwrap();
        let mut conn: Connection<Vec<u8>> = Connection::new(stream, 1 << 20);
        conn.set_frame_timeout(Some(Duration::from_millis(200)));
        // Idle between frames is not limited.
        let idle = tokio::time::timeout(Duration::from_millis(400), conn.recv()).await;
        assert!(idle.is_err(), "no frame started, so no deadline");
        raw.write_all(&[0, 0, 1, 0, 1, 2, 3]).await.unwrap();
        let started = tokio::time::Instant::now();
        let err = tokio::time::timeout(Duration::from_secs(10), conn.recv())
            .await
            .expect("the deadline fires")
            .unwrap_err();
        assert!(
            matches!(err, NetError::FrameTimeout { buffered: 3, .. }),
            "{err}"
        );
        assert!(started.elapsed() >= Duration::from_millis(150));
    }
}
