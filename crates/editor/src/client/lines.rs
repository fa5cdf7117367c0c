//! Line mode, for scripts and pipes: print the document, append each input line to it,
//! print what others insert, and exit once every line is acknowledged.
//!
//! `printf 'hello\nworld\n' | editor-client --doc notes` appends two lines;
//! `editor-client --doc notes --print` prints the document and exits.

use std::io::Write;

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

use super::sync::{Event, SyncClient, SyncError};
use crate::ot::{Component, TextOperation};
use crate::protocol::{random_key, ClientMsg, ErrorCode, ServerMsg, PROTOCOL};
use netutil::{ConnectOptions, Connection, NetError};

/// Where to connect and what to do.
#[derive(Clone, Debug)]
pub struct LineOptions {
    pub host: String,
    pub port: u16,
    pub document: String,
    pub name: String,
    pub connect: ConnectOptions,
    /// Print the document and exit.
    pub print_only: bool,
}

/// Why line mode stopped early.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Net(#[from] NetError),
    #[error("server refused: {reason} ({code:?})")]
    Server { code: ErrorCode, reason: String },
    #[error("the server closed the connection")]
    Closed,
    #[error(transparent)]
    Sync(#[from] SyncError),
    #[error("terminal: {0}")]
    Io(#[from] std::io::Error),
}

type Conn = Connection<ServerMsg, ClientMsg>;

/// Runs line mode until input ends and every line is acknowledged.
pub async fn run(
    options: &LineOptions,
    input: impl AsyncBufRead + Unpin,
    out: &mut impl Write,
) -> Result<(), ClientError> {
    let (stream, addr) = netutil::connect(&options.host, options.port, &options.connect).await?;
    tracing::debug!("connected to {addr}");
    let mut conn: Conn = Connection::establish(stream, &PROTOCOL).await?;
    let mut sync = SyncClient::new(random_key());
    conn.send(&sync.join(&options.document, &options.name))
        .await?;
    while !sync.is_joined() {
        let msg = conn.recv().await?.ok_or(ClientError::Closed)?;
        handle(&mut sync, &mut conn, msg, out, false).await?;
    }
    let text = sync.text().to_string();
    out.write_all(text.as_bytes())?;
    if !text.is_empty() && !text.ends_with('\n') {
        out.write_all(b"\n")?;
    }
    out.flush()?;
    if options.print_only {
        return Ok(());
    }

    let mut lines = input.lines();
    let mut input_open = true;
    while input_open || sync.has_pending() {
        tokio::select! {
            line = lines.next_line(), if input_open => match line? {
                Some(line) => {
                    if let Some(msg) = append_line(&mut sync, &line)? {
                        conn.send(&msg).await?;
                    }
                }
                None => input_open = false,
            },
            msg = conn.recv() => {
                let msg = msg?.ok_or(ClientError::Closed)?;
                handle(&mut sync, &mut conn, msg, out, true).await?;
            }
        }
    }
    Ok(())
}

/// Appends `line` as a line of its own at the end of the document.
fn append_line(sync: &mut SyncClient, line: &str) -> Result<Option<ClientMsg>, SyncError> {
    let text = sync.text();
    let len = text.len_chars();
    let needs_break = len > 0 && text.char(len - 1) != '\n';
    let insert = format!("{}{line}\n", if needs_break { "\n" } else { "" });
    sync.insert(len, &insert)
}

async fn handle(
    sync: &mut SyncClient,
    conn: &mut Conn,
    msg: ServerMsg,
    out: &mut impl Write,
    show_updates: bool,
) -> Result<(), ClientError> {
    for event in sync.receive(msg)? {
        match event {
            Event::Send(msg) => conn.send(&msg).await?,
            Event::Error { code, reason } => return Err(ClientError::Server { code, reason }),
            Event::RemoteEdit { op, .. } if show_updates => print_update(&op, out)?,
            _ => {}
        }
    }
    Ok(())
}

/// `Document updated: <inserted text>` for each insert of a remote change.
fn print_update(op: &TextOperation, out: &mut impl Write) -> std::io::Result<()> {
    let mut deleted = 0;
    for c in op.components() {
        match c {
            Component::Insert(s) => writeln!(
                out,
                "Document updated: {}",
                s.strip_suffix('\n').unwrap_or(s)
            )?,
            Component::Delete(n) => deleted += n,
            Component::Retain(_) => {}
        }
    }
    if deleted > 0 {
        writeln!(out, "Document updated: {deleted} characters deleted")?;
    }
    out.flush()
}
