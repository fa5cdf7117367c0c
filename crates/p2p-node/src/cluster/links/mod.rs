//! Links to the other nodes: dialing, accepting, the `Hello` handshake, one link per peer,
//! and closing links when the election says so.
//!
//! Each link runs as two tasks (a reader forwarding messages to the node's event loop, and
//! a writer draining a bounded queue); [`Peers`], owned by the event loop, is the registry
//! that decides which links exist. Registration goes through the event loop (a
//! [`PeerEvent::Register`] with a reply channel), so "one link per peer" is decided in one
//! place:
//! * an id outside the cluster, or our own id, is refused;
//! * a second inbound link from the same IP replaces the first (the peer reconnected before
//!   we noticed its old socket die); from another IP it is refused ("already connected");
//! * when both nodes dial each other at once, both keep the link dialed by the lower id
//!   ([`keep_new_link`]), and the loser is closed with `Refused { duplicate }` so neither
//!   side mistakes it for the peer dying.
//!
//! Sending to a peer without a link queues the message (bounded) and dials; a failed dial
//! is reported so the election can strike the peer off at once.
//!
//! Every TCP connection to or from another node is established in [`establish`] (control
//! links, and the swarm's data connections through [`open_data`]), secured first by
//! [`secure`] (the Noise handshake with listed keys); [`run`] carries a link after its
//! handshake.
//!
//! An accepted connection whose first message is `Open` instead of `Hello` is a data
//! connection from a downloader: once secured it is handed to the node's [`DataService`]
//! (the swarm serves pieces) and never registered. The service is passed in rather than
//! named here, so the cluster does not depend on the swarm: imports run swarm → cluster.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use netutil::{Connection, LogLimiter, SourceGuard, SourceLimiter, LOG_INTERVAL};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

mod establish;
mod run;
mod secure;

pub use establish::open_data;
pub use secure::{LinkStream, Security};

/// Serves one accepted data connection whose downloader asked for the file `ContentHash`
/// (the swarm's piece server); it owns the connection until the download ends.
pub type DataService = Arc<
    dyn Fn(NodeConnection, ContentHash) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync,
>;

use crate::cluster::config::Cluster;
use crate::cluster::election::{NodeId, Term};
use crate::wire::{ContentHash, Message};
use establish::{accept_link, dial_link};

/// Identifies one link (a peer may have several over time).
pub type LinkId = u64;

/// Messages queued per link before the peer counts as stuck and the link is closed.
pub const LINK_QUEUE: usize = 1024;
/// Messages a peer may leave unread on its link before we stop answering its requests.
/// A reply can be a whole cluster index (up to a frame, 4 MiB): a peer that keeps asking
/// without reading must not make us hold [`LINK_QUEUE`] of those.
pub const MAX_UNREAD_FOR_REPLY: usize = 8;
/// Messages queued for a peer while it is being dialed; older ones are dropped beyond it.
pub const DIAL_QUEUE: usize = 64;
/// How long a dial may take, connect and handshake together.
pub const DIAL_TIMEOUT: Duration = Duration::from_secs(1);
/// How long an accepted connection may take to say `Hello`.
pub const ACCEPT_TIMEOUT: Duration = Duration::from_secs(2);
/// Handshakes of accepted connections in progress at once from addresses outside the
/// cluster configuration; more are closed at once.
pub const MAX_PENDING_ACCEPTS: usize = 64;
/// Of those, at most this many from one source (an IPv4 address or an IPv6 /64), so one
/// source cannot take them all.
pub const MAX_PENDING_PER_SOURCE: usize = 8;
/// Handshakes in progress at once from the configured cluster addresses. A pool of their
/// own: other connections, however many, never crowd out a member's link.
pub const MAX_PENDING_MEMBERS: usize = 64;
/// Redial backoff of a leader keeping links to every node: first and largest delay.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_millis(500);
/// How long a follower keeps a link to a node other than its leader (one that completed
/// after the election, carrying an `Election`/`Alive` exchange) before closing it.
pub const STAR_LINGER: Duration = Duration::from_secs(1);

/// A connection to another node carrying wire messages, plain or encrypted.
pub type NodeConnection = Connection<Message, Message, LinkStream>;

