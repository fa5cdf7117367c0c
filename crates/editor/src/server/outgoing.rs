//! A session's outgoing queue, bounded in messages and in bytes.
//!
//! The document task pushes, the session writes. Each queued message carries its size,
//! which counts against the connection's share (`--client-queue-bytes`) and, through a
//! [`Charge`], against the server's memory budget until the message is written or
//! dropped. A client that does not read therefore costs at most its share, and when the
//! server as a whole runs short the sessions holding the most are shed first
//! ([`Shares::shed`]).
//!
//! A snapshot is not copied per joiner: its text is encoded once per revision into a
//! shared, immutable buffer ([`SharedText`]) and each joiner's frame is a few bytes of its
//! own (who it is, the participants) around that buffer, written straight from it.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use netutil::Charge;
use tokio::sync::mpsc;

use super::shares::{Load, Shares};
use crate::document::op_weight;
use crate::presence::Participant;
use crate::protocol::ServerMsg;

/// What the session writes: a message to encode, or a snapshot already encoded in parts.
pub enum Payload {
    Msg(Arc<ServerMsg>),
    /// One frame: the joiner's header, the shared text, the participants.
    Snapshot {
        head: Bytes,
        text: Arc<SharedText>,
        tail: Bytes,
    },
}

/// One queued message, its size, and its hold on the memory budget.
pub struct Outgoing {
    pub payload: Payload,
    pub bytes: usize,
    _charge: Option<Charge>,
}

/// A snapshot text encoded once (postcard: length, then UTF-8), shared by every joiner of
/// that revision; its bytes are charged to the budget once, for as long as it lives.
pub struct SharedText {
    pub revision: u64,
    pub encoded: Bytes,
    _charge: Option<Charge>,
}

/// Why a message could not be queued.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// The client holds its whole share unread (or its message count is full).
    Full,
    /// The server's memory budget is spent, even after shedding the heaviest sessions.
    OverBudget,
    /// The session is gone.
    Closed,
}

/// The document task's end of a session's queue.
#[derive(Clone)]
pub struct OutQueue {
    tx: mpsc::Sender<Outgoing>,
    load: Arc<Load>,
    max_bytes: usize,
}

impl OutQueue {
    pub fn new(tx: mpsc::Sender<Outgoing>, load: Arc<Load>, max_bytes: usize) -> Self {
        OutQueue {
            tx,
            load,
            max_bytes,
        }
    }

    /// Queues a message for the client.
    pub fn push_msg(&self, msg: Arc<ServerMsg>, shares: &Shares) -> Result<(), Refused> {
        let bytes = approx_size(&msg);
        self.push(Payload::Msg(msg), bytes, bytes, shares)
    }

    /// Queues a snapshot frame; only the joiner's own parts are charged here (the shared
    /// text is charged once, when it was encoded).
    pub fn push_snapshot(
        &self,
        head: Bytes,
        text: Arc<SharedText>,
        tail: Bytes,
        shares: &Shares,
    ) -> Result<(), Refused> {
        let own = head.len() + tail.len();
        let bytes = own + text.encoded.len();
        self.push(Payload::Snapshot { head, text, tail }, bytes, own, shares)
    }

    fn push(
        &self,
        payload: Payload,
        bytes: usize,
        charged: usize,
        shares: &Shares,
    ) -> Result<(), Refused> {
        if self.tx.is_closed() {
            return Err(Refused::Closed);
        }
        let unread = self.load.unread.load(Ordering::Relaxed);
        if unread > 0 && unread.saturating_add(bytes) > self.max_bytes {
            return Err(Refused::Full);
        }
        let charge = charge(shares, charged)?;
        let item = Outgoing {
            payload,
            bytes,
            _charge: charge,
        };
        self.load.unread.fetch_add(bytes, Ordering::Relaxed);
        match self.tx.try_send(item) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.load.unread.fetch_sub(bytes, Ordering::Relaxed);
                match e {
                    mpsc::error::TrySendError::Full(_) => Err(Refused::Full),
                    mpsc::error::TrySendError::Closed(_) => Err(Refused::Closed),
                }
            }
        }
    }
}

/// Takes `bytes` from the budget, shedding the heaviest sessions once if it is short.
/// Small messages (an `Ack`, a cursor) are not charged: counting them would cost an atomic
/// operation per recipient for bytes the per-client message bound already limits.
fn charge(shares: &Shares, bytes: usize) -> Result<Option<Charge>, Refused> {
    if bytes < SMALL_MESSAGE {
        return Ok(None);
    }
    if let Some(charge) = shares.memory.try_charge(bytes) {
        return Ok(Some(charge));
    }
    shares.shed(bytes);
    shares
        .memory
        .try_charge(bytes)
        .map(Some)
        .ok_or(Refused::OverBudget)
}

