//! Issue 16: what p2p-node's log says is what happened, one event one line, in the
//! original's words. Three real nodes on loopback through a start, a kill -9 failover and
//! the old leader's restart:
//! * a lead is announced once, with its final term: a restarted node 1 that re-asserts
//!   itself above the term the others moved on to does not first say `(term 3)` and then
//!   `(term 6)`;
//! * a link is `connected` once it matters (a follower's link to its leader, a leader's to
//!   its followers): the short-lived links that carry an election between followers are
//!   not announced and then `disconnected` a moment later, and a second link to the same
//!   peer (both dialed at once after a failover) is not a second `connected`.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use e2e::p2p::{log_lists, parse_leader_line, Cluster, HANG_GUARD};
use e2e::Proc;

fn count(proc: &Proc, needle: &str) -> usize {
    proc.stderr_lines()
        .iter()
        .filter(|l| l.contains(needle))
        .count()
}

/// The leaders a node's log announced, in order.
fn leaders(proc: &Proc) -> Vec<(u32, u64)> {
    proc.stderr_lines()
        .iter()
        .filter_map(|l| parse_leader_line(l))
        .map(|l| (l.leader, l.term))
        .collect()
}

/// Asserts that in node `me`'s log every peer's `connected` and `disconnected` lines
/// alternate, starting with `connected`.
fn assert_links_alternate(me: u32, proc: &Proc, peers: &[u32], logs: &str) {
    for &peer in peers {
        let up = format!("Node {me} connected with Node {peer}.");
        let down = format!("Node {me} disconnected from Node {peer}.");
        let mut linked = false;
        for line in proc.stderr_lines() {
            if line.contains(&up) {
                assert!(!linked, "node {me}: {peer} connected twice\n{logs}");
                linked = true;
            } else if line.contains(&down) {
                assert!(linked, "node {me}: {peer} disconnected unconnected\n{logs}");
                linked = false;
            }
        }
    }
}

#[test]
fn start_failover_and_restart_log_each_event_once() {
    let mut cluster = Cluster::new("one-line", 3);
    for id in [1, 2, 3] {
        cluster.start(id);
        std::thread::sleep(Duration::from_millis(50));
    }
    cluster.wait_agreement(1, HANG_GUARD).unwrap();
    assert!(cluster
        .wait_log(HANG_GUARD, |t| log_lists(t, &[1, 2, 3]))
        .is_some());
    for id in [2, 3] {
        let needle = format!("Node {id} connected with Node 1.");
        assert!(cluster.node(id).wait_for(&needle, HANG_GUARD).is_some());
    }
    // Time for any late or lingering link to come and go.
    std::thread::sleep(Duration::from_millis(1500));
    let logs = cluster.logs();
    for id in [1, 2, 3] {
        assert_eq!(leaders(cluster.node(id)).len(), 1, "node {id}\n{logs}");
    }
    for (a, b) in [(2, 3), (3, 2)] {
        assert_eq!(
            count(
                cluster.node(a),
                &format!("Node {a} connected with Node {b}.")
            ),
            0,
            "followers carry election traffic between them, not a link worth a line\n{logs}"
        );
    }

    // Failover: one line per link that matters, even if both ends dial at once.
    cluster.kill9(1);
    let agreed = cluster.wait_agreement(2, HANG_GUARD);
    assert!(agreed.is_some(), "{}", cluster.logs());
    assert!(cluster
        .node(3)
        .wait_for("Node 3 connected with Node 2.", HANG_GUARD)
        .is_some());
    std::thread::sleep(Duration::from_millis(1500));
    let logs = cluster.logs();
    assert_eq!(
        count(cluster.node(3), "Node 3 connected with Node 2."),
        1,
        "{logs}"
    );
    assert_eq!(
        count(cluster.node(2), "Node 2 connected with Node 3."),
        1,
        "{logs}"
    );

    // The old leader returns with an old term and takes over above the others' term: its
    // log says so once, with the term everyone agrees on.
    cluster.start(1);
    let agreed = cluster.wait_agreement(1, HANG_GUARD);
    assert!(agreed.is_some(), "{}", cluster.logs());
    std::thread::sleep(Duration::from_millis(1500));
    let logs = cluster.logs();
    let restarted = leaders(cluster.node(1));
    assert_eq!(restarted.len(), 1, "{restarted:?}\n{logs}");
    for id in [2, 3] {
        let seen = leaders(cluster.node(id));
        assert_eq!(
            seen.iter().map(|(leader, _)| *leader).collect::<Vec<_>>(),
            [1, 2, 1],
            "node {id}: {seen:?}\n{logs}"
        );
        assert_eq!(seen.last(), restarted.last(), "{logs}");
    }
    for id in [1, 2, 3] {
        let peers: Vec<u32> = [1, 2, 3].into_iter().filter(|&p| p != id).collect();
        assert_links_alternate(id, cluster.node(id), &peers, &logs);
    }
}
