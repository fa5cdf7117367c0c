//! One document as the server's sequencer sees it: text, revision and recent history.
//!
//! The server is the single sequencer. A change arrives made on some base revision; it is
//! transformed against every change committed since (kept in a bounded history), checked
//! against the current text, applied, and given the next revision number. The history
//! also serves late joiners the changes they missed, and remembers each client's last
//! sequence number so a change resent after a reconnect is applied only once.
//!
//! Pure: no I/O. Durability is [`storage`](crate::storage)'s job, the network the server's.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use ropey::Rope;

use crate::ot::{transform, OtError, TextOperation};
use crate::presence::Selection;
use crate::protocol::{RemoteChange, MAX_DOCUMENT_BYTES};

/// A committed change as the server keeps it (with the author's secret key, which never
/// leaves the server).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Committed {
    pub revision: u64,
    pub key: u64,
    pub author: u64,
    pub seq: u64,
    pub op: TextOperation,
    /// The id of the access token the change was made with (never the token), for the
    /// journal's record of who changed what; `None` for a loopback client without one.
    pub token: Option<Arc<str>>,
}

impl Committed {
    pub fn to_remote(&self) -> RemoteChange {
        RemoteChange {
            revision: self.revision,
            author: self.author,
            seq: self.seq,
            op: self.op.clone(),
        }
    }
}

/// Why a change was refused. The document is untouched in every case.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangeError {
    #[error("base revision {base} is in the future: the document is at revision {current}")]
    FutureRevision { base: u64, current: u64 },
    #[error("base revision {base} is older than the history kept (oldest: {oldest}); reload the document")]
    TooOld { base: u64, oldest: u64 },
    #[error("base revision {base} is {lag} revisions behind and the change has {components} parts: too much to transform; catch up and resend")]
    TooFarBehind {
        base: u64,
        lag: u64,
        components: usize,
    },
    #[error("invalid change: {0}")]
    Invalid(#[from] OtError),
    #[error("the change would make the document {bytes} bytes, over the limit of {max}")]
    TooLarge { bytes: usize, max: usize },
}

/// How much history to keep for transforming late changes and catching clients up.
#[derive(Clone, Copy, Debug)]
pub struct HistoryLimit {
    pub changes: usize,
    /// Approximate bytes of operations held.
    pub bytes: usize,
}

impl Default for HistoryLimit {
    fn default() -> Self {
        HistoryLimit {
            changes: 100_000,
            bytes: 16 * 1024 * 1024,
        }
    }
}

/// A change made more than this many revisions ago is refused as too old even if the
/// history still reaches back that far: transforming it would cost the document's task
/// time proportional to the lag. (The client reconnects, catches up and resends.)
pub const MAX_TRANSFORM_LAG: u64 = 10_000;

/// Most transformation work one change may cost the sequencer: revisions of lag times the
/// change's components (transforming is linear in both ops, and the history's own size is
/// bounded by [`HistoryLimit`]). Without it a change of millions of components made
/// [`MAX_TRANSFORM_LAG`] revisions ago would hold the document for minutes. Ten million is
/// about a tenth of a second; an honest client over budget reconnects, catches up and
/// resends on a recent base.
pub const MAX_TRANSFORM_WORK: u64 = 10_000_000;

/// Keys remembered for deduplication before the least recent are forgotten.
const MAX_REMEMBERED_KEYS: usize = 100_000;

/// Rough memory held by an operation, for the history bound.
pub fn op_weight(op: &TextOperation) -> usize {
    64 + op
        .components()
        .iter()
        .map(|c| match c {
            crate::ot::Component::Insert(s) => 24 + s.len(),
            _ => 16,
        })
        .sum::<usize>()
}

/// The result of offering a change.
#[derive(Debug)]
pub enum Outcome<'a> {
    Applied(&'a Committed),
    /// `(key, seq)` was already committed (as `revision` when it was the client's latest;
    /// otherwise the current revision); nothing changed.
    Duplicate {
        revision: u64,
    },
}

#[derive(Debug)]
pub struct Document {
    text: Rope,
    revision: u64,
    history: VecDeque<Committed>,
    history_bytes: usize,
    limit: HistoryLimit,
    /// key -> (last committed seq, revision that committed it).
    last_seq: HashMap<u64, (u64, u64)>,
    max_bytes: usize,
    epoch: u64,
}

