//! End-to-end tests of the p2p programs (real binaries, real sockets): election in every
//! start order, kill -9 failover and takeover, a 7-node cluster losing its two lowest ids,
//! the file index following directory changes, refusal of strangers and garbage, the
//! console, and (as root) partitions of nodes in network namespaces joined by a bridge.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use e2e::bin_path;
use e2e::p2p::{
    bully_message, file_list_message, frame, hello_frame, hello_message, last_leader, log_lists,
    log_time, read_frame, wait_agreement, Cluster, FakeMember, NsCluster, HANG_GUARD, TERM_FILE,
};

/// Seconds since midnight UTC now, comparable with log timestamps.
fn now_of_day() -> f64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    (since.as_secs() % 86_400) as f64 + f64::from(since.subsec_micros()) / 1e6
}

/// When node `id` logged that it listens.
fn started_at(cluster: &Cluster, id: u32) -> f64 {
    let line = cluster
        .node(id)
        .wait_for("listening on", HANG_GUARD)
        .unwrap();
    log_time(&line).unwrap()
}

#[test]
fn three_nodes_in_every_start_order_agree_on_node_1() {
    let orders = [
        [1, 2, 3],
        [1, 3, 2],
        [2, 1, 3],
        [2, 3, 1],
        [3, 1, 2],
        [3, 2, 1],
    ];
    for order in orders {
        let mut cluster = Cluster::new("order", 3);
        for id in order {
            // start() returns once the node listens, so the order is the order given.
            cluster.start(id);
        }
        let last = started_at(&cluster, order[2]);
        let lines = cluster
            .wait_agreement(1, HANG_GUARD)
            .unwrap_or_else(|| panic!("order {order:?}: no agreement\n{}", cluster.logs()));
        let agreed = lines.iter().map(|l| l.at).fold(0.0, f64::max);
        assert!(
            agreed - last < 1.0,
            "order {order:?}: agreed {:.3} s after the last start\n{}",
            agreed - last,
            cluster.logs()
        );
        let log = cluster.wait_log(HANG_GUARD, |t| log_lists(t, &[1, 2, 3]));
        assert!(
            log.is_some(),
            "order {order:?}: Peer_files.log incomplete:\n{}\n{}",
            cluster.read_log(),
            cluster.logs()
        );
        // Star topology: each follower is linked to the leader and to nobody else.
        let star = cluster.wait_star(1, HANG_GUARD);
        assert!(
            star.is_ok(),
            "order {order:?}: not a star: {}\n{}",
            star.unwrap_err(),
            cluster.logs()
        );
    }
}

#[test]
fn killed_leader_is_replaced_at_once_and_takes_over_when_it_returns() {
    let mut cluster = Cluster::new("failover", 3);
    for id in [1, 2, 3] {
        cluster.start(id);
    }
    cluster.wait_agreement(1, HANG_GUARD).unwrap();
    assert!(cluster
        .wait_log(HANG_GUARD, |t| log_lists(t, &[1, 2, 3]))
        .is_some());

    let killed_at = now_of_day();
    cluster.kill9(1);
    let lines = cluster
        .wait_agreement(2, HANG_GUARD)
        .unwrap_or_else(|| panic!("no new leader\n{}", cluster.logs()));
    let agreed = lines.iter().map(|l| l.at).fold(0.0, f64::max);
    assert!(
        agreed - killed_at < 1.0,
        "failover took {:.3} s\n{}",
        agreed - killed_at,
        cluster.logs()
    );
    for id in [2, 3] {
        assert!(cluster
            .node(id)
            .wait_for("lost its leader Node 1", HANG_GUARD)
            .is_some());
    }
    let log = cluster.wait_log(HANG_GUARD, |t| log_lists(t, &[2, 3]));
    assert!(log.is_some(), "dead node kept:\n{}", cluster.read_log());

    cluster.start(1);
    cluster
        .wait_agreement(1, HANG_GUARD)
        .unwrap_or_else(|| panic!("node 1 did not take over\n{}", cluster.logs()));
    let log = cluster.wait_log(HANG_GUARD, |t| log_lists(t, &[1, 2, 3]));
    assert!(log.is_some(), "index not whole:\n{}", cluster.read_log());
}

