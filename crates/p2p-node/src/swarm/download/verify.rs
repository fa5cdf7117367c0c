//! Verify + write: hash a received piece against its piece hash and write it at its offset
//! in `NAME.part` (positional writes on blocking threads), then account for it: a good piece
//! counts, a bad one goes back to the pool, and a peer sending [`MAX_BAD`] is dropped.

use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::BytesMut;
use tokio::task::JoinSet;

use super::state::Download;
use super::{lock, MAX_BAD};
use crate::swarm::picker::BadPiece;
use crate::swarm::pieces;
use crate::wire::{NodeId, PIECE_HEADER};

/// What verifying one received piece found.
pub(super) enum Verified {
    Good { piece: usize, len: usize },
    Bad { piece: usize },
}

/// Hashes `frame` (piece `piece`, `len` bytes after the header) on a blocking thread and,
/// when it matches, writes it to the part file; the result joins `verifying`.
pub(super) fn verify_and_write(
    download: &Download,
    piece: usize,
    len: usize,
    frame: BytesMut,
    verifying: &mut JoinSet<io::Result<Verified>>,
) {
    let (file, expected) = (download.file.clone(), download.pieces.hashes[piece]);
    let write_lock = download.write_lock.clone();
    let offset = pieces::piece_offset(download.pieces.piece_size, piece);
    verifying.spawn_blocking(move || {
        let data = &frame[PIECE_HEADER..];
        if pieces::hash_piece(data) != expected {
            return Ok(Verified::Bad { piece });
        }
        let _writing = lock(&write_lock);
        file.write_all_at(data, offset)?;
        Ok(Verified::Good { piece, len })
    });
}

pub(super) fn on_verified(
    download: &Download,
    id: NodeId,
    addr: SocketAddr,
    verified: Verified,
) -> Result<(), String> {
    match verified {
        Verified::Good { piece, len } => {
            *lock(&download.per_peer).entry(id).or_default() += len as u64;
            let new = lock(&download.picker).received_ok(id, piece);
            if new {
                lock(&download.have).set(piece);
                *lock(&download.last_progress) = Instant::now();
                download.fetched.fetch_add(1, Ordering::Relaxed);
                download
                    .verified_bytes
                    .fetch_add(len as u64, Ordering::Relaxed);
                if lock(&download.picker).is_complete() {
                    download.changed.notify_waiters();
                }
            } else {
                download.duplicates.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        }
        Verified::Bad { piece } => {
            download.rejected.fetch_add(1, Ordering::Relaxed);
            let verdict = lock(&download.picker).received_bad(id, piece);
            download.changed.notify_waiters();
            match verdict {
                BadPiece::Retry => {
                    tracing::warn!(
                        "get {}: Node {id} at {addr} sent a bad piece {piece} (hash mismatch); fetching it from another holder",
                        download.name
                    );
                    Ok(())
                }
                BadPiece::DropPeer => {
                    tracing::warn!(
                        "get {}: dropping Node {id} for this download: {MAX_BAD} bad pieces from {addr}",
                        download.name
                    );
                    Err(format!("{MAX_BAD} bad pieces"))
                }
            }
        }
    }
}
