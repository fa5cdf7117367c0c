//! End-to-end tests of editor-server's limits (issue 14): each attack a hostile client
//! can make, against the real binary, with the bound that must hold.
//!
//! Time limits here guard against hangs (the machine is loaded); bench/ measures.
#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use e2e::echo::{vm_hwm_kib, vm_rss_kib};
use e2e::editor::{raw_connect, start_server, Client};
use e2e::temp::TempDir;
use editor::presence::Selection;
use editor::protocol::{random_key, ClientMsg, ErrorCode, ServerMsg, PROTOCOL};
use netutil::Connection;
use tokio::io::AsyncWriteExt;

use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;

type Conn = Connection<ServerMsg, ClientMsg>;

/// Each test here loads the machine on purpose (hundreds of connections, hundreds of MB
/// through loopback); they take turns so that one's load is not another's measurement.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn join(document: &str) -> ClientMsg {
    ClientMsg::Join {
        document: document.into(),
        name: "mallory".into(),
        key: random_key(),
        known_revision: None,
        token: None,
    }
}

/// Raises this process's open-file limit (children inherit it) so that a test can hold
/// a thousand connections on both ends.
fn raise_fd_limit(want: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        if lim.rlim_cur < want {
            lim.rlim_cur = want.min(lim.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// Connects from a given local address (another loopback address is another source).
async fn connect_from(local: IpAddr, port: u16) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(local, 0)).unwrap();
    socket
        .connect(SocketAddr::from(([127, 0, 0, 1], port)))
        .await
        .unwrap()
}

/// Reads until the server closes the connection; the error it sent, if any.
async fn until_closed(conn: &mut Conn, timeout: Duration) -> Result<Option<String>, ()> {
    let deadline = Instant::now() + timeout;
    let mut error = None;
    loop {
        match tokio::time::timeout_at(deadline, conn.recv()).await {
            Err(_) => return Err(()),
            Ok(Ok(Some(ServerMsg::Error { reason, .. }))) => error = Some(reason),
            Ok(Ok(Some(_))) => {}
            Ok(_) => return Ok(error),
        }
    }
}

fn hwm_mib(pid: u32) -> u64 {
    vm_hwm_kib(pid).unwrap_or(0) / 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_frames_stay_under_the_budget_and_are_closed_after_the_deadline() {
    let _turn = ONE_AT_A_TIME.lock().await;
    raise_fd_limit(4096);
    let dir = TempDir::new("editor-limits");
    let budget_mib = 192;
    let (server, port) = start_server(dir.path(), &["--max-memory", "192", "--frame-timeout", "3"]);
    let before_mib = vm_rss_kib(server.pid()) / 1024;
    const ATTACKERS: usize = 200;
    const ANNOUNCED: usize = 8 * 1024 * 1024 - 1;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..ATTACKERS {
        tasks.push(tokio::spawn(async move {
            let mut conn = raw_connect(port).await;
            conn.send(&join(&format!("partial{}", i % 10)))
                .await
                .unwrap();
            // Announce a full frame, send all of it but the last byte, then stall.
            let stream = conn.stream_mut();
            let mut sent = stream
                .write_all(&(ANNOUNCED as u32).to_be_bytes())
                .await
                .is_ok();
            let chunk = vec![0u8; 256 * 1024];
            let mut left = ANNOUNCED - 1;
            while sent && left > 0 {
                let n = left.min(chunk.len());
                sent = stream.write_all(&chunk[..n]).await.is_ok();
                left -= n;
            }
            let closed = until_closed(&mut conn, Duration::from_secs(60)).await;
            (left == 0, closed, started.elapsed())
        }));
    }
    let mut complete = 0;
    let mut by_deadline = 0;
    for task in tasks {
        let (sent_all, closed, after) = task.await.unwrap();
        let error = closed.expect("every stalled connection is closed by the server");
        if sent_all {
            complete += 1;
        }
        if error
            .as_deref()
            .is_some_and(|e| e.contains("not completed within"))
        {
            by_deadline += 1;
            assert!(
                after >= Duration::from_millis(2500),
                "closed early: {after:?}"
            );
        }
    }
    let hwm = hwm_mib(server.pid());
    eprintln!(
        "{complete} attackers got their 8 MiB - 1 in, {by_deadline} closed by the deadline, peak RSS {hwm} MiB"
    );
    assert!(
        by_deadline > 0,
        "some partial frames fit the budget and hit the deadline"
    );
    // The budget counts the frames' buffers, which fill it by design here; what the
    // server used before the attack (and a sixteenth for the connections themselves)
    // comes on top.
    assert!(
        hwm < budget_mib + budget_mib / 16 + before_mib,
        "peak RSS {hwm} MiB over the {budget_mib} MiB budget (+1/16, +{before_mib} MiB at start)"
    );
    // The server still serves.
    let mut client = Client::join(port, "after", "alice").await;
    client.insert(0, "still here").await;
    assert!(client.settle(Duration::from_secs(20)).await);
}

/// One attacker of the persistent form: start an 8 MiB frame, send until the server
/// closes the connection (budget or deadline), reconnect and start again, until `until`.
async fn partial_frames_again_and_again(port: u16, doc: String, until: Instant) -> usize {
    const ANNOUNCED: usize = 8 * 1024 * 1024 - 1;
    let chunk = vec![0u8; 256 * 1024];
    let mut connects = 0;
    while Instant::now() < until {
        connects += 1;
        let mut conn = raw_connect(port).await;
        if conn.send(&join(&doc)).await.is_err() {
            continue;
        }
        let stream = conn.stream_mut();
        let mut sent = stream
            .write_all(&(ANNOUNCED as u32).to_be_bytes())
            .await
            .is_ok();
        let mut left = ANNOUNCED - 1;
        while sent && left > 0 && Instant::now() < until {
            let n = left.min(chunk.len());
            sent = stream.write_all(&chunk[..n]).await.is_ok();
            left -= n;
        }
        let _ = until_closed(&mut conn, until.saturating_duration_since(Instant::now())).await;
    }
    connects
}

/// Issue 14's partial frames, but each attacker reconnects and starts over whenever the
/// server closes it: the budget counts the frames in progress, and freed buffers must
/// leave the process, or the churn keeps the resident size over the budget (glibc's
/// dynamic mmap threshold kept every freed 8 MiB buffer in its arenas).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_frames_again_and_again_stay_under_the_budget_and_memory_goes_back() {
    let _turn = ONE_AT_A_TIME.lock().await;
    raise_fd_limit(4096);
    let dir = TempDir::new("editor-limits");
    let budget_mib = 192;
    let (server, port) = start_server(dir.path(), &["--max-memory", "192", "--frame-timeout", "2"]);
    let before_mib = vm_rss_kib(server.pid()) / 1024;
    let until = Instant::now() + Duration::from_secs(10);
    let attackers: Vec<_> = (0..100)
        .map(|i| {
            tokio::spawn(partial_frames_again_and_again(
                port,
                format!("again{}", i % 10),
                until,
            ))
        })
        .collect();
    let mut connects = 0;
    for attacker in attackers {
        connects += attacker.await.unwrap();
    }
    let hwm = hwm_mib(server.pid());
    // The closed connections' buffers are freed as their tasks end; give them a moment.
    let mut after_mib = u64::MAX;
    let settle = Instant::now() + Duration::from_secs(10);
    while Instant::now() < settle {
        after_mib = vm_rss_kib(server.pid()) / 1024;
        if after_mib < before_mib + 48 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "{connects} connects in 10 s; RSS {before_mib} MiB before, peak {hwm} MiB, {after_mib} MiB after"
    );
    assert!(
        connects > 100,
        "the attackers reconnected ({connects} connects)"
    );
    // As in the test above: the budget, a sixteenth for the connections, and what the
    // server used before (without the fix the peak was a third over the budget).
    assert!(
        hwm < budget_mib + budget_mib / 16 + before_mib,
        "peak RSS {hwm} MiB over the {budget_mib} MiB budget (+1/16, +{before_mib} MiB at start)"
    );
    assert!(
        after_mib < before_mib + 48,
        "{after_mib} MiB still resident after the attack ({before_mib} MiB before it)"
    );
    let mut client = Client::join(port, "after-again", "alice").await;
    client.insert(0, "still here").await;
    assert!(client.settle(Duration::from_secs(20)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_reading_joiners_are_dropped_and_a_reader_stays() {
    let _turn = ONE_AT_A_TIME.lock().await;
    raise_fd_limit(4096);
    let dir = TempDir::new("editor-limits");
    let budget_mib = 192;
    let (server, port) = start_server(dir.path(), &["--max-memory", "192"]);
    let mut writer = Client::join(port, "big", "writer").await;
    writer.insert(0, &"x".repeat(6_000_000)).await;
    assert!(writer.settle(Duration::from_secs(60)).await);

    const JOINERS: usize = 200;
    let mut silent = Vec::new();
    for _ in 0..JOINERS {
        let mut conn = raw_connect(port).await;
        conn.send(&join("big")).await.unwrap();
        silent.push(conn);
    }
    // The writer keeps typing and reading while 200 others never read.
    let typing_until = Instant::now() + Duration::from_secs(15);
    let mut typed = 0;
    while Instant::now() < typing_until {
        writer.insert(typed, "y").await;
        typed += 1;
        assert!(writer.settle(Duration::from_secs(20)).await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(writer.errors.is_empty(), "{:?}", writer.errors);
    assert!(writer.conn.is_some(), "the reading client stays connected");
    let dropped = server
        .stderr_lines()
        .iter()
        .filter(|l| l.contains("client disconnected") && l.contains("mallory"))
        .count();
    let hwm = hwm_mib(server.pid());
    eprintln!("{dropped} of {JOINERS} non-readers dropped; peak RSS {hwm} MiB");
    assert_eq!(dropped, JOINERS, "every non-reading joiner is dropped");
    assert!(
        hwm < budget_mib,
        "peak RSS {hwm} MiB over the {budget_mib} MiB budget"
    );
    drop(silent);
}

/// One change at a time on `typist`'s document: the time from sending to the ack.
async fn keystrokes(typist: &mut Client, n: usize) -> Vec<Duration> {
    let mut latencies = Vec::new();
    for _ in 0..n {
        let t = Instant::now();
        typist.insert(0, "k").await;
        assert!(typist.settle(Duration::from_secs(20)).await);
        latencies.push(t.elapsed());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    latencies.sort();
    latencies
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

/// 50 connections flooding presence frames, each on its own document, as fast as their
/// sockets take them; on their own runtime thread so the measuring client's runtime is
/// not the one that is busy.
fn start_presence_flood(
    port: u16,
    stop: Arc<std::sync::atomic::AtomicBool>,
    pushed_back: Arc<std::sync::atomic::AtomicUsize>,
) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let mut flooders = Vec::new();
            for i in 0..50 {
                let stop = stop.clone();
                let pushed_back = pushed_back.clone();
                flooders.push(tokio::spawn(async move {
                    let mut conn = raw_connect(port).await;
                    conn.send(&join(&format!("flood{i}"))).await.unwrap();
                    // Wait for the snapshot, so presence refers to a real revision.
                    let _ = conn.recv().await;
                    let msg = ClientMsg::Presence {
                        base_revision: 0,
                        selection: Some(Selection { anchor: 0, head: 0 }),
                    };
                    let payload = netutil::connection::encode(&msg, conn.peer()).unwrap();
                    let mut frame = (payload.len() as u32).to_be_bytes().to_vec();
                    frame.extend_from_slice(&payload);
                    let burst: Vec<u8> = frame.repeat(4096);
                    let mut sent = 0u64;
                    let mut blocked = false;
                    let mut at = 0;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        // Never cancel a write half-way: frames must stay whole.
                        let write = conn.stream_mut().write(&burst[at..]);
                        match tokio::time::timeout(Duration::from_millis(200), write).await {
                            Ok(Ok(n)) if n > 0 => {
                                at = (at + n) % burst.len();
                                sent += n as u64;
                            }
                            Ok(_) => break,
                            // The server stopped reading: its share is used up.
                            Err(_) if !blocked => {
                                blocked = true;
                                pushed_back.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            }
                            Err(_) => {}
                        }
                    }
                    sent /= frame.len() as u64;
                    sent
                }));
            }
            let mut sent = 0;
            for f in flooders {
                sent += f.await.unwrap_or(0);
            }
            sent
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_presence_flood_does_not_delay_another_document() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let dir = TempDir::new("editor-limits");
    let (server, port) = start_server(dir.path(), &[]);
    let mut typist = Client::join(port, "quiet", "typist").await;
    let quiet = keystrokes(&mut typist, 50).await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pushed_back = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let flood = start_presence_flood(port, stop.clone(), pushed_back.clone());
    // Measure once the flood is pushed back on, not while the kernel is still filling
    // 50 sockets' buffers (hundreds of MB of copies on a loaded 2-core machine).
    let waiting = Instant::now();
    while pushed_back.load(std::sync::atomic::Ordering::Relaxed) < 50
        && waiting.elapsed() < Duration::from_secs(60)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let blocked = pushed_back.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(
        blocked, 50,
        "every flooder is slowed down by the server not reading"
    );
    // 200, so that p99 is the second slowest: one stall of the shared disk's fsync is not
    // a finding.
    let flooded = keystrokes(&mut typist, 200).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent = tokio::task::spawn_blocking(move || flood.join().unwrap())
        .await
        .unwrap();
    let (p50, p99) = (percentile(&flooded, 50), percentile(&flooded, 99));
    eprintln!(
        "slowest quiet {:?} flooded {:?}",
        &quiet[quiet.len() - 5..],
        &flooded[flooded.len() - 5..]
    );
    eprintln!(
        "typist quiet p50 {:?} p99 {:?}; under the flood p50 {p50:?} p99 {p99:?} (flooders sent {sent} presence frames)",
        percentile(&quiet, 50),
        percentile(&quiet, 99)
    );
    // A guard against the document waiting behind the flood (it used to be seconds while
    // quiet keystrokes took milliseconds): the 50 ms, or three times the quiet
    // run's own p99 when the shared machine is slow that day (each change's fsync is in
    // both figures). Measured at load 9-12: quiet p99 12-32 ms, flooded p99 13-20 ms.
    let bound = Duration::from_millis(50).max(percentile(&quiet, 99) * 3);
    assert!(p99 < bound, "p99 {p99:?} under the flood, bound {bound:?}");
    assert!(typist.errors.is_empty(), "{:?}", typist.errors);
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_connections_from_one_address_do_not_lock_out_another() {
    let _turn = ONE_AT_A_TIME.lock().await;
    raise_fd_limit(4096);
    let dir = TempDir::new("editor-limits");
    let (server, port) = start_server(dir.path(), &[]);
    let local: IpAddr = "127.0.0.1".parse().unwrap();
    let mut held = Vec::new();
    // 500 that never send a hello, 500 that each open their own document.
    for _ in 0..500 {
        held.push(connect_from(local, port).await);
    }
    let mut joined = Vec::new();
    let mut refused = 0;
    for i in 0..500 {
        let stream = connect_from(local, port).await;
        let Ok(mut conn) = Conn::establish(stream, &PROTOCOL).await else {
            refused += 1;
            continue;
        };
        conn.send(&join(&format!("slot{i}"))).await.unwrap();
        match tokio::time::timeout(Duration::from_secs(20), conn.recv()).await {
            Ok(Ok(Some(ServerMsg::Error { code, .. }))) => {
                assert_eq!(code, ErrorCode::Busy);
                refused += 1;
            }
            Ok(Ok(Some(_))) => joined.push(conn),
            other => panic!("no answer to a join: {:?}", other.map(|r| r.map(|_| ()))),
        }
    }
    eprintln!(
        "from 127.0.0.1: {} documents opened, {refused} refused",
        joined.len()
    );
    assert!(refused > 0, "one source cannot open every document slot");

    let other: IpAddr = "127.0.0.2".parse().unwrap();
    let t = Instant::now();
    let stream = connect_from(other, port).await;
    let mut conn = Conn::establish(stream, &PROTOCOL).await.unwrap();
    conn.send(&join("elsewhere")).await.unwrap();
    // Since protocol 2 a successful join is announced by Access before the snapshot.
    let first = e2e::editor::recv_after_access(&mut conn, Duration::from_secs(5)).await;
    let waited = t.elapsed();
    assert!(
        matches!(first, ServerMsg::Snapshot { .. }),
        "127.0.0.2 joins: {first:?}"
    );
    assert!(
        waited < Duration::from_secs(1),
        "127.0.0.2 waited {waited:?}"
    );
    let refusals = server
        .stderr_lines()
        .iter()
        .filter(|l| l.contains("documents loaded on its behalf"))
        .count();
    assert!(
        refusals < refused,
        "refusals are logged once per interval, not once each ({refusals} lines)"
    );
    drop((held, joined));
}

/// A browser's WebSocket after its handshake and JSON `Join`, to misbehave on.
type RawWs = tokio_tungstenite::WebSocketStream<TcpStream>;

async fn ws_join(port: u16, document: &str) -> RawWs {
    use futures_util::SinkExt;
    let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(format!("ws://127.0.0.1:{port}/ws"), stream)
        .await
        .expect("websocket handshake");
    let join = serde_json::json!({"join": {"document": document, "name": "mallory",
                                           "key": random_key().to_string(), "known": null}});
    ws.send(tokio_tungstenite::tungstenite::Message::text(
        join.to_string(),
    ))
    .await
    .unwrap();
    ws
}

/// Reads until the server closes the WebSocket; the reason of the last error it sent.
async fn ws_until_closed(ws: &mut RawWs, timeout: Duration) -> Result<Option<String>, ()> {
    use futures_util::StreamExt;
    let deadline = Instant::now() + timeout;
    let mut error = None;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return Err(()),
            Ok(Some(Ok(tokio_tungstenite::tungstenite::Message::Text(text)))) => {
                let msg: serde_json::Value = serde_json::from_str(text.as_str()).unwrap();
                if let Some(reason) = msg["error"]["reason"].as_str() {
                    error = Some(reason.to_owned());
                }
            }
            Ok(Some(Ok(_))) => {}
            Ok(_) => return Ok(error),
        }
    }
}

/// The WebSocket is charged and timed like the binary protocol: browsers' sockets that
/// announce a large message and stall hold no more than the memory budget together, and
/// each is closed once the frame deadline is over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_websocket_frames_stay_under_the_budget_and_are_closed_after_the_deadline() {
    let _turn = ONE_AT_A_TIME.lock().await;
    raise_fd_limit(4096);
    let dir = TempDir::new("editor-limits");
    let budget_mib = 128;
    let (server, port) = start_server(dir.path(), &["--max-memory", "128", "--frame-timeout", "3"]);
    const ATTACKERS: usize = 48;
    // Just under the WebSocket's message limit (the binary protocol's frame limit).
    const ANNOUNCED: u64 = 8 * 1024 * 1024 - 64;
    // Everyone joins first (a join is refused near the budget), the server's size is
    // taken, then the attack starts.
    let everyone_joined = Arc::new(tokio::sync::Barrier::new(ATTACKERS + 1));
    let go = Arc::new(tokio::sync::Barrier::new(ATTACKERS + 1));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..ATTACKERS {
        let (everyone_joined, go) = (everyone_joined.clone(), go.clone());
        tasks.push(tokio::spawn(async move {
            let mut ws = ws_join(port, &format!("wspartial{}", i % 10)).await;
            everyone_joined.wait().await;
            go.wait().await;
            // A masked text frame announcing ANNOUNCED bytes, all of them but the last
            // sent, then nothing.
            let mut header = vec![0x81u8, 0x80 | 127];
            header.extend_from_slice(&ANNOUNCED.to_be_bytes());
            header.extend_from_slice(&[0x11, 0x22, 0x33, 0x44]);
            let stream = ws.get_mut();
            let mut sent = stream.write_all(&header).await.is_ok();
            let chunk = vec![b'a'; 256 * 1024];
            let mut left = ANNOUNCED as usize - 1;
            while sent && left > 0 {
                let n = left.min(chunk.len());
                sent = stream.write_all(&chunk[..n]).await.is_ok();
                left -= n;
            }
            let sent_at = started.elapsed();
            let closed = ws_until_closed(&mut ws, Duration::from_secs(60)).await;
            (left == 0, sent_at, closed, started.elapsed())
        }));
    }
    everyone_joined.wait().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before_mib = e2e::echo::vm_rss_kib(server.pid()) / 1024;
    go.wait().await;
    let (mut complete, mut by_deadline, mut over_budget) = (0, 0, 0);
    for task in tasks {
        let (sent_all, sent_at, closed, after) = task.await.unwrap();
        let error = closed.expect("every stalled WebSocket is closed by the server");
        complete += usize::from(sent_all);
        match error.as_deref() {
            Some(e) if e.contains("not completed within 3s") => {
                by_deadline += 1;
                assert!(
                    after >= Duration::from_millis(2500),
                    "closed early: {after:?}"
                );
                assert!(
                    after < sent_at + Duration::from_secs(30),
                    "closed {after:?}, long after the last byte at {sent_at:?}"
                );
            }
            Some(e) if e.contains("memory budget") => over_budget += 1,
            other => panic!("closed with {other:?}"),
        }
    }
    let hwm = hwm_mib(server.pid());
    eprintln!(
        "{complete} WebSocket attackers sent 8 MiB less a byte, {by_deadline} closed by the \
         deadline, {over_budget} over the budget; peak RSS {hwm} MiB, {before_mib} MiB before"
    );
    assert!(
        by_deadline > 0,
        "no partial message was held to the deadline"
    );
    assert!(over_budget > 0, "48 × 8 MiB fit a 128 MiB budget");
    // The budget bounds what connections buffer; the server's own size (code, runtime,
    // 49 joined sessions) comes on top of it, and a connection refused over the budget
    // has read one buffer's worth (up to 128 KiB) past its charge: an eighth for those.
    assert!(
        hwm < before_mib + budget_mib + budget_mib / 8,
        "peak RSS {hwm} MiB over the {budget_mib} MiB budget and the {before_mib} MiB the \
         server had before the attack"
    );
    // The server still serves browsers and everyone else.
    let mut ws = ws_join(port, "after").await;
    let first = ws_until_closed(&mut ws, Duration::from_secs(2)).await;
    assert!(first.is_err(), "a new WebSocket was closed: {first:?}");
    let mut client = Client::join(port, "after", "alice").await;
    client.insert(0, "still here").await;
    assert!(client.settle(Duration::from_secs(20)).await);
}