#[test]
fn seven_nodes_losing_the_two_lowest_elect_the_third() {
    let mut cluster = Cluster::new("seven", 7);
    for id in [4, 7, 1, 3, 6, 2, 5] {
        cluster.start(id);
    }
    cluster
        .wait_agreement(1, HANG_GUARD)
        .unwrap_or_else(|| panic!("no agreement on 1\n{}", cluster.logs()));
    let killed_at = now_of_day();
    cluster.kill9(1);
    cluster.kill9(2);
    let lines = cluster
        .wait_agreement(3, HANG_GUARD)
        .unwrap_or_else(|| panic!("no agreement on 3\n{}", cluster.logs()));
    let agreed = lines.iter().map(|l| l.at).fold(0.0, f64::max);
    assert!(
        agreed - killed_at < 1.0,
        "took {:.3} s\n{}",
        agreed - killed_at,
        cluster.logs()
    );
    let log = cluster.wait_log(HANG_GUARD, |t| log_lists(t, &[3, 4, 5, 6, 7]));
    assert!(log.is_some(), "{}\n{}", cluster.read_log(), cluster.logs());
}

#[test]
fn files_copied_into_or_removed_from_a_directory_reach_the_log() {
    let mut cluster = Cluster::new("files", 3);
    for id in [1, 2, 3] {
        cluster.start(id);
    }
    cluster.wait_agreement(1, HANG_GUARD).unwrap();
    cluster
        .wait_log(HANG_GUARD, |t| log_lists(t, &[1, 2, 3]))
        .unwrap();

    let name = "copied file ü.bin";
    let content = vec![7u8; 100_000];
    let copied_at = Instant::now();
    std::fs::write(cluster.dir(3).join(name), &content).unwrap();
    // The identity itself is checked by the index's unit tests; here: 64 hex digits.
    let line = format!("  {name} (100000 bytes, id ");
    let hashed = |t: &str| {
        t.lines().any(|l| {
            l.strip_prefix(line.as_str()).is_some_and(|rest| {
                rest.len() == 65
                    && rest.ends_with(')')
                    && rest[..64].bytes().all(|b| b.is_ascii_hexdigit())
            })
        })
    };
    let log = cluster.wait_log(HANG_GUARD, hashed);
    let took = copied_at.elapsed();
    assert!(log.is_some(), "never listed:\n{}", cluster.read_log());
    assert!(took < Duration::from_secs(3), "listed after {took:?}");
    // Under node 3's heading.
    let text = log.unwrap();
    let node3 = text.find("Node 3 files:").unwrap();
    assert!(text.find(&line).unwrap() > node3, "{text}");

    // A symlink leading out of the directory is not shared; a removed file disappears.
    std::os::unix::fs::symlink("/etc/hostname", cluster.dir(2).join("escape")).unwrap();
    // A name with a newline would forge lines of the log: not shared.
    std::fs::write(cluster.dir(2).join("evil\nNode 9 files:"), "x").unwrap();
    // A file written after those two: once node 2's listing shows it, a scan that saw the
    // symlink and the forged name has reached the log.
    std::fs::write(cluster.dir(2).join("after-the-evil-ones.txt"), "y").unwrap();
    std::fs::remove_file(cluster.dir(3).join(name)).unwrap();
    let log = cluster.wait_log(HANG_GUARD, |t| {
        !t.contains(name) && log_lists(t, &[1, 2, 3]) && t.contains("  after-the-evil-ones.txt (")
    });
    assert!(log.is_some(), "{}", cluster.read_log());
    let text = cluster.read_log();
    assert!(
        !text.contains("escape") && !text.contains("Node 9"),
        "{text}"
    );
}

/// `MAX_TERM` of the election (u64::MAX / 4); the largest term a node accepts.
const MAX_TERM: u64 = u64::MAX / 4;

