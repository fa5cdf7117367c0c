//! End-to-end tests of the editor programs (real binaries, real sockets).
//!
//! `editor-server` runs as a child process on an OS-chosen port with a temporary data
//! directory; clients are the editor library's sync state machine over real TCP
//! connections (see `support/editor.rs`).
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::time::Duration;

use bytes_free::frame;
use e2e::editor::{expect_error, raw_connect, start_server, start_server_logging, Client, Rng};
use editor::ot::TextOperation;
use editor::presence::Selection;
use editor::protocol::{ClientMsg, ErrorCode, ServerMsg};

const T: Duration = Duration::from_secs(30);

/// Raw frame bytes, for sending what no well-behaved client would.
mod bytes_free {
    pub fn frame(payload: &[u8]) -> Vec<u8> {
        let mut out = (payload.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(payload);
        out
    }
}

/// `clients` clients make `edits` random inserts and deletes each, concurrently, then all
/// must reach the text a fresh client sees.
async fn converge(clients: usize, edits: usize) {
    let dir = tempfile_dir();
    let (server, port) = start_server(dir.path(), &[]);
    let mut tasks = Vec::new();
    for c in 0..clients {
        tasks.push(tokio::spawn(async move {
            let mut client = Client::join(port, "shared", &format!("user{c}")).await;
            let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (c as u64 + 1));
            for i in 0..edits {
                let len = client.sync.text().len_chars();
                let pos = rng.below(len + 1);
                if rng.below(4) == 0 && len > 0 {
                    let del = 1 + rng.below(3.min(len - pos.min(len - 1)));
                    let pos = pos.min(len - 1);
                    client.delete(pos, del.min(len - pos)).await;
                } else {
                    client.insert(pos, &format!("<{c}.{i}>")).await;
                }
                if rng.below(3) == 0 {
                    tokio::time::sleep(Duration::from_millis(rng.below(3) as u64)).await;
                }
                client.pump().await;
            }
            assert!(client.settle(T).await, "client {c} never got its acks");
            client
        }));
    }
    let mut done = Vec::new();
    for t in tasks {
        done.push(t.await.unwrap());
    }
    let observer = Client::join(port, "shared", "observer").await;
    let (revision, text) = (observer.sync.revision().unwrap(), observer.text());
    assert!(revision > 0);
    for (c, client) in done.iter_mut().enumerate() {
        let caught_up = client
            .wait_until(T, |s| s.revision() == Some(revision))
            .await;
        assert!(
            caught_up,
            "client {c} stuck at {:?}",
            client.sync.revision()
        );
        assert_eq!(client.text(), text, "client {c} diverged");
        assert!(client.errors.is_empty(), "client {c}: {:?}", client.errors);
    }
    // The server logs each accepted change in short form and each connection.
    assert!(server.wait_for("client connected: 127.0.0.1:", T).is_some());
    assert!(server.wait_for(" r1 ", T).is_some());
    assert!(server.stderr_text().contains("chars at "));
}

fn tempfile_dir() -> TempDir {
    TempDir::new()
}

