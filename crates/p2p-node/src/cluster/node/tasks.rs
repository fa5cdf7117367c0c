//! The node's background tasks: rescanning the shared directory, writing the leader's
//! index log atomically, and persisting the highest election term seen.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::MissedTickBehavior;

use crate::cluster::election::Term;
use crate::cluster::index::LocalIndex;
use crate::swarm::serve::Library;
use crate::wire::FileEntry;

/// Rescans the shared directory every `every` and reports the list when it changed.
pub(super) async fn scan_loop(
    mut index: LocalIndex,
    every: Duration,
    files: mpsc::Sender<Vec<FileEntry>>,
    library: Arc<Library>,
    token: tokio_util::sync::CancellationToken,
) {
    let mut last: Option<Vec<FileEntry>> = None;
    let mut warned = false;
    loop {
        let scanned = tokio::task::spawn_blocking(move || {
            let result = index.scan();
            (index, result)
        })
        .await;
        let Ok((returned, result)) = scanned else {
            tracing::error!("the directory scanner panicked; file list no longer updated");
            return;
        };
        index = returned;
        match result {
            Ok(list) => {
                warned = false;
                // Every scan (not only on changes): a finished download adds itself to
                // the library, and must leave it if the file is gone before a scan saw it.
                let servable = list
                    .iter()
                    .filter_map(|f| index.pieces(&f.name).map(|p| (f.clone(), p)))
                    .collect();
                library.set_complete(servable);
                if last.as_ref() != Some(&list) {
                    last = Some(list.clone());
                    if files.send(list).await.is_err() {
                        return;
                    }
                }
            }
            Err(e) if !warned => {
                warned = true;
                tracing::warn!("cannot scan {}: {e}", index.dir().display());
            }
            Err(_) => {}
        }
        tokio::select! {
            _ = token.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

/// Writes the newest rendering of the cluster index to `path`, atomically, coalescing
/// renderings that arrive while a write is in progress. `None` means this node does not
/// lead: nothing is written.
///
/// Several nodes may share one log path (the original's single `Peer_files.log`). A leader
/// that just stepped down can finish a slow write (fsync) after the new leader's, so every
/// second the current leader checks that the file still holds its rendering and rewrites
/// it if not.
pub(super) async fn log_writer(
    path: PathBuf,
    mut renderings: watch::Receiver<Option<String>>,
    token: tokio_util::sync::CancellationToken,
) {
    let mut check = tokio::time::interval(Duration::from_secs(1));
    check.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        let repair = tokio::select! {
            _ = token.cancelled() => return,
            changed = renderings.changed() => {
                if changed.is_err() {
                    return;
                }
                false
            }
            _ = check.tick() => true,
        };
        let Some(text) = renderings.borrow_and_update().clone() else {
            continue;
        };
        let path2 = path.clone();
        let written = tokio::task::spawn_blocking(move || {
            if repair && std::fs::read(&path2).is_ok_and(|on_disk| on_disk == text.as_bytes()) {
                return Ok(false);
            }
            netutil::durable::write_atomic(&path2, text.as_bytes()).map(|()| true)
        })
        .await;
        match written {
            Ok(Ok(true)) if repair => {
                tracing::info!(
                    "{} was overwritten by another node; rewrote it",
                    path.display()
                )
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!("cannot write {}: {e}", path.display()),
            Err(_) => tracing::warn!("writing {} failed", path.display()),
        }
    }
}

/// The highest term this node saw before it restarted (0 when there is no readable record).
pub(super) fn read_term(path: &Path) -> Term {
    match std::fs::read_to_string(path) {
        Ok(text) => text.trim().parse().unwrap_or_else(|_| {
            tracing::warn!("{}: not a term; starting from 0", path.display());
            0
        }),
        Err(_) => 0,
    }
}

/// Persists the highest election term seen whenever it changes, atomically (temp file,
/// fsync, rename), so that a restarted node starts above every term it used. Terms change
/// once per election, so the writes are few; they coalesce while one is in progress.
pub(super) async fn term_writer(
    path: PathBuf,
    mut terms: watch::Receiver<Term>,
    token: tokio_util::sync::CancellationToken,
) {
    loop {
        tokio::select! {
            _ = token.cancelled() => return,
            changed = terms.changed() => if changed.is_err() {
                return;
            },
        }
        let term = *terms.borrow_and_update();
        let target = path.clone();
        let written = tokio::task::spawn_blocking(move || {
            netutil::durable::write_atomic(&target, format!("{term}\n").as_bytes())
        })
        .await;
        if let Ok(Err(e)) = written {
            tracing::warn!("cannot record term {term} in {}: {e}", path.display());
        }
    }
}