#[test]
fn a_member_sending_terms_at_the_top_cannot_split_the_cluster() {
    let mut cluster = Cluster::new("terms", 3);
    for id in [1, 2, 3] {
        cluster.start(id);
    }
    cluster.wait_agreement(1, HANG_GUARD).unwrap();
    // A fake node 2 links to follower 3 and claims to lead at the top of the term space:
    // MAX_TERM - 1 (node 3's term there, as in the issue), then MAX_TERM - 2 (node 2's own,
    // so node 3 does follow it), with a Hello that has seen MAX_TERM - 1.
    let sent_at = now_of_day();
    let mut fake = TcpStream::connect(("127.0.0.1", cluster.ports[&3])).unwrap();
    fake.set_read_timeout(Some(HANG_GUARD)).unwrap();
    fake.write_all(&hello_frame()).unwrap();
    fake.write_all(&frame(&hello_message(2, MAX_TERM - 1)))
        .unwrap();
    let _their_netutil_hello = read_frame(&mut fake).unwrap();
    let their_hello = read_frame(&mut fake).unwrap();
    assert_eq!(
        &their_hello[..2],
        &[0, 3],
        "Hello from node 3: {their_hello:?}"
    );
    fake.write_all(&frame(&bully_message(2, MAX_TERM - 1)))
        .unwrap();
    fake.write_all(&frame(&bully_message(2, MAX_TERM - 2)))
        .unwrap();
    // (Which of the two it takes depends on the rules; that it takes one shows the test
    // reaches the election.)
    let needle = format!("Leader elected: Node 2 (term {}", MAX_TERM / 1000);
    assert!(
        cluster.node(3).wait_for(&needle, HANG_GUARD).is_some(),
        "node 3 never took the fake claim\n{}",
        cluster.logs()
    );
    // Within the failure timeout (1 s) plus 1 s, node 1 leads everyone again, in a term at
    // or below MAX_TERM that every node accepts.
    let lines = cluster
        .wait_agreement(1, HANG_GUARD)
        .unwrap_or_else(|| panic!("no agreement on node 1\n{}", cluster.logs()));
    let agreed = lines.iter().map(|l| l.at).fold(0.0, f64::max);
    assert!(
        agreed - sent_at < 2.0,
        "agreed {:.3} s after the fake claim\n{}",
        agreed - sent_at,
        cluster.logs()
    );
    assert!(lines[0].term <= MAX_TERM, "{lines:?}");
    // And it stays so once the fake is gone: one leader, node 1, in that term, for all
    // three, throughout three failure timeouts (an observation window, not a wait).
    drop(fake);
    let held = cluster.holds_agreement(1, lines[0].term, Duration::from_secs(3));
    assert!(held.is_ok(), "{}\n{}", held.unwrap_err(), cluster.logs());
    // Terms at the top must not stop later elections: failover to node 2, then node 1
    // restarts and takes over again.
    let killed_at = now_of_day();
    cluster.kill9(1);
    let lines = cluster
        .wait_agreement(2, HANG_GUARD)
        .unwrap_or_else(|| panic!("no failover to node 2\n{}", cluster.logs()));
    let agreed = lines.iter().map(|l| l.at).fold(0.0, f64::max);
    assert!(
        agreed - killed_at < 2.0,
        "failover {:.3} s",
        agreed - killed_at
    );
    let restarted_at = now_of_day();
    cluster.start(1);
    let lines = cluster
        .wait_agreement(1, HANG_GUARD)
        .unwrap_or_else(|| panic!("node 1 did not take over again\n{}", cluster.logs()));
    let agreed = lines.iter().map(|l| l.at).fold(0.0, f64::max);
    assert!(
        agreed - restarted_at < 2.0,
        "takeover {:.3} s\n{}",
        agreed - restarted_at,
        cluster.logs()
    );
    assert!(lines[0].term <= MAX_TERM, "{lines:?}");
    // The highest term is kept in each node's directory, and not shared as a file.
    let saved = std::fs::read_to_string(cluster.dir(1).join(TERM_FILE)).unwrap();
    assert!(
        saved.trim().parse::<u64>().unwrap() > MAX_TERM / 2,
        "{saved}"
    );
    assert!(
        !cluster.read_log().contains(".p2p-node"),
        "{}",
        cluster.read_log()
    );
}

