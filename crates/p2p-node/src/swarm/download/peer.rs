//! The per-peer loop: keep [`WINDOW`](super::WINDOW) requests in flight to one holder, hand each piece that
//! arrives to a verifier, refresh a partial holder's piece map, and stop when the download
//! completes or this peer fails.

use std::io;
use std::time::Duration;

use bytes::BytesMut;
use tokio::task::JoinSet;

use super::connect::PeerConn;
use super::state::Download;
use super::verify::{on_verified, verify_and_write, Verified};
use super::{lock, piece_len, TICK, VERIFYING};
use crate::swarm::pieces::Bitfield;
use crate::wire::{piece_frame_index, Message, NodeId, PIECE_HEADER};

/// A peer with requests pending that sends nothing for this long is dropped.
const PIECE_TIMEOUT: Duration = Duration::from_secs(30);
/// How often partial holders are asked which pieces they have now.
const HAVE_REFRESH: Duration = Duration::from_millis(500);

/// Fetches pieces from one peer until the download completes or this peer fails.
pub(super) async fn peer_loop(download: &Download, peer: PeerConn) -> Result<(), String> {
    let PeerConn {
        id,
        mut conn,
        partial,
        ..
    } = peer;
    let mut verifying: JoinSet<io::Result<Verified>> = JoinSet::new();
    // Replies owed by the peer: one per Request (piece or Missing) and per HaveQuery.
    let mut owed = 0usize;
    let mut refresh = tokio::time::interval(HAVE_REFRESH);
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let mut asked = false;
        loop {
            let next = lock(&download.picker).next_request(id);
            let Some(piece) = next else { break };
            conn.feed(&Message::Request {
                piece: piece as u32,
            })
            .await
            .map_err(|e| e.to_string())?;
            owed += 1;
            asked = true;
        }
        if asked {
            conn.flush().await.map_err(|e| e.to_string())?;
        }
        if owed == 0 && verifying.is_empty() && download.may_leave() {
            return Ok(());
        }
        let can_receive = owed > 0 && verifying.len() < VERIFYING;
        tokio::select! {
            _ = download.token.cancelled() => return Err("cancelled".into()),
            Some(joined) = verifying.join_next(), if !verifying.is_empty() => {
                let verified = joined
                    .map_err(|_| "a piece verifier failed".to_owned())?
                    .map_err(|e| format!("cannot write the piece: {e}"))?;
                on_verified(download, id, conn.peer(), verified)?;
            }
            received = tokio::time::timeout(PIECE_TIMEOUT, conn.recv_frame()), if can_receive => {
                let frame = match received {
                    Err(_) => return Err(format!("sent nothing for {PIECE_TIMEOUT:?}")),
                    Ok(Err(e)) => return Err(e.to_string()),
                    Ok(Ok(None)) => return Err("closed the connection".into()),
                    Ok(Ok(Some(frame))) => frame,
                };
                owed -= 1;
                on_frame(download, id, frame, &mut verifying)?;
            }
            _ = refresh.tick(), if partial && owed == 0 => {
                conn.send(&Message::HaveQuery).await.map_err(|e| e.to_string())?;
                owed += 1;
            }
            _ = download.changed.notified(), if owed == 0 => {}
            _ = tokio::time::sleep(TICK), if owed == 0 => {}
        }
    }
}

/// Handles one frame from a peer: a piece goes to a verifier; `Missing` and `Have` update
/// the picker; anything else ends this peer.
fn on_frame(
    download: &Download,
    id: NodeId,
    frame: BytesMut,
    verifying: &mut JoinSet<io::Result<Verified>>,
) -> Result<(), String> {
    if let Some(index) = piece_frame_index(&frame) {
        let piece = index as usize;
        let count = download.pieces.hashes.len();
        if piece >= count || !lock(&download.picker).is_requested(id, piece) {
            return Err(format!("sent piece {index}, which was not asked for"));
        }
        let len = piece_len(&download.pieces, piece);
        if frame.len() != PIECE_HEADER + len {
            return Err(format!(
                "sent {} bytes for piece {index} of {len} bytes",
                frame.len() - PIECE_HEADER
            ));
        }
        verify_and_write(download, piece, len, frame, verifying);
        return Ok(());
    }
    let msg: Message =
        postcard::from_bytes(&frame).map_err(|e| format!("malformed message: {e}"))?;
    match msg {
        Message::Missing { piece } => {
            lock(&download.picker).missing(id, piece as usize);
            Ok(())
        }
        Message::Have { have } => {
            let count = download.pieces.hashes.len();
            let bits = Bitfield::from_bytes(count, &have).ok_or("sent a malformed piece map")?;
            lock(&download.picker).update_have(id, bits);
            Ok(())
        }
        Message::Refused { reason, .. } => Err(format!("refused: {reason}")),
        other => Err(format!("unexpected message {other:?}")),
    }
}