/// What link tasks tell the event loop.
#[derive(Debug)]
pub enum PeerEvent {
    /// A link finished its handshake and asks to be registered; the verdict goes back on
    /// `reply` (the acceptor then answers `Hello` or `Refused`).
    Register {
        new: NewLink,
        /// The highest term the peer has seen (from its `Hello`).
        term: Term,
        reply: oneshot::Sender<Verdict>,
    },
    Message {
        link: LinkId,
        peer: NodeId,
        msg: Message,
    },
    /// The link ended. `duplicate`: the peer closed it because it keeps another link to us.
    Closed {
        link: LinkId,
        peer: NodeId,
        reason: String,
        duplicate: bool,
    },
    DialFailed {
        peer: NodeId,
        reason: String,
        duplicate: bool,
    },
}

/// A link that completed its handshake, waiting to be registered.
#[derive(Debug)]
pub struct NewLink {
    pub link: LinkId,
    pub peer: NodeId,
    pub addr: SocketAddr,
    pub outbound: bool,
    pub tx: mpsc::Sender<Message>,
    pub cancel: CancellationToken,
}

/// The event loop's answer to [`PeerEvent::Register`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Registered; `term` goes in our `Hello`.
    Accept {
        term: Term,
    },
    Refuse {
        reason: String,
        duplicate: bool,
    },
}

/// A registered link.
#[derive(Debug)]
struct Link {
    id: LinkId,
    since: Instant,
    addr: SocketAddr,
    outbound: bool,
    tx: mpsc::Sender<Message>,
    cancel: CancellationToken,
}

/// A handshake slot, held by an accepted connection until its first message arrived.
pub struct HandshakeSlot {
    _permit: OwnedSemaphorePermit,
    _source: Option<SourceGuard>,
}

/// The cluster's addresses that are IP literals (names are not resolved here: a member
/// behind a name shares the general handshake slots).
fn member_ips(cluster: &Cluster) -> BTreeSet<IpAddr> {
    cluster
        .ids()
        .into_iter()
        .filter_map(|id| cluster.get(id))
        .filter_map(|addr| addr.host.parse::<IpAddr>().ok())
        .map(|ip| ip.to_canonical())
        .collect()
}

/// A registered link as shown by the console.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    pub peer: NodeId,
    pub addr: SocketAddr,
    pub outbound: bool,
}

/// When a node already has a link to `peer` and another completes, whether the new one
/// should replace the old. Same direction: an inbound replaces an inbound from the same IP
/// (a reconnect). Opposite directions (both dialed at once): keep the one the lower id
/// dialed, which both ends compute alike.
pub fn keep_new_link(
    me: NodeId,
    peer: NodeId,
    existing_outbound: bool,
    existing_ip: std::net::IpAddr,
    new_outbound: bool,
    new_ip: std::net::IpAddr,
) -> bool {
    if existing_outbound == new_outbound {
        return new_outbound || existing_ip == new_ip;
    }
    // The new link was dialed by the lower id when we are lower and dialed it, or the
    // other way round.
    (me < peer) == new_outbound
}

/// The registry of links, owned by the event loop.
pub struct Peers {
    me: NodeId,
    cluster: Cluster,
    events: mpsc::Sender<PeerEvent>,
    token: CancellationToken,
    tracker: TaskTracker,
    next_link: LinkId,
    links: BTreeMap<NodeId, Link>,
    dialing: BTreeSet<NodeId>,
    queued: BTreeMap<NodeId, VecDeque<Message>>,
    dial_all: bool,
    /// The leader whose link alone a follower keeps (star topology).
    star: Option<NodeId>,
    /// Each peer's address on its latest link, for log lines after the link is gone.
    last_addr: BTreeMap<NodeId, SocketAddr>,
    backoff: BTreeMap<NodeId, (Instant, Duration)>,
    accept_slots: Arc<Semaphore>,
    /// Handshakes in progress per source, outside the cluster addresses.
    per_source: SourceLimiter,
    /// The configured cluster addresses (IP literals) and their own handshake slots.
    member_ips: BTreeSet<IpAddr>,
    member_slots: Arc<Semaphore>,
    /// Refused connections are logged once per source per interval, with a count.
    refusals: LogLimiter<IpAddr>,
    /// What this node does with data connections.
    data: DataService,
    /// How connections are secured.
    security: Security,
}

