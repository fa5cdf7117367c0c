//! The Bully election as a pure state machine: inputs and the current time go in, actions
//! come out. No sockets, no clock, no tasks, so unit tests drive it deterministically
//! through thousands of scenarios (crashes, restarts, partitions, lost messages) per second.
//!
//! Rules, in short:
//! * The lowest live id leads. A node starting an election sends `Election` to every lower
//!   id; a lower id that is alive answers `Alive` (and, if it leads, `Coordinator`). A node
//!   whose lower ids are all unreachable, closed, or silent past the ALIVE timeout leads.
//! * A link that closes is a dead process (its kernel closed the socket): losing the leader's
//!   link starts an election at once, and a lower id whose link closes or whose dial fails is
//!   struck off at once. Timeouts are only for silent failures.
//! * Every leader message carries a term. Terms are unique to their leader by construction
//!   (`term % cluster_size` is the leader's position in the sorted id list), so two nodes
//!   can never both lead in the same term, and a message with an older term than the one a
//!   node follows is stale and ignored.
//! * A leader that hears a higher id claim leadership, or a newer term from a higher id,
//!   re-asserts itself with a fresh term: this is how a restarted or reconnected low id takes
//!   over, and how two partition leaders merge into one.
//! * Followers answer heartbeats, so the leader notices silent followers and drops them.
//!
//! Terms a member cannot have earned (a bug, a restored old disk, a forged message) must not
//! split the cluster, whatever numbers arrive:
//! * a claim to lead (`Coordinator`, `Heartbeat`) is only believed with a term its sender
//!   owns (`term % cluster_size` is its position, and terms start at 1); others are
//!   ignored, so no member can claim another's term;
//! * terms above [`MAX_TERM`] are ignored (room for arithmetic), and terms never stop
//!   elections: each node owns exactly one term in the top `cluster_size` terms up to
//!   `MAX_TERM` (the ceiling). A node whose next term would pass its ceiling term takes
//!   that one again, and once both a claim and the followed leader sit at the ceiling,
//!   where terms can no longer grow, the Bully rule alone decides: the lower id wins.
//!   So a jump to `MAX_TERM - 1` costs the cluster its term history, not its leader;
//! * the shell persists the highest term seen ([`Election::restore_max_term`]), so a
//!   restarted node does not go back to terms it already used.
//!
//! Why no bound on how far one message may move a term: honest nodes that a confused
//! member pushed unevenly would then refuse each other's real terms for good, while with
//! the ceiling rule every sequence of terms ends with the lowest live id leading.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::{Duration, Instant};

pub use crate::wire::{ElectionMsg as Msg, NodeId, Term, MAX_TERM};

/// The timing knobs. Defaults: heartbeat 200 ms, failure timeout 1 s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// How often the leader sends `Heartbeat`.
    pub heartbeat: Duration,
    /// Silence after which a follower presumes its leader dead (and a leader its follower).
    pub failure_timeout: Duration,
    /// How long an electing node waits for `Alive` from a lower id that neither answers nor
    /// disconnects (a silently cut link).
    pub alive_timeout: Duration,
    /// How long a node that got `Alive` waits for the `Coordinator` before trying again.
    pub coordinator_timeout: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            heartbeat: Duration::from_millis(200),
            failure_timeout: Duration::from_secs(1),
            alive_timeout: Duration::from_millis(250),
            coordinator_timeout: Duration::from_secs(1),
        }
    }
}

/// What happened, as told by the shell around the state machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// The node starts (or restarts): it runs an election.
    Start,
    /// A link to `peer` completed its handshake; `term` is the highest term the peer has seen.
    Connected { peer: NodeId, term: Term },
    /// The link to `peer` closed or reset: its process is gone (or it dropped us).
    Disconnected { peer: NodeId },
    /// Dialing `peer` failed (refused, unreachable): it is not running.
    Unreachable { peer: NodeId },
    /// A message from `from`.
    Message { from: NodeId, msg: Msg },
    /// Time passed; sent when [`Election::next_deadline`] is reached (sending it more often
    /// is harmless).
    Tick,
}

