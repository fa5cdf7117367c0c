//! The editor client never throws away typing: with the server down, quitting the
//! full-screen client asks first and, if told to quit anyway, saves the unacknowledged edits
//! to a recovery file and exits non-zero; line mode gives up after `--wait` the same way;
//! `--recover FILE` resends them after the server is back, each applied exactly once.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use e2e::editor::start_server;
use e2e::tmux::Tmux;
use e2e::TempDir;
use e2e::{bin_path, Proc};

const T: Duration = Duration::from_secs(30);

/// `editor-client` with its state directory (where recovery files go) under `state`.
fn client(state: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(bin_path("editor-client"));
    // start_server runs a plaintext server (--no-tls); the client must say so too.
    cmd.arg("--no-tls").args(args).env("XDG_STATE_HOME", state);
    cmd
}

/// The recovery files in `state`'s editor-client directory.
fn recovery_files(state: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(state.join("editor-client")) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
    files.sort();
    files
}

/// Runs a client to the end with empty input; returns (exit status, stdout, stderr).
fn run_to_end(mut cmd: Command) -> (std::process::ExitStatus, String, String) {
    cmd.stdin(Stdio::null());
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The document's text as a fresh `--print` client sees it.
fn server_text(port: u16, doc: &str, state: &Path) -> String {
    let port = port.to_string();
    let (status, stdout, stderr) = run_to_end(client(
        state,
        &["127.0.0.1", "--port", &port, "--doc", doc, "--print"],
    ));
    assert!(status.success(), "{stderr}");
    stdout
}

#[test]
fn line_mode_gives_up_after_wait_and_recover_resends_each_line_exactly_once() {
    let dir = TempDir::new("lines");
    let data = dir.0.join("data");
    let state = dir.0.join("state");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("rec.txt"), "start\n").unwrap();
    let (mut server, port) = start_server(&data, &[]);
    let port_s = port.to_string();

    let mut cmd = client(
        &state,
        &[
            "127.0.0.1",
            "--port",
            &port_s,
            "--doc",
            "rec",
            "--lines",
            "--wait",
            "2",
        ],
    );
    cmd.env("RUST_LOG", "info");
    let mut lines = Proc::spawn("editor-client", cmd);
    // Joined once it has printed the document.
    let mut stdout = std::io::BufReader::new(lines.take_stdout());
    let mut first = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut first).unwrap();
    assert_eq!(first, "start\n");
    server.kill9();
    assert!(
        lines.wait_for("connection lost", T).is_some(),
        "{}",
        lines.stderr_text()
    );
    lines.write_stdin("one\ntwo\n");
    drop(lines.child.stdin.take());

    assert!(
        lines
            .wait_for("waiting for the server to save", T)
            .is_some(),
        "{}",
        lines.stderr_text()
    );
    let started = Instant::now();
    let status = lines.wait_exit(T).expect("line mode gave up in time");
    assert_eq!(status.code(), Some(1), "{}", lines.stderr_text());
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "gave up before --wait 2: {:?}",
        started.elapsed()
    );
    let files = recovery_files(&state);
    assert_eq!(files.len(), 1, "{files:?}");
    let file = &files[0];
    assert_eq!(
        file.file_name().unwrap().to_str().unwrap(),
        format!("127.0.0.1_{port}_rec.json")
    );
    let said = lines
        .wait_for("gave up waiting for the server after 2 s", T)
        .unwrap_or_else(|| panic!("{}", lines.stderr_text()));
    assert!(
        said.contains(&format!("--recover {}", file.display())),
        "{said}"
    );

    // The file: document, server, the local text and the changes that make it.
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
    assert_eq!(json["document"], "rec");
    assert_eq!(json["server"], format!("127.0.0.1:{port}"));
    assert_eq!(json["unsaved"]["text"], "start\none\ntwo\n");
    assert_eq!(json["changes"], 2, "{json}");
    let backup = dir.0.join("backup.json");
    std::fs::copy(file, &backup).unwrap();

    // The server comes back; the next client for this document mentions the file...
    let data_s = data.to_str().unwrap();
    let server = Proc::start(
        "editor-server",
        &[
            "--port",
            &port_s,
            "--bind",
            "127.0.0.1",
            "--data-dir",
            data_s,
            "--no-tls",
        ],
    );
    assert_eq!(server.listening_port(), port);
    assert_eq!(server_text(port, "rec", &state), "start\n");
    let (status, _, stderr) = run_to_end(client(
        &state,
        &["127.0.0.1", "--port", &port_s, "--doc", "rec", "--lines"],
    ));
    assert!(status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("--recover {}", file.display())),
        "{stderr}"
    );

    // ...and --recover resends both lines, then deletes the file.
    let recover = file.to_str().unwrap();
    let (status, stdout, stderr) = run_to_end(client(
        &state,
        &["127.0.0.1", "--port", &port_s, "--recover", recover],
    ));
    assert!(status.success(), "{stderr}");
    assert_eq!(stdout, "start\none\ntwo\n");
    assert!(
        stderr.contains("saved by the server; file removed"),
        "{stderr}"
    );
    assert!(!file.exists());
    assert_eq!(server_text(port, "rec", &state), "start\none\ntwo\n");

    // Resending the same changes again (a copy of the file) applies nothing twice.
    let (status, stdout, stderr) = run_to_end(client(
        &state,
        &[
            "127.0.0.1",
            "--port",
            &port_s,
            "--recover",
            backup.to_str().unwrap(),
        ],
    ));
    assert!(status.success(), "{stderr}");
    assert_eq!(stdout, "start\none\ntwo\n");
    assert_eq!(server_text(port, "rec", &state), "start\none\ntwo\n");
}

