//! `editor-server`: accepts clients, hands each to its document's sequencer task.
//!
//! * [`registry`]: document name → the task that owns it, started on first use.
//! * [`doc_task`]: one task per document, the single sequencer: transform, apply, journal
//!   with group commit, then `Ack` and `Remote` to the sessions' bounded queues.
//! * [`accept`]: from an accepted socket to a served connection: TLS, then dispatch.
//! * [`session`]: one task per connection: handshake, `Join`, then messages both ways.
//! * [`outgoing`]: a session's queue, bounded in messages and bytes; shared snapshots.
//! * [`shares`]: per-source limits, the memory budget, and shedding the heaviest clients.
//! * [`dispatch`]: one port for both kinds of client: the first byte tells the editor
//!   protocol from HTTP.
//! * [`web`]: the browser's side: pages, the bundled editor, and the WebSocket that speaks
//!   the protocol as JSON ([`client_link`] lets one session loop serve both encodings).
//! * [`access`]: who may join: token secret, revoked tokens, the loopback rule.
//! * [`lock`]: one server per data directory.
//!
//! Data flow: socket → session → bounded channel → document task → each session's bounded
//! outgoing queue → socket. No lock is shared between sessions; a session that cannot keep
//! up is disconnected (it reconnects and catches up) instead of slowing the document.

pub mod accept;
pub mod access;
pub mod client_link;
pub mod dispatch;
pub mod doc_task;
pub mod lock;
pub mod outgoing;
pub mod registry;
pub mod session;
pub mod shares;
pub mod web;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::document::HistoryLimit;
use crate::protocol::MAX_DOCUMENT_BYTES;
use crate::storage::{Storage, StorageError};
use registry::Registry;

/// Everything the server needs to know, from the command line.
#[derive(Clone, Debug)]
pub struct Config {
    pub binds: Vec<SocketAddr>,
    pub port: u16,
    pub data_dir: PathBuf,
    pub history: HistoryLimit,
    /// Most simultaneous connections; more get a `Busy` error.
    pub max_clients: usize,
    /// Most documents loaded at once.
    pub max_documents: usize,
    /// Messages queued for one client before it is disconnected as too slow.
    pub client_queue: usize,
    /// How often a changed document's `.txt` is rewritten and its journal cut back.
    pub save_interval: Duration,
    /// A document nobody has used for this long is saved and unloaded.
    pub idle_unload: Duration,
    pub max_document_bytes: usize,
    /// Bytes queued for one client before it is disconnected as too slow.
    pub client_queue_bytes: usize,
    /// Bytes all connections together may buffer (frames in progress, queued output).
    pub max_memory: usize,
    /// A frame must complete within this once its first byte arrived.
    pub frame_timeout: Duration,
    pub max_connections_per_source: usize,
    pub max_handshakes_per_source: usize,
    pub max_documents_per_source: usize,
    /// Presence updates a client may send per second (twice that in a burst) before the
    /// server stops reading from it.
    pub presence_rate: u32,
    /// TLS on every connection, or plaintext (`--no-tls`).
    pub tls: TlsChoice,
    /// Ask every connection for a token, loopback ones too.
    pub require_token: bool,
}

/// Where the server's certificate comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TlsChoice {
    /// A self-signed certificate kept in the data directory (created on first start).
    SelfSigned,
    /// `--tls-cert FILE --tls-key FILE`.
    Files { cert: PathBuf, key: PathBuf },
    /// `--no-tls`: plaintext, for benchmarks and debugging.
    Off,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            binds: Vec::new(),
            port: 8080,
            data_dir: PathBuf::from("./documents"),
            history: HistoryLimit::default(),
            max_clients: 10_000,
            max_documents: 1_000,
            client_queue: 4096,
            save_interval: Duration::from_secs(10),
            idle_unload: Duration::from_secs(60),
            max_document_bytes: MAX_DOCUMENT_BYTES,
            client_queue_bytes: 16 * 1024 * 1024,
            max_memory: 512 * 1024 * 1024,
            frame_timeout: Duration::from_secs(5),
            max_connections_per_source: 2_000,
            max_handshakes_per_source: 512,
            max_documents_per_source: 256,
            presence_rate: 200,
            tls: TlsChoice::SelfSigned,
            require_token: false,
        }
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Net(#[from] netutil::NetError),
    #[error("data directory: {0}")]
    Storage(#[from] StorageError),
    #[error("{0}")]
    DataDir(String),
    #[error("TLS: {0}")]
    Tls(#[from] crate::tls::TlsError),
    #[error("access tokens: {0}")]
    Access(std::io::Error),
}

/// Runs the server until `shutdown` is triggered, then saves every document.
pub async fn run(config: Config, shutdown: netutil::Shutdown) -> Result<(), ServerError> {
    let _lock = lock::lock_data_dir(&config.data_dir).map_err(ServerError::DataDir)?;
    let storage = Storage::open(&config.data_dir, config.max_document_bytes)?;
    tracing::info!("documents in {}", storage.dir().display());
    let access = Arc::new(
        access::Access::open(&config.data_dir, config.require_token)
            .map_err(ServerError::Access)?,
    );
    let tls = accept::tls_acceptor(&config)?;
    let mut listener = netutil::bind_tcp(&config.binds, config.port)?;
    for addr in listener.local_addrs() {
        let shown = match netutil::display_addr(addr) {
            a if a.ip().is_unspecified() => format!("localhost:{}", a.port()),
            a => a.to_string(),
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        tracing::info!("web editor on the same port: {scheme}://{shown}/");
    }
    accept::print_how_to_connect(&config, &access, tls.is_some(), listener.port());
    let mut registry = Registry::new(storage, config.clone(), shutdown.clone());
    registry.access = Some(access);
    let registry = Arc::new(registry);
    let permits = Arc::new(Semaphore::new(config.max_clients));
    let token = shutdown.token();
    let accept_log = netutil::LogLimiter::new(netutil::LOG_INTERVAL);
    loop {
        let accepted = tokio::select! {
            _ = token.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, addr) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                if let Some(more) = accept_log.check(&()) {
                    tracing::warn!("accept failed: {e}{more}");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // A source may have only so many connections between accept and Join: beyond
        // that it is closed at once, before it costs a task or a handshake timer.
        let handshake = match registry.shares.handshakes.try_acquire(addr.ip()) {
            Ok(guard) => guard,
            Err(full) => {
                if let Some(more) = registry.shares.should_log(addr.ip(), "handshakes") {
                    tracing::warn!(
                        "{addr}: refused: {full}: handshakes in progress (--max-handshakes-per-source){more}"
                    );
                }
                continue;
            }
        };
        let admission = session::Admission {
            permit: permits.clone().try_acquire_owned().ok(),
            source: registry.shares.connections.try_acquire(addr.ip()),
            handshake,
        };
        let registry = registry.clone();
        let token = token.clone();
        let tls = tls.clone();
        shutdown.spawn(async move {
            accept::serve(stream, addr, tls, registry, token, admission).await;
        });
    }
    drop(listener);
    shutdown.drain(Duration::from_secs(20)).await;
    Ok(())
}
