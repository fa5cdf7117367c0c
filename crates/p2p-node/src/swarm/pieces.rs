//! Pieces: how a file is cut up for swarm downloads, how pieces are hashed and verified,
//! a file's identity, the piece map (bitfield) and the on-disk record of verified pieces
//! that makes a download resumable. Pure logic plus plain blocking file reads; no sockets.
//!
//! * Piece size is fixed at [`PIECE_SIZE`] = 1 MiB. Why: a 1 GiB file has 1024 pieces, so
//!   its piece hashes are 32 KiB (one small message); per-piece costs (a request, a
//!   frame header, a hash finalisation, one positional write) are paid once per MiB, which
//!   is noise at 1 GB/s; a bad piece costs one MiB to fetch again; and the downloader's
//!   memory is the in-flight window (a few pieces per peer), not the file. At 100 Mbit/s a
//!   piece takes 84 ms, so the last piece does not hold a download up for long.
//! * Piece hashes are BLAKE3 (measured faster than SHA-256 here, even with the CPU's SHA
//!   instructions: see BENCHMARKS.md); a file's identity is BLAKE3 over its size, piece size
//!   and piece hashes, so it names the content exactly, and a list of piece hashes received
//!   from any peer can be checked against the identity the leader's index carries.
//! * A download writes `NAME.part` and keeps `NAME.part.pieces` beside it: a header with the
//!   identity, then the bitfield of verified pieces. The record is only a hint: on resume
//!   every recorded piece is read back and hashed again before it counts, so a record that
//!   got ahead of the data (power loss) can cost a re-fetch, never a corrupt file.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

pub use crate::wire::{ContentHash, PieceHash, MAX_PIECES};

/// Bytes per piece (the last piece of a file may be shorter).
pub const PIECE_SIZE: u32 = 1 << 20;
/// Suffix of a file being downloaded.
pub const PART_SUFFIX: &str = ".part";
/// Suffix of the record of verified pieces beside it.
pub const RECORD_SUFFIX: &str = ".part.pieces";
const RECORD_MAGIC: &[u8; 8] = b"P2PPART1";

/// Number of pieces of a file of `size` bytes.
pub fn piece_count(size: u64, piece_size: u32) -> usize {
    usize::try_from(size.div_ceil(u64::from(piece_size.max(1)))).unwrap_or(usize::MAX)
}

/// Length of piece `index` of a file of `size` bytes.
pub fn piece_len(size: u64, piece_size: u32, index: usize) -> usize {
    let start = index as u64 * u64::from(piece_size);
    // A piece is at most PIECE_SIZE, so the cast cannot truncate.
    size.saturating_sub(start).min(u64::from(piece_size)) as usize
}

/// Byte offset of piece `index`.
pub fn piece_offset(piece_size: u32, index: usize) -> u64 {
    index as u64 * u64::from(piece_size)
}

pub fn hash_piece(data: &[u8]) -> PieceHash {
    *blake3::hash(data).as_bytes()
}

/// A file's identity: BLAKE3 over its size, piece size and piece hashes.
pub fn identity(size: u64, piece_size: u32, hashes: &[PieceHash]) -> ContentHash {
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"p2p-node file v1");
    hasher.update(&size.to_le_bytes());
    hasher.update(&piece_size.to_le_bytes());
    for hash in hashes {
        hasher.update(hash);
    }
    ContentHash(*hasher.finalize().as_bytes())
}

/// A file's piece hashes, as indexed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilePieces {
    pub size: u64,
    pub piece_size: u32,
    pub hashes: Vec<PieceHash>,
}

impl FilePieces {
    pub fn identity(&self) -> ContentHash {
        identity(self.size, self.piece_size, &self.hashes)
    }
}

/// Reads a file once and hashes each piece. A file that changes length while being read
/// is an error (the next scan tries again).
pub fn hash_file(path: &Path) -> io::Result<FilePieces> {
    let mut file = File::open(path)?;
    let size = file.metadata()?.len();
    let count = piece_count(size, PIECE_SIZE);
    if count > MAX_PIECES {
        return Err(io::Error::other(format!(
            "{} bytes is more than {MAX_PIECES} pieces",
            size
        )));
    }
    let mut hashes = Vec::with_capacity(count);
    let mut buf = vec![0u8; PIECE_SIZE as usize];
    for index in 0..count {
        let len = piece_len(size, PIECE_SIZE, index);
        file.read_exact(&mut buf[..len])?;
        hashes.push(hash_piece(&buf[..len]));
    }
    if file.read(&mut buf[..1])? != 0 {
        return Err(io::Error::other("the file grew while it was hashed"));
    }
    Ok(FilePieces {
        size,
        piece_size: PIECE_SIZE,
        hashes,
    })
}