/// Messages below this many bytes are not charged to the memory budget.
const SMALL_MESSAGE: usize = 1024;

impl Outgoing {
    /// The message was written (or dropped): the client's share is free again.
    pub fn written(self, load: &Load) {
        load.unread.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

impl SharedText {
    /// Encodes `text` (postcard's string encoding) once, charged to the budget.
    pub fn encode(
        revision: u64,
        text: &ropey::Rope,
        shares: &Shares,
    ) -> Result<Arc<SharedText>, Refused> {
        let len = text.len_bytes();
        let charge = charge(shares, len + 10)?;
        let mut encoded = Vec::with_capacity(len + 10);
        push_varint(&mut encoded, len as u64);
        for chunk in text.chunks() {
            encoded.extend_from_slice(chunk.as_bytes());
        }
        Ok(Arc::new(SharedText {
            revision,
            encoded: Bytes::from(encoded),
            _charge: charge,
        }))
    }
}

/// The joiner's own parts of a snapshot frame: everything before the text (variant, you,
/// epoch, revision) and after it (participants). Derived from postcard's encoding of a
/// snapshot with empty text and no participants, so it follows the message's definition.
pub fn snapshot_parts(
    you: u64,
    epoch: u64,
    revision: u64,
    participants: Vec<Participant>,
) -> Option<(Bytes, Bytes)> {
    let empty = ServerMsg::Snapshot {
        you,
        epoch,
        revision,
        text: String::new(),
        participants: Vec::new(),
    };
    let mut head = postcard::to_stdvec(&empty).ok()?;
    // The encoding ends with the empty text's length (0) and the empty list's (0).
    if head.len() < 2 || head[head.len() - 2..] != [0, 0] {
        return None;
    }
    head.truncate(head.len() - 2);
    let tail = postcard::to_stdvec(&participants).ok()?;
    Some((Bytes::from(head), Bytes::from(tail)))
}

/// postcard's unsigned varint (LEB128).
fn push_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// About how many bytes a message takes queued and encoded.
pub fn approx_size(msg: &ServerMsg) -> usize {
    match msg {
        ServerMsg::Remote(change) => op_weight(&change.op),
        ServerMsg::Catchup {
            changes,
            participants,
            ..
        } => {
            changes.iter().map(|c| op_weight(&c.op)).sum::<usize>() + participants.len() * 100 + 64
        }
        ServerMsg::Snapshot {
            text, participants, ..
        } => text.len() + participants.len() * 100 + 64,
        ServerMsg::Error { reason, .. } => reason.len() + 32,
        _ => 100,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::presence::Selection;

    #[test]
    fn a_snapshot_in_parts_decodes_as_the_whole_message() {
        let text: String = "héllo wörld ".repeat(50);
        let rope = ropey::Rope::from_str(&text);
        let shares = Shares::new(&super::super::Config::default());
        let shared = SharedText::encode(7, &rope, &shares).unwrap();
        let participants = vec![Participant {
            id: 3,
            name: "ann".into(),
            selection: Some(Selection { anchor: 1, head: 2 }),
        }];
        let (head, tail) = snapshot_parts(u64::MAX, 42, 7, participants.clone()).unwrap();
        let frame = [&head[..], &shared.encoded[..], &tail[..]].concat();
        let decoded: ServerMsg = postcard::from_bytes(&frame).unwrap();
        assert_eq!(
            decoded,
            ServerMsg::Snapshot {
                you: u64::MAX,
                epoch: 42,
                revision: 7,
                text,
                participants,
            }
        );
    }

    #[test]
    fn a_queue_is_bounded_in_bytes_and_written_bytes_free_it() {
        let shares = Shares::new(&super::super::Config::default());
        let (tx, mut rx) = mpsc::channel(100);
        let load = Arc::new(Load::default());
        let queue = OutQueue::new(tx, load.clone(), 1000);
        let big = Arc::new(ServerMsg::Error {
            code: crate::protocol::ErrorCode::Busy,
            reason: "x".repeat(600),
        });
        // The first message always fits (a client must be able to get one large one).
        queue.push_msg(big.clone(), &shares).unwrap();
        assert_eq!(queue.push_msg(big.clone(), &shares), Err(Refused::Full));
        rx.try_recv().unwrap().written(&load);
        queue.push_msg(big, &shares).unwrap();
    }
}
