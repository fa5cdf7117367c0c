//! The encrypted stream over real sockets: handshake outcomes, frames of every size through
//! a `Connection` on top, and tampering (flipped, replayed, reordered, truncated messages)
//! that must close the stream.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use netutil::noise::{self, NoiseError, NoiseTcpStream, Role, SecretKey, Session};
use netutil::{Connection, FrameCodec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::Framed;

const PROLOGUE: &[u8] = b"netutil-test 1";

fn addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 1))
}

/// A connected pair of encrypted TCP streams: (dialer, acceptor).
async fn secure_pair(dialer: &SecretKey, acceptor: &SecretKey) -> (NoiseTcpStream, NoiseTcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = listener.local_addr().unwrap();
    let expect = Some(acceptor.public());
    let dialer = dialer.clone();
    let dial = tokio::spawn(async move {
        let stream = TcpStream::connect(target).await.unwrap();
        noise::secure_tcp(stream, Role::Initiator { expect }, &dialer, PROLOGUE).await
    });
    let (stream, _) = listener.accept().await.unwrap();
    let accepted = noise::secure_tcp(stream, Role::Responder, acceptor, PROLOGUE)
        .await
        .unwrap();
    (dial.await.unwrap().unwrap(), accepted)
}

#[tokio::test]
async fn each_end_learns_the_key_the_other_proved() {
    let (a, b) = (
        SecretKey::generate().unwrap(),
        SecretKey::generate().unwrap(),
    );
    let (dialer, acceptor) = secure_pair(&a, &b).await;
    assert_eq!(dialer.remote(), b.public());
    assert_eq!(acceptor.remote(), a.public());
}

#[tokio::test]
async fn frames_of_every_size_cross_the_framed_codec_on_top_unchanged() {
    let (a, b) = (
        SecretKey::generate().unwrap(),
        SecretKey::generate().unwrap(),
    );
    let (dialer, acceptor) = secure_pair(&a, &b).await;
    let sizes = [
        0usize,
        1,
        4,
        100,
        65_515,
        65_519,
        65_520,
        131_038,
        1 << 20,
        4 << 20,
    ];
    let sender = tokio::spawn(async move {
        let mut framed = Framed::new(dialer, FrameCodec::new(8 << 20));
        for (i, &size) in sizes.iter().enumerate() {
            framed
                .send(Bytes::from(pattern(size, i as u8)))
                .await
                .unwrap();
        }
        // Many small frames batched and flushed at once.
        for i in 0..1000u32 {
            framed
                .feed(Bytes::copy_from_slice(&i.to_be_bytes()))
                .await
                .unwrap();
        }
        framed.flush().await.unwrap();
        framed
    });
    let mut framed = Framed::new(acceptor, FrameCodec::new(8 << 20));
    for (i, &size) in sizes.iter().enumerate() {
        let got = framed.next().await.unwrap().unwrap();
        assert!(
            got[..] == pattern(size, i as u8)[..],
            "frame {i} of {size} bytes differs"
        );
    }
    for i in 0..1000u32 {
        assert_eq!(&framed.next().await.unwrap().unwrap()[..], &i.to_be_bytes());
    }
    drop(sender.await.unwrap());
    assert!(
        framed.next().await.is_none(),
        "a clean close after the last frame"
    );
}

fn pattern(size: usize, seed: u8) -> Vec<u8> {
    (0..size)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect()
}

#[tokio::test]
async fn the_halves_work_in_both_directions_at_once() {
    let (a, b) = (
        SecretKey::generate().unwrap(),
        SecretKey::generate().unwrap(),
    );
    let (dialer, acceptor) = secure_pair(&a, &b).await;
    let data = pattern(3 << 20, 9);
    let echo = tokio::spawn(async move {
        let (mut read, mut write) = acceptor.into_halves();
        let copied = tokio::io::copy(&mut read, &mut write).await.unwrap();
        write.shutdown().await.unwrap();
        copied
    });
    let (mut read, mut write) = dialer.into_halves();
    let to_send = data.clone();
    let writer = tokio::spawn(async move {
        write.write_all(&to_send).await.unwrap();
        write.shutdown().await.unwrap();
    });
    let mut back = Vec::new();
    read.read_to_end(&mut back).await.unwrap();
    writer.await.unwrap();
    assert_eq!(echo.await.unwrap(), data.len() as u64);
    assert!(back == data);
}

