//! End-to-end tests of p2p-node on a hostile network (real processes, real sockets): only
//! nodes proving a listed key take part, every link is encrypted, and strangers cost
//! little. Clusters come from `p2p-node init-cluster`; attackers are this test, speaking
//! plaintext or Noise with keys of its own from other loopback addresses.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use e2e::bin_path;
use e2e::p2p::{
    frame, get_file, hello_frame, holders_in_log, log_lists, log_time, same_content, write_random,
    HANG_GUARD,
};
use e2e::p2p_auth::{connect_from, keygen, loopback, KeyedCluster, Relay, Tamper, PROLOGUE};
use e2e::Proc;
use netutil::noise::{self, PublicKey, Role, SecretKey};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MIB: usize = 1 << 20;
const GET_GUARD: Duration = Duration::from_secs(60);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Starts nodes 1..=n of `cluster` and waits for leader 1 and a full index.
fn start_all(cluster: &mut KeyedCluster, n: u32) {
    for id in 1..=n {
        cluster.start(id);
    }
    assert!(
        cluster.wait_agreement(1, HANG_GUARD).is_some(),
        "{}",
        cluster.logs()
    );
    let ids: Vec<u32> = (1..=n).collect();
    assert!(
        cluster
            .wait_log(HANG_GUARD, |t| log_lists(t, &ids))
            .is_some(),
        "{}\n{}",
        cluster.read_log(),
        cluster.logs()
    );
}

/// Node `id`'s log lines that contain `needle`.
fn count_lines(node: &Proc, needle: &str) -> usize {
    node.stderr_lines()
        .iter()
        .filter(|l| l.contains(needle))
        .count()
}

/// A Noise client with key `key` from `source`, claiming to be node `claim`: handshake
/// (expecting `expect`), netutil hello, `Hello { id: claim, term: 0 }`; returns what the
/// node sent back after the handshake before closing (None: the connection failed).
async fn claim_id(
    source: std::net::IpAddr,
    port: u16,
    key: &SecretKey,
    expect: PublicKey,
    claim: u8,
) -> Option<Vec<u8>> {
    let stream = connect_from(source, port).await.ok()?;
    let role = Role::Initiator {
        expect: Some(expect),
    };
    let mut secure = noise::secure_tcp(stream, role, key, PROLOGUE).await.ok()?;
    let mut hello = hello_frame();
    hello.extend(frame(&[0, claim, 0]));
    let _ = secure.write_all(&hello).await;
    let _ = secure.flush().await;
    let mut back = Vec::new();
    let read = secure.read_to_end(&mut back);
    let _ = tokio::time::timeout(HANG_GUARD, read).await;
    Some(back)
}

/// The payloads of the length-prefixed frames in `bytes`.
fn split_frames(mut bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    while bytes.len() >= 4 {
        let len = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
        if bytes.len() < 4 + len {
            break;
        }
        frames.push(bytes[4..4 + len].to_vec());
        bytes = &bytes[4 + len..];
    }
    frames
}