#[test]
fn strangers_garbage_and_unknown_ids_are_refused_without_harm() {
    // Node 4 is configured but never started, so the test can speak as node 4.
    let mut cluster = Cluster::new("strangers", 4);
    for id in [1, 2, 3] {
        cluster.start(id);
    }
    let before = cluster.wait_agreement(1, HANG_GUARD).unwrap();
    let port = cluster.ports[&2];

    // A valid Hello as node 4, then a message that is not one: that link closes, logged.
    let mut m = TcpStream::connect(("127.0.0.1", port)).unwrap();
    m.set_read_timeout(Some(HANG_GUARD)).unwrap();
    m.write_all(&hello_frame()).unwrap();
    m.write_all(&frame(&[0, 4, 0])).unwrap();
    let _their_netutil_hello = read_frame(&mut m).unwrap();
    let their_hello = read_frame(&mut m).unwrap();
    assert_eq!(
        &their_hello[..2],
        &[0, 2],
        "Hello from node 2: {their_hello:?}"
    );
    m.write_all(&frame(&[0xee, 0xff, 0x01])).unwrap();
    while read_frame(&mut m).is_some() {}
    assert!(
        cluster
            .node(2)
            .wait_for("Node 4: 127.0.0.1", HANG_GUARD)
            .is_some_and(|l| l.contains("malformed")),
        "{}",
        cluster.logs()
    );

    // An id outside the cluster: Message::Hello { id: 99, term: 0 } is [0, 99, 0].
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(HANG_GUARD)).unwrap();
    s.write_all(&hello_frame()).unwrap();
    s.write_all(&frame(&[0, 99, 0])).unwrap();
    let _their_hello = read_frame(&mut s).unwrap();
    let refusal = read_frame(&mut s).unwrap();
    assert_eq!(refusal[0], 1, "Refused is variant 1: {refusal:?}");
    let text = String::from_utf8_lossy(&refusal);
    assert!(text.contains("node id 99 is not in this cluster"), "{text}");
    assert!(
        read_frame(&mut s).is_none(),
        "link must close after the refusal"
    );

    // Garbage instead of a handshake, and a frame claiming 4 GiB.
    let mut g = TcpStream::connect(("127.0.0.1", port)).unwrap();
    g.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut h = TcpStream::connect(("127.0.0.1", port)).unwrap();
    h.write_all(&hello_frame()).unwrap();
    h.write_all(&[0xff, 0xff, 0xff, 0xff]).unwrap();
    h.set_read_timeout(Some(HANG_GUARD)).unwrap();
    let _ = read_frame(&mut h);
    assert!(
        read_frame(&mut h).is_none(),
        "oversized frame must close the link"
    );
    // The node refused all of it and the cluster did not notice.
    assert!(cluster
        .node(2)
        .wait_for("not in this cluster", HANG_GUARD)
        .is_some());
    let held = cluster.holds_agreement(1, before[0].term, Duration::from_secs(1));
    assert!(
        held.is_ok(),
        "the cluster was disturbed: {}\n{}",
        held.unwrap_err(),
        cluster.logs()
    );
    assert_eq!(before, cluster.wait_agreement(1, Duration::ZERO).unwrap());
}

/// A member's file list names what the others may download into their directories, so a
/// name that leaves the directory, sent on the wire by a (fake) member, must be refused:
/// the link is closed, the name never reaches `Peer_files.log`, and no file appears
/// outside the shared directories.
#[test]
fn a_hostile_file_list_on_the_wire_is_refused_and_never_indexed() {
    let mut cluster = Cluster::new("hostile-list", 2);
    cluster.start(1);
    cluster.wait_agreement(1, HANG_GUARD).unwrap();
    for hostile in [
        "../escape.txt",
        "/tmp/p2p-e2e-absolute.txt",
        "sub/dir.txt",
        "..",
    ] {
        let mut fake = FakeMember::join(cluster.ports[&1], 2);
        // First an honest list: the fake is a follower whose files the leader indexes.
        fake.send(&file_list_message(&[("fine.txt", 5, [0x11; 32])]));
        let indexed = cluster.wait_log(HANG_GUARD, |t| t.contains("\nNode 2 files:\n  fine.txt ("));
        assert!(
            indexed.is_some(),
            "{hostile}: the honest list was not indexed:\n{}\n{}",
            cluster.read_log(),
            cluster.logs()
        );
        fake.send(&file_list_message(&[
            ("fine.txt", 5, [0x11; 32]),
            (hostile, 5, [0x22; 32]),
        ]));
        assert!(
            fake.wait_closed(HANG_GUARD),
            "{hostile}: the link stayed open\n{}",
            cluster.logs()
        );
        let refused = format!("sent a bad file list (unsafe file name {hostile:?})");
        assert!(
            cluster.node(1).wait_for(&refused, HANG_GUARD).is_some(),
            "{}",
            cluster.logs()
        );
        let dropped = cluster.wait_log(HANG_GUARD, |t| log_lists(t, &[1]));
        assert!(dropped.is_some(), "{hostile}: {}", cluster.read_log());
        let log = cluster.read_log();
        assert!(!log.contains("escape") && !log.contains(hostile), "{log}");
    }
    // Nothing named by the hostile list exists, inside the cluster's tree or beside it.
    let made: Vec<_> = all_paths(&cluster.root.0)
        .into_iter()
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            ["escape", "absolute", "sub", "dir.txt"]
                .iter()
                .any(|bad| name.contains(bad))
        })
        .collect();
    assert!(made.is_empty(), "{made:?}");
    let parent = cluster.root.0.parent().unwrap();
    assert!(!parent.join("escape.txt").exists());
    assert!(!std::path::Path::new("/tmp/p2p-e2e-absolute.txt").exists());
}

