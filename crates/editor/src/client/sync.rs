//! The client's half of the consistency protocol, as a pure state machine.
//!
//! This is the ot.js / Jupiter client: the local text is the server's revision plus, on
//! top, at most one change in flight (sent, not yet acknowledged) and a buffer of later
//! local edits, composed into one change when it is sent. (The buffer is kept as a list
//! and composed pairwise at send time: composing keystroke by keystroke into one growing
//! operation costs O(components) per keystroke, quadratic while the server is slow.) Local edits apply at once; a remote
//! change is transformed against the in-flight change and then the buffer before it is
//! applied, so local typing never waits for the network.
//!
//! No I/O and no clock: the caller feeds it server messages and local edits, and sends the
//! [`ClientMsg`]s it returns. After a reconnect, [`SyncClient::join`] asks for just the
//! missed changes; a change that was in flight is recognised in the catch-up if it was
//! committed (by author id and sequence number) and resent otherwise, so nothing typed is
//! lost or applied twice.

use std::collections::BTreeMap;

use ropey::Rope;

use crate::ot::{transform, OtError, TextOperation};
use crate::presence::{Participant, Selection};
use crate::protocol::{author_id, ClientMsg, ErrorCode, Known, RemoteChange, ServerMsg};

/// Local edits kept as separate operations while a change is in flight; beyond this they
/// are composed into one, so a long wait for an ack (or an offline spell) keeps memory in
/// proportion to what changed, not to the number of keystrokes.
pub const MAX_BUFFERED_OPS: usize = 4096;

/// Something the caller must do or may show after feeding the state machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Send this to the server.
    Send(ClientMsg),
    /// The whole text was replaced by a server snapshot. `discarded` is true when local
    /// edits that the server never acknowledged could not be carried over (the server no
    /// longer held the history they were based on).
    Reset { discarded: bool },
    /// A remote change, already transformed into local coordinates, was applied.
    RemoteEdit { author: u64, op: TextOperation },
    /// Our change was committed as `revision`.
    Acked { revision: u64 },
    /// The participant list or someone's selection changed.
    Participants,
    /// The server refused something and is closing the connection.
    Error { code: ErrorCode, reason: String },
    /// The server told what this participant may do and under which name it appears.
    Access { read_only: bool, name: String },
}

/// The server broke the protocol's ordering rules, or a local edit does not fit the text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyncError {
    #[error("expected revision {expected} from the server, got {got}")]
    OutOfOrder { expected: u64, got: u64 },
    #[error("no document yet: wait for the server's snapshot")]
    NotReady,
    #[error("read-only: your edits are not accepted")]
    ReadOnly,
    #[error(transparent)]
    Ot(#[from] OtError),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Link {
    Disconnected,
    /// Join sent, waiting for the snapshot or catch-up.
    Joining,
    Joined,
}

#[derive(Clone, Debug)]
struct InFlight {
    seq: u64,
    op: TextOperation,
}

/// Everything the server has not acknowledged, in a form another process can resume from
/// (see [`super::recovery`]): the same key and sequence numbers, so the server and the
/// catch-up recognise a change that did get committed and nothing is applied twice.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Unsaved {
    pub key: u64,
    pub epoch: u64,
    /// The server revision the local text is based on.
    pub revision: u64,
    pub next_seq: u64,
    /// The change sent and not acknowledged: its sequence number and operation.
    pub inflight: Option<(u64, TextOperation)>,
    /// Later local edits, not sent yet.
    pub buffer: Vec<TextOperation>,
    /// The local text (the server's revision plus all of the above).
    pub text: String,
}

/// One client's view of one document.
#[derive(Debug)]
pub struct SyncClient {
    key: u64,
    you: u64,
    revision: Option<u64>,
    epoch: u64,
    text: Rope,
    next_seq: u64,
    inflight: Option<InFlight>,
    buffer: Vec<TextOperation>,
    link: Link,
    participants: BTreeMap<u64, Participant>,
    selection: Option<Selection>,
    presence_dirty: bool,
    /// Sent in every `Join`; never shown.
    token: Option<String>,
    /// Whether the server said our edits are not accepted.
    read_only: bool,
}