/// A temporary directory removed on drop (no extra crates in the e2e package).
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let path = std::env::temp_dir().join(format!("editor-e2e-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
    fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clients_converge() {
    converge(2, 60).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_clients_converge() {
    converge(10, 30).await;
}

/// A client drops its connection with a change in flight and more typed while offline;
/// after reconnecting it catches up and nothing it typed is lost or doubled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_catches_up_and_keeps_unacked_edits() {
    let dir = tempfile_dir();
    let (_server, port) = start_server(dir.path(), &[]);
    let mut a = Client::join(port, "re", "alice").await;
    let mut b = Client::join(port, "re", "bob").await;
    a.insert(0, "alpha\n").await;
    assert!(a.settle(T).await);
    // In flight when the connection drops: the server may or may not have it.
    a.insert(0, "inflight\n").await;
    a.disconnect();
    // Typed while offline: buffered.
    a.insert(0, "offline\n").await;
    b.wait_until(T, |s| s.revision() >= Some(1)).await;
    let end = b.sync.text().len_chars();
    b.insert(end, "bravo\n").await;
    assert!(b.settle(T).await);
    a.reconnect(port).await;
    assert!(a.settle(T).await, "a's edits never acknowledged");
    let revision = a.sync.revision().unwrap();
    assert!(b.wait_until(T, |s| s.revision() == Some(revision)).await);
    assert_eq!(a.text(), b.text());
    for word in ["alpha\n", "inflight\n", "offline\n", "bravo\n"] {
        assert_eq!(
            a.text().matches(word).count(),
            1,
            "{word:?} in {:?}",
            a.text()
        );
    }
    assert!(a.resets.iter().all(|discarded| !discarded));
}

/// Several clients type; the server is killed with SIGKILL mid-burst and restarted on the
/// same directory: every acknowledged change is there and the text is valid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acked_changes_survive_kill_9() {
    let dir = tempfile_dir();
    let (mut server, port) = start_server(dir.path(), &["--save-interval", "1"]);
    let mut tasks = Vec::new();
    for c in 0..4 {
        tasks.push(tokio::spawn(async move {
            let mut client = Client::join(port, "burst", &format!("typist{c}")).await;
            let mut rng = Rng(c as u64 * 7919 + 17);
            let mut acked = Vec::new();
            for i in 0.. {
                let line = format!("c{c}-{i}\n");
                // Insert whole lines at line starts, so no line ever splits another.
                let text = client.text();
                let starts: Vec<usize> = std::iter::once(0)
                    .chain(
                        text.chars()
                            .enumerate()
                            .filter(|(_, ch)| *ch == '\n')
                            .map(|(p, _)| p + 1),
                    )
                    .collect();
                let pos = starts[rng.below(starts.len())];
                client.insert(pos, &line).await;
                if !client.settle(Duration::from_secs(10)).await {
                    break; // server gone: this change was never acknowledged
                }
                acked.push(line);
            }
            acked
        }));
    }
    // Mid-burst: once the server has committed its 20th change (it logs "NAME r20 ...").
    assert!(
        server.wait_for(" r20 ", T).is_some(),
        "the burst never reached revision 20:\n{}",
        server.stderr_text()
    );
    server.kill9();
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(t.await.unwrap());
    }
    assert!(
        acked.len() > 10,
        "only {} changes were acknowledged",
        acked.len()
    );

    let (_server, port) = start_server(dir.path(), &[]);
    let reader = Client::join(port, "burst", "reader").await;
    let text = reader.text();
    let lines: HashSet<&str> = text.split_inclusive('\n').collect();
    for line in &acked {
        assert!(lines.contains(line.as_str()), "acknowledged {line:?} lost");
    }
    let on_disk = std::fs::read(dir.path().join("burst.txt")).unwrap();
    assert!(
        String::from_utf8(on_disk).is_ok(),
        "burst.txt is not valid UTF-8"
    );
}

/// A save that fails after the `.txt` was replaced (here: the new journal cannot be
/// renamed over the old one) must not leave the server acknowledging changes into a
/// journal that the next start ignores: every acknowledged change survives kill -9.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_save_loses_no_acknowledged_change() {
    let dir = tempfile_dir();
    let (mut server, port) = start_server_logging(
        dir.path(),
        &["--save-interval", "1"],
        "info,editor::server::doc_task=debug",
    );
    let txt = dir.path().join("fragile.txt");
    let mut a = Client::join(port, "fragile", "alice").await;
    a.insert(0, "one\n").await;
    assert!(a.settle(T).await);
    // The first save is over (its journal renamed into place) once it says so.
    assert!(
        server
            .wait_for("document fragile saved at revision 1", T)
            .is_some(),
        "first save never came:\n{}",
        server.stderr_text()
    );
    assert_eq!(std::fs::read_to_string(&txt).unwrap(), "one\n");
    // The journal's name becomes a non-empty directory: the next save writes the `.txt`
    // and then cannot rename its new journal into place.
    let journal = dir.path().join("fragile.journal");
    std::fs::remove_file(&journal).unwrap();
    std::fs::create_dir(&journal).unwrap();
    std::fs::write(journal.join("in-the-way"), "").unwrap();

    let mut acked = Vec::new();
    a.insert(4, "two\n").await;
    if a.settle(T).await {
        acked.push("two\n");
    }
    assert!(
        server.wait_for("saving failed", T).is_some(),
        "{}",
        server.stderr_text()
    );
    a.insert(a.text().chars().count(), "three\n").await;
    if a.settle(Duration::from_secs(3)).await {
        acked.push("three\n");
    }
    server.kill9();
    std::fs::remove_dir_all(&journal).unwrap();

    let (_server, port) = start_server(dir.path(), &[]);
    let reader = Client::join(port, "fragile", "reader").await;
    let text = reader.text();
    assert!(text.starts_with("one\n"), "{text:?}");
    for line in acked {
        assert!(text.contains(line), "acknowledged {line:?} lost: {text:?}");
    }
}

