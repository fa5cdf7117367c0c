//! End-to-end tests of p2p-node swarm downloads (`get NAME`): real processes, real sockets.
#![allow(clippy::unwrap_used)]