impl SyncClient {
    /// A client identified by secret `key` (use [`crate::protocol::random_key`] once per run).
    pub fn new(key: u64) -> Self {
        SyncClient {
            key,
            you: author_id(key),
            revision: None,
            epoch: 0,
            text: Rope::new(),
            next_seq: 1,
            inflight: None,
            buffer: Vec::new(),
            link: Link::Disconnected,
            participants: BTreeMap::new(),
            selection: None,
            presence_dirty: false,
            token: None,
            read_only: false,
        }
    }

    /// Sends `token` with every `Join` (see `editor-server token`).
    pub fn with_token(mut self, token: Option<String>) -> Self {
        self.token = token;
        self
    }

    /// True once the server said this participant may only read.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// The local text: server revision plus unacknowledged local edits.
    pub fn text(&self) -> &Rope {
        &self.text
    }

    /// The last server revision incorporated (None before the first snapshot).
    pub fn revision(&self) -> Option<u64> {
        self.revision
    }

    /// Our public id (as others see us in `Remote.author` and presence).
    pub fn id(&self) -> u64 {
        self.you
    }

    /// True while some local edit has not been acknowledged.
    pub fn has_pending(&self) -> bool {
        self.inflight.is_some() || !self.buffer.is_empty()
    }

    /// Local changes not yet acknowledged: the one in flight plus those buffered behind it.
    pub fn pending_changes(&self) -> usize {
        usize::from(self.inflight.is_some()) + self.buffer.len()
    }

    /// What is not acknowledged yet, to save (None before the first snapshot).
    ///
    /// Edits that were never sent are saved as one change with the next sequence number, as
    /// if sent: every process that resumes from the same save then sends the very same
    /// change, so a second resume recognises it in the catch-up (and the server by its
    /// sequence number) instead of applying it again.
    pub fn unsaved(&self) -> Option<Unsaved> {
        let revision = self.revision?;
        let mut unsaved = Unsaved {
            key: self.key,
            epoch: self.epoch,
            revision,
            next_seq: self.next_seq,
            inflight: self.inflight.as_ref().map(|f| (f.seq, f.op.clone())),
            buffer: self.buffer.clone(),
            text: self.text.to_string(),
        };
        if unsaved.inflight.is_none() && !unsaved.buffer.is_empty() {
            if let Ok(op) = compose_all(std::mem::take(&mut unsaved.buffer)) {
                unsaved.inflight = Some((self.next_seq, op));
                unsaved.next_seq = self.next_seq + 1;
            } else {
                unsaved.buffer = self.buffer.clone();
            }
        }
        Some(unsaved)
    }

    /// A client that picks up where a saved one left off: [`join`](Self::join) then catches
    /// up from the saved revision and sends what the server never committed. Fails if the
    /// saved changes do not lead to the saved text.
    pub fn resume(saved: Unsaved) -> Result<Self, SyncError> {
        let text = Rope::from_str(&saved.text);
        let ops = saved
            .inflight
            .iter()
            .map(|(_, op)| op)
            .chain(saved.buffer.iter());
        let mut expected = None;
        for op in ops {
            if let Some(len) = expected {
                if op.base_len() != len {
                    return Err(OtError::LengthMismatch {
                        expected: len,
                        actual: op.base_len(),
                    }
                    .into());
                }
            }
            expected = Some(op.target_len());
        }
        if let Some(len) = expected.filter(|&len| len != text.len_chars()) {
            return Err(OtError::LengthMismatch {
                expected: len,
                actual: text.len_chars(),
            }
            .into());
        }
        let mut client = SyncClient::new(saved.key);
        client.epoch = saved.epoch;
        client.revision = Some(saved.revision);
        client.next_seq = saved
            .next_seq
            .max(saved.inflight.as_ref().map_or(1, |f| f.0 + 1));
        client.inflight = saved.inflight.map(|(seq, op)| InFlight { seq, op });
        client.buffer = saved.buffer;
        client.text = text;
        Ok(client)
    }

    /// True between a snapshot/catch-up and the next disconnect.
    pub fn is_joined(&self) -> bool {
        self.link == Link::Joined
    }

