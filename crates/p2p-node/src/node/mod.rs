//! The node: one event loop that owns the election state machine, the link registry, the
//! local file list and (when leading) the cluster index, and wires them together.
//!
//! Inputs: link events from [`links`](crate::cluster::links), the listener, the election's
//! next deadline, directory scans, console commands. Each input goes through the election state
//! machine; its actions (send, keep only the leader's link, dial everyone, drop a dead
//! follower) are carried out here, and may feed further inputs (a closed link is a
//! `Disconnected`), processed in order from a work queue. Nothing in the loop blocks:
//! hashing and log writing run on their own tasks.
//!
//! Downloads (`get NAME`, [`crate::swarm::download`]) run as tasks of their own; they ask
//! the loop for the cluster index and announce themselves as partial holders through
//! [`SwarmEvent`]s. The [`Library`] of servable files is shared with the listener's data
//! connections ([`crate::swarm::serve`]) and updated by scans and downloads.
//!
//! Here: the loop and its reaction to election actions and link traffic. The node's files
//! and the index live in `files.rs`, console commands and downloads in `commands.rs`, the
//! background tasks (scans, the index log) in `tasks.rs`, what the node runs with in
//! `config.rs`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use netutil::{NetError, Shutdown};
use tokio::sync::{mpsc, watch};
use tokio::time::MissedTickBehavior;

mod commands;
pub mod config;
mod files;
mod tasks;

use files::{IndexWaiters, Waiter};
use tasks::{log_writer, read_term, scan_loop, term_writer, IndexLog};

use crate::cluster::config::ConfigError;
use crate::cluster::election::{Action, Election, Input, NodeId, Term};
use crate::cluster::index::{ClusterIndex, TERM_FILE};
use crate::cluster::links::{PeerEvent, Peers, Security, Verdict};
use crate::console::{self, Request};
use crate::swarm::serve::{data_service, Library};
use crate::swarm::share::LocalIndex;
use crate::swarm::{SwarmContext, SwarmEvent};
use crate::wire::{validate_files, FileEntry, Message, MAX_NODES};
use config::NodeConfig;

/// Link events queued for the event loop before link readers wait (backpressure).
const EVENT_QUEUE: usize = 4096;
/// How often a leader redials missing nodes (each also has its own backoff).
const MAINTENANCE: Duration = Duration::from_millis(100);
/// Console `files` requests and downloads waiting for the leader's answer at once.
const MAX_FILES_WAITERS: usize = 16;
/// How long a node that took the lead waits, at most, for every other node to connect or
/// be found unreachable before it says `Leader elected`: a node that learns a newer term on
/// connecting re-asserts itself above it at once, and says so once, with the final term.
const LEAD_SETTLE: Duration = Duration::from_millis(300);
const TOO_MANY_WAITERS: &str = "too many requests waiting for the leader";