/// Every path under `dir`, recursively.
fn all_paths(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(all_paths(&path));
        }
        out.push(path);
    }
    out
}

#[test]
fn an_id_outside_the_cluster_is_a_clear_error() {
    let out = Command::new(bin_path("p2p-node"))
        .args(["--id", "7"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("node id 7 is not in the cluster; configured ids: 1, 2, 3"),
        "{stderr}"
    );
}

#[test]
fn a_heartbeat_not_shorter_than_the_failure_timeout_is_a_clear_error() {
    let root = e2e::p2p::TempRoot::new("timing");
    let (dir, log) = (root.0.join("Node1"), root.0.join("Peer_files.log"));
    let args = [
        "--id",
        "1",
        "--heartbeat-ms",
        "1000",
        "--failure-timeout-ms",
        "500",
        "--dir",
        dir.to_str().unwrap(),
        "--index-log",
        log.to_str().unwrap(),
    ];
    let mut proc = e2e::Proc::start("p2p-node", &args);
    let status = proc.wait_exit(HANG_GUARD).expect("it refuses to start");
    assert!(!status.success());
    let stderr = proc.stderr_text();
    assert!(
        stderr.contains(
            "--heartbeat-ms (1000 ms) must be shorter than --failure-timeout-ms (500 ms)"
        ),
        "{stderr}"
    );
}

#[test]
fn console_answers_leader_peers_files_get_and_quit() {
    let mut cluster = Cluster::new("console", 2);
    cluster.start(1);
    cluster.start(2);
    cluster.wait_agreement(1, HANG_GUARD).unwrap();
    cluster
        .wait_log(HANG_GUARD, |t| log_lists(t, &[1, 2]))
        .unwrap();
    let node = cluster.nodes.get_mut(&2).unwrap();
    let stdout = node.take_stdout();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    node.write_stdin("leader\npeers\nfiles\nget ../from-node-1.txt\nbogus\nquit\n");
    let mut out = Vec::new();
    while let Ok(line) = rx.recv_timeout(HANG_GUARD) {
        let done = line == "bye";
        out.push(line);
        if done {
            break;
        }
    }
    let text = out.join("\n");
    assert!(text.contains("Leader: Node 1 (term "), "{text}");
    assert!(text.contains("Node 1 at 127.0.0.1:"), "{text}");
    assert!(text.contains("Leader Node 1 files:"), "{text}");
    assert!(text.contains("  from-node-2.txt ("), "{text}");
    assert!(
        text.contains(
            "get ../from-node-1.txt: failed: \"../from-node-1.txt\" is not a valid file name"
        ),
        "{text}"
    );
    assert!(text.contains("unknown command"), "{text}");
    let status = node.wait_exit(HANG_GUARD).expect("quit ends the process");
    assert!(status.success());
    // Node 1 sees it go.
    assert!(cluster
        .node(1)
        .wait_for("Node 1 disconnected from Node 2.", HANG_GUARD)
        .is_some());
}

#[test]
#[cfg_attr(not(e2e_netns), ignore = "needs root: network namespaces")]
fn partitions_in_network_namespaces_heal_to_one_leader_and_one_index() {
    let mut ns = NsCluster::new("p2ppart", 3);
    for id in [1, 2, 3] {
        ns.start(id);
    }
    let all = [1, 2, 3];
    wait_agreement(&ns.procs(&all), 1, HANG_GUARD)
        .unwrap_or_else(|| panic!("no leader\n{}", ns.logs()));
    assert!(ns.wait_log(1, HANG_GUARD, |t| log_lists(t, &all)).is_some());
    let before = last_leader(&ns.nodes[&2]).unwrap();

    // Cut a non-leader: the rest keep their leader and drop it from the index; it leads a
    // partition of one and says so.
    ns.cut(3);
    assert!(
        ns.wait_log(1, HANG_GUARD, |t| log_lists(t, &[1, 2]))
            .is_some(),
        "node 3 not dropped:\n{}\n{}",
        ns.read_log(1),
        ns.logs()
    );
    assert!(ns.nodes[&3]
        .wait_for("lost its leader Node 1", HANG_GUARD)
        .is_some());
    wait_agreement(&ns.procs(&[3]), 3, HANG_GUARD)
        .unwrap_or_else(|| panic!("node 3 does not lead itself\n{}", ns.logs()));
    assert!(
        ns.nodes[&3]
            .wait_for("Node 3 leads a partition of one", HANG_GUARD)
            .is_some(),
        "{}",
        ns.logs()
    );
    assert_eq!(
        last_leader(&ns.nodes[&2]),
        Some(before),
        "node 2 changed leader"
    );

    // Restore: one leader (the lowest) and one whole index, within timeout + 1 s.
    let restored = Instant::now();
    ns.restore(3);
    wait_agreement(&ns.procs(&all), 1, HANG_GUARD)
        .unwrap_or_else(|| panic!("no single leader after healing\n{}", ns.logs()));
    assert!(ns.wait_log(1, HANG_GUARD, |t| log_lists(t, &all)).is_some());
    let healed = restored.elapsed();
    assert!(
        healed < Duration::from_secs(2),
        "healing took {healed:?}\n{}",
        ns.logs()
    );

    // Cut the leader: the rest elect the next lowest; the old leader leads itself.
    let cut_at = Instant::now();
    ns.cut(1);
    wait_agreement(&ns.procs(&[2, 3]), 2, HANG_GUARD)
        .unwrap_or_else(|| panic!("no new leader\n{}", ns.logs()));
    let took = cut_at.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "silent failover took {took:?}"
    );
    assert!(ns
        .wait_log(2, HANG_GUARD, |t| log_lists(t, &[2, 3]))
        .is_some());
    wait_agreement(&ns.procs(&[1]), 1, HANG_GUARD).unwrap();
    ns.restore(1);
    wait_agreement(&ns.procs(&all), 1, HANG_GUARD)
        .unwrap_or_else(|| panic!("node 1 did not take over\n{}", ns.logs()));
    assert!(ns.wait_log(1, HANG_GUARD, |t| log_lists(t, &all)).is_some());
}

