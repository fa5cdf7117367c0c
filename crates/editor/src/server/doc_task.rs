//! The task that owns one document: the single sequencer.
//!
//! It takes commands from sessions in batches: every command already queued when it wakes
//! up is one batch. Changes are transformed and applied in memory and their journal
//! records collected; then one append and one fsync make the whole batch durable (group
//! commit), and only then do authors get `Ack` and everyone else `Remote`. A join or leave
//! first commits whatever changes precede it, and presence updates wait for the end of the
//! batch, so nobody is ever shown text (or a cursor in text) that is not yet on disk.
//!
//! Outgoing messages go into each session's queue, bounded in messages and bytes
//! ([`OutQueue`]): a full queue means that client is not reading, and it is disconnected
//! (it will reconnect and catch up) rather than allowed to hold the document back. A
//! snapshot's text is encoded once per revision and shared by every joiner.
//!
//! Fairness: presence updates are coalesced (the latest per client) and broadcast at most
//! every [`PRESENCE_FLUSH`], and the task gives the runtime a chance to run other tasks
//! between commands, so a flood on one document does not delay the others.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use netutil::SourceGuard;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{interval, Instant, MissedTickBehavior};

use super::outgoing::{snapshot_parts, OutQueue, Refused, SharedText};
use super::registry::Registry;
use crate::document::{ChangeError, Committed, Document, Outcome};
use crate::ot::{Component, TextOperation};
use crate::presence::{Participant, Selection};
use crate::protocol::{author_id, ErrorCode, Known, RemoteChange, ServerMsg, MAX_FRAME};
use crate::storage::{encode_change, journal_tail, Journal};

/// Commands handled per batch at most (bounds the latency of one group commit).
const MAX_BATCH: usize = 1024;

/// Compact when the journal grows past this, whatever the timer says.
const MAX_JOURNAL_BYTES: u64 = 32 * 1024 * 1024;

/// A journal buffer grown past this by a large batch is freed rather than kept.
const MAX_KEPT_RECORD_BUFFER: usize = 256 * 1024;

/// Shortest interval between two presence broadcasts of one document.
pub const PRESENCE_FLUSH: std::time::Duration = std::time::Duration::from_millis(25);

/// A catch-up larger than this (estimated bytes) is replaced by a snapshot.
const MAX_CATCHUP_BYTES: usize = MAX_FRAME / 2;

pub type Kick = oneshot::Sender<(ErrorCode, String)>;

/// A session asking to join.
pub struct JoinRequest {
    pub session: u64,
    pub addr: SocketAddr,
    pub key: u64,
    pub name: String,
    /// The id of the access token the session joined with, recorded with its changes.
    pub token_id: Option<Arc<str>>,
    pub known_revision: Option<Known>,
    pub out: OutQueue,
    pub kick: Kick,
    pub reply: Option<oneshot::Sender<Result<(), (ErrorCode, String)>>>,
}

/// What sessions ask of the document.
pub enum DocCmd {
    Join(Box<JoinRequest>),
    Change {
        session: u64,
        seq: u64,
        base_revision: u64,
        op: TextOperation,
    },
    Presence {
        session: u64,
        base_revision: u64,
        selection: Option<Selection>,
    },
    Leave {
        session: u64,
    },
}

struct Member {
    addr: SocketAddr,
    key: u64,
    id: u64,
    name: String,
    token_id: Option<Arc<str>>,
    out: OutQueue,
    kick: Option<Kick>,
    selection: Option<Selection>,
}

/// A change applied in memory, waiting for its fsync.
struct Pending {
    session: u64,
    seq: u64,
    revision: u64,
    remote: Arc<ServerMsg>,
}

struct DocState {
    name: String,
    doc: Document,
    journal: Option<Journal>,
    registry: Arc<Registry>,
    members: HashMap<u64, Member>,
    records: Vec<u8>,
    pending: Vec<Pending>,
    dirty: bool,
    last_used: Instant,
    /// The current revision's text, encoded once for every joiner's snapshot.
    shared_text: Option<Arc<SharedText>>,
    /// The latest presence of each client not yet broadcast, and when the next broadcast
    /// may go out.
    presence_due: Vec<(u64, u64, Option<Selection>)>,
    presence_next: Instant,
    /// The source this document was loaded for holds one of its shares while it is.
    _opened: SourceGuard,
}

