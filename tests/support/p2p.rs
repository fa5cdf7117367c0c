//! Test helpers used only by the p2p end-to-end tests: a cluster of real `p2p-node`
//! processes on OS-chosen loopback ports, each with its own shared directory under a
//! throw-away root, and readers for their logs and the leader's `Peer_files.log`.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::netns::Netns;
use crate::process::{bin_path, Proc};

/// The file in each node's directory where it keeps the highest election term it saw.
pub const TERM_FILE: &str = ".p2p-node.term";

/// Guards against hangs only; behaviour is asserted separately.
pub const HANG_GUARD: Duration = Duration::from_secs(20);

/// `n` distinct free TCP ports on 127.0.0.1 (all bound at once, then released).
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local addr").port())
        .collect()
}

/// A netutil hello frame for protocol `p2p-node` version 2, written out by hand so the
/// tests depend on the wire format, not on the crate.
pub fn hello_frame() -> Vec<u8> {
    let mut payload = b"NETUTIL1".to_vec();
    payload.push(8);
    payload.extend_from_slice(b"p2p-node");
    payload.push(2);
    frame(&payload)
}

/// An unsigned integer as postcard writes it (LEB128 varint).
pub fn varint(mut n: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

/// `Message::Hello { id, term }`, postcard-encoded (variant 0).
pub fn hello_message(id: u32, term: u64) -> Vec<u8> {
    let mut out = vec![0];
    out.extend(varint(u64::from(id)));
    out.extend(varint(term));
    out
}

/// `Message::Bully(ElectionMsg)` with election variant `kind` (0 Election, 1 Alive,
/// 2 Coordinator, 3 Heartbeat, 4 HeartbeatAck) and `term`, postcard-encoded.
pub fn bully_message(kind: u8, term: u64) -> Vec<u8> {
    let mut out = vec![2, kind];
    out.extend(varint(term));
    out
}

/// `payload` behind netutil's 4-byte big-endian length prefix.
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(payload);
    out
}

/// The next frame's payload; None when the stream closed (or the read timed out).
pub fn read_frame(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).ok()?;
    let mut payload = vec![0u8; u32::from_be_bytes(len) as usize];
    stream.read_exact(&mut payload).ok()?;
    Some(payload)
}

/// `Message::FileList` of complete files `(name, size, identity)`, postcard-encoded
/// (variant 3). Names go on the wire as given, hostile ones included.
pub fn file_list_message(files: &[(&str, u64, [u8; 32])]) -> Vec<u8> {
    let mut out = vec![3];
    out.extend(varint(files.len() as u64));
    for (name, size, hash) in files {
        out.extend(varint(name.len() as u64));
        out.extend_from_slice(name.as_bytes());
        out.extend(varint(*size));
        out.extend_from_slice(hash);
        out.push(0);
    }
    out
}

