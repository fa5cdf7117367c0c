//! The cluster: which nodes exist, which one leads, the links between them, and the index
//! of every node's files that the leader keeps.
//!
//! * [`config`]: the cluster (ids, addresses, public keys), from flags or a TOML file.
//! * [`init`]: `p2p-node init-cluster`, a cluster with keys in one command.
//! * [`election`]: the Bully election as a pure state machine (no I/O, no clock).
//! * [`links`]: every TCP connection to or from another node starts here (dial, accept,
//!   handshake, refuse, close), control links and swarm data connections alike.
//! * [`index`]: the leader's cluster index (which node shares which files) and its log.
//!
//! Nothing here uses the swarm: data connections are handed to a
//! [`links::DataService`] the node passes in.

pub mod config;
pub mod election;
pub mod index;
pub mod init;
pub mod links;