/// Which pieces are present: one bit per piece, first piece in the top bit of byte 0 (as
/// in BitTorrent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bitfield {
    bytes: Vec<u8>,
    len: usize,
    ones: usize,
}

impl Bitfield {
    pub fn new(len: usize) -> Self {
        Bitfield {
            bytes: vec![0; len.div_ceil(8)],
            len,
            ones: 0,
        }
    }

    pub fn full(len: usize) -> Self {
        let mut bits = Bitfield::new(len);
        for i in 0..len {
            bits.set(i);
        }
        bits
    }

    /// From the wire or a record; None when the length does not match or spare bits are set.
    pub fn from_bytes(len: usize, bytes: &[u8]) -> Option<Self> {
        if bytes.len() != len.div_ceil(8) {
            return None;
        }
        let mut bits = Bitfield {
            bytes: bytes.to_vec(),
            len,
            ones: 0,
        };
        if (len..bytes.len() * 8).any(|i| bits.raw(i)) {
            return None;
        }
        bits.ones = (0..len).filter(|&i| bits.raw(i)).count();
        Some(bits)
    }

    fn raw(&self, i: usize) -> bool {
        self.bytes[i / 8] & (0x80 >> (i % 8)) != 0
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn get(&self, i: usize) -> bool {
        i < self.len && self.raw(i)
    }

    pub fn set(&mut self, i: usize) {
        if i < self.len && !self.raw(i) {
            self.bytes[i / 8] |= 0x80 >> (i % 8);
            self.ones += 1;
        }
    }

    pub fn clear(&mut self, i: usize) {
        if i < self.len && self.raw(i) {
            self.bytes[i / 8] &= !(0x80 >> (i % 8));
            self.ones -= 1;
        }
    }

    pub fn count(&self) -> usize {
        self.ones
    }

    pub fn is_full(&self) -> bool {
        self.ones == self.len
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn ones(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.len).filter(|&i| self.raw(i))
    }
}

/// The record beside `NAME.part`: which identity is being downloaded, and which pieces were
/// verified and written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub identity: ContentHash,
    pub size: u64,
    pub piece_size: u32,
    pub have: Bitfield,
}

impl Record {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(52 + self.have.as_bytes().len());
        out.extend_from_slice(RECORD_MAGIC);
        out.extend_from_slice(&self.identity.0);
        out.extend_from_slice(&self.size.to_le_bytes());
        out.extend_from_slice(&self.piece_size.to_le_bytes());
        out.extend_from_slice(self.have.as_bytes());
        out
    }

    /// None for anything that is not a well-formed record.
    pub fn decode(bytes: &[u8]) -> Option<Record> {
        let rest = bytes.strip_prefix(RECORD_MAGIC)?;
        let (identity, rest) = rest.split_at_checked(32)?;
        let (size, rest) = rest.split_at_checked(8)?;
        let (piece_size, bits) = rest.split_at_checked(4)?;
        let size = u64::from_le_bytes(size.try_into().ok()?);
        let piece_size = u32::from_le_bytes(piece_size.try_into().ok()?);
        if piece_size == 0 {
            return None;
        }
        let count = piece_count(size, piece_size);
        if count > MAX_PIECES {
            return None;
        }
        Some(Record {
            identity: ContentHash(identity.try_into().ok()?),
            size,
            piece_size,
            have: Bitfield::from_bytes(count, bits)?,
        })
    }
}

pub fn part_name(name: &str) -> String {
    format!("{name}{PART_SUFFIX}")
}

pub fn record_name(name: &str) -> String {
    format!("{name}{RECORD_SUFFIX}")
}

/// Suffix of the temp file a record is written to before it is renamed over the record.
pub const RECORD_TEMP_SUFFIX: &str = ".part.pieces.tmp";

/// True for the files a download of this node keeps in `dir` beside its target: they are
/// not shared as files of their own. Known by what they are, not by their names alone, so
/// a user's own `notes.part` is shared like any other file:
/// * a record (`NAME.part.pieces`, or its temp file) starts with the record's magic bytes;
/// * `NAME.part` is a download's only while its record is beside it (a download writes
///   its record before it creates `NAME.part`, and removes it after `NAME.part` is gone).
pub fn is_download_artifact(dir: &Path, name: &str) -> bool {
    if name.ends_with(RECORD_SUFFIX) || name.ends_with(RECORD_TEMP_SUFFIX) {
        return is_record(&dir.join(name));
    }
    name.ends_with(PART_SUFFIX) && is_record(&dir.join(format!("{name}.pieces")))
}

