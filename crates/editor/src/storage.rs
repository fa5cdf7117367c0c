//! Durable documents: `<data-dir>/<name>.txt` plus a journal of acknowledged changes.
//!
//! The `.txt` is the document as plain text, so people can open (or drop in) files. Every
//! change is appended to `<name>.journal` before it is acknowledged; the server writes all
//! changes that arrived together as one append and one `fdatasync` (group commit).
//!
//! Journal records are `[payload length: u32 LE][crc32 of payload: u32 LE][postcard
//! payload]`. The first record is a header naming the revision of the `.txt` it continues
//! and that text's length and CRC; then one record per change. A torn or corrupt tail
//! (crash mid-write) fails its length or CRC check and is cut off on load.
//!
//! Compaction (periodic and at shutdown) makes the `.txt` current and cuts the journal
//! back, crash-safely, in three atomic steps:
//! 1. write `.<name>.journal.new`: a header for the new text plus the most recent changes
//!    (kept only as history, so reconnecting clients can still catch up), fsync;
//! 2. write a hidden temp file (netutil::durable), fsync, rename over `<name>.txt`, fsync the directory;
//! 3. rename the new journal over `<name>.journal`, fsync the directory.
//!
//! On load the header's CRC tells which journal belongs to the `.txt` present, so a crash
//! between any two steps loses nothing. A `.txt` that matches no journal (edited by hand
//! while the server was down) wins: it is served at a new revision with empty history.
//! Temporary names start with a dot, which no document name may.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use ropey::Rope;
use serde::{Deserialize, Serialize};

use crate::document::{op_weight, Committed, Document, HistoryLimit};
use crate::ot::TextOperation;
use crate::protocol::{author_id, MAX_FRAME};

/// Largest journal record accepted on load (a corrupt length cannot make us allocate more).
const MAX_RECORD: usize = 2 * MAX_FRAME;

/// Changes carried into a compacted journal as history, at most.
const TAIL_CHANGES: usize = 10_000;
const TAIL_BYTES: usize = 4 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is not valid UTF-8 text")]
    NotUtf8 { path: PathBuf },
    #[error("{path} is {bytes} bytes, over the document limit of {max}")]
    TooLarge {
        path: PathBuf,
        bytes: usize,
        max: usize,
    },
}

#[derive(Debug, Serialize, Deserialize)]
enum Record {
    Header {
        epoch: u64,
        base_revision: u64,
        text_len: u64,
        text_crc: u32,
    },
    Change {
        revision: u64,
        key: u64,
        seq: u64,
        op: TextOperation,
    },
    /// A change made with an access token: its id (never the token). A variant of its
    /// own, added last, so journals written before it still decode.
    ChangeBy {
        revision: u64,
        key: u64,
        seq: u64,
        op: TextOperation,
        token: String,
    },
}

/// [`Record`] as written: borrows the operation instead of cloning it (same serde layout).
#[derive(Serialize)]
enum RecordOut<'a> {
    #[allow(dead_code)]
    Header {
        epoch: u64,
        base_revision: u64,
        text_len: u64,
        text_crc: u32,
    },
    Change {
        revision: u64,
        key: u64,
        seq: u64,
        op: &'a TextOperation,
    },
    ChangeBy {
        revision: u64,
        key: u64,
        seq: u64,
        op: &'a TextOperation,
        token: &'a str,
    },
}

/// The data directory.
#[derive(Debug, Clone)]
pub struct Storage {
    dir: PathBuf,
    max_bytes: usize,
}

/// An open journal, appended to by the document's task.
#[derive(Debug)]
pub struct Journal {
    /// `None` for a document that does not exist on disk yet: viewing it creates nothing;
    /// the first append creates the journal, starting with `pending_header`.
    file: Option<File>,
    pending_header: Vec<u8>,
    dir: PathBuf,
    name: String,
    bytes: u64,
    /// Appends made (each one write and one fsync): what group commit keeps low.
    commits: u64,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StorageError + '_ {
    move |source| StorageError::Io {
        path: path.to_owned(),
        source,
    }
}

