//! Protocol-independent echo server and client (RFC 862) over IPv4 and IPv6, TCP and UDP.
//!
//! The logic lives in this library, one module per concept; the binaries under `src/bin/`
//! only parse flags, set up logging and call in here.
//!
//! * [`server`]: the TCP side of `echo-server` (accept loop, connection limit, idle timeout,
//!   one reused buffer per connection) and the process around it (signals, UDP, drain).
//! * [`conn_log`]: connect lines at info for a few clients, at debug with a summary for
//!   many at once.
//! * [`udp`]: the UDP side of `echo-server`, with the reflection guards.
//! * [`ratelimit`]: per-source token buckets in a bounded table (pure, no I/O).
//! * [`target`]: how the client reaches a server: resolve, Happy Eyeballs, `Connected to`.
//! * [`client`]: interactive and pipe modes of `echo-client`.
//! * [`ping`]: ping mode: timed probes, per-probe lines and a summary.
//! * [`bench`]: bench mode: many connections in send-and-wait loops for a fixed time.
//! * [`stats`]: RTT statistics (min/avg/max/mdev and hdrhistogram percentiles; pure).
//! * [`duration`]: parsing `300s`, `250ms`, `1.5s` on the command line.
//! * [`error`]: [`EchoError`], the typed error of this library.

pub mod bench;
pub mod client;
pub mod conn_log;
pub mod duration;
pub mod error;
pub mod ping;
pub mod ratelimit;
pub mod server;
pub mod stats;
pub mod target;
pub mod udp;

pub use error::EchoError;

/// The largest UDP payload that fits in one IPv4 datagram (65535 - 20 - 8).
pub const MAX_DATAGRAM: usize = 65_507;
