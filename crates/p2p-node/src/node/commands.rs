//! What the node does for its users: console commands (`leader`, `peers`, `files`, `get`,
//! `quit`) and the downloads they start, which ask the loop for the index and announce
//! themselves as partial holders.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::oneshot;

use super::files::Waiter;
use super::{Node, TOO_MANY_WAITERS};
use crate::cluster::election::Role;
use crate::console::{self, Command};
use crate::swarm::{self, SwarmEvent, MAX_DOWNLOADS};

impl Node {
    pub(super) fn on_swarm(&mut self, event: SwarmEvent) {
        match event {
            SwarmEvent::Index(reply) => match (&self.index, self.election.leader()) {
                (Some(index), _) => {
                    let _ = reply.send(Ok(index.clone()));
                }
                (None, Some(leader)) => {
                    if let Err(waiter) = self.ask_leader_index(leader, Waiter::Index(reply)) {
                        waiter.refuse(TOO_MANY_WAITERS);
                    }
                }
                (None, None) => {
                    let _ = reply.send(Err("no leader yet (an election is in progress)".into()));
                }
            },
            SwarmEvent::Partial(entry) => {
                self.partial.insert(entry.name.clone(), entry);
                self.files_changed();
            }
            SwarmEvent::Finished(name) => {
                self.downloads.remove(&name);
                if self.partial.remove(&name).is_some() {
                    self.files_changed();
                }
            }
        }
    }

    /// Starts a download task for `get NAME`.
    pub(super) fn start_download(&mut self, name: String) -> String {
        if let Err(e) = swarm::check_name(&name) {
            let line = format!("get {name}: failed: {e}");
            tracing::warn!("{line}");
            return line;
        }
        self.forget_ended_downloads();
        if self.downloads.contains_key(&name) {
            return format!("get {name}: already downloading");
        }
        if self.downloads.len() >= MAX_DOWNLOADS {
            return format!("get {name}: {MAX_DOWNLOADS} downloads are running; try again later");
        }
        // The task holds `running` until it ends, however it ends (done, failed, panicked,
        // dropped at shutdown), so a name is never refused for a download that is gone.
        let running = Arc::new(());
        self.downloads.insert(name.clone(), running.clone());
        let ctx = self.swarm.clone();
        // Said here, before the task exists, so it always comes before the task's outcome;
        // the console's answer is empty.
        console::say(&format!("get {name}: looking for holders"));
        self.shutdown.spawn(async move {
            let events = ctx.events.clone();
            let result = swarm::download(ctx, name.clone()).await;
            // Free the name before saying so: a `get` typed right after the line must run.
            let _ = events.send(SwarmEvent::Finished(name.clone())).await;
            drop(running);
            match result {
                Ok(summary) => console::announce_as(
                    &format!("{}\n{}", summary.short(), summary.details()),
                    &summary.to_string(),
                ),
                Err(e) => console::announce(&format!("get {name}: failed: {e}")),
            }
        });
        String::new()
    }

    /// Drops the downloads whose task is gone without saying `Finished` (a panic): their
    /// names may be downloaded again, and they are no longer announced as partial.
    fn forget_ended_downloads(&mut self) {
        let ended: Vec<String> = self
            .downloads
            .iter()
            .filter(|(_, running)| Arc::strong_count(running) == 1)
            .map(|(name, _)| name.clone())
            .collect();
        let mut changed = false;
        for name in ended {
            self.downloads.remove(&name);
            changed |= self.partial.remove(&name).is_some();
        }
        if changed {
            self.files_changed();
        }
    }

    pub(super) fn on_console(&mut self, command: Command, reply: oneshot::Sender<String>) {
        let answer = match command {
            Command::Leader => match self.election.leader() {
                Some(leader) if leader == self.me => format!(
                    "Leader: Node {leader} (term {}), this node",
                    self.election.term()
                ),
                Some(leader) => format!("Leader: Node {leader} (term {})", self.election.term()),
                None => "No leader: an election is in progress".to_owned(),
            },
            Command::Peers => self.describe_peers(),
            Command::Files => match (&self.index, self.election.leader()) {
                (Some(index), _) => index.render(),
                (None, Some(leader)) => {
                    if let Err(waiter) = self.ask_leader_index(leader, Waiter::Text(reply)) {
                        waiter.refuse(TOO_MANY_WAITERS);
                    }
                    return;
                }
                (None, None) => "No leader yet: the index is not known".to_owned(),
            },
            Command::Get(name) => self.start_download(name),
            Command::Quit => {
                tracing::info!("Node {} quitting (console)", self.me);
                self.shutdown.trigger();
                "bye".to_owned()
            }
            Command::Help => console::help().to_owned(),
        };
        let _ = reply.send(answer);
    }

    /// Every configured node, at its configured address, with its state: `Node 2 at
    /// 127.0.0.1:9002: leader, connected, last seen 0.1 s ago`. The address is the
    /// configured one, not an accepted link's ephemeral port.
    pub(super) fn describe_peers(&self) -> String {
        let links = self.peers.links();
        let leader = self.election.leader();
        let now = Instant::now();
        let mut out = String::new();
        for id in self.swarm.cluster.ids() {
            let addr = self
                .swarm
                .cluster
                .get(id)
                .map_or_else(|| "?".to_owned(), |a| a.to_string());
            let mut state = Vec::new();
            if id == self.me {
                state.push("this node".to_owned());
            }
            if Some(id) == leader {
                state.push("leader".to_owned());
            }
            if id != self.me {
                if links.iter().any(|l| l.peer == id) {
                    state.push("connected".to_owned());
                } else if self.unreachable.contains(&id) {
                    state.push("unreachable".to_owned());
                } else if leader == Some(id) || matches!(self.election.role(), Role::Leader { .. })
                {
                    state.push("not connected".to_owned());
                } else {
                    state.push("not linked (followers link only to the leader)".to_owned());
                }
                state.push(match self.last_seen.get(&id) {
                    Some(at) => format!(
                        "last seen {:.1} s ago",
                        now.saturating_duration_since(*at).as_secs_f64()
                    ),
                    None => "never seen".to_owned(),
                });
            }
            out.push_str(&format!("Node {id} at {addr}: {}\n", state.join(", ")));
        }
        out
    }
}
