//! README promises of the editor server that no other test exercised: `--max-clients`
//! and `--max-documents` refuse with `Busy` and give their slot back, a document never
//! grows past its size limit (`TooLarge`), and a second connection joining with a
//! client's key replaces the first (`Replaced`). Real server, plaintext, raw protocol.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use std::time::Duration;

use e2e::editor::{expect_error, raw_connect, recv_after_access, start_server, Client};
use e2e::TempDir;
use editor::ot::TextOperation;
use editor::protocol::{ClientMsg, ErrorCode, ServerMsg, MAX_DOCUMENT_BYTES};
use netutil::Connection;

const T: Duration = Duration::from_secs(30);

type Conn = Connection<ServerMsg, ClientMsg>;

fn join(document: &str, key: u64) -> ClientMsg {
    ClientMsg::Join {
        document: document.into(),
        name: format!("key{key}"),
        key,
        known_revision: None,
        token: None,
    }
}

/// A raw connection that joined `document` with `key`; returns it and the first message
/// after `Access` (a snapshot, or the error that refused the join).
async fn joined(port: u16, document: &str, key: u64) -> (Conn, ServerMsg) {
    let mut conn = raw_connect(port).await;
    conn.send(&join(document, key)).await.unwrap();
    let first = recv_after_access(&mut conn, T).await;
    (conn, first)
}

/// Joins until the server admits the connection (a slot given back is free once the
/// session that held it has ended); panics after `T` with the last refusal.
async fn join_when_admitted(port: u16, document: &str, key: u64) -> Conn {
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let (conn, first) = joined(port, document, key).await;
        if matches!(first, ServerMsg::Snapshot { .. }) {
            return conn;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never admitted: {first:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_clients_and_max_documents_refuse_with_busy_and_give_slots_back() {
    let dir = TempDir::new("editor-max");
    let (_server, port) = start_server(dir.path(), &["--max-clients", "2", "--max-documents", "1"]);
    let a = Client::join(port, "one", "a").await;
    let mut b = Client::join(port, "one", "b").await;

    // A third connection: the server is full.
    let mut third = raw_connect(port).await;
    third.send(&join("one", 3)).await.unwrap();
    let (code, reason) = expect_error(&mut third, T).await.expect("refused");
    assert_eq!(code, ErrorCode::Busy, "{reason}");
    assert!(reason.contains("server full (2 clients)"), "{reason}");
    drop(third);

    // b leaves: its slot is given back, but only one document may be loaded, and "one"
    // still is (a is in it).
    b.disconnect();
    let (mut other_doc, first) = loop {
        let (conn, first) = joined(port, "two", 4).await;
        match &first {
            ServerMsg::Error { reason, .. } if reason.contains("server full") => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            _ => break (conn, first),
        }
    };
    let ServerMsg::Error { code, reason } = first else {
        panic!("a second document was loaded: {first:?}");
    };
    assert_eq!(code, ErrorCode::Busy, "{reason}");
    assert!(reason.contains("too many documents open (1)"), "{reason}");
    assert!(
        tokio::time::timeout(T, other_doc.recv())
            .await
            .unwrap()
            .map_or(true, |m| m.is_none()),
        "the refused connection is closed"
    );
    // The same document is no new load: admitted.
    let _again = join_when_admitted(port, "one", 5).await;
    drop(a);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_past_the_document_size_limit_is_refused_as_too_large() {
    let dir = TempDir::new("editor-too-large");
    let (_server, port) = start_server(dir.path(), &[]);
    let big = MAX_DOCUMENT_BYTES * 2 / 3;
    let mut writer = Client::join(port, "big", "writer").await;
    writer.insert(0, &"a".repeat(big)).await;
    assert!(writer.settle(T).await, "{:?}", writer.errors);

    // Another two thirds would pass the limit: refused, and nothing of it is applied.
    let (mut conn, first) = joined(port, "big", 9).await;
    let ServerMsg::Snapshot { revision, text, .. } = first else {
        panic!("{first:?}");
    };
    assert_eq!(text.len(), big);
    let op = TextOperation::splice(big, big, 0, &"b".repeat(big)).unwrap();
    conn.send(&ClientMsg::Change {
        base_revision: revision,
        seq: 1,
        op,
    })
    .await
    .unwrap();
    let (code, reason) = expect_error(&mut conn, T).await.expect("refused");
    assert_eq!(code, ErrorCode::TooLarge, "{reason}");
    let reader = Client::join(port, "big", "reader").await;
    assert_eq!(reader.sync.revision(), Some(revision));
    assert_eq!(reader.text().len(), big);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_connection_with_the_same_key_replaces_the_first() {
    let dir = TempDir::new("editor-replaced");
    let (_server, port) = start_server(dir.path(), &[]);
    let (mut first, snapshot) = joined(port, "doc", 77).await;
    assert!(
        matches!(snapshot, ServerMsg::Snapshot { .. }),
        "{snapshot:?}"
    );
    let (mut second, snapshot) = joined(port, "doc", 77).await;
    assert!(
        matches!(snapshot, ServerMsg::Snapshot { .. }),
        "{snapshot:?}"
    );
    let (code, reason) = expect_error(&mut first, T)
        .await
        .expect("the first is told");
    assert_eq!(code, ErrorCode::Replaced, "{reason}");
    // The second goes on: its change is acknowledged.
    let op = TextOperation::splice(0, 0, 0, "still here").unwrap();
    second
        .send(&ClientMsg::Change {
            base_revision: 0,
            seq: 1,
            op,
        })
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let msg = tokio::time::timeout_at(deadline, second.recv())
            .await
            .expect("an Ack in time")
            .unwrap()
            .expect("the second connection stays open");
        match msg {
            ServerMsg::Ack { seq: 1, .. } => break,
            ServerMsg::Error { code, reason } => panic!("{code:?}: {reason}"),
            _ => {}
        }
    }
}
