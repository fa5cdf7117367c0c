//! Which documents are loaded, and the channel to each one's task.
//!
//! A document's task is started the first time someone joins it and removes itself from
//! the registry when it unloads. The lock is held only to look up or insert a sender,
//! never across an await.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};

use super::doc_task::{self, DocCmd, JoinRequest};
use super::shares::Shares;
use super::Config;
use crate::protocol::ErrorCode;
use crate::storage::Storage;

/// Commands queued for one document before sessions wait.
const DOC_QUEUE: usize = 4096;

pub struct Registry {
    docs: Mutex<HashMap<String, mpsc::Sender<DocCmd>>>,
    pub(crate) storage: Storage,
    pub(crate) config: Config,
    pub(crate) shutdown: netutil::Shutdown,
    pub(crate) shares: Shares,
    /// Token checks; `None` admits everyone (library users and tests that build a
    /// registry by hand).
    pub access: Option<Arc<super::access::Access>>,
}

/// What a session gets back from a successful join.
pub struct Joined {
    pub doc: mpsc::Sender<DocCmd>,
}

impl Registry {
    pub fn new(storage: Storage, config: Config, shutdown: netutil::Shutdown) -> Self {
        Registry {
            docs: Mutex::new(HashMap::new()),
            storage,
            shares: Shares::new(&config),
            config,
            shutdown,
            access: None,
        }
    }

    /// Joins document `name`, starting its task if needed. The document task puts the
    /// snapshot or catch-up into the session's queue before this returns. `Err(None)`: the
    /// task dropped the request while unloading; try again with a new one.
    pub async fn join(
        self: &Arc<Self>,
        name: &str,
        mut request: JoinRequest,
    ) -> Result<Joined, Option<(ErrorCode, String)>> {
        // A task that is unloading drops joins it has not handled: try again with a new one.
        for _ in 0..3 {
            let doc = self.handle(name, request.addr.ip()).map_err(Some)?;
            let (reply_tx, reply_rx) = oneshot::channel();
            request.reply = Some(reply_tx);
            let cmd = DocCmd::Join(Box::new(request));
            match doc.send(cmd).await {
                Ok(()) => {}
                Err(mpsc::error::SendError(cmd)) => {
                    let DocCmd::Join(r) = cmd else {
                        break;
                    };
                    request = *r;
                    self.forget(name, &doc);
                    continue;
                }
            }
            return match reply_rx.await {
                Ok(Ok(())) => Ok(Joined { doc }),
                Ok(Err(refused)) => Err(Some(refused)),
                // The task dropped the join (it was unloading or failed): the caller
                // starts over with a fresh request.
                Err(_) => {
                    self.forget(name, &doc);
                    Err(None)
                }
            };
        }
        Err(Some((
            ErrorCode::Unavailable,
            format!("document {name} is unavailable"),
        )))
    }

    fn handle(
        self: &Arc<Self>,
        name: &str,
        opener: std::net::IpAddr,
    ) -> Result<mpsc::Sender<DocCmd>, (ErrorCode, String)> {
        let mut docs = self
            .docs
            .lock()
            .map_err(|_| (ErrorCode::Unavailable, "server state poisoned".to_owned()))?;
        if let Some(tx) = docs.get(name).filter(|tx| !tx.is_closed()) {
            return Ok(tx.clone());
        }
        docs.retain(|_, tx| !tx.is_closed());
        if docs.len() >= self.config.max_documents {
            return Err((
                ErrorCode::Busy,
                format!(
                    "too many documents open ({}); try later",
                    self.config.max_documents
                ),
            ));
        }
        // Loaded documents are a shared pool: a source may load only its share of them
        // (held until the document unloads).
        let opened = self.shares.documents.try_acquire(opener).map_err(|full| {
            (
                ErrorCode::Busy,
                format!(
                    "{full} documents loaded on its behalf (--max-documents-per-source); try later"
                ),
            )
        })?;
        let (tx, rx) = mpsc::channel(DOC_QUEUE);
        docs.insert(name.to_owned(), tx.clone());
        let registry = self.clone();
        let name = name.to_owned();
        self.shutdown
            .spawn(async move { doc_task::run(name, rx, registry, opened).await });
        Ok(tx)
    }

    /// Removes `name` if it still maps to `tx` (called by an unloading task and by joins
    /// that found the task gone).
    pub fn forget(&self, name: &str, tx: &mpsc::Sender<DocCmd>) {
        if let Ok(mut docs) = self.docs.lock() {
            if docs.get(name).is_some_and(|t| t.same_channel(tx)) {
                docs.remove(name);
            }
        }
    }

    /// Removes `name` if its task has no queued commands; returns whether it did. Sessions
    /// that already hold a sender and send later see a closed channel and retry.
    pub fn try_unload(&self, name: &str, rx: &mut mpsc::Receiver<DocCmd>) -> bool {
        let Ok(mut docs) = self.docs.lock() else {
            return false;
        };
        if !rx.is_empty() {
            return false;
        }
        docs.remove(name);
        rx.close();
        true
    }
}
