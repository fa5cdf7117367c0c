//! Connecting: name resolution, Happy Eyeballs racing, and errors that list every attempt.
//!
//! The "silent address" (one that never answers a SYN) is made on loopback: a listener with
//! a backlog of 0 that never accepts, its queue already full, so the kernel drops further
//! SYNs and a connect to it hangs until the OS's own timeout. This needs no root and sends
//! nothing off the machine. (A `blackhole` route is no good here: Linux fails a local connect
//! through it at once with EINVAL, which is the fast-failure case tested separately below.)

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use std::net::{Ipv4Addr, SocketAddr, TcpStream as StdTcpStream};
use std::time::{Duration, Instant};

use netutil::{bind_tcp, connect, connect_addrs, ConnectOptions, Family, NetError};
use socket2::{Domain, Socket, Type};

/// A loopback address that never answers: returned with the sockets that keep it silent.
fn silent_addr() -> (SocketAddr, Socket, Vec<StdTcpStream>) {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket
        .bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, 0)).into())
        .unwrap();
    socket.listen(0).unwrap();
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    // Fill the accept queue; the kernel then drops new SYNs for this port.
    let mut fillers = Vec::new();
    for _ in 0..2 {
        if let Ok(s) = StdTcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            fillers.push(s);
        }
    }
    (addr, socket, fillers)
}

fn closed_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

#[tokio::test]
async fn silent_first_address_costs_only_the_attempt_delay() {
    let (silent, _keep, _fillers) = silent_addr();
    let mut listener = bind_tcp(&["127.0.0.1:0".parse().unwrap()], 0).unwrap();
    let good = listener.local_addrs()[0];
    tokio::spawn(async move { while listener.accept().await.is_ok() {} });

    let options = ConnectOptions::default();
    let started = Instant::now();
    let (_stream, reached) = connect_addrs(&[silent, good], &options).await.unwrap();
    let elapsed = started.elapsed();
    assert_eq!(reached, good);
    // The second attempt starts after the 250 ms attempt delay instead of after the silent
    // address's 10 s connect timeout. The upper bound is only a hang guard, generous for a
    // loaded machine: it still fails if the race waits for the timeout.
    assert!(
        elapsed >= Duration::from_millis(240),
        "did not wait for the attempt delay: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(5),
        "waited for the connect timeout instead of racing: {elapsed:?}"
    );
}

#[tokio::test]
async fn failed_first_address_moves_on_at_once() {
    let mut listener = bind_tcp(&["[::1]:0".parse().unwrap()], 0).unwrap();
    let good = listener.local_addrs()[0];
    tokio::spawn(async move { while listener.accept().await.is_ok() {} });
    // With a 10 s attempt delay, "at once" is anything well under it, however loaded the
    // machine: a refused first attempt must not make the next wait out the delay.
    let options = ConnectOptions {
        attempt_delay: Duration::from_secs(10),
        ..ConnectOptions::default()
    };
    let started = Instant::now();
    let (_s, reached) = connect_addrs(&[closed_port(), good], &options)
        .await
        .unwrap();
    assert_eq!(reached, good);
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
}

#[tokio::test]
async fn every_failed_address_is_listed() {
    let (silent, _keep, _fillers) = silent_addr();
    let refused = closed_port();
    let options = ConnectOptions {
        timeout: Duration::from_millis(600),
        ..ConnectOptions::default()
    };
    let err = connect_addrs(&[refused, silent], &options)
        .await
        .unwrap_err();
    let NetError::Connect { attempts, .. } = &err else {
        panic!("expected Connect error, got {err:?}");
    };
    assert_eq!(attempts.len(), 2, "{err}");
    let text = err.to_string();
    assert!(text.contains(&refused.to_string()), "{text}");
    assert!(text.contains("refused"), "{text}");
    assert!(text.contains(&silent.to_string()), "{text}");
    assert!(text.contains("timed out"), "{text}");
}

#[tokio::test]
async fn unknown_names_are_a_resolve_error() {
    let err = connect("no-such-host.invalid", 1, &ConnectOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, NetError::Resolve { .. }), "{err}");
    assert!(err.to_string().contains("no-such-host.invalid"), "{err}");
}

#[tokio::test]
async fn family_options_force_one_family() {
    let mut listener = bind_tcp(&[], 0).unwrap();
    let port = listener.port();
    tokio::spawn(async move { while listener.accept().await.is_ok() {} });
    let v4 = ConnectOptions {
        family: Family::V4,
        ..ConnectOptions::default()
    };
    let (_, reached) = connect("localhost", port, &v4).await.unwrap();
    assert!(reached.is_ipv4());
    let v6 = ConnectOptions {
        family: Family::V6,
        ..ConnectOptions::default()
    };
    let (_, reached) = connect("[::1]", port, &v6).await.unwrap();
    assert!(reached.is_ipv6());
}