/// Why a node stopped following its leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LostReason {
    /// The link to the leader closed or reset.
    Disconnected,
    /// Nothing heard from the leader within the failure timeout.
    Silent,
}

impl fmt::Display for LostReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LostReason::Disconnected => write!(f, "its connection closed"),
            LostReason::Silent => write!(f, "no heartbeat within the failure timeout"),
        }
    }
}

/// What the shell must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send `msg` to `to`, dialing it first if there is no link (a failed dial comes back as
    /// [`Input::Unreachable`]).
    Send { to: NodeId, msg: Msg },
    /// `leader` leads `term` (this node included). Log it; a follower reports its files.
    LeaderElected { leader: NodeId, term: Term },
    /// The leader was lost; an election follows at once.
    LeaderLost { leader: NodeId, reason: LostReason },
    /// Star topology: close every link except the one to this leader and stop dialing.
    KeepOnly { leader: NodeId },
    /// This node leads: keep a link to every node, redialing missing ones with backoff.
    DialAll,
    /// A follower was silent past the failure timeout: close its link, drop its files.
    PeerDead { peer: NodeId },
}

/// Where the node stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Not started yet.
    Idle,
    /// Waiting for `Alive` from the lower ids in `pending`.
    Electing {
        pending: BTreeSet<NodeId>,
        deadline: Instant,
    },
    /// A lower id answered `Alive`; waiting for its `Coordinator`.
    AwaitingCoordinator {
        alive: BTreeSet<NodeId>,
        deadline: Instant,
    },
    Follower {
        leader: NodeId,
        last_heard: Instant,
    },
    Leader {
        next_heartbeat: Instant,
    },
}

/// One node's view of the election.
#[derive(Debug, Clone)]
pub struct Election {
    me: NodeId,
    /// Every node in the cluster, this one included, sorted.
    ids: Vec<NodeId>,
    timing: Timing,
    /// The term of the leader followed (or led); 0 before any.
    term: Term,
    /// The highest term seen anywhere; a new leader takes the next term above it.
    max_term: Term,
    role: Role,
    /// Peers with a live link.
    connected: BTreeSet<NodeId>,
    /// Leader only: when each connected follower was last heard from.
    last_ack: BTreeMap<NodeId, Instant>,
}

impl Election {
    /// A node `me` in a cluster of `ids` (which must contain `me`; duplicates are ignored).
    pub fn new(me: NodeId, ids: &[NodeId], timing: Timing) -> Self {
        let mut ids: Vec<NodeId> = ids.to_vec();
        ids.push(me);
        ids.sort_unstable();
        ids.dedup();
        Election {
            me,
            ids,
            timing,
            term: 0,
            max_term: 0,
            role: Role::Idle,
            connected: BTreeSet::new(),
            last_ack: BTreeMap::new(),
        }
    }

    pub fn me(&self) -> NodeId {
        self.me
    }

    /// Every node in the cluster, this one included, sorted.
    pub fn ids(&self) -> &[NodeId] {
        &self.ids
    }

    pub fn role(&self) -> &Role {
        &self.role
    }

    /// The current term (of the leader followed or led).
    pub fn term(&self) -> Term {
        self.term
    }

    /// The highest term seen anywhere (sent in `Hello` so a peer learns it on connect).
    pub fn max_term(&self) -> Term {
        self.max_term
    }

    /// Starts from the highest term seen before a restart (persisted by the shell), so this
    /// node's next terms are above every term it used. Call before [`Input::Start`].
    pub fn restore_max_term(&mut self, term: Term) {
        self.max_term = self.max_term.max(term.min(MAX_TERM));
    }

    /// The leader this node follows or is, if any.
    pub fn leader(&self) -> Option<NodeId> {
        match self.role {
            Role::Leader { .. } => Some(self.me),
            Role::Follower { leader, .. } => Some(leader),
            _ => None,
        }
    }

    pub fn is_leader(&self) -> bool {
        matches!(self.role, Role::Leader { .. })
    }

    /// Peers this state machine believes are linked.
    pub fn connected(&self) -> &BTreeSet<NodeId> {
        &self.connected
    }

    pub fn timing(&self) -> Timing {
        self.timing
    }

