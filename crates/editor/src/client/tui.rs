//! Full-screen mode (stdin and stdout are terminals): the event loop that ties the
//! terminal, the [`View`] model, the [`SyncClient`] and the reconnecting [`Link`] together.
//!
//! Terminal input is read by a plain thread (crossterm's reader blocks) and handed over a
//! bounded channel; the loop `select!`s between it and the link, handles everything that is
//! already waiting, then draws once. Local edits apply at once (the sync client sends or
//! buffers them); remote edits arrive in local coordinates and only move the view the way
//! they move the text. Ctrl-Q (or Ctrl-C) quits once every edit is acknowledged, waiting up
//! to [`QUIT_GRACE`] while connected. If edits are still unacknowledged (at once while
//! reconnecting) it asks "N changes not yet saved by the server (reconnecting…). Quit
//! anyway? y/N"; yes saves them to a recovery file ([`super::recovery`]) and exits with an
//! error naming it, anything else goes back to editing.

use std::io::{Stdout, Write};
use std::time::Duration;

use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::event::{
    self, DisableBracketedPaste, EnableBracketedPaste, Event as TermEvent,
};
use ratatui::crossterm::execute;
use ratatui::Terminal;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::lines::{give_up, is_fatal, recovery_offer, start_client, ClientError, LineOptions};
use super::link::{Link, LinkEvent, LinkState};
use super::render::{self, ConnState, Peer, Status, PALETTE};
use super::sync::{Event, SyncClient};
use super::view::{action_for_key, action_for_paste, Action, View};
use crate::presence::Selection;
use crate::protocol::MAX_DOCUMENT_BYTES;

/// How long Ctrl-Q waits for outstanding acknowledgements.
pub const QUIT_GRACE: Duration = Duration::from_secs(3);
/// Terminal events queued between the reader thread and the loop.
const INPUT_QUEUE: usize = 1024;
/// Events handled before the screen is drawn again (a burst of remote edits or a fast
/// typist still gets a redraw every so often).
const BATCH: usize = 256;

struct App {
    options: LineOptions,
    sync: SyncClient,
    view: View,
    notice: Option<String>,
    quitting: Option<Instant>,
    /// Asking whether to quit with unacknowledged edits.
    confirming: bool,
    /// The answer was yes.
    quit_anyway: bool,
    /// Resumed from this recovery file: deleted once everything in it is acknowledged.
    recovering: Option<std::path::PathBuf>,
    /// A snapshot replaced local edits since the start (the recovery file is then kept).
    discarded: bool,
}

/// Restores the terminal when dropped, also on errors.
struct TerminalGuard;

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        let _ = execute!(std::io::stdout(), DisableBracketedPaste);
        ratatui::restore();
    }
}

/// Runs full-screen mode until Ctrl-Q.
pub async fn run(options: &LineOptions) -> Result<(), ClientError> {
    let (sync, recovering) = start_client(options)?;
    let mut link = Link::connect(options.target()).await?;
    let mut app = App {
        options: options.clone(),
        sync,
        view: View::new(80, 23),
        notice: recovery_offer(options),
        quitting: None,
        confirming: false,
        quit_anyway: false,
        recovering,
        discarded: false,
    };
    link.send(&app.sync.join(&options.document, &options.name))
        .await;
    // Join before taking over the screen, so a refusal is an ordinary error message.
    while !app.sync.is_joined() {
        let event = link.next().await;
        app.link_event(&mut link, event).await?;
    }

    // Show the others where we are from the start.
    if let Some(msg) = app.sync.set_selection(Some(Selection::cursor(0))) {
        link.send(&msg).await;
    }

    let mut terminal = ratatui::init();
    let _guard = TerminalGuard;
    execute!(std::io::stdout(), EnableBracketedPaste)?;
    let size = terminal.size()?;
    app.view
        .resize(size.width, size.height.saturating_sub(1), app.sync.text());
    let (tx, mut input) = mpsc::channel(INPUT_QUEUE);
    std::thread::spawn(move || {
        while let Ok(ev) = event::read() {
            if tx.blocking_send(ev).is_err() {
                break;
            }
        }
    });

    loop {
        app.forget_recovered();
        app.draw(&mut terminal, &link)?;
        if app.done() {
            return Ok(());
        }
        if app.quit_anyway {
            let why = "quit before the server saved everything".to_owned();
            return Err(give_up(&app.options, &app.sync, why));
        }
        let deadline = app
            .quitting
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            ev = input.recv() => match ev {
                Some(ev) => app.terminal_event(&mut link, ev).await,
                None => return Ok(()),
            },
            ev = link.next() => app.link_event(&mut link, ev).await?,
            _ = tokio::time::sleep_until(deadline) => app.ask_before_quitting(),
        }
        // Take in whatever else is already waiting before drawing again.
        for _ in 0..BATCH {
            tokio::select! {
                biased;
                Ok(ev) = async { input.try_recv() } => app.terminal_event(&mut link, ev).await,
                ev = link.next() => app.link_event(&mut link, ev).await?,
                _ = std::future::ready(()) => break,
            }
        }
    }
}

