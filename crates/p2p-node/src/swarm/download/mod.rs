//! Swarm downloads (`get NAME`): fetch a file from every node that holds it at once.
//!
//! 1. Ask the leader for the cluster index; pick the content most holders of NAME have.
//! 2. Open a separate data connection to every holder (`Open { identity }`); each answers
//!    with the piece hashes, which must hash to the identity the leader listed (so no
//!    single holder can lie about them), and a partial holder says which pieces it has.
//! 3. Write into `NAME.part`, with the record of verified pieces beside it
//!    ([`crate::swarm::pieces`]). A record for the same identity means a resumed download: its
//!    pieces are read back and re-hashed, and only those that verify count.
//! 4. One task per peer keeps [`WINDOW`] requests in flight and, as pieces arrive, hashes
//!    and writes them (positional writes, on blocking threads, up to [`VERIFYING`] per
//!    peer while the next piece is being received). Which piece to ask next is the
//!    [`Picker`]'s job. A bad piece is fetched again elsewhere; a peer that sends
//!    [`MAX_BAD`] of them is dropped for this download. While it runs the download is
//!    served to others and announced to the leader as a partial holder.
//! 5. When every piece is verified: fsync, rename `NAME.part` to `NAME`, fsync the
//!    directory, delete the record; print the summary (size, time, rate, bytes per peer).
//!
//! Memory stays bounded whatever the file size: per peer a window of requests and a couple

mod connect;
mod holders;
mod peer;
mod publish;
mod report;
mod resume;
mod run;
mod state;
mod verify;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use std::{collections::BTreeMap, io};

use tokio::sync::{mpsc, oneshot, Notify};
use tokio_util::sync::CancellationToken;

use crate::cluster::config::Cluster;
use crate::cluster::index::ClusterIndex;
use crate::cluster::links::Security;
use crate::swarm::picker::Picker;
use crate::swarm::pieces::{self, FilePieces};
use crate::swarm::serve::{Library, Servable};
use crate::wire::{is_safe_name, FileEntry, NodeId, MAX_NAME_LEN};

use connect::connect_all;
use holders::{ask_index, check_local};
use publish::finish;
use resume::open_part;
use run::run_peers;
use state::Download;

pub use holders::{choose, Target};
pub use report::{print_line, Summary};

/// Requests in flight per peer. Four 1 MiB pieces cover the bandwidth-delay product of a
/// LAN or loopback many times over, and bound what a peer can have queued for us.
pub const WINDOW: usize = 4;
/// Pieces hashed and written at once per peer, while the next one is received.
pub const VERIFYING: usize = 2;
/// Bad pieces after which a peer is dropped for the download.
pub const MAX_BAD: u32 = 3;
/// Downloads running at once on one node.
/// How often the record of verified pieces and the progress display are updated, and how
/// often an idle peer task looks for work.
const TICK: Duration = Duration::from_millis(250);
/// Downloads running at once on one node.
pub const MAX_DOWNLOADS: usize = 4;

