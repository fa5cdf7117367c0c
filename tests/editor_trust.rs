//! End-to-end tests of issue 13 with the real `editor-server` and `editor-client`: TLS
//! with trust on first use, access tokens, one server per data directory, viewing that
//! creates nothing and a byte-exact `--print`.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use e2e::echo::{run_with_input, HANG_GUARD};
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
        .args(args);
    run_client(cmd, config, input)
}

/// Runs an `editor-client` command to its end with `input` on stdin, its own config
/// directory and no token from the environment.
fn run_client(mut cmd: Command, config: &Path, input: &str) -> Output {
    cmd.env("XDG_CONFIG_HOME", config)
        .env_remove("EDITOR_TOKEN");
    run_with_input(cmd, input.as_bytes(), HANG_GUARD)
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

/// The id of the most recently minted token (`token --list`'s first column).
fn last_token_id(data: &Path) -> String {
    let out = Command::new(bin_path("editor-server"))
        .args(["token", "--list", "--data-dir", data.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let list = String::from_utf8(out.stdout).unwrap();
    let last = list
        .lines()
        .last()
        .unwrap_or_else(|| panic!("no tokens: {list}"));
    last.split_whitespace().next().unwrap().to_owned()
}

/// A line-mode client holding its stdin open (as a person at a pipe would), with a token.
fn line_client(config: &Path, port: u16, token: &str) -> Proc {
    let mut cmd = Command::new(bin_path("editor-client"));
    cmd.args(["127.0.0.1", "--port", &port.to_string(), "--no-tls"])
        .args(["--doc", "live", "--lines", "--token", token])
        .env("XDG_CONFIG_HOME", config)
        .env_remove("EDITOR_TOKEN");
    Proc::spawn("editor-client", cmd)
}

/// Waits for the client to exit on its own (its stdin still open) and checks it failed
/// with `reason` on stderr, after one session only: no reconnect loop.
fn ends_with_reason(client: &mut Proc, srv: &Proc, reason: &str, since: std::time::Instant) {
    let status = client
        .wait_exit(Duration::from_secs(15))
        .unwrap_or_else(|| {
            panic!(
                "the client is still running {:?} later; its stderr:\n{}",
                since.elapsed(),
                client.stderr_text()
            )
        });
    let err = client.stderr_text();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains(reason), "{reason:?} missing from: {err}");
    let connects = srv
        .stderr_lines()
        .iter()
        .filter(|l| l.contains("client connected:") && l.contains("on document live"))
        .count();
    assert_eq!(connects, 1, "reconnected:\n{}", srv.stderr_text());
}

#[test]
fn a_token_revoked_or_expiring_during_a_session_ends_it_with_the_reason() {
    let dir = TempDir::new("revoke");
    let (data, config) = (dir.0.join("data"), dir.0.join("cfg"));
    let srv = server(&data, 0, &["--no-tls", "--require-token"]);
    let port = srv.listening_port();

    let rw = mint(&data, &["--doc", "live", "--read-write", "--label", "rita"]);
    let id = last_token_id(&data);
    let mut rita = line_client(&config, port, &rw);
    rita.write_stdin("typed before the revocation\n");
    assert!(
        srv.wait_for("rita r1 ", T).is_some(),
        "{}",
        srv.stderr_text()
    );
    let out = Command::new(bin_path("editor-server"))
        .args([
            "token",
            "--data-dir",
            data.to_str().unwrap(),
            "--revoke",
            &id,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let revoked_at = std::time::Instant::now();
    ends_with_reason(
        &mut rita,
        &srv,
        &format!("token {id} was revoked"),
        revoked_at,
    );
    // "Within a few seconds": the session re-checks its token every second.
    assert!(
        revoked_at.elapsed() < Duration::from_secs(5),
        "took {:?}",
        revoked_at.elapsed()
    );
    drop(srv);

    // A token that runs out while in use.
    let dir = TempDir::new("expire");
    let (data, config) = (dir.0.join("data"), dir.0.join("cfg"));
    let srv = server(&data, 0, &["--no-tls", "--require-token"]);
    let port = srv.listening_port();
    let short = mint(&data, &["--doc", "live", "--read-write", "--expires", "3s"]);
    let started = std::time::Instant::now();
    let mut eve = line_client(&config, port, &short);
    assert!(srv.wait_for("client connected:", T).is_some());
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "joined too late to see the expiry happen during the session"
    );
    ends_with_reason(&mut eve, &srv, "token expired", started);
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn the_journal_names_the_token_that_made_each_change_never_the_token() {
    let dir = TempDir::new("journal");
    let (data, config) = (dir.0.join("data"), dir.0.join("cfg"));
    let srv = server(&data, 0, &["--no-tls"]);
    let port = srv.listening_port();
    let rw = mint(&data, &["--doc", "audit", "--read-write"]);
    let id = last_token_id(&data);
    let args = ["--no-tls", "--doc", "audit", "--token", rw.as_str()];
    let out = client(&config, port, &args, "with a token\n");
    assert!(out.status.success(), "{}", stderr(&out));
    // A loopback client without a token: its change is recorded with no token id.
    let out = client(&config, port, &["--no-tls", "--doc", "audit"], "without\n");
    assert!(out.status.success(), "{}", stderr(&out));
    let journal = std::fs::read(data.join("audit.journal")).unwrap();
    let count = |needle: &[u8]| {
        journal
            .windows(needle.len())
            .filter(|w| *w == needle)
            .count()
    };
    assert_eq!(
        count(id.as_bytes()),
        1,
        "the token id is recorded once, with its change"
    );
    assert_eq!(
        count(rw.as_bytes()),
        0,
        "the token itself is in the journal"
    );
    // The id is there with the first change and the journal still loads: a restarted
    // server serves both changes.
    drop(srv);
    let srv = server(&data, 0, &["--no-tls"]);
    let port = srv.listening_port();
    let out = client(
        &config,
        port,
        &["--no-tls", "--doc", "audit", "--print"],
        "",
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "with a token\nwithout\n"
    );
}

/// A test certificate authority: its certificate (PEM) and a signer of server certificates.
struct TestCa {
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
}

impl TestCa {
    fn new(name: &str) -> TestCa {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        TestCa { cert, key }
    }

    /// Writes `NAME.pem` (certificate) and `NAME.key` for `names` into `dir`.
    fn issue(&self, dir: &Path, name: &str, names: &[&str]) -> (PathBuf, PathBuf) {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let params = rcgen::CertificateParams::new(names).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        let (cert_path, key_path) = (
            dir.join(format!("{name}.pem")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (cert_path, key_path)
    }
}

#[test]
fn a_certificate_from_an_authority_is_verified_against_ca() {
    let dir = TempDir::new("ca");
    let config = dir.0.join("cfg");
    let (ours, theirs) = (TestCa::new("e2e test CA"), TestCa::new("another CA"));
    let ca_file = dir.0.join("ca.pem");
    std::fs::write(&ca_file, ours.cert.pem()).unwrap();
    let other_ca_file = dir.0.join("other-ca.pem");
    std::fs::write(&other_ca_file, theirs.cert.pem()).unwrap();
    let (cert, key) = ours.issue(&dir.0, "server", &["127.0.0.1", "localhost"]);
    let srv = server(
        &dir.0.join("data"),
        0,
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    let port = srv.listening_port();
    let ca = ca_file.to_str().unwrap();
    let out = client(&config, port, &["--doc", "d", "--ca", ca], "signed\n");
    assert!(out.status.success(), "{}", stderr(&out));
    let out = client(&config, port, &["--doc", "d", "--ca", ca, "--print"], "");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "signed\n");
    // An authority's certificate is not a first use to remember.
    assert!(
        !config.join("editor/known_servers").exists(),
        "--ca recorded a fingerprint"
    );

    // The same server under another authority: refused, saying why.
    let other = other_ca_file.to_str().unwrap();
    let out = client(&config, port, &["--doc", "d", "--ca", other, "--print"], "");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("is not valid under --ca"), "{err}");
    assert!(out.stdout.is_empty());
    drop(srv);

    // Signed by our authority, but for another host: refused too.
    let (cert, key) = ours.issue(&dir.0, "elsewhere", &["elsewhere.example"]);
    let srv = server(
        &dir.0.join("data2"),
        0,
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    let port = srv.listening_port();
    let out = client(&config, port, &["--doc", "d", "--ca", ca, "--print"], "");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("is not valid under --ca"), "{err}");
}

/// Runs `editor-client ARGS` inside `ns` with its own config directory.
fn client_in(ns: &e2e::Netns, config: &Path, args: &[&str], input: &str) -> Output {
    let bin = bin_path("editor-client");
    run_client(ns.command(bin.to_str().unwrap(), args), config, input)
}

#[test]
#[cfg_attr(not(e2e_netns), ignore = "needs root: network namespaces")]
fn by_default_another_machine_needs_a_token_and_loopback_does_not() {
    let dir = TempDir::new("netns");
    let (data, config) = (dir.0.join("data"), dir.0.join("cfg"));
    // Two hosts joined by a veth pair: the server's and another machine.
    let host = e2e::Netns::new("edsrv");
    let other = e2e::Netns::new("edcli");
    other.ip(&[
        "link", "add", "vcli", "type", "veth", "peer", "name", "vsrv", "netns", &host.name,
    ]);
    other.ip(&["addr", "add", "10.201.0.1/24", "dev", "vcli"]);
    other.ip(&["link", "set", "vcli", "up"]);
    host.ip(&["addr", "add", "10.201.0.2/24", "dev", "vsrv"]);
    host.ip(&["link", "set", "vsrv", "up"]);

    // The server's default flags: every interface, default port, TLS, no --require-token.
    let bin = bin_path("editor-server");
    let srv = Proc::spawn(
        "editor-server",
        host.command(
            bin.to_str().unwrap(),
            &["--data-dir", data.to_str().unwrap()],
        ),
    );
    let port = srv.listening_port().to_string();
    let fp = fingerprint_of(&srv);
    let remote = |args: &[&str], input: &str| {
        let mut all = vec!["10.201.0.2", "--port", &port, "--trust-fingerprint", &fp];
        all.extend_from_slice(args);
        client_in(&other, &config, &all, input)
    };

    let out = remote(&["--doc", "shared", "--print"], "");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("needs an access token"), "{err}");
    assert!(
        srv.wait_for("10.201.0.1:", T).is_some(),
        "the refusal names the other machine's address: {}",
        srv.stderr_text()
    );

    let token = mint(
        &data,
        &["--doc", "shared", "--read-write", "--label", "remote"],
    );
    let out = remote(&["--doc", "shared", "--token", &token], "from afar\n");
    assert!(out.status.success(), "{}", stderr(&out));

    // On the server's own machine, loopback needs no token.
    let local = ["127.0.0.1", "--port", &port, "--trust-fingerprint", &fp];
    let mut args = local.to_vec();
    args.extend_from_slice(&["--doc", "shared"]);
    let out = client_in(&host, &config, &args, "from here\n");
    assert!(out.status.success(), "{}", stderr(&out));
    args.push("--print");
    let out = client_in(&host, &config, &args, "");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "from afar\nfrom here\n"
    );
    drop(srv);
}