/// The first message for a joiner.
enum First {
    Catchup(ServerMsg),
    Snapshot(Vec<Participant>),
}

/// Loads document `name` and serves its commands until shutdown or idle unload.
pub async fn run(
    name: String,
    mut rx: mpsc::Receiver<DocCmd>,
    registry: Arc<Registry>,
    opened: SourceGuard,
) {
    let storage = registry.storage.clone();
    let limit = registry.config.history;
    let load_name = name.clone();
    let loaded = tokio::task::spawn_blocking(move || storage.load(&load_name, limit)).await;
    let (doc, journal) = match loaded {
        Ok(Ok(pair)) => pair,
        Ok(Err(e)) => return refuse_all(&name, rx, &registry, e.to_string()).await,
        Err(e) => return refuse_all(&name, rx, &registry, e.to_string()).await,
    };
    tracing::info!(
        "document {name} loaded: revision {}, {} chars",
        doc.revision(),
        doc.text().len_chars()
    );
    let mut state = DocState::new(name, doc, journal, registry.clone(), opened);
    let token = registry.shutdown.token();
    let mut save = interval(registry.config.save_interval);
    save.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        tokio::select! {
            n = rx.recv_many(&mut batch, MAX_BATCH) => {
                if n == 0 {
                    break;
                }
                state.last_used = Instant::now();
                let ok = state.handle_batch(&mut batch).await;
                batch.clear();
                if !ok {
                    break;
                }
            }
            _ = tokio::time::sleep_until(state.presence_next), if !state.presence_due.is_empty() => {
                state.flush_presence();
            }
            _ = save.tick() => {
                let due = state.dirty || state.journal_len() > MAX_JOURNAL_BYTES;
                if due && !state.compact().await {
                    break;
                }
                if state.members.is_empty()
                    && state.last_used.elapsed() >= registry.config.idle_unload
                    && registry.try_unload(&state.name, &mut rx)
                {
                    // Commands that raced the unload are dropped; their sessions retry.
                    tracing::info!("document {} unloaded (idle)", state.name);
                    break;
                }
            }
            _ = token.cancelled() => break,
        }
    }
    if state.dirty && state.journal.is_some() {
        state.compact().await;
    }
    state.kick_all(ErrorCode::Busy, "server shutting down");
    rx.close();
}

/// The document could not be loaded: every join waiting for it gets the reason.
async fn refuse_all(
    name: &str,
    mut rx: mpsc::Receiver<DocCmd>,
    registry: &Registry,
    reason: String,
) {
    if let Some(more) = registry.shares.should_log_doc(name, "open") {
        tracing::error!("cannot open document {name}: {reason}{more}");
    }
    rx.close();
    while let Some(cmd) = rx.recv().await {
        if let DocCmd::Join(mut req) = cmd {
            if let Some(reply) = req.reply.take() {
                let _ = reply.send(Err((
                    ErrorCode::Unavailable,
                    format!("cannot open document {name}: {reason}"),
                )));
            }
        }
    }
    let _ = registry;
}

impl DocState {
    fn new(
        name: String,
        doc: Document,
        journal: Journal,
        registry: Arc<Registry>,
        opened: SourceGuard,
    ) -> Self {
        DocState {
            name,
            doc,
            journal: Some(journal),
            registry,
            members: HashMap::new(),
            records: Vec::new(),
            pending: Vec::new(),
            dirty: false,
            last_used: Instant::now(),
            shared_text: None,
            presence_due: Vec::new(),
            presence_next: Instant::now(),
            _opened: opened,
        }
    }

    fn journal_len(&self) -> u64 {
        self.journal.as_ref().map_or(0, Journal::len)
    }