    /// When the shell must next call `handle(now, Input::Tick)`; None when idle.
    pub fn next_deadline(&self) -> Option<Instant> {
        match &self.role {
            Role::Idle => None,
            Role::Electing { deadline, .. } | Role::AwaitingCoordinator { deadline, .. } => {
                Some(*deadline)
            }
            Role::Follower { last_heard, .. } => Some(*last_heard + self.timing.failure_timeout),
            Role::Leader { next_heartbeat } => {
                let oldest_ack = self.last_ack.values().min().copied();
                let follower_deadline = oldest_ack.map(|t| t + self.timing.failure_timeout);
                Some(follower_deadline.map_or(*next_heartbeat, |d| d.min(*next_heartbeat)))
            }
        }
    }

    /// Feeds one input; returns what the shell must do, in order.
    pub fn handle(&mut self, now: Instant, input: Input) -> Vec<Action> {
        let mut out = Vec::new();
        match input {
            Input::Start => self.start_election(now, &mut out),
            _ if self.role == Role::Idle => {}
            // A hostile term would wrap our arithmetic; a peer sending one is ignored.
            Input::Connected { term, .. } if term > MAX_TERM => {}
            Input::Message { msg, .. } if msg.term() > MAX_TERM => {}
            Input::Connected { peer, term } => self.on_connected(now, peer, term, &mut out),
            Input::Disconnected { peer } | Input::Unreachable { peer } => {
                self.on_gone(now, peer, &mut out)
            }
            Input::Message { from, msg } => self.on_message(now, from, msg, &mut out),
            Input::Tick => self.on_tick(now, &mut out),
        }
        out
    }

    /// The smallest term above everything seen that belongs to this node, or its ceiling
    /// term when there is none below [`MAX_TERM`].
    fn next_own_term(&self) -> Term {
        let n = self.ids.len() as Term;
        let position = self.position(self.me);
        let floor = self.max_term.saturating_add(1);
        let next = floor.saturating_add((position + n - floor % n) % n);
        next.min(self.ceiling_term(position))
    }

    /// A node's position in the sorted ids (its terms are those with `term % n == it`).
    fn position(&self, id: NodeId) -> Term {
        self.ids.iter().position(|&i| i == id).unwrap_or(0) as Term
    }

    /// The highest term ≤ [`MAX_TERM`] that the node at `position` owns.
    fn ceiling_term(&self, position: Term) -> Term {
        let n = self.ids.len() as Term;
        MAX_TERM - (MAX_TERM % n + n - position) % n
    }

    /// True for the top `n` terms, where terms can no longer grow (one per node).
    fn at_ceiling(&self, term: Term) -> bool {
        term > MAX_TERM - self.ids.len() as Term
    }

    /// True when `term` may be led by `from`: it is one of `from`'s terms.
    fn owns(&self, from: NodeId, term: Term) -> bool {
        term >= 1 && term % self.ids.len() as Term == self.position(from)
    }

    /// Whether a claim by `from` to lead `term` is newer than the leader this node follows
    /// (or is): a term at least as high, or, when both sit at the ceiling, a lower (or the
    /// same) id.
    fn claim_is_newer(&self, from: NodeId, term: Term) -> bool {
        if self.at_ceiling(term) && self.at_ceiling(self.term) {
            return self.leader().is_none_or(|leader| from <= leader);
        }
        term >= self.term
    }

    /// Whether a higher id showing `term` means this node must act (re-assert if leading,
    /// elect if following): a newer term, unless both sit at the ceiling, where the lower
    /// id already wins.
    fn higher_term_matters(&self, term: Term) -> bool {
        term > self.term && !(self.at_ceiling(term) && self.at_ceiling(self.term))
    }

    fn start_election(&mut self, now: Instant, out: &mut Vec<Action>) {
        let lower: BTreeSet<NodeId> = self
            .ids
            .iter()
            .copied()
            .filter(|&id| id < self.me)
            .collect();
        if lower.is_empty() {
            self.become_leader(now, out);
            return;
        }
        for &to in &lower {
            out.push(Action::Send {
                to,
                msg: Msg::Election {
                    term: self.max_term,
                },
            });
        }
        self.last_ack.clear();
        self.role = Role::Electing {
            pending: lower,
            deadline: now + self.timing.alive_timeout,
        };
    }

