//! The client side: the pure sync state machine ([`sync`]), the reconnecting connection
//! ([`link`]) and the front ends built on them: [`lines`] (line mode for scripts and
//! pipes, reporting others' changes per line through [`updates`]), [`tui`] (full-screen, over the pure [`view`] model and [`render`]), and
//! [`replay`] (trace replay benchmark).

pub mod lines;
pub mod link;
pub mod render;
pub mod replay;
pub mod sync;
pub mod tui;
pub mod updates;
pub mod view;
