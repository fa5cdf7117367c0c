//! What a user sees in the first minute with each program: a mistake (a taken port, a
//! server that is not running) is one line on stderr, `PROGRAM: what failed: why`, and exit
//! status 1, without anyhow's `Caused by:` list and without a backtrace, even when
//! `RUST_BACKTRACE=1` is set in the environment.

use std::net::TcpListener;
use std::process::{Command, Output};
use std::time::Duration;

use e2e::bin_path;
use e2e::echo::run_with_input;

const HANG_GUARD: Duration = Duration::from_secs(60);

/// Runs a binary with `RUST_BACKTRACE=1` and no stdin.
fn run(program: &str, args: &[&str]) -> Output {
    let mut cmd = Command::new(bin_path(program));
    cmd.args(args).env("RUST_BACKTRACE", "1");
    run_with_input(cmd, b"", HANG_GUARD)
}

/// Asserts the run failed with status 1 and exactly one `program: ...` line that contains
/// every `wanted` piece, with no chain, backtrace or OS error number anywhere on stderr.
fn assert_one_line_error(program: &str, output: &Output, wanted: &[&str]) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(1), "{program}: {stderr}");
    let prefix = format!("{program}: ");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with(&prefix)).collect();
    assert_eq!(errors.len(), 1, "one error line expected:\n{stderr}");
    for piece in wanted {
        assert!(
            errors[0].contains(piece),
            "{piece:?} missing from:\n{stderr}"
        );
    }
    for noise in ["Caused by", "backtrace", "os error", "Error: "] {
        assert!(!stderr.contains(noise), "{noise:?} on stderr:\n{stderr}");
    }
    errors[0].to_owned()
}

/// A port something listens on (both families), held for the test's duration.
fn taken_port() -> (TcpListener, String) {
    let listener = TcpListener::bind("[::]:0").expect("bind");
    let port = listener.local_addr().expect("addr").port().to_string();
    (listener, port)
}

/// A port nothing listens on (a moment ago).
fn closed_port() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port().to_string()
}

#[test]
fn servers_on_a_taken_port_say_so_in_one_line_with_a_hint() {
    let (_held, port) = taken_port();
    let data = tempfile_dir("taken");
    let output = run("echo-server", &["--port", &port]);
    let line = assert_one_line_error("echo-server", &output, &["in use", "--port"]);
    assert_eq!(
        line.matches("Address already in use").count(),
        1,
        "the OS error once: {line}"
    );
    let output = run(
        "editor-server",
        &["--port", &port, "--data-dir", data.to_str().expect("utf-8")],
    );
    assert_one_line_error("editor-server", &output, &["in use", "--port"]);
    let _ = std::fs::remove_dir_all(&data);
}

#[test]
fn clients_facing_no_server_say_so_in_one_line_with_a_hint() {
    let port = closed_port();
    let output = run("echo-client", &["127.0.0.1", "--port", &port]);
    assert_one_line_error(
        "echo-client",
        &output,
        &["Connection refused", "server running"],
    );
    let output = run("editor-client", &["127.0.0.1", "--port", &port, "--print"]);
    assert_one_line_error(
        "editor-client",
        &output,
        &["Connection refused", "server running"],
    );
}

fn tempfile_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("e2e-cli-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn editor_client_without_user_in_the_environment_uses_the_system_login_name() {
    let login = Command::new("id").arg("-un").output().expect("id -un");
    let login = String::from_utf8_lossy(&login.stdout).trim().to_owned();
    assert!(!login.is_empty(), "id -un printed nothing");
    let data = tempfile_dir("login");
    let (server, port) = e2e::editor::start_server(&data, &[]);
    let mut cmd = Command::new(bin_path("editor-client"));
    cmd.args([
        "127.0.0.1",
        "--no-tls",
        "--port",
        &port.to_string(),
        "--print",
    ])
    .env_remove("USER")
    .env_remove("LOGNAME");
    let output = run_with_input(cmd, b"", HANG_GUARD);
    assert!(output.status.success(), "{output:?}");
    let wanted = format!("{login:?} on document default");
    assert!(
        server.wait_for(&wanted, HANG_GUARD).is_some(),
        "server log lacks {wanted}:\n{}",
        server.stderr_text()
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&data);
}