#[tokio::test]
async fn a_dialer_expecting_another_key_stops_before_revealing_its_own() {
    let (a, b, c) = (
        SecretKey::generate().unwrap(),
        SecretKey::generate().unwrap(),
        SecretKey::generate().unwrap(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = listener.local_addr().unwrap();
    let expect = Some(c.public());
    let dial = tokio::spawn(async move {
        let stream = TcpStream::connect(target).await.unwrap();
        noise::secure_tcp(stream, Role::Initiator { expect }, &a, PROLOGUE).await
    });
    let (stream, _) = listener.accept().await.unwrap();
    let accepted = noise::secure_tcp(stream, Role::Responder, &b, PROLOGUE).await;
    match dial.await.unwrap() {
        Err(NoiseError::UnexpectedKey {
            expected, actual, ..
        }) => {
            assert_eq!(expected, c.public());
            assert_eq!(actual, b.public());
        }
        other => panic!("expected UnexpectedKey, got {other:?}"),
    }
    let err = accepted.unwrap_err().to_string();
    assert!(err.contains("closed during the handshake"), "{err}");
}

#[tokio::test]
async fn a_plaintext_client_fails_the_handshake_at_once() {
    let b = SecretKey::generate().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = listener.local_addr().unwrap();
    let client = tokio::spawn(async move {
        let mut stream = TcpStream::connect(target).await.unwrap();
        // netutil's own plaintext hello: a 4-byte length, then postcard.
        stream.write_all(&[0, 0, 0, 20]).await.unwrap();
        stream.write_all(b"NETUTIL1\x08p2p-node\x02").await.unwrap();
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest).await;
    });
    let (stream, _) = listener.accept().await.unwrap();
    let result = tokio::time::timeout(
        Duration::from_secs(5),
        noise::secure_tcp(stream, Role::Responder, &b, PROLOGUE),
    )
    .await
    .expect("fails at once, without waiting for more bytes");
    let err = result.unwrap_err().to_string();
    assert!(err.contains("does not speak Noise"), "{err}");
    client.await.unwrap();
}

#[tokio::test]
async fn a_different_prologue_fails_the_handshake() {
    let (a, b) = (
        SecretKey::generate().unwrap(),
        SecretKey::generate().unwrap(),
    );
    let (mut x, mut y) = tokio::io::duplex(4096);
    let dial = tokio::spawn(async move {
        noise::handshake(
            &mut x,
            Role::Initiator { expect: None },
            &a,
            b"other",
            addr(),
        )
        .await
    });
    let accepted = noise::handshake(&mut y, Role::Responder, &b, PROLOGUE, addr()).await;
    drop(y);
    assert!(dial.await.unwrap().is_err() || accepted.is_err());
}

/// Two sessions from one handshake over an in-memory pipe, for tampering tests.
async fn sessions() -> (Session, Session) {
    let (a, b) = (
        SecretKey::generate().unwrap(),
        SecretKey::generate().unwrap(),
    );
    let (mut x, mut y) = tokio::io::duplex(4096);
    let dial = tokio::spawn(async move {
        noise::handshake(
            &mut x,
            Role::Initiator { expect: None },
            &a,
            PROLOGUE,
            addr(),
        )
        .await
    });
    let accepted = noise::handshake(&mut y, Role::Responder, &b, PROLOGUE, addr())
        .await
        .unwrap();
    (dial.await.unwrap().unwrap(), accepted)
}

/// Seals each payload as one flushed write; returns the wire messages one by one.
async fn seal_messages(session: Session, payloads: &[&[u8]]) -> Vec<Vec<u8>> {
    let mut stream = noise::NoiseStream::new(session, tokio::io::empty(), Vec::new());
    for payload in payloads {
        stream.write_all(payload).await.unwrap();
        stream.flush().await.unwrap();
    }
    let (_, writer) = stream.into_halves();
    let wire = writer.into_inner();
    let mut messages = Vec::new();
    let mut rest = &wire[..];
    while !rest.is_empty() {
        let len = 2 + usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        messages.push(rest[..len].to_vec());
        rest = &rest[len..];
    }
    messages
}

/// Reads everything the receiving session makes of `wire`.
async fn open_wire(session: Session, wire: Vec<u8>) -> std::io::Result<Vec<u8>> {
    let mut stream = noise::NoiseStream::new(session, &wire[..], tokio::io::sink());
    let mut out = Vec::new();
    stream.read_to_end(&mut out).await.map(|_| out)
}

#[tokio::test]
async fn untouched_messages_open_in_order() {
    let (sender, receiver) = sessions().await;
    let messages = seal_messages(sender, &[b"one", b"two", b"three"]).await;
    assert_eq!(messages.len(), 3);
    let out = open_wire(receiver, messages.concat()).await.unwrap();
    assert_eq!(out, b"onetwothree");
}

#[tokio::test]
async fn a_flipped_bit_anywhere_in_a_message_fails_it() {
    let (sender, receiver) = sessions().await;
    let messages = seal_messages(sender, &[b"the marker string"]).await;
    let wire = &messages[0];
    assert!(
        !wire.windows(6).any(|w| w == b"marker"),
        "the payload is encrypted"
    );
    drop(receiver);
    for at in 2..wire.len() {
        let (sender, receiver) = sessions().await;
        let mut flipped = seal_messages(sender, &[b"the marker string"])
            .await
            .concat();
        flipped[at] ^= 0x01;
        let err = open_wire(receiver, flipped).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData, "byte {at}");
    }
}

