//! The Noise XX handshake over any byte stream, before a single application byte moves.
//!
//! Both ends prove they hold the secret key of a static key pair; each learns the other's
//! public key, and whether that key is welcome is the caller's decision (a cluster looks it
//! up in its member list). The dialer usually knows whom it dials: given the expected key,
//! it stops after the second message, before revealing its own identity to an impostor.
//!
//! Handshake messages travel as the transport messages do (a 2-byte length, then the
//! message), but are far smaller: anything over [`MAX_HANDSHAKE_MESSAGE`] is not a
//! handshake and fails at once, so a stranger's bytes cost a few microseconds and no
//! allocation. Time limits are the caller's (it knows how long it waits for a peer).

use std::net::SocketAddr;

use snow::{HandshakeState, StatelessTransportState};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::keys::{PublicKey, SecretKey, KEY_LEN};
use super::{params, NoiseError};

/// Largest handshake message accepted. XX's are 32, 96 and 64 bytes with empty payloads.
pub const MAX_HANDSHAKE_MESSAGE: usize = 256;

/// Which end of the handshake this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The dialer; `expect`: the key the peer must prove, when known.
    Initiator { expect: Option<PublicKey> },
    /// The acceptor.
    Responder,
}

/// A completed handshake: the transport keys and the peer's proven public key.
pub struct Session {
    /// Seals what this end sends (snow).
    pub(super) transport: StatelessTransportState,
    /// Opens what this end receives, in place (see [`OpenKey`]).
    pub(super) open: OpenKey,
    pub(super) remote: PublicKey,
    pub(super) peer: SocketAddr,
}

/// The receiving direction's transport key, for ring's AES-256-GCM directly: snow's
/// `read_message` opens only into a second buffer (copying the ciphertext there first),
/// while [`open`](Self::open) decrypts where the ciphertext lies. Same cipher, same key
/// (the handshake's split), same Noise nonce (32 zero bits, then the 64-bit message counter
/// big-endian) and empty associated data as snow's AESGCM, so the wire format is unchanged.
/// (Boxed: ring's key schedule is several hundred bytes, and readers are moved around.)
pub(super) struct OpenKey(Box<ring::aead::LessSafeKey>);

impl OpenKey {
    /// The key for messages the peer sends: the split's first key if the peer initiated,
    /// the second if we did (Noise: the initiator sends with the first).
    fn from_split(state: &mut HandshakeState) -> Option<OpenKey> {
        let (initiator_sends, responder_sends) = state.dangerously_get_raw_split();
        let key = if state.is_initiator() {
            responder_sends
        } else {
            initiator_sends
        };
        let unbound = ring::aead::UnboundKey::new(&ring::aead::AES_256_GCM, &key).ok()?;
        Some(OpenKey(Box::new(ring::aead::LessSafeKey::new(unbound))))
    }

    /// Opens message number `nonce` in place; returns the plaintext's length (the
    /// message's minus the tag), or None if it does not authenticate under this nonce.
    pub(super) fn open(&self, nonce: u64, message: &mut [u8]) -> Option<usize> {
        // 2^64 - 1 is reserved (Noise 5.1); a stream never gets that far, but refuse it.
        if nonce == u64::MAX {
            return None;
        }
        let mut bytes = [0u8; ring::aead::NONCE_LEN];
        bytes[4..].copy_from_slice(&nonce.to_be_bytes());
        let nonce = ring::aead::Nonce::assume_unique_for_key(bytes);
        self.0
            .open_in_place(nonce, ring::aead::Aad::empty(), message)
            .ok()
            .map(|plain| plain.len())
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Session({}, key {})", self.peer, self.remote)
    }
}

impl Session {
    /// The public key the peer proved it holds.
    pub fn remote(&self) -> PublicKey {
        self.remote
    }
}

