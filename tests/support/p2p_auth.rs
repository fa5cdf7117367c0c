//! Test helpers for p2p clusters with keys: a cluster made by `p2p-node init-cluster`
//! (its printed commands, plus a directory and index log per test), TCP relays that
//! record or tamper with what they forward, and Noise clients speaking for a stranger or
//! a member from any loopback source address.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::p2p::{wait_agreement, LeaderLine, TempRoot};
use crate::process::{bin_path, Proc};

/// The Noise prologue p2p-node binds its handshakes to (wire protocol name and version).
pub const PROLOGUE: &[u8] = b"p2p-node 2 noise link";

/// `n` consecutive free ports on 127.0.0.1 (probed by binding them all at once).
pub fn free_port_run(n: u16) -> u16 {
    let mut seed = std::process::id() as u64 ^ Instant::now().elapsed().as_nanos() as u64;
    for _ in 0..1000 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let base = 20_000 + (seed >> 33) as u16 % 40_000;
        let bound: Vec<TcpListener> = (0..n)
            .filter_map(|i| TcpListener::bind(("127.0.0.1", base + i)).ok())
            .collect();
        if bound.len() == n as usize {
            return base;
        }
    }
    panic!("no run of {n} free ports");
}

/// A cluster of nodes with keys, written by `p2p-node init-cluster`.
pub struct KeyedCluster {
    pub nodes: BTreeMap<u32, Proc>,
    pub root: TempRoot,
    pub base_port: u16,
    /// The start command init-cluster printed for each node (without the program name).
    pub commands: BTreeMap<u32, Vec<String>>,
    /// Extra flags per node (e.g. `--listen` behind a relay).
    pub extra: BTreeMap<u32, Vec<String>>,
}

impl KeyedCluster {
    /// Runs `init-cluster ROOT/keys --nodes n` on free ports; each node's directory holds
    /// `from-node-N.txt`.
    pub fn init(tag: &str, n: u32) -> KeyedCluster {
        let root = TempRoot::new(tag);
        let base_port = free_port_run(n as u16);
        let keys = root.0.join("keys");
        let output = Command::new(bin_path("p2p-node"))
            .args(["init-cluster", &keys.display().to_string()])
            .args([
                "--nodes",
                &n.to_string(),
                "--base-port",
                &base_port.to_string(),
            ])
            .output()
            .expect("run init-cluster");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "init-cluster failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let mut commands = BTreeMap::new();
        for line in stdout.lines() {
            let words: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
            assert_eq!(
                words.first().map(String::as_str),
                Some("p2p-node"),
                "{line}"
            );
            let id: u32 = words[2].parse().expect("--id N");
            commands.insert(id, words[1..].to_vec());
        }
        assert_eq!(
            commands.len(),
            n as usize,
            "one command per node:\n{stdout}"
        );
        for id in 1..=n {
            let dir = root.0.join(format!("Node{id}"));
            std::fs::create_dir_all(&dir).expect("node dir");
            std::fs::write(
                dir.join(format!("from-node-{id}.txt")),
                format!("node {id}\n"),
            )
            .expect("seed file");
        }
        KeyedCluster {
            nodes: BTreeMap::new(),
            root,
            base_port,
            commands,
            extra: BTreeMap::new(),
        }
    }

    pub fn dir(&self, id: u32) -> PathBuf {
        self.root.0.join(format!("Node{id}"))
    }

    pub fn cluster_file(&self) -> PathBuf {
        self.root.0.join("keys").join("cluster.toml")
    }

    pub fn key_file(&self, id: u32) -> PathBuf {
        self.root.0.join("keys").join(format!("node{id}.key"))
    }

    pub fn port(&self, id: u32) -> u16 {
        self.base_port + id as u16 - 1
    }

    pub fn log_path(&self) -> PathBuf {
        self.root.0.join("Peer_files.log")
    }

    pub fn read_log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Node `id`'s public key, as cluster.toml lists it.
    pub fn public_key(&self, id: u32) -> String {
        let text = std::fs::read_to_string(self.cluster_file()).expect("cluster.toml");
        let block = text
            .split("[[node]]")
            .find(|b| b.contains(&format!("id = {id}\n")))
            .expect("node block");
        let line = block
            .lines()
            .find(|l| l.starts_with("public_key = "))
            .expect("public_key line");
        line.trim_start_matches("public_key = ")
            .trim_matches('"')
            .to_owned()
    }