#[test]
fn a_fourth_process_with_a_fresh_key_claiming_id_2_is_refused_and_nothing_changes() {
    let mut cluster = KeyedCluster::init("auth-fake", 3);
    start_all(&mut cluster, 3);
    let before = cluster.wait_agreement(1, HANG_GUARD).unwrap();
    let index_before = cluster.read_log();

    // A real p2p-node with a fresh key, claiming id 2 from 127.0.0.2: its own cluster
    // list has the real nodes 1 and 3 and itself as node 2.
    let fake_key = cluster.root.0.join("fake.key");
    let fake_public = keygen(&fake_key);
    let fake_dir = cluster.root.0.join("fake");
    std::fs::create_dir_all(&fake_dir).unwrap();
    std::fs::write(fake_dir.join("planted.txt"), "fake\n").unwrap();
    let fake_port = e2e::p2p::free_ports(1)[0];
    let mut cmd = Command::new(bin_path("p2p-node"));
    cmd.args(["--id", "2", "--key", &fake_key.display().to_string()]);
    for (id, addr, key) in [
        (
            1,
            format!("127.0.0.1:{}", cluster.port(1)),
            cluster.public_key(1),
        ),
        (2, format!("127.0.0.2:{fake_port}"), fake_public.clone()),
        (
            3,
            format!("127.0.0.1:{}", cluster.port(3)),
            cluster.public_key(3),
        ),
    ] {
        cmd.args(["--peer", &format!("{id}={addr}={key}")]);
    }
    cmd.args(["--dir", &fake_dir.display().to_string()]);
    cmd.args([
        "--index-log",
        &cluster.root.0.join("fake.log").display().to_string(),
    ]);
    let fake = Proc::spawn("fake2", cmd);
    fake.listening_port();

    // Nodes 1 and 3 refuse it at the handshake, naming its key; it gets nowhere.
    for id in [1, 3] {
        let refused = cluster.node(id).wait_for(
            &format!("proved key {fake_public}, which is not a member's key"),
            HANG_GUARD,
        );
        assert!(
            refused.is_some(),
            "node {id}:\n{}\n--- fake ---\n{}",
            cluster.logs(),
            fake.stderr_text()
        );
    }
    // A member's key claiming another member's id: refused after the handshake and logged
    // with the peer's address (here node 3's own key, from 127.0.0.2, saying it is node 2).
    let node3_key = SecretKey::read_file(&cluster.key_file(3)).unwrap();
    let node1_public: PublicKey = cluster.public_key(1).parse().unwrap();
    let answer = runtime()
        .block_on(claim_id(
            loopback(2),
            cluster.port(1),
            &node3_key,
            node1_public,
            2,
        ))
        .expect("the handshake itself succeeds with a member's key");
    // Its netutil hello, then one Refused (variant 1), then the close: no Hello, no index.
    let frames = split_frames(&answer);
    assert_eq!(frames.len(), 2, "{frames:?}");
    assert_eq!(
        frames[1][0],
        1,
        "Refused: {:?}",
        String::from_utf8_lossy(&frames[1])
    );
    let refused = cluster
        .node(1)
        .wait_for("says it is node 2 but proved node 3's key", HANG_GUARD)
        .unwrap_or_else(|| panic!("{}", cluster.logs()));
    assert!(
        refused.contains("127.0.0.2:"),
        "logged with the address: {refused}"
    );

    // Nothing changed: same leader and terms everywhere, same index, no link lost.
    std::thread::sleep(Duration::from_millis(1500));
    let after = cluster.wait_agreement(1, HANG_GUARD).unwrap();
    assert_eq!(before, after, "{}", cluster.logs());
    assert_eq!(index_before, cluster.read_log());
    assert!(!cluster.read_log().contains("planted.txt"));
    for id in [1, 2, 3] {
        assert_eq!(
            count_lines(cluster.node(id), "lost its leader"),
            0,
            "{}",
            cluster.logs()
        );
    }
    assert_eq!(
        count_lines(cluster.node(1), "disconnected from Node"),
        0,
        "{}",
        cluster.logs()
    );
}