/// Bad input gets a clear error and closes that connection only; a client on the same
/// document sees nothing change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_is_refused_and_harms_nobody() {
    let dir = tempfile_dir();
    let (server, port) = start_server(dir.path(), &[]);
    let mut watcher = Client::join(port, "h", "watcher").await;
    watcher.insert(0, "precious text").await;
    assert!(watcher.settle(T).await);
    let (revision, text) = (watcher.sync.revision(), watcher.text());

    let join = |document: &str| ClientMsg::Join {
        document: document.into(),
        name: "mallory".into(),
        key: 42,
        known_revision: None,
        token: None,
    };
    for bad in ["../x", ".hidden", "a/b", "", "x\0y", &"n".repeat(65)] {
        let mut conn = raw_connect(port).await;
        conn.send(&join(bad)).await.unwrap();
        let (code, reason) = expect_error(&mut conn, T)
            .await
            .expect("an error for a bad name");
        assert_eq!(code, ErrorCode::BadName, "{bad:?}: {reason}");
        assert!(reason.contains("invalid document name"), "{reason}");
        assert!(
            tokio::time::timeout(T, conn.recv())
                .await
                .expect("the server closes the connection")
                .map_or(true, |m| m.is_none()),
            "connection left open"
        );
    }

    // First message not a Join.
    let mut conn = raw_connect(port).await;
    let op = TextOperation::splice(0, 0, 0, "x").unwrap();
    conn.send(&ClientMsg::Change {
        base_revision: 0,
        seq: 1,
        op,
    })
    .await
    .unwrap();
    assert_eq!(
        expect_error(&mut conn, T).await.unwrap().0,
        ErrorCode::NotJoined
    );

    // After a valid join: garbage, an oversized frame, a future base revision, an edit
    // past the end, a second join.
    let len = text.chars().count();
    let change = |base_revision: u64, op: TextOperation| {
        frame(&postcard_bytes(&ClientMsg::Change {
            base_revision,
            seq: 1,
            op,
        }))
    };
    let cases: Vec<(ErrorCode, Vec<u8>)> = vec![
        (ErrorCode::Malformed, frame(&[0xff; 64])),
        (ErrorCode::Malformed, (64u32 << 20).to_be_bytes().to_vec()),
        (
            ErrorCode::FutureRevision,
            change(999, TextOperation::splice(len, 0, 0, "evil").unwrap()),
        ),
        (
            ErrorCode::BadChange,
            change(1, TextOperation::splice(len + 5, len + 2, 3, "").unwrap()),
        ),
        (ErrorCode::NotJoined, frame(&postcard_bytes(&join("h")))),
    ];
    for (i, (expected, bytes)) in cases.iter().enumerate() {
        let mut conn = raw_connect(port).await;
        conn.send(&join("h")).await.unwrap();
        let snapshot = e2e::editor::recv_after_access(&mut conn, T).await;
        assert!(
            matches!(snapshot, ServerMsg::Snapshot { .. }),
            "case {i}: {snapshot:?}"
        );
        let raw = bytes;
        conn.stream().writable().await.unwrap();
        let mut written = 0;
        while written < raw.len() {
            conn.stream().writable().await.unwrap();
            if let Ok(n) = conn.stream().try_write(&raw[written..]) {
                written += n;
            }
        }
        let (code, reason) = expect_error(&mut conn, T)
            .await
            .unwrap_or_else(|| panic!("case {i}: no error"));
        assert_eq!(code, *expected, "case {i}: {reason}");
        assert!(!reason.is_empty());
    }

    // The watcher saw people come and go, but not one change.
    for _ in 0..20 {
        watcher.step(Duration::from_millis(20)).await;
    }
    assert_eq!(watcher.sync.revision(), revision);
    assert_eq!(watcher.text(), text);
    assert!(watcher.errors.is_empty(), "{:?}", watcher.errors);
    let files: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        // The server's own hidden files (lock, token secret) aside, only document h.
        files
            .iter()
            .all(|f| f.starts_with("h.") || f.starts_with('.')),
        "unexpected files {files:?}"
    );
    assert!(server.stderr_text().contains("refused"));
}

