//! Full-screen mode (stdin and stdout are terminals): the event loop that ties the
//! terminal, the [`View`] model, the [`SyncClient`] and the reconnecting [`Link`] together.
//!
//! Terminal input is read by a plain thread (crossterm's reader blocks) and handed over a
//! bounded channel; the loop `select!`s between it and the link, handles everything that is
//! already waiting, then draws once. Local edits apply at once (the sync client sends or
//! buffers them); remote edits arrive in local coordinates and only move the view the way
//! they move the text. Ctrl-Q quits, first waiting up to [`QUIT_GRACE`] for unacknowledged
//! edits to be acknowledged so that nothing typed just before quitting is lost.

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

use super::lines::{is_fatal, ClientError, LineOptions};
use super::link::{Link, LinkEvent, LinkState};
use super::render::{self, ConnState, Peer, Status, PALETTE};
use super::sync::{Event, SyncClient};
use super::view::{action_for_key, action_for_paste, Action, View};
use crate::presence::Selection;
use crate::protocol::{random_key, MAX_DOCUMENT_BYTES};

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
    let mut link = Link::connect(options.target()).await?;
    let mut app = App {
        options: options.clone(),
        sync: SyncClient::new(random_key()),
        view: View::new(80, 23),
        notice: None,
        quitting: None,
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
        app.draw(&mut terminal, &link)?;
        if app.done() {
            return Ok(());
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
            _ = tokio::time::sleep_until(deadline) => return Ok(()),
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
        self.quitting.is_some() && !self.sync.has_pending()
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
            notice: self.notice.clone(),
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
            self.quitting = Some(Instant::now() + QUIT_GRACE);
            return;
        }
        self.notice = None;
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
                Event::Error { reason, .. } => link.lose(reason),
                Event::Acked { .. } | Event::Participants | Event::Access { .. } => {}
            }
        }
        Ok(())
    }
}