    fn become_leader(&mut self, now: Instant, out: &mut Vec<Action>) {
        self.term = self.next_own_term();
        self.max_term = self.term;
        self.role = Role::Leader {
            next_heartbeat: now + self.timing.heartbeat,
        };
        self.last_ack = self.connected.iter().map(|&p| (p, now)).collect();
        out.push(Action::LeaderElected {
            leader: self.me,
            term: self.term,
        });
        out.push(Action::DialAll);
        for &to in self.ids.iter().filter(|&&id| id != self.me) {
            out.push(Action::Send {
                to,
                msg: Msg::Coordinator { term: self.term },
            });
        }
    }

    fn follow(&mut self, now: Instant, leader: NodeId, term: Term, out: &mut Vec<Action>) {
        let changed = self.leader() != Some(leader) || self.term != term;
        self.term = term;
        self.max_term = self.max_term.max(term);
        self.last_ack.clear();
        self.role = Role::Follower {
            leader,
            last_heard: now,
        };
        if changed {
            out.push(Action::LeaderElected { leader, term });
            out.push(Action::KeepOnly { leader });
        }
    }

    fn on_connected(&mut self, now: Instant, peer: NodeId, term: Term, out: &mut Vec<Action>) {
        if peer == self.me || !self.ids.contains(&peer) {
            return;
        }
        self.connected.insert(peer);
        self.max_term = self.max_term.max(term);
        if let Role::Leader { .. } = self.role {
            if self.higher_term_matters(term) && peer > self.me {
                // The peer has seen a newer term (it led a partition, or followed one):
                // re-assert above it so everyone converges on us. Not above a lower id:
                // it takes over anyway (our `Coordinator` below tells it, or its leader,
                // of us), and a term taken meanwhile would only be one more `Leader
                // elected` line everywhere before its own.
                self.become_leader(now, out);
            } else {
                self.last_ack.insert(peer, now);
                out.push(Action::Send {
                    to: peer,
                    msg: Msg::Coordinator { term: self.term },
                });
            }
        }
    }

    fn on_gone(&mut self, now: Instant, peer: NodeId, out: &mut Vec<Action>) {
        self.connected.remove(&peer);
        self.last_ack.remove(&peer);
        match &mut self.role {
            Role::Follower { leader, .. } if *leader == peer => {
                out.push(Action::LeaderLost {
                    leader: peer,
                    reason: LostReason::Disconnected,
                });
                self.start_election(now, out);
            }
            Role::Electing { pending, .. } => {
                pending.remove(&peer);
                if pending.is_empty() {
                    self.become_leader(now, out);
                }
            }
            Role::AwaitingCoordinator { alive, .. } => {
                alive.remove(&peer);
                if alive.is_empty() {
                    // Every lower id that answered is gone before announcing itself.
                    self.start_election(now, out);
                }
            }
            _ => {}
        }
    }

    fn on_message(&mut self, now: Instant, from: NodeId, msg: Msg, out: &mut Vec<Action>) {
        if from == self.me || !self.ids.contains(&from) {
            return;
        }
        match msg {
            Msg::Election { term } => self.on_election(now, from, term, out),
            Msg::Alive { term } => self.on_alive(now, from, term),
            Msg::Coordinator { term } | Msg::Heartbeat { term } => {
                self.on_claim(now, from, term, out);
                if matches!(msg, Msg::Heartbeat { .. }) && self.leader() == Some(from) {
                    out.push(Action::Send {
                        to: from,
                        msg: Msg::HeartbeatAck { term: self.term },
                    });
                }
            }
            Msg::HeartbeatAck { term } => {
                if self.is_leader() && term == self.term && self.connected.contains(&from) {
                    self.last_ack.insert(from, now);
                }
            }
        }
    }

