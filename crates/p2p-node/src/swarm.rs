//! Swarm downloads (`get NAME`): fetch a file from every node that holds it at once.
//!
//! 1. Ask the leader for the cluster index; pick the content most holders of NAME have.
//! 2. Open a separate data connection to every holder (`Open { identity }`); each answers
//!    with the piece hashes, which must hash to the identity the leader listed (so no
//!    single holder can lie about them), and a partial holder says which pieces it has.
//! 3. Write into `NAME.part`, with the record of verified pieces beside it
//!    ([`crate::pieces`]). A record for the same identity means a resumed download: its
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
//! of pieces being verified, plus one bit per piece.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, IsTerminal, Write};
use std::net::SocketAddr;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use netutil::{ConnectOptions, Connection};
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::Cluster;
use crate::election::NodeId;
use crate::index::ClusterIndex;
use crate::picker::{BadPiece, Picker};
use crate::pieces::{self, Bitfield, FilePieces, Record, MAX_PIECES};
use crate::protocol::{
    is_safe_name, piece_frame_index, ContentHash, FileEntry, Message, MAX_NAME_LEN, PIECE_HEADER,
    PROTOCOL,
};
use crate::serve::{Library, Servable};

/// Requests in flight per peer. Four 1 MiB pieces cover the bandwidth-delay product of a
/// LAN or loopback many times over, and bound what a peer can have queued for us.
pub const WINDOW: usize = 4;
/// Pieces hashed and written at once per peer, while the next one is received.
pub const VERIFYING: usize = 2;
/// Bad pieces after which a peer is dropped for the download.
pub const MAX_BAD: u32 = 3;
/// How long connecting to a holder may take, handshake and piece list included.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A peer with requests pending that sends nothing for this long is dropped.
const PIECE_TIMEOUT: Duration = Duration::from_secs(30);
/// How often partial holders are asked which pieces they have now.
const HAVE_REFRESH: Duration = Duration::from_millis(500);
/// How often the record of verified pieces and the progress display are updated.
const TICK: Duration = Duration::from_millis(250);
/// A download that cannot finish with the peers it has (only partial holders have the
/// missing pieces) gives up after this long without a new piece.
const STALL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long to wait for the leader's index.
const INDEX_TIMEOUT: Duration = Duration::from_secs(5);
/// Downloads running at once on one node.
pub const MAX_DOWNLOADS: usize = 4;

/// Why a download failed. Each message is shown to the user as is.
#[derive(Debug, thiserror::Error)]
pub enum SwarmError {
    #[error("{0:?} is not a valid file name (one path component, no control characters)")]
    BadName(String),
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
    pub dir: PathBuf,
    pub library: Arc<Library>,
    pub events: mpsc::Sender<SwarmEvent>,
    pub token: CancellationToken,
}

/// The end of a successful download.
#[derive(Debug, Clone)]
pub struct Summary {
    pub name: String,
    pub size: u64,
    pub elapsed: Duration,
    /// Of `elapsed`: making the file durable at the end (fsync, rename, fsync of the dir).
    pub sync: Duration,
    /// Pieces fetched over the network (new ones; end-game duplicates not counted).
    pub fetched: usize,
    /// Pieces verified from an earlier, interrupted download.
    pub resumed: usize,
    pub rejected: usize,
    pub duplicates: usize,
    /// Bytes of verified pieces received from each peer.
    pub per_peer: BTreeMap<NodeId, u64>,
    pub dropped: Vec<NodeId>,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.elapsed.as_secs_f64().max(1e-6);
        let fetched_bytes: u64 = self.per_peer.values().sum();
        write!(
            f,
            "get {}: complete, {} bytes ({}) in {:.2} s ({:.1} MB/s; {:.2} s of it fsync); pieces: {} fetched, {} resumed, {} rejected, {} duplicate; received:",
            self.name,
            self.size,
            mib(self.size),
            secs,
            fetched_bytes as f64 / secs / 1e6,
            self.sync.as_secs_f64(),
            self.fetched,
            self.resumed,
            self.rejected,
            self.duplicates,
        )?;
        for (peer, bytes) in &self.per_peer {
            write!(f, " Node {peer} {bytes} B ({}),", mib(*bytes))?;
        }
        if self.per_peer.is_empty() {
            write!(f, " nothing,")?;
        }
        if self.dropped.is_empty() {
            write!(f, " no peer dropped")
        } else {
            let list: Vec<String> = self.dropped.iter().map(|p| format!("Node {p}")).collect();
            write!(f, " dropped for bad pieces: {}", list.join(", "))
        }
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

type NodeConnection = Connection<Message>;

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
    let (file, done) = open_part(&part_path, &record_path, &target, file_pieces.clone()).await?;
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

