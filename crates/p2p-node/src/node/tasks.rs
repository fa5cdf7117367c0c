//! The node's background tasks: rescanning the shared directory, writing the leader's
//! index log atomically, and persisting the highest election term seen.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::MissedTickBehavior;

use crate::cluster::election::Term;
use crate::swarm::serve::Library;
use crate::swarm::share::LocalIndex;
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

/// What the index log should say, as the node loop sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum IndexLog {
    /// Never led: write nothing.
    NotLeading,
    /// Leading: the file holds this rendering of the index.
    Leading(String),
    /// No longer leading: if the file still holds our last rendering, put this header line
    /// on top, so nobody takes the stale file for the current index.
    SteppedDown(String),
}

/// Writes the newest rendering of the cluster index to `path`, atomically, coalescing
/// renderings that arrive while a write is in progress.
///
/// Several nodes may share one log path (the original's single `Peer_files.log`). A leader
/// that just stepped down can finish a slow write (fsync) after the new leader's, so every
/// second the current leader checks that the file still holds its rendering and rewrites
/// it if not (logged at info the first time another node's write is replaced, at debug
/// after). A node that stops leading marks its file as out of date, unless another
/// leader has written it since.
pub(super) async fn log_writer(
    path: PathBuf,
    mut renderings: watch::Receiver<IndexLog>,
    token: tokio_util::sync::CancellationToken,
) {
    let mut check = tokio::time::interval(Duration::from_secs(1));
    check.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // What this node last wrote: only a file that differs from it was overwritten.
    let mut last_written: Option<String> = None;
    let mut repairs = 0u64;
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
        let state = renderings.borrow_and_update().clone();
        let text = match state {
            IndexLog::NotLeading => continue,
            IndexLog::SteppedDown(header) => {
                if let Some(ours) = last_written.take() {
                    mark_stale(&path, header, ours).await;
                }
                continue;
            }
            IndexLog::Leading(text) => text,
        };
        // A repair check of a rendering we never wrote is simply its first write.
        let repairing = repair && last_written.as_deref() == Some(text.as_str());
        let path2 = path.clone();
        let text2 = text.clone();
        let written = tokio::task::spawn_blocking(move || {
            if std::fs::read(&path2).is_ok_and(|on_disk| on_disk == text2.as_bytes()) {
                return Ok(false);
            }
            netutil::durable::write_atomic(&path2, text2.as_bytes()).map(|()| true)
        })
        .await;
        match written {
            Ok(Ok(wrote)) => {
                if wrote && repairing {
                    repairs += 1;
                    if repairs == 1 {
                        tracing::info!(
                            "{} was overwritten by another node; rewrote it",
                            path.display()
                        );
                    } else {
                        tracing::debug!(
                            "{} was overwritten by another node; rewrote it",
                            path.display()
                        );
                    }
                }
                last_written = Some(text);
            }
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

/// Puts `header` on top of the index log if it still holds `ours` (no other leader has
/// written it since).
async fn mark_stale(path: &std::path::Path, header: String, ours: String) {
    let path2 = path.to_owned();
    let marked = tokio::task::spawn_blocking(move || {
        if !std::fs::read(&path2).is_ok_and(|on_disk| on_disk == ours.as_bytes()) {
            return Ok(false);
        }
        let text = format!("{header}{ours}");
        netutil::durable::write_atomic(&path2, text.as_bytes()).map(|()| true)
    })
    .await;
    match marked {
        Ok(Ok(true)) => tracing::info!("{} marked as out of date", path.display()),
        Ok(Ok(false)) => {}
        Ok(Err(e)) => tracing::warn!("cannot mark {} as out of date: {e}", path.display()),
        Err(_) => tracing::warn!("marking {} as out of date failed", path.display()),
    }
}

/// The current time in UTC as `2026-12-02 06:07:41 UTC`, from the system clock (days to a
/// civil date by Howard Hinnant's algorithm, to avoid a date crate for one line).
pub(super) fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}