impl Storage {
    /// Uses (and creates) `dir`. `max_bytes` bounds a document's size.
    pub fn open(dir: impl Into<PathBuf>, max_bytes: usize) -> Result<Self, StorageError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        Ok(Storage { dir, max_bytes })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn text_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.txt"))
    }

    fn journal_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.journal"))
    }

    fn new_journal_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!(".{name}.journal.new"))
    }

    /// Loads document `name` (creating it empty if absent): the `.txt`, then the journal
    /// replayed on top. Blocking; call from a blocking thread.
    pub fn load(
        &self,
        name: &str,
        limit: HistoryLimit,
    ) -> Result<(Document, Journal), StorageError> {
        let txt_path = self.text_path(name);
        let bytes = match fs::read(&txt_path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io_err(&txt_path)(e)),
        };
        if bytes.len() > self.max_bytes {
            return Err(StorageError::TooLarge {
                path: txt_path,
                bytes: bytes.len(),
                max: self.max_bytes,
            });
        }
        let (text_len, text_crc) = (bytes.len() as u64, crc32fast::hash(&bytes));
        let text = String::from_utf8(bytes).map_err(|_| StorageError::NotUtf8 {
            path: txt_path.clone(),
        })?;
        let matches =
            |h: &Header| h.is_some_and(|(_, _, len, crc)| len == text_len && crc == text_crc);

        // A compaction that renamed the text but not yet the journal: finish it.
        let new_path = self.new_journal_path(name);
        let journal_path = self.journal_path(name);
        if new_path.exists() {
            let (header, _, _) = read_journal(&new_path)?;
            if matches(&header) {
                fs::rename(&new_path, &journal_path).map_err(io_err(&journal_path))?;
                sync_dir(&self.dir)?;
            } else {
                fs::remove_file(&new_path).map_err(io_err(&new_path))?;
            }
        }

        if !txt_path.exists() && !journal_path.exists() {
            // A document nobody has written: served empty, created by its first change.
            let doc = Document::new(Rope::new(), 0, limit)
                .with_epoch(crate::protocol::random_key())
                .with_max_bytes(self.max_bytes);
            let (text_len, text_crc) = rope_crc(doc.text());
            let mut pending_header = Vec::new();
            encode_record(
                &mut pending_header,
                &Record::Header {
                    epoch: doc.epoch(),
                    base_revision: 0,
                    text_len,
                    text_crc,
                },
            );
            let journal = Journal {
                file: None,
                pending_header,
                dir: self.dir.clone(),
                name: name.to_owned(),
                bytes: 0,
                commits: 0,
            };
            return Ok((doc, journal));
        }
        let (header, records, valid_len) = match journal_path.exists() {
            true => read_journal(&journal_path)?,
            false => (None, Vec::new(), 0),
        };
        let mut doc;
        let mut rewrite = false;
        match header {
            Some((epoch, base, _, _)) if matches(&header) => {
                doc = Document::new(Rope::from_str(&text), base, limit)
                    .with_epoch(epoch)
                    .with_max_bytes(self.max_bytes);
                let (history, later): (Vec<_>, Vec<_>) =
                    records.into_iter().partition(|(_, c)| c.revision <= base);
                if continues_to(&history, base) {
                    for (_, committed) in history {
                        doc.remember(committed);
                    }
                } else {
                    tracing::warn!(
                        "{}: history records out of order; serving without history (clients get snapshots)",
                        journal_path.display()
                    );
                }
                let mut good = valid_len;
                for (end, committed) in later {
                    if let Err(e) = doc.replay(committed) {
                        tracing::warn!(
                            "{}: stopping replay at an invalid record: {e}",
                            journal_path.display()
                        );
                        good = end.0;
                        break;
                    }
                }
                if good < file_len(&journal_path)? {
                    tracing::warn!(
                        "{}: dropping {} bytes of torn or corrupt journal tail",
                        journal_path.display(),
                        file_len(&journal_path)? - good
                    );
                    let f = OpenOptions::new()
                        .write(true)
                        .open(&journal_path)
                        .map_err(io_err(&journal_path))?;
                    f.set_len(good).map_err(io_err(&journal_path))?;
                    f.sync_all().map_err(io_err(&journal_path))?;
                }
            }
            Some((_, base, _, _)) => {
                let last = records.last().map_or(base, |(_, c)| c.revision.max(base));
                tracing::warn!(
                    "{} does not match its journal (edited by hand?); serving the file as revision {}",
                    txt_path.display(),
                    last + 1
                );
                doc = Document::new(Rope::from_str(&text), last + 1, limit)
                    .with_epoch(crate::protocol::random_key())
                    .with_max_bytes(self.max_bytes);
                rewrite = true;
            }
            None => {
                doc = Document::new(Rope::from_str(&text), 0, limit)
                    .with_epoch(crate::protocol::random_key())
                    .with_max_bytes(self.max_bytes);
                rewrite = true;
            }
        }
        if !txt_path.exists() {
            // The journal's base text was empty (a document created by its first change):
            // the file shows that base, which the journal's header describes.
            write_text_atomically(&self.dir, name, &Rope::from_str(&text))?;
        }
        let journal = if rewrite {
            self.write_journal(name, &doc, std::iter::empty())?
        } else {
            self.open_journal(name)?
        };
        Ok((doc, journal))
    }

    fn open_journal(&self, name: &str) -> Result<Journal, StorageError> {
        let path = self.journal_path(name);
        let file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(io_err(&path))?;
        let bytes = file.metadata().map_err(io_err(&path))?.len();
        Ok(Journal {
            file: Some(file),
            pending_header: Vec::new(),
            dir: self.dir.clone(),
            name: name.to_owned(),
            bytes,
            commits: 0,
        })
    }

    /// Writes a fresh journal for `text` at `revision` carrying `tail` as history, through
    /// the temporary name, and renames it into place.
    fn write_journal<'a>(
        &self,
        name: &str,
        doc: &Document,
        tail: impl Iterator<Item = &'a Committed>,
    ) -> Result<Journal, StorageError> {
        let new_path = self.new_journal_path(name);
        let file =
            self.create_new_journal(&new_path, doc.epoch(), doc.text(), doc.revision(), tail)?;
        let path = self.journal_path(name);
        fs::rename(&new_path, &path).map_err(io_err(&path))?;
        sync_dir(&self.dir)?;
        let bytes = file.metadata().map_err(io_err(&path))?.len();
        Ok(Journal {
            file: Some(file),
            pending_header: Vec::new(),
            dir: self.dir.clone(),
            name: name.to_owned(),
            bytes,
            commits: 0,
        })
    }

    fn create_new_journal<'a>(
        &self,
        new_path: &Path,
        epoch: u64,
        text: &Rope,
        revision: u64,
        tail: impl Iterator<Item = &'a Committed>,
    ) -> Result<File, StorageError> {
        let (text_len, text_crc) = rope_crc(text);
        let mut buf = Vec::new();
        encode_record(
            &mut buf,
            &Record::Header {
                epoch,
                base_revision: revision,
                text_len,
                text_crc,
            },
        );
        for c in tail {
            encode_change(&mut buf, c);
        }
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(new_path)
            .map_err(io_err(new_path))?;
        file.write_all(&buf).map_err(io_err(new_path))?;
        file.sync_all().map_err(io_err(new_path))?;
        // Later appends go to the end whatever the file position is.
        drop(file);
        OpenOptions::new()
            .append(true)
            .open(new_path)
            .map_err(io_err(new_path))
    }

    /// Makes `<name>.txt` equal to `text` at `revision` and cuts the journal back to a
    /// header plus `tail` (see [`journal_tail`] and the module docs for the crash-safe
    /// order). Blocking. Returns the new journal.
    pub fn compact(
        &self,
        name: &str,
        epoch: u64,
        text: &Rope,
        revision: u64,
        tail: &[Committed],
    ) -> Result<Journal, StorageError> {
        let new_path = self.new_journal_path(name);
        let file = self.create_new_journal(&new_path, epoch, text, revision, tail.iter())?;
        write_text_atomically(&self.dir, name, text)?;
        let path = self.journal_path(name);
        fs::rename(&new_path, &path).map_err(io_err(&path))?;
        sync_dir(&self.dir)?;
        let bytes = file.metadata().map_err(io_err(&path))?.len();
        Ok(Journal {
            file: Some(file),
            pending_header: Vec::new(),
            dir: self.dir.clone(),
            name: name.to_owned(),
            bytes,
            commits: 0,
        })
    }
}

