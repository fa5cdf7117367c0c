//! Peer-to-peer cluster: leader election, file index and swarm downloads.
//!
//! The logic lives in this library, one module per concept; the binary under `src/bin/`
//! only parses flags, sets up logging and calls [`node::run`].
//!
//! * [`config`]: the cluster (ids and addresses), from flags or a TOML file.
//! * [`protocol`]: the messages nodes exchange, and the wire protocol's name and version.
//! * [`election`]: the Bully election as a pure state machine (no I/O, no clock).
//! * [`peers`]: links to other nodes: dial, accept, handshake, refuse, close.
//! * [`index`]: scanning `--dir`, hashing files (cached), the cluster index and its log.
//! * [`pieces`]: piece size, piece hashes, file identity, bitfields, the resume record.
//! * [`picker`]: which piece to ask which peer for (rarest first, windows, bad peers).
//! * [`swarm`]: downloads (`get NAME`) from every holder at once.
//! * [`serve`]: serving pieces of this node's files to downloaders.
//! * [`console`]: the stdin commands.
//! * [`node`]: wires them together in one event loop.

pub mod config;
pub mod console;
pub mod election;
pub mod index;
pub mod node;
pub mod peers;
pub mod picker;
pub mod pieces;
pub mod protocol;
pub mod serve;
pub mod swarm;
