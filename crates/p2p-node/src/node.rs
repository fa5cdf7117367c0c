//! The node: one event loop that owns the election state machine, the link registry, the
//! local file list and (when leading) the cluster index, and wires them together.
//!
//! Inputs: link events from [`peers`](crate::peers), the listener, the election's next
//! deadline, directory scans, console commands. Each input goes through the election state
//! machine; its actions (send, keep only the leader's link, dial everyone, drop a dead
//! follower) are carried out here, and may feed further inputs (a closed link is a
//! `Disconnected`), processed in order from a work queue. Nothing in the loop blocks:
//! hashing and log writing run on their own tasks.
//!
//! Downloads (`get NAME`, [`crate::swarm`]) run as tasks of their own; they ask the loop
//! for the cluster index and announce themselves as partial holders through
//! [`SwarmEvent`]s. The [`Library`] of servable files is shared with the listener's data
//! connections ([`crate::serve`]) and updated by scans and downloads.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use netutil::{NetError, Shutdown};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::MissedTickBehavior;

use crate::config::{ConfigError, NodeConfig};
use crate::console::{self, Command, Request};
use crate::election::{Action, Election, Input, NodeId, Role};
use crate::index::{ClusterIndex, LocalIndex};
use crate::peers::{PeerEvent, Peers, Verdict};
use crate::protocol::{validate_files, FileEntry, Message, MAX_NODES};
use crate::serve::Library;
use crate::swarm::{self, SwarmContext, SwarmEvent, MAX_DOWNLOADS};

/// Link events queued for the event loop before link readers wait (backpressure).
const EVENT_QUEUE: usize = 4096;
/// How often a leader redials missing nodes (each also has its own backoff).
const MAINTENANCE: Duration = Duration::from_millis(100);
/// Console `files` requests and downloads waiting for the leader's answer at once.
const MAX_FILES_WAITERS: usize = 16;
const TOO_MANY_WAITERS: &str = "too many requests waiting for the leader";

/// Why the node could not run.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Net(#[from] NetError),
    #[error("cannot use directory {path}: {source}")]
    Dir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Runs a node until `shutdown` is triggered (signal, or `quit` on the console).
pub async fn run(config: NodeConfig, shutdown: Shutdown) -> Result<(), NodeError> {
    let me = config.id;
    let own = config.cluster.require(me)?.clone();
    std::fs::create_dir_all(&config.dir).map_err(|source| NodeError::Dir {
        path: config.dir.clone(),
        source,
    })?;
    let listen: Vec<SocketAddr> = match config.listen {
        Some(addr) => vec![addr],
        None => match own.host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, own.port)],
            Err(_) => Vec::new(),
        },
    };
    let mut listener = netutil::bind_tcp(&listen, own.port)?;
    tracing::info!(
        "Node {me} started: cluster ids {:?}, sharing {}, index log {}",
        config.cluster.ids(),
        config.dir.display(),
        config.index_log.display()
    );

    let token = shutdown.token();
    let (peer_tx, mut peer_rx) = mpsc::channel(EVENT_QUEUE);
    let (files_tx, mut files_rx) = mpsc::channel(4);
    let (console_tx, mut console_rx) = mpsc::channel::<Request>(4);
    let (log_tx, log_rx) = watch::channel(None);
    let (swarm_tx, mut swarm_rx) = mpsc::channel::<SwarmEvent>(64);
    let library = Arc::new(Library::new(config.dir.clone(), config.serve.clone()));

    shutdown.spawn(scan_loop(
        LocalIndex::new(config.dir.clone()),
        config.rescan,
        files_tx,
        library.clone(),
        token.clone(),
    ));
    shutdown.spawn(log_writer(config.index_log.clone(), log_rx, token.clone()));
    shutdown.spawn(console::run(console_tx, token.clone()));

    let peers = Peers::new(
        me,
        config.cluster.clone(),
        peer_tx,
        token.clone(),
        shutdown.tracker().clone(),
        library.clone(),
    );
    let swarm = Arc::new(SwarmContext {
        me,
        cluster: config.cluster.clone(),
        dir: config.dir.clone(),
        library,
        events: swarm_tx,
        token: token.clone(),
    });
    let mut node = Node {
        me,
        election: Election::new(me, &config.cluster.ids(), config.timing),
        peers,
        local_files: None,
        index: None,
        log_tx,
        files_waiters: IndexWaiters::default(),
        shutdown: shutdown.clone(),
        swarm,
        downloads: BTreeSet::new(),
        partial: BTreeMap::new(),
    };
    node.input(Input::Start);

    let mut maintenance = tokio::time::interval(MAINTENANCE);
    maintenance.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        let deadline = node
            .election
            .next_deadline()
            .map(tokio::time::Instant::from_std)
            .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            _ = token.cancelled() => break,
            _ = tokio::time::sleep_until(deadline) => node.input(Input::Tick),
            Some(event) = peer_rx.recv() => node.on_peer_event(event),
            accepted = listener.accept() => match accepted {
                Ok((stream, addr)) => node.peers.accept(stream, addr),
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(files) = files_rx.recv() => node.on_local_files(files),
            Some((command, reply)) = console_rx.recv() => node.on_console(command, reply),
            Some(event) = swarm_rx.recv() => node.on_swarm(event),
            _ = maintenance.tick() => node.maintain(),
        }
    }
    node.peers.close_all();
    Ok(())
}

