//! Line mode, for scripts and pipes: print the document, append each input line to it,
//! print what others insert, and exit once every line is acknowledged.
//!
//! `printf 'hello\nworld\n' | editor-client --doc notes` appends two lines;
//! `editor-client --doc notes --print` prints the document and exits. If the connection
//! drops, lines keep being read and are sent after the reconnect and catch-up.

use std::io::Write;

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

use super::link::{Link, LinkEvent, Target};
use super::sync::{Event, SyncClient, SyncError};
use crate::ot::{Component, TextOperation};
use crate::protocol::{random_key, ClientMsg, ErrorCode, MAX_DOCUMENT_BYTES};
use netutil::{ConnectOptions, NetError};

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

impl LineOptions {
    pub fn target(&self) -> Target {
        Target {
            host: self.host.clone(),
            port: self.port,
            connect: self.connect,
        }
    }
}

/// Why a client stopped early.
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
    #[error("not appended: the document would exceed {} MiB", MAX_DOCUMENT_BYTES >> 20)]
    TooLarge,
}

/// Whether a refusal is worth reconnecting over. Refusals of the request itself (bad
/// names, a change the server will never take) would only repeat; the rest (too slow,
/// too far behind, busy, replaced by our own newer connection) go away after a catch-up.
pub fn is_fatal(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::BadName
            | ErrorCode::BadDisplayName
            | ErrorCode::BadChange
            | ErrorCode::TooLarge
            | ErrorCode::Malformed
    )
}

/// Runs line mode until input ends and every line is acknowledged. A dropped connection
/// is re-established in the background (see [`Link`]); lines typed meanwhile are kept.
pub async fn run(
    options: &LineOptions,
    input: impl AsyncBufRead + Unpin,
    out: &mut impl Write,
) -> Result<(), ClientError> {
    let mut link = Link::connect(options.target()).await?;
    let mut sync = SyncClient::new(random_key());
    link.send(&sync.join(&options.document, &options.name))
        .await;
    while !sync.is_joined() {
        let event = link.next().await;
        handle(&mut sync, &mut link, options, event, out, false).await?;
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
                    // Checked here rather than refused by the server, which would close
                    // the connection on every retry.
                    if sync.text().len_bytes() + line.len() + 2 > MAX_DOCUMENT_BYTES {
                        return Err(ClientError::TooLarge);
                    }
                    if let Some(msg) = append_line(&mut sync, &line)? {
                        link.send(&msg).await;
                    }
                }
                None => input_open = false,
            },
            event = link.next() => handle(&mut sync, &mut link, options, event, out, true).await?,
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
    link: &mut Link,
    options: &LineOptions,
    event: LinkEvent,
    out: &mut impl Write,
    show_updates: bool,
) -> Result<(), ClientError> {
    let msg = match event {
        LinkEvent::Message(msg) => msg,
        LinkEvent::Lost { reason } => {
            sync.disconnected();
            tracing::warn!("connection lost ({reason}); reconnecting…");
            return Ok(());
        }
        LinkEvent::Connected => {
            tracing::info!("reconnected; catching up");
            link.send(&sync.join(&options.document, &options.name))
                .await;
            return Ok(());
        }
    };
    for event in sync.receive(msg)? {
        match event {
            Event::Send(msg) => link.send(&msg).await,
            Event::Error { code, reason } if is_fatal(code) => {
                return Err(ClientError::Server { code, reason })
            }
            Event::Error { code, reason } => {
                tracing::warn!("server: {reason} ({code:?})");
                link.lose(reason);
            }
            Event::Reset { discarded: true } => {
                tracing::warn!("the server's copy replaced ours; unacknowledged lines were lost")
            }
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
