//! Authenticated, encrypted links: the Noise protocol (`Noise_XX_25519_AESGCM_SHA256`)
//! through the `snow` crate, with ring's AES-GCM.
//!
//! * [`keys`]: static key pairs, their one-line text form and the 0600 key file.
//! * [`handshake`]: the XX handshake; each end learns the key the other proved.
//! * [`stream`]: [`NoiseStream`], the encrypted stream a [`Connection`](crate::Connection)
//!   runs over unchanged.
//!
//! Why these choices: XX is libp2p's pattern, where the static key is the peer's identity and
//! neither end must know the other's key in advance; AES-GCM because ring's implementation
//! (AES-NI, carry-less multiply) seals and opens about 2 GB/s per core here, three times
//! the pure-Rust ChaCha20-Poly1305, and the swarm moves a gigabyte a second.

pub mod handshake;
pub mod keys;
pub mod stream;

use std::net::SocketAddr;

use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

pub use handshake::{handshake, Role, Session};
pub use keys::{KeyError, PublicKey, SecretKey};
pub use stream::{NoiseReader, NoiseStream, NoiseWriter};

/// The Noise protocol name: pattern, key agreement, cipher, hash.
pub const PATTERN: &str = "Noise_XX_25519_AESGCM_SHA256";

/// An encrypted TCP connection.
pub type NoiseTcpStream = NoiseStream<OwnedReadHalf, OwnedWriteHalf>;

/// Why a secure link could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum NoiseError {
    #[error("{peer}: {source}")]
    Io {
        peer: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("{peer}: handshake failed: {reason}")]
    Handshake { peer: SocketAddr, reason: String },
    #[error("{peer}: proved key {actual}, expected {expected}")]
    UnexpectedKey {
        peer: SocketAddr,
        expected: PublicKey,
        actual: PublicKey,
    },
}

fn params() -> snow::params::NoiseParams {
    PATTERN.parse().expect("a valid Noise pattern")
}

/// Runs the handshake on a TCP stream and returns it encrypted (TCP_NODELAY set: link
/// messages are small and latency matters). Logs its duration at debug level
/// (`RUST_LOG=netutil::noise=debug`).
pub async fn secure_tcp(
    mut stream: TcpStream,
    role: Role,
    keys: &SecretKey,
    prologue: &[u8],
) -> Result<NoiseTcpStream, NoiseError> {
    let peer = stream
        .peer_addr()
        .map(crate::display_addr)
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    let _ = stream.set_nodelay(true);
    let started = std::time::Instant::now();
    let session = handshake(&mut stream, role, keys, prologue, peer).await?;
    // Benchmarks read this line to report the handshake's share of link set-up.
    tracing::debug!(
        "{peer}: Noise handshake as {} done in {} us",
        match role {
            Role::Initiator { .. } => "initiator",
            Role::Responder => "responder",
        },
        started.elapsed().as_micros()
    );
    let (read, write) = stream.into_split();
    Ok(NoiseStream::new(session, read, write))
}