    /// Handles one batch; false when the document must stop (storage failed).
    async fn handle_batch(&mut self, batch: &mut Vec<DocCmd>) -> bool {
        // Presence updates are kept (the latest per session) and broadcast after the
        // batch's changes, at most every PRESENCE_FLUSH: a client flooding cursor moves
        // costs the others one message per interval.
        for cmd in batch.drain(..) {
            // Other documents' tasks and sessions get the runtime between commands.
            tokio::task::consume_budget().await;
            match cmd {
                DocCmd::Change {
                    session,
                    seq,
                    base_revision,
                    op,
                } => self.change(session, seq, base_revision, op),
                DocCmd::Presence {
                    session,
                    base_revision,
                    selection,
                } => match self.presence_due.iter_mut().find(|(s, _, _)| *s == session) {
                    Some(latest) => *latest = (session, base_revision, selection),
                    None => self.presence_due.push((session, base_revision, selection)),
                },
                other => {
                    if !self.commit().await {
                        return false;
                    }
                    match other {
                        DocCmd::Join(req) => self.join(*req),
                        DocCmd::Leave { session } => self.leave(session),
                        DocCmd::Change { .. } | DocCmd::Presence { .. } => {}
                    }
                }
            }
        }
        if !self.commit().await {
            return false;
        }
        if Instant::now() >= self.presence_next {
            self.flush_presence();
        }
        true
    }

    fn flush_presence(&mut self) {
        self.presence_next = Instant::now() + PRESENCE_FLUSH;
        for (session, base_revision, selection) in std::mem::take(&mut self.presence_due) {
            self.presence(session, base_revision, selection);
        }
    }

    fn change(&mut self, session: u64, seq: u64, base_revision: u64, op: TextOperation) {
        let Some(member) = self.members.get(&session) else {
            return;
        };
        let (key, id, token) = (member.key, member.id, member.token_id.clone());
        match self
            .doc
            .receive_with_token(key, id, token, seq, base_revision, op)
        {
            Ok(Outcome::Applied(committed)) => {
                tracing::info!(
                    "{} r{} {}",
                    member.name,
                    committed.revision,
                    describe(&committed.op)
                );
                encode_change(&mut self.records, committed);
                self.pending.push(Pending {
                    session,
                    seq,
                    revision: committed.revision,
                    remote: Arc::new(ServerMsg::Remote(committed.to_remote())),
                });
                self.dirty = true;
            }
            Ok(Outcome::Duplicate { revision }) => {
                // Acknowledge again (it is durable already) so the session's count of
                // changes in flight stays right; the client ignores acks it does not expect.
                tracing::debug!(
                    "{} {}: change {seq} already applied",
                    member.addr,
                    member.name
                );
                let ack = Arc::new(ServerMsg::Ack { revision, seq });
                self.deliver(session, ack);
            }
            Err(e) => {
                let code = match e {
                    ChangeError::FutureRevision { .. } => ErrorCode::FutureRevision,
                    // Both: catch up and resend on a recent base.
                    ChangeError::TooOld { .. } | ChangeError::TooFarBehind { .. } => {
                        ErrorCode::TooOld
                    }
                    ChangeError::Invalid(_) => ErrorCode::BadChange,
                    ChangeError::TooLarge { .. } => ErrorCode::TooLarge,
                };
                tracing::warn!("{} {}: change refused: {e}", member.addr, member.name);
                self.kick(session, code, format!("change refused: {e}"));
            }
        }
    }

    /// Makes pending changes durable, then delivers them. False if the journal failed: the
    /// in-memory document is then ahead of the disk, so the task stops and the document
    /// is reloaded from disk on next use.
    async fn commit(&mut self) -> bool {
        if self.pending.is_empty() {
            return true;
        }
        let Some(mut journal) = self.journal.take() else {
            return false;
        };
        let records = std::mem::take(&mut self.records);
        let written = tokio::task::spawn_blocking(move || {
            let result = journal.append(&records);
            (journal, records, result)
        })
        .await;
        match written {
            Ok((journal, mut records, Ok(()))) => {
                records.clear();
                // Keep the buffer for the next batch unless a big paste inflated it.
                if records.capacity() <= MAX_KEPT_RECORD_BUFFER {
                    self.records = records;
                }
                self.journal = Some(journal);
            }
            Ok((_, _, Err(e))) => {
                if let Some(more) = self.registry.shares.should_log_doc(&self.name, "journal") {
                    tracing::error!("document {}: journal write failed: {e}{more}", self.name);
                }
                self.kick_all(
                    ErrorCode::Unavailable,
                    "the server cannot save this document",
                );
                return false;
            }
            Err(e) => {
                tracing::error!("document {}: journal task failed: {e}", self.name);
                self.kick_all(
                    ErrorCode::Unavailable,
                    "the server cannot save this document",
                );
                return false;
            }
        }
        let pending = std::mem::take(&mut self.pending);
        // The shared snapshot text is of an older revision now.
        self.shared_text = None;
        for p in &pending {
            if let ServerMsg::Remote(change) = &*p.remote {
                for m in self.members.values_mut() {
                    m.transform_selection(&change.op);
                }
            }
        }
        let shares = &self.registry.shares;
        let failed: Vec<(u64, Refused)> = self
            .members
            .iter()
            .filter_map(|(&session, m)| {
                deliver_in_order(session, m, &pending, shares)
                    .err()
                    .map(|why| (session, why))
            })
            .collect();
        for (session, why) in failed {
            self.deliver_failed(session, why);
        }
        true
    }