/// Node 1 is configured as `[::1]`, node 2 by the name `localhost`: in both start orders
/// the two agree and index each other, and the node that starts second dials the first:
/// node 2 reaches node 1 over IPv6, node 1 reaches node 2 through its name.
#[test]
fn a_cluster_file_with_ipv6_and_host_names_works() {
    for order in [[1u32, 2], [2, 1]] {
        let (_root, nodes, ports) = start_v6_and_name_cluster(order);
        let node = |id: u32| &nodes[order.iter().position(|&o| o == id).unwrap()];
        let logs = || format!("{}\n{}", node(1).stderr_text(), node(2).stderr_text());
        let listening = format!("listening on [::1]:{} (TCP)", ports[0]);
        assert!(
            node(1).wait_for(&listening, Duration::ZERO).is_some(),
            "{}",
            logs()
        );
        let (dialer, needle) = match order {
            // Node 2 dials node 1's IPv6 address.
            [1, 2] => (
                2,
                format!("Node 2 connected with Node 1. ([::1]:{}, dialed)", ports[0]),
            ),
            // Node 1 dials node 2 by name; only the resolved name gives 127.0.0.1.
            _ => (
                1,
                format!(
                    "Node 1 connected with Node 2. (127.0.0.1:{}, dialed)",
                    ports[1]
                ),
            ),
        };
        assert!(
            node(dialer).wait_for(&needle, HANG_GUARD).is_some(),
            "order {order:?}: no {needle:?}\n{}",
            logs()
        );
        if order == [1, 2] {
            let accepted = "Node 1 connected with Node 2. ([::1]:";
            assert!(
                node(1).wait_for(accepted, HANG_GUARD).is_some(),
                "{}",
                logs()
            );
        }
    }
}