impl Journal {
    /// Appends encoded records (see [`encode_change`]) and fsyncs once: group commit.
    /// Blocking. Only after this returns may the changes be acknowledged.
    pub fn append(&mut self, records: &[u8]) -> Result<(), StorageError> {
        let path = self.dir.join(format!("{}.journal", self.name));
        let file = match &mut self.file {
            Some(file) => file,
            None => {
                // First change of a new document: the journal appears with its header (an
                // empty text needs no `.txt` to match it); the directory entry is made
                // durable before the change is acknowledged.
                let mut file = OpenOptions::new()
                    .create(true)
                    .truncate(true)
                    .write(true)
                    .open(&path)
                    .map_err(io_err(&path))?;
                file.write_all(&self.pending_header)
                    .map_err(io_err(&path))?;
                file.sync_all().map_err(io_err(&path))?;
                sync_dir(&self.dir)?;
                self.bytes = self.pending_header.len() as u64;
                self.file.insert(file)
            }
        };
        file.write_all(records).map_err(io_err(&path))?;
        file.sync_data().map_err(io_err(&path))?;
        self.bytes += records.len() as u64;
        self.commits += 1;
        Ok(())
    }

    /// How many appends (group commits) this journal has made since it was opened.
    pub fn commits(&self) -> u64 {
        self.commits
    }