/// Whether the file at `path` starts like a record of verified pieces.
fn is_record(path: &Path) -> bool {
    let mut magic = [0u8; RECORD_MAGIC.len()];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok_and(|()| &magic == RECORD_MAGIC)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn pieces_cover_the_file_exactly() {
        assert_eq!(piece_count(0, 10), 0);
        assert_eq!(piece_count(1, 10), 1);
        assert_eq!(piece_count(10, 10), 1);
        assert_eq!(piece_count(11, 10), 2);
        assert_eq!(piece_len(25, 10, 0), 10);
        assert_eq!(piece_len(25, 10, 2), 5);
        assert_eq!(piece_len(25, 10, 3), 0);
        assert_eq!(piece_offset(10, 2), 20);
    }

    #[test]
    fn identity_binds_size_piece_size_and_hashes() {
        let h = [hash_piece(b"a"), hash_piece(b"b")];
        let id = identity(2, 1, &h);
        assert_ne!(id, identity(3, 1, &h));
        assert_ne!(id, identity(2, 2, &h));
        assert_ne!(id, identity(2, 1, &[h[1], h[0]]));
        assert_eq!(id, identity(2, 1, &h));
    }

    #[test]
    fn hash_file_hashes_every_piece() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let data: Vec<u8> = (0..(PIECE_SIZE as usize * 2 + 7))
            .map(|i| (i % 251) as u8)
            .collect();
        std::fs::write(&path, &data).unwrap();
        let pieces = hash_file(&path).unwrap();
        assert_eq!(pieces.size, data.len() as u64);
        assert_eq!(pieces.hashes.len(), 3);
        assert_eq!(
            pieces.hashes[2],
            hash_piece(&data[2 * PIECE_SIZE as usize..])
        );
        std::fs::write(&path, b"").unwrap();
        assert!(hash_file(&path).unwrap().hashes.is_empty());
    }

    #[test]
    fn bitfields_count_and_round_trip() {
        let mut bits = Bitfield::new(10);
        bits.set(0);
        bits.set(9);
        bits.set(9);
        assert_eq!(bits.count(), 2);
        assert_eq!(bits.as_bytes(), &[0x80, 0x40]);
        assert_eq!(Bitfield::from_bytes(10, bits.as_bytes()).unwrap(), bits);
        assert!(
            Bitfield::from_bytes(10, &[0, 0x20]).is_none(),
            "spare bit set"
        );
        assert!(Bitfield::from_bytes(10, &[0]).is_none(), "too short");
        bits.clear(0);
        assert_eq!(bits.ones().collect::<Vec<_>>(), vec![9]);
        assert!(Bitfield::full(9).is_full());
        assert!(!bits.get(100));
    }

    #[test]
    fn records_round_trip_and_reject_junk() {
        let mut have = Bitfield::new(3);
        have.set(1);
        let record = Record {
            identity: ContentHash([7; 32]),
            size: 2 * u64::from(PIECE_SIZE) + 1,
            piece_size: PIECE_SIZE,
            have,
        };
        let bytes = record.encode();
        assert_eq!(Record::decode(&bytes).unwrap(), record);
        assert!(Record::decode(&bytes[..bytes.len() - 1]).is_none());
        assert!(Record::decode(b"garbage").is_none());
        let mut zero_piece = bytes.clone();
        zero_piece[48..52].copy_from_slice(&0u32.to_le_bytes());
        assert!(Record::decode(&zero_piece).is_none());
    }

    #[test]
    fn download_artifacts_are_known_by_their_record_and_a_users_part_file_is_not_one() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let record = Record {
            identity: ContentHash([1; 32]),
            size: 1,
            piece_size: PIECE_SIZE,
            have: Bitfield::new(1),
        };
        // A download of "a b": its record, the record's temp file and the part file.
        std::fs::write(d.join(record_name("a b")), record.encode()).unwrap();
        std::fs::write(
            d.join(format!("{}.tmp", record_name("a b"))),
            record.encode(),
        )
        .unwrap();
        std::fs::write(d.join(part_name("a b")), b"x").unwrap();
        assert!(is_download_artifact(d, &part_name("a b")));
        assert!(is_download_artifact(d, &record_name("a b")));
        assert!(is_download_artifact(d, "a b.part.pieces.tmp"));
        // The user's own files with such names.
        std::fs::write(d.join("x.part"), b"mine").unwrap();
        std::fs::write(d.join("y.part.pieces"), b"not a record").unwrap();
        assert!(!is_download_artifact(d, "x.part"));
        assert!(!is_download_artifact(d, "y.part.pieces"));
        assert!(!is_download_artifact(d, "particle"));
        // The part file of a download whose record is gone is the user's to deal with.
        std::fs::remove_file(d.join(record_name("a b"))).unwrap();
        assert!(!is_download_artifact(d, &part_name("a b")));
    }
}