fn postcard_bytes(msg: &ClientMsg) -> Vec<u8> {
    // The same encoding netutil uses; built by hand here to send it as a raw frame.
    editor_postcard::to_vec(msg)
}

mod editor_postcard {
    use editor::protocol::ClientMsg;
    pub fn to_vec(msg: &ClientMsg) -> Vec<u8> {
        netutil::connection::encode(msg, "127.0.0.1:1".parse().unwrap())
            .unwrap()
            .to_vec()
    }
}

/// Cursors travel: one client's selection reaches the other with its display name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_is_shared_with_names() {
    let dir = tempfile_dir();
    let (_server, port) = start_server(dir.path(), &[]);
    let mut a = Client::join(port, "p", "alice").await;
    a.insert(0, "hello world").await;
    assert!(a.settle(T).await);
    let mut b = Client::join(port, "p", "bob").await;
    if let Some(msg) = a.sync.set_selection(Some(Selection {
        anchor: 6,
        head: 11,
    })) {
        a.conn.as_mut().unwrap().send(&msg).await.unwrap();
    }
    let seen = b
        .wait_until(T, |s| {
            s.participants().any(|p| {
                p.name == "alice"
                    && p.selection
                        == Some(Selection {
                            anchor: 6,
                            head: 11,
                        })
            })
        })
        .await;
    assert!(seen, "bob never saw alice's selection");
    // An edit before the selection moves it for bob too.
    a.insert(0, ">> ").await;
    assert!(a.settle(T).await);
    let moved = b
        .wait_until(T, |s| {
            s.participants().any(|p| {
                p.name == "alice"
                    && p.selection
                        == Some(Selection {
                            anchor: 9,
                            head: 14,
                        })
            })
        })
        .await;
    assert!(moved, "alice's selection did not follow the text");
}

/// A client that never reads is disconnected once its queue fills; the others go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_client_is_dropped_not_waited_for() {
    let dir = tempfile_dir();
    let (server, port) = start_server(dir.path(), &["--client-queue", "16"]);
    let mut writer = Client::join(port, "slow", "writer").await;
    let mut sleeper = raw_connect(port).await;
    sleeper
        .send(&ClientMsg::Join {
            document: "slow".into(),
            name: "sleeper".into(),
            key: 7,
            known_revision: None,
            token: None,
        })
        .await
        .unwrap();
    // Big changes (the whole text replaced by 64 KiB) fill the sleeper's socket buffers,
    // then its queue, while the document itself stays small.
    let chunk = "z".repeat(64 * 1024);
    for _ in 0..400 {
        let len = writer.sync.text().len_chars();
        let op = TextOperation::splice(len, 0, len, &chunk).unwrap();
        if let Some(msg) = writer.sync.edit(op).unwrap() {
            writer.conn.as_mut().unwrap().send(&msg).await.unwrap();
        }
        assert!(writer.settle(T).await, "the writer was held up");
        if server.stderr_text().contains("queue full") {
            break;
        }
    }
    assert!(
        server.wait_for("queue full", T).is_some(),
        "the slow client was never dropped"
    );
    drop(sleeper);
}