/// Starts nodes 1 (`[::1]`) and 2 (`localhost`) in `order` from a cluster file and waits
/// until they agree on node 1 and the index lists both; returns their root directory, the
/// nodes in start order and their ports.
fn start_v6_and_name_cluster(order: [u32; 2]) -> (e2e::TempDir, Vec<e2e::Proc>, Vec<u16>) {
    let root = e2e::p2p::TempRoot::new("v6names");
    let ports = e2e::p2p::free_ports(2);
    let toml = format!(
        "[[node]]\nid = 1\naddr = \"[::1]:{}\"\n\n[[node]]\nid = 2\naddr = \"localhost:{}\"\n",
        ports[0], ports[1]
    );
    let cluster_file = root.0.join("cluster.toml");
    std::fs::write(&cluster_file, toml).unwrap();
    let log = root.0.join("Peer_files.log");
    let mut nodes = Vec::new();
    for id in order {
        let dir = root.0.join(format!("Node{id}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("from-node-{id}.txt")), "x").unwrap();
        let args = [
            "--id".to_owned(),
            id.to_string(),
            "--cluster".into(),
            cluster_file.display().to_string(),
            "--dir".into(),
            dir.display().to_string(),
            "--index-log".into(),
            log.display().to_string(),
        ];
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let proc = e2e::Proc::start("p2p-node", &refs);
        proc.listening_port();
        nodes.push(proc);
    }
    let procs: Vec<&e2e::Proc> = nodes.iter().collect();
    wait_agreement(&procs, 1, HANG_GUARD)
        .unwrap_or_else(|| panic!("{}\n{}", nodes[0].stderr_text(), nodes[1].stderr_text()));
    let deadline = Instant::now() + HANG_GUARD;
    while !log_lists(&std::fs::read_to_string(&log).unwrap_or_default(), &[1, 2]) {
        assert!(
            Instant::now() < deadline,
            "{:?}",
            std::fs::read_to_string(&log)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    (root, nodes, ports)
}

/// Keeps `per_port` idle connections from 127.0.0.2 open to each of `ports`, opening a new
/// one whenever the node closes one, until `stop` is set.
fn idle_crowd(
    ports: Vec<u16>,
    per_port: usize,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let mut tasks = Vec::new();
            for port in ports {
                for _ in 0..per_port {
                    let stop = stop.clone();
                    tasks.push(tokio::spawn(async move {
                        while !stop.load(Ordering::Relaxed) {
                            let socket = tokio::net::TcpSocket::new_v4().unwrap();
                            socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
                            let target = std::net::SocketAddr::from(([127, 0, 0, 1], port));
                            let Ok(mut stream) = socket.connect(target).await else {
                                tokio::time::sleep(Duration::from_millis(10)).await;
                                continue;
                            };
                            let mut buf = [0u8; 256];
                            // Idle: read (the node's hello) until the node closes it.
                            while !stop.load(Ordering::Relaxed) {
                                let read = tokio::time::timeout(
                                    Duration::from_millis(200),
                                    tokio::io::AsyncReadExt::read(&mut stream, &mut buf),
                                )
                                .await;
                                if matches!(read, Ok(Ok(0)) | Ok(Err(_))) {
                                    break;
                                }
                            }
                        }
                    }));
                }
            }
            for task in tasks {
                let _ = task.await;
            }
        });
    })
}

#[test]
fn idle_connections_from_one_source_do_not_delay_links_or_a_rejoin() {
    let mut cluster = Cluster::new("crowd", 3);
    for id in [1, 2, 3] {
        cluster.start(id);
    }
    cluster.wait_agreement(1, HANG_GUARD).unwrap();
    // 200 idle connections from another source to the leader and to node 3, renewed as
    // soon as a node closes one (the handshake timeout).
    let stop = Arc::new(AtomicBool::new(false));
    let ports = vec![cluster.ports[&1], cluster.ports[&3]];
    let crowd = idle_crowd(ports, 200, stop.clone());
    assert!(
        cluster
            .node(1)
            .wait_for("handshakes in progress from this source", HANG_GUARD)
            .is_some(),
        "{}",
        cluster.logs()
    );
    // Node 3 restarts into the crowd: it rejoins in the normal election time.
    cluster.kill9(3);
    let restarted_at = now_of_day();
    cluster.start(3);
    let agreed = cluster.wait_agreement(1, HANG_GUARD);
    stop.store(true, Ordering::Relaxed);
    crowd.join().unwrap();
    agreed.unwrap_or_else(|| panic!("no agreement\n{}", cluster.logs()));
    let rejoined = cluster.leader_of(3).unwrap().at - restarted_at;
    assert!(
        rejoined < 1.0,
        "node 3 rejoined after {rejoined:.3} s\n{}",
        cluster.logs()
    );
    assert!(
        cluster
            .node(3)
            .wait_for("partition of one", Duration::ZERO)
            .is_none(),
        "node 3 led alone for a while\n{}",
        cluster.logs()
    );
}

