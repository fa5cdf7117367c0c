//! Serving pieces to downloaders: the [`Library`] of what this node can serve, and the
//! task that answers one data connection.
//!
//! Files are found by identity only: a downloader names a [`ContentHash`], the library
//! maps it to a file this node indexed in its own `--dir` (or a download in progress
//! there), and the path is built from the local index's name, never from anything the
//! network sent, so `..`, absolute paths or symlinks out of the directory cannot be asked
//! for. Pieces are read with positional reads on a blocking thread. Each connection is its
//! own task and may stall only itself: a downloader that does not read for
//! [`SEND_TIMEOUT`] is disconnected; the number of connections served at once is bounded
//! ([`ServeOptions::max_uploads`]). When every upload slot is taken, one whose downloader
//! has kept it waiting (not reading, or not asking) for [`STALL_EVICT`] is closed and its
//! slot given to the newcomer; otherwise the newcomer is refused with a reason.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use crate::cluster::links::{DataService, NodeConnection};
use bytes::{BufMut, BytesMut};
use tokio_util::sync::CancellationToken;

use crate::swarm::pieces::{self, Bitfield, FilePieces};
use crate::wire::{piece_frame_index, ContentHash, FileEntry, Message, PIECE_HEADER, PIECE_TAG};

/// A downloader that takes longer than this to accept one piece is disconnected.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(5);
/// An upload kept waiting by its downloader this long gives its slot to a new downloader
/// when all slots are taken.
pub const STALL_EVICT: Duration = Duration::from_secs(2);
/// A data connection with no request for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// How this node serves pieces.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Data connections served at once.
    pub max_uploads: usize,
    /// Upload rate limit of the whole node, bytes per second (None: unlimited).
    pub upload_limit: Option<u64>,
    /// Test only: flip a byte in every piece sent, to act as a faulty peer.
    pub corrupt_pieces: bool,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            max_uploads: 16,
            upload_limit: None,
            corrupt_pieces: false,
        }
    }
}

/// One servable file.
#[derive(Debug, Clone)]
pub struct Servable {
    pub name: String,
    /// The file to read: `dir/NAME`, or `dir/NAME.part` while downloading.
    pub path: PathBuf,
    pub pieces: Arc<FilePieces>,
    /// The verified pieces of a download in progress; None for a complete file.
    pub have: Option<Arc<Mutex<Bitfield>>>,
}

/// Everything this node can serve, by identity. Complete files come from directory scans;
/// downloads in progress add themselves as partial entries.
#[derive(Debug)]
pub struct Library {
    dir: PathBuf,
    files: RwLock<HashMap<ContentHash, Servable>>,
    uploads: Arc<Mutex<Uploads>>,
    options: ServeOptions,
    /// Rate limit: when the next byte may be sent.
    pace: Mutex<tokio::time::Instant>,
}

impl Library {
    pub fn new(dir: PathBuf, options: ServeOptions) -> Self {
        Library {
            dir,
            files: RwLock::new(HashMap::new()),
            uploads: Arc::new(Mutex::new(Uploads::default())),
            options,
            pace: Mutex::new(tokio::time::Instant::now()),
        }
    }

    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// Replaces the complete files (after a scan); partial entries stay.
    pub fn set_complete(&self, files: Vec<(FileEntry, Arc<FilePieces>)>) {
        let Ok(mut map) = self.files.write() else {
            return;
        };
        map.retain(|_, s| s.have.is_some());
        for (entry, pieces) in files {
            let servable = Servable {
                path: self.dir.join(&entry.name),
                name: entry.name,
                pieces,
                have: None,
            };
            map.insert(entry.hash, servable);
        }
    }

    /// A download in progress serves its verified pieces (unless the complete file is
    /// already here).
    pub fn add_partial(&self, identity: ContentHash, servable: Servable) {
        if let Ok(mut map) = self.files.write() {
            map.entry(identity).or_insert(servable);
        }
    }

    /// A download just completed: serve the finished file until the next scan lists it.
    pub fn add_complete(&self, identity: ContentHash, servable: Servable) {
        if let Ok(mut map) = self.files.write() {
            map.insert(identity, servable);
        }
    }

    pub fn remove_partial(&self, identity: &ContentHash) {
        if let Ok(mut map) = self.files.write() {
            if map.get(identity).is_some_and(|s| s.have.is_some()) {
                map.remove(identity);
            }
        }
    }

