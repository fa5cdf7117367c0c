//! This node's files and the cluster index: what it shares (its directory plus downloads
//! in progress), reporting them to the leader, the leader's index and its log, and the
//! askers waiting for the leader's index.

use std::collections::BTreeSet;

use tokio::sync::oneshot;

use super::tasks::IndexLog;
use super::{Node, MAX_FILES_WAITERS};
use crate::cluster::election::NodeId;
use crate::cluster::index::ClusterIndex;
use crate::wire::{FileEntry, Message};

/// Who waits for the leader's index: the console (as text) or a download.
pub(super) enum Waiter {
    Text(oneshot::Sender<String>),
    Index(oneshot::Sender<Result<ClusterIndex, String>>),
}

impl Waiter {
    /// The asker gave up (the console and downloads wait a few seconds at most).
    pub(super) fn is_closed(&self) -> bool {
        match self {
            Waiter::Text(tx) => tx.is_closed(),
            Waiter::Index(tx) => tx.is_closed(),
        }
    }

    /// Answers with `reason` instead of the index.
    pub(super) fn refuse(self, reason: &str) {
        match self {
            Waiter::Text(tx) => {
                let _ = tx.send(reason.to_owned());
            }
            Waiter::Index(tx) => {
                let _ = tx.send(Err(reason.to_owned()));
            }
        }
    }
}

/// The waiters for the leader's next `Index`, at most [`MAX_FILES_WAITERS`]. A request the
/// leader never answers (it died, or stopped leading, before replying) must not hold its
/// place once its asker gave up: otherwise the places fill up for good, and a follower
/// could never again ask for the index (no request, so no answer to clear them).
#[derive(Default)]
pub(super) struct IndexWaiters(Vec<Waiter>);

impl IndexWaiters {
    /// Adds `waiter`; gives it back when [`MAX_FILES_WAITERS`] askers are still waiting.
    pub(super) fn admit(&mut self, waiter: Waiter) -> Result<(), Waiter> {
        self.0.retain(|w| !w.is_closed());
        if self.0.len() >= MAX_FILES_WAITERS {
            return Err(waiter);
        }
        self.0.push(waiter);
        Ok(())
    }

    pub(super) fn drain(&mut self) -> std::vec::Drain<'_, Waiter> {
        self.0.drain(..)
    }
}

impl Node {
    pub(super) fn drop_from_index(&mut self, peer: NodeId) {
        if let Some(index) = &mut self.index {
            if index.remove(peer) {
                self.publish_index();
            }
        }
    }

    pub(super) fn publish_index(&mut self) {
        if let Some(index) = &self.index {
            self.log_tx.send_replace(IndexLog::Leading(index.render()));
        }
    }

    /// What this node shares: its directory's files and its downloads in progress (a name
    /// present in both is listed as the complete file).
    pub(super) fn shared_files(&self) -> Option<Vec<FileEntry>> {
        let mut files = self.local_files.clone()?;
        let complete: BTreeSet<String> = files.iter().map(|f| f.name.clone()).collect();
        files.extend(
            self.partial
                .values()
                .filter(|p| !complete.contains(&p.name))
                .cloned(),
        );
        files.sort();
        files.truncate(crate::wire::MAX_FILES);
        Some(files)
    }

    /// Our own file list changed: update the index (leader) or report it (follower).
    pub(super) fn files_changed(&mut self) {
        if self.index.is_some() {
            let files = self.shared_files();
            let me = self.me;
            let changed = match (&mut self.index, files) {
                (Some(index), Some(files)) => index.set(me, files),
                _ => false,
            };
            if changed {
                self.publish_index();
            }
        } else {
            self.report_files();
        }
    }

    /// A follower sends its file list to its leader.
    pub(super) fn report_files(&mut self) {
        let (Some(leader), Some(files)) = (self.election.leader(), self.shared_files()) else {
            return;
        };
        if leader == self.me {
            return;
        }
        let msg = Message::FileList { files };
        let term = self.election.max_term();
        if self.peers.send(leader, msg, term) {
            self.input_gone(leader, "it stopped reading");
        }
    }

    pub(super) fn on_local_files(&mut self, files: Vec<FileEntry>) {
        if files.is_empty() {
            tracing::info!("Node {} shares no files", self.me);
        } else {
            tracing::info!(
                "Node {} shares {}: {}",
                self.me,
                crate::words::count(files.len() as u64, "file"),
                summary(&files)
            );
        }
        self.local_files = Some(files);
        self.files_changed();
    }

    /// Queues `waiter` for the leader's next `Index` and asks the leader for it; gives the
    /// waiter back when too many are waiting already.
    pub(super) fn ask_leader_index(
        &mut self,
        leader: NodeId,
        waiter: Waiter,
    ) -> Result<(), Waiter> {
        self.files_waiters.admit(waiter)?;
        let term = self.election.max_term();
        if self.peers.send(leader, Message::IndexRequest, term) {
            self.input_gone(leader, "it stopped reading");
        }
        Ok(())
    }
}

fn summary(files: &[FileEntry]) -> String {
    const SHOWN: usize = 5;
    let mut names: Vec<&str> = files.iter().take(SHOWN).map(|f| f.name.as_str()).collect();
    if files.len() > SHOWN {
        names.push("...");
    }
    names.join(", ")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn askers_that_gave_up_do_not_hold_places_for_the_index() {
        let mut waiters = IndexWaiters::default();
        let mut receivers = Vec::new();
        for _ in 0..MAX_FILES_WAITERS {
            let (tx, rx) = oneshot::channel();
            assert!(waiters.admit(Waiter::Text(tx)).is_ok());
            receivers.push(rx);
        }
        let (tx, _rx) = oneshot::channel();
        assert!(waiters.admit(Waiter::Index(tx)).is_err(), "bounded");
        // Every asker timed out; the leader never answered.
        drop(receivers);
        let (tx, mut rx) = oneshot::channel();
        assert!(waiters.admit(Waiter::Text(tx)).is_ok());
        for waiter in waiters.drain() {
            if let Waiter::Text(tx) = waiter {
                tx.send("index".into()).unwrap();
            }
        }
        assert_eq!(rx.try_recv().unwrap(), "index");
    }
}