    /// Current size, to decide when to compact.
    pub fn len(&self) -> u64 {
        self.bytes
    }

    pub fn is_empty(&self) -> bool {
        self.bytes == 0
    }
}

/// The most recent changes of `history` (oldest first) that a compacted journal carries,
/// bounded in count and bytes.
pub fn journal_tail<'a>(history: impl DoubleEndedIterator<Item = &'a Committed>) -> Vec<Committed> {
    let mut weight = 0;
    let mut tail: Vec<Committed> = history
        .rev()
        .take(TAIL_CHANGES)
        .take_while(|c| {
            weight += op_weight(&c.op);
            weight <= TAIL_BYTES
        })
        .cloned()
        .collect();
    tail.reverse();
    tail
}

/// Appends the journal record of one committed change to `buf`.
pub fn encode_change(buf: &mut Vec<u8>, c: &Committed) {
    let (revision, key, seq, op) = (c.revision, c.key, c.seq, &c.op);
    match c.token.as_deref() {
        Some(token) => encode_record(
            buf,
            &RecordOut::ChangeBy {
                revision,
                key,
                seq,
                op,
                token,
            },
        ),
        None => encode_record(
            buf,
            &RecordOut::Change {
                revision,
                key,
                seq,
                op,
            },
        ),
    }
}

fn encode_record<R: Serialize>(buf: &mut Vec<u8>, record: &R) {
    let start = buf.len();
    buf.extend_from_slice(&[0; 8]);
    // Serialising our own in-memory types into a Vec cannot fail; if it somehow did, the
    // record would be cut back to nothing rather than written half.
    match postcard::to_extend(record, std::mem::take(buf)) {
        Ok(extended) => *buf = extended,
        Err(e) => {
            tracing::error!("cannot encode a journal record: {e}");
            return;
        }
    }
    let len = (buf.len() - start - 8) as u32;
    let crc = crc32fast::hash(&buf[start + 8..]);
    buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Whether history records are revisions `k, k+1, ..., base` (k >= 1), as compaction
/// writes them: a checksum proves a record was written whole, not that it belongs here,
/// and the document's catch-up arithmetic relies on an unbroken history.
fn continues_to(history: &[(Offset, Committed)], base: u64) -> bool {
    let revisions = || history.iter().map(|(_, c)| c.revision);
    revisions().next().is_none_or(|first| first >= 1)
        && revisions().next_back().is_none_or(|last| last == base)
        && revisions()
            .zip(revisions().skip(1))
            .all(|(a, b)| a.checked_add(1) == Some(b))
}

/// End offset of the record a change came from.
#[derive(Clone, Copy, Debug)]
struct Offset(u64);

/// Epoch, base revision, text length, text CRC.
type Header = Option<(u64, u64, u64, u32)>;

/// What a journal file holds: header, change records, valid length.
type JournalContents = (Header, Vec<(Offset, Committed)>, u64);

/// Reads a journal: its header, its valid change records (each with the offset where the
/// previous one ended) and the length of the valid prefix.
fn read_journal(path: &Path) -> Result<JournalContents, StorageError> {
    let mut data = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut data))
        .map_err(io_err(path))?;
    let mut pos = 0usize;
    let mut header = None;
    let mut records = Vec::new();
    while let Some((record, next)) = decode_record(&data, pos) {
        match record {
            Record::Header {
                epoch,
                base_revision,
                text_len,
                text_crc,
            } if header.is_none() && pos == 0 => {
                header = Some((epoch, base_revision, text_len, text_crc));
            }
            Record::Change {
                revision,
                key,
                seq,
                op,
            } if header.is_some() => {
                records.push((Offset(pos as u64), replayed(revision, key, seq, op, None)))
            }
            Record::ChangeBy {
                revision,
                key,
                seq,
                op,
                token,
            } if header.is_some() => records.push((
                Offset(pos as u64),
                replayed(revision, key, seq, op, Some(token.into())),
            )),
            _ => break,
        }
        pos = next;
    }
    Ok((header, records, pos as u64))
}