impl App {
    /// Quitting and nothing left unacknowledged (otherwise the loop waits, reconnecting if
    /// need be, until the [`QUIT_GRACE`] deadline).
    fn done(&self) -> bool {
        (self.quitting.is_some() || self.confirming) && !self.sync.has_pending()
    }

    /// The grace period is over (or there is none: reconnecting) and edits are still
    /// unacknowledged: ask.
    fn ask_before_quitting(&mut self) {
        self.quitting = None;
        self.confirming = true;
    }

    /// The question asked while quitting with unacknowledged edits.
    fn question(&self, link: LinkState) -> String {
        let n = self.sync.pending_changes();
        format!(
            "{n} change{} not yet saved by the server ({}). Quit anyway? y/N",
            if n == 1 { "" } else { "s" },
            match link {
                LinkState::Reconnecting => "reconnecting…",
                LinkState::Up => "waiting for it",
            }
        )
    }

    /// The answer to "Quit anyway? y/N": y quits (saving a recovery file), any other key
    /// goes back to editing.
    fn answer(&mut self, key: &event::KeyEvent) {
        if key.kind == event::KeyEventKind::Release {
            return;
        }
        self.confirming = false;
        self.quit_anyway = matches!(key.code, event::KeyCode::Char('y' | 'Y'))
            && !key.modifiers.contains(event::KeyModifiers::CONTROL);
        if !self.quit_anyway {
            self.notice = Some("not quitting: keep editing".to_owned());
        }
    }

    /// Deletes the recovery file we resumed from once everything in it is acknowledged.
    fn forget_recovered(&mut self) {
        if self.sync.is_joined() && !self.sync.has_pending() {
            if let Some(path) = self.recovering.take() {
                if self.discarded {
                    self.notice = Some(format!("recovery file kept: {}", path.display()));
                } else {
                    let _ = std::fs::remove_file(&path);
                    self.notice = Some("recovered changes saved by the server".to_owned());
                }
            }
        }
    }

    fn draw(
        &mut self,
        terminal: &mut Terminal<CrosstermBackend<Stdout>>,
        link: &Link,
    ) -> Result<(), ClientError> {
        let peers = self.peers();
        let status = Status {
            document: self.options.document.clone(),
            revision: self.sync.revision(),
            name: self.options.name.clone(),
            state: match (self.quitting.is_some(), link.state()) {
                (_, LinkState::Reconnecting) => ConnState::Reconnecting,
                (true, LinkState::Up) => ConnState::Saving,
                (false, LinkState::Up) => ConnState::Connected,
            },
            pending: self.sync.has_pending(),
            waiting: self.sync.pending_changes(),
            notice: self.notice.clone(),
            prompt: self.confirming.then(|| self.question(link.state())),
            read_only: self.sync.is_read_only(),
        };
        let text = self.sync.text();
        let view = &self.view;
        terminal.draw(|frame| render::draw(frame, text, view, &peers, &status))?;
        std::io::stdout().flush()?;
        Ok(())
    }

