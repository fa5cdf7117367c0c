//! Peer-to-peer cluster: leader election, file index and swarm downloads.
//!
//! The logic lives in this library, one module per concept; the binaries under `src/bin/`
//! only parse flags, set up logging and call in here.