/// Why the node could not run.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Net(#[from] NetError),
    /// Checked before anything is created, so a second start of the same node fails at
    /// once and leaves nothing behind.
    #[error("port {port} is in use (is node {id} already running?)")]
    PortInUse { port: u16, id: NodeId },
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
    let listen: Vec<SocketAddr> = match config.listen {
        Some(addr) => vec![addr],
        None => match own.host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, own.port)],
            Err(_) => Vec::new(),
        },
    };
    let mut listener = netutil::bind_tcp(&listen, own.port).map_err(|e| match e {
        NetError::Bind { addr, source } if source.kind() == std::io::ErrorKind::AddrInUse => {
            NodeError::PortInUse {
                port: addr.port(),
                id: me,
            }
        }
        other => NodeError::Net(other),
    })?;
    std::fs::create_dir_all(&config.dir).map_err(|source| NodeError::Dir {
        path: config.dir.clone(),
        source,
    })?;
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
    let (log_tx, log_rx) = watch::channel(IndexLog::NotLeading);
    let term_path = config.dir.join(TERM_FILE);
    let restored_term = read_term(&term_path);
    let (term_tx, term_rx) = watch::channel(restored_term);
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
    shutdown.spawn(term_writer(term_path, term_rx, token.clone()));
    shutdown.spawn(console::run(console_tx, token.clone()));

    let security = Security::new(config.auth.clone(), config.cluster.clone());
    let peers = Peers::new(
        me,
        config.cluster.clone(),
        peer_tx,
        token.clone(),
        shutdown.tracker().clone(),
        data_service(library.clone()),
        security.clone(),
    );
    let swarm = Arc::new(SwarmContext {
        me,
        cluster: config.cluster.clone(),
        security,
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
        term_tx,
        files_waiters: IndexWaiters::default(),
        shutdown: shutdown.clone(),
        swarm,
        downloads: BTreeMap::new(),
        partial: BTreeMap::new(),
        last_seen: BTreeMap::new(),
        unreachable: BTreeSet::new(),
        pending_lead: None,
        announced: BTreeSet::new(),
    };
    node.election.restore_max_term(restored_term);
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
            Some(event) = peer_rx.recv() => {
                node.on_peer_event(event);
                node.announce();
            }
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
    log_tx: watch::Sender<IndexLog>,
    /// The highest term seen, for [`term_writer`] to persist.
    term_tx: watch::Sender<Term>,
    /// Console `files` requests and downloads waiting for the leader's `Index`.
    files_waiters: IndexWaiters,
    shutdown: Shutdown,
    swarm: Arc<SwarmContext>,
    /// Names being downloaded.
    downloads: BTreeMap<String, Arc<()>>,
    /// Downloads in progress, announced as partial holdings.
    partial: BTreeMap<String, FileEntry>,
    /// When each node was last heard from (a link registered, a message, a close), for
    /// the console's `peers`.
    last_seen: BTreeMap<NodeId, Instant>,
    /// Nodes whose last dial failed and that have not connected since.
    unreachable: BTreeSet<NodeId>,
    /// This node took the lead but has not said so yet (see [`LEAD_SETTLE`]).
    pending_lead: Option<PendingLead>,
    /// Peers whose `connected` line was logged: links that matter (a follower's link to
    /// its leader, a leader's links to everyone). Links carrying only election traffic
    /// between followers come and go at debug level.
    announced: BTreeSet<NodeId>,
}

/// A lead not yet announced: since when, and the nodes not yet heard from (neither linked
/// nor found unreachable).
struct PendingLead {
    since: Instant,
    waiting: BTreeSet<NodeId>,
}

impl Node {
    /// Runs `first` and every input its actions cause through the election.
    pub(super) fn input(&mut self, first: Input) {
        let mut work = VecDeque::from([first]);
        while let Some(input) = work.pop_front() {
            let actions = self.election.handle(Instant::now(), input);
            for action in actions {
                self.apply(action, &mut work);
            }
        }
        let term = self.election.max_term();
        self.term_tx
            .send_if_modified(|saved| std::mem::replace(saved, term) != term);
        self.announce();
    }

    /// Says what settled: the lead once every node connected or was found unreachable
    /// (or [`LEAD_SETTLE`] passed), and the links that matter.
    pub(super) fn announce(&mut self) {
        if let Some(pending) = &mut self.pending_lead {
            if !self.election.is_leader() {
                self.pending_lead = None;
            } else {
                let peers = &self.peers;
                pending.waiting.retain(|&id| !peers.is_linked(id));
                if pending.waiting.is_empty() || pending.since.elapsed() >= LEAD_SETTLE {
                    self.pending_lead = None;
                    tracing::info!(
                        "Leader elected: Node {} (term {})",
                        self.me,
                        self.election.term()
                    );
                    self.note_if_alone();
                }
            }
        }
        if self.pending_lead.is_some() {
            return;
        }
        let leader = self.election.leader();
        for link in self.peers.links() {
            let matters = leader == Some(self.me) || leader == Some(link.peer);
            if matters && self.announced.insert(link.peer) {
                let direction = if link.outbound { "dialed" } else { "accepted" };
                tracing::info!(
                    "Node {} connected with Node {}. ({}, {direction})",
                    self.me,
                    link.peer,
                    link.addr
                );
            }
        }
    }