    /// Other participants, their selections in local coordinates.
    pub fn participants(&self) -> impl Iterator<Item = &Participant> {
        self.participants.values()
    }

    pub fn selection(&self) -> Option<Selection> {
        self.selection
    }

    /// The message that starts (or restarts, after a reconnect) a session.
    pub fn join(&mut self, document: &str, name: &str) -> ClientMsg {
        self.link = Link::Joining;
        ClientMsg::Join {
            document: document.to_owned(),
            name: name.to_owned(),
            key: self.key,
            known_revision: self.revision.map(|revision| Known {
                epoch: self.epoch,
                revision,
            }),
            token: self.token.clone(),
        }
    }

    /// The connection dropped. Local edits are kept; [`join`](Self::join) again.
    pub fn disconnected(&mut self) {
        self.link = Link::Disconnected;
        self.participants.clear();
    }

    /// Applies a local edit; returns the message to send, if one should go now.
    pub fn edit(&mut self, op: TextOperation) -> Result<Option<ClientMsg>, SyncError> {
        if self.revision.is_none() {
            return Err(SyncError::NotReady);
        }
        if self.read_only {
            return Err(SyncError::ReadOnly);
        }
        op.apply(&mut self.text)?;
        if let Some(sel) = self.selection {
            self.selection = Some(sel.transform(&op, true));
        }
        for p in self.participants.values_mut() {
            p.transform(&op);
        }
        self.buffer.push(op);
        if self.buffer.len() > MAX_BUFFERED_OPS {
            // The first entry may already be a large composition: compose the rest among
            // themselves first, then onto it once.
            let rest = compose_all(self.buffer.split_off(1))?;
            if let Some(first) = self.buffer.pop() {
                self.buffer.push(first.compose_owned(&rest)?);
            }
        }
        Ok(self.flush())
    }

    /// Local edits waiting for the in-flight change's ack (after composing, see
    /// [`MAX_BUFFERED_OPS`]).
    pub fn buffered_ops(&self) -> usize {
        self.buffer.len()
    }

    /// Inserts `text` at character `pos` of the local text.
    pub fn insert(&mut self, pos: usize, text: &str) -> Result<Option<ClientMsg>, SyncError> {
        let op = TextOperation::splice(self.text.len_chars(), pos, 0, text)?;
        self.edit(op)
    }

    /// Deletes `len` characters at `pos` of the local text.
    pub fn delete(&mut self, pos: usize, len: usize) -> Result<Option<ClientMsg>, SyncError> {
        let op = TextOperation::splice(self.text.len_chars(), pos, len, "")?;
        self.edit(op)
    }

    /// Sets our selection; returns a presence message when it can be sent now (otherwise
    /// it goes out once every local edit is acknowledged).
    pub fn set_selection(&mut self, selection: Option<Selection>) -> Option<ClientMsg> {
        self.selection = selection;
        self.presence_dirty = true;
        self.presence_msg()
    }

    /// Feeds one server message.
    pub fn receive(&mut self, msg: ServerMsg) -> Result<Vec<Event>, SyncError> {
        let mut events = Vec::new();
        match msg {
            ServerMsg::Snapshot {
                you,
                epoch,
                revision,
                text,
                participants,
            } => {
                let discarded = self.has_pending();
                self.you = you;
                self.epoch = epoch;
                self.text = Rope::from_str(&text);
                self.revision = Some(revision);
                self.inflight = None;
                self.buffer.clear();
                self.set_participants(participants);
                self.selection = self.selection.map(|s| s.clamp(self.text.len_chars()));
                self.link = Link::Joined;
                events.push(Event::Reset { discarded });
                events.push(Event::Participants);
                self.presence_dirty |= self.selection.is_some();
                self.after_join(&mut events);
            }
            ServerMsg::Catchup {
                you,
                epoch,
                changes,
                participants,
            } => {
                if epoch != self.epoch {
                    // Cannot happen with a correct server: it only catches up within one
                    // incarnation of the document.
                    return Err(SyncError::OutOfOrder {
                        expected: self.epoch,
                        got: epoch,
                    });
                }
                self.you = you;
                for change in changes {
                    self.remote(change, &mut events)?;
                }
                self.set_participants(participants);
                self.link = Link::Joined;
                events.push(Event::Participants);
                self.after_join(&mut events);
            }
            ServerMsg::Ack { revision, seq } => {
                if self.inflight.as_ref().is_some_and(|f| f.seq == seq) {
                    self.acked(revision, &mut events);
                }
            }
            ServerMsg::Remote(change) => self.remote(change, &mut events)?,
            ServerMsg::Presence(mut p) => {
                if p.id != self.you {
                    if let Some(sel) = p.selection {
                        p.selection = Some(self.to_local(sel));
                    }
                    self.participants.insert(p.id, p);
                    events.push(Event::Participants);
                }
            }
            ServerMsg::Left { id } => {
                self.participants.remove(&id);
                events.push(Event::Participants);
            }
            ServerMsg::Error { code, reason } => events.push(Event::Error { code, reason }),
            ServerMsg::Access { read_only, name } => {
                self.read_only = read_only;
                events.push(Event::Access { read_only, name });
            }
        }
        Ok(events)
    }

