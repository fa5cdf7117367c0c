#![allow(clippy::unwrap_used)]
//! End-to-end tests of `editor-client` (issue 6): trace replay, reconnecting across a
//! server restart, and the full-screen mode driven inside tmux, each against a real
//! `editor-server` on an OS-chosen port (see `support/editor.rs`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use e2e::editor::{start_server, Client};
use e2e::tmux::Tmux;
use e2e::TempDir;

const T: Duration = Duration::from_secs(20);

/// The editing traces committed under `bench/traces/`.
fn trace(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../bench/traces")
        .join(name)
}

fn client_cmd(port: u16, extra: &[&str]) -> Command {
    let mut cmd = Command::new(e2e::bin_path("editor-client"));
    cmd.args(["127.0.0.1", "--no-tls", "--port", &port.to_string()])
        .args(extra);
    cmd
}

/// `--replay` of a real trace with observers converges and prints the JSON summary; a
/// trace whose endContent does not match its patches is reported and exits 1.
#[test]
fn replay_converges_and_reports_mismatches() {
    let dir = TempDir::new("editor-client");
    let (_server, port) = start_server(dir.path(), &[]);
    let svelte = trace("sveltecomponent.json.gz");
    assert!(svelte.exists(), "{} is missing", svelte.display());
    let out = client_cmd(
        port,
        &[
            "--replay",
            svelte.to_str().unwrap(),
            "--observers",
            "3",
            "--json",
        ],
    )
    .output()
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(summary["edits"], 19_749);
    assert_eq!(summary["observers"], 3);
    assert_eq!(summary["converged"], true);
    assert!(summary["elapsed_ms"].as_f64().unwrap() > 0.0);
    assert!(summary["edits_per_sec"].as_f64().unwrap() > 0.0);

    // The replayed document is on the server, equal to the trace's end.
    let doc = summary["document"].as_str().unwrap().to_owned();
    let out = client_cmd(port, &["--doc", &doc, "--print"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(out.stdout.len() > 10_000);

    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"{"startContent":"","endContent":"xyz","txns":[{"patches":[[0,0,"abc"]]}]}"#,
    )
    .unwrap();
    let out = client_cmd(port, &["--replay", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("converged: NO"), "{stdout}");
}

/// The server is killed (-9) under a connected line-mode client and restarted on the same
/// port and data directory: a line sent just before the kill and a line typed while the
/// server was down both end up in the document exactly once, the client says it is
/// reconnecting, and it exits 0 once everything is acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn line_mode_reconnects_across_a_server_restart() {
    let dir = TempDir::new("editor-client");
    let (mut server, port) = start_server(dir.path(), &[]);
    let port_arg = port.to_string();
    let mut client = e2e::Proc::start(
        "editor-client",
        &[
            "127.0.0.1",
            "--no-tls",
            "--port",
            &port_arg,
            "--doc",
            "restart",
            "--lines",
            "--name",
            "liner",
        ],
    );
    let mut watcher = Client::join(port, "restart", "watcher").await;
    client.write_stdin("one\n");
    assert!(
        watcher.wait_until(T, |s| *s.text() == "one\n").await,
        "{}",
        client.stderr_text()
    );

    // "two" may be in flight, committed without its ack reaching the client, or not sent.
    client.write_stdin("two\n");
    server.kill9();
    watcher.disconnect();
    assert!(
        client.wait_for("reconnecting", T).is_some(),
        "{}",
        client.stderr_text()
    );
    // The last line, then end of input: the client says it waits for the server once it
    // has read everything, "three" included.
    client.write_stdin("three\n");
    drop(client.child.stdin.take());
    assert!(
        client
            .wait_for("waiting for the server to save", T)
            .is_some(),
        "{}",
        client.stderr_text()
    );

    let data = dir.path().to_str().unwrap();
    let server = e2e::Proc::start(
        "editor-server",
        &[
            "--no-tls",
            "--port",
            &port_arg,
            "--bind",
            "127.0.0.1",
            "--data-dir",
            data,
        ],
    );
    assert_eq!(server.listening_port(), port);
    watcher.reconnect(port).await;
    let want = "one\ntwo\nthree\n";
    assert!(
        watcher.wait_until(T, |s| *s.text() == want).await,
        "watcher has {:?}; client stderr:\n{}",
        watcher.text(),
        client.stderr_text()
    );
    assert!(client.wait_for("reconnected", T).is_some());
    let status = client.wait_exit(T).expect("client exits after its acks");
    assert!(status.success(), "{}", client.stderr_text());
    let fresh = Client::join(port, "restart", "fresh").await;
    assert_eq!(fresh.text(), want);
}

/// The full-screen client inside tmux (100x30) against a real server while a protocol
/// client ("bob") edits the same document: typing (including wide characters) reaches bob,
/// bob's edits appear without moving the local cursor's logical position, bob's cursor and
/// name are shown, Backspace and Enter work, the window can be resized, Ctrl-Q quits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(e2e_tmux), ignore = "needs tmux")]
async fn full_screen_client_in_tmux() {
    e2e::require_tool("tmux", "tmux");
    let dir = TempDir::new("editor-client");
    let (mut server, port) = start_server(dir.path(), &[]);
    let mut bob = Client::join(port, "tui", "bob").await;
    bob.insert(0, "first line\nsecond line\n").await;
    assert!(bob.settle(T).await);

    let command = format!(
        "{} 127.0.0.1 --no-tls --port {port} --doc tui --name carol",
        e2e::bin_path("editor-client").display()
    );
    let tmux = Tmux::start("editor-client", 100, 30, &command);
    tmux.wait_screen("the document and status line", T, |s| {
        s[0] == "first line" && s[29].contains("tui") && s[29].contains("carol (you)")
    });
    tmux.wait_cursor((0, 0), T);

    // Bob sees carol join; carol sees bob.
    assert!(
        bob.wait_until(T, |s| s.participants().any(|p| p.name == "carol"))
            .await
    );
    tmux.wait_screen("bob in the status line", T, |s| s[29].contains("bob"));

    // Ctrl-End, then type with wide characters.
    tmux.keys(&["C-End"]);
    tmux.type_text("typed 漢字!");
    let want = "first line\nsecond line\ntyped 漢字!";
    assert!(
        bob.wait_until(T, |s| *s.text() == want).await,
        "bob has {:?}; screen:\n{}",
        bob.text(),
        tmux.screen().join("\n")
    );
    tmux.wait_screen("the typed line", T, |s| s[2] == "typed 漢字!");
    // 6 + 2 * 2 + 1 cells.
    tmux.wait_cursor((11, 2), T);

    // Home, then bob inserts a line at the top and text right at carol's cursor: carol's
    // cursor stays before "typed" (one row lower), so her typing lands there.
    tmux.keys(&["Home"]);
    let deadline = Instant::now() + T;
    while bob
        .sync
        .participants()
        .all(|p| p.name != "carol" || p.selection.map(|s| s.head) != Some(23))
    {
        assert!(Instant::now() < deadline, "carol's cursor never reached 23");
        bob.step(Duration::from_millis(100)).await;
    }
    bob.insert(0, "X\n").await;
    bob.insert(25, "[bob]").await;
    assert!(bob.settle(T).await);
    tmux.wait_screen("bob's edits", T, |s| {
        s[0] == "X" && s[3].starts_with("[bob]typed")
    });
    tmux.type_text("> ");
    let want = "X\nfirst line\nsecond line\n> [bob]typed 漢字!";
    assert!(
        bob.wait_until(T, |s| *s.text() == want).await,
        "bob has {:?}",
        bob.text()
    );
    // Bob's cursor is drawn with his name after the end of his line.
    bob.pump().await;
    let head = bob.sync.text().len_chars();
    let msg = bob
        .sync
        .set_selection(Some(editor::presence::Selection::cursor(head)));
    if let (Some(msg), Some(conn)) = (msg, bob.conn.as_mut()) {
        conn.send(&msg).await.unwrap();
    }
    tmux.wait_screen("bob's name tag", T, |s| {
        s[3].starts_with("> [bob]typed 漢字!") && s[3].contains(" bob")
    });
    tmux.wait_cursor((2, 3), T);

    // Backspace, Enter, End.
    tmux.keys(&["End", "BSpace", "Enter"]);
    tmux.type_text("new");
    let want = "X\nfirst line\nsecond line\n> [bob]typed 漢字\nnew";
    assert!(
        bob.wait_until(T, |s| *s.text() == want).await,
        "bob has {:?}",
        bob.text()
    );

    // A smaller window: the status line moves to the new last row.
    tmux.resize(60, 12);
    tmux.wait_screen("the status line on row 12", T, |s| {
        s.len() >= 12 && s[11].contains("Ctrl-Q quits") && s[4].starts_with("new")
    });

    // The server dies under the full-screen client: the status line says so, typing goes
    // on, and after a restart on the same port what was typed arrives exactly once.
    server.kill9();
    bob.disconnect();
    tmux.wait_screen("reconnecting in the status line", T, |s| {
        s.len() >= 12 && s[11].contains("reconnecting…")
    });
    tmux.type_text(" offline");
    tmux.wait_screen("offline typing", T, |s| s[4].starts_with("new offline"));
    let port_arg = port.to_string();
    let data = dir.path().to_str().unwrap().to_owned();
    let server = e2e::Proc::start(
        "editor-server",
        &[
            "--no-tls",
            "--port",
            &port_arg,
            "--bind",
            "127.0.0.1",
            "--data-dir",
            &data,
        ],
    );
    assert_eq!(server.listening_port(), port);
    bob.reconnect(port).await;
    let want = format!("{want} offline");
    assert!(
        bob.wait_until(T, |s| *s.text() == want).await,
        "bob has {:?}; screen:\n{}",
        bob.text(),
        tmux.screen().join("\n")
    );
    tmux.wait_screen("connected again", T, |s| {
        s[11].contains("connected") && !s[11].contains("reconnecting")
    });

    // A bracketed paste (tmux pastes with the markers when the application asked for
    // them) is inserted as one piece, line breaks included.
    tmux.paste("\npasted one\npasted two");
    let want = format!("{want}\npasted one\npasted two");
    assert!(
        bob.wait_until(T, |s| *s.text() == want).await,
        "bob has {:?}",
        bob.text()
    );

    tmux.keys(&["C-q"]);
    let deadline = Instant::now() + T;
    while tmux.alive() {
        assert!(Instant::now() < deadline, "Ctrl-Q did not quit");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        bob.wait_until(T, |s| s.participants().all(|p| p.name != "carol"))
            .await
    );
    assert_eq!(bob.text(), want);
}

/// Issue 16: at 60 columns the status line drops its least important parts (the revision,
/// the names, the participant count) and keeps the cursor position and the quit hint; a
/// line scrolled sideways shows `<` where text is hidden on the left and `>` where it goes
/// on past the right edge, as nano does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(e2e_tmux), ignore = "needs tmux")]
async fn a_narrow_terminal_keeps_the_cursor_position_and_marks_scrolled_lines() {
    let dir = TempDir::new("editor-client");
    let (_server, port) = start_server(dir.path(), &[]);
    let mut bob = Client::join(port, "narrow", "bob").await;
    let long: String = "0123456789".repeat(10);
    bob.insert(0, &format!("{long}\nshort\n")).await;
    assert!(bob.settle(T).await);
    let command = format!(
        "{} 127.0.0.1 --no-tls --port {port} --doc narrow --name carol",
        e2e::bin_path("editor-client").display()
    );
    let tmux = e2e::tmux::Tmux::start("editor-narrow", 60, 10, &command);
    let status = |s: &[String]| s.get(9).cloned().unwrap_or_default();
    let screen = tmux.wait_screen("the document, scrolled to the start", T, |s| {
        s.len() >= 10 && s[0].ends_with('>') && status(s).contains("Ln 1, Col 1 ")
    });
    assert_eq!(screen[0], format!("{}>", &long[..59]));
    assert_eq!(screen[1], "short");
    let line = status(&screen);
    assert!(line.trim_end().ends_with("Ctrl-Q quits"), "{line:?}");
    assert!(
        line.contains("narrow") && line.contains("connected"),
        "{line:?}"
    );

    tmux.keys(&["End"]);
    let screen = tmux.wait_screen("the long line scrolled to its end", T, |s| {
        status(s).contains("Ln 1, Col 101 ")
    });
    assert_eq!(screen[0], format!("<{}", &long[42..]), "{screen:?}");
    assert_eq!(screen[1], "<", "text hidden on the left: {screen:?}");
    assert!(
        status(&screen).trim_end().ends_with("Ctrl-Q quits"),
        "{screen:?}"
    );

    tmux.keys(&["C-q"]);
    let deadline = Instant::now() + T;
    while tmux.alive() {
        assert!(Instant::now() < deadline, "Ctrl-Q did not quit");
        std::thread::sleep(Duration::from_millis(50));
    }
}
