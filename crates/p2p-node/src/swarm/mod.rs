//! The swarm: files cut into pieces, served to downloaders and fetched from every holder at
//! once.
//!
//! * [`pieces`]: piece size, piece hashes, file identity, bitfields, the resume record (pure).
//! * [`picker`]: which piece to ask which peer for (rarest first, windows, bad peers; pure).
//! * [`share`]: this node's shared directory, scanned and hashed into pieces (cached).
//! * [`serve`]: serving pieces of this node's files on data connections.
//! * [`download`]: `get NAME`, one file per step: find holders, connect, the per-peer loop,
//!   verify + write, resume, publish.

pub mod download;
pub mod picker;
pub mod pieces;
pub mod serve;
pub mod share;

pub use download::{
    check_name, download, print_line, Summary, SwarmContext, SwarmError, SwarmEvent, MAX_DOWNLOADS,
};