    fn after_join(&mut self, events: &mut Vec<Event>) {
        if let (Some(f), Some(revision)) = (&self.inflight, self.revision) {
            // Not in the catch-up, so never committed: send it again on the new base.
            events.push(Event::Send(ClientMsg::Change {
                base_revision: revision,
                seq: f.seq,
                op: f.op.clone(),
            }));
        } else if let Some(msg) = self.flush() {
            events.push(Event::Send(msg));
        }
        if let Some(msg) = self.presence_msg() {
            events.push(Event::Send(msg));
        }
    }

    fn acked(&mut self, revision: u64, events: &mut Vec<Event>) {
        self.inflight = None;
        self.revision = Some(revision);
        events.push(Event::Acked { revision });
        if let Some(msg) = self.flush() {
            events.push(Event::Send(msg));
        }
        if let Some(msg) = self.presence_msg() {
            events.push(Event::Send(msg));
        }
    }

    fn remote(&mut self, change: RemoteChange, events: &mut Vec<Event>) -> Result<(), SyncError> {
        // Checked: the revision comes from the server, and u64::MAX has no successor.
        let expected = self.revision.map_or(Some(0), |r| r.checked_add(1));
        if expected != Some(change.revision) {
            return Err(SyncError::OutOfOrder {
                expected: expected.unwrap_or(u64::MAX),
                got: change.revision,
            });
        }
        if change.author == self.you && self.inflight.as_ref().is_some_and(|f| f.seq == change.seq)
        {
            // Our own change, committed while we were away: it is an acknowledgement.
            self.acked(change.revision, events);
            return Ok(());
        }
        // Our change goes first at a tie when our id is lower, as on the server.
        let ours_first = self.you < change.author;
        let mut op = change.op;
        if let Some(f) = self.inflight.as_mut() {
            let (mine, theirs) = transform(&f.op, &op, ours_first)?;
            f.op = mine;
            op = theirs;
        }
        for buffered in &mut self.buffer {
            let (mine, theirs) = transform(buffered, &op, ours_first)?;
            *buffered = mine;
            op = theirs;
        }
        op.apply(&mut self.text)?;
        self.revision = Some(change.revision);
        if let Some(sel) = self.selection {
            self.selection = Some(sel.transform(&op, false));
        }
        for p in self.participants.values_mut() {
            p.transform(&op);
        }
        events.push(Event::RemoteEdit {
            author: change.author,
            op,
        });
        Ok(())
    }

    /// Sends the buffer when nothing is in flight and we are joined.
    fn flush(&mut self) -> Option<ClientMsg> {
        if self.link != Link::Joined || self.inflight.is_some() || self.buffer.is_empty() {
            return None;
        }
        let base_revision = self.revision?;
        let op = match compose_all(std::mem::take(&mut self.buffer)) {
            Ok(op) => op,
            Err(e) => {
                // Cannot happen: each buffered edit was applied to the text after the
                // previous one, so their lengths chain.
                tracing::error!("cannot compose buffered edits: {e}");
                return None;
            }
        };
        let seq = self.next_seq;
        self.next_seq += 1;
        self.inflight = Some(InFlight {
            seq,
            op: op.clone(),
        });
        Some(ClientMsg::Change {
            base_revision,
            seq,
            op,
        })
    }