    pub(super) fn apply(&mut self, action: Action, work: &mut VecDeque<Input>) {
        let me = self.me;
        match action {
            Action::Send { to, msg } => {
                let term = self.election.max_term();
                if self.peers.send(to, Message::Bully(msg), term) {
                    self.link_gone(to, "it stopped reading", work);
                }
            }
            Action::LeaderElected { leader, term } => {
                if leader == me {
                    // Said once the other nodes answered: see `announce`.
                    tracing::debug!("Node {me} leads term {term}");
                    let waiting = self
                        .election
                        .ids()
                        .iter()
                        .copied()
                        .filter(|&id| {
                            id != me && !self.peers.is_linked(id) && !self.unreachable.contains(&id)
                        })
                        .collect();
                    let since = match &self.pending_lead {
                        Some(pending) => pending.since,
                        None => Instant::now(),
                    };
                    self.pending_lead = Some(PendingLead { since, waiting });
                } else {
                    tracing::info!("Leader elected: Node {leader} (term {term})");
                }
                if leader == me {
                    let mut index = ClusterIndex::new(me, term);
                    if let Some(files) = self.shared_files() {
                        index.set(me, files);
                    }
                    self.index = Some(index);
                    self.publish_index();
                } else {
                    self.index = None;
                    self.log_tx.send_replace(IndexLog::SteppedDown(format!(
                        "# Out of date: Node {me} is no longer the leader since {}; the leader is Node {leader}\n",
                        tasks::utc_now()
                    )));
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
    pub(super) fn note_if_alone(&self) {
        if self.election.is_leader() && self.peers.links().is_empty() {
            tracing::info!(
                "Node {} leads a partition of one: no other node is connected",
                self.me
            );
        }
    }

    /// Periodic upkeep of the links: redial (leader), close lingering non-leader links
    /// (follower); and a lead not yet announced is, once [`LEAD_SETTLE`] has passed.
    pub(super) fn maintain(&mut self) {
        self.announce();
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
    pub(super) fn peer_addr(&self, peer: NodeId) -> String {
        self.peers
            .last_addr(peer)
            .map_or_else(|| "no address".to_owned(), |a| a.to_string())
    }

    /// "Node N (ADDR)": how log lines about a peer's link name it.
    pub(super) fn peer_label(&self, peer: NodeId) -> String {
        format!("Node {peer} ({})", self.peer_addr(peer))
    }

    /// A link closed (by either side): tell the election, drop the node's files.
    pub(super) fn link_gone(&mut self, peer: NodeId, reason: &str, work: &mut VecDeque<Input>) {
        let addr = self.peer_addr(peer);
        if self.announced.remove(&peer) {
            tracing::info!(
                "Node {} disconnected from Node {peer}. ({addr}, {reason})",
                self.me
            );
        } else {
            tracing::debug!(
                "Node {}: link with Node {peer} closed ({addr}, {reason})",
                self.me
            );
        }
        work.push_back(Input::Disconnected { peer });
        self.drop_from_index(peer);
    }

    pub(super) fn input_gone(&mut self, peer: NodeId, reason: &str) {
        let mut work = VecDeque::new();
        self.link_gone(peer, reason, &mut work);
        for input in work {
            self.input(input);
        }
    }

    pub(super) fn on_peer_event(&mut self, event: PeerEvent) {
        match event {
            PeerEvent::Register { new, term, reply } => {
                let (peer, addr, outbound) = (new.peer, new.addr, new.outbound);
                let own_term = self.election.max_term();
                let verdict = self.peers.register(new, own_term);
                let accepted = matches!(verdict, Verdict::Accept { .. });
                let _ = reply.send(verdict);
                if accepted {
                    self.last_seen.insert(peer, Instant::now());
                    self.unreachable.remove(&peer);
                    let direction = if outbound { "dialed" } else { "accepted" };
                    // The `connected` line comes from `announce`, if the link matters.
                    tracing::debug!(
                        "Node {}: link with Node {peer} up ({addr}, {direction})",
                        self.me
                    );
                    if let Some(pending) = &mut self.pending_lead {
                        pending.waiting.remove(&peer);
                    }
                    self.input(Input::Connected { peer, term });
                    if self.election.leader() == Some(peer) {
                        // A new link to our leader may replace one whose queued report was
                        // lost with it (simultaneous dials): report again.
                        self.report_files();
                    }
                }
            }
            PeerEvent::Message { peer, msg, .. } => {
                self.last_seen.insert(peer, Instant::now());
                self.on_message(peer, msg)
            }
            PeerEvent::Closed {
                link,
                peer,
                reason,
                duplicate,
            } => {
                self.last_seen.insert(peer, Instant::now());
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
                if !duplicate {
                    self.unreachable.insert(peer);
                    if let Some(pending) = &mut self.pending_lead {
                        pending.waiting.remove(&peer);
                    }
                }
                if self.peers.on_dial_failed(peer, duplicate, Instant::now()) {
                    tracing::debug!("Node {peer} is unreachable: {reason}");
                    self.input(Input::Unreachable { peer });
                }
            }
        }
    }

    pub(super) fn on_message(&mut self, peer: NodeId, msg: Message) {
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
}
