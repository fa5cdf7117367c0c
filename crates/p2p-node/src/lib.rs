//! Peer-to-peer cluster: leader election, file index and swarm downloads.
//!
//! The logic lives in this library; the binary under `src/bin/` only parses flags, sets up
//! logging and calls [`node::run`]. The crate has two parts, the wire beneath them and the
//! node loop above them, and imports run one way: `node` → `swarm` → `cluster` → `wire`.
//!
//! * [`wire`]: every message nodes exchange and the shared types (ids, terms, hashes).
//! * [`cluster`]: who is in the cluster, who leads, the links between nodes (every
//!   connection's handshake), and the leader's index of everyone's files.
//! * [`swarm`]: this node's shared files cut into pieces, served to and fetched from many
//!   holders at once over the cluster's links.
//! * [`node`]: the event loop that wires the two together for one running node.
//! * [`console`]: the stdin commands, and where the node's words to its user are printed.
//! * [`words`]: counts with their noun in the right number.

pub mod cluster;
pub mod console;
pub mod node;
pub mod swarm;
pub mod wire;
pub mod words;
