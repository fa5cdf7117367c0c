//! The one place where a connection between nodes is secured, before any message crosses
//! it: control links (dialed and accepted) and the swarm's data connections alike.
//!
//! With keys ([`Auth::Keys`]) every connection runs the Noise XX handshake
//! ([`netutil::noise`]) first. The dialer knows which node it dials and requires that
//! node's listed key; the acceptor requires a key the cluster lists and learns from it who
//! the peer is (the `Hello` that follows must name that node, see [`super::establish`]).
//! A stranger's connection ends here, after at most a few hundred bytes and three X25519
//! operations, before a single message is decoded. Without keys ([`Auth::Open`], loopback
//! clusters only) the connection stays plain TCP.
//!
//! [`LinkStream`] is either kind, so a [`NodeConnection`](super::NodeConnection) is one type
//! whatever the mode, and it splits into halves without a lock in both.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use netutil::noise::{self, NoiseReader, NoiseTcpStream, NoiseWriter, Role};
use netutil::Transport;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use crate::cluster::config::{Auth, Cluster};
use crate::wire::{NodeId, PROTOCOL};

/// Binds every handshake to this program and wire version: a node of another protocol
/// version fails the handshake instead of misreading messages.
fn prologue() -> Vec<u8> {
    format!("{} {} noise link", PROTOCOL.name, PROTOCOL.version).into_bytes()
}

/// How this node secures its connections: its [`Auth`] and the cluster whose listed keys
/// are the members. Cheap to clone; the swarm holds one to open data connections.
#[derive(Debug, Clone)]
pub struct Security {
    auth: Auth,
    cluster: Arc<Cluster>,
}

impl Security {
    pub fn new(auth: Auth, cluster: Cluster) -> Security {
        Security {
            auth,
            cluster: Arc::new(cluster),
        }
    }

    /// True when links are authenticated and encrypted.
    pub fn is_keyed(&self) -> bool {
        matches!(self.auth, Auth::Keys(_))
    }

    /// Secures a connection this node dialed to node `peer`: with keys, `peer` must prove
    /// its listed key. The error says what went wrong, for the dial's log line.
    pub async fn dialed(&self, stream: TcpStream, peer: NodeId) -> Result<LinkStream, String> {
        let Auth::Keys(key) = &self.auth else {
            return Ok(LinkStream::Plain(stream));
        };
        let expect = self
            .cluster
            .get(peer)
            .and_then(|node| node.public_key)
            .ok_or_else(|| format!("node {peer} has no listed key"))?;
        let role = Role::Initiator {
            expect: Some(expect),
        };
        noise::secure_tcp(stream, role, key, &prologue())
            .await
            .map(|secure| LinkStream::Secure(Box::new(secure)))
            .map_err(|e| match e {
                noise::NoiseError::UnexpectedKey {
                    peer: addr, actual, ..
                } => format!(
                    "{addr}: proved key {actual}, not node {peer}'s listed key; not sending ours"
                ),
                other => other.to_string(),
            })
    }

    /// Secures an accepted connection. With keys, returns the member whose key the peer
    /// proved; a key the cluster does not list is an error. Without keys the peer is
    /// unproven (None).
    pub async fn accepted(
        &self,
        stream: TcpStream,
    ) -> Result<(LinkStream, Option<NodeId>), String> {
        let Auth::Keys(key) = &self.auth else {
            return Ok((LinkStream::Plain(stream), None));
        };
        let secured = noise::secure_tcp(stream, Role::Responder, key, &prologue())
            .await
            .map_err(|e| e.to_string())?;
        let remote = secured.remote();
        match self.cluster.member_with_key(&remote) {
            Some(id) => Ok((LinkStream::Secure(Box::new(secured)), Some(id))),
            None => Err(format!(
                "{}: proved key {remote}, which is not a member's key",
                secured.peer()
            )),
        }
    }
}

/// A connection between nodes: plain TCP (loopback clusters without keys) or encrypted.
pub enum LinkStream {
    Plain(TcpStream),
    Secure(Box<NoiseTcpStream>),
}

/// The reading half of a [`LinkStream`].
pub enum LinkReader {
    Plain(OwnedReadHalf),
    Secure(NoiseReader<OwnedReadHalf>),
}

/// The writing half of a [`LinkStream`].
pub enum LinkWriter {
    Plain(OwnedWriteHalf),
    Secure(NoiseWriter<OwnedWriteHalf>),
}

impl Transport for LinkStream {
    type ReadHalf = LinkReader;
    type WriteHalf = LinkWriter;

    fn into_halves(self) -> (LinkReader, LinkWriter) {
        match self {
            LinkStream::Plain(tcp) => {
                let (read, write) = tcp.into_split();
                (LinkReader::Plain(read), LinkWriter::Plain(write))
            }
            LinkStream::Secure(secure) => {
                let (read, write) = (*secure).into_halves();
                (LinkReader::Secure(read), LinkWriter::Secure(write))
            }
        }
    }

    fn peer_addr(&self) -> Option<SocketAddr> {
        match self {
            LinkStream::Plain(tcp) => tcp.peer_addr().ok(),
            LinkStream::Secure(secure) => Some(secure.peer()),
        }
    }

    fn tune_for_latency(&self) {
        // The secure stream set TCP_NODELAY on its socket before the handshake.
        if let LinkStream::Plain(tcp) = self {
            let _ = tcp.set_nodelay(true);
        }
    }
}

/// Forwards an `AsyncRead`/`AsyncWrite` call to whichever variant is inside.
macro_rules! either {
    ($self:ident, $inner:ident => $call:expr) => {
        match $self.get_mut() {
            Self::Plain($inner) => $call,
            Self::Secure($inner) => $call,
        }
    };
}

impl AsyncRead for LinkStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        either!(self, s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncRead for LinkReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        either!(self, s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for LinkStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        either!(self, s => Pin::new(s).poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        either!(self, s => Pin::new(s).poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            LinkStream::Plain(s) => s.is_write_vectored(),
            LinkStream::Secure(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        either!(self, s => Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        either!(self, s => Pin::new(s).poll_shutdown(cx))
    }
}

impl AsyncWrite for LinkWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        either!(self, s => Pin::new(s).poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        either!(self, s => Pin::new(s).poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            LinkWriter::Plain(s) => s.is_write_vectored(),
            LinkWriter::Secure(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        either!(self, s => Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        either!(self, s => Pin::new(s).poll_shutdown(cx))
    }
}
