//! Establishing connections: every TCP connection to or from another node starts here.
//! Dialing a node and answering its `Hello`, accepting a connection and reading its first
//! message (a `Hello` makes a link, an `Open` a data connection handed to
//! [`crate::swarm::serve`]), and opening a data connection to a holder for a download.
//!
//! Each one is secured first ([`Security`]: the Noise handshake when the cluster lists
//! keys); only then do netutil's protocol hello and our `Hello` follow. An accepted peer
//! is the member whose key it proved: a `Hello` naming another id is refused and logged
//! with the peer's address.

use std::net::{IpAddr, SocketAddr};
use std::sync::LazyLock;
use std::time::Duration;

use netutil::log_limit::{LogLimiter, LOG_INTERVAL};
use netutil::{ConnectOptions, NetError};
use tokio::sync::mpsc;

use super::run::run_registered;
use super::secure::Security;
use super::{
    DataService, HandshakeSlot, LinkId, NodeConnection, PeerEvent, ACCEPT_TIMEOUT, DIAL_TIMEOUT,
};
use crate::cluster::config::Cluster;
use crate::cluster::election::{NodeId, Term};
use crate::wire::{Message, PROTOCOL};

/// Why a dial failed, and whether the peer refused it only because we are already linked.
struct DialError {
    reason: String,
    duplicate: bool,
}

impl From<NetError> for DialError {
    fn from(e: NetError) -> Self {
        DialError {
            reason: e.to_string(),
            duplicate: false,
        }
    }
}

impl From<String> for DialError {
    fn from(reason: String) -> Self {
        DialError {
            reason,
            duplicate: false,
        }
    }
}

/// Failed handshakes are logged once per source address per interval, with a count: a
/// stranger opening thousands of connections must not flood the log.
static FAILED_HANDSHAKES: LazyLock<LogLimiter<IpAddr>> =
    LazyLock::new(|| LogLimiter::new(LOG_INTERVAL));

#[allow(clippy::too_many_arguments)]
pub(super) async fn dial_link(
    me: NodeId,
    peer: NodeId,
    host: String,
    port: u16,
    term: Term,
    link: LinkId,
    events: mpsc::Sender<PeerEvent>,
    security: Security,
) {
    let attempt = async {
        let options = ConnectOptions {
            timeout: DIAL_TIMEOUT,
            ..ConnectOptions::default()
        };
        let (stream, addr) = netutil::connect(&host, port, &options).await?;
        let stream = security.dialed(stream, peer).await?;
        let mut conn = NodeConnection::establish(stream, &PROTOCOL).await?;
        conn.send(&Message::Hello { id: me, term }).await?;
        match conn.recv().await? {
            Some(Message::Hello { id, term }) if id == peer => Ok((conn, addr, term)),
            Some(Message::Hello { id, .. }) => Err(DialError {
                reason: format!("{addr} answered as node {id}, not node {peer}"),
                duplicate: false,
            }),
            Some(Message::Refused { reason, duplicate }) => Err(DialError {
                reason: format!("refused: {reason}"),
                duplicate,
            }),
            Some(other) => Err(DialError {
                reason: format!("expected Hello, got {other:?}"),
                duplicate: false,
            }),
            None => Err(DialError {
                reason: "closed during the handshake".into(),
                duplicate: false,
            }),
        }
    };
    let result = tokio::time::timeout(DIAL_TIMEOUT, attempt)
        .await
        .unwrap_or_else(|_| {
            Err(DialError {
                reason: format!("no handshake within {DIAL_TIMEOUT:?}"),
                duplicate: false,
            })
        });
    match result {
        Ok((conn, addr, term)) => {
            let addr = netutil::display_addr(addr);
            run_registered(me, conn, link, peer, term, addr, true, events).await;
        }
        Err(e) => {
            if security.is_keyed() && e.reason.contains("key") {
                tracing::warn!("dialing Node {peer} at {host}:{port} failed: {}", e.reason);
            } else {
                tracing::debug!("dialing Node {peer} at {host}:{port} failed: {}", e.reason);
            }
            let _ = events
                .send(PeerEvent::DialFailed {
                    peer,
                    reason: e.reason,
                    duplicate: e.duplicate,
                })
                .await;
        }
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn accept_link(
    me: NodeId,
    cluster: Cluster,
    stream: tokio::net::TcpStream,
    addr: SocketAddr,
    link: LinkId,
    events: mpsc::Sender<PeerEvent>,
    permit: HandshakeSlot,
    data: DataService,
    security: Security,
) {
    let greeting = async {
        let (stream, proven) = security.accepted(stream).await?;
        let mut conn = NodeConnection::establish(stream, &PROTOCOL)
            .await
            .map_err(|e| e.to_string())?;
        let hello = conn.recv().await.map_err(|e| e.to_string())?;
        Ok::<_, String>((conn, proven, hello))
    };
    let (mut conn, proven, hello) = match tokio::time::timeout(ACCEPT_TIMEOUT, greeting).await {
        Ok(Ok(greeted)) => greeted,
        Ok(Err(e)) => {
            // Every error here starts with the peer's address.
            if let Some(more) = FAILED_HANDSHAKES.check(&addr.ip()) {
                tracing::warn!("refused before any message: {e}{more}");
            }
            return;
        }
        Err(_) => {
            if let Some(more) = FAILED_HANDSHAKES.check(&addr.ip()) {
                tracing::warn!("{addr}: no Hello within {ACCEPT_TIMEOUT:?}; closing{more}");
            }
            return;
        }
    };
    drop(permit);
    let (peer, term) = match hello {
        Some(Message::Hello { id, .. }) if proven.is_some_and(|member| member != id) => {
            let member = proven.unwrap_or(id);
            let reason = format!("says it is node {id} but proved node {member}'s key");
            tracing::warn!("{addr}: refused: {reason}");
            refuse(&mut conn, reason, false).await;
            return;
        }
        Some(Message::Hello { id, term }) => (id, term),
        Some(Message::Open { hash }) => {
            // A data connection: a downloader wants pieces.
            data(conn, hash).await;
            return;
        }
        Some(other) => {
            tracing::warn!("{addr}: expected Hello, got {other:?}; closing");
            refuse(&mut conn, "the first message must be Hello".into(), false).await;
            return;
        }
        None => return,
    };
    if peer == me || !cluster.contains(peer) {
        let reason = format!(
            "node id {peer} is not in this cluster (ids: {:?})",
            cluster.ids()
        );
        tracing::warn!("{addr}: refused: {reason}");
        refuse(&mut conn, reason, false).await;
        return;
    }
    run_registered(me, conn, link, peer, term, addr, false, events).await;
}

pub(super) async fn refuse(conn: &mut NodeConnection, reason: String, duplicate: bool) {
    let _ = tokio::time::timeout(
        Duration::from_secs(1),
        conn.send(&Message::Refused { reason, duplicate }),
    )
    .await;
}

/// Opens a data connection to node `peer`, a holder at `host:port`, for a download:
/// connect (Happy Eyeballs), secure (the holder proves its listed key) and the protocol
/// handshake, within `timeout`. The caller sends `Open` next.
pub async fn open_data(
    security: &Security,
    peer: NodeId,
    host: &str,
    port: u16,
    timeout: Duration,
) -> Result<NodeConnection, String> {
    let options = ConnectOptions {
        timeout,
        ..ConnectOptions::default()
    };
    let (stream, _) = netutil::connect(host, port, &options)
        .await
        .map_err(|e| e.to_string())?;
    let stream = security.dialed(stream, peer).await?;
    NodeConnection::establish(stream, &PROTOCOL)
        .await
        .map_err(|e| e.to_string())
}