/// Line mode: piped lines are appended, `--print` shows the document, others' inserts are
/// reported, and a bad name is a clear error with exit status 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn line_mode_client_appends_and_prints() {
    let dir = tempfile_dir();
    let (server, port) = start_server(dir.path(), &[]);
    let port_arg = port.to_string();
    let client = |doc: &str, extra: &[&str], input: &str| {
        let mut args = vec!["127.0.0.1", "--no-tls", "--port", &port_arg, "--doc", doc];
        args.extend_from_slice(extra);
        let mut cmd = std::process::Command::new(e2e::bin_path("editor-client"));
        cmd.args(&args);
        e2e::echo::run_with_input(cmd, input.as_bytes(), e2e::echo::HANG_GUARD)
    };
    let out = client("notes", &["--name", "alice"], "hello\nworld\n");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = client("notes", &["--print"], "");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\nworld\n");

    // A line-mode client that stays connected sees another's insert.
    let mut watcher = e2e::Proc::start(
        "editor-client",
        &[
            "127.0.0.1",
            "--no-tls",
            "--port",
            &port_arg,
            "--doc",
            "notes",
            "--lines",
            "--name",
            "watcher",
        ],
    );
    let stdout = watcher.take_stdout();
    let (line_tx, line_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line_tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut writer = Client::join(port, "notes", "bob").await;
    assert!(server
        .wait_for("\"watcher\" on document notes", T)
        .is_some());
    let end = writer.sync.text().len_chars();
    writer.insert(end, "from bob\n").await;
    assert!(writer.settle(T).await);
    let next_update = |lines: &mut Vec<String>| {
        while let Ok(line) = line_rx.recv_timeout(T) {
            let done = line.starts_with("Document updated");
            lines.push(line);
            if done {
                return;
            }
        }
        panic!("no update line; got {lines:?}");
    };
    let mut lines = Vec::new();
    next_update(&mut lines);
    assert_eq!(lines[..2], ["hello", "world"]);
    assert_eq!(
        lines.last().unwrap(),
        "Document updated (line 3, bob): from bob"
    );

    // Keystrokes on one line, each acknowledged before the next as a full-screen writer
    // sends them, are reported as that line once it settles, not one line per key.
    for ch in "Hi there".chars() {
        let end = writer.sync.text().len_chars();
        writer.insert(end, &ch.to_string()).await;
        assert!(writer.settle(T).await);
    }
    let mut typed = Vec::new();
    while typed.last().map(String::as_str) != Some("Document updated (line 4, bob): Hi there") {
        next_update(&mut typed);
    }
    // A machine too loaded to send 8 keys within the settle time may split them once.
    assert!(typed.len() <= 2, "one update per key: {typed:?}");
    for line in &typed {
        let text = line.strip_prefix("Document updated (line 4, bob): ");
        assert!(text.is_some_and(|t| "Hi there".starts_with(t)), "{typed:?}");
    }
    // A deleted line is named by its number.
    let start = writer.text().find("from bob").expect("line 3");
    writer.delete(start, "from bob\n".len()).await;
    assert!(writer.settle(T).await);
    let mut deleted = Vec::new();
    next_update(&mut deleted);
    assert_eq!(deleted, ["Document updated: line 3 deleted (bob)"]);
    drop(watcher);

    let out = client("../x", &["--print"], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid document name"));
}

/// The server restarts under a client that has unacknowledged edits: the client catches up
/// from the journal's history (no snapshot, nothing discarded) and its edits land once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_catches_up_across_a_server_restart() {
    let dir = tempfile_dir();
    let (mut server, port) = start_server(dir.path(), &[]);
    let mut a = Client::join(port, "restart", "alice").await;
    let mut b = Client::join(port, "restart", "bob").await;
    a.insert(0, "one\n").await;
    assert!(a.settle(T).await);
    assert!(b.wait_until(T, |s| s.revision() == Some(1)).await);
    b.insert(4, "two\n").await;
    assert!(b.settle(T).await);
    server.kill9();
    a.disconnect();
    a.insert(0, "typed while the server was down\n").await;

    let (_server, port) = start_server(dir.path(), &[]);
    a.reconnect(port).await;
    assert!(a.settle(T).await);
    assert_eq!(
        a.resets,
        vec![false],
        "only the first join may be a snapshot"
    );
    assert_eq!(a.text(), "typed while the server was down\none\ntwo\n");
    let fresh = Client::join(port, "restart", "carol").await;
    assert_eq!(fresh.text(), a.text());
}

/// SIGTERM saves: the `.txt` holds the text and the journal is cut back. An idle document
/// is unloaded and reloads with its text on the next join.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_and_idle_unload_save_the_text() {
    let dir = tempfile_dir();
    let (mut server, port) =
        start_server(dir.path(), &["--idle-unload", "1", "--save-interval", "1"]);
    let mut a = Client::join(port, "kept", "alice").await;
    a.insert(0, "héllo\n").await;
    assert!(a.settle(T).await);
    a.disconnect();
    assert!(
        server
            .wait_for("document kept unloaded (idle)", T)
            .is_some(),
        "{}",
        server.stderr_text()
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("kept.txt")).unwrap(),
        "héllo\n"
    );
    let mut b = Client::join(port, "kept", "bob").await;
    assert_eq!(b.text(), "héllo\n");
    assert_eq!(b.sync.revision(), Some(1));
    b.insert(6, "wörld\n").await;
    assert!(b.settle(T).await);

    server.signal(libc::SIGTERM);
    let status = server.wait_exit(T).expect("server exits on SIGTERM");
    assert!(status.success(), "{status:?}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("kept.txt")).unwrap(),
        "héllo\nwörld\n"
    );
    let files: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        files.iter().all(|f| !f.ends_with(".tmp")),
        "temp files left: {files:?}"
    );
}

