//! The client side: the pure sync state machine ([`sync`]), the reconnecting connection
//! ([`link`]) and the front ends built on them: [`lines`] (line mode for scripts and
//! pipes, reporting others' changes per line through [`updates`]), [`tui`] (full-screen, over the pure [`view`] model and [`render`]), and
//! [`replay`] (trace replay benchmark). [`recovery`] keeps what the server could not save
//! when the user quits anyway.

pub mod lines;
pub mod link;
pub mod recovery;
pub mod render;
pub mod replay;
pub mod sync;
pub mod trust;
pub mod tui;
pub mod updates;
pub mod view;