#[test]
#[cfg_attr(not(e2e_tmux), ignore = "needs tmux")]
fn full_screen_quit_while_the_server_is_down_asks_then_saves_a_recovery_file() {
    e2e::require_tool("tmux", "tmux");
    let dir = TempDir::new("tui");
    let data = dir.0.join("data");
    let state = dir.0.join("state");
    let (mut server, port) = start_server(&data, &[]);
    let status_file = dir.0.join("status");
    let stderr_file = dir.0.join("stderr");
    // The shell records the exit status and stderr, then stays, so the pane can be read.
    let command = format!(
        "XDG_STATE_HOME={} {} 127.0.0.1 --port {port} --no-tls --doc tuirec --name carol 2>{}; echo $? >{}; sleep 60",
        state.display(),
        bin_path("editor-client").display(),
        stderr_file.display(),
        status_file.display()
    );
    let tmux = Tmux::start("editor-recovery", 100, 30, &command);
    tmux.wait_text("the status line", T, |s| {
        s.contains("carol (you)") && s.contains("connected")
    });

    server.kill9();
    tmux.wait_text("reconnecting", T, |s| s.contains("reconnecting"));
    tmux.type_text("hello");
    tmux.wait_text("the count of waiting changes", T, |s| {
        s.contains("hello") && s.contains("change") && s.contains("waiting")
    });

    // Ctrl-Q asks; anything but y goes back to editing.
    tmux.keys(&["C-q"]);
    tmux.wait_text("the question", T, |s| {
        s.contains("not yet saved by the server (reconnecting…). Quit anyway? y/N")
    });
    tmux.keys(&["n"]);
    tmux.wait_text("back to editing", T, |s| !s.contains("Quit anyway?"));
    assert!(!status_file.exists(), "the client quit on n");

    // Ctrl-C asks the same; y quits with a recovery file and a non-zero status.
    tmux.keys(&["C-c"]);
    tmux.wait_text("the question again", T, |s| s.contains("Quit anyway? y/N"));
    tmux.keys(&["y"]);
    let deadline = Instant::now() + T;
    while !status_file.exists() || std::fs::read_to_string(&status_file).unwrap().is_empty() {
        assert!(Instant::now() < deadline, "the client did not exit");
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = std::fs::read_to_string(&status_file).unwrap();
    let stderr = std::fs::read_to_string(&stderr_file).unwrap();
    assert_eq!(status.trim(), "1", "{stderr}");
    let files = recovery_files(&state);
    assert_eq!(files.len(), 1, "{files:?}; {stderr}");
    assert!(
        stderr.contains(&format!("--recover {}", files[0].display())),
        "{stderr}"
    );
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&files[0]).unwrap()).unwrap();
    assert_eq!(json["unsaved"]["text"], "hello");
    assert_eq!(json["document"], "tuirec");
}