/// A client flooding cursor moves reaches the others at a bounded rate (latest position
/// wins), so it cannot fill their queues and get them disconnected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_flood_is_rate_limited() {
    let dir = tempfile_dir();
    let (server, port) = start_server(dir.path(), &["--client-queue", "64"]);
    let mut watcher = Client::join(port, "flood", "watcher").await;
    watcher.insert(0, "0123456789").await;
    assert!(watcher.settle(T).await);
    let mut flooder = raw_connect(port).await;
    flooder
        .send(&ClientMsg::Join {
            document: "flood".into(),
            name: "flooder".into(),
            key: 99,
            known_revision: None,
            token: None,
        })
        .await
        .unwrap();
    // The watcher does not read during the flood: without the rate limit its socket
    // buffers and then its 64-message queue would overflow and it would be dropped.
    for i in 0..200_000usize {
        let msg = ClientMsg::Presence {
            base_revision: 1,
            selection: Some(Selection::cursor(i % 11)),
        };
        flooder.feed(&msg).await.unwrap();
    }
    flooder.flush().await.unwrap();
    let last = Selection::cursor(199_999 % 11);
    let settled = watcher
        .wait_until(T, |s| {
            s.participants()
                .any(|p| p.name == "flooder" && p.selection == Some(last))
        })
        .await;
    assert!(settled, "the last cursor position never arrived");
    assert!(watcher.errors.is_empty(), "{:?}", watcher.errors);
    assert!(watcher.conn.is_some(), "the watcher was disconnected");
    assert!(!server.stderr_text().contains("queue full"));
}

/// Revision numbers are only meaningful within one incarnation of a document: if its files
/// are replaced while the server is down, a reconnecting client gets a fresh snapshot even
/// when the new document has reached the revision the client remembers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaced_document_files_mean_a_fresh_snapshot() {
    let dir = tempfile_dir();
    let (mut server, port) = start_server(dir.path(), &[]);
    let mut a = Client::join(port, "e", "alice").await;
    a.insert(0, "old text\n").await;
    assert!(a.settle(T).await);
    server.kill9();
    a.disconnect();
    std::fs::remove_file(dir.path().join("e.journal")).unwrap();
    std::fs::write(dir.path().join("e.txt"), "new\n").unwrap();

    let (_server, port) = start_server(dir.path(), &[]);
    let mut b = Client::join(port, "e", "bob").await;
    b.insert(4, "x\n").await;
    assert!(b.settle(T).await);
    assert_eq!(b.sync.revision(), a.sync.revision());
    a.reconnect(port).await;
    assert_eq!(a.resets, vec![false, false]);
    assert_eq!(a.text(), "new\nx\n");
}

/// The protocol allows one unacknowledged change: a client that pipelines a second one is
/// told so and disconnected; its first change stands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_changes_are_refused() {
    let dir = tempfile_dir();
    let (_server, port) = start_server(dir.path(), &[]);
    let mut conn = raw_connect(port).await;
    conn.send(&ClientMsg::Join {
        document: "pipe".into(),
        name: "eager".into(),
        key: 5,
        known_revision: None,
        token: None,
    })
    .await
    .unwrap();
    let first = e2e::editor::recv_after_access(&mut conn, T).await;
    assert!(
        matches!(first, ServerMsg::Snapshot { revision: 0, .. }),
        "{first:?}"
    );
    let one = TextOperation::splice(0, 0, 0, "a").unwrap();
    let two = TextOperation::splice(1, 0, 0, "b").unwrap();
    conn.feed(&ClientMsg::Change {
        base_revision: 0,
        seq: 1,
        op: one,
    })
    .await
    .unwrap();
    conn.feed(&ClientMsg::Change {
        base_revision: 0,
        seq: 2,
        op: two,
    })
    .await
    .unwrap();
    conn.flush().await.unwrap();
    let (code, reason) = expect_error(&mut conn, T).await.expect("an error");
    assert_eq!(code, ErrorCode::InFlight, "{reason}");
    let reader = Client::join(port, "pipe", "reader").await;
    assert_eq!(reader.text(), "a");
}