/// Why a download failed. Each message is shown to the user as is.
#[derive(Debug, thiserror::Error)]
pub enum SwarmError {
    #[error("{0:?} is not a valid file name (one path component, no control or text-direction characters)")]
    BadName(String),
    #[error("the name is {len} bytes long; downloads handle names of at most {max} bytes, since the file's NAME.part.pieces record must fit the 255-byte limit of file names")]
    NameTooLong { len: usize, max: usize },
    #[error("{0:?} is not in the cluster index")]
    NotIndexed(String),
    #[error("this node already has {0:?}")]
    AlreadyHere(String),
    #[error("{0:?} already exists here with other content; move it away to download the cluster's version")]
    Conflict(String),
    #[error("cannot get the cluster index: {0}")]
    Index(String),
    #[error("no holder of {name:?} could be reached ({reasons})")]
    NoHolder { name: String, reasons: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Writing here failed for want of space: this node's trouble, not a holder's.
    #[error("the disk is full: cannot write {path} ({reason}); free some space, then `get` again to resume")]
    DiskFull { path: PathBuf, reason: String },
    #[error("{path} is in the way: it is not a download in progress of this node; move it away to download {name:?}")]
    InTheWay { path: PathBuf, name: String },
    #[error("stopped with {verified} of {total} pieces verified: no holder left for the rest ({reasons}); `get` again to resume")]
    Incomplete {
        verified: usize,
        total: usize,
        reasons: String,
    },
    #[error("interrupted (the node is shutting down); `get` again to resume")]
    Cancelled,
}

/// What a download needs from the node's event loop.
#[derive(Debug)]
pub enum SwarmEvent {
    /// The cluster index, from the leader (or this node's own, when it leads).
    Index(oneshot::Sender<Result<ClusterIndex, String>>),
    /// Announce this partial holding to the leader.
    Partial(FileEntry),
    /// The download of NAME ended (done or failed): no longer partial, no longer running.
    Finished(String),
}

/// What downloads share with the node.
#[derive(Debug)]
pub struct SwarmContext {
    pub me: NodeId,
    pub cluster: Cluster,
    /// Secures data connections to holders (see [`crate::cluster::links::Security`]).
    pub security: Security,
    pub dir: PathBuf,
    pub library: Arc<Library>,
    pub events: mpsc::Sender<SwarmEvent>,
    pub token: CancellationToken,
}

/// Downloads `name` into this node's directory.
pub async fn download(ctx: Arc<SwarmContext>, name: String) -> Result<Summary, SwarmError> {
    let started = Instant::now();
    check_name(&name)?;
    let index = ask_index(&ctx).await?;
    let target = choose(&index, ctx.me, &name)?;
    check_local(&ctx, &name, &target)?;
    tracing::info!(
        "get {name}: {} bytes, id {}, holders: {}",
        target.size,
        target.hash,
        target
            .holders
            .iter()
            .map(|(id, partial)| format!("Node {id}{}", if *partial { " (partial)" } else { "" }))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let (peers, failures) = connect_all(&ctx, &target).await;
    let Some(file_pieces) = peers.first().map(|p| p.pieces.clone()) else {
        return Err(SwarmError::NoHolder {
            name,
            reasons: failures.join("; "),
        });
    };
    let part_path = ctx.dir.join(pieces::part_name(&name));
    let record_path = ctx.dir.join(pieces::record_name(&name));
    let (file, done) = open_part(
        &part_path,
        &record_path,
        &target,
        &name,
        file_pieces.clone(),
    )
    .await?;
    let resumed = done.count();
    if resumed > 0 {
        tracing::info!(
            "get {name}: resuming: {resumed} of {} pieces verified earlier",
            done.len()
        );
    }
    let download = Arc::new(Download {
        name: name.clone(),
        pieces: file_pieces.clone(),
        file: Arc::new(file),
        write_lock: Arc::new(Mutex::new(())),
        picker: Mutex::new(Picker::new(done.clone(), WINDOW, MAX_BAD)),
        have: Arc::new(Mutex::new(done.clone())),
        changed: Notify::new(),
        verified_bytes: AtomicU64::new(
            done.ones().map(|i| piece_len(&file_pieces, i) as u64).sum(),
        ),
        fetched: AtomicUsize::new(0),
        rejected: AtomicUsize::new(0),
        duplicates: AtomicUsize::new(0),
        partial_peers: AtomicUsize::new(0),
        per_peer: Mutex::new(BTreeMap::new()),
        last_progress: Mutex::new(Instant::now()),
        write_failed: Mutex::new(None),
        token: ctx.token.child_token(),
    });
    ctx.library.add_partial(
        target.hash,
        Servable {
            name: name.clone(),
            path: part_path.clone(),
            pieces: file_pieces.clone(),
            have: Some(download.have.clone()),
        },
    );
    let _ = ctx
        .events
        .send(SwarmEvent::Partial(FileEntry {
            name: name.clone(),
            size: target.size,
            hash: target.hash,
            partial: true,
        }))
        .await;

    let result = run_peers(&download, peers, failures, &part_path, &record_path).await;
    let sync_started = Instant::now();
    let outcome = match result {
        Ok(()) => finish(&download, &part_path, &record_path, &ctx.dir, &name).await,
        Err(e) => Err(e),
    };
    let sync = sync_started.elapsed();
    ctx.library.remove_partial(&target.hash);
    if outcome.is_ok() {
        ctx.library.add_complete(
            target.hash,
            Servable {
                name: name.clone(),
                path: ctx.dir.join(&name),
                pieces: file_pieces,
                have: None,
            },
        );
    }
    outcome?;
    let per_peer = lock(&download.per_peer).clone();
    let dropped = {
        let picker = lock(&download.picker);
        per_peer_ids(&target)
            .filter(|p| picker.is_dropped(*p))
            .collect()
    };
    Ok(Summary {
        name,
        size: target.size,
        elapsed: started.elapsed(),
        sync,
        fetched: download.fetched.load(Ordering::Relaxed),
        resumed,
        rejected: download.rejected.load(Ordering::Relaxed),
        duplicates: download.duplicates.load(Ordering::Relaxed),
        per_peer,
        dropped,
    })
}

/// A failed write or sync of this node's own files: [`SwarmError::DiskFull`] when the disk
/// (or the user's quota) is full, else [`SwarmError::Io`].
pub fn local_io(path: &std::path::Path, source: io::Error) -> SwarmError {
    if is_disk_full(&source) {
        SwarmError::DiskFull {
            path: path.to_owned(),
            reason: netutil::cli::one_line(&source),
        }
    } else {
        SwarmError::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// No space left on the device, or the user's disk quota used up.
pub fn is_disk_full(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    )
}

/// Refuses names that could leave the directory (and leaves room for the
/// `.part.pieces.tmp` suffix). A name like a download's own files (`x.part`) is fine: those
/// are known by their record, and a download never writes over a file it did not make.
pub fn check_name(name: &str) -> Result<(), SwarmError> {
    if !is_safe_name(name) {
        return Err(SwarmError::BadName(name.to_owned()));
    }
    let max = MAX_NAME_LEN - pieces::RECORD_SUFFIX.len() - 4;
    if name.len() > max {
        return Err(SwarmError::NameTooLong {
            len: name.len(),
            max,
        });
    }
    Ok(())
}

fn per_peer_ids(target: &Target) -> impl Iterator<Item = NodeId> + '_ {
    target.holders.iter().map(|(id, _)| *id)
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these locks cannot leave a half-made change behind
    // (each critical section is one call), so a poisoned lock is still usable.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub(super) fn piece_len(p: &FilePieces, index: usize) -> usize {
    pieces::piece_len(p.size, p.piece_size, index)
}
