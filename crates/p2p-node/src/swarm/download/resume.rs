//! Resuming: `NAME.part` and the record of verified pieces beside it. An earlier record for
//! the same identity means a resumed download; its pieces are read back and hashed again,
//! and only those that verify count.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::holders::Target;
use super::state::Download;
use super::{local_io, piece_len, SwarmError};
use crate::swarm::pieces::{self, Bitfield, FilePieces, Record};
use crate::wire::ContentHash;

/// Opens (or creates) `NAME.part` at full length and returns the pieces already verified
/// there: those its record lists for the same identity that hash correctly now.
///
/// The record is written before `NAME.part` is created, so a `NAME.part` without a record
/// beside it is never a download of ours but a file of the user's (shared like any other,
/// see [`pieces::is_download_artifact`]): it is not truncated, nor is a file named like a
/// record that is none; the download is refused instead.
pub(super) async fn open_part(
    part: &Path,
    record: &Path,
    target: &Target,
    name: &str,
    file_pieces: Arc<FilePieces>,
) -> Result<(File, Bitfield), SwarmError> {
    let (part, record, name) = (part.to_owned(), record.to_owned(), name.to_owned());
    let hash = target.hash;
    let opened = tokio::task::spawn_blocking(move || {
        let io_err = |path: &Path| {
            let path = path.to_owned();
            move |source| local_io(&path, source)
        };
        let in_the_way = |path: &Path| SwarmError::InTheWay {
            path: path.to_owned(),
            name: name.clone(),
        };
        let count = file_pieces.hashes.len();
        let existing = match std::fs::read(&record) {
            Ok(bytes) => Some(Record::decode(&bytes).ok_or_else(|| in_the_way(&record))?),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_err(&record)(e)),
        };
        if existing.is_none() && std::fs::symlink_metadata(&part).is_ok() {
            return Err(in_the_way(&part));
        }
        let previous = existing.filter(|r| r.identity == hash && r.have.len() == count);
        if previous.is_none() {
            write_record(&record, &hash, &file_pieces, &Bitfield::new(count))
                .map_err(io_err(&record))?;
        }
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

pub(super) async fn save_record(download: &Download, path: &Path, done: Bitfield) {
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