/// Runs the XX handshake on `stream`. `prologue` binds the handshake to its context (the
/// program and protocol): both ends must give the same bytes, or the handshake fails.
pub async fn handshake<S>(
    stream: &mut S,
    role: Role,
    keys: &SecretKey,
    prologue: &[u8],
    peer: SocketAddr,
) -> Result<Session, NoiseError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let fail = |reason: &str| NoiseError::Handshake {
        peer,
        reason: reason.to_owned(),
    };
    let builder = snow::Builder::new(params())
        .local_private_key(keys.secret_bytes())
        .and_then(|b| b.prologue(prologue))
        .map_err(|e| fail(&e.to_string()))?;
    let mut state = match role {
        Role::Initiator { .. } => builder.build_initiator(),
        Role::Responder => builder.build_responder(),
    }
    .map_err(|e| fail(&e.to_string()))?;
    let mut buf = [0u8; MAX_HANDSHAKE_MESSAGE];
    while !state.is_handshake_finished() {
        if state.is_my_turn() {
            let len = state
                .write_message(&[], &mut buf)
                .map_err(|e| fail(&e.to_string()))?;
            send_message(stream, &buf[..len], peer).await?;
        } else {
            let len = recv_message(stream, &mut buf, peer).await?;
            let mut payload = [0u8; MAX_HANDSHAKE_MESSAGE];
            state
                .read_message(&buf[..len], &mut payload)
                .map_err(|_| fail("the peer's handshake message does not verify (not a member, or not this protocol)"))?;
            if let Role::Initiator {
                expect: Some(expected),
            } = role
            {
                check_expected(&state, expected, peer)?;
            }
        }
    }
    let remote = remote_key(&state).ok_or_else(|| fail("the peer proved no static key"))?;
    let open = OpenKey::from_split(&mut state).ok_or_else(|| fail("no transport key"))?;
    let transport = state
        .into_stateless_transport_mode()
        .map_err(|e| fail(&e.to_string()))?;
    Ok(Session {
        transport,
        open,
        remote,
        peer,
    })
}

/// Once the responder's static key is known (after XX's second message), it must be the
/// expected one; checked before our own key is sent.
fn check_expected(
    state: &HandshakeState,
    expected: PublicKey,
    peer: SocketAddr,
) -> Result<(), NoiseError> {
    match remote_key(state) {
        Some(actual) if actual != expected => Err(NoiseError::UnexpectedKey {
            peer,
            expected,
            actual,
        }),
        _ => Ok(()),
    }
}

fn remote_key(state: &HandshakeState) -> Option<PublicKey> {
    let bytes: [u8; KEY_LEN] = state.get_remote_static()?.try_into().ok()?;
    Some(PublicKey::from_bytes(bytes))
}

async fn send_message<S: AsyncWrite + Unpin>(
    stream: &mut S,
    message: &[u8],
    peer: SocketAddr,
) -> Result<(), NoiseError> {
    let io = |source| NoiseError::Io { peer, source };
    let len = u16::try_from(message.len()).unwrap_or(u16::MAX);
    let mut framed = Vec::with_capacity(2 + message.len());
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(message);
    stream.write_all(&framed).await.map_err(io)?;
    stream.flush().await.map_err(io)
}

async fn recv_message<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut [u8; MAX_HANDSHAKE_MESSAGE],
    peer: SocketAddr,
) -> Result<usize, NoiseError> {
    let io = |source: std::io::Error| match source.kind() {
        std::io::ErrorKind::UnexpectedEof => NoiseError::Handshake {
            peer,
            reason: "closed during the handshake".into(),
        },
        _ => NoiseError::Io { peer, source },
    };
    let mut header = [0u8; 2];
    stream.read_exact(&mut header).await.map_err(io)?;
    let len = usize::from(u16::from_be_bytes(header));
    if len == 0 || len > MAX_HANDSHAKE_MESSAGE {
        return Err(NoiseError::Handshake {
            peer,
            reason: format!(
                "a handshake message of {len} bytes (at most {MAX_HANDSHAKE_MESSAGE}): the peer does not speak Noise"
            ),
        });
    }
    stream.read_exact(&mut buf[..len]).await.map_err(io)?;
    Ok(len)
}