#[tokio::test]
async fn a_replayed_message_fails() {
    let (sender, receiver) = sessions().await;
    let m = seal_messages(sender, &[b"pay 1", b"pay 2"]).await;
    let wire = [m[0].clone(), m[1].clone(), m[1].clone()].concat();
    let err = open_wire(receiver, wire).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
}

#[tokio::test]
async fn reordered_or_dropped_messages_fail() {
    let (sender, receiver) = sessions().await;
    let m = seal_messages(sender, &[b"first", b"second"]).await;
    let err = open_wire(receiver, [m[1].clone(), m[0].clone()].concat())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);

    let (sender, receiver) = sessions().await;
    let m = seal_messages(sender, &[b"first", b"second", b"third"]).await;
    let err = open_wire(receiver, [m[0].clone(), m[2].clone()].concat())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
}

#[tokio::test]
async fn a_stream_cut_inside_a_message_is_an_error_not_a_clean_end() {
    let (sender, receiver) = sessions().await;
    let m = seal_messages(sender, &[b"complete", b"cut short"]).await;
    let mut wire = [m[0].clone(), m[1].clone()].concat();
    wire.truncate(wire.len() - 3);
    let err = open_wire(receiver, wire).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
}

#[tokio::test]
async fn a_message_from_another_session_fails() {
    let (sender, _) = sessions().await;
    let (_, receiver) = sessions().await;
    let m = seal_messages(sender, &[b"hello"]).await;
    let err = open_wire(receiver, m.concat()).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
}

#[tokio::test]
async fn a_connection_runs_over_the_encrypted_stream_and_splits_into_its_halves() {
    let (a, b) = (
        SecretKey::generate().unwrap(),
        SecretKey::generate().unwrap(),
    );
    let (dialer, acceptor) = secure_pair(&a, &b).await;
    let dialer_addr = acceptor.peer();
    let mut server: Connection<Vec<u8>, Vec<u8>, NoiseTcpStream> =
        Connection::new(acceptor, 4 << 20);
    assert_eq!(server.peer(), dialer_addr);
    let client = tokio::spawn(async move {
        let conn: Connection<Vec<u8>, Vec<u8>, NoiseTcpStream> = Connection::new(dialer, 4 << 20);
        let (mut rx, mut tx) = conn.split();
        tx.send(&vec![1u8; 2 << 20]).await.unwrap();
        tx.send(&b"small".to_vec()).await.unwrap();
        let echoed = rx.recv().await.unwrap().unwrap();
        assert_eq!(echoed.len(), 2 << 20);
    });
    let big = server.recv().await.unwrap().unwrap();
    assert_eq!(server.recv().await.unwrap().unwrap(), b"small");
    server.send(&big).await.unwrap();
    client.await.unwrap();
}