    let result = run_peers(&download, peers, failures, &record_path).await;
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

/// Refuses names that could leave the directory or collide with a download's own files
/// (and leaves room for the `.part.pieces.tmp` suffix).
pub fn check_name(name: &str) -> Result<(), SwarmError> {
    if !is_safe_name(name)
        || pieces::is_download_artifact(name)
        || name.len() + pieces::RECORD_SUFFIX.len() + 4 > MAX_NAME_LEN
    {
        return Err(SwarmError::BadName(name.to_owned()));
    }
    Ok(())
}

fn per_peer_ids(target: &Target) -> impl Iterator<Item = NodeId> + '_ {
    target.holders.iter().map(|(id, _)| *id)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these locks cannot leave a half-made change behind
    // (each critical section is one call), so a poisoned lock is still usable.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn piece_len(p: &FilePieces, index: usize) -> usize {
    pieces::piece_len(p.size, p.piece_size, index)
}

async fn ask_index(ctx: &SwarmContext) -> Result<ClusterIndex, SwarmError> {
    let (tx, rx) = oneshot::channel();
    ctx.events
        .send(SwarmEvent::Index(tx))
        .await
        .map_err(|_| SwarmError::Cancelled)?;
    match tokio::time::timeout(INDEX_TIMEOUT, rx).await {
        Ok(Ok(result)) => result.map_err(SwarmError::Index),
        Ok(Err(_)) => Err(SwarmError::Cancelled),
        Err(_) => Err(SwarmError::Index(format!(
            "no answer from the leader within {INDEX_TIMEOUT:?}"
        ))),
    }
}

/// What to download and from whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub size: u64,
    pub hash: ContentHash,
    /// Holders other than this node, with whether each is partial.
    pub holders: Vec<(NodeId, bool)>,
}

/// Picks the content of `name` that most other nodes hold (complete holders count first),
/// and lists its holders.
pub fn choose(index: &ClusterIndex, me: NodeId, name: &str) -> Result<Target, SwarmError> {
    let all = index.holders(name);
    if all.is_empty() {
        return Err(SwarmError::NotIndexed(name.to_owned()));
    }
    let mut by_content: BTreeMap<(ContentHash, u64), Vec<(NodeId, bool)>> = BTreeMap::new();
    for (id, entry) in all.iter().filter(|(id, _)| *id != me) {
        by_content
            .entry((entry.hash, entry.size))
            .or_default()
            .push((*id, entry.partial));
    }
    let best = by_content.into_iter().max_by_key(|(_, holders)| {
        let complete = holders.iter().filter(|(_, partial)| !partial).count();
        (complete, holders.len())
    });
    match best {
        Some(((hash, size), holders)) => Ok(Target {
            size,
            hash,
            holders,
        }),
        None => Err(SwarmError::AlreadyHere(name.to_owned())),
    }
}

/// Refuses to download what is already here, or over a different local file of that name.
fn check_local(ctx: &SwarmContext, name: &str, target: &Target) -> Result<(), SwarmError> {
    if let Some(s) = ctx.library.lookup(&target.hash) {
        if s.have.is_none() && s.path.exists() {
            return Err(SwarmError::AlreadyHere(s.name));
        }
    }
    if std::fs::symlink_metadata(ctx.dir.join(name)).is_ok() {
        return Err(SwarmError::Conflict(name.to_owned()));
    }
    Ok(())
}

/// A holder that answered `Opened` with piece hashes matching the identity.
struct PeerConn {
    id: NodeId,
    conn: NodeConnection,
    pieces: Arc<FilePieces>,
    have: Bitfield,
    partial: bool,
}