#[test]
fn a_plaintext_client_is_closed_without_effect_and_gets_no_piece() {
    let mut cluster = KeyedCluster::init("auth-plain", 3);
    write_random(&cluster.dir(2).join("secret.bin"), 2 * MIB, 7);
    start_all(&mut cluster, 3);
    let text = cluster
        .wait_log(HANG_GUARD, |t| {
            holders_in_log(t, "secret.bin", 2 * MIB as u64) == 1
        })
        .unwrap();
    let identity = text
        .lines()
        .find(|l| l.contains("secret.bin ("))
        .and_then(|l| l.split("id ").nth(1))
        .map(|h| h.trim_end_matches(')').to_owned())
        .unwrap();
    let hash: Vec<u8> = (0..32)
        .map(|i| u8::from_str_radix(&identity[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    let before = cluster.wait_agreement(1, HANG_GUARD).unwrap();
    let port = cluster.port(2);

    // The old plaintext Hello (as node 4), and a plaintext Open for the file's identity:
    // closed without a byte in answer.
    let mut open = vec![6u8];
    open.extend_from_slice(&hash);
    for (what, message) in [("Hello", vec![0u8, 4, 0]), ("Open", open)] {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(HANG_GUARD)).unwrap();
        let _ = s.write_all(&hello_frame());
        let _ = s.write_all(&frame(&message));
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer);
        assert!(
            answer.is_empty(),
            "plaintext {what} got {} bytes back",
            answer.len()
        );
    }
    assert!(
        cluster
            .node(2)
            .wait_for("does not speak Noise", HANG_GUARD)
            .is_some(),
        "{}",
        cluster.logs()
    );

    // A stranger that speaks Noise with a key of its own cannot open a data connection:
    // the node closes it after the handshake, before reading its Open.
    let stranger = SecretKey::generate().unwrap();
    let node2_public: PublicKey = cluster.public_key(2).parse().unwrap();
    let got = runtime().block_on(async {
        // From another address than the plaintext clients: failures are logged once per
        // source address per interval.
        let stream = connect_from(loopback(4), port).await.unwrap();
        let role = Role::Initiator {
            expect: Some(node2_public),
        };
        let mut secure = noise::secure_tcp(stream, role, &stranger, PROLOGUE)
            .await
            .ok()?;
        let mut request = hello_frame();
        let mut open = vec![6u8];
        open.extend_from_slice(&hash);
        request.extend(frame(&open));
        let _ = secure.write_all(&request).await;
        let _ = secure.flush().await;
        let mut back = Vec::new();
        let _ = tokio::time::timeout(HANG_GUARD, secure.read_to_end(&mut back)).await;
        Some(back)
    });
    assert!(
        got.unwrap_or_default().is_empty(),
        "a stranger got an answer"
    );
    assert!(
        cluster
            .node(2)
            .wait_for("which is not a member's key", HANG_GUARD)
            .is_some(),
        "{}",
        cluster.logs()
    );
    assert_eq!(count_lines(cluster.node(2), "serving"), 0);

    // The cluster did not notice, and a member still downloads the file.
    let after = cluster.wait_agreement(1, HANG_GUARD).unwrap();
    assert_eq!(before, after, "{}", cluster.logs());
    let summary = get_file(cluster.node_mut(3), "secret.bin", GET_GUARD);
    assert!(summary.is_some(), "{}", cluster.logs());
    assert!(same_content(
        &cluster.dir(2).join("secret.bin"),
        &cluster.dir(3).join("secret.bin")
    ));
}

/// `size` bytes of seeded random data with `marker` written every 64 KiB.
fn write_marked(path: &std::path::Path, size: usize, seed: u64, marker: &[u8]) {
    write_random(path, size, seed);
    let mut data = std::fs::read(path).unwrap();
    for at in (0..size - marker.len()).step_by(64 * 1024) {
        data[at..at + marker.len()].copy_from_slice(marker);
    }
    std::fs::write(path, data).unwrap();
}

#[test]
fn links_are_encrypted_and_a_flipped_byte_closes_that_link_while_the_download_recovers() {
    const MARKER: &[u8] = b"MARKER-p2pauth-plaintext-visible";
    let mut cluster = KeyedCluster::init("auth-relay", 3);
    // Everyone reaches node 2 through a relay: cluster.toml lists the relay's port for it,
    // and node 2 listens on its own.
    let relay_port = e2e::p2p::free_ports(1)[0];
    let file = cluster.cluster_file();
    let text = std::fs::read_to_string(&file).unwrap();
    let node2 = format!("127.0.0.1:{}", cluster.port(2));
    std::fs::write(
        &file,
        text.replace(&node2, &format!("127.0.0.1:{relay_port}")),
    )
    .unwrap();
    cluster
        .extra
        .insert(2, vec!["--listen".into(), node2.clone()]);
    let relay = Relay::start(relay_port, node2.parse::<SocketAddr>().unwrap());
    write_marked(&cluster.dir(2).join("only-2.bin"), 3 * MIB, 11, MARKER);
    write_marked(&cluster.dir(2).join("both.bin"), 16 * MIB, 12, MARKER);
    std::fs::copy(
        cluster.dir(2).join("both.bin"),
        cluster.dir(3).join("both.bin"),
    )
    .unwrap();
    start_all(&mut cluster, 3);
    cluster
        .wait_log(HANG_GUARD, |t| {
            holders_in_log(t, "only-2.bin", 3 * MIB as u64) == 1
                && holders_in_log(t, "both.bin", 16 * MIB as u64) == 2
        })
        .unwrap();

    // The recording of everything that crossed the relay (control links to node 2, and
    // the whole file) never shows the marker.
    let summary = get_file(cluster.node_mut(1), "only-2.bin", GET_GUARD);
    assert!(summary.is_some(), "{}", cluster.logs());
    assert!(same_content(
        &cluster.dir(2).join("only-2.bin"),
        &cluster.dir(1).join("only-2.bin")
    ));
    let recording = relay.recorded();
    assert!(
        recording.len() > 3 * MIB,
        "the file crossed the relay ({} bytes)",
        recording.len()
    );
    assert!(
        !recording.windows(MARKER.len()).any(|w| w == MARKER),
        "the marker crossed the relay in plaintext"
    );

    // One flipped bit in node 2's data stream: that connection fails authentication and
    // closes; the download completes from node 3.
    relay.set_tamper(Tamper::FlipAt(2 * MIB as u64));
    let summary = get_file(cluster.node_mut(1), "both.bin", GET_GUARD);
    assert!(summary.is_some(), "{}", cluster.logs());
    assert!(
        relay.flipped.load(Ordering::SeqCst) >= 1,
        "the relay flipped a byte"
    );
    assert!(same_content(
        &cluster.dir(3).join("both.bin"),
        &cluster.dir(1).join("both.bin")
    ));
    assert!(
        cluster
            .node(1)
            .stderr_text()
            .contains("failed authentication"),
        "{}",
        cluster.logs()
    );
    let summary = summary.unwrap();
    assert!(
        summary.per_peer.get(&3).copied().unwrap_or(0) > 0,
        "node 3 supplied the rest: {}",
        summary.line
    );
}

#[test]
fn a_cluster_with_a_remote_address_and_no_keys_refuses_to_start_saying_how_to_make_keys() {
    let port = e2e::p2p::free_ports(1)[0];
    let peer1 = format!("1=127.0.0.1:{port}");
    let mut node = Proc::start(
        "p2p-node",
        &["--id", "1", "--peer", &peer1, "--peer", "2=10.99.0.2:9001"],
    );
    let status = node.wait_exit(HANG_GUARD).expect("exits at once");
    assert_eq!(status.code(), Some(1));
    let err = node.stderr_text();
    assert!(
        err.contains("node 2's address 10.99.0.2:9001 is not a loopback address")
            && err.contains("p2p-node init-cluster"),
        "{err}"
    );
    assert!(!err.contains("listening on"), "{err}");

    // A loopback cluster without keys runs, and says so once (its files in a temp dir,
    // not in the test's working directory).
    let open_root = e2e::p2p::TempRoot::new("auth-open");
    let open_dir = open_root.0.join("Node1").display().to_string();
    let open_log = open_root.0.join("Peer_files.log").display().to_string();
    let mut open = Proc::start(
        "p2p-node",
        &[
            "--id",
            "1",
            "--peer",
            &peer1,
            "--dir",
            &open_dir,
            "--index-log",
            &open_log,
        ],
    );
    open.listening_port();
    assert!(open
        .wait_for("Leader elected: Node 1", HANG_GUARD)
        .is_some());
    assert_eq!(count_lines(&open, "No keys"), 1, "{}", open.stderr_text());
    open.kill9();

    // A key that is not this node's listed key is refused too.
    let root = e2e::p2p::TempRoot::new("auth-wrong-key");
    let wrong = root.0.join("wrong.key");
    keygen(&wrong);
    let listed = keygen(&root.0.join("listed.key"));
    let mut node = Proc::start(
        "p2p-node",
        &[
            "--id",
            "1",
            "--peer",
            &format!("{peer1}={listed}"),
            "--key",
            &wrong.display().to_string(),
        ],
    );
    assert_eq!(node.wait_exit(HANG_GUARD).and_then(|s| s.code()), Some(1));
    assert!(
        node.stderr_text().contains("is not node 1's listed key"),
        "{}",
        node.stderr_text()
    );
}

#[test]
fn two_hundred_failing_handshakes_from_one_source_do_not_delay_members() {
    let mut cluster = KeyedCluster::init("auth-flood", 3);
    start_all(&mut cluster, 3);
    let leader_port = cluster.port(1);
    let node1_public: PublicKey = cluster.public_key(1).parse().unwrap();

    // 200 connections at a time from 127.0.0.3, each failing the handshake: a Noise
    // handshake with a stranger's key, or plaintext garbage. Kept up until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let attempts = Arc::new(AtomicU64::new(0));
    let attack = {
        let (stop, attempts) = (stop.clone(), attempts.clone());
        std::thread::spawn(move || {
            runtime().block_on(async move {
                let stranger = Arc::new(SecretKey::generate().unwrap());
                let mut tasks = Vec::new();
                for i in 0..200 {
                    let (stop, attempts, stranger) =
                        (stop.clone(), attempts.clone(), stranger.clone());
                    tasks.push(tokio::spawn(async move {
                        while !stop.load(Ordering::SeqCst) {
                            let Ok(mut stream) = connect_from(loopback(3), leader_port).await
                            else {
                                tokio::time::sleep(Duration::from_millis(10)).await;
                                continue;
                            };
                            attempts.fetch_add(1, Ordering::SeqCst);
                            if i % 2 == 0 {
                                let role = Role::Initiator {
                                    expect: Some(node1_public),
                                };
                                if let Ok(mut s) =
                                    noise::secure_tcp(stream, role, &stranger, PROLOGUE).await
                                {
                                    let mut sink = Vec::new();
                                    let _ = tokio::time::timeout(
                                        Duration::from_secs(5),
                                        s.read_to_end(&mut sink),
                                    )
                                    .await;
                                }
                            } else {
                                let _ = stream.write_all(&hello_frame()).await;
                                let mut sink = Vec::new();
                                let _ = tokio::time::timeout(
                                    Duration::from_secs(5),
                                    stream.read_to_end(&mut sink),
                                )
                                .await;
                            }
                        }
                    }));
                }
                for task in tasks {
                    let _ = task.await;
                }
            });
        })
    };
    while attempts.load(Ordering::SeqCst) < 400 {
        std::thread::sleep(Duration::from_millis(20));
    }

    // Meanwhile node 3 is killed and restarted: it rejoins within the normal election
    // time (failure timeout 1 s + 1 s), measured on its own log from start to leader.
    cluster.kill9(3);
    let started = cluster
        .start(3)
        .wait_for("listening on ", HANG_GUARD)
        .unwrap();
    let elected = cluster
        .node(3)
        .wait_for("Leader elected: Node 1", HANG_GUARD)
        .unwrap_or_else(|| panic!("{}", cluster.logs()));
    let rejoin = log_time(&elected).unwrap() - log_time(&started).unwrap();
    let during = attempts.load(Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::SeqCst);
    attack.join().unwrap();
    assert!(
        rejoin < 2.0,
        "node 3 rejoined after {rejoin:.3} s under attack\n{}",
        cluster.logs()
    );
    assert!(during >= 400, "the attack ran ({during} connections)");
    // Node 2's link to the leader held throughout.
    assert_eq!(
        count_lines(cluster.node(2), "lost its leader"),
        0,
        "{}",
        cluster.logs()
    );
    assert!(
        cluster.wait_agreement(1, HANG_GUARD).is_some(),
        "{}",
        cluster.logs()
    );
    // The leader logged the trouble, but not once per connection.
    let logged = count_lines(cluster.node(1), "refused before any message");
    assert!(
        logged >= 1 && (logged as u64) < during / 10,
        "{logged} lines for {during} attempts\n{}",
        cluster.logs()
    );
    println!("rejoin {rejoin:.3} s during {during} failing handshakes; {logged} log lines");
}
