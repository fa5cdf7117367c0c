//! Step 2 of a download: connect to every holder at once. Each answers `Opened` with the
//! piece hashes, which must hash to the identity the leader listed (so no single holder can
//! lie about them); a partial holder also says which pieces it has.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;

use super::holders::Target;
use super::SwarmContext;
use crate::cluster::links::{self, NodeConnection};
use crate::swarm::pieces::{self, Bitfield, FilePieces};
use crate::wire::{Message, NodeId, MAX_PIECES, PIECE_HEADER, PROTOCOL};

/// How long connecting to a holder may take, handshake and piece list included.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A holder that answered `Opened` with piece hashes matching the identity.
pub(super) struct PeerConn {
    pub(super) id: NodeId,
    pub(super) conn: NodeConnection,
    pub(super) pieces: Arc<FilePieces>,
    pub(super) have: Bitfield,
    pub(super) partial: bool,
}

/// Connects to every holder at once; returns those that answered properly and why the
/// others did not.
pub(super) async fn connect_all(
    ctx: &SwarmContext,
    target: &Target,
) -> (Vec<PeerConn>, Vec<String>) {
    let mut attempts = JoinSet::new();
    for &(id, partial) in &target.holders {
        let Some(addr) = ctx.cluster.get(id).cloned() else {
            continue;
        };
        let target = target.clone();
        let security = ctx.security.clone();
        attempts.spawn(async move {
            let attempt = open_peer(&security, id, &addr.host, addr.port, &target, partial);
            let result = match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
                Ok(r) => r,
                Err(_) => Err(format!("no answer within {CONNECT_TIMEOUT:?}")),
            };
            result.map_err(|e| format!("Node {id} at {addr}: {e}"))
        });
    }
    let mut peers = Vec::new();
    let mut failures = Vec::new();
    while let Some(joined) = attempts.join_next().await {
        match joined {
            Ok(Ok(peer)) => peers.push(peer),
            Ok(Err(reason)) => {
                tracing::warn!("get: {reason}");
                failures.push(reason);
            }
            Err(_) => failures.push("a connection task failed".into()),
        }
    }
    peers.sort_by_key(|p| p.id);
    (peers, failures)
}

async fn open_peer(
    security: &links::Security,
    id: NodeId,
    host: &str,
    port: u16,
    target: &Target,
    partial: bool,
) -> Result<PeerConn, String> {
    let mut conn = links::open_data(security, id, host, port, CONNECT_TIMEOUT).await?;
    conn.send(&Message::Open { hash: target.hash })
        .await
        .map_err(|e| e.to_string())?;
    let (size, piece_size, hashes, have) = match conn.recv().await.map_err(|e| e.to_string())? {
        Some(Message::Opened {
            size,
            piece_size,
            hashes,
            have,
        }) => (size, piece_size, hashes, have),
        Some(Message::Refused { reason, .. }) => return Err(format!("refused: {reason}")),
        Some(other) => return Err(format!("expected Opened, got {other:?}")),
        None => return Err("closed the connection".into()),
    };
    let count = hashes.len();
    let max_piece = PROTOCOL.max_frame - PIECE_HEADER;
    if piece_size == 0
        || piece_size as usize > max_piece
        || count > MAX_PIECES
        || count != pieces::piece_count(size, piece_size)
        || size != target.size
        || pieces::identity(size, piece_size, &hashes) != target.hash
    {
        return Err("sent piece hashes that do not match the file's identity".into());
    }
    let have = match have {
        None => Bitfield::full(count),
        Some(bytes) => Bitfield::from_bytes(count, &bytes)
            .ok_or_else(|| "sent a malformed piece map".to_owned())?,
    };
    tracing::info!(
        "get: connected to Node {id} at {} ({} of {count} pieces)",
        conn.peer(),
        have.count()
    );
    Ok(PeerConn {
        id,
        conn,
        pieces: Arc::new(FilePieces {
            size,
            piece_size,
            hashes,
        }),
        partial: partial || !have.is_full(),
        have,
    })
}