/// The console on a terminal (tmux): a line editor with history (Up), each result printed
/// once and in order, log lines above the prompt instead of inside it, `help`, `peers`
/// listing every configured node at its configured address with its state, `quit`.
#[test]
#[cfg_attr(not(e2e_tmux), ignore = "needs tmux")]
fn console_on_a_terminal_edits_lines_and_prints_each_result_once() {
    let mut cluster = Cluster::new("tmux-console", 3);
    cluster.start(2);
    let command: Vec<String> = std::iter::once(bin_path("p2p-node").display().to_string())
        .chain(cluster.args(1))
        .map(|a| format!("'{a}'"))
        .collect();
    let tmux = e2e::tmux::Tmux::start("p2p-console", 120, 40, &command.join(" "));
    let count =
        |screen: &[String], needle: &str| screen.iter().filter(|l| l.contains(needle)).count();
    tmux.wait_screen("a prompt after the election", HANG_GUARD, |s| {
        count(s, "Leader elected: Node 1") > 0 && s.iter().any(|l| l.trim_end() == ">")
    });
    tmux.type_text("peers");
    tmux.keys(&["Enter"]);
    let (port2, port3) = (cluster.ports[&2], cluster.ports[&3]);
    let screen = tmux.wait_screen("peers", HANG_GUARD, |s| {
        count(s, &format!("Node 2 at 127.0.0.1:{port2}: connected")) == 1
    });
    assert_eq!(count(&screen, "Node 1 at 127.0.0.1:"), 1, "{screen:#?}");
    assert_eq!(count(&screen, "this node, leader"), 1, "{screen:#?}");
    assert_eq!(
        count(&screen, &format!("Node 3 at 127.0.0.1:{port3}: ")),
        1,
        "{screen:#?}"
    );
    tmux.type_text("leader");
    tmux.keys(&["Enter"]);
    tmux.wait_screen("leader", HANG_GUARD, |s| {
        count(s, "Leader: Node 1 (term ") == 1
    });
    // History: Up brings `leader` back, not an escape sequence.
    tmux.keys(&["Up"]);
    tmux.keys(&["Enter"]);
    let screen = tmux.wait_screen("leader again", HANG_GUARD, |s| {
        count(s, "Leader: Node 1 (term ") == 2
    });
    assert_eq!(count(&screen, "unknown command"), 0, "{screen:#?}");
    tmux.type_text("get no-such-file");
    tmux.keys(&["Enter"]);
    let screen = tmux.wait_screen("get's outcome", HANG_GUARD, |s| {
        count(s, "get no-such-file: failed") > 0
    });
    // Once each, and `looking for holders` before `failed`.
    assert_eq!(
        count(&screen, "get no-such-file: looking for holders"),
        1,
        "{screen:#?}"
    );
    assert_eq!(count(&screen, "get no-such-file: failed"), 1, "{screen:#?}");
    let looking = screen
        .iter()
        .position(|l| l.contains("looking for holders"));
    let failed = screen
        .iter()
        .position(|l| l.contains("no-such-file: failed"));
    assert!(looking < failed, "{screen:#?}");
    // A log line (node 2 leaving) lands above the prompt, which stays whole.
    cluster.kill9(2);
    let screen = tmux.wait_screen("node 2's departure logged", HANG_GUARD, |s| {
        s.iter()
            .any(|l| l.contains("Node 2") && l.contains("INFO") && !l.starts_with('>'))
            && s.iter()
                .rev()
                .find(|l| !l.trim().is_empty())
                .is_some_and(|l| l.trim_end() == ">")
    });
    // (rustyline writes straight to the terminal in the instant between two reads, so a
    // log line can still rarely share the prompt's line; not asserted here.)
    let _ = screen;
    tmux.type_text("help");
    tmux.keys(&["Enter"]);
    tmux.wait_screen("help", HANG_GUARD, |s| count(s, "get NAME") == 1);
    tmux.type_text("quit");
    tmux.keys(&["Enter"]);
    let deadline = Instant::now() + 3 * HANG_GUARD;
    while tmux.alive() {
        assert!(Instant::now() < deadline, "quit did not end the node");
        std::thread::sleep(Duration::from_millis(50));
    }
}
