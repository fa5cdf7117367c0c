//! Line mode, for scripts and pipes: print the document, append each input line to it,
//! print what others change, and exit once every line is acknowledged.
//!
//! `printf 'hello\nworld\n' | editor-client --doc notes` appends two lines;
//! `editor-client --doc notes --print` prints the document and exits. If the connection
//! drops, lines keep being read and are sent after the reconnect and catch-up.
//!
//! Others' changes are printed per changed line once they settle ([`super::updates`]);
//! `--raw-updates` prints every change as it arrives instead, for scripts. Connection
//! trouble goes to stderr in words (`editor-client: server shutting down; reconnecting…`).

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

use super::link::{Link, LinkEvent, LinkState, Target};
use super::recovery::{self, RecoveryError};
use super::sync::{Event, SyncClient, SyncError};
use super::updates::LineUpdates;
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
    /// Print each remote change as it arrives (`Document updated: <inserted text>`)
    /// instead of each changed line once it settles.
    pub raw_updates: bool,
    /// Resume from this recovery file (see [`recovery`]).
    pub recover: Option<PathBuf>,
    /// Line mode: how long to wait at end of input for the server to acknowledge every
    /// line before giving up (and saving them to a recovery file).
    pub wait: Duration,
    /// TLS and whom to trust; `None` only with `--no-tls`.
    pub tls: Option<super::trust::ClientTls>,
    /// Access token sent with every `Join` (`--token` / `EDITOR_TOKEN`).
    pub token: Option<String>,
}

impl LineOptions {
    pub fn target(&self) -> Target {
        Target {
            host: self.host.clone(),
            port: self.port,
            connect: self.connect,
            tls: self.tls.clone(),
        }
    }
}

/// Why a client stopped early.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Net(#[from] NetError),
    #[error("server refused: {reason}")]
    Server { code: ErrorCode, reason: String },
    #[error("the server closed the connection")]
    Closed,
    #[error(transparent)]
    Sync(#[from] SyncError),
    #[error("terminal: {0}")]
    Io(#[from] std::io::Error),
    #[error("not appended: the document would exceed {} MiB", MAX_DOCUMENT_BYTES >> 20)]
    TooLarge,
    #[error(
        "{why}: {changes} change{s} not saved by the server are in {path}; resend with --recover {path}",
        s = if *changes == 1 { "" } else { "s" },
        path = path.display()
    )]
    Unsaved {
        why: String,
        changes: usize,
        path: PathBuf,
    },
    #[error(transparent)]
    Recovery(#[from] RecoveryError),
}

/// The sync client to start with: a fresh one, or one resumed from `--recover FILE`
/// (returned with the file's path, to delete once everything in it is saved).
pub fn start_client(options: &LineOptions) -> Result<(SyncClient, Option<PathBuf>), ClientError> {
    match &options.recover {
        Some(path) => {
            let saved = recovery::load(path)?;
            let sync = recovery::resume(path, &saved)?.with_token(options.token.clone());
            Ok((sync, Some(path.clone())))
        }
        None => Ok((
            SyncClient::new(random_key()).with_token(options.token.clone()),
            None,
        )),
    }
}

/// One line about recovery files left by an earlier session for this server and document.
pub fn recovery_offer(options: &LineOptions) -> Option<String> {
    if options.recover.is_some() {
        return None;
    }
    let found = recovery::existing(&options.host, options.port, &options.document);
    let first = found.first()?;
    Some(format!(
        "changes an earlier session could not save are in {}; resend them with --recover {}",
        first.display(),
        first.display()
    ))
}

/// Saves what the server has not acknowledged and returns the error that says where.
pub fn give_up(options: &LineOptions, sync: &SyncClient, why: String) -> ClientError {
    match recovery::save(&options.host, options.port, &options.document, sync) {
        Ok((path, changes)) => ClientError::Unsaved { why, changes, path },
        Err(e) => e.into(),
    }
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
            | ErrorCode::TokenRequired
            | ErrorCode::BadToken
            | ErrorCode::TokenExpired
            | ErrorCode::TokenRevoked
            | ErrorCode::WrongDocument
    )
}