    /// Other participants with their colours: handed out in id order, so they are
    /// distinct for up to [`PALETTE`]`.len()` people and the same on every redraw.
    fn peers(&self) -> Vec<Peer> {
        self.sync
            .participants()
            .enumerate()
            .map(|(i, p)| Peer {
                name: p.name.clone(),
                head: p.selection.map(|s| s.head),
                colour: PALETTE[i % PALETTE.len()],
            })
            .collect()
    }

    async fn terminal_event(&mut self, link: &mut Link, ev: TermEvent) {
        if self.confirming {
            if let TermEvent::Key(key) = &ev {
                self.answer(key);
                return;
            }
        }
        let action = match ev {
            TermEvent::Key(key) => action_for_key(key),
            TermEvent::Paste(text) => Some(action_for_paste(&text)),
            TermEvent::Resize(w, h) => {
                self.view.resize(w, h.saturating_sub(1), self.sync.text());
                None
            }
            _ => None,
        };
        let Some(action) = action else { return };
        if action == Action::Quit {
            if !self.sync.has_pending() {
                self.quitting = Some(Instant::now());
            } else if link.state() == LinkState::Reconnecting {
                self.ask_before_quitting();
            } else {
                self.quitting = Some(Instant::now() + QUIT_GRACE);
            }
            return;
        }
        self.notice = None;
        let edits = matches!(
            action,
            Action::Insert(_) | Action::Backspace | Action::Delete
        );
        if edits && self.sync.is_read_only() {
            // Refused here: the server would refuse it anyway.
            self.notice = Some("read-only: your edits are not accepted".to_owned());
            return;
        }
        if let Action::Insert(s) = &action {
            if self.sync.text().len_bytes() + s.len() > MAX_DOCUMENT_BYTES {
                // The server would refuse the change and close the connection.
                self.notice = Some(format!(
                    "not inserted: the document would exceed {} MiB",
                    MAX_DOCUMENT_BYTES >> 20
                ));
                return;
            }
        }
        if let Some(edit) = self.view.apply(&action, self.sync.text()) {
            let op = crate::ot::TextOperation::splice(
                self.sync.text().len_chars(),
                edit.pos,
                edit.del,
                &edit.ins,
            );
            match op.map_err(Into::into).and_then(|op| self.sync.edit(op)) {
                Ok(Some(msg)) => link.send(&msg).await,
                Ok(None) => {}
                Err(e) => self.notice = Some(format!("edit refused: {e}")),
            }
        }
        self.view.scroll_into_view(self.sync.text());
        let cursor = Selection::cursor(self.view.cursor());
        if self.sync.selection() != Some(cursor) {
            if let Some(msg) = self.sync.set_selection(Some(cursor)) {
                link.send(&msg).await;
            }
        }
    }

    async fn link_event(&mut self, link: &mut Link, event: LinkEvent) -> Result<(), ClientError> {
        let msg = match event {
            LinkEvent::Message(msg) => msg,
            LinkEvent::Lost { reason } => {
                self.sync.disconnected();
                tracing::debug!("connection lost: {reason}");
                return Ok(());
            }
            LinkEvent::Connected => {
                link.send(&self.sync.join(&self.options.document, &self.options.name))
                    .await;
                return Ok(());
            }
        };
        for event in self.sync.receive(msg)? {
            match event {
                Event::Send(msg) => link.send(&msg).await,
                Event::RemoteEdit { op, .. } => self.view.remote(&op, self.sync.text()),
                Event::Reset { discarded } => {
                    self.view.reset(self.sync.text());
                    self.discarded |= discarded;
                    if discarded {
                        self.notice = Some(
                            "the server's copy replaced ours: unacknowledged edits were lost"
                                .to_owned(),
                        );
                    }
                }
                Event::Error { code, reason } if is_fatal(code) => {
                    return Err(ClientError::Server { code, reason })
                }
                Event::Error {
                    code: crate::protocol::ErrorCode::ReadOnly,
                    reason,
                } => self.notice = Some(reason),
                Event::Error { reason, .. } => link.lose(reason),
                Event::Acked { .. } | Event::Participants | Event::Access { .. } => {}
            }
        }
        Ok(())
    }
}
