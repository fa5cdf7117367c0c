//! `editor-server`: serves collaboratively edited plain-text documents.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args as ClapArgs, Parser, Subcommand};
use editor::auth::{self, Mode};
use editor::document::HistoryLimit;
use editor::server::{self, access, Config, TlsChoice};

/// Collaborative plain-text editor server: many named documents, many clients each, every
/// acknowledged change durable on disk.
#[derive(Parser, Debug)]
#[command(
    version,
    after_help = "Examples:
  editor-server                                    port 8080, documents in ./documents
  editor-server --port 9000 --bind 127.0.0.1 --data-dir /srv/docs
  editor-server --port 0                           any free port (the log says which)
Then, from another terminal: editor-client --port 9000 --doc notes

Security: every connection uses TLS. Without --tls-cert/--tls-key the server creates a
self-signed certificate in the data directory and logs its fingerprint at every start;
clients record it on first connection (like ssh). Connections from this machine (loopback)
need no token unless --require-token; connections from elsewhere need one: the server logs a
ready-made `editor-client HOST --token ...` line at start, and `editor-server token` mints
more:
  editor-server token --doc notes --read-write --label alice --expires 7d
  editor-server token --doc 'reports*' --read-only
  editor-server token --list
  editor-server token --revoke 3f2a9c0e1b7d4a55"
)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// TCP port to listen on (0: let the OS pick; the log says which).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Address to listen on (repeatable; `[::1]:9000` or `127.0.0.1`). Default: every
    /// IPv4 and IPv6 address on one dual-stack socket.
    #[arg(long = "bind", value_name = "ADDR")]
    binds: Vec<String>,
    /// Directory holding `<name>.txt` documents and their journals (created if missing).
    #[arg(long, default_value = "./documents", global = true)]
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
    /// TLS certificate chain (PEM) to present instead of the self-signed one; clients
    /// check it against their system's authorities (or their --ca).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Plaintext, no TLS: documents and tokens cross the network readable by anyone on
    /// the path. For benchmarks and debugging; clients need --no-tls too.
    #[arg(long, conflicts_with_all = ["tls_cert", "tls_key"])]
    no_tls: bool,
    /// Ask every connection for an access token, also those from this machine.
    #[arg(long)]
    require_token: bool,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Mint, list or revoke access tokens (signed with the secret in the data directory;
    /// a running server sees revocations within a second).
    Token(TokenArgs),
}

#[derive(ClapArgs, Debug)]
#[command(group(clap::ArgGroup::new("action").required(true).args(["doc", "revoke", "list"])))]
struct TokenArgs {
    /// Documents the token opens: a name, a prefix ending in `*` (`notes*`), or `*` for
    /// every document.
    #[arg(long, value_name = "NAME|PREFIX*|'*'", requires = "mode")]
    doc: Option<String>,
    /// The holder may read the document and see others' changes, not edit.
    #[arg(long, group = "mode")]
    read_only: bool,
    /// The holder may edit.
    #[arg(long, group = "mode")]
    read_write: bool,
    /// How long the token is valid: 30m, 24h, 7d, 2w (default: no expiry).
    #[arg(long, value_name = "DURATION", requires = "doc")]
    expires: Option<String>,
    /// The holder's display name (it replaces whatever name the client asks for).
    #[arg(long, requires = "doc")]
    label: Option<String>,
    /// Revoke the token with this id (as shown by --list); running servers stop its
    /// sessions within a few seconds.
    #[arg(long, value_name = "ID")]
    revoke: Option<String>,
    /// List the tokens minted with this data directory's secret.
    #[arg(long)]
    list: bool,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    netutil::init_logging();
    netutil::alloc::release_large_buffers();
    netutil::cli::exit_code("editor-server", run(args).await)
}

async fn run(args: Args) -> anyhow::Result<()> {
    if let Some(Command::Token(token)) = &args.command {
        return token_command(&args.data_dir, token);
    }
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
        tls: match (args.no_tls, args.tls_cert, args.tls_key) {
            (true, _, _) => TlsChoice::Off,
            (false, Some(cert), Some(key)) => TlsChoice::Files { cert, key },
            _ => TlsChoice::SelfSigned,
        },
        require_token: args.require_token,
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

/// `editor-server token ...`: prints a token, the list, or revokes one.
fn token_command(data_dir: &std::path::Path, args: &TokenArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(data_dir)?;
    if args.list {
        for line in access::list(data_dir)? {
            println!("{line}");
        }
        return Ok(());
    }
    if let Some(id) = &args.revoke {
        access::revoke(data_dir, id)?;
        println!("revoked {id}");
        return Ok(());
    }
    let Some(doc) = &args.doc else {
        anyhow::bail!("give --doc NAME, --list or --revoke ID");
    };
    auth::validate_pattern(doc).map_err(anyhow::Error::msg)?;
    let mode = if args.read_only {
        Mode::ReadOnly
    } else {
        Mode::ReadWrite
    };
    let valid_for = args
        .expires
        .as_deref()
        .map(auth::parse_duration)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    if let Some(label) = &args.label {
        editor::protocol::validate_display_name(label).map_err(anyhow::Error::msg)?;
    }
    let claims = access::new_claims(doc.clone(), mode, valid_for, args.label.clone())?;
    let keeper = access::Access::open(data_dir, false)?;
    let token = keeper.mint(data_dir, &claims)?;
    eprintln!("token {} for {doc} ({mode:?})", claims.id);
    println!("{token}");
    Ok(())
}
