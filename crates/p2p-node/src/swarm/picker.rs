//! The piece picker: which piece to ask which peer for next. Pure logic (no I/O, no clock),
//! shared by a download's peer tasks behind a mutex and unit-tested here.
//!
//! Rules:
//! * rarest first: among the pieces a peer has that nobody is fetching, pick the one the
//!   fewest peers hold, so pieces only a partial holder has are fetched while it is there;
//!   ties go to the next piece after the peer's cursor, and cursors start spread over the
//!   file, so with complete holders each peer streams its own region (sequential reads);
//! * a per-peer window of requests in flight keeps every connection busy;
//! * a piece that fails verification is never asked of that peer again and goes back to
//!   the pool for another holder; a peer that sends [`Picker::new`]'s `max_bad` bad
//!   pieces is dropped for this download;
//! * end game: when a peer has nothing new to fetch and nothing in flight, it may
//!   duplicate one request that is in flight at another peer (at most two requests per
//!   piece), so one slow peer does not hold up the last pieces.

use std::collections::{BTreeMap, BTreeSet};

use crate::cluster::election::NodeId;
use crate::swarm::pieces::Bitfield;

/// What the download should do after a bad piece.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadPiece {
    /// Fetch it again (from another holder).
    Retry,
    /// This peer has now sent too many bad pieces: stop using it.
    DropPeer,
}

#[derive(Debug)]
struct PeerState {
    have: Bitfield,
    in_flight: BTreeSet<usize>,
    /// Pieces this peer sent corrupt or said it lacks: not asked of it again.
    refused: BTreeSet<usize>,
    bad: u32,
    cursor: usize,
}

/// Piece selection state of one download.
#[derive(Debug)]
pub struct Picker {
    done: Bitfield,
    /// How many connected peers hold each piece.
    availability: Vec<u32>,
    /// Requests in flight per piece (more than one only in the end game).
    requested: Vec<u8>,
    peers: BTreeMap<NodeId, PeerState>,
    dropped: BTreeSet<NodeId>,
    window: usize,
    max_bad: u32,
}

impl Picker {
    /// `done`: pieces already verified (a resumed download); `window`: requests in flight
    /// per peer; `max_bad`: bad pieces after which a peer is dropped.
    pub fn new(done: Bitfield, window: usize, max_bad: u32) -> Self {
        let count = done.len();
        Picker {
            done,
            availability: vec![0; count],
            requested: vec![0; count],
            peers: BTreeMap::new(),
            dropped: BTreeSet::new(),
            window: window.max(1),
            max_bad: max_bad.max(1),
        }
    }

    pub fn piece_count(&self) -> usize {
        self.done.len()
    }

    pub fn done(&self) -> &Bitfield {
        &self.done
    }

    pub fn is_complete(&self) -> bool {
        self.done.is_full()
    }

    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    pub fn is_dropped(&self, peer: NodeId) -> bool {
        self.dropped.contains(&peer)
    }

    /// Adds a peer with the pieces it has (ignored for a dropped peer or a bitfield of the
    /// wrong length). Cursors are spread evenly over the file.
    pub fn add_peer(&mut self, peer: NodeId, have: Bitfield) -> bool {
        if self.dropped.contains(&peer) || have.len() != self.piece_count() {
            return false;
        }
        self.remove_peer(peer);
        for i in have.ones() {
            self.availability[i] += 1;
        }
        self.peers.insert(
            peer,
            PeerState {
                have,
                in_flight: BTreeSet::new(),
                refused: BTreeSet::new(),
                bad: 0,
                cursor: 0,
            },
        );
        let (n, count) = (self.peers.len(), self.piece_count());
        for (k, state) in self.peers.values_mut().enumerate() {
            state.cursor = k * count / n;
        }
        true
    }

    /// A partial holder reported a newer bitfield.
    pub fn update_have(&mut self, peer: NodeId, have: Bitfield) {
        let Some(state) = self.peers.get_mut(&peer) else {
            return;
        };
        if have.len() != state.have.len() {
            return;
        }
        for i in state.have.ones() {
            self.availability[i] -= 1;
        }
        for i in have.ones() {
            self.availability[i] += 1;
        }
        state.have = have;
    }

    /// Removes a peer (gone or dropped); its requests go back to the pool.
    pub fn remove_peer(&mut self, peer: NodeId) {
        if let Some(state) = self.peers.remove(&peer) {
            for i in state.have.ones() {
                self.availability[i] -= 1;
            }
            for i in state.in_flight {
                self.requested[i] = self.requested[i].saturating_sub(1);
            }
        }
    }