struct Node {
    me: NodeId,
    election: Election,
    peers: Peers,
    /// This node's files, once the first scan finished.
    local_files: Option<Vec<FileEntry>>,
    /// The cluster index, while this node leads.
    index: Option<ClusterIndex>,
    log_tx: watch::Sender<Option<String>>,
    /// Console `files` requests and downloads waiting for the leader's `Index`.
    files_waiters: IndexWaiters,
    shutdown: Shutdown,
    swarm: Arc<SwarmContext>,
    /// Names being downloaded.
    downloads: BTreeSet<String>,
    /// Downloads in progress, announced as partial holdings.
    partial: BTreeMap<String, FileEntry>,
}

/// Who waits for the leader's index: the console (as text) or a download.
enum Waiter {
    Text(oneshot::Sender<String>),
    Index(oneshot::Sender<Result<ClusterIndex, String>>),
}

impl Waiter {
    /// The asker gave up (the console and downloads wait a few seconds at most).
    fn is_closed(&self) -> bool {
        match self {
            Waiter::Text(tx) => tx.is_closed(),
            Waiter::Index(tx) => tx.is_closed(),
        }
    }

    /// Answers with `reason` instead of the index.
    fn refuse(self, reason: &str) {
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
struct IndexWaiters(Vec<Waiter>);

impl IndexWaiters {
    /// Adds `waiter`; gives it back when [`MAX_FILES_WAITERS`] askers are still waiting.
    fn admit(&mut self, waiter: Waiter) -> Result<(), Waiter> {
        self.0.retain(|w| !w.is_closed());
        if self.0.len() >= MAX_FILES_WAITERS {
            return Err(waiter);
        }
        self.0.push(waiter);
        Ok(())
    }

    fn drain(&mut self) -> std::vec::Drain<'_, Waiter> {
        self.0.drain(..)
    }
}

impl Node {
    /// Runs `first` and every input its actions cause through the election.
    fn input(&mut self, first: Input) {
        let mut work = VecDeque::from([first]);
        while let Some(input) = work.pop_front() {
            let actions = self.election.handle(Instant::now(), input);
            for action in actions {
                self.apply(action, &mut work);
            }
        }
    }

    fn apply(&mut self, action: Action, work: &mut VecDeque<Input>) {
        let me = self.me;
        match action {
            Action::Send { to, msg } => {
                let term = self.election.max_term();
                if self.peers.send(to, Message::Bully(msg), term) {
                    self.link_gone(to, "it stopped reading", work);
                }
            }
            Action::LeaderElected { leader, term } => {
                tracing::info!("Leader elected: Node {leader} (term {term})");
                if leader == me {
                    let mut index = ClusterIndex::new(me, term);
                    if let Some(files) = self.shared_files() {
                        index.set(me, files);
                    }
                    self.index = Some(index);
                    self.publish_index();
                    self.note_if_alone();
                } else {
                    self.index = None;
                    self.log_tx.send_replace(None);
                    self.report_files();
                }
            }
            Action::LeaderLost { leader, reason } => {
                tracing::warn!(
                    "Node {me} lost its leader Node {leader}: {reason}; starting an election"
                );
            }
            Action::KeepOnly { leader } => {
                for peer in self.peers.keep_only(leader) {
                    self.link_gone(peer, "only the link to the leader stays", work);
                }
            }
            Action::DialAll => {
                self.peers.set_dial_all(true);
                let term = self.election.max_term();
                self.peers.maintain(Instant::now(), term);
            }
            Action::PeerDead { peer } => {
                tracing::warn!(
                    "{} sent nothing for {:?}; presuming it dead",
                    self.peer_label(peer),
                    self.election.timing().failure_timeout
                );
                if self.peers.close(peer) {
                    self.link_gone(peer, "silent past the failure timeout", work);
                } else {
                    self.drop_from_index(peer);
                }
                self.note_if_alone();
            }
        }
    }

