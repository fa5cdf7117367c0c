//! Establishing connections: every TCP connection to or from another node starts here.
//! Dialing a node and answering its `Hello`, accepting a connection and reading its first
//! message (a `Hello` makes a link, an `Open` a data connection handed to
//! [`crate::swarm::serve`]), and opening a data connection to a holder for a download.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use netutil::{ConnectOptions, NetError};
use tokio::sync::mpsc;

use super::run::run_registered;
use super::{LinkId, NodeConnection, PeerEvent, ACCEPT_TIMEOUT, DIAL_TIMEOUT};
use crate::cluster::config::Cluster;
use crate::cluster::election::{NodeId, Term};
use crate::swarm::serve::Library;
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

pub(super) async fn dial_link(
    me: NodeId,
    peer: NodeId,
    host: String,
    port: u16,
    term: Term,
    link: LinkId,
    events: mpsc::Sender<PeerEvent>,
) {
    let attempt = async {
        let options = ConnectOptions {
            timeout: DIAL_TIMEOUT,
            ..ConnectOptions::default()
        };
        let (stream, addr) = netutil::connect(&host, port, &options).await?;
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
            tracing::debug!("dialing Node {peer} at {host}:{port} failed: {}", e.reason);
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
    permit: tokio::sync::OwnedSemaphorePermit,
    library: Arc<Library>,
) {
    let greeting = async {
        let mut conn = NodeConnection::establish(stream, &PROTOCOL).await?;
        let hello = conn.recv().await?;
        Ok::<_, NetError>((conn, hello))
    };
    let (mut conn, hello) = match tokio::time::timeout(ACCEPT_TIMEOUT, greeting).await {
        Ok(Ok(pair)) => pair,
        Ok(Err(e)) => {
            tracing::warn!("{addr}: handshake failed: {e}");
            return;
        }
        Err(_) => {
            tracing::warn!("{addr}: no Hello within {ACCEPT_TIMEOUT:?}; closing");
            return;
        }
    };
    drop(permit);
    let (peer, term) = match hello {
        Some(Message::Hello { id, term }) => (id, term),
        Some(Message::Open { hash }) => {
            // A data connection: a downloader wants pieces (swarm::serve).
            crate::swarm::serve::serve(conn, hash, library).await;
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

/// Opens a data connection to the holder at `host:port` for a download: connect (Happy
/// Eyeballs) and the protocol handshake, within `timeout`. The caller sends `Open` next.
pub async fn open_data(
    host: &str,
    port: u16,
    timeout: Duration,
) -> Result<NodeConnection, NetError> {
    let options = ConnectOptions {
        timeout,
        ..ConnectOptions::default()
    };
    let (stream, _) = netutil::connect(host, port, &options).await?;
    NodeConnection::establish(stream, &PROTOCOL).await
}