impl Peers {
    pub fn new(
        me: NodeId,
        cluster: Cluster,
        events: mpsc::Sender<PeerEvent>,
        token: CancellationToken,
        tracker: TaskTracker,
        data: DataService,
        security: Security,
    ) -> Self {
        let member_ips = member_ips(&cluster);
        Peers {
            me,
            cluster,
            events,
            token,
            tracker,
            next_link: 0,
            links: BTreeMap::new(),
            dialing: BTreeSet::new(),
            queued: BTreeMap::new(),
            dial_all: false,
            star: None,
            last_addr: BTreeMap::new(),
            backoff: BTreeMap::new(),
            accept_slots: Arc::new(Semaphore::new(MAX_PENDING_ACCEPTS)),
            per_source: SourceLimiter::new(MAX_PENDING_PER_SOURCE),
            member_ips,
            member_slots: Arc::new(Semaphore::new(MAX_PENDING_MEMBERS)),
            refusals: LogLimiter::new(LOG_INTERVAL),
            data,
            security,
        }
    }

    fn new_link_id(&mut self) -> LinkId {
        self.next_link += 1;
        self.next_link
    }

    /// The address of `peer`'s latest link (also after it closed).
    pub fn last_addr(&self, peer: NodeId) -> Option<SocketAddr> {
        self.last_addr.get(&peer).copied()
    }

    pub fn is_linked(&self, peer: NodeId) -> bool {
        self.links.contains_key(&peer)
    }

    pub fn links(&self) -> Vec<LinkInfo> {
        self.links
            .iter()
            .map(|(&peer, l)| LinkInfo {
                peer,
                addr: l.addr,
                outbound: l.outbound,
            })
            .collect()
    }

