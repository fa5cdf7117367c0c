//! Pieces shared by every program in the workspace: networking, and durable file writes.
//!
//! Each module holds one concept, so a program picks what it needs:
//!
//! * [`codec`]: length-delimited frames with a size limit checked before any allocation.
//! * [`connection`]: [`Connection`], a byte stream carrying typed (postcard) messages.
//! * [`transport`]: [`Transport`], what a stream needs to carry a [`Connection`]: TCP, TLS,
//!   an encrypted channel.
//! * [`handshake`]: the first frame on every connection names the protocol and version.
//! * [`listen`]: dual-stack (IPv4 + IPv6 on one port) listeners and peer-address display.
//! * [`connect`]: resolve a host name and race its addresses, Happy Eyeballs style.
//! * [`shutdown`]: Ctrl-C / SIGTERM handling with a cancellation token and task tracker.
//! * [`logging`]: one call to send `tracing` output to stderr, filtered by `RUST_LOG`.
//! * [`limits`]: per-source shares (IPv6 by /64) and a memory budget in bytes, shared by
//!   a server's connections, each released by dropping its guard.
//! * [`log_limit`]: repeated warnings once per key per interval, with a count of the rest.
//! * [`noise`]: authenticated, encrypted streams (Noise XX) and the static keys they prove.
//! * [`durable`]: atomic, durable file replacement (temp file, fsync, rename, fsync dir).
//! * [`cli`]: how a binary reports a failure: one line on stderr, exit status 1.
//! * [`names`]: the characters no name shown to other users may contain (bidi overrides).
//! * [`alloc`]: freed large buffers return to the OS, so memory budgets bound the RSS.
//! * [`error`]: the typed error every fallible function here returns.

pub mod alloc;
pub mod cli;
pub mod codec;
pub mod connect;
pub mod connection;
pub mod durable;
pub mod error;
pub mod handshake;
pub mod limits;
pub mod listen;
pub mod log_limit;
pub mod logging;
pub mod names;
pub mod noise;
pub mod shutdown;
pub mod transport;

pub use codec::{FrameCodec, DEFAULT_MAX_FRAME};
pub use connect::{connect, connect_addrs, resolve, ConnectOptions, Family};
pub use connection::{Connection, RecvHalf, SendHalf};
pub use error::NetError;
pub use handshake::Protocol;
pub use limits::{Charge, MemoryBudget, Source, SourceFull, SourceGuard, SourceLimiter};
pub use listen::{bind_tcp, bind_udp, display_addr, family_name, parse_bind_addr, Listener};
pub use log_limit::{LogLimiter, Suppressed, LOG_INTERVAL};
pub use logging::{init_logging, init_logging_to};
pub use shutdown::{shutdown_signal, Shutdown};
pub use transport::{Generic, Transport};