    /// Says so when this node leads nobody but itself (started first, or cut off).
    fn note_if_alone(&self) {
        if self.election.is_leader() && self.peers.links().is_empty() {
            tracing::info!(
                "Node {} leads a partition of one: no other node is connected",
                self.me
            );
        }
    }

    /// Periodic upkeep of the links: redial (leader), close lingering non-leader links
    /// (follower).
    fn maintain(&mut self) {
        let term = self.election.max_term();
        let closed = self.peers.maintain(Instant::now(), term);
        let mut work = VecDeque::new();
        for peer in closed {
            self.link_gone(peer, "only the link to the leader stays", &mut work);
        }
        for input in work {
            self.input(input);
        }
    }

    /// The address of `peer`'s latest link, for log lines.
    fn peer_addr(&self, peer: NodeId) -> String {
        self.peers
            .last_addr(peer)
            .map_or_else(|| "no address".to_owned(), |a| a.to_string())
    }

    /// "Node N (ADDR)": how log lines about a peer's link name it.
    fn peer_label(&self, peer: NodeId) -> String {
        format!("Node {peer} ({})", self.peer_addr(peer))
    }

    /// A link closed (by either side): tell the election, drop the node's files.
    fn link_gone(&mut self, peer: NodeId, reason: &str, work: &mut VecDeque<Input>) {
        let addr = self.peer_addr(peer);
        tracing::info!(
            "Node {} disconnected from Node {peer}. ({addr}, {reason})",
            self.me
        );
        work.push_back(Input::Disconnected { peer });
        self.drop_from_index(peer);
    }

    fn drop_from_index(&mut self, peer: NodeId) {
        if let Some(index) = &mut self.index {
            if index.remove(peer) {
                self.publish_index();
            }
        }
    }

    fn publish_index(&mut self) {
        if let Some(index) = &self.index {
            self.log_tx.send_replace(Some(index.render()));
        }
    }

    /// What this node shares: its directory's files and its downloads in progress (a name
    /// present in both is listed as the complete file).
    fn shared_files(&self) -> Option<Vec<FileEntry>> {
        let mut files = self.local_files.clone()?;
        let complete: BTreeSet<String> = files.iter().map(|f| f.name.clone()).collect();
        files.extend(
            self.partial
                .values()
                .filter(|p| !complete.contains(&p.name))
                .cloned(),
        );
        files.sort();
        files.truncate(crate::protocol::MAX_FILES);
        Some(files)
    }