    fn join(&mut self, mut req: JoinRequest) {
        let id = author_id(req.key);
        let replaced: Vec<u64> = self
            .members
            .iter()
            .filter(|(_, m)| m.key == req.key)
            .map(|(&s, _)| s)
            .collect();
        for s in replaced {
            self.kick(
                s,
                ErrorCode::Replaced,
                "another connection joined with this client's key".into(),
            );
        }
        let participants: Vec<Participant> =
            self.members.values().map(Member::participant).collect();
        let pushed = match self.first_message(id, req.known_revision, participants) {
            First::Catchup(msg) => req.out.push_msg(Arc::new(msg), &self.registry.shares),
            First::Snapshot(participants) => self.push_snapshot(&req.out, id, participants),
        };
        match pushed {
            Ok(()) => {}
            Err(Refused::OverBudget) => {
                if let Some(reply) = req.reply.take() {
                    let _ = reply.send(Err(over_budget(&self.registry)));
                }
                return;
            }
            Err(_) => return,
        }
        let member = Member {
            addr: req.addr,
            key: req.key,
            id,
            name: req.name.clone(),
            token_id: req.token_id.clone(),
            out: req.out,
            kick: Some(req.kick),
            selection: None,
        };
        let hello = Arc::new(ServerMsg::Presence(member.participant()));
        let others: Vec<u64> = self.members.keys().copied().collect();
        self.members.insert(req.session, member);
        for s in others {
            self.deliver(s, hello.clone());
        }
        if let Some(reply) = req.reply.take() {
            let _ = reply.send(Ok(()));
        }
        tracing::debug!("{} joined {} as {id:016x}", req.addr, self.name);
    }

    fn first_message(
        &self,
        you: u64,
        known: Option<Known>,
        participants: Vec<Participant>,
    ) -> First {
        let epoch = self.doc.epoch();
        let known = known
            .filter(|k| k.epoch == epoch)
            .and_then(|k| self.doc.changes_since(k.revision));
        if let Some(changes) = known {
            let changes: Vec<&Committed> = changes.collect();
            let weight: usize = changes
                .iter()
                .map(|c| crate::document::op_weight(&c.op))
                .sum();
            if weight <= MAX_CATCHUP_BYTES {
                return First::Catchup(ServerMsg::Catchup {
                    you,
                    epoch,
                    changes: changes
                        .into_iter()
                        .map(Committed::to_remote)
                        .collect::<Vec<RemoteChange>>(),
                    participants,
                });
            }
        }
        First::Snapshot(participants)
    }

    /// Queues a snapshot for a joiner: its own few bytes around the revision's shared text.
    fn push_snapshot(
        &mut self,
        out: &OutQueue,
        you: u64,
        participants: Vec<Participant>,
    ) -> Result<(), Refused> {
        let revision = self.doc.revision();
        let text = match &self.shared_text {
            Some(text) if text.revision == revision => text.clone(),
            _ => {
                self.shared_text = None;
                let text = SharedText::encode(revision, self.doc.text(), &self.registry.shares)?;
                self.shared_text = Some(text.clone());
                text
            }
        };
        let Some((head, tail)) = snapshot_parts(you, self.doc.epoch(), revision, participants)
        else {
            tracing::error!("document {}: cannot encode a snapshot", self.name);
            return Err(Refused::Closed);
        };
        out.push_snapshot(head, text, tail, &self.registry.shares)
    }

