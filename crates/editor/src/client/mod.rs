//! The client side: the pure sync state machine ([`sync`]) and the front ends built on it
//! ([`lines`]: line mode for scripts and pipes).

pub mod lines;
pub mod sync;