impl Document {
    pub fn new(text: Rope, revision: u64, limit: HistoryLimit) -> Self {
        Document {
            text,
            revision,
            history: VecDeque::new(),
            history_bytes: 0,
            limit,
            last_seq: HashMap::new(),
            max_bytes: MAX_DOCUMENT_BYTES,
            epoch: 0,
        }
    }

    /// Sets the incarnation id (see [`crate::protocol::Known`]).
    pub fn with_epoch(mut self, epoch: u64) -> Self {
        self.epoch = epoch;
        self
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    pub fn with_max_bytes(mut self, max_bytes: usize) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    pub fn text(&self) -> &Rope {
        &self.text
    }

    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// The oldest base revision a change or a catch-up may start from.
    pub fn oldest_base(&self) -> u64 {
        self.history
            .front()
            .map_or(self.revision, |c| c.revision - 1)
    }

    pub fn history(&self) -> impl DoubleEndedIterator<Item = &Committed> {
        self.history.iter()
    }

    /// Puts a change that is already part of the text into the history (journal replay of
    /// changes older than the saved text). Must be called in revision order, ending at the
    /// current revision.
    pub fn remember(&mut self, committed: Committed) {
        self.note_seq(&committed);
        self.push_history(committed);
    }

    /// Replays a journalled change on top of the text (crash recovery).
    pub fn replay(&mut self, committed: Committed) -> Result<(), ChangeError> {
        if self.revision.checked_add(1) != Some(committed.revision) {
            return Err(ChangeError::FutureRevision {
                base: committed.revision.saturating_sub(1),
                current: self.revision,
            });
        }
        committed.op.apply(&mut self.text)?;
        self.revision = committed.revision;
        self.note_seq(&committed);
        self.push_history(committed);
        Ok(())
    }

    /// Offers a change from client `key` (public id `author`), made on `base_revision`.
    pub fn receive(
        &mut self,
        key: u64,
        author: u64,
        seq: u64,
        base_revision: u64,
        op: TextOperation,
    ) -> Result<Outcome<'_>, ChangeError> {
        self.receive_with_token(key, author, None, seq, base_revision, op)
    }