    fn presence(&mut self, session: u64, base_revision: u64, selection: Option<Selection>) {
        let selection = match selection {
            None => None,
            Some(sel) => match self.doc.place_selection(base_revision, sel) {
                Some(placed) => Some(placed),
                // Too old or from the future: the position cannot be placed; drop it.
                None => return,
            },
        };
        let Some(member) = self.members.get_mut(&session) else {
            return;
        };
        member.selection = selection;
        let msg = Arc::new(ServerMsg::Presence(member.participant()));
        let others: Vec<u64> = self
            .members
            .keys()
            .copied()
            .filter(|&s| s != session)
            .collect();
        for s in others {
            self.deliver(s, msg.clone());
        }
    }

    fn leave(&mut self, session: u64) {
        if let Some(m) = self.members.remove(&session) {
            self.announce_left(m.id);
        }
    }

    fn announce_left(&mut self, id: u64) {
        if self.members.values().any(|m| m.id == id) {
            return; // the same client is still here through a newer connection
        }
        let msg = Arc::new(ServerMsg::Left { id });
        let all: Vec<u64> = self.members.keys().copied().collect();
        for s in all {
            self.deliver(s, msg.clone());
        }
    }

    /// Queues `msg` for `session`; a full queue disconnects that client.
    fn deliver(&mut self, session: u64, msg: Arc<ServerMsg>) {
        let Some(m) = self.members.get(&session) else {
            return;
        };
        if let Err(why) = m.out.push_msg(msg, &self.registry.shares) {
            self.deliver_failed(session, why);
        }
    }

    fn deliver_failed(&mut self, session: u64, why: Refused) {
        let Some(m) = self.members.get(&session) else {
            return;
        };
        let (code, reason) = match why {
            Refused::Closed => return self.leave(session),
            Refused::Full => (
                ErrorCode::TooSlow,
                "you fell too far behind; reconnect to catch up".to_owned(),
            ),
            Refused::OverBudget => over_budget(&self.registry),
        };
        if let Some(more) = self.registry.shares.should_log(m.addr.ip(), "slow") {
            tracing::warn!(
                "{} {}: outgoing queue full; disconnecting this slow client ({reason}){more}",
                m.addr,
                m.name
            );
        }
        self.kick(session, code, reason);
    }

    fn kick(&mut self, session: u64, code: ErrorCode, reason: String) {
        if let Some(mut m) = self.members.remove(&session) {
            if let Some(kick) = m.kick.take() {
                let _ = kick.send((code, reason));
            }
            self.announce_left(m.id);
        }
    }

    fn kick_all(&mut self, code: ErrorCode, reason: &str) {
        for (_, mut m) in self.members.drain() {
            if let Some(kick) = m.kick.take() {
                let _ = kick.send((code, reason.to_owned()));
            }
        }
    }

    /// Rewrites the `.txt` and cuts the journal back. False if storage failed: the task
    /// must stop (see the error branch).
    async fn compact(&mut self) -> bool {
        let Some(journal) = self.journal.take() else {
            return false;
        };
        let storage = self.registry.storage.clone();
        let name = self.name.clone();
        let text = self.doc.text().clone();
        let revision = self.doc.revision();
        let epoch = self.doc.epoch();
        let history = journal_tail(self.doc.history());
        let result = tokio::task::spawn_blocking(move || {
            let compacted = storage.compact(&name, epoch, &text, revision, &history);
            (journal, compacted)
        })
        .await;
        match result {
            Ok((_, Ok(new_journal))) => {
                self.journal = Some(new_journal);
                self.dirty = false;
                tracing::debug!("document {} saved at revision {revision}", self.name);
                true
            }
            Ok((_, Err(e))) => {
                // The old journal is only valid if the failure came before the `.txt` was
                // replaced; after that it may be unlinked or ignored by the next load, and
                // changes acknowledged into it would be lost. Stop instead: the next join
                // reloads from disk, which load() always finds consistent.
                if let Some(more) = self.registry.shares.should_log_doc(&self.name, "save") {
                    tracing::error!("document {}: saving failed: {e}{more}", self.name);
                }
                self.kick_all(
                    ErrorCode::Unavailable,
                    "the server cannot save this document",
                );
                false
            }
            Err(e) => {
                tracing::error!("document {}: save task failed: {e}", self.name);
                false
            }
        }
    }
}

