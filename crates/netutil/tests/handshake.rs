//! The handshake refuses peers of another program or another version, clearly, on both ends.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use netutil::{bind_tcp, Connection, NetError, Protocol, DEFAULT_MAX_FRAME};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const EDITOR_V1: Protocol = Protocol {
    name: "editor",
    version: 1,
    max_frame: DEFAULT_MAX_FRAME,
};

type Conn = Connection<String>;

/// Accepts one connection and runs the handshake for `server_protocol` on it.
async fn handshake_pair(
    server_protocol: Protocol,
    client_protocol: Protocol,
) -> (Result<Conn, NetError>, Result<Conn, NetError>) {
    let mut listener = bind_tcp(&["[::1]:0".parse().unwrap()], 0).unwrap();
    let port = listener.port();
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        Conn::establish(stream, &server_protocol).await
    });
    let stream = TcpStream::connect(("::1", port)).await.unwrap();
    let client = Conn::establish(stream, &client_protocol).await;
    (server.await.unwrap(), client)
}

/// An editor-protocol server handshaking on one accepted connection, and a raw socket to it
/// for sending whatever a test wants the server to see first.
async fn editor_server_and_raw_client(
) -> (tokio::task::JoinHandle<Result<Conn, NetError>>, TcpStream) {
    let mut listener = bind_tcp(&["127.0.0.1:0".parse().unwrap()], 0).unwrap();
    let port = listener.port();
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        Conn::establish(stream, &EDITOR_V1).await
    });
    let raw = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    (server, raw)
}

#[tokio::test]
async fn matching_peers_talk() {
    let (server, client) = handshake_pair(EDITOR_V1, EDITOR_V1).await;
    let (mut server, mut client) = (server.unwrap(), client.unwrap());
    client.send(&"hi".to_string()).await.unwrap();
    assert_eq!(server.recv().await.unwrap().as_deref(), Some("hi"));
}

#[tokio::test]
async fn version_mismatch_is_refused_on_both_sides() {
    let newer = Protocol {
        version: 2,
        ..EDITOR_V1
    };
    let (server, client) = handshake_pair(EDITOR_V1, newer).await;
    let server_err = server.err().expect("server refuses");
    let client_err = client.err().expect("client refuses");
    assert!(matches!(server_err, NetError::Handshake { .. }));
    assert!(
        server_err
            .to_string()
            .contains("peer speaks editor protocol 2, this is 1"),
        "{server_err}"
    );
    assert!(
        client_err
            .to_string()
            .contains("peer speaks editor protocol 1, this is 2"),
        "{client_err}"
    );
}

#[tokio::test]
async fn another_program_is_refused() {
    let p2p = Protocol {
        name: "p2p-node",
        ..EDITOR_V1
    };
    let (server, client) = handshake_pair(EDITOR_V1, p2p).await;
    let message = server.err().expect("server refuses").to_string();
    assert!(
        message.contains("peer speaks p2p-node protocol 1, this is editor protocol 1"),
        "{message}"
    );
    assert!(client.is_err());
}

#[tokio::test]
async fn a_client_without_handshake_is_refused() {
    let (server, mut raw) = editor_server_and_raw_client().await;
    // Something that frames correctly but is not a hello: wrong magic.
    raw.write_all(&[0, 0, 0, 5, b'h', b'e', b'l', b'l', b'o'])
        .await
        .unwrap();
    let err = server.await.unwrap().err().expect("refused");
    assert!(matches!(err, NetError::NoHandshake { .. }), "{err}");
    assert!(err.to_string().contains("not a handshake"), "{err}");
    // The server closed the connection: reading ends (EOF or reset) instead of hanging.
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        raw.read_to_end(&mut rest),
    )
    .await;
    assert!(closed.is_ok(), "server kept the connection open");
}

#[tokio::test]
async fn a_hostile_protocol_name_is_escaped_and_cut_short_in_the_error() {
    #[derive(serde::Serialize)]
    struct Hello {
        magic: [u8; 8],
        protocol: String,
        version: u32,
    }
    let (server, mut raw) = editor_server_and_raw_client().await;
    let hello = Hello {
        magic: *b"NETUTIL1",
        protocol: format!("evil\nNew client connected: 10.0.0.1{}", "x".repeat(900)),
        version: 1,
    };
    let payload = postcard::to_stdvec(&hello).unwrap();
    let mut frame = (payload.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&payload);
    raw.write_all(&frame).await.unwrap();
    let message = server.await.unwrap().err().expect("refused").to_string();
    assert!(
        message.contains("peer speaks evil\\nNew client"),
        "{message}"
    );
    assert!(!message.contains('\n'), "{message}");
    assert!(message.len() < 300, "{} bytes", message.len());
}

#[tokio::test]
async fn an_oversized_hello_is_refused_at_the_small_hello_limit() {
    let (server, mut raw) = editor_server_and_raw_client().await;
    // Within the protocol's 8 MiB frame limit, far beyond any real hello.
    raw.write_all(&(4u32 << 20).to_be_bytes()).await.unwrap();
    match server.await.unwrap() {
        Err(NetError::FrameTooLarge { len, max, .. }) => {
            assert_eq!(len, 4 << 20);
            assert_eq!(max, netutil::handshake::MAX_HELLO_FRAME);
        }
        other => panic!("expected FrameTooLarge, got {:?}", other.err()),
    }
}

#[tokio::test]
async fn the_full_frame_limit_applies_again_after_the_handshake() {
    let (server, client) = handshake_pair(EDITOR_V1, EDITOR_V1).await;
    let (mut server, mut client) = (server.unwrap(), client.unwrap());
    let big = "y".repeat(64 * 1024);
    client.send(&big).await.unwrap();
    assert_eq!(server.recv().await.unwrap(), Some(big));
}
