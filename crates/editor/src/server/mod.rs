//! `editor-server`: accepts clients, hands each to its document's sequencer task.
//!
//! * [`registry`]: document name → the task that owns it, started on first use.
//! * [`doc_task`]: one task per document, the single sequencer: transform, apply, journal
//!   with group commit, then `Ack` and `Remote` to the sessions' bounded queues.
//! * [`session`]: one task per connection: handshake, `Join`, then messages both ways.
//!
//! Data flow: socket → session → bounded channel → document task → each session's bounded
//! outgoing queue → socket. No lock is shared between sessions; a session that cannot keep
//! up is disconnected (it reconnects and catches up) instead of slowing the document.

pub mod doc_task;
pub mod registry;
pub mod session;

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
}

/// Runs the server until `shutdown` is triggered, then saves every document.
pub async fn run(config: Config, shutdown: netutil::Shutdown) -> Result<(), ServerError> {
    let storage = Storage::open(&config.data_dir, config.max_document_bytes)?;
    tracing::info!("documents in {}", storage.dir().display());
    let mut listener = netutil::bind_tcp(&config.binds, config.port)?;
    let registry = Arc::new(Registry::new(storage, config.clone(), shutdown.clone()));
    let permits = Arc::new(Semaphore::new(config.max_clients));
    let token = shutdown.token();
    loop {
        let accepted = tokio::select! {
            _ = token.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, addr) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let permit = permits.clone().try_acquire_owned().ok();
        let registry = registry.clone();
        let token = token.clone();
        shutdown.spawn(async move {
            session::run(stream, addr, registry, token, permit).await;
        });
    }
    drop(listener);
    shutdown.drain(Duration::from_secs(20)).await;
    Ok(())
}
