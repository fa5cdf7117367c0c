//! Dual-stack listening: one socket, one port, IPv4 and IPv6 clients.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use netutil::{bind_tcp, bind_udp};
use tokio::net::{TcpStream, UdpSocket};

#[tokio::test]
async fn one_listener_accepts_ipv4_and_ipv6_clients_on_one_port() {
    let mut listener = bind_tcp(&[], 0).unwrap();
    let port = listener.port();
    assert_eq!(listener.local_addrs().len(), 1, "one dual-stack socket");

    let _v4 = TcpStream::connect((Ipv4Addr::LOCALHOST, port))
        .await
        .unwrap();
    let (_, peer4) = listener.accept().await.unwrap();
    assert_eq!(peer4.ip(), IpAddr::V4(Ipv4Addr::LOCALHOST));
    assert!(peer4.to_string().starts_with("127.0.0.1:"), "{peer4}");

    let _v6 = TcpStream::connect((Ipv6Addr::LOCALHOST, port))
        .await
        .unwrap();
    let (_, peer6) = listener.accept().await.unwrap();
    assert_eq!(peer6.ip(), IpAddr::V6(Ipv6Addr::LOCALHOST));
}

#[tokio::test]
async fn explicit_binds_share_one_port() {
    let binds: Vec<SocketAddr> = vec!["127.0.0.1:0".parse().unwrap(), "[::1]:0".parse().unwrap()];
    let mut listener = bind_tcp(&binds, 0).unwrap();
    let addrs = listener.local_addrs();
    assert_eq!(addrs.len(), 2);
    assert_eq!(addrs[0].port(), addrs[1].port());
    let port = addrs[0].port();
    let _a = TcpStream::connect((Ipv6Addr::LOCALHOST, port))
        .await
        .unwrap();
    let (_, peer) = listener.accept().await.unwrap();
    assert!(peer.is_ipv6());
    let _b = TcpStream::connect((Ipv4Addr::LOCALHOST, port))
        .await
        .unwrap();
    let (_, peer) = listener.accept().await.unwrap();
    assert!(peer.is_ipv4());
}

#[tokio::test]
async fn dual_stack_udp_answers_both_families() {
    let sockets = bind_udp(&[], 0).unwrap();
    let server = &sockets[0];
    let port = server.local_addr().unwrap().port();
    for client_addr in ["127.0.0.1:0", "[::1]:0"] {
        let client = UdpSocket::bind(client_addr).await.unwrap();
        let target: SocketAddr = if client_addr.starts_with('[') {
            (Ipv6Addr::LOCALHOST, port).into()
        } else {
            (Ipv4Addr::LOCALHOST, port).into()
        };
        client.send_to(b"ping", target).await.unwrap();
        let mut buf = [0u8; 16];
        let (n, from) = server.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"ping");
        server.send_to(&buf[..n], from).await.unwrap();
        let (n, _) = client.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"ping");
    }
}

#[tokio::test]
async fn binding_a_taken_port_is_a_clear_error() {
    let first = bind_tcp(&["127.0.0.1:0".parse().unwrap()], 0).unwrap();
    let taken: SocketAddr = first.local_addrs()[0];
    // SO_REUSEADDR does not let two sockets listen on one address.
    let err = bind_tcp(&[taken], 0).err().expect("second bind must fail");
    assert!(err.to_string().contains(&taken.to_string()), "{err}");
}