    /// Sends `msg` to `to`, dialing if needed. Returns true when the link had to be closed
    /// because the peer stopped reading (its queue is full); the caller treats that as a
    /// disconnect.
    pub fn send(&mut self, to: NodeId, msg: Message, term: Term) -> bool {
        if to == self.me || !self.cluster.contains(to) {
            return false;
        }
        if let Some(link) = self.links.get(&to) {
            return match link.tx.try_send(msg) {
                Ok(()) => false,
                Err(mpsc::error::TrySendError::Closed(_)) => false,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    tracing::warn!(
                        "Node {to} ({}) is not reading its messages; closing its link",
                        link.addr
                    );
                    self.close(to)
                }
            };
        }
        let queue = self.queued.entry(to).or_default();
        if queue.len() >= DIAL_QUEUE {
            queue.pop_front();
        }
        queue.push_back(msg);
        self.dial(to, term);
        false
    }

    /// Answers a request `to` sent over its link, unless it leaves [`MAX_UNREAD_FOR_REPLY`]
    /// or more messages unread there: then the reply is dropped (the asker times out and may
    /// ask again) and false returned. Never dials.
    pub fn reply(&mut self, to: NodeId, msg: Message) -> bool {
        let Some(link) = self.links.get(&to) else {
            return false;
        };
        let unread = link.tx.max_capacity() - link.tx.capacity();
        unread < MAX_UNREAD_FOR_REPLY && link.tx.try_send(msg).is_ok()
    }

    /// Starts dialing `peer` unless a dial is already under way.
    pub fn dial(&mut self, peer: NodeId, term: Term) {
        if self.links.contains_key(&peer) || !self.dialing.insert(peer) {
            return;
        }
        let Some(addr) = self.cluster.get(peer).cloned() else {
            return;
        };
        let link = self.new_link_id();
        let (me, events, token) = (self.me, self.events.clone(), self.token.clone());
        let security = self.security.clone();
        self.tracker.spawn(async move {
            tokio::select! {
                _ = token.cancelled() => {}
                _ = dial_link(me, peer, addr.host, addr.port, term, link, events, security) => {}
            }
        });
    }

    /// Accepts a connection from the listener. Handshakes in progress are bounded: from
    /// the cluster's addresses in a pool of their own, from anywhere else in total and per
    /// source; a connection beyond a bound is closed at once, and one that does not finish
    /// its handshake within [`ACCEPT_TIMEOUT`] is closed then.
    pub fn accept(&mut self, stream: tokio::net::TcpStream, addr: SocketAddr) {
        let permit = match self.handshake_slot(addr.ip()) {
            Ok(slot) => slot,
            Err(reason) => {
                if let Some(more) = self.refusals.check(&addr.ip()) {
                    tracing::warn!("{addr}: {reason}; closing the connection{more}");
                }
                return;
            }
        };
        let link = self.new_link_id();
        let (me, cluster, events, token, data, security) = (
            self.me,
            self.cluster.clone(),
            self.events.clone(),
            self.token.clone(),
            self.data.clone(),
            self.security.clone(),
        );
        self.tracker.spawn(async move {
            tokio::select! {
                _ = token.cancelled() => {}
                _ = accept_link(me, cluster, stream, addr, link, events, permit, data, security) => {}
            }
        });
    }

    /// A handshake slot for a connection from `ip`, or why there is none.
    fn handshake_slot(&self, ip: IpAddr) -> Result<HandshakeSlot, String> {
        let ip = ip.to_canonical();
        if self.member_ips.contains(&ip) {
            let permit = self
                .member_slots
                .clone()
                .try_acquire_owned()
                .map_err(|_| "too many handshakes in progress from cluster addresses")?;
            return Ok(HandshakeSlot {
                _permit: permit,
                _source: None,
            });
        }
        let source = self.per_source.try_acquire(ip).map_err(|full| {
            format!(
                "{} handshakes in progress from this source already",
                full.max
            )
        })?;
        let permit = self
            .accept_slots
            .clone()
            .try_acquire_owned()
            .map_err(|_| "too many handshakes in progress")?;
        Ok(HandshakeSlot {
            _permit: permit,
            _source: Some(source),
        })
    }

    /// Decides on a link that completed its handshake (`term`: ours, for our `Hello`). An
    /// older link to the same peer that loses to it is closed quietly.
    pub fn register(&mut self, new: NewLink, term: Term) -> Verdict {
        let NewLink {
            link,
            peer,
            addr,
            outbound,
            tx,
            cancel,
        } = new;
        if outbound {
            self.dialing.remove(&peer);
        }
        if peer == self.me || !self.cluster.contains(peer) {
            return Verdict::Refuse {
                reason: format!(
                    "node id {peer} is not in this cluster (ids: {:?})",
                    self.cluster.ids()
                ),
                duplicate: false,
            };
        }
        if let Some(existing) = self.links.get(&peer) {
            let keep_new = keep_new_link(
                self.me,
                peer,
                existing.outbound,
                existing.addr.ip(),
                outbound,
                addr.ip(),
            );
            if !keep_new {
                let duplicate = existing.outbound != outbound;
                let reason = if duplicate {
                    format!("node {peer} and node {} are already linked", self.me)
                } else {
                    format!("node {peer} is already connected from {}", existing.addr)
                };
                return Verdict::Refuse { reason, duplicate };
            }
            // Replaced: its Closed event is ignored here. Both dialed at once: the old
            // link says `Refused { duplicate }` as it closes, so the peer (which may not have
            // registered the new one yet) does not take the close for the node going away.
            // A reconnect's old link is likely dead: it just closes.
            let retire = Message::Refused {
                reason: format!("node {peer} and node {} are already linked", self.me),
                duplicate: true,
            };
            if existing.outbound == outbound || existing.tx.try_send(retire).is_err() {
                existing.cancel.cancel();
            }
        }
        self.backoff.remove(&peer);
        self.last_addr.insert(peer, addr);
        self.links.insert(
            peer,
            Link {
                id: link,
                since: Instant::now(),
                addr,
                outbound,
                tx,
                cancel,
            },
        );
        if let Some(queue) = self.queued.remove(&peer) {
            for msg in queue {
                self.send(peer, msg, term);
            }
        }
        Verdict::Accept { term }
    }

    /// A link ended; true when it was the peer's current link (the peer is now unlinked).
    pub fn on_closed(&mut self, link: LinkId, peer: NodeId) -> bool {
        if self.links.get(&peer).is_some_and(|l| l.id == link) {
            self.links.remove(&peer);
            true
        } else {
            false
        }
    }

    /// A dial failed; true when the peer counts as unreachable (not a duplicate refusal).
    pub fn on_dial_failed(&mut self, peer: NodeId, duplicate: bool, now: Instant) -> bool {
        self.dialing.remove(&peer);
        let delay = self
            .backoff
            .get(&peer)
            .map_or(BACKOFF_MIN, |&(_, d)| (d * 2).min(BACKOFF_MAX));
        self.backoff.insert(peer, (now + delay, delay));
        if duplicate || self.links.contains_key(&peer) {
            return false;
        }
        self.queued.remove(&peer);
        true
    }

    /// Closes the link to `peer`; true when there was one.
    pub fn close(&mut self, peer: NodeId) -> bool {
        match self.links.remove(&peer) {
            Some(link) => {
                link.cancel.cancel();
                true
            }
            None => false,
        }
    }

    /// Star topology: closes every link except the one to `leader`, stops redialing.
    /// Returns the peers whose links were closed.
    pub fn keep_only(&mut self, leader: NodeId) -> Vec<NodeId> {
        self.dial_all = false;
        self.star = Some(leader);
        let others: Vec<NodeId> = self
            .links
            .keys()
            .copied()
            .filter(|&p| p != leader)
            .collect();
        others.into_iter().filter(|&p| self.close(p)).collect()
    }

    /// A leader keeps a link to every node.
    pub fn set_dial_all(&mut self, on: bool) {
        self.dial_all = on;
        if on {
            self.star = None;
        }
    }

    /// Redials missing nodes (when leading), honouring each one's backoff; as a follower,
    /// closes links to non-leaders older than [`STAR_LINGER`]. Returns the peers whose
    /// links were closed.
    pub fn maintain(&mut self, now: Instant, term: Term) -> Vec<NodeId> {
        if let Some(leader) = self.star {
            let stale: Vec<NodeId> = self
                .links
                .iter()
                .filter(|(&p, l)| p != leader && now.duration_since(l.since) >= STAR_LINGER)
                .map(|(&p, _)| p)
                .collect();
            return stale.into_iter().filter(|&p| self.close(p)).collect();
        }
        if !self.dial_all {
            return Vec::new();
        }
        for peer in self.cluster.ids() {
            if peer == self.me || self.links.contains_key(&peer) {
                continue;
            }
            if self.backoff.get(&peer).is_some_and(|&(at, _)| now < at) {
                continue;
            }
            self.dial(peer, term);
        }
        Vec::new()
    }

    /// Closes every link (shutdown).
    pub fn close_all(&mut self) {
        for (_, link) in std::mem::take(&mut self.links) {
            link.cancel.cancel();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    const A: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));

    #[test]
    fn simultaneous_dials_keep_the_link_the_lower_id_dialed_on_both_ends() {
        // Node 1 holds its inbound from 2 when its own outbound to 2 completes: keep new.
        assert!(keep_new_link(1, 2, false, A, true, A));
        // Node 2 holds its inbound from 1 when its outbound to 1 completes: keep old.
        assert!(!keep_new_link(2, 1, false, A, true, A));
        // Node 1 holds its outbound when the inbound from 2 arrives: keep old.
        assert!(!keep_new_link(1, 2, true, A, false, A));
        // Node 2 holds its outbound to 1 when 1's dial arrives: keep new.
        assert!(keep_new_link(2, 1, true, A, false, A));
    }

    #[test]
    fn replies_stop_while_the_peer_leaves_its_messages_unread() {
        let (events, _events_rx) = mpsc::channel(1);
        let cluster = Cluster::default_cluster();
        let data: DataService = Arc::new(|_conn, _hash| Box::pin(async {}));
        let token = CancellationToken::new();
        let security = Security::new(crate::cluster::config::Auth::Open, cluster.clone());
        let mut peers = Peers::new(
            1,
            cluster,
            events,
            token,
            TaskTracker::new(),
            data,
            security,
        );
        let (tx, mut rx) = mpsc::channel(LINK_QUEUE);
        let new = NewLink {
            link: 7,
            peer: 2,
            addr: SocketAddr::new(A, 9002),
            outbound: false,
            tx,
            cancel: CancellationToken::new(),
        };
        assert_eq!(peers.register(new, 3), Verdict::Accept { term: 3 });
        let answer = || Message::Index {
            leader: 1,
            term: 3,
            nodes: Vec::new(),
            truncated: false,
        };
        for _ in 0..MAX_UNREAD_FOR_REPLY {
            assert!(peers.reply(2, answer()));
        }
        assert!(!peers.reply(2, answer()), "node 2 reads nothing");
        assert!(peers.is_linked(2), "other traffic decides when to close");
        assert!(rx.try_recv().is_ok());
        assert!(peers.reply(2, answer()), "it read one");
        assert!(!peers.reply(3, answer()), "no link, no reply");
    }

    #[test]
    fn a_reconnect_from_the_same_ip_replaces_but_another_ip_is_refused() {
        assert!(keep_new_link(1, 2, false, A, false, A));
        assert!(!keep_new_link(1, 2, false, A, false, B));
    }
}
