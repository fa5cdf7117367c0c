//! Test helpers used only by the editor end-to-end tests: start `editor-server` on an
//! OS-chosen port, and a protocol client built from the editor library's own message types
//! and sync state machine over a real `netutil::Connection`.

use std::path::Path;
use std::time::Duration;

use editor::client::sync::{Event, SyncClient};
use editor::protocol::{random_key, ClientMsg, ErrorCode, ServerMsg, PROTOCOL};
use netutil::Connection;
use tokio::net::TcpStream;

use crate::Proc;

/// Starts `editor-server` on 127.0.0.1 with an OS-chosen port; returns it and the port.
pub fn start_server(data_dir: &Path, extra: &[&str]) -> (Proc, u16) {
    start_server_logging(data_dir, extra, "info")
}

/// [`start_server`] with `RUST_LOG` set to `filter`, for a test that waits for a debug
/// line (`editor::server::doc_task=debug`: "document NAME saved at revision N").
pub fn start_server_logging(data_dir: &Path, extra: &[&str], filter: &str) -> (Proc, u16) {
    let dir = data_dir.to_str().expect("utf-8 temp dir");
    // Plaintext: the raw protocol clients below speak no TLS (TLS has its own tests).
    let mut args = vec![
        "--port",
        "0",
        "--bind",
        "127.0.0.1",
        "--data-dir",
        dir,
        "--no-tls",
    ];
    args.extend_from_slice(extra);
    let mut cmd = std::process::Command::new(crate::process::bin_path("editor-server"));
    cmd.args(&args).env("RUST_LOG", filter);
    let proc = Proc::spawn("editor-server", cmd);
    let port = proc.listening_port();
    (proc, port)
}

/// A connection that has done the handshake and nothing else.
pub async fn raw_connect(port: u16) -> Connection<ServerMsg, ClientMsg> {
    let stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect to editor-server");
    Connection::establish(stream, &PROTOCOL)
        .await
        .expect("editor handshake")
}

/// Receives until an `Error` arrives (skipping other messages); None if the connection
/// closes or nothing comes within `timeout`.
pub async fn expect_error(
    conn: &mut Connection<ServerMsg, ClientMsg>,
    timeout: Duration,
) -> Option<(ErrorCode, String)> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, conn.recv()).await {
            Ok(Ok(Some(ServerMsg::Error { code, reason }))) => return Some((code, reason)),
            Ok(Ok(Some(_))) => continue,
            _ => return None,
        }
    }
}

/// The first message after the `Access` that opens every joined session (a snapshot or
/// catch-up, or an error); panics if nothing comes within `timeout`.
pub async fn recv_after_access(
    conn: &mut Connection<ServerMsg, ClientMsg>,
    timeout: Duration,
) -> ServerMsg {
    loop {
        let msg = tokio::time::timeout(timeout, conn.recv())
            .await
            .expect("a message in time")
            .expect("a well-formed message")
            .expect("the connection stays open");
        if !matches!(msg, ServerMsg::Access { .. }) {
            return msg;
        }
    }
}

/// A client: the library's [`SyncClient`] driven over a real connection.
pub struct Client {
    pub conn: Option<Connection<ServerMsg, ClientMsg>>,
    pub sync: SyncClient,
    pub document: String,
    pub name: String,
    pub errors: Vec<(ErrorCode, String)>,
    pub resets: Vec<bool>,
}

impl Client {
    /// Connects, joins `document` and waits for the snapshot.
    pub async fn join(port: u16, document: &str, name: &str) -> Client {
        let mut client = Client {
            conn: None,
            sync: SyncClient::new(random_key()),
            document: document.to_owned(),
            name: name.to_owned(),
            errors: Vec::new(),
            resets: Vec::new(),
        };
        client.reconnect(port).await;
        client
    }

    /// Opens a new connection and joins again with the same state (catch-up).
    pub async fn reconnect(&mut self, port: u16) {
        self.sync.disconnected();
        let mut conn = raw_connect(port).await;
        let join = self.sync.join(&self.document, &self.name);
        conn.send(&join).await.expect("send join");
        self.conn = Some(conn);
        let joined = self
            .wait_until(Duration::from_secs(20), |s| s.is_joined())
            .await;
        assert!(joined, "no snapshot or catch-up; errors: {:?}", self.errors);
    }

    /// Drops the connection without a goodbye.
    pub fn disconnect(&mut self) {
        self.conn = None;
        self.sync.disconnected();
    }

    pub fn text(&self) -> String {
        self.sync.text().to_string()
    }

    pub async fn insert(&mut self, pos: usize, text: &str) {
        let msg = self.sync.insert(pos, text).expect("local insert");
        self.send_opt(msg).await;
    }

    pub async fn delete(&mut self, pos: usize, len: usize) {
        let msg = self.sync.delete(pos, len).expect("local delete");
        self.send_opt(msg).await;
    }

    async fn send_opt(&mut self, msg: Option<ClientMsg>) {
        if let (Some(msg), Some(conn)) = (msg, self.conn.as_mut()) {
            if conn.send(&msg).await.is_err() {
                self.disconnect();
            }
        }
    }

    /// Handles one incoming message; false when none came in `timeout` or the
    /// connection is gone.
    pub async fn step(&mut self, timeout: Duration) -> bool {
        let Some(conn) = self.conn.as_mut() else {
            return false;
        };
        let msg = match tokio::time::timeout(timeout, conn.recv()).await {
            Err(_) => return false,
            Ok(Ok(Some(msg))) => msg,
            Ok(_) => {
                self.disconnect();
                return false;
            }
        };
        let events = self
            .sync
            .receive(msg)
            .expect("server keeps the protocol's order");
        for event in events {
            match event {
                Event::Send(out) => self.send_opt(Some(out)).await,
                Event::Error { code, reason } => self.errors.push((code, reason)),
                Event::Reset { discarded } => self.resets.push(discarded),
                _ => {}
            }
        }
        true
    }

    /// Handles whatever has already arrived, without waiting.
    pub async fn pump(&mut self) {
        while self.step(Duration::from_millis(1)).await {}
    }

    /// Steps until `cond` holds; false on timeout or disconnect.
    pub async fn wait_until(
        &mut self,
        timeout: Duration,
        cond: impl Fn(&SyncClient) -> bool,
    ) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while !cond(&self.sync) {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() || self.conn.is_none() {
                return false;
            }
            self.step(left).await;
        }
        true
    }

    /// Waits until every local edit is acknowledged.
    pub async fn settle(&mut self, timeout: Duration) -> bool {
        self.wait_until(timeout, |s| !s.has_pending()).await
    }
}

/// A small deterministic random number generator (xorshift64*), so tests need no crate.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }
}