/// The server's memory budget is spent: what a refused client is told.
fn over_budget(registry: &Registry) -> (ErrorCode, String) {
    let mib = registry.shares.memory.limit() / (1024 * 1024);
    (
        ErrorCode::Busy,
        format!("the server is short of memory (--max-memory {mib} MiB in use); try again later"),
    )
}

/// Queues a batch's committed changes for one member (its own as `Ack`, others' as
/// `Remote`), in revision order. Stops at the first full queue and fails: the
/// session may be draining its queue meanwhile, and a later change slipping in after a
/// dropped one would reach the client as a gap in the revisions, which it cannot recover
/// from. A closed queue belongs to a session whose Leave is on its way.
fn deliver_in_order(
    session: u64,
    member: &Member,
    pending: &[Pending],
    shares: &super::shares::Shares,
) -> Result<(), Refused> {
    for p in pending {
        let msg = if session == p.session {
            Arc::new(ServerMsg::Ack {
                revision: p.revision,
                seq: p.seq,
            })
        } else {
            p.remote.clone()
        };
        match member.out.push_msg(msg, shares) {
            Ok(()) => {}
            Err(Refused::Closed) => return Ok(()),
            Err(why) => return Err(why),
        }
    }
    Ok(())
}

impl Member {
    fn participant(&self) -> Participant {
        Participant {
            id: self.id,
            name: self.name.clone(),
            selection: self.selection,
        }
    }

    fn transform_selection(&mut self, op: &TextOperation) {
        if let Some(sel) = self.selection {
            self.selection = Some(sel.transform(op, true));
        }
    }
}

