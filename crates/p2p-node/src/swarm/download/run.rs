//! The body of a download: one task per peer, the progress display and the record writer,
//! until the download completes or no peer is left.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::task::JoinSet;

use super::connect::PeerConn;
use super::peer::peer_loop;
use super::report::Progress;
use super::resume::save_record;
use super::state::Download;
use super::{local_io, lock, SwarmError, TICK};

/// Runs one task per peer, the progress display and the record writer, until the download
/// completes or no peer is left.
pub(super) async fn run_peers(
    download: &Arc<Download>,
    peers: Vec<PeerConn>,
    mut failures: Vec<String>,
    part_path: &Path,
    record_path: &Path,
) -> Result<(), SwarmError> {
    let mut tasks = JoinSet::new();
    let mut count = 0;
    for peer in peers {
        if peer.partial {
            download.partial_peers.fetch_add(1, Ordering::Relaxed);
        }
        if !lock(&download.picker).add_peer(peer.id, peer.have.clone()) {
            continue;
        }
        count += 1;
        let download = download.clone();
        tasks.spawn(async move {
            let (id, addr, partial) = (peer.id, peer.conn.peer(), peer.partial);
            let result = peer_loop(&download, peer).await;
            if partial {
                download.partial_peers.fetch_sub(1, Ordering::Relaxed);
            }
            lock(&download.picker).remove_peer(id);
            download.changed.notify_waiters();
            (id, addr, result)
        });
    }
    let progress = Progress::new(&download.name, download.pieces.size, count);
    let mut tick = tokio::time::interval(TICK);
    let mut recorded = usize::MAX;
    let mut flushing = None;
    loop {
        tokio::select! {
            joined = tasks.join_next() => match joined {
                None => break,
                Some(Ok((id, addr, Err(reason)))) => {
                    tracing::warn!("get {}: stopped using Node {id} at {addr}: {reason}", download.name);
                    failures.push(format!("Node {id} at {addr}: {reason}"));
                }
                Some(_) => {}
            },
            _ = tick.tick() => {
                let (done, peers) = {
                    let picker = lock(&download.picker);
                    (picker.done().clone(), picker.peer_count())
                };
                progress.update(download.verified_bytes.load(Ordering::Relaxed), peers);
                if done.count() != recorded {
                    recorded = done.count();
                    save_record(download, record_path, done).await;
                    // Write back what is already verified while the rest arrives, so the
                    // final fsync only has the tail left (one flush at a time).
                    if flushing.as_ref().is_none_or(|f: &tokio::task::JoinHandle<_>| f.is_finished()) {
                        let file = download.file.clone();
                        flushing = Some(tokio::task::spawn_blocking(move || file.sync_data()));
                    }
                }
            }
        }
    }
    let done = lock(&download.picker).done().clone();
    progress.finish(download.verified_bytes.load(Ordering::Relaxed));
    let write_failed = lock(&download.write_failed).take();
    if let Some(e) = write_failed {
        save_record(download, record_path, done).await;
        return Err(local_io(part_path, e));
    }
    if download.token.is_cancelled() {
        save_record(download, record_path, done).await;
        return Err(SwarmError::Cancelled);
    }
    if !done.is_full() {
        let (verified, total) = (done.count(), done.len());
        save_record(download, record_path, done).await;
        return Err(SwarmError::Incomplete {
            verified,
            total,
            reasons: if failures.is_empty() {
                "every holder disconnected".into()
            } else {
                failures.join("; ")
            },
        });
    }
    Ok(())
}