    fn presence_msg(&mut self) -> Option<ClientMsg> {
        if !self.presence_dirty || self.link != Link::Joined || self.has_pending() {
            return None;
        }
        self.presence_dirty = false;
        Some(ClientMsg::Presence {
            base_revision: self.revision?,
            selection: self.selection,
        })
    }

    /// Server coordinates (at our revision) to local ones (after our pending edits).
    fn to_local(&self, sel: Selection) -> Selection {
        let mut sel = sel;
        if let Some(f) = &self.inflight {
            sel = sel.clamp(f.op.base_len()).transform(&f.op, true);
        }
        for b in &self.buffer {
            sel = sel.clamp(b.base_len()).transform(b, true);
        }
        sel.clamp(self.text.len_chars())
    }

    fn set_participants(&mut self, list: Vec<Participant>) {
        self.participants.clear();
        for mut p in list {
            if p.id == self.you {
                continue;
            }
            p.selection = p.selection.map(|s| self.to_local(s));
            self.participants.insert(p.id, p);
        }
    }
}

/// Composes consecutive operations into one, pairwise (a balanced tree of compositions),
/// so n scattered edits cost O(n log n) rather than O(n²).
fn compose_all(mut ops: Vec<TextOperation>) -> Result<TextOperation, OtError> {
    while ops.len() > 1 {
        let mut next = Vec::with_capacity(ops.len().div_ceil(2));
        let mut it = ops.into_iter();
        while let Some(a) = it.next() {
            next.push(match it.next() {
                Some(b) => a.compose_owned(&b)?,
                None => a,
            });
        }
        ops = next;
    }
    Ok(ops.pop().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_remote_change_after_the_last_revision_is_an_error_not_an_overflow() {
        let mut c = SyncClient::new(7);
        c.join("d", "n");
        c.receive(ServerMsg::Snapshot {
            you: c.id(),
            epoch: 1,
            revision: u64::MAX,
            text: "abc".into(),
            participants: Vec::new(),
        })
        .unwrap();
        let change = RemoteChange {
            revision: 0,
            author: 1,
            seq: 1,
            op: TextOperation::splice(3, 0, 0, "x").unwrap(),
        };
        assert!(matches!(
            c.receive(ServerMsg::Remote(change)),
            Err(SyncError::OutOfOrder { .. })
        ));
        assert_eq!(c.text().to_string(), "abc");
    }

    #[test]
    fn a_long_buffer_is_composed_and_still_sends_the_right_change() {
        let mut c = SyncClient::new(7);
        c.join("d", "n");
        c.receive(ServerMsg::Snapshot {
            you: c.id(),
            epoch: 1,
            revision: 0,
            text: "abc".into(),
            participants: vec![],
        })
        .unwrap();
        let first = c.insert(0, "x").unwrap();
        assert!(matches!(first, Some(ClientMsg::Change { seq: 1, .. })));
        let mut server = "xabc".to_owned();
        for i in 0..10_000usize {
            let len = c.text().len_chars();
            let msg = if i % 3 == 2 {
                c.delete(i % len, 1).unwrap()
            } else {
                c.insert((i * 7) % (len + 1), "é").unwrap()
            };
            assert!(
                msg.is_none(),
                "nothing goes out while a change is in flight"
            );
            assert!(c.buffered_ops() <= MAX_BUFFERED_OPS);
        }
        let events = c
            .receive(ServerMsg::Ack {
                revision: 1,
                seq: 1,
            })
            .unwrap();
        let Some(Event::Send(ClientMsg::Change {
            op,
            seq: 2,
            base_revision: 1,
        })) = events.into_iter().find(|e| matches!(e, Event::Send(_)))
        else {
            panic!("the buffer is sent after the ack");
        };
        server = op.apply_str(&server).unwrap();
        assert_eq!(server, c.text().to_string());
    }
}