/// A change in the log's short form: `+12 chars at 340`, `-3 at 17`, joined by commas.
pub fn describe(op: &TextOperation) -> String {
    let mut parts = Vec::new();
    let mut pos = 0usize;
    for c in op.components() {
        match c {
            Component::Retain(n) => pos += n,
            Component::Insert(s) => {
                let n = s.chars().count();
                parts.push(format!(
                    "+{n} char{} at {pos}",
                    if n == 1 { "" } else { "s" }
                ));
                pos += n;
            }
            Component::Delete(n) => parts.push(format!("-{n} at {pos}")),
        }
        if parts.len() > 3 {
            parts.push("…".into());
            break;
        }
    }
    if parts.is_empty() {
        "no-op".into()
    } else {
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(session: u64, revision: u64) -> Pending {
        Pending {
            session,
            seq: revision,
            revision,
            remote: Arc::new(ServerMsg::Remote(RemoteChange {
                revision,
                author: session,
                seq: revision,
                op: TextOperation::identity(0),
            })),
        }
    }

    fn revision_of(out: &super::super::outgoing::Outgoing) -> u64 {
        let super::super::outgoing::Payload::Msg(msg) = &out.payload else {
            panic!("a snapshot");
        };
        match &**msg {
            ServerMsg::Ack { revision, .. } => *revision,
            ServerMsg::Remote(change) => change.revision,
            other => panic!("unexpected {other:?}"),
        }
    }

    /// A document's task state over a fresh data directory, made as `run` makes it, with
    /// no timer running: a test drives `handle_batch` itself.
    struct Harness {
        _dir: tempfile::TempDir,
        registry: Arc<Registry>,
        state: DocState,
    }

    impl Harness {
        fn new() -> Harness {
            let dir = tempfile::tempdir().unwrap();
            let config = super::super::Config {
                data_dir: dir.path().to_owned(),
                ..super::super::Config::default()
            };
            let storage =
                crate::storage::Storage::open(dir.path(), config.max_document_bytes).unwrap();
            let registry = Arc::new(Registry::new(storage, config, netutil::Shutdown::new()));
            let opened = registry
                .shares
                .documents
                .try_acquire([127, 0, 0, 1].into())
                .unwrap();
            let (doc, journal) = registry
                .storage
                .load("doc", registry.config.history)
                .unwrap();
            let state = DocState::new("doc".into(), doc, journal, registry.clone(), opened);
            Harness {
                _dir: dir,
                registry,
                state,
            }
        }

        /// A joining session `session` with client key `key`: the command, and the
        /// receiving end of its outgoing queue.
        fn join(&self, session: u64, key: u64) -> (DocCmd, mpsc::Receiver<Outgoing>) {
            let (tx, rx) = mpsc::channel(64);
            let request = JoinRequest {
                session,
                addr: SocketAddr::from(([127, 0, 0, 1], 1000 + session as u16)),
                key,
                name: format!("client{session}"),
                known_revision: None,
                token_id: None,
                out: OutQueue::new(tx, Arc::default(), usize::MAX),
                kick: oneshot::channel().0,
                reply: None,
            };
            (DocCmd::Join(Box::new(request)), rx)
        }

        fn commits(&self) -> u64 {
            self.state.journal.as_ref().map_or(0, Journal::commits)
        }

        /// The text a fresh load from disk finds.
        fn on_disk(&self) -> String {
            let (doc, _) = self
                .registry
                .storage
                .load("doc", self.registry.config.history)
                .unwrap();
            doc.text().to_string()
        }
    }

    use super::super::outgoing::{Outgoing, Payload};

    /// `seq`'s insertion of `text` at `pos` into a document of `len` chars at `base`.
    fn insert(session: u64, seq: u64, base: u64, len: usize, pos: usize, text: &str) -> DocCmd {
        DocCmd::Change {
            session,
            seq,
            base_revision: base,
            op: TextOperation::splice(len, pos, 0, text).unwrap(),
        }
    }

    /// Everything queued for a session, decoded (a snapshot as the message it stands for).
    fn drain(rx: &mut mpsc::Receiver<Outgoing>) -> Vec<ServerMsg> {
        std::iter::from_fn(|| rx.try_recv().ok())
            .map(|out| match out.payload {
                Payload::Msg(msg) => (*msg).clone(),
                Payload::Snapshot { head, text, tail } => {
                    let bytes = [&head[..], &text.encoded[..], &tail[..]].concat();
                    postcard::from_bytes(&bytes).unwrap()
                }
            })
            .collect()
    }

    /// The changes in a session's messages: `("ack" | "remote", revision)`.
    fn changes(msgs: &[ServerMsg]) -> Vec<(&'static str, u64)> {
        msgs.iter()
            .filter_map(|m| match m {
                ServerMsg::Ack { revision, .. } => Some(("ack", *revision)),
                ServerMsg::Remote(change) => Some(("remote", change.revision)),
                _ => None,
            })
            .collect()
    }

    /// Changes queued together from two clients are one batch: one journal append (one
    /// fsync), revisions in arrival order, each author acknowledged and everyone else sent
    /// the change, in revision order, and all of it on disk.
    #[tokio::test]
    async fn changes_queued_together_are_one_commit_delivered_in_revision_order() {
        let mut h = Harness::new();
        let (join_a, mut a) = h.join(1, 11);
        let (join_b, mut b) = h.join(2, 22);
        let mut batch = vec![
            join_a,
            join_b,
            insert(1, 1, 0, 0, 0, "a"),
            insert(2, 1, 0, 0, 0, "b"),
            insert(1, 2, 1, 1, 1, "c"),
            insert(2, 2, 2, 2, 0, "d"),
        ];
        assert!(h.state.handle_batch(&mut batch).await);
        assert_eq!(h.commits(), 1, "one group commit for the batch");
        assert_eq!(h.state.doc.revision(), 4);
        let (a, b) = (drain(&mut a), drain(&mut b));
        assert!(
            matches!(a[0], ServerMsg::Snapshot { revision: 0, .. }),
            "{a:?}"
        );
        assert!(
            matches!(b[0], ServerMsg::Snapshot { revision: 0, .. }),
            "{b:?}"
        );
        assert_eq!(
            changes(&a),
            [("ack", 1), ("remote", 2), ("ack", 3), ("remote", 4)]
        );
        assert_eq!(
            changes(&b),
            [("remote", 1), ("ack", 2), ("remote", 3), ("ack", 4)]
        );
        let acks_of_a: Vec<u64> = a
            .iter()
            .filter_map(|m| match m {
                ServerMsg::Ack { seq, .. } => Some(*seq),
                _ => None,
            })
            .collect();
        assert_eq!(acks_of_a, [1, 2], "acknowledged in the order sent");
        let text = h.state.doc.text().to_string();
        assert_eq!(text.chars().count(), 4, "{text:?}");
        assert_eq!(h.on_disk(), text, "the whole batch is durable");
    }

    /// A join in the middle of a batch commits the changes before it first, so the joiner's
    /// snapshot holds only durable text, and it is sent the later change like everyone else;
    /// a second connection with the same client key replaces the first.
    #[tokio::test]
    async fn a_join_commits_the_changes_before_it_and_replaces_a_connection_with_its_key() {
        let mut h = Harness::new();
        let (join_a, mut a) = h.join(1, 11);
        let (join_c, mut c) = h.join(3, 33);
        let (kick_tx, mut kicked) = oneshot::channel();
        let DocCmd::Join(mut first) = join_a else {
            unreachable!()
        };
        first.kick = kick_tx;
        let mut batch = vec![
            DocCmd::Join(first),
            insert(1, 1, 0, 0, 0, "x"),
            join_c,
            insert(1, 2, 1, 1, 1, "y"),
        ];
        assert!(h.state.handle_batch(&mut batch).await);
        assert_eq!(h.commits(), 2, "the join split the batch in two commits");
        let c_msgs = drain(&mut c);
        match &c_msgs[0] {
            ServerMsg::Snapshot { revision, text, .. } => {
                assert_eq!((*revision, text.as_str()), (1, "x"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(changes(&c_msgs), [("remote", 2)]);
        assert_eq!(changes(&drain(&mut a)), [("ack", 1), ("ack", 2)]);
        assert_eq!(h.on_disk(), "xy");

        // Session 4 joins with session 1's key (the same client, reconnected): session 1
        // is told it was replaced and session 4 takes its place.
        let (join_again, mut again) = h.join(4, 11);
        let mut batch = vec![join_again];
        assert!(h.state.handle_batch(&mut batch).await);
        let (code, _) = kicked.try_recv().expect("the first connection was kicked");
        assert_eq!(code, ErrorCode::Replaced);
        let sessions: std::collections::BTreeSet<u64> = h.state.members.keys().copied().collect();
        assert_eq!(sessions, [3, 4].into());
        assert!(matches!(
            drain(&mut again)[0],
            ServerMsg::Snapshot { revision: 2, .. }
        ));
    }

    #[test]
    fn a_full_queue_stops_delivery_so_a_client_never_sees_a_gap() {
        let (tx, mut rx) = mpsc::channel(2);
        let out = OutQueue::new(tx, Arc::default(), usize::MAX);
        let shares = super::super::shares::Shares::new(&super::super::Config::default());
        let member = Member {
            addr: SocketAddr::from(([127, 0, 0, 1], 9)),
            key: 1,
            id: 1,
            name: "slow".into(),
            token_id: None,
            out,
            kick: None,
            selection: None,
        };
        let batch: Vec<Pending> = (1..=4)
            .map(|r| pending(if r == 2 { 7 } else { 9 }, r))
            .collect();
        assert_eq!(
            deliver_in_order(7, &member, &batch, &shares),
            Err(Refused::Full)
        );
        // Exactly the first two, in order; the one that did not fit and everything after
        // it were not queued (the session is kicked and catches up on reconnect).
        assert_eq!(revision_of(&rx.try_recv().unwrap()), 1);
        let second = rx.try_recv().unwrap();
        let super::super::outgoing::Payload::Msg(second) = &second.payload else {
            panic!("a snapshot");
        };
        assert!(matches!(
            **second,
            ServerMsg::Ack {
                revision: 2,
                seq: 2
            }
        ));
        assert!(rx.try_recv().is_err());
        // With room, everything arrives in revision order.
        assert!(deliver_in_order(7, &member, &batch[..2], &shares).is_ok());
        let got: Vec<u64> = std::iter::from_fn(|| rx.try_recv().ok())
            .map(|m| revision_of(&m))
            .collect();
        assert_eq!(got, [1, 2]);
    }
}