    pub fn lookup(&self, identity: &ContentHash) -> Option<Servable> {
        self.files.read().ok()?.get(identity).cloned()
    }

    /// An upload slot; when all are taken, the one kept waiting longest by its downloader
    /// (at least [`STALL_EVICT`]) is cancelled and its slot given out.
    fn try_upload_slot(&self) -> Option<UploadSlot> {
        let mut uploads = self.uploads.lock().ok()?;
        if uploads.active.len() >= self.options.max_uploads.max(1) {
            let now = Instant::now();
            let (_, victim) = uploads
                .active
                .iter()
                .filter_map(|(&id, state)| state.waiting_since.map(|since| (since, id)))
                .filter(|(since, _)| now.duration_since(*since) >= STALL_EVICT)
                .min()?;
            if let Some(state) = uploads.active.remove(&victim) {
                state.cancel.cancel();
            }
        }
        uploads.next += 1;
        let id = uploads.next;
        let cancel = CancellationToken::new();
        let state = UploadState {
            waiting_since: None,
            cancel: cancel.clone(),
        };
        uploads.active.insert(id, state);
        Some(UploadSlot {
            id,
            uploads: self.uploads.clone(),
            cancel,
        })
    }

    /// With a rate limit: how long to wait before sending `len` bytes (a node-wide token
    /// bucket). Up to [`PACE_CREDIT`] of idle time counts as credit: without it every wait
    /// for the downloader's next request was lost, and the rate stayed ~13 % under the
    /// limit (a limit of 60 MB/s gave 52).
    fn pace(&self, len: usize) -> Option<tokio::time::Instant> {
        let rate = self.options.upload_limit?.max(1);
        let cost = Duration::from_secs_f64(len as f64 / rate as f64);
        let mut next = self.pace.lock().ok()?;
        let now = tokio::time::Instant::now();
        let floor = now.checked_sub(PACE_CREDIT).unwrap_or(now);
        let start = (*next).max(floor);
        *next = start + cost;
        Some(start + cost)
    }
}

/// The uploads in progress.
#[derive(Debug, Default)]
struct Uploads {
    next: u64,
    active: BTreeMap<u64, UploadState>,
}

#[derive(Debug)]
struct UploadState {
    /// Since when the upload waits for its downloader (to read a piece, or to ask).
    waiting_since: Option<Instant>,
    cancel: CancellationToken,
}

/// One upload's slot, freed on drop; cancelled when a newcomer takes it over.
#[derive(Debug)]
struct UploadSlot {
    id: u64,
    uploads: Arc<Mutex<Uploads>>,
    cancel: CancellationToken,
}

impl UploadSlot {
    /// Marks the upload as waiting for its downloader (or not).
    fn waiting(&self, on: bool) {
        if let Ok(mut uploads) = self.uploads.lock() {
            if let Some(state) = uploads.active.get_mut(&self.id) {
                state.waiting_since = on.then(Instant::now);
            }
        }
    }
}

impl Drop for UploadSlot {
    fn drop(&mut self) {
        if let Ok(mut uploads) = self.uploads.lock() {
            uploads.active.remove(&self.id);
        }
    }
}

/// Idle time the upload limiter may make up for (bounded, so a long pause is no burst).
const PACE_CREDIT: Duration = Duration::from_millis(100);

/// The links' [`DataService`]: every data connection they accept and secure is served here.
pub fn data_service(library: Arc<Library>) -> DataService {
    Arc::new(move |conn, hash| Box::pin(serve(conn, hash, library.clone())))
}

/// Answers one data connection whose first message was `Open { hash }`, until the
/// downloader closes it or breaks a rule.
pub async fn serve(mut conn: NodeConnection, hash: ContentHash, library: Arc<Library>) {
    let addr = conn.peer();
    let Some(servable) = library.lookup(&hash) else {
        tracing::warn!("{addr}: refused a download: no file with identity {hash} here");
        refuse(&mut conn, format!("no file with identity {hash} here")).await;
        return;
    };
    let Some(slot) = library.try_upload_slot() else {
        tracing::warn!(
            "{addr}: refused a download of {:?}: {} uploads in progress",
            servable.name,
            library.options.max_uploads
        );
        refuse(&mut conn, "busy: too many uploads in progress".into()).await;
        return;
    };
    let path = servable.path.clone();
    let file = match tokio::task::spawn_blocking(move || File::open(path)).await {
        Ok(Ok(file)) => Arc::new(file),
        Ok(Err(e)) => {
            tracing::warn!("{addr}: cannot open {:?} to serve it: {e}", servable.name);
            refuse(&mut conn, "the file cannot be read here".into()).await;
            return;
        }
        Err(_) => return,
    };
    tracing::info!("{addr}: serving {:?} ({hash})", servable.name);
    let served = tokio::select! {
        served = serve_pieces(&mut conn, &servable, file, &library, &slot) => served,
        _ = slot.cancel.cancelled() => Err(format!(
            "the downloader kept its upload waiting for {STALL_EVICT:?} or more while \
             another downloader needed the slot"
        )),
    };
    match served {
        Ok(sent) => tracing::info!(
            "{addr}: finished serving {:?}: {sent} pieces sent",
            servable.name
        ),
        Err(reason) => tracing::warn!("{addr}: stopped serving {:?}: {reason}", servable.name),
    }
}

