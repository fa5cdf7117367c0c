//! netutil behaviour that needs a network namespace of its own (and so root): here rather
//! than in `crates/netutil/tests`, because this crate's build script marks such tests
//! ignored where they cannot run (see `support/require.rs`).

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use std::net::SocketAddr;
use std::process::Command;

use e2e::Netns;
use netutil::{bind_tcp, connect, ConnectOptions, Family};

/// Set in the copy of this test binary that runs inside the namespace.
const INNER: &str = "E2E_NETUTIL_INNER_NETNS";

/// `localhost` resolving to both 127.0.0.1 and ::1 reaches an IPv4-only, an IPv6-only and a
/// dual-stack server, preferring IPv6 where both answer. This machine's /etc/hosts may map
/// localhost to 127.0.0.1 only, so the test runs itself again inside a namespace whose own
/// hosts file maps it to both families.
#[test]
#[cfg_attr(not(e2e_netns), ignore = "needs root: network namespaces")]
fn localhost_reaches_every_kind_of_server() {
    if std::env::var_os(INNER).is_some() {
        return tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(localhost_reaches_every_kind_of_server_here());
    }
    let ns = Netns::new("lh");
    ns.set_hosts("127.0.0.1 localhost\n::1 localhost ip6-localhost\n");
    let exe = std::env::current_exe().unwrap();
    let mut inner: Command = ns.command(exe.to_str().unwrap(), &[]);
    inner
        .args([
            "--exact",
            "localhost_reaches_every_kind_of_server",
            "--include-ignored",
            "--nocapture",
        ])
        .env(INNER, "1");
    let out = inner.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "inner test failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("1 passed"), "{stdout}");
}

async fn localhost_reaches_every_kind_of_server_here() {
    let resolved = netutil::resolve("localhost", 1, Family::Any).await.unwrap();
    assert!(
        resolved.iter().any(|a| a.is_ipv4()) && resolved.iter().any(|a| a.is_ipv6()),
        "localhost must resolve to both families here: {resolved:?}"
    );
    let setups: [(&str, Vec<SocketAddr>); 3] = [
        ("IPv4 only", vec!["127.0.0.1:0".parse().unwrap()]),
        ("IPv6 only", vec!["[::1]:0".parse().unwrap()]),
        ("dual stack", vec![]),
    ];
    for (label, binds) in setups {
        let mut listener = bind_tcp(&binds, 0).unwrap();
        let port = listener.port();
        let accept = tokio::spawn(async move { listener.accept().await.map(|(_, p)| p) });
        let (_stream, reached) = connect("localhost", port, &ConnectOptions::default())
            .await
            .unwrap_or_else(|e| panic!("{label}: {e}"));
        let peer = accept.await.unwrap().unwrap();
        println!("{label}: reached {reached} (server saw {peer})");
        match label {
            "IPv4 only" => assert!(reached.is_ipv4(), "{label}: {reached}"),
            _ => assert!(reached.is_ipv6(), "{label}: IPv6 is preferred: {reached}"),
        }
    }
}

/// Without IPv6 (creating an IPv6 socket fails with EAFNOSUPPORT, as on a kernel booted
/// with `ipv6.disable=1`), a server without `--bind` falls back to 0.0.0.0, says so, and
/// serves IPv4. A namespace with `disable_ipv6` set still lets `[::]` bind, so the failure
/// is injected with strace into the first `socket` call, which the trace shows was the
/// IPv6 one.
#[test]
#[cfg_attr(not(e2e_strace), ignore = "needs strace")]
fn without_ipv6_a_server_listens_on_ipv4_everywhere() {
    e2e::require_tool("strace", "strace");
    let trace = std::env::temp_dir().join(format!("e2e-no-ipv6-{}.trace", std::process::id()));
    let mut cmd = Command::new("strace");
    cmd.args(["-f", "-qq", "-e", "trace=socket", "-e"])
        .arg("inject=socket:error=EAFNOSUPPORT:when=1")
        .arg("-o")
        .arg(&trace)
        .arg(e2e::bin_path("echo-server"))
        .args(["--port", "0", "--no-udp"]);
    let server = e2e::Proc::spawn("echo-server", cmd);
    // (Not listening_port(): the warning before it also says "listening on".)
    let line = server
        .wait_for("listening on 0.0.0.0:", std::time::Duration::from_secs(20))
        .unwrap_or_else(|| panic!("no IPv4 listener:\n{}", server.stderr_text()));
    // Killing strace (on drop) would leave the traced server running.
    let _server = e2e::strace::KillOnDrop(e2e::strace::traced_child(&server));
    let port: u16 = line
        .split("0.0.0.0:")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap();
    let calls = std::fs::read_to_string(&trace).unwrap_or_default();
    let _ = std::fs::remove_file(&trace);
    let first = calls.lines().find(|l| l.contains("socket("));
    assert!(
        first.is_some_and(|l| l.contains("socket(AF_INET6") && l.contains("(INJECTED)")),
        "the injected failure did not hit the IPv6 socket:\n{calls}"
    );
    let log = server.stderr_text();
    assert!(log.contains("IPv6 is not available on this host"), "{log}");
    assert!(
        log.contains(&format!("listening on 0.0.0.0:{port} (TCP, IPv4 only)")),
        "{log}"
    );
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    std::io::Write::write_all(&mut stream, b"ping\n").unwrap();
    let mut echo = [0u8; 5];
    std::io::Read::read_exact(&mut stream, &mut echo).unwrap();
    assert_eq!(&echo, b"ping\n");
}
