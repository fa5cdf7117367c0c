//! The client side: the pure sync state machine ([`sync`]) and the front ends built on it.

pub mod sync;