    /// [`receive`](Self::receive) for a client that joined with the access token `token`
    /// (its id), which the committed change keeps.
    pub fn receive_with_token(
        &mut self,
        key: u64,
        author: u64,
        token: Option<Arc<str>>,
        seq: u64,
        base_revision: u64,
        op: TextOperation,
    ) -> Result<Outcome<'_>, ChangeError> {
        if let Some(&(last, revision)) = self.last_seq.get(&key) {
            if seq == last {
                return Ok(Outcome::Duplicate { revision });
            }
            if seq < last {
                return Ok(Outcome::Duplicate {
                    revision: self.revision,
                });
            }
        }
        if base_revision > self.revision {
            return Err(ChangeError::FutureRevision {
                base: base_revision,
                current: self.revision,
            });
        }
        let oldest = self
            .oldest_base()
            .max(self.revision.saturating_sub(MAX_TRANSFORM_LAG));
        if base_revision < oldest {
            return Err(ChangeError::TooOld {
                base: base_revision,
                oldest,
            });
        }
        let lag = self.revision - base_revision;
        let components = op.components().len();
        if lag.saturating_mul(components as u64) > MAX_TRANSFORM_WORK {
            return Err(ChangeError::TooFarBehind {
                base: base_revision,
                lag,
                components,
            });
        }
        let skip = usize::try_from(base_revision - self.oldest_base()).unwrap_or(usize::MAX);
        let mut op = op;
        for committed in self.history.iter().skip(skip) {
            // The incoming change goes first at a tie when its author's id is lower; the
            // client does the same with the roles reversed, so both agree.
            op = transform(&op, &committed.op, author < committed.author)?.0;
        }
        if op.base_len() != self.text.len_chars() {
            return Err(OtError::LengthMismatch {
                expected: op.base_len(),
                actual: self.text.len_chars(),
            }
            .into());
        }
        self.check_size(&op)?;
        op.apply(&mut self.text)?;
        self.revision += 1;
        let committed = Committed {
            revision: self.revision,
            key,
            author,
            seq,
            op,
            token,
        };
        self.note_seq(&committed);
        self.push_history(committed);
        let applied = self.history.back().ok_or(ChangeError::TooOld {
            base: base_revision,
            oldest,
        })?;
        Ok(Outcome::Applied(applied))
    }

    /// The changes after `known`, if the history still holds all of them.
    pub fn changes_since(&self, known: u64) -> Option<impl Iterator<Item = &Committed>> {
        if known > self.revision || known < self.oldest_base() {
            return None;
        }
        let skip = usize::try_from(known - self.oldest_base()).ok()?;
        Some(self.history.iter().skip(skip))
    }

    /// Places a selection made on `base_revision` in the current text. None when it
    /// cannot be placed: the base is in the future, older than the history, or more than
    /// [`MAX_TRANSFORM_LAG`] revisions behind (the same bound as for changes, so a cursor
    /// update cannot make the sequencer walk the whole history either).
    pub fn place_selection(&self, base_revision: u64, selection: Selection) -> Option<Selection> {
        if base_revision < self.revision.saturating_sub(MAX_TRANSFORM_LAG) {
            return None;
        }
        let mut sel = selection;
        for c in self.changes_since(base_revision)? {
            sel = sel.clamp(c.op.base_len()).transform(&c.op, true);
        }
        Some(sel.clamp(self.text.len_chars()))
    }

    /// The revision a change from `key` with `seq` was committed as, if remembered.
    pub fn committed_seq(&self, key: u64) -> Option<(u64, u64)> {
        self.last_seq.get(&key).copied()
    }

    fn check_size(&self, op: &TextOperation) -> Result<(), ChangeError> {
        // Upper bound without materialising: current bytes plus inserted bytes.
        let inserted: usize = op
            .components()
            .iter()
            .map(|c| match c {
                crate::ot::Component::Insert(s) => s.len(),
                _ => 0,
            })
            .sum();
        let bytes = self.text.len_bytes() + inserted;
        if inserted > 0 && bytes > self.max_bytes {
            return Err(ChangeError::TooLarge {
                bytes,
                max: self.max_bytes,
            });
        }
        Ok(())
    }

    fn note_seq(&mut self, committed: &Committed) {
        if self.last_seq.len() >= MAX_REMEMBERED_KEYS && !self.last_seq.contains_key(&committed.key)
        {
            // Forget clients whose last change has left the history: they would get a
            // snapshot anyway and cannot resend on an old base.
            let oldest = self.oldest_base();
            self.last_seq.retain(|_, &mut (_, rev)| rev > oldest);
            if self.last_seq.len() >= MAX_REMEMBERED_KEYS {
                self.last_seq.clear();
            }
        }
        self.last_seq
            .insert(committed.key, (committed.seq, committed.revision));
    }

    fn push_history(&mut self, committed: Committed) {
        self.history_bytes += op_weight(&committed.op);
        self.history.push_back(committed);
        while self.history.len() > self.limit.changes
            || (self.history_bytes > self.limit.bytes && self.history.len() > 1)
        {
            if let Some(old) = self.history.pop_front() {
                self.history_bytes -= op_weight(&old.op);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(text: &str) -> Document {
        Document::new(Rope::from_str(text), 0, HistoryLimit::default())
    }

    #[test]
    fn late_change_is_transformed() {
        let mut d = doc("hello");
        let a = TextOperation::splice(5, 5, 0, " world").unwrap();
        let b = TextOperation::splice(5, 0, 1, "H").unwrap();
        assert!(matches!(
            d.receive(1, 1, 1, 0, a).unwrap(),
            Outcome::Applied(_)
        ));
        assert!(matches!(
            d.receive(2, 2, 1, 0, b).unwrap(),
            Outcome::Applied(_)
        ));
        assert_eq!(d.text().to_string(), "Hello world");
        assert_eq!(d.revision(), 2);
    }

    #[test]
    fn bad_changes_leave_the_document_untouched() {
        let mut d = doc("abc");
        let past_end = TextOperation::splice(5, 4, 1, "").unwrap();
        assert!(matches!(
            d.receive(1, 1, 1, 0, past_end),
            Err(ChangeError::Invalid(_))
        ));
        let ok = TextOperation::splice(3, 0, 0, "x").unwrap();
        assert!(matches!(
            d.receive(1, 1, 1, 5, ok.clone()),
            Err(ChangeError::FutureRevision {
                base: 5,
                current: 0
            })
        ));
        assert_eq!(d.text().to_string(), "abc");
        assert_eq!(d.revision(), 0);
        d.receive(1, 1, 1, 0, ok.clone()).unwrap();
        assert!(matches!(
            d.receive(1, 1, 1, 0, ok).unwrap(),
            Outcome::Duplicate { revision: 1 }
        ));
        assert_eq!(d.text().to_string(), "xabc");
    }

    #[test]
    fn changes_lagging_too_far_are_refused() {
        let mut d = doc("");
        for i in 0..=MAX_TRANSFORM_LAG {
            let op = TextOperation::splice(i as usize, 0, 0, "a").unwrap();
            d.receive(1, 1, i + 1, i, op).unwrap();
        }
        let op = TextOperation::splice(0, 0, 0, "b").unwrap();
        assert!(matches!(
            d.receive(2, 2, 1, 0, op),
            Err(ChangeError::TooOld { base: 0, oldest: 1 })
        ));
        let op = TextOperation::splice(1, 0, 0, "b").unwrap();
        assert!(d.receive(2, 2, 1, 1, op).is_ok());
    }

    #[test]
    fn a_huge_change_far_behind_is_refused_before_any_transform() {
        let len = 200_000;
        let mut d = doc(&"x".repeat(len));
        for i in 0..100u64 {
            let op = TextOperation::splice(len + i as usize, 0, 0, "a").unwrap();
            d.receive(1, 1, i + 1, i, op).unwrap();
        }
        // Delete every other character: 200,000 components.
        let hostile = || {
            let mut op = TextOperation::new();
            for _ in 0..len / 2 {
                op.retain(1).delete(1);
            }
            op
        };
        assert_eq!(hostile().components().len(), len);
        assert!(matches!(
            d.receive(2, 2, 1, 0, hostile()),
            Err(ChangeError::TooFarBehind {
                base: 0,
                lag: 100,
                components: 200_000
            })
        ));
        assert_eq!(d.revision(), 100);
        // The same kind of change on a recent base is within budget.
        let mut at_99 = TextOperation::new();
        for _ in 0..len / 2 {
            at_99.retain(1).delete(1);
        }
        at_99.retain(99);
        assert!(matches!(
            d.receive(2, 2, 1, 99, at_99),
            Ok(Outcome::Applied(_))
        ));
        assert_eq!(d.text().len_chars(), len / 2 + 100);
    }

    #[test]
    fn selections_are_placed_only_within_the_transform_lag() {
        let mut d = doc("");
        for i in 0..=MAX_TRANSFORM_LAG {
            let op = TextOperation::splice(i as usize, i as usize, 0, "a").unwrap();
            d.receive(1, 1, i + 1, i, op).unwrap();
        }
        let at_start = Selection::cursor(0);
        // Too far behind: placing it would mean walking MAX_TRANSFORM_LAG + 1 changes.
        assert_eq!(d.place_selection(0, at_start), None);
        // Each later insert at the end leaves a cursor at the start where it is.
        assert_eq!(d.place_selection(1, at_start), Some(at_start));
        let end = Selection::cursor(1);
        assert_eq!(d.place_selection(1, end), Some(Selection::cursor(10_001)));
        assert_eq!(d.place_selection(d.revision() + 1, at_start), None);
        assert_eq!(
            d.place_selection(d.revision(), Selection::cursor(usize::MAX)),
            Some(Selection::cursor(10_001))
        );
    }

    #[test]
    fn history_is_bounded_and_too_old_is_refused() {
        let mut d = Document::new(
            Rope::new(),
            0,
            HistoryLimit {
                changes: 3,
                bytes: usize::MAX,
            },
        );
        for i in 0..5 {
            let op = TextOperation::splice(i, i, 0, "a").unwrap();
            d.receive(1, 1, i as u64 + 1, i as u64, op).unwrap();
        }
        assert_eq!(d.oldest_base(), 2);
        assert!(d.changes_since(1).is_none());
        assert_eq!(d.changes_since(2).unwrap().count(), 3);
        let op = TextOperation::splice(1, 0, 0, "b").unwrap();
        assert!(matches!(
            d.receive(2, 2, 1, 1, op),
            Err(ChangeError::TooOld { .. })
        ));
    }
}