/// Connects to every holder at once; returns those that answered properly and why the
/// others did not.
async fn connect_all(ctx: &SwarmContext, target: &Target) -> (Vec<PeerConn>, Vec<String>) {
    let mut attempts = JoinSet::new();
    for &(id, partial) in &target.holders {
        let Some(addr) = ctx.cluster.get(id).cloned() else {
            continue;
        };
        let target = target.clone();
        attempts.spawn(async move {
            let attempt = open_peer(id, &addr.host, addr.port, &target, partial);
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
    id: NodeId,
    host: &str,
    port: u16,
    target: &Target,
    partial: bool,
) -> Result<PeerConn, String> {
    let options = ConnectOptions {
        timeout: CONNECT_TIMEOUT,
        ..ConnectOptions::default()
    };
    let (stream, _) = netutil::connect(host, port, &options)
        .await
        .map_err(|e| e.to_string())?;
    let mut conn = NodeConnection::establish(stream, &PROTOCOL)
        .await
        .map_err(|e| e.to_string())?;
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

/// Opens (or creates) `NAME.part` at full length and returns the pieces already verified
/// there: those its record lists for the same identity that hash correctly now.
async fn open_part(
    part: &Path,
    record: &Path,
    target: &Target,
    file_pieces: Arc<FilePieces>,
) -> Result<(File, Bitfield), SwarmError> {
    let (part, record) = (part.to_owned(), record.to_owned());
    let hash = target.hash;
    let opened = tokio::task::spawn_blocking(move || {
        let io_err = |path: &Path| {
            let path = path.to_owned();
            move |source| SwarmError::Io { path, source }
        };
        let count = file_pieces.hashes.len();
        let previous = std::fs::read(&record)
            .ok()
            .and_then(|bytes| Record::decode(&bytes))
            .filter(|r| r.identity == hash && r.have.len() == count);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(previous.is_none())
            .open(&part)
            .map_err(io_err(&part))?;
        file.set_len(file_pieces.size).map_err(io_err(&part))?;
        let mut done = Bitfield::new(count);
        if let Some(previous) = previous {
            let mut buf = vec![0u8; file_pieces.piece_size as usize];
            for i in previous.have.ones() {
                let len = piece_len(&file_pieces, i);
                let offset = pieces::piece_offset(file_pieces.piece_size, i);
                if file.read_exact_at(&mut buf[..len], offset).is_ok()
                    && pieces::hash_piece(&buf[..len]) == file_pieces.hashes[i]
                {
                    done.set(i);
                }
            }
        }
        write_record(&record, &hash, &file_pieces, &done).map_err(io_err(&record))?;
        Ok((file, done))
    })
    .await;
    opened.unwrap_or(Err(SwarmError::Cancelled))
}

/// Rewrites the record of verified pieces (temp file, rename). No fsync: the record only
/// has to survive the process (kill -9 keeps the page cache); a record that got ahead of
/// the data after a power loss costs re-fetching, because resume re-verifies.
fn write_record(
    path: &Path,
    identity: &ContentHash,
    file_pieces: &FilePieces,
    have: &Bitfield,
) -> io::Result<()> {
    let record = Record {
        identity: *identity,
        size: file_pieces.size,
        piece_size: file_pieces.piece_size,
        have: have.clone(),
    };
    let mut temp = path.as_os_str().to_owned();
    temp.push(".tmp");
    let temp = PathBuf::from(temp);
    std::fs::write(&temp, record.encode())?;
    std::fs::rename(&temp, path)
}

/// A download's shared state.
struct Download {
    name: String,
    pieces: Arc<FilePieces>,
    file: Arc<File>,
    /// Held while writing a piece: concurrent buffered writes to one file contend on the
    /// inode lock in the kernel, where waiters spin (measured: 12 % of CPU); in user space
    /// they sleep, and hashing (outside the lock) still runs in parallel.
    write_lock: Arc<Mutex<()>>,
    picker: Mutex<Picker>,
    /// Verified and written pieces, as served to others.
    have: Arc<Mutex<Bitfield>>,
    /// Woken when pieces return to the pool or the download completes.
    changed: Notify,
    verified_bytes: AtomicU64,
    fetched: AtomicUsize,
    rejected: AtomicUsize,
    duplicates: AtomicUsize,
    partial_peers: AtomicUsize,
    per_peer: Mutex<BTreeMap<NodeId, u64>>,
    /// When the last new piece was verified.
    last_progress: Mutex<Instant>,
    token: CancellationToken,
}

impl Download {
    fn identity(&self) -> ContentHash {
        pieces::identity(
            self.pieces.size,
            self.pieces.piece_size,
            &self.pieces.hashes,
        )
    }

    /// True when a peer with nothing to do may leave: the download is complete, or it
    /// cannot progress (some piece is held by nobody who may be asked, and no partial
    /// holder may still get it, or none did for [`STALL_TIMEOUT`]).
    fn may_leave(&self) -> bool {
        let picker = lock(&self.picker);
        let waiting_for_partials = self.partial_peers.load(Ordering::Relaxed) > 0
            && lock(&self.last_progress).elapsed() < STALL_TIMEOUT;
        picker.is_complete() || (picker.is_stuck() && !waiting_for_partials)
    }
}

/// Runs one task per peer, the progress display and the record writer, until the download
/// completes or no peer is left.
async fn run_peers(
    download: &Arc<Download>,
    peers: Vec<PeerConn>,
    mut failures: Vec<String>,
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

async fn save_record(download: &Download, path: &Path, done: Bitfield) {
    let (path, pieces, identity) = (
        path.to_owned(),
        download.pieces.clone(),
        download.identity(),
    );
    let written =
        tokio::task::spawn_blocking(move || write_record(&path, &identity, &pieces, &done)).await;
    if let Ok(Err(e)) = written {
        tracing::warn!(
            "get {}: cannot write the record of verified pieces: {e}",
            download.name
        );
    }
}

/// What verifying one received piece found.
enum Verified {
    Good { piece: usize, len: usize },
    Bad { piece: usize },
}

/// Fetches pieces from one peer until the download completes or this peer fails.
async fn peer_loop(download: &Download, peer: PeerConn) -> Result<(), String> {
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

fn on_verified(
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

/// Makes the download durable and visible: fsync, move `NAME.part` to `NAME` (never over a
/// file that appeared there meanwhile), fsync the directory, delete the record.
async fn finish(
    download: &Download,
    part: &Path,
    record: &Path,
    dir: &Path,
    name: &str,
) -> Result<(), SwarmError> {
    let (file, part, record, dir, target, name) = (
        download.file.clone(),
        part.to_owned(),
        record.to_owned(),
        dir.to_owned(),
        dir.join(name),
        name.to_owned(),
    );
    let done = tokio::task::spawn_blocking(move || {
        let io_err = |path: &Path, source| SwarmError::Io {
            path: path.to_owned(),
            source,
        };
        file.sync_all().map_err(|e| io_err(&part, e))?;
        publish(&part, &target).map_err(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => SwarmError::Conflict(name),
            _ => io_err(&target, e),
        })?;
        netutil::durable::sync_dir(&dir).map_err(|e| io_err(&dir, e))?;
        let _ = std::fs::remove_file(&record);
        Ok(())
    })
    .await;
    done.unwrap_or(Err(SwarmError::Cancelled))
}

/// Moves the finished `part` to `target` unless something took that name during the
/// download (a file the user put there must not be overwritten, and `rename` would): a hard
/// link fails when the name exists. Where hard links are not supported, renames after
/// checking the name is still free.
fn publish(part: &Path, target: &Path) -> io::Result<()> {
    match std::fs::hard_link(part, target) {
        Ok(()) => std::fs::remove_file(part),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(e),
        Err(_) if std::fs::symlink_metadata(target).is_err() => std::fs::rename(part, target),
        Err(_) => Err(io::ErrorKind::AlreadyExists.into()),
    }
}

/// Progress display: an indicatif bar when stdout is a terminal, otherwise a plain line
/// (stdout and the log) every 10 %.
struct Progress {
    name: String,
    size: u64,
    bar: Option<indicatif::ProgressBar>,
    started: Instant,
    last_tenth: Mutex<u64>,
}

impl Progress {
    fn new(name: &str, size: u64, peers: usize) -> Self {
        let bar = std::io::stdout().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::with_draw_target(
                Some(size),
                indicatif::ProgressDrawTarget::stdout(),
            );
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{prefix} [{bar:30}] {percent:>3}% {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} ETA {eta} {msg}",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_prefix(format!("get {name}"));
            bar.set_message(format!("{peers} peers"));
            bar
        });
        Progress {
            name: name.to_owned(),
            size,
            bar,
            started: Instant::now(),
            last_tenth: Mutex::new(0),
        }
    }

    fn update(&self, verified: u64, peers: usize) {
        if let Some(bar) = &self.bar {
            bar.set_position(verified);
            bar.set_message(format!("{peers} peers"));
            return;
        }
        let tenth = (verified * 10).checked_div(self.size).unwrap_or(10);
        let mut last = lock(&self.last_tenth);
        if tenth > *last && tenth < 10 {
            *last = tenth;
            let secs = self.started.elapsed().as_secs_f64().max(1e-6);
            let line = format!(
                "get {}: {}% ({} of {}) from {peers} peers, {:.1} MB/s",
                self.name,
                tenth * 10,
                mib(verified),
                mib(self.size),
                verified as f64 / secs / 1e6
            );
            tracing::info!("{line}");
            print_line(&line);
        }
    }

    fn finish(&self, verified: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(verified);
            bar.finish_and_clear();
        }
    }
}

/// Prints one line on stdout (the console's output).
pub fn print_line(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::protocol::NodeFiles;

    fn entry(name: &str, hash: u8, partial: bool) -> FileEntry {
        FileEntry {
            name: name.into(),
            size: 10,
            hash: ContentHash([hash; 32]),
            partial,
        }
    }

    #[test]
    fn the_content_most_nodes_hold_is_chosen() {
        let nodes = vec![
            NodeFiles {
                id: 1,
                files: vec![entry("f", 1, false)],
            },
            NodeFiles {
                id: 2,
                files: vec![entry("f", 2, false)],
            },
            NodeFiles {
                id: 3,
                files: vec![entry("f", 2, true)],
            },
            NodeFiles {
                id: 4,
                files: vec![entry("g", 2, false)],
            },
        ];
        let index = ClusterIndex::from_wire(1, 1, nodes);
        let target = choose(&index, 9, "f").unwrap();
        assert_eq!(target.hash, ContentHash([2; 32]));
        assert_eq!(target.holders, vec![(2, false), (3, true)]);
        assert!(matches!(
            choose(&index, 9, "nope"),
            Err(SwarmError::NotIndexed(_))
        ));
        let only_me = ClusterIndex::from_wire(
            1,
            1,
            vec![NodeFiles {
                id: 1,
                files: vec![entry("f", 1, false)],
            }],
        );
        assert!(matches!(
            choose(&only_me, 1, "f"),
            Err(SwarmError::AlreadyHere(_))
        ));
    }

    #[test]
    fn a_finished_download_never_replaces_a_file_that_appeared_meanwhile() {
        let dir = tempfile::tempdir().unwrap();
        let (part, target) = (dir.path().join("f.part"), dir.path().join("f"));
        std::fs::write(&part, b"downloaded").unwrap();
        std::fs::write(&target, b"the user's own").unwrap();
        let err = publish(&part, &target).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&target).unwrap(), b"the user's own");
        assert_eq!(
            std::fs::read(&part).unwrap(),
            b"downloaded",
            "kept to resume"
        );
        std::fs::remove_file(&target).unwrap();
        publish(&part, &target).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"downloaded");
        assert!(!part.exists());
    }

    #[test]
    fn the_summary_names_every_peer() {
        let summary = Summary {
            name: "a b".into(),
            size: 3 << 20,
            elapsed: Duration::from_millis(500),
            sync: Duration::from_millis(100),
            fetched: 3,
            resumed: 0,
            rejected: 1,
            duplicates: 0,
            per_peer: BTreeMap::from([(2, 1 << 20), (3, 2 << 20)]),
            dropped: vec![4],
        };
        let text = summary.to_string();
        assert!(
            text.starts_with("get a b: complete, 3145728 bytes (3.0 MiB) in 0.50 s (6.3 MB/s; 0.10 s of it fsync)"),
            "{text}"
        );
        assert!(text.contains("Node 2 1048576 B"), "{text}");
        assert!(text.contains("dropped for bad pieces: Node 4"), "{text}");
    }
}
