//! The per-peer loop: keep [`WINDOW`](super::WINDOW) requests in flight to one holder, hand
//! each piece that arrives to a verifier, refresh a partial holder's piece map, and stop
//! when the download completes or this peer fails. Each request has its own deadline, and a holder that
//! answers what was not asked is dropped after [`MAX_VIOLATIONS`].

use std::collections::BTreeMap;
use std::io;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::task::JoinSet;

use super::connect::PeerConn;
use super::state::Download;
use super::verify::{on_verified, verify_and_write, Verified};
use super::{lock, piece_len, TICK, VERIFYING};
use crate::swarm::pieces::Bitfield;
use crate::wire::{piece_frame_index, Message, NodeId, PIECE_HEADER};

/// How long one request (a piece, or a partial holder's piece map) may go unanswered. Each
/// request has its own deadline: frames that answer other requests do not extend it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How often partial holders are asked which pieces they have now.
const HAVE_REFRESH: Duration = Duration::from_millis(500);
/// Answers to nothing that was asked (a piece or `Missing` not requested, an unasked
/// `Have`, a message that has no place on a data connection) after which a holder is
/// dropped for this download; its requests go to the other holders.
pub(super) const MAX_VIOLATIONS: u32 = 3;

/// What this peer owes us: one answer per request sent, each with its own deadline.
#[derive(Debug, Default)]
struct Outstanding {
    /// Pieces requested, with the instant by which each must arrive (or be `Missing`).
    pieces: BTreeMap<u32, Instant>,
    /// A `HaveQuery` sent and its deadline.
    have: Option<Instant>,
    /// Answers that answered nothing.
    violations: u32,
}

impl Outstanding {
    fn is_empty(&self) -> bool {
        self.pieces.is_empty() && self.have.is_none()
    }

    /// The earliest deadline, and what it is for.
    fn next_deadline(&self) -> Option<(Instant, String)> {
        let piece = self
            .pieces
            .iter()
            .min_by_key(|(_, at)| **at)
            .map(|(p, at)| (*at, format!("piece {p}")));
        let have = self.have.map(|at| (at, "its piece map".to_owned()));
        piece.into_iter().chain(have).min_by_key(|(at, _)| *at)
    }

    /// Charges one violation; an error once there are [`MAX_VIOLATIONS`].
    fn violation(&mut self, what: String) -> Result<(), String> {
        self.violations += 1;
        if self.violations >= MAX_VIOLATIONS {
            return Err(format!(
                "{MAX_VIOLATIONS} answers to nothing that was asked (the last: {what})"
            ));
        }
        Ok(())
    }
}

/// Fetches pieces from one peer until the download completes or this peer fails.
pub(super) async fn peer_loop(download: &Download, peer: PeerConn) -> Result<(), String> {
    let PeerConn {
        id,
        mut conn,
        partial,
        ..
    } = peer;
    let mut verifying: JoinSet<io::Result<Verified>> = JoinSet::new();
    let mut owed = Outstanding::default();
    let mut refresh = tokio::time::interval(HAVE_REFRESH);
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if download.write_failed() {
            // This node's disk, not this holder: stop without a reason against it.
            return Ok(());
        }
        let mut asked = false;
        loop {
            let next = lock(&download.picker).next_request(id);
            let Some(piece) = next else { break };
            let piece = piece as u32;
            conn.feed(&Message::Request { piece })
                .await
                .map_err(|e| e.to_string())?;
            owed.pieces.insert(piece, Instant::now() + REQUEST_TIMEOUT);
            asked = true;
        }
        if asked {
            conn.flush().await.map_err(|e| e.to_string())?;
        }
        if owed.is_empty() && verifying.is_empty() && download.may_leave() {
            return Ok(());
        }
        let waiting = !owed.is_empty();
        let can_receive = waiting && verifying.len() < VERIFYING;
        let (deadline, late) = owed
            .next_deadline()
            .unwrap_or_else(|| (Instant::now() + REQUEST_TIMEOUT, String::new()));
        tokio::select! {
            _ = download.token.cancelled() => return Err("cancelled".into()),
            Some(joined) = verifying.join_next(), if !verifying.is_empty() => {
                let verified = joined.map_err(|_| "a piece verifier failed".to_owned())?;
                match verified {
                    Ok(verified) => on_verified(download, id, conn.peer(), verified)?,
                    Err(e) => download.fail_write(e),
                }
            }
            _ = tokio::time::sleep_until(deadline.into()), if waiting => {
                return Err(format!("{late} not answered within {REQUEST_TIMEOUT:?}"));
            }
            received = conn.recv_frame(), if can_receive => {
                let frame = match received {
                    Err(e) => return Err(e.to_string()),
                    Ok(None) => return Err("closed the connection".into()),
                    Ok(Some(frame)) => frame,
                };
                on_frame(download, id, frame, &mut owed, &mut verifying)?;
            }
            _ = refresh.tick(), if partial && !waiting => {
                conn.send(&Message::HaveQuery).await.map_err(|e| e.to_string())?;
                owed.have = Some(Instant::now() + REQUEST_TIMEOUT);
            }
            _ = download.changed.notified(), if !waiting => {}
            _ = tokio::time::sleep(TICK), if !waiting => {}
        }
    }
}

/// Handles one frame from a peer: a requested piece goes to a verifier; `Missing` for a
/// requested piece and `Have` after a `HaveQuery` update the picker; an answer to nothing
/// that was asked is a violation; a malformed frame or a refusal ends this peer.
fn on_frame(
    download: &Download,
    id: NodeId,
    frame: BytesMut,
    owed: &mut Outstanding,
    verifying: &mut JoinSet<io::Result<Verified>>,
) -> Result<(), String> {
    if let Some(index) = piece_frame_index(&frame) {
        if owed.pieces.remove(&index).is_none() {
            return owed.violation(format!("piece {index}, not requested"));
        }
        let piece = index as usize;
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
            if owed.pieces.remove(&piece).is_none() {
                return owed.violation(format!("Missing for piece {piece}, not requested"));
            }
            lock(&download.picker).missing(id, piece as usize);
            Ok(())
        }
        Message::Have { have } => {
            if owed.have.take().is_none() {
                return owed.violation("a piece map, not asked for".into());
            }
            let count = download.pieces.hashes.len();
            let bits = Bitfield::from_bytes(count, &have).ok_or("sent a malformed piece map")?;
            lock(&download.picker).update_have(id, bits);
            Ok(())
        }
        Message::Refused { reason, .. } => Err(format!("refused: {reason}")),
        other => owed.violation(format!("unexpected message {other:?}")),
    }
}