/// A change read back from the journal, as the document task had committed it (the
/// author id follows from the key; the token id only where the record carries one).
fn replayed(
    revision: u64,
    key: u64,
    seq: u64,
    op: TextOperation,
    token: Option<std::sync::Arc<str>>,
) -> Committed {
    Committed {
        revision,
        key,
        author: author_id(key),
        seq,
        op,
        token,
    }
}

fn decode_record(data: &[u8], pos: usize) -> Option<(Record, usize)> {
    let head = data.get(pos..pos.checked_add(8)?)?;
    let len = u32::from_le_bytes(head[..4].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(head[4..].try_into().ok()?);
    if len > MAX_RECORD {
        return None;
    }
    let payload = data.get(pos + 8..pos + 8 + len)?;
    if crc32fast::hash(payload) != crc {
        return None;
    }
    let record = postcard::from_bytes(payload).ok()?;
    Some((record, pos + 8 + len))
}

fn rope_crc(text: &Rope) -> (u64, u32) {
    let mut hasher = crc32fast::Hasher::new();
    for chunk in text.chunks() {
        hasher.update(chunk.as_bytes());
    }
    (text.len_bytes() as u64, hasher.finalize())
}

fn file_len(path: &Path) -> Result<u64, StorageError> {
    Ok(fs::metadata(path).map_err(io_err(path))?.len())
}

fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    netutil::durable::sync_dir(dir).map_err(io_err(dir))
}

