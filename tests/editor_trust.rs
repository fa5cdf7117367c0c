//! End-to-end tests of issue 13 with the real `editor-server` and `editor-client`: TLS
//! with trust on first use, access tokens, one server per data directory, viewing that
//! creates nothing and a byte-exact `--print`.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use e2e::{bin_path, Proc};

const T: Duration = Duration::from_secs(30);

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("e2e-trust-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn server(data: &Path, port: u16, extra: &[&str]) -> Proc {
    let port = port.to_string();
    let mut args = vec![
        "--port",
        &port,
        "--bind",
        "127.0.0.1",
        "--data-dir",
        data.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    Proc::start("editor-server", &args)
}

/// Runs `editor-client 127.0.0.1 --port PORT ARGS` with its own config directory.
fn client(config: &Path, port: u16, args: &[&str], input: &str) -> Output {
    let mut cmd = Command::new(bin_path("editor-client"));
    cmd.args(["127.0.0.1", "--port", &port.to_string()])
        .args(args)
        .env("XDG_CONFIG_HOME", config)
        .env_remove("EDITOR_TOKEN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn fingerprint_of(server: &Proc) -> String {
    let line = server.wait_for("TLS certificate SHA256:", T).unwrap();
    let start = line.find("SHA256:").unwrap();
    line[start..start + 7 + 64].to_owned()
}

fn mint(data: &Path, args: &[&str]) -> String {
    let out = Command::new(bin_path("editor-server"))
        .args(["token", "--data-dir", data.to_str().unwrap()])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[test]
fn tls_first_use_is_recorded_a_changed_certificate_refused_and_a_pin_accepted() {
    let dir = TempDir::new("tls");
    let (data_a, data_b, config) = (dir.0.join("a"), dir.0.join("b"), dir.0.join("cfg"));
    let mut first = server(&data_a, 0, &[]);
    let port = first.listening_port();
    let fp_a = fingerprint_of(&first);
    let out = client(&config, port, &["--doc", "d"], "over tls\n");
    assert!(out.status.success(), "{}", stderr(&out));
    let known = config.join("editor/known_servers");
    let recorded = std::fs::read_to_string(&known).unwrap();
    assert!(
        recorded.contains(&format!("127.0.0.1:{port} {fp_a}")),
        "{recorded}"
    );
    let out = client(&config, port, &["--doc", "d", "--print"], "");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "over tls\n");
    first.kill9();
    let _ = first.wait_exit(T);

    // Another server (another certificate) on the same address: refused, loudly.
    let second = server(&data_b, port, &[]);
    assert_eq!(second.listening_port(), port);
    let fp_b = fingerprint_of(&second);
    assert_ne!(fp_a, fp_b);
    let out = client(&config, port, &["--doc", "d", "--print"], "");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    for wanted in ["CHANGED", &fp_a, &fp_b, known.to_str().unwrap()] {
        assert!(err.contains(wanted), "{wanted:?} missing from: {err}");
    }
    let out = client(
        &config,
        port,
        &["--doc", "d", "--print", "--trust-fingerprint", &fp_b],
        "",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    // A plaintext client is not served by a TLS server.
    let out = client(&config, port, &["--doc", "d", "--print", "--no-tls"], "");
    assert!(!out.status.success());
}

#[test]
fn tokens_are_checked_in_the_join_and_refusals_are_plain_words() {
    let dir = TempDir::new("tokens");
    let (data, config) = (dir.0.join("data"), dir.0.join("cfg"));
    let srv = server(&data, 0, &["--require-token"]);
    let port = srv.listening_port();
    let fp = fingerprint_of(&srv);
    let pin = ["--trust-fingerprint", fp.as_str()];
    let with = |token: &str, doc: &str, extra: &[&str], input: &str| {
        let mut args = vec!["--doc", doc, "--token", token];
        args.extend_from_slice(&pin);
        args.extend_from_slice(extra);
        client(&config, port, &args, input)
    };

    let mut args = vec!["--doc", "notes", "--print"];
    args.extend_from_slice(&pin);
    let out = client(&config, port, &args, "");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("needs an access token"),
        "{}",
        stderr(&out)
    );

    let rw = mint(
        &data,
        &["--doc", "notes*", "--read-write", "--label", "alice"],
    );
    let out = with(&rw, "notes", &["--name", "mallory"], "hello\n");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        srv.wait_for("\"alice\" on document notes", T).is_some(),
        "the label is the display name: {}",
        srv.stderr_text()
    );

    let mut forged = rw.clone().into_bytes();
    let at = forged.len() - 5;
    forged[at] = if forged[at] == b'A' { b'B' } else { b'A' };
    let out = with(
        std::str::from_utf8(&forged).unwrap(),
        "notes",
        &["--print"],
        "",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("not issued by this server"),
        "{}",
        stderr(&out)
    );

    let out = with(&rw, "diary", &["--print"], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("this token is for documents notes*, not diary"),
        "{}",
        stderr(&out)
    );

    let expiring = mint(&data, &["--doc", "*", "--read-write", "--expires", "1s"]);
    std::thread::sleep(Duration::from_millis(2100));
    let out = with(&expiring, "notes", &["--print"], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("token expired"), "{}", stderr(&out));

    let ro = mint(&data, &["--doc", "notes", "--read-only"]);
    let out = with(&ro, "notes", &["--print"], "");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\n");
    let out = with(&ro, "notes", &["--lines"], "vandalism\n");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("read-only"), "{}", stderr(&out));
    let out = with(&rw, "notes", &["--print"], "");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\n");
}

#[test]
fn a_second_server_on_one_data_directory_refuses_to_start_naming_the_first() {
    let dir = TempDir::new("lock");
    let first = server(&dir.0, 0, &["--no-tls"]);
    let _ = first.listening_port();
    let out = Command::new(bin_path("editor-server"))
        .args([
            "--port",
            "0",
            "--bind",
            "127.0.0.1",
            "--no-tls",
            "--data-dir",
        ])
        .arg(&dir.0)
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("process {}", first.pid())),
        "names the holder: {err}"
    );
}

#[test]
fn viewing_creates_nothing_and_print_is_byte_exact() {
    let dir = TempDir::new("view");
    let (data, config) = (dir.0.join("data"), dir.0.join("cfg"));
    let srv = server(&data, 0, &["--no-tls"]);
    let port = srv.listening_port();
    let out = client(
        &config,
        port,
        &["--no-tls", "--doc", "ghost", "--print"],
        "",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(out.stdout.is_empty());
    let files: Vec<String> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|f| f.starts_with("ghost"))
        .collect();
    assert!(files.is_empty(), "viewing created {files:?}");

    // A document that does not end with a newline is printed without one.
    std::fs::write(data.join("exact.txt"), "no newline at the end").unwrap();
    let out = client(
        &config,
        port,
        &["--no-tls", "--doc", "exact", "--print"],
        "",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(out.stdout, b"no newline at the end");
}