    /// The next piece to ask `peer` for, or None when its window is full or it has nothing
    /// useful. The piece counts as in flight until one of the `received_*` calls.
    pub fn next_request(&mut self, peer: NodeId) -> Option<usize> {
        let count = self.piece_count();
        let state = self.peers.get(&peer)?;
        if state.in_flight.len() >= self.window || count == 0 {
            return None;
        }
        let wanted = |i: &usize| {
            !self.done.get(*i)
                && state.have.get(*i)
                && !state.refused.contains(i)
                && !state.in_flight.contains(i)
        };
        let order = (state.cursor..count).chain(0..state.cursor);
        let mut best: Option<usize> = None;
        for i in order
            .clone()
            .filter(|i| self.requested[*i] == 0 && wanted(i))
        {
            if best.is_none_or(|b| self.availability[i] < self.availability[b]) {
                best = Some(i);
                if self.availability[i] <= 1 {
                    break;
                }
            }
        }
        // End game: an idle peer duplicates one request in flight elsewhere.
        let idle = state.in_flight.is_empty();
        let pick = best.or_else(|| {
            idle.then(|| {
                order
                    .into_iter()
                    .find(|i| self.requested[*i] == 1 && wanted(i))
            })
            .flatten()
        })?;
        let state = self.peers.get_mut(&peer)?;
        state.in_flight.insert(pick);
        state.cursor = (pick + 1) % count;
        self.requested[pick] += 1;
        Some(pick)
    }

    fn finish_request(&mut self, peer: NodeId, piece: usize) -> bool {
        let Some(state) = self.peers.get_mut(&peer) else {
            return false;
        };
        if !state.in_flight.remove(&piece) {
            return false;
        }
        self.requested[piece] = self.requested[piece].saturating_sub(1);
        true
    }

    /// A verified piece from `peer`. True when it was new (false: a duplicate of the end
    /// game, or a piece never asked of this peer).
    pub fn received_ok(&mut self, peer: NodeId, piece: usize) -> bool {
        if !self.finish_request(peer, piece) || self.done.get(piece) {
            return false;
        }
        self.done.set(piece);
        true
    }

    /// `peer` sent a piece that failed verification.
    pub fn received_bad(&mut self, peer: NodeId, piece: usize) -> BadPiece {
        self.finish_request(peer, piece);
        let Some(state) = self.peers.get_mut(&peer) else {
            return BadPiece::DropPeer;
        };
        state.refused.insert(piece);
        state.bad += 1;
        if state.bad >= self.max_bad {
            self.remove_peer(peer);
            self.dropped.insert(peer);
            return BadPiece::DropPeer;
        }
        BadPiece::Retry
    }

    /// `peer` said it does not have `piece` (a partial holder whose bitfield was stale).
    pub fn missing(&mut self, peer: NodeId, piece: usize) {
        self.finish_request(peer, piece);
        if let Some(state) = self.peers.get_mut(&peer) {
            if state.have.get(piece) {
                state.have.clear(piece);
                self.availability[piece] -= 1;
            }
        }
    }

    /// True when some piece still missing is held by no connected peer that may be asked
    /// for it (the download cannot finish with the peers it has).
    pub fn is_stuck(&self) -> bool {
        (0..self.piece_count()).any(|i| {
            !self.done.get(i)
                && !self
                    .peers
                    .values()
                    .any(|s| s.have.get(i) && !s.refused.contains(&i))
        })
    }

    /// True when `piece` is in flight at `peer` (a piece nobody asked for is a protocol
    /// violation).
    pub fn is_requested(&self, peer: NodeId, piece: usize) -> bool {
        self.peers
            .get(&peer)
            .is_some_and(|s| s.in_flight.contains(&piece))
    }