    /// Our own file list changed: update the index (leader) or report it (follower).
    fn files_changed(&mut self) {
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
    fn report_files(&mut self) {
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

    fn input_gone(&mut self, peer: NodeId, reason: &str) {
        let mut work = VecDeque::new();
        self.link_gone(peer, reason, &mut work);
        for input in work {
            self.input(input);
        }
    }

    fn on_local_files(&mut self, files: Vec<FileEntry>) {
        tracing::info!(
            "Node {} shares {} files: {}",
            self.me,
            files.len(),
            summary(&files)
        );
        self.local_files = Some(files);
        self.files_changed();
    }

    fn on_swarm(&mut self, event: SwarmEvent) {
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

    /// Queues `waiter` for the leader's next `Index` and asks the leader for it; gives the
    /// waiter back when too many are waiting already.
    fn ask_leader_index(&mut self, leader: NodeId, waiter: Waiter) -> Result<(), Waiter> {
        self.files_waiters.admit(waiter)?;
        let term = self.election.max_term();
        if self.peers.send(leader, Message::IndexRequest, term) {
            self.input_gone(leader, "it stopped reading");
        }
        Ok(())
    }

    /// Starts a download task for `get NAME`.
    fn start_download(&mut self, name: String) -> String {
        if let Err(e) = swarm::check_name(&name) {
            let line = format!("get {name}: failed: {e}");
            tracing::warn!("{line}");
            return line;
        }
        if self.downloads.contains(&name) {
            return format!("get {name}: already downloading");
        }
        if self.downloads.len() >= MAX_DOWNLOADS {
            return format!("get {name}: {MAX_DOWNLOADS} downloads are running; try again later");
        }
        self.downloads.insert(name.clone());
        let ctx = self.swarm.clone();
        let answer = format!("get {name}: looking for holders");
        self.shutdown.spawn(async move {
            let events = ctx.events.clone();
            match swarm::download(ctx, name.clone()).await {
                Ok(summary) => {
                    let line = summary.to_string();
                    tracing::info!("{line}");
                    swarm::print_line(&line);
                }
                Err(e) => {
                    let line = format!("get {name}: failed: {e}");
                    tracing::warn!("{line}");
                    swarm::print_line(&line);
                }
            }
            let _ = events.send(SwarmEvent::Finished(name)).await;
        });
        answer
    }

    fn on_peer_event(&mut self, event: PeerEvent) {
        match event {
            PeerEvent::Register { new, term, reply } => {
                let (peer, addr, outbound) = (new.peer, new.addr, new.outbound);
                let own_term = self.election.max_term();
                let verdict = self.peers.register(new, own_term);
                let accepted = matches!(verdict, Verdict::Accept { .. });
                let _ = reply.send(verdict);
                if accepted {
                    let direction = if outbound { "dialed" } else { "accepted" };
                    tracing::info!(
                        "Node {} connected with Node {peer}. ({addr}, {direction})",
                        self.me
                    );
                    self.input(Input::Connected { peer, term });
                    if self.election.leader() == Some(peer) {
                        // A new link to our leader may replace one whose queued report was
                        // lost with it (simultaneous dials): report again.
                        self.report_files();
                    }
                }
            }
            PeerEvent::Message { peer, msg, .. } => self.on_message(peer, msg),
            PeerEvent::Closed {
                link,
                peer,
                reason,
                duplicate,
            } => {
                if self.peers.on_closed(link, peer) {
                    if duplicate {
                        // The peer keeps another link to us; it is not gone.
                        tracing::debug!("{}: duplicate link closed", self.peer_label(peer));
                    } else {
                        self.input_gone(peer, &reason);
                    }
                }
            }
            PeerEvent::DialFailed {
                peer,
                reason,
                duplicate,
            } => {
                if self.peers.on_dial_failed(peer, duplicate, Instant::now()) {
                    tracing::debug!("Node {peer} is unreachable: {reason}");
                    self.input(Input::Unreachable { peer });
                }
            }
        }
    }

    fn on_message(&mut self, peer: NodeId, msg: Message) {
        match msg {
            Message::Bully(msg) => self.input(Input::Message { from: peer, msg }),
            Message::FileList { files } => {
                if let Err(reason) = validate_files(&files) {
                    tracing::warn!(
                        "{} sent a bad file list ({reason}); closing its link",
                        self.peer_label(peer)
                    );
                    if self.peers.close(peer) {
                        self.input_gone(peer, "bad file list");
                    }
                    return;
                }
                let changed = match &mut self.index {
                    Some(index) => index.set(peer, files),
                    None => {
                        tracing::debug!(
                            "{} sent its files, but this node does not lead",
                            self.peer_label(peer)
                        );
                        false
                    }
                };
                if changed {
                    self.publish_index();
                }
            }
            Message::IndexRequest => {
                if let Some(index) = &self.index {
                    let (nodes, truncated) = index.to_wire();
                    let reply = Message::Index {
                        leader: index.leader,
                        term: index.term,
                        nodes,
                        truncated,
                    };
                    if !self.peers.reply(peer, reply) {
                        tracing::debug!(
                            "{}: index request not answered: its link has unread messages",
                            self.peer_label(peer)
                        );
                    }
                }
            }
            Message::Index {
                leader,
                term,
                nodes,
                truncated,
            } => {
                let valid = nodes.len() <= MAX_NODES
                    && nodes.iter().all(|n| validate_files(&n.files).is_ok());
                let index = valid.then(|| ClusterIndex::from_wire(leader, term, nodes));
                let text = match &index {
                    Some(index) => {
                        let mut text = index.render();
                        if truncated {
                            text.push_str("(more files not shown)\n");
                        }
                        text
                    }
                    None => {
                        tracing::warn!("{} sent a malformed index", self.peer_label(peer));
                        "the leader sent a malformed index".to_owned()
                    }
                };
                for waiter in self.files_waiters.drain() {
                    match waiter {
                        Waiter::Text(tx) => {
                            let _ = tx.send(text.clone());
                        }
                        Waiter::Index(tx) => {
                            let _ = tx.send(index.clone().ok_or_else(|| text.clone()));
                        }
                    }
                }
            }
            Message::Hello { .. } | Message::Refused { .. } => {
                // The link tasks consume these during the handshake.
            }
            Message::Open { .. }
            | Message::Opened { .. }
            | Message::Request { .. }
            | Message::Missing { .. }
            | Message::HaveQuery
            | Message::Have { .. } => {
                tracing::warn!(
                    "{} sent data-connection traffic on its link; closing it",
                    self.peer_label(peer)
                );
                if self.peers.close(peer) {
                    self.input_gone(peer, "data traffic on a control link");
                }
            }
        }
    }

    fn on_console(&mut self, command: Command, reply: oneshot::Sender<String>) {
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

    fn describe_peers(&self) -> String {
        let links = self.peers.links();
        if links.is_empty() {
            return "No connected nodes".to_owned();
        }
        let leader = self.election.leader();
        let mut out = String::new();
        for link in links {
            let role = if Some(link.peer) == leader {
                ", leader"
            } else {
                ""
            };
            let direction = if link.outbound { "dialed" } else { "accepted" };
            out.push_str(&format!(
                "Node {} at {} ({direction}{role})\n",
                link.peer, link.addr
            ));
        }
        if matches!(self.election.role(), Role::Leader { .. }) {
            out.push_str("(this node leads)\n");
        }
        out
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

/// Rescans the shared directory every `every` and reports the list when it changed.
async fn scan_loop(
    mut index: LocalIndex,
    every: Duration,
    files: mpsc::Sender<Vec<FileEntry>>,
    library: Arc<Library>,
    token: tokio_util::sync::CancellationToken,
) {
    let mut last: Option<Vec<FileEntry>> = None;
    let mut warned = false;
    loop {
        let scanned = tokio::task::spawn_blocking(move || {
            let result = index.scan();
            (index, result)
        })
        .await;
        let Ok((returned, result)) = scanned else {
            tracing::error!("the directory scanner panicked; file list no longer updated");
            return;
        };
        index = returned;
        match result {
            Ok(list) => {
                warned = false;
                // Every scan (not only on changes): a finished download adds itself to
                // the library, and must leave it if the file is gone before a scan saw it.
                let servable = list
                    .iter()
                    .filter_map(|f| index.pieces(&f.name).map(|p| (f.clone(), p)))
                    .collect();
                library.set_complete(servable);
                if last.as_ref() != Some(&list) {
                    last = Some(list.clone());
                    if files.send(list).await.is_err() {
                        return;
                    }
                }
            }
            Err(e) if !warned => {
                warned = true;
                tracing::warn!("cannot scan {}: {e}", index.dir().display());
            }
            Err(_) => {}
        }
        tokio::select! {
            _ = token.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

/// Writes the newest rendering of the cluster index to `path`, atomically, coalescing
/// renderings that arrive while a write is in progress. `None` means this node does not
/// lead: nothing is written.
///
/// Several nodes may share one log path (the original's single `Peer_files.log`). A leader
/// that just stepped down can finish a slow write (fsync) after the new leader's, so every
/// second the current leader checks that the file still holds its rendering and rewrites
/// it if not.
async fn log_writer(
    path: PathBuf,
    mut renderings: watch::Receiver<Option<String>>,
    token: tokio_util::sync::CancellationToken,
) {
    let mut check = tokio::time::interval(Duration::from_secs(1));
    check.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        let repair = tokio::select! {
            _ = token.cancelled() => return,
            changed = renderings.changed() => {
                if changed.is_err() {
                    return;
                }
                false
            }
            _ = check.tick() => true,
        };
        let Some(text) = renderings.borrow_and_update().clone() else {
            continue;
        };
        let path2 = path.clone();
        let written = tokio::task::spawn_blocking(move || {
            if repair && std::fs::read(&path2).is_ok_and(|on_disk| on_disk == text.as_bytes()) {
                return Ok(false);
            }
            netutil::durable::write_atomic(&path2, text.as_bytes()).map(|()| true)
        })
        .await;
        match written {
            Ok(Ok(true)) if repair => {
                tracing::info!(
                    "{} was overwritten by another node; rewrote it",
                    path.display()
                )
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!("cannot write {}: {e}", path.display()),
            Err(_) => tracing::warn!("writing {} failed", path.display()),
        }
    }
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
