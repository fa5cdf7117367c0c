//! Peer-to-peer cluster: leader election, file index and swarm downloads.
//!
//! The logic lives in this library; the binary under `src/bin/` only parses flags, sets up
//! logging and calls [`cluster::node::run`]. The crate has two parts and the wire between
//! them; imports run one way: `cluster` and `swarm` use [`wire`], `swarm` uses the
//! cluster's config and index, and only the node loop (`cluster::node`) starts downloads.
//!
//! * [`wire`]: every message nodes exchange and the shared types (ids, terms, hashes).
//! * [`cluster`]: who is in the cluster, who leads, the links between nodes, the index of
//!   everyone's files, and the node's event loop.
//! * [`swarm`]: files cut into pieces, served to and fetched from many holders at once.
//! * [`console`]: the stdin commands, and where the node's words to its user are printed.
//! * [`words`]: counts with their noun in the right number.

pub mod cluster;
pub mod console;
pub mod swarm;
pub mod wire;
pub mod words;
