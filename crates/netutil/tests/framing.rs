//! Framing and typed messages over real sockets: oversized, truncated and garbage input from
//! one peer is a typed error for that peer, while the same listener keeps serving others.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use std::time::Duration;

use netutil::{bind_tcp, Connection, NetError};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Msg {
    Text(String),
    Number(u64),
}

const MAX_FRAME: usize = 1024;

/// Starts a listener whose connections echo every message back; each connection's final
/// error (or clean close) is reported on the returned channel.
async fn start_echo_server() -> (u16, mpsc::UnboundedReceiver<Result<(), NetError>>) {
    let mut listener = bind_tcp(&["127.0.0.1:0".parse().unwrap()], 0).unwrap();
    let port = listener.port();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut conn: Connection<Msg> = Connection::new(stream, MAX_FRAME);
                let outcome = loop {
                    match conn.recv().await {
                        Ok(Some(msg)) => {
                            if let Err(e) = conn.send(&msg).await {
                                break Err(e);
                            }
                        }
                        Ok(None) => break Ok(()),
                        Err(e) => break Err(e),
                    }
                };
                let _ = tx.send(outcome);
            });
        }
    });
    (port, rx)
}

async fn good_client(port: u16) -> Connection<Msg> {
    let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    Connection::new(stream, MAX_FRAME)
}

async fn assert_still_serving(conn: &mut Connection<Msg>, n: u64) {
    conn.send(&Msg::Number(n)).await.unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(5), conn.recv())
        .await
        .expect("server answers")
        .unwrap();
    assert_eq!(reply, Some(Msg::Number(n)));
}

async fn next_outcome(
    rx: &mut mpsc::UnboundedReceiver<Result<(), NetError>>,
) -> Result<(), NetError> {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("connection task ends")
        .expect("channel open")
}

#[tokio::test]
async fn typed_messages_round_trip() {
    let (port, _rx) = start_echo_server().await;
    let mut conn = good_client(port).await;
    let msg = Msg::Text("héllo, wörld".into());
    conn.send(&msg).await.unwrap();
    assert_eq!(conn.recv().await.unwrap(), Some(msg));
}

#[tokio::test]
async fn oversized_frame_is_refused_and_others_are_still_served() {
    let (port, mut rx) = start_echo_server().await;
    let mut good = good_client(port).await;
    assert_still_serving(&mut good, 1).await;

    let mut bad = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let bad_addr = bad.local_addr().unwrap();
    // Claims a 4 GiB frame; the server must refuse on the header alone.
    bad.write_all(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3])
        .await
        .unwrap();
    match next_outcome(&mut rx).await {
        Err(NetError::FrameTooLarge { peer, len, max }) => {
            assert_eq!(peer, bad_addr);
            assert_eq!(len, 0xffff_ffff);
            assert_eq!(max, MAX_FRAME);
        }
        other => panic!("expected FrameTooLarge, got {other:?}"),
    }
    assert_still_serving(&mut good, 2).await;
}

#[tokio::test]
async fn truncated_frame_is_reported_and_others_are_still_served() {
    let (port, mut rx) = start_echo_server().await;
    let mut good = good_client(port).await;

    let mut bad = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let bad_addr = bad.local_addr().unwrap();
    bad.write_all(&[0, 0, 0, 100, 1, 2, 3]).await.unwrap();
    bad.shutdown().await.unwrap();
    drop(bad);
    match next_outcome(&mut rx).await {
        Err(err @ NetError::Truncated { .. }) => {
            assert!(err.to_string().contains(&bad_addr.to_string()), "{err}");
        }
        other => panic!("expected Truncated, got {other:?}"),
    }
    assert_still_serving(&mut good, 3).await;
}

#[tokio::test]
async fn garbage_payload_is_a_decode_error_and_others_are_still_served() {
    let (port, mut rx) = start_echo_server().await;
    let mut good = good_client(port).await;

    let mut bad = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let bad_addr = bad.local_addr().unwrap();
    // A well-formed frame whose payload is not a `Msg` (enum tag 9 does not exist).
    bad.write_all(&[0, 0, 0, 3, 9, 9, 9]).await.unwrap();
    match next_outcome(&mut rx).await {
        Err(err @ NetError::Decode { peer, .. }) => {
            assert_eq!(peer, bad_addr);
            assert!(err.to_string().contains("malformed message"), "{err}");
        }
        other => panic!("expected Decode, got {other:?}"),
    }
    assert_still_serving(&mut good, 4).await;
}

#[tokio::test]
async fn sending_an_oversized_message_is_refused_locally() {
    let (port, _rx) = start_echo_server().await;
    let mut conn = good_client(port).await;
    let err = conn
        .send(&Msg::Text("x".repeat(MAX_FRAME + 1)))
        .await
        .unwrap_err();
    assert!(matches!(err, NetError::FrameTooLarge { .. }), "{err}");
}

#[tokio::test]
async fn split_halves_work_in_separate_tasks() {
    let (port, _rx) = start_echo_server().await;
    let (mut rx, mut tx) = good_client(port).await.split();
    let writer = tokio::spawn(async move {
        for n in 0..100 {
            tx.feed(&Msg::Number(n)).await.unwrap();
        }
        tx.flush().await.unwrap();
        tx
    });
    for n in 0..100 {
        assert_eq!(rx.recv().await.unwrap(), Some(Msg::Number(n)));
    }
    writer.await.unwrap();
}