async fn refuse(conn: &mut NodeConnection, reason: String) {
    let refusal = Message::Refused {
        reason,
        duplicate: false,
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), conn.send(&refusal)).await;
}

fn have_bytes(servable: &Servable) -> Option<Vec<u8>> {
    let have = servable.have.as_ref()?;
    let bits = have.lock().ok()?;
    Some(bits.as_bytes().to_vec())
}

/// The request loop; Ok(pieces sent) when the downloader closed the connection.
async fn serve_pieces(
    conn: &mut NodeConnection,
    servable: &Servable,
    file: Arc<File>,
    library: &Library,
    slot: &UploadSlot,
) -> Result<u64, String> {
    let pieces = &servable.pieces;
    let opened = Message::Opened {
        size: pieces.size,
        piece_size: pieces.piece_size,
        hashes: pieces.hashes.clone(),
        have: have_bytes(servable),
    };
    send(conn, &opened).await?;
    let mut sent = 0u64;
    let mut buf = BytesMut::new();
    loop {
        slot.waiting(true);
        let received = tokio::time::timeout(IDLE_TIMEOUT, conn.recv_frame()).await;
        slot.waiting(false);
        let frame = match received {
            Err(_) => return Err(format!("no request for {IDLE_TIMEOUT:?}")),
            Ok(Ok(None)) => return Ok(sent),
            Ok(Ok(Some(frame))) => frame,
            Ok(Err(e)) => return Err(e.to_string()),
        };
        if piece_frame_index(&frame).is_some() {
            return Err("a downloader sent piece data".into());
        }
        let msg: Message =
            postcard::from_bytes(&frame).map_err(|e| format!("malformed request: {e}"))?;
        match msg {
            Message::Request { piece } => {
                let index = piece as usize;
                if index >= pieces.hashes.len() {
                    let reason = format!(
                        "piece {piece} out of range (the file has {} pieces)",
                        pieces.hashes.len()
                    );
                    refuse(conn, reason.clone()).await;
                    return Err(reason);
                }
                let held = servable
                    .have
                    .as_ref()
                    .is_none_or(|h| h.lock().is_ok_and(|bits| bits.get(index)));
                if !held {
                    send(conn, &Message::Missing { piece }).await?;
                    continue;
                }
                buf = read_piece(buf, file.clone(), pieces, index).await?;
                if library.options.corrupt_pieces {
                    if let Some(byte) = buf.get_mut(PIECE_HEADER) {
                        *byte ^= 0x55;
                    }
                }
                if let Some(until) = library.pace(buf.len()) {
                    tokio::time::sleep_until(until).await;
                }
                let frame = buf.split().freeze();
                slot.waiting(true);
                let sent_in_time = tokio::time::timeout(SEND_TIMEOUT, conn.send_frame(frame)).await;
                slot.waiting(false);
                match sent_in_time {
                    Err(_) => {
                        return Err(format!("the downloader read nothing for {SEND_TIMEOUT:?}"))
                    }
                    Ok(Err(e)) => return Err(e.to_string()),
                    Ok(Ok(())) => sent += 1,
                }
            }
            Message::HaveQuery => {
                let have = have_bytes(servable)
                    .unwrap_or_else(|| Bitfield::full(pieces.hashes.len()).as_bytes().to_vec());
                send(conn, &Message::Have { have }).await?;
            }
            other => {
                let reason = format!("unexpected message on a data connection: {other:?}");
                refuse(conn, reason.clone()).await;
                return Err(reason);
            }
        }
    }
}

