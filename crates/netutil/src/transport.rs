//! [`Transport`]: what a byte stream must offer to carry a [`Connection`](crate::Connection).
//!
//! A connection needs to read and write bytes, to be split into halves that live in
//! different tasks, and to name its peer. A TCP stream splits into its owned halves at no
//! cost (the p2p swarm moves a gigabyte a second through them); any other stream (TLS, an
//! encrypted channel, a stream with bytes put back in front) can use tokio's generic
//! [`split`](tokio::io::split), which guards the stream with a lock, either by implementing
//! the trait in three lines or by wrapping it in [`Generic`].

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf, ReadHalf, WriteHalf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

/// A bidirectional byte stream a [`Connection`](crate::Connection) can run over.
pub trait Transport: AsyncRead + AsyncWrite + Unpin + Send + Sized {
    /// The half [`into_halves`](Self::into_halves) gives for reading.
    type ReadHalf: AsyncRead + Unpin + Send;
    /// The half [`into_halves`](Self::into_halves) gives for writing.
    type WriteHalf: AsyncWrite + Unpin + Send;

    /// Splits the stream into halves that can be used from different tasks.
    fn into_halves(self) -> (Self::ReadHalf, Self::WriteHalf);

    /// The peer's address, if the stream knows it.
    fn peer_addr(&self) -> Option<SocketAddr> {
        None
    }

    /// Asks the stream to send small writes at once (TCP_NODELAY); best effort.
    fn tune_for_latency(&self) {}
}

impl Transport for TcpStream {
    type ReadHalf = OwnedReadHalf;
    type WriteHalf = OwnedWriteHalf;

    fn into_halves(self) -> (OwnedReadHalf, OwnedWriteHalf) {
        self.into_split()
    }

    fn peer_addr(&self) -> Option<SocketAddr> {
        TcpStream::peer_addr(self).ok()
    }

    fn tune_for_latency(&self) {
        // Failing to set NODELAY only costs latency; the connection still works.
        let _ = self.set_nodelay(true);
    }
}

/// Any stream made a [`Transport`]: split with [`tokio::io::split`], peer address given by
/// the caller (see [`Connection::with_peer`](crate::Connection::with_peer)).
#[derive(Debug)]
pub struct Generic<S>(pub S);

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Transport for Generic<S> {
    type ReadHalf = ReadHalf<Generic<S>>;
    type WriteHalf = WriteHalf<Generic<S>>;

    fn into_halves(self) -> (Self::ReadHalf, Self::WriteHalf) {
        tokio::io::split(self)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Generic<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Generic<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