#[tokio::test]
async fn split_right_after_the_handshake_keeps_frames_that_came_with_it() {
    use netutil::{Protocol, DEFAULT_MAX_FRAME};
    const PROTO: Protocol = Protocol {
        name: "split-test",
        version: 1,
        max_frame: DEFAULT_MAX_FRAME,
    };
    let mut listener = bind_tcp(&["127.0.0.1:0".parse().unwrap()], 0).unwrap();
    let port = listener.port();
    let (flushed_tx, flushed_rx) = tokio::sync::oneshot::channel();
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut conn: Connection<Msg> = Connection::new(stream, DEFAULT_MAX_FRAME);
        // Hello and two messages queued together, so they reach the client in one segment.
        conn.handshake(&PROTO).await.unwrap();
        conn.feed(&Msg::Number(1)).await.unwrap();
        conn.feed(&Msg::Number(2)).await.unwrap();
        conn.flush().await.unwrap();
        let _ = flushed_tx.send(());
        // Keep the connection open and silent: the client must not need more bytes.
        tokio::time::sleep(Duration::from_secs(10)).await;
    });
    let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let conn: Connection<Msg> = Connection::establish(stream, &PROTO).await.unwrap();
    // Split once the two messages are on their way behind the hello (on loopback a
    // flushed write is already in the receiver's socket buffer).
    flushed_rx.await.unwrap();
    let (mut rx, _tx) = conn.split();
    for n in 1..=2 {
        // A hang guard: the frames are there, no more bytes are coming.
        let got = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("buffered frame decoded without more bytes")
            .unwrap();
        assert_eq!(got, Some(Msg::Number(n)));
    }
    server.abort();
}

/// Accepts one connection with a 4 MiB frame limit and returns the first `n` messages.
async fn collect_messages(n: usize) -> (u16, tokio::task::JoinHandle<Vec<Msg>>) {
    let mut listener = bind_tcp(&["127.0.0.1:0".parse().unwrap()], 0).unwrap();
    let port = listener.port();
    let task = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut conn: Connection<Msg> = Connection::new(stream, 4 << 20);
        let mut got = Vec::new();
        for _ in 0..n {
            got.push(conn.recv().await.unwrap().expect("message"));
        }
        got
    });
    (port, task)
}

#[tokio::test]
async fn large_frames_written_directly_keep_their_order_with_queued_ones() {
    let big = Msg::Text("z".repeat(1 << 20));
    let expected = vec![Msg::Number(1), big.clone(), Msg::Number(2), big.clone()];

    let (port, task) = collect_messages(4).await;
    let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut conn: Connection<Msg> = Connection::new(stream, 4 << 20);
    conn.feed(&Msg::Number(1)).await.unwrap();
    conn.send(&big).await.unwrap();
    conn.feed(&Msg::Number(2)).await.unwrap();
    conn.send(&big).await.unwrap();
    assert_eq!(task.await.unwrap(), expected);

    let (port, task) = collect_messages(4).await;
    let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let (_rx, mut tx) = Connection::<Msg>::new(stream, 4 << 20).split();
    tx.feed(&Msg::Number(1)).await.unwrap();
    tx.send(&big).await.unwrap();
    tx.feed(&Msg::Number(2)).await.unwrap();
    tx.send(&big).await.unwrap();
    assert_eq!(task.await.unwrap(), expected);
}

#[tokio::test]
async fn a_large_frame_over_the_limit_is_refused_before_anything_is_written() {
    let (port, _task) = collect_messages(1).await;
    let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut conn: Connection<Msg> = Connection::new(stream, 100 * 1024);
    let err = conn
        .send(&Msg::Text("z".repeat(200 * 1024)))
        .await
        .unwrap_err();
    assert!(
        matches!(err, NetError::FrameTooLarge { max: 102400, .. }),
        "{err}"
    );
}

#[tokio::test]
async fn a_connection_over_a_generic_stream_splits_keeps_buffered_frames_and_names_its_peer() {
    use netutil::{Generic, Protocol, DEFAULT_MAX_FRAME};
    const PROTO: Protocol = Protocol {
        name: "generic-test",
        version: 1,
        max_frame: DEFAULT_MAX_FRAME,
    };
    let mut listener = bind_tcp(&["127.0.0.1:0".parse().unwrap()], 0).unwrap();
    let port = listener.port();
    let (flushed_tx, flushed_rx) = tokio::sync::oneshot::channel();
    let server = tokio::spawn(async move {
        let (stream, peer) = listener.accept().await.unwrap();
        let mut conn: Connection<Msg, Msg, Generic<TcpStream>> =
            Connection::with_peer(Generic(stream), peer, DEFAULT_MAX_FRAME);
        assert_eq!(conn.peer(), peer);
        conn.handshake(&PROTO).await.unwrap();
        conn.feed(&Msg::Number(1)).await.unwrap();
        conn.feed(&Msg::Number(2)).await.unwrap();
        conn.flush().await.unwrap();
        let _ = flushed_tx.send(());
        // Echo one message through the split halves, each in its own task.
        let (mut rx, mut tx) = conn.split();
        let got = rx.recv().await.unwrap().unwrap();
        tokio::spawn(async move { tx.send(&got).await.unwrap() })
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_secs(10)).await;
    });
    let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    // A stream that cannot tell its peer: the connection names the unspecified address.
    let conn: Connection<Msg, Msg, Generic<TcpStream>> =
        Connection::establish(Generic(stream), &PROTO)
            .await
            .unwrap();
    assert_eq!(conn.peer().port(), 0);
    flushed_rx.await.unwrap();
    let (mut rx, mut tx) = conn.split();
    for n in 1..=2 {
        let got = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("buffered frame decoded without more bytes")
            .unwrap();
        assert_eq!(got, Some(Msg::Number(n)));
    }
    tx.send(&Msg::Text("over a generic stream".into()))
        .await
        .unwrap();
    let echoed = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(echoed, Some(Msg::Text("over a generic stream".into())));
    server.abort();
}
