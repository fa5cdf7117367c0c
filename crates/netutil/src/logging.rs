//! Logging set-up shared by every binary: `tracing` to stderr, level from `RUST_LOG`.

use std::io::IsTerminal;

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// Sends `tracing` output to stderr, filtered by `RUST_LOG` (default `info`). Colours only
/// when stderr is a terminal, so logs captured by tests and pipes stay plain text.
/// Calling it twice is harmless.
pub fn init_logging() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}

/// Like [`init_logging`], with the lines going to `writer` (p2p-node's console prints them
/// above its prompt while a line editor owns the terminal). Colours when stderr is a
/// terminal.
pub fn init_logging_to<W>(writer: W)
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}