#[test]
fn p2p_node_on_a_taken_port_fails_at_once_and_creates_nothing() {
    let held = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = held.local_addr().expect("addr").port();
    let spare = closed_port();
    let dir = tempfile_dir("p2p-taken");
    let output = run(
        "p2p-node",
        &[
            "--id",
            "1",
            "--peer",
            &format!("1=127.0.0.1:{port}"),
            "--peer",
            &format!("2=127.0.0.1:{spare}"),
            "--dir",
            dir.to_str().expect("utf-8"),
            "--index-log",
            dir.with_extension("log").to_str().expect("utf-8"),
        ],
    );
    assert_one_line_error(
        "p2p-node",
        &output,
        &[&format!(
            "port {port} is in use (is node 1 already running?)"
        )],
    );
    assert!(!dir.exists(), "{} was created", dir.display());
}

/// Asserts a usage error as clap gives it: exit status 2, `error: ...` first, the usage,
/// a pointer to `--help`, a few lines and no backtrace (RUST_BACKTRACE=1 is set).
fn assert_usage_error(program: &str, output: &Output) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{program}: {stderr}");
    assert!(
        stderr.starts_with("error: unexpected argument '--no-such-flag'"),
        "{program}: {stderr}"
    );
    assert!(stderr.contains("Usage: "), "{program}: {stderr}");
    assert!(stderr.contains("try '--help'"), "{program}: {stderr}");
    assert!(stderr.lines().count() <= 10, "{program}: {stderr}");
    for noise in ["backtrace", "panicked", "Caused by"] {
        assert!(!stderr.contains(noise), "{program}: {noise:?} in {stderr}");
    }
}

/// Issue 16: a mistyped flag is clap's usage error (exit 2, no backtrace), and every
/// program's `--help` ends with examples; p2p-node's lists its console commands one a line.
#[test]
fn every_program_answers_help_with_examples_and_a_wrong_flag_with_its_usage() {
    for program in [
        "echo-server",
        "echo-client",
        "editor-server",
        "editor-client",
        "p2p-node",
    ] {
        assert_usage_error(program, &run(program, &["--no-such-flag"]));
        let help = run(program, &["--help"]);
        let text = String::from_utf8_lossy(&help.stdout);
        assert_eq!(help.status.code(), Some(0), "{program}: {text}");
        assert!(text.contains("\nExamples:\n"), "{program}: {text}");
    }
    let help = run("p2p-node", &["--help"]);
    let text = String::from_utf8_lossy(&help.stdout);
    let console = text
        .split("Console commands")
        .nth(1)
        .unwrap_or_else(|| panic!("no console commands in:\n{text}"));
    for command in ["leader", "peers", "files", "get NAME", "help", "quit"] {
        assert!(
            console.lines().any(|l| l.trim_start().starts_with(command)),
            "console command {command:?} not on a line of its own:\n{text}"
        );
    }
}

/// Issue 16: the examples (benchmark drivers) parse their flags like the programs do:
/// `--help` prints usage and examples and exits 0 (it used to be "unknown flag --help" and
/// a backtrace), an unknown flag is clap's usage error.
#[test]
fn examples_answer_help_and_refuse_unknown_flags_like_the_programs() {
    let dir = e2e::fresh_bins::fresh_example_dir();
    for example in [
        "latency",
        "hold",
        "sync_cost",
        "connect_time",
        "flood",
        "hash_speed",
    ] {
        let path = dir.join(example);
        let run = |args: &[&str]| {
            let mut cmd = Command::new(&path);
            cmd.args(args).env("RUST_BACKTRACE", "1");
            run_with_input(cmd, b"", HANG_GUARD)
        };
        let help = run(&["--help"]);
        let text = String::from_utf8_lossy(&help.stdout);
        assert_eq!(help.status.code(), Some(0), "{example}: {text}");
        assert!(text.contains("Usage: "), "{example}: {text}");
        assert!(text.contains("Example"), "{example}: {text}");
        assert_usage_error(example, &run(&["--no-such-flag"]));
    }
}