/// Temp file, fsync, rename, fsync the directory (netutil's durable write), chunk by chunk
/// straight from the rope.
fn write_text_atomically(dir: &Path, name: &str, text: &Rope) -> Result<(), StorageError> {
    let path = dir.join(format!("{name}.txt"));
    netutil::durable::write_atomic_with(&path, |out| {
        text.chunks()
            .try_for_each(|chunk| out.write_all(chunk.as_bytes()))
    })
    .map_err(io_err(&path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::Outcome;

    fn change(doc: &mut Document, seq: u64, pos: usize, ins: &str) -> Committed {
        let op = TextOperation::splice(doc.text().len_chars(), pos, 0, ins).unwrap();
        let base = doc.revision();
        match doc.receive(7, author_id(7), seq, base, op).unwrap() {
            Outcome::Applied(c) => c.clone(),
            Outcome::Duplicate { .. } => panic!("duplicate"),
        }
    }

    #[test]
    fn journal_replays_and_torn_tail_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(dir.path(), 1 << 20).unwrap();
        let (mut doc, mut journal) = storage.load("notes", HistoryLimit::default()).unwrap();
        assert_eq!(doc.text().to_string(), "");
        let mut buf = Vec::new();
        for (i, word) in ["hello", " world", "!"].iter().enumerate() {
            let len = doc.text().len_chars();
            let c = change(&mut doc, i as u64 + 1, len, word);
            encode_change(&mut buf, &c);
        }
        journal.append(&buf).unwrap();
        // A torn record: half of another change.
        let mut torn = Vec::new();
        let c = change(&mut doc, 9, 0, "lost");
        encode_change(&mut torn, &c);
        journal.append(&torn[..torn.len() / 2]).unwrap();
        drop(journal);

        let (doc, _) = storage.load("notes", HistoryLimit::default()).unwrap();
        assert_eq!(doc.text().to_string(), "hello world!");
        assert_eq!(doc.revision(), 3);
        assert_eq!(doc.committed_seq(7), Some((3, 3)));
        // The torn bytes were cut off, so the next load sees the same.
        let (doc, _) = storage.load("notes", HistoryLimit::default()).unwrap();
        assert_eq!(doc.revision(), 3);
    }

    #[test]
    fn compaction_keeps_text_revision_and_history() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(dir.path(), 1 << 20).unwrap();
        let (mut doc, mut journal) = storage.load("a", HistoryLimit::default()).unwrap();
        let mut buf = Vec::new();
        for i in 0..5 {
            let c = change(&mut doc, i + 1, 0, "x");
            encode_change(&mut buf, &c);
        }
        journal.append(&buf).unwrap();
        let tail = journal_tail(doc.history());
        storage
            .compact("a", doc.epoch(), doc.text(), doc.revision(), &tail)
            .unwrap();
        assert_eq!(
            fs::read_to_string(dir.path().join("a.txt")).unwrap(),
            "xxxxx"
        );
        let (doc2, _) = storage.load("a", HistoryLimit::default()).unwrap();
        assert_eq!(doc2.revision(), 5);
        assert_eq!(doc2.changes_since(2).unwrap().count(), 3);
    }

    #[test]
    fn crash_between_text_rename_and_journal_rename_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(dir.path(), 1 << 20).unwrap();
        let (mut doc, mut journal) = storage.load("b", HistoryLimit::default()).unwrap();
        let mut buf = Vec::new();
        let c = change(&mut doc, 1, 0, "abc");
        encode_change(&mut buf, &c);
        journal.append(&buf).unwrap();
        // Steps 1 and 2 of a compaction, then "crash".
        let new_path = storage.new_journal_path("b");
        storage
            .create_new_journal(
                &new_path,
                doc.epoch(),
                doc.text(),
                doc.revision(),
                std::iter::empty(),
            )
            .unwrap();
        write_text_atomically(dir.path(), "b", doc.text()).unwrap();
        let (doc2, _) = storage.load("b", HistoryLimit::default()).unwrap();
        assert_eq!(doc2.text().to_string(), "abc");
        assert_eq!(doc2.revision(), 1);
    }

    #[test]
    fn history_records_that_do_not_continue_to_the_text_are_not_used() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(dir.path(), 1 << 20).unwrap();
        let (mut doc, _) = storage.load("h", HistoryLimit::default()).unwrap();
        for seq in 1..=4 {
            change(&mut doc, seq, 0, "x");
        }
        let good: Vec<Committed> = doc.history().cloned().collect();
        let with = |revisions: &[u64]| -> Vec<Committed> {
            revisions
                .iter()
                .map(|&r| Committed {
                    revision: r,
                    ..good[0].clone()
                })
                .collect()
        };
        let cases = [
            (with(&[0]), 0),
            (with(&[1, 2, 4]), 4),
            (with(&[1, 2]), 4),
            (good.clone(), 4),
        ];
        for (i, (tail, revision)) in cases.iter().enumerate() {
            storage
                .compact("h", doc.epoch(), &Rope::from_str("xxxx"), *revision, tail)
                .unwrap();
            let (mut loaded, _) = storage.load("h", HistoryLimit::default()).unwrap();
            let held: Vec<u64> = loaded.history().map(|c| c.revision).collect();
            if i == 3 {
                assert_eq!(held, [1, 2, 3, 4]);
            } else {
                assert!(held.is_empty(), "case {i}: kept {held:?}");
                assert!(loaded.changes_since(*revision).unwrap().next().is_none());
            }
            let op = TextOperation::splice(4, 0, 0, "y").unwrap();
            assert!(matches!(
                loaded.receive(9, author_id(9), 1, *revision, op),
                Ok(Outcome::Applied(_))
            ));
        }
    }

    #[test]
    fn hand_written_text_is_served_and_hand_edits_win() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("mine.txt"), "written by hand\n").unwrap();
        let storage = Storage::open(dir.path(), 1 << 20).unwrap();
        let (doc, _) = storage.load("mine", HistoryLimit::default()).unwrap();
        assert_eq!(doc.text().to_string(), "written by hand\n");
        fs::write(dir.path().join("mine.txt"), "edited\n").unwrap();
        let (doc, _) = storage.load("mine", HistoryLimit::default()).unwrap();
        assert_eq!(doc.text().to_string(), "edited\n");
        assert_eq!(doc.revision(), 1);
        fs::write(dir.path().join("bin.txt"), [0xff, 0xfe]).unwrap();
        assert!(matches!(
            storage.load("bin", HistoryLimit::default()),
            Err(StorageError::NotUtf8 { .. })
        ));
    }
}
