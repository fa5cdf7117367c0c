//! A download's shared state: the part file, the picker, the verified pieces as served to
//! others, and the counters the summary reports. Every peer task holds it.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::lock;
use crate::swarm::picker::Picker;
use crate::swarm::pieces::{self, Bitfield, FilePieces};
use crate::wire::{ContentHash, NodeId};

/// A download that cannot finish with the peers it has (only partial holders have the
/// missing pieces) gives up after this long without a new piece.
const STALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A download's shared state.
pub(super) struct Download {
    pub(super) name: String,
    pub(super) pieces: Arc<FilePieces>,
    pub(super) file: Arc<File>,
    /// Held while writing a piece: concurrent buffered writes to one file contend on the
    /// inode lock in the kernel, where waiters spin (measured: 12 % of CPU); in user space
    /// they sleep, and hashing (outside the lock) still runs in parallel.
    pub(super) write_lock: Arc<Mutex<()>>,
    pub(super) picker: Mutex<Picker>,
    /// Verified and written pieces, as served to others.
    pub(super) have: Arc<Mutex<Bitfield>>,
    /// Woken when pieces return to the pool or the download completes.
    pub(super) changed: Notify,
    pub(super) verified_bytes: AtomicU64,
    pub(super) fetched: AtomicUsize,
    pub(super) rejected: AtomicUsize,
    pub(super) duplicates: AtomicUsize,
    pub(super) partial_peers: AtomicUsize,
    pub(super) per_peer: Mutex<BTreeMap<NodeId, u64>>,
    /// When the last new piece was verified.
    pub(super) last_progress: Mutex<Instant>,
    /// The first failed write to the part file (a full disk): the download stops, and
    /// no holder is blamed for it.
    pub(super) write_failed: Mutex<Option<io::Error>>,
    pub(super) token: CancellationToken,
}

impl Download {
    pub(super) fn identity(&self) -> ContentHash {
        pieces::identity(
            self.pieces.size,
            self.pieces.piece_size,
            &self.pieces.hashes,
        )
    }

    /// Records a failed write to the part file; every peer task then stops.
    pub(super) fn fail_write(&self, e: io::Error) {
        lock(&self.write_failed).get_or_insert(e);
        self.changed.notify_waiters();
    }

    /// True once a write to the part file failed.
    pub(super) fn write_failed(&self) -> bool {
        lock(&self.write_failed).is_some()
    }

    /// True when a peer with nothing to do may leave: the download is complete, or it
    /// cannot progress (some piece is held by nobody who may be asked, and no partial
    /// holder may still get it, or none did for [`STALL_TIMEOUT`]).
    pub(super) fn may_leave(&self) -> bool {
        if self.write_failed() {
            return true;
        }
        let picker = lock(&self.picker);
        let waiting_for_partials = self.partial_peers.load(Ordering::Relaxed) > 0
            && lock(&self.last_progress).elapsed() < STALL_TIMEOUT;
        picker.is_complete() || (picker.is_stuck() && !waiting_for_partials)
    }
}