async fn send(conn: &mut NodeConnection, msg: &Message) -> Result<(), String> {
    match tokio::time::timeout(SEND_TIMEOUT, conn.send(msg)).await {
        Err(_) => Err(format!("the downloader read nothing for {SEND_TIMEOUT:?}")),
        Ok(result) => result.map_err(|e| e.to_string()),
    }
}

/// Reads piece `index` into a piece frame, reusing `buf`'s memory when the previous frame
/// has been sent.
async fn read_piece(
    mut buf: BytesMut,
    file: Arc<File>,
    pieces: &FilePieces,
    index: usize,
) -> Result<BytesMut, String> {
    let len = pieces::piece_len(pieces.size, pieces.piece_size, index);
    let offset = pieces::piece_offset(pieces.piece_size, index);
    let read = tokio::task::spawn_blocking(move || {
        buf.clear();
        buf.reserve(PIECE_HEADER + len);
        buf.put_u8(PIECE_TAG);
        buf.put_u32_le(index as u32);
        buf.resize(PIECE_HEADER + len, 0);
        file.read_exact_at(&mut buf[PIECE_HEADER..], offset)
            .map(|()| buf)
    })
    .await;
    match read {
        Ok(Ok(buf)) => Ok(buf),
        Ok(Err(e)) => Err(format!("cannot read piece {index}: {e}")),
        Err(_) => Err("the piece reader failed".into()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn pieces(size: u64) -> Arc<FilePieces> {
        Arc::new(FilePieces {
            size,
            piece_size: pieces::PIECE_SIZE,
            hashes: vec![[size as u8; 32]],
        })
    }

    fn entry(name: &str, p: &FilePieces) -> FileEntry {
        FileEntry {
            name: name.into(),
            size: p.size,
            hash: p.identity(),
            partial: false,
        }
    }

    #[test]
    fn scans_replace_complete_files_but_keep_downloads_in_progress() {
        let library = Library::new(PathBuf::from("/share"), ServeOptions::default());
        let (a, b, c) = (pieces(1), pieces(2), pieces(3));
        library.set_complete(vec![(entry("a", &a), a.clone())]);
        let partial = Servable {
            name: "c".into(),
            path: PathBuf::from("/share/c.part"),
            pieces: c.clone(),
            have: Some(Arc::new(Mutex::new(Bitfield::new(1)))),
        };
        library.add_partial(c.identity(), partial);
        // The path always comes from the local index: dir + indexed name.
        assert_eq!(
            library.lookup(&a.identity()).unwrap().path,
            PathBuf::from("/share/a")
        );
        library.set_complete(vec![(entry("b", &b), b.clone())]);
        assert!(library.lookup(&a.identity()).is_none(), "a is gone");
        assert!(library.lookup(&b.identity()).is_some());
        assert!(library.lookup(&c.identity()).unwrap().have.is_some());
        // Removing a partial entry never removes a complete file of that identity.
        library.remove_partial(&b.identity());
        assert!(library.lookup(&b.identity()).is_some());
        library.remove_partial(&c.identity());
        assert!(library.lookup(&c.identity()).is_none());
        assert!(library.lookup(&ContentHash([9; 32])).is_none());
    }

    #[test]
    fn uploads_are_bounded() {
        let options = ServeOptions {
            max_uploads: 2,
            ..ServeOptions::default()
        };
        let library = Library::new(PathBuf::from("/share"), options);
        let first = library.try_upload_slot().unwrap();
        let second = library.try_upload_slot().unwrap();
        assert!(library.try_upload_slot().is_none());
        drop(first);
        let third = library.try_upload_slot().unwrap();
        // A downloader that keeps its upload waiting loses the slot to a newcomer, but only
        // after STALL_EVICT, and the longest waiting one goes first.
        second.waiting(true);
        assert!(
            library.try_upload_slot().is_none(),
            "not waiting long enough"
        );
        if let Ok(mut uploads) = library.uploads.lock() {
            let long_ago = Instant::now() - STALL_EVICT;
            for state in uploads.active.values_mut() {
                if state.waiting_since.is_some() {
                    state.waiting_since = Some(long_ago);
                }
            }
        }
        let fourth = library.try_upload_slot().unwrap();
        assert!(second.cancel.is_cancelled());
        assert!(!third.cancel.is_cancelled() && !fourth.cancel.is_cancelled());
        assert!(library.try_upload_slot().is_none());
    }
}