    fn on_election(&mut self, now: Instant, from: NodeId, term: Term, out: &mut Vec<Action>) {
        self.max_term = self.max_term.max(term);
        if from < self.me {
            // Bully elections only go downwards; a lower id asking us is confused: ignore.
            return;
        }
        out.push(Action::Send {
            to: from,
            msg: Msg::Alive {
                term: self.max_term,
            },
        });
        self.on_higher(now, from, term, out);
    }

    /// A higher id showed us `term`, asking for an election or claiming to lead while we
    /// are alive. A leader re-asserts above a newer term, or else tells it who leads; a
    /// follower runs an election only when `term` is newer than its own (otherwise our
    /// leader answers the higher id itself). A node already electing carries on.
    fn on_higher(&mut self, now: Instant, from: NodeId, term: Term, out: &mut Vec<Action>) {
        match self.role {
            Role::Leader { .. } if self.higher_term_matters(term) => self.become_leader(now, out),
            Role::Leader { .. } => out.push(Action::Send {
                to: from,
                msg: Msg::Coordinator { term: self.term },
            }),
            Role::Follower { .. } if self.higher_term_matters(term) => {
                self.start_election(now, out)
            }
            Role::Follower { .. }
            | Role::Electing { .. }
            | Role::AwaitingCoordinator { .. }
            | Role::Idle => {}
        }
    }

    fn on_alive(&mut self, now: Instant, from: NodeId, term: Term) {
        self.max_term = self.max_term.max(term);
        if from > self.me {
            return;
        }
        match &mut self.role {
            Role::Electing { .. } => {
                self.role = Role::AwaitingCoordinator {
                    alive: BTreeSet::from([from]),
                    deadline: now + self.timing.coordinator_timeout,
                };
            }
            Role::AwaitingCoordinator { alive, .. } => {
                alive.insert(from);
            }
            _ => {}
        }
    }

    /// A `Coordinator` or `Heartbeat`: `from` claims to lead `term`.
    fn on_claim(&mut self, now: Instant, from: NodeId, term: Term, out: &mut Vec<Action>) {
        if !self.owns(from, term) {
            // Not a term `from` can lead: a confused or forged claim. Believing it would
            // let two nodes lead one term.
            return;
        }
        self.max_term = self.max_term.max(term);
        if from < self.me {
            if self.claim_is_newer(from, term) {
                self.follow(now, from, term, out);
            } else if self.at_ceiling(term) {
                // Both at the ceiling and our leader is lower: it reaches `from` itself
                // (a leader links to every node); answering here would only ping-pong.
            } else {
                // A lower id leading an older term than ours: tell it there is a newer one,
                // it will re-assert above it and everyone follows it.
                out.push(Action::Send {
                    to: from,
                    msg: Msg::Election {
                        term: self.max_term,
                    },
                });
            }
            return;
        }
        self.on_higher(now, from, term, out);
    }

    fn on_tick(&mut self, now: Instant, out: &mut Vec<Action>) {
        match &mut self.role {
            Role::Idle => {}
            Role::Electing { deadline, .. } => {
                if now >= *deadline {
                    self.become_leader(now, out);
                }
            }
            Role::AwaitingCoordinator { deadline, .. } => {
                if now >= *deadline {
                    self.start_election(now, out);
                }
            }
            Role::Follower { leader, last_heard } => {
                if now >= *last_heard + self.timing.failure_timeout {
                    out.push(Action::LeaderLost {
                        leader: *leader,
                        reason: LostReason::Silent,
                    });
                    self.start_election(now, out);
                }
            }
            Role::Leader { next_heartbeat } => {
                if now >= *next_heartbeat {
                    *next_heartbeat = now + self.timing.heartbeat;
                    for &to in &self.connected {
                        out.push(Action::Send {
                            to,
                            msg: Msg::Heartbeat { term: self.term },
                        });
                    }
                }
                let timeout = self.timing.failure_timeout;
                let dead: Vec<NodeId> = self
                    .last_ack
                    .iter()
                    .filter(|(_, &heard)| now >= heard + timeout)
                    .map(|(&peer, _)| peer)
                    .collect();
                for peer in dead {
                    self.last_ack.remove(&peer);
                    self.connected.remove(&peer);
                    out.push(Action::PeerDead { peer });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