    /// Starts node `id` with init-cluster's command, its directory and the shared log.
    pub fn start(&mut self, id: u32) -> &Proc {
        let mut cmd = Command::new(bin_path("p2p-node"));
        cmd.args(&self.commands[&id]);
        cmd.args(["--dir", &self.dir(id).display().to_string()]);
        cmd.args(["--index-log", &self.log_path().display().to_string()]);
        if let Some(extra) = self.extra.get(&id) {
            cmd.args(extra);
        }
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

    pub fn node_mut(&mut self, id: u32) -> &mut Proc {
        self.nodes.get_mut(&id).expect("node running")
    }

    pub fn wait_agreement(&self, leader: u32, timeout: Duration) -> Option<Vec<LeaderLine>> {
        let procs: Vec<&Proc> = self.nodes.values().collect();
        wait_agreement(&procs, leader, timeout)
    }

    pub fn wait_log(&self, timeout: Duration, ok: impl Fn(&str) -> bool) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let text = self.read_log();
            if ok(&text) {
                return Some(text);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn logs(&self) -> String {
        self.nodes
            .iter()
            .map(|(id, p)| format!("--- node {id} ---\n{}", p.stderr_text()))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Runs `p2p-node keygen FILE`; returns the public key it printed.
pub fn keygen(file: &std::path::Path) -> String {
    let output = Command::new(bin_path("p2p-node"))
        .args(["keygen", &file.display().to_string()])
        .output()
        .expect("run keygen");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert_eq!(text.lines().count(), 1, "one line: {text:?}");
    text.trim().to_owned()
}

/// What a relay does to the bytes it forwards from the target back to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tamper {
    /// Forward unchanged.
    None,
    /// Flip one bit of the byte at this offset of each connection's target-to-client
    /// stream (only connections that carry that much: bulk data, not control links).
    FlipAt(u64),
}

/// A TCP relay on 127.0.0.1 that forwards every connection to `target`, records every
/// byte it forwards (both directions) and may tamper with them.
pub struct Relay {
    pub port: u16,
    pub recording: Arc<Mutex<Vec<u8>>>,
    pub flipped: Arc<AtomicU64>,
    tamper: Arc<Mutex<Tamper>>,
    stop: Arc<AtomicBool>,
}

impl Relay {
    pub fn start(port: u16, target: SocketAddr) -> Relay {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind relay");
        listener.set_nonblocking(true).expect("nonblocking");
        let relay = Relay {
            port,
            recording: Arc::default(),
            flipped: Arc::default(),
            tamper: Arc::new(Mutex::new(Tamper::None)),
            stop: Arc::default(),
        };
        let (recording, tamper, stop, flipped) = (
            relay.recording.clone(),
            relay.tamper.clone(),
            relay.stop.clone(),
            relay.flipped.clone(),
        );
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let client = match listener.accept() {
                    Ok((client, _)) => client,
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                };
                let _ = client.set_nonblocking(false);
                let Ok(server) = TcpStream::connect(target) else {
                    continue;
                };
                let mode = *tamper.lock().expect("tamper");
                pipe(
                    client.try_clone().expect("clone"),
                    server.try_clone().expect("clone"),
                    recording.clone(),
                    Tamper::None,
                    flipped.clone(),
                );
                pipe(server, client, recording.clone(), mode, flipped.clone());
            }
        });
        relay
    }

    pub fn set_tamper(&self, mode: Tamper) {
        *self.tamper.lock().expect("tamper") = mode;
    }

    pub fn recorded(&self) -> Vec<u8> {
        self.recording.lock().expect("recording").clone()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Copies `from` to `to` on a thread of its own, appending what passes to `recording`.
fn pipe(
    mut from: TcpStream,
    mut to: TcpStream,
    recording: Arc<Mutex<Vec<u8>>>,
    mode: Tamper,
    flipped: Arc<AtomicU64>,
) {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        let mut offset = 0u64;
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if let Tamper::FlipAt(at) = mode {
                if at >= offset && at < offset + n as u64 {
                    buf[(at - offset) as usize] ^= 0x01;
                    flipped.fetch_add(1, Ordering::SeqCst);
                }
            }
            offset += n as u64;
            recording
                .lock()
                .expect("recording")
                .extend_from_slice(&buf[..n]);
            if to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
        let _ = from.shutdown(Shutdown::Read);
    });
}

/// 127.0.0.N, a loopback source address other than the nodes' own 127.0.0.1.
pub fn loopback(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, n))
}

/// A TCP connection to `port` on 127.0.0.1 from source address `source`.
pub async fn connect_from(source: IpAddr, port: u16) -> std::io::Result<tokio::net::TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source, 0))?;
    socket
        .connect(SocketAddr::from(([127, 0, 0, 1], port)))
        .await
}