/// Runs line mode until input ends and every line is acknowledged. A dropped connection
/// is re-established in the background (see [`Link`]); lines typed meanwhile are kept.
pub async fn run(
    options: &LineOptions,
    input: impl AsyncBufRead + Unpin,
    out: &mut impl Write,
) -> Result<(), ClientError> {
    let (mut sync, recovering) = start_client(options)?;
    if let Some(offer) = recovery_offer(options) {
        eprintln!("editor-client: {offer}");
    }
    let mut discarded = false;
    let mut link = Link::connect(options.target()).await?;
    link.send(&sync.join(&options.document, &options.name))
        .await;
    let mut updates = LineUpdates::new(sync.text());
    while !sync.is_joined() {
        let event = link.next().await;
        handle(
            &mut sync,
            &mut link,
            options,
            event,
            out,
            None,
            &mut discarded,
        )
        .await?;
    }
    let text = sync.text().to_string();
    out.write_all(text.as_bytes())?;
    if options.print_only {
        // Byte for byte: `--print > copy` reproduces the document.
        out.flush()?;
        return Ok(());
    }
    if !text.is_empty() && !text.ends_with('\n') {
        out.write_all(b"\n")?;
    }
    out.flush()?;

    updates.rebase(sync.text());

    let mut lines = input.lines();
    let mut input_open = true;
    let mut give_up_at: Option<std::time::Instant> = None;
    while input_open || sync.has_pending() {
        if !input_open && give_up_at.is_none() {
            give_up_at = Some(std::time::Instant::now() + options.wait);
            if link.state() == LinkState::Reconnecting {
                eprintln!(
                    "editor-client: waiting for the server to save {} change{} (giving up in {} s)",
                    sync.pending_changes(),
                    if sync.pending_changes() == 1 { "" } else { "s" },
                    options.wait.as_secs()
                );
            }
        }
        let due = updates.due();
        tokio::select! {
            line = lines.next_line(), if input_open => match line? {
                Some(line) => {
                    // Checked here rather than refused by the server, which would close
                    // the connection on every retry.
                    if sync.text().len_bytes() + line.len() + 2 > MAX_DOCUMENT_BYTES {
                        return Err(ClientError::TooLarge);
                    }
                    // Others' changes so far are reported against the text before ours.
                    print_lines(&updates.report(sync.text()), out)?;
                    if let Some(msg) = append_line(&mut sync, &line)? {
                        link.send(&msg).await;
                    }
                    updates.rebase(sync.text());
                }
                None => input_open = false,
            },
            event = link.next() => {
                handle(&mut sync, &mut link, options, event, out, Some(&mut updates), &mut discarded).await?
            }
            _ = sleep_until(due), if due.is_some() => {
                print_lines(&updates.report(sync.text()), out)?;
            }
            _ = sleep_until(give_up_at), if give_up_at.is_some() => {
                print_lines(&updates.report(sync.text()), out)?;
                let why = format!("gave up waiting for the server after {} s", options.wait.as_secs());
                return Err(give_up(options, &sync, why));
            }
        }
    }
    print_lines(&updates.report(sync.text()), out)?;
    if let (Some(path), false) = (recovering, discarded) {
        // Everything in it is saved now: the file has done its job.
        let _ = std::fs::remove_file(&path);
        eprintln!(
            "editor-client: the changes in {} are saved by the server; file removed",
            path.display()
        );
    }
    Ok(())
}

/// Sleeps until `when` (never returns for None; the caller guards that branch).
async fn sleep_until(when: Option<std::time::Instant>) {
    match when {
        Some(when) => tokio::time::sleep_until(when.into()).await,
        None => std::future::pending().await,
    }
}

fn print_lines(lines: &[String], out: &mut impl Write) -> std::io::Result<()> {
    if lines.is_empty() {
        return Ok(());
    }
    for line in lines {
        writeln!(out, "{line}")?;
    }
    out.flush()
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
    mut updates: Option<&mut LineUpdates>,
    discarded_any: &mut bool,
) -> Result<(), ClientError> {
    let msg = match event {
        LinkEvent::Message(msg) => msg,
        LinkEvent::Lost { reason } => {
            sync.disconnected();
            eprintln!("editor-client: connection lost ({reason}); reconnecting…");
            return Ok(());
        }
        LinkEvent::Connected => {
            eprintln!("editor-client: reconnected; catching up");
            link.send(&sync.join(&options.document, &options.name))
                .await;
            return Ok(());
        }
    };
    for event in sync.receive(msg)? {
        match event {
            Event::Send(msg) => link.send(&msg).await,
            // Refused before the first join (document not UTF-8, too many documents open,
            // a bad token): retrying would get the same answer.
            Event::Error { code, reason } if is_fatal(code) || updates.is_none() => {
                return Err(ClientError::Server { code, reason })
            }
            Event::Error {
                code: ErrorCode::ReadOnly,
                reason,
            } => eprintln!("editor-client: {reason}"),
            Event::Error { reason, .. } => {
                // The server's reason is already words ("server shutting down", "too
                // slow"); the code is for programs. The reconnect says "reconnecting…".
                link.lose(reason);
            }
            Event::Reset { discarded } => {
                *discarded_any |= discarded;
                if discarded {
                    eprintln!(
                        "editor-client: the server's copy replaced ours; unacknowledged lines were lost"
                    );
                }
                if let Some(updates) = updates.as_deref_mut() {
                    updates.rebase(sync.text());
                }
            }
            Event::RemoteEdit { author, op } => match updates.as_deref_mut() {
                None => {}
                Some(_) if options.raw_updates => print_update(&op, out)?,
                Some(updates) => {
                    let name = sync
                        .participants()
                        .find(|p| p.id == author)
                        .map_or_else(|| "someone".to_owned(), |p| p.name.clone());
                    updates.remote_change(&name, std::time::Instant::now());
                }
            },
            _ => {}
        }
    }
    Ok(())
}

/// `--raw-updates`: `Document updated: <inserted text>` for each insert of a remote change
/// (every line of a multi-line insert prefixed), `Document updated: N characters deleted`.
fn print_update(op: &TextOperation, out: &mut impl Write) -> std::io::Result<()> {
    let mut deleted = 0;
    for c in op.components() {
        match c {
            Component::Insert(s) => {
                for line in s.strip_suffix('\n').unwrap_or(s).split('\n') {
                    writeln!(out, "Document updated: {line}")?;
                }
            }
            Component::Delete(n) => deleted += n,
            Component::Retain(_) => {}
        }
    }
    match deleted {
        0 => {}
        1 => writeln!(out, "Document updated: 1 character deleted")?,
        n => writeln!(out, "Document updated: {n} characters deleted")?,
    }
    out.flush()
}