/// A cluster member that is not a p2p-node: it dials a node of an unauthenticated
/// (loopback) cluster as node `id`, says Hello and acknowledges heartbeats from a thread
/// of its own, so the node keeps it as a live follower while the test sends what it likes.
pub struct FakeMember {
    stream: TcpStream,
    closed: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl FakeMember {
    /// Dials `port` on 127.0.0.1 as node `id` in term 0; panics if the node does not
    /// answer with its own Hello.
    pub fn join(port: u16, id: u32) -> FakeMember {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("dial the node");
        stream.set_read_timeout(Some(HANG_GUARD)).expect("timeout");
        stream.write_all(&hello_frame()).expect("netutil hello");
        stream
            .write_all(&frame(&hello_message(id, 0)))
            .expect("Hello");
        let _their_netutil_hello = read_frame(&mut stream).expect("netutil hello back");
        let their_hello = read_frame(&mut stream).expect("the node's Hello");
        assert_eq!(their_hello[0], 0, "Hello is variant 0: {their_hello:?}");
        let closed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut reader = stream.try_clone().expect("clone the stream");
        let flag = closed.clone();
        std::thread::spawn(move || {
            while let Some(msg) = read_frame(&mut reader) {
                // Heartbeat (Bully variant 3) → HeartbeatAck (4) with the same term.
                if msg.len() >= 2 && msg[..2] == [2, 3] {
                    let ack = [&[2, 4], &msg[2..]].concat();
                    if reader.write_all(&frame(&ack)).is_err() {
                        break;
                    }
                }
            }
            flag.store(true, Ordering::SeqCst);
        });
        FakeMember { stream, closed }
    }

    /// Sends one message (a postcard payload; framed here).
    pub fn send(&mut self, payload: &[u8]) {
        self.stream
            .write_all(&frame(payload))
            .expect("send to the node");
    }

    /// Waits until the node closed the link; false after `timeout`.
    pub fn wait_closed(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while !self.closed.load(Ordering::SeqCst) {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }
}

/// Calls `read` every 10 ms until it returns something `ok` accepts; None after `timeout`.
fn poll_until(
    timeout: Duration,
    read: impl Fn() -> String,
    ok: impl Fn(&str) -> bool,
) -> Option<String> {
    let deadline = Instant::now() + timeout;
    loop {
        let text = read();
        if ok(&text) {
            return Some(text);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Creates `NodeN` under `root` for ids `1..=n`, each holding its seed file
/// `from-node-N.txt`.
fn seed_dirs(root: &Path, n: u32) {
    for id in 1..=n {
        let dir = root.join(format!("Node{id}"));
        std::fs::create_dir_all(&dir).expect("node dir");
        std::fs::write(
            dir.join(format!("from-node-{id}.txt")),
            format!("node {id}\n"),
        )
        .expect("seed file");
    }
}

/// Every node's stderr, for failure messages.
fn all_logs(nodes: &BTreeMap<u32, Proc>) -> String {
    nodes
        .iter()
        .map(|(id, p)| format!("--- node {id} ---\n{}", p.stderr_text()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A cluster's root directory, removed on drop.
pub use crate::temp::TempDir as TempRoot;

/// What a node's log says about the leader: the last `Leader elected` line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LeaderLine {
    pub leader: u32,
    pub term: u64,
    /// Seconds since midnight UTC, from the log line's timestamp.
    pub at: f64,
}

/// Parses `2026-11-26T08:38:12.993374Z  INFO Leader elected: Node 1 (term 6)`.
pub fn parse_leader_line(line: &str) -> Option<LeaderLine> {
    let rest = line.split("Leader elected: Node ").nth(1)?;
    let (leader, rest) = rest.split_once(" (term ")?;
    let term = rest.split(')').next()?;
    Some(LeaderLine {
        leader: leader.trim().parse().ok()?,
        term: term.trim().parse().ok()?,
        at: log_time(line)?,
    })
}

/// The time of day, in seconds, at the start of a log line.
pub fn log_time(line: &str) -> Option<f64> {
    let stamp = line.split_whitespace().next()?;
    let time = stamp.split('T').nth(1)?.trim_end_matches('Z');
    let mut parts = time.split(':');
    let h: f64 = parts.next()?.parse().ok()?;
    let m: f64 = parts.next()?.parse().ok()?;
    let s: f64 = parts.next()?.parse().ok()?;
    Some(h * 3600.0 + m * 60.0 + s)
}

/// The last `Leader elected` line a node logged.
pub fn last_leader(proc: &Proc) -> Option<LeaderLine> {
    proc.stderr_lines()
        .iter()
        .rev()
        .find_map(|l| parse_leader_line(l))
}

/// Waits until the last leader line of every one of `procs` names `leader` with one term;
/// returns the lines, or None after `timeout`.
pub fn wait_agreement(procs: &[&Proc], leader: u32, timeout: Duration) -> Option<Vec<LeaderLine>> {
    let deadline = Instant::now() + timeout;
    loop {
        let lines: Vec<Option<LeaderLine>> = procs.iter().map(|p| last_leader(p)).collect();
        let first_term = lines.first().copied().flatten().map(|l| l.term);
        let agreed = lines
            .iter()
            .all(|l| l.is_some_and(|l| l.leader == leader && Some(l.term) == first_term));
        if agreed {
            return Some(lines.into_iter().flatten().collect());
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A cluster of `p2p-node` processes sharing one `Peer_files.log`.
pub struct Cluster {
    pub root: TempRoot,
    pub ports: BTreeMap<u32, u16>,
    pub nodes: BTreeMap<u32, Proc>,
    pub extra_args: Vec<String>,
}

impl Cluster {
    /// Ids `1..=n` on fresh ports; each node's directory holds `from-node-N.txt`.
    pub fn new(tag: &str, n: u32) -> Cluster {
        let root = TempRoot::new(tag);
        let ports: BTreeMap<u32, u16> = (1..=n).zip(free_ports(n as usize)).collect();
        seed_dirs(&root.0, n);
        Cluster {
            root,
            ports,
            nodes: BTreeMap::new(),
            extra_args: Vec::new(),
        }
    }

    pub fn dir(&self, id: u32) -> PathBuf {
        self.root.0.join(format!("Node{id}"))
    }

    pub fn log_path(&self) -> PathBuf {
        self.root.0.join("Peer_files.log")
    }

    pub fn args(&self, id: u32) -> Vec<String> {
        let mut args = vec!["--id".to_owned(), id.to_string()];
        for (peer, port) in &self.ports {
            args.push("--peer".into());
            args.push(format!("{peer}=127.0.0.1:{port}"));
        }
        args.push("--dir".into());
        args.push(self.dir(id).display().to_string());
        args.push("--index-log".into());
        args.push(self.log_path().display().to_string());
        args.extend(self.extra_args.iter().cloned());
        args
    }

    /// Starts node `id` (replacing a dead one) and waits until it listens.
    pub fn start(&mut self, id: u32) -> &Proc {
        self.start_with(id, &[])
    }

    /// Starts node `id` with extra flags of its own.
    pub fn start_with(&mut self, id: u32, extra: &[&str]) -> &Proc {
        let mut cmd = Command::new(bin_path("p2p-node"));
        cmd.args(self.args(id));
        cmd.args(extra);
        let proc = Proc::spawn(&format!("node{id}"), cmd);
        proc.listening_port();
        self.nodes.insert(id, proc);
        &self.nodes[&id]
    }

    pub fn kill9(&mut self, id: u32) {
        if let Some(mut proc) = self.nodes.remove(&id) {
            proc.kill9();
        }
    }

    pub fn node(&self, id: u32) -> &Proc {
        &self.nodes[&id]
    }

    /// The last `Leader elected` line of node `id`.
    pub fn leader_of(&self, id: u32) -> Option<LeaderLine> {
        last_leader(&self.nodes[&id])
    }

    /// Waits until every running node's last leader line names `leader` with one term;
    /// returns the lines, or None after `timeout`.
    pub fn wait_agreement(&self, leader: u32, timeout: Duration) -> Option<Vec<LeaderLine>> {
        let procs: Vec<&Proc> = self.nodes.values().collect();
        wait_agreement(&procs, leader, timeout)
    }

    /// Every node's stderr, for failure messages.
    pub fn logs(&self) -> String {
        all_logs(&self.nodes)
    }

    /// Checks every 10 ms for `period` that every running node's last leader line names
    /// `leader` in `term`; Err says what changed (an observation window, not a wait).
    pub fn holds_agreement(&self, leader: u32, term: u64, period: Duration) -> Result<(), String> {
        let until = Instant::now() + period;
        while Instant::now() < until {
            for (id, proc) in &self.nodes {
                let last = last_leader(proc);
                if !last.is_some_and(|l| l.leader == leader && l.term == term) {
                    return Err(format!("node {id}'s last leader line is now {last:?}"));
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    /// Waits until the running nodes form a star around `leader`: the leader is linked to
    /// every follower and each follower to the leader only, judged by the last
    /// `connected with` / `disconnected from` line each node logged about each other node.
    /// Err names the first link that is wrong when `timeout` ran out.
    pub fn wait_star(&self, leader: u32, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            let wrong = self.star_violation(leader);
            match wrong {
                None => return Ok(()),
                Some(why) if Instant::now() >= deadline => return Err(why),
                Some(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    /// The first link that makes the running nodes not a star around `leader`.
    fn star_violation(&self, leader: u32) -> Option<String> {
        for (&a, proc) in &self.nodes {
            for &b in self.nodes.keys().filter(|&&b| b != a) {
                let want = a == leader || b == leader;
                if linked(proc, a, b) != want {
                    let state = if want { "not linked" } else { "linked" };
                    return Some(format!("Node {a} is {state} to Node {b}"));
                }
            }
        }
        None
    }

    pub fn read_log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Waits until `Peer_files.log` satisfies `ok`; returns its text, or None on timeout.
    pub fn wait_log(&self, timeout: Duration, ok: impl Fn(&str) -> bool) -> Option<String> {
        poll_until(timeout, || self.read_log(), ok)
    }
}

/// Whether node `a` (running as `proc`) is linked to node `b` now, by the last line it
/// logged about that link.
pub fn linked(proc: &Proc, a: u32, b: u32) -> bool {
    let up = format!("Node {a} connected with Node {b}.");
    let down = format!("Node {a} disconnected from Node {b}.");
    proc.stderr_lines()
        .iter()
        .rev()
        .find_map(|l| {
            if l.contains(&up) {
                Some(true)
            } else if l.contains(&down) {
                Some(false)
            } else {
                None
            }
        })
        .unwrap_or(false)
}

/// True when the index log lists exactly the nodes in `ids` (the first as leader), each
/// with its seed file.
pub fn log_lists(text: &str, ids: &[u32]) -> bool {
    let Some((&leader, _)) = ids.split_first() else {
        return false;
    };
    let headers = text.lines().filter(|l| l.ends_with(" files:")).count();
    text.starts_with(&format!("Leader Node {leader} files:\n"))
        && headers == ids.len()
        && ids.iter().all(|id| {
            (id == &leader || text.contains(&format!("\nNode {id} files:\n")))
                && text.contains(&format!("  from-node-{id}.txt ("))
        })
}

/// Nodes as hosts in their own network namespaces (10.77.0.ID/24), each joined by a veth
/// pair to a bridge in a hub namespace, so a test can cut one node's link (link down on
/// the bridge side) and restore it. Each node writes its own index log. Needs root.
pub struct NsCluster {
    // Processes first: they must die before their namespaces are deleted.
    pub nodes: BTreeMap<u32, Proc>,
    pub hosts: BTreeMap<u32, Netns>,
    pub hub: Netns,
    pub root: TempRoot,
    pub n: u32,
    /// Each node's public key: addresses outside loopback need a cluster with keys.
    pub keys: BTreeMap<u32, String>,
}

impl NsCluster {
    /// Panics with the reason when namespaces cannot be made here.
    pub fn new(tag: &str, n: u32) -> NsCluster {
        let hub = Netns::new(&format!("{tag}-hub"));
        hub.ip(&["link", "add", "br0", "type", "bridge", "forward_delay", "0"]);
        hub.ip(&["link", "set", "br0", "up"]);
        let mut hosts = BTreeMap::new();
        for id in 1..=n {
            let ns = Netns::new(&format!("{tag}-{id}"));
            let side = format!("hv{id}");
            hub.ip(&[
                "link", "add", &side, "type", "veth", "peer", "name", "eth0", "netns", &ns.name,
            ]);
            hub.ip(&["link", "set", &side, "master", "br0"]);
            hub.ip(&["link", "set", &side, "up"]);
            ns.ip(&["addr", "add", &format!("10.77.0.{id}/24"), "dev", "eth0"]);
            ns.ip(&["link", "set", "eth0", "up"]);
            hosts.insert(id, ns);
        }
        let root = TempRoot::new(tag);
        seed_dirs(&root.0, n);
        let keys = (1..=n)
            .map(|id| {
                (
                    id,
                    crate::p2p_auth::keygen(&root.0.join(format!("node{id}.key"))),
                )
            })
            .collect();
        NsCluster {
            nodes: BTreeMap::new(),
            hosts,
            hub,
            root,
            n,
            keys,
        }
    }

    pub fn log_path(&self, id: u32) -> PathBuf {
        self.root.0.join(format!("Node{id}.log"))
    }

    pub fn read_log(&self, id: u32) -> String {
        std::fs::read_to_string(self.log_path(id)).unwrap_or_default()
    }

    /// Waits until node `id`'s index log satisfies `ok`.
    pub fn wait_log(
        &self,
        id: u32,
        timeout: Duration,
        ok: impl Fn(&str) -> bool,
    ) -> Option<String> {
        poll_until(timeout, || self.read_log(id), ok)
    }

    pub fn start(&mut self, id: u32) {
        let mut args = vec!["--id".to_owned(), id.to_string()];
        for peer in 1..=self.n {
            args.push("--peer".into());
            args.push(format!("{peer}=10.77.0.{peer}:9000={}", self.keys[&peer]));
        }
        args.push("--key".into());
        args.push(
            self.root
                .0
                .join(format!("node{id}.key"))
                .display()
                .to_string(),
        );
        args.push("--dir".into());
        args.push(self.root.0.join(format!("Node{id}")).display().to_string());
        args.push("--index-log".into());
        args.push(self.log_path(id).display().to_string());
        let bin = bin_path("p2p-node").display().to_string();
        let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let cmd = self.hosts[&id].command(&bin, &arg_refs);
        let proc = Proc::spawn(&format!("node{id}"), cmd);
        proc.listening_port();
        self.nodes.insert(id, proc);
    }

    /// Link down on the bridge side of node `id`'s cable.
    pub fn cut(&self, id: u32) {
        self.hub.ip(&["link", "set", &format!("hv{id}"), "down"]);
    }

    pub fn restore(&self, id: u32) {
        self.hub.ip(&["link", "set", &format!("hv{id}"), "up"]);
    }

    pub fn procs(&self, ids: &[u32]) -> Vec<&Proc> {
        ids.iter().map(|id| &self.nodes[id]).collect()
    }

    pub fn logs(&self) -> String {
        all_logs(&self.nodes)
    }
}

// ---- Swarm downloads (tests/swarm.rs) ----

/// Writes `size` bytes of seeded pseudo-random data to `path` (xorshift, fast in debug).
pub fn write_random(path: &Path, size: usize, seed: u64) {
    let mut state = seed.wrapping_mul(2).wrapping_add(1);
    let mut data = Vec::with_capacity(size);
    while data.len() < size {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        data.extend_from_slice(&state.to_le_bytes());
    }
    data.truncate(size);
    std::fs::write(path, data).expect("write test file");
}

/// True when both files exist and hold the same bytes.
pub fn same_content(a: &Path, b: &Path) -> bool {
    match (std::fs::read(a), std::fs::read(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// How many nodes the index log lists as holding `name` completely with `size` bytes.
pub fn holders_in_log(text: &str, name: &str, size: u64) -> usize {
    let prefix = format!("  {name} ({size} bytes, id ");
    text.lines()
        .filter(|l| l.starts_with(&prefix) && !l.contains("partial"))
        .count()
}

/// A download's summary line, parsed: pieces fetched and resumed, bytes per peer.
#[derive(Debug, Clone, PartialEq)]
pub struct GetSummary {
    pub line: String,
    pub seconds: f64,
    pub fetched: u64,
    pub resumed: u64,
    pub rejected: u64,
    pub per_peer: BTreeMap<u32, u64>,
}

/// Parses `get N: complete, B bytes (..) in S s (..); pieces: F fetched, R resumed, X
/// rejected, D duplicate; received: Node 2 123 B (..), Node 3 ..., no peer dropped`.
pub fn parse_summary(line: &str) -> Option<GetSummary> {
    let seconds = line
        .split(" in ")
        .nth(1)?
        .split(" s ")
        .next()?
        .parse()
        .ok()?;
    let pieces = line.split("pieces: ").nth(1)?;
    let number_before = |word: &str| -> Option<u64> {
        let head = pieces.split(word).next()?;
        head.trim_end().rsplit(' ').next()?.parse().ok()
    };
    let mut per_peer = BTreeMap::new();
    let received = line.split("received:").nth(1)?;
    for part in received.split(',') {
        if let Some(rest) = part.trim().strip_prefix("Node ") {
            let mut words = rest.split_whitespace();
            let id = words.next()?.parse().ok()?;
            let bytes = words.next()?.parse().ok()?;
            per_peer.insert(id, bytes);
        }
    }
    Some(GetSummary {
        line: line.to_owned(),
        seconds,
        fetched: number_before(" fetched")?,
        resumed: number_before(" resumed")?,
        rejected: number_before(" rejected")?,
        per_peer,
    })
}

/// Like [`get_file`], but types `get NAME` again while the answer is that the index does
/// not list NAME yet: a node that just took over as leader learns the others' file lists a
/// moment after it is elected.
pub fn get_file_once_indexed(node: &mut Proc, name: &str, timeout: Duration) -> Option<GetSummary> {
    let complete = format!("get {name}: complete");
    let not_indexed = format!("get {name}: failed: {name:?} is not in the cluster index");
    let count = |node: &Proc, needle: &str| {
        node.stderr_lines()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    };
    let deadline = Instant::now() + timeout;
    loop {
        let (done_before, missed_before) = (count(node, &complete), count(node, &not_indexed));
        node.write_stdin(&format!("get {name}\n"));
        loop {
            if count(node, &complete) > done_before {
                let line = node.wait_for_nth(&complete, done_before + 1, timeout)?;
                return parse_summary(line.split("INFO ").nth(1).unwrap_or(&line));
            }
            if count(node, &not_indexed) > missed_before {
                break;
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Types `get NAME` on `node`'s console and waits for its summary (None: it failed or
/// hung; the log says why).
pub fn get_file(node: &mut Proc, name: &str, timeout: Duration) -> Option<GetSummary> {
    let before = node
        .stderr_lines()
        .iter()
        .filter(|l| l.contains(&format!("get {name}: complete")))
        .count();
    node.write_stdin(&format!("get {name}\n"));
    let line = node.wait_for_nth(&format!("get {name}: complete"), before + 1, timeout)?;
    let summary = line.split("INFO ").nth(1).unwrap_or(&line);
    parse_summary(summary)
}
