//! `editor-server`: serves collaboratively edited plain-text documents.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use editor::document::HistoryLimit;
use editor::server::{self, Config};

/// Collaborative plain-text editor server: many named documents, many clients each, every
/// acknowledged change durable on disk.
#[derive(Parser, Debug)]
#[command(
    version,
    after_help = "Examples:
  editor-server                                    port 8080, documents in ./documents
  editor-server --port 9000 --bind 127.0.0.1 --data-dir /srv/docs
  editor-server --port 0                           any free port (the log says which)
Then, from another terminal: editor-client --port 9000 --doc notes"
)]
struct Args {
    /// TCP port to listen on (0: let the OS pick; the log says which).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Address to listen on (repeatable; `[::1]:9000` or `127.0.0.1`). Default: every
    /// IPv4 and IPv6 address on one dual-stack socket.
    #[arg(long = "bind", value_name = "ADDR")]
    binds: Vec<String>,
    /// Directory holding `<name>.txt` documents and their journals (created if missing).
    #[arg(long, default_value = "./documents")]
    data_dir: PathBuf,
    /// Changes kept per document for transforming late edits and catching clients up.
    #[arg(long, default_value_t = 100_000)]
    history: usize,
    /// Most simultaneous client connections.
    #[arg(long, default_value_t = 10_000)]
    max_clients: usize,
    /// Most documents loaded at once.
    #[arg(long, default_value_t = 1_000)]
    max_documents: usize,
    /// Messages queued for a client before it is disconnected as too slow.
    #[arg(long, default_value_t = 4096)]
    client_queue: usize,
    /// Seconds between rewrites of a changed document's `.txt` (the journal keeps every
    /// acknowledged change durable in between).
    #[arg(long, default_value_t = 10)]
    save_interval: u64,
    /// Seconds a document with no clients stays loaded before it is saved and unloaded.
    #[arg(long, default_value_t = 60)]
    idle_unload: u64,
    /// Bytes all clients together may hold in the server (frames being received, messages
    /// queued for them), in MiB. Near it, new joins are refused with a reason; at it, the
    /// clients holding the most unread data are disconnected first (they catch up on
    /// reconnect). Example: --max-memory 256.
    #[arg(long, value_name = "MIB", default_value_t = 512)]
    max_memory: usize,
    /// Bytes queued for one client, in MiB, before it is disconnected as too slow (at
    /// least one snapshot always fits).
    #[arg(long, value_name = "MIB", default_value_t = 16)]
    client_queue_bytes: usize,
    /// Seconds a client may take to finish a frame once its first byte arrived; a client
    /// that starts a large frame and stalls is closed after it.
    #[arg(long, value_name = "SECS", default_value_t = 5)]
    frame_timeout: u64,
    /// Connections one source may hold (a source is an IPv4 address or an IPv6 /64;
    /// 127.0.0.1 and 127.0.0.2 are two). More get a Busy error.
    #[arg(long, default_value_t = 2_000)]
    max_connections_per_source: usize,
    /// Connections one source may have between accept and Join (handshake not done);
    /// more are closed at once.
    #[arg(long, default_value_t = 512)]
    max_handshakes_per_source: usize,
    /// Documents one source may have loaded on its behalf (joining a document someone
    /// else loaded is free). More get a Busy error until some unload.
    #[arg(long, default_value_t = 256)]
    max_documents_per_source: usize,
    /// Presence (cursor) updates a client may send per second, twice that in a burst.
    /// Beyond it the server stops reading from the client; after 10 s of that, it closes.
    #[arg(long, default_value_t = 200)]
    presence_rate: u32,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    netutil::init_logging();
    netutil::cli::exit_code("editor-server", run(args).await)
}

async fn run(args: Args) -> anyhow::Result<()> {
    let binds = args
        .binds
        .iter()
        .map(|b| netutil::parse_bind_addr(b, args.port))
        .collect::<Result<Vec<_>, _>>()?;
    let config = Config {
        binds,
        port: args.port,
        data_dir: args.data_dir,
        history: HistoryLimit {
            changes: args.history.max(1),
            ..HistoryLimit::default()
        },
        max_clients: args.max_clients,
        max_documents: args.max_documents,
        client_queue: args.client_queue.max(16),
        save_interval: Duration::from_secs(args.save_interval.max(1)),
        idle_unload: Duration::from_secs(args.idle_unload),
        max_memory: args.max_memory.max(16).saturating_mul(1024 * 1024),
        client_queue_bytes: args.client_queue_bytes.max(8).saturating_mul(1024 * 1024),
        frame_timeout: Duration::from_secs(args.frame_timeout.max(1)),
        max_connections_per_source: args.max_connections_per_source,
        max_handshakes_per_source: args.max_handshakes_per_source,
        max_documents_per_source: args.max_documents_per_source,
        presence_rate: args.presence_rate,
        ..Config::default()
    };
    let shutdown = netutil::Shutdown::new();
    let trigger = shutdown.clone();
    tokio::spawn(async move {
        netutil::shutdown_signal().await;
        trigger.trigger();
    });
    server::run(config, shutdown).await?;
    Ok(())
}