    /// Requests in flight at `peer`.
    pub fn in_flight(&self, peer: NodeId) -> usize {
        self.peers.get(&peer).map_or(0, |s| s.in_flight.len())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn bits(len: usize, ones: &[usize]) -> Bitfield {
        let mut b = Bitfield::new(len);
        for &i in ones {
            b.set(i);
        }
        b
    }

    #[test]
    fn the_window_bounds_requests_per_peer() {
        let mut p = Picker::new(Bitfield::new(10), 3, 3);
        p.add_peer(1, Bitfield::full(10));
        let got: Vec<_> = std::iter::from_fn(|| p.next_request(1)).collect();
        assert_eq!(got, vec![0, 1, 2]);
        assert!(p.received_ok(1, 1));
        assert_eq!(p.next_request(1), Some(3));
        assert_eq!(p.in_flight(1), 3);
    }

    #[test]
    fn rarest_pieces_come_first() {
        let mut p = Picker::new(Bitfield::new(6), 10, 3);
        p.add_peer(1, Bitfield::full(6));
        p.add_peer(2, bits(6, &[0, 1, 2, 3]));
        // Pieces 4 and 5 only peer 1 has: it fetches them before common ones.
        assert_eq!(p.next_request(1), Some(4));
        assert_eq!(p.next_request(1), Some(5));
        assert!(matches!(p.next_request(2), Some(0..=3)));
    }

    #[test]
    fn cursors_spread_peers_over_the_file() {
        let mut p = Picker::new(Bitfield::new(9), 1, 3);
        for peer in 1..=3 {
            p.add_peer(peer, Bitfield::full(9));
        }
        let firsts: Vec<_> = (1..=3).map(|peer| p.next_request(peer).unwrap()).collect();
        assert_eq!(firsts, vec![0, 3, 6]);
    }

    #[test]
    fn a_bad_piece_goes_to_another_holder_and_repeat_offenders_are_dropped() {
        let mut p = Picker::new(Bitfield::new(4), 1, 2);
        p.add_peer(1, Bitfield::full(4));
        p.add_peer(2, Bitfield::full(4));
        let first = p.next_request(1).unwrap();
        assert_eq!(p.received_bad(1, first), BadPiece::Retry);
        // Peer 1 is not asked for that piece again; peer 2 gets it (rarest: only 2 may).
        let mut seen = Vec::new();
        while let Some(i) = p.next_request(1) {
            seen.push(i);
            p.received_ok(1, i);
            if seen.len() > 4 {
                break;
            }
        }
        assert!(!seen.contains(&first), "{seen:?}");
        assert!(!p.is_complete());
        assert_eq!(p.next_request(2), Some(first));
        let other = first;
        assert_eq!(p.received_bad(2, other), BadPiece::Retry);
        assert!(p.is_stuck(), "nobody left who may send piece {other}");
        p.add_peer(3, Bitfield::full(4));
        assert_eq!(p.next_request(3), Some(other));
        assert!(p.received_ok(3, other));
        assert!(p.is_complete());
        // Two bad pieces from peer 2 with max_bad 2 drop it.
        let mut q = Picker::new(Bitfield::new(4), 2, 2);
        q.add_peer(2, Bitfield::full(4));
        let a = q.next_request(2).unwrap();
        let b = q.next_request(2).unwrap();
        assert_eq!(q.received_bad(2, a), BadPiece::Retry);
        assert_eq!(q.received_bad(2, b), BadPiece::DropPeer);
        assert!(q.is_dropped(2));
        assert!(
            !q.add_peer(2, Bitfield::full(4)),
            "dropped for this download"
        );
        assert_eq!(q.next_request(2), None);
    }

    #[test]
    fn a_lost_peer_returns_its_requests_to_the_pool() {
        let mut p = Picker::new(Bitfield::new(2), 2, 3);
        p.add_peer(1, Bitfield::full(2));
        p.add_peer(2, Bitfield::full(2));
        assert_eq!(p.next_request(1), Some(0));
        assert_eq!(p.next_request(1), Some(1));
        // Peer 2 can only duplicate (end game), one piece at a time.
        assert_eq!(p.next_request(2), Some(1));
        assert_eq!(p.next_request(2), None);
        p.remove_peer(1);
        assert_eq!(p.next_request(2), Some(0));
        assert!(p.received_ok(2, 1));
        assert!(
            !p.received_ok(1, 1),
            "a removed peer's late piece is ignored"
        );
    }

    #[test]
    fn end_game_duplicates_at_most_once_and_ignores_the_late_copy() {
        let mut p = Picker::new(Bitfield::new(1), 4, 3);
        for peer in 1..=3 {
            p.add_peer(peer, Bitfield::full(1));
        }
        assert_eq!(p.next_request(1), Some(0));
        assert_eq!(p.next_request(2), Some(0));
        assert_eq!(p.next_request(3), None);
        assert!(p.received_ok(2, 0));
        assert!(!p.received_ok(1, 0));
        assert!(p.is_complete());
        assert_eq!(p.next_request(3), None);
    }

    #[test]
    fn resumed_pieces_and_missing_pieces_are_skipped() {
        let mut p = Picker::new(bits(3, &[0]), 4, 3);
        p.add_peer(1, Bitfield::full(3));
        assert_eq!(p.next_request(1), Some(1));
        p.missing(1, 1);
        assert_eq!(p.next_request(1), Some(2));
        assert_eq!(p.next_request(1), None, "piece 1 is missing there");
        assert!(p.is_stuck());
        p.add_peer(2, bits(3, &[1]));
        assert!(!p.is_stuck());
        assert_eq!(p.next_request(2), Some(1));
    }
}
