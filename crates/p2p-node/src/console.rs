//! The console: commands typed on stdin (`leader`, `peers`, `files`, `get NAME`, `help`,
//! `quit`), and everything the node says to its user.
//!
//! Lines are parsed here and sent to the node's event loop with a reply channel; the
//! answer is printed once. On a terminal the line editor (rustyline: history, arrows,
//! Ctrl-R) owns the prompt, and results and log lines are printed above it through its
//! external printer, so neither breaks the line being typed; Ctrl-C and Ctrl-D quit. When
//! stdin is not a terminal (scripts, tests) lines are read plainly, with a length limit,
//! and no prompt is shown; end of input then stops the console but not the node: a node
//! started with `< /dev/null` keeps running.
//!
//! [`say`] prints a result; [`announce`] prints an event the user asked for (a download's
//! outcome) and, without a line editor, logs it too, since scripts and tests follow the
//! log. [`ConsoleLog`] is the log's writer.

use std::io::IsTerminal;
use std::io::{BufRead, Read, Write};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use rustyline::error::ReadlineError;
use rustyline::ExternalPrinter;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::fmt::MakeWriter;

/// Longest accepted command line.
const MAX_LINE: usize = 4096;
/// How long the console waits for an answer (a follower's `files` asks the leader).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(3);

/// A parsed console command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Leader,
    Peers,
    Files,
    Get(String),
    Quit,
    Help,
}

/// Parses one line; `Ok(None)` for a blank line, `Err` with a usage message otherwise.
pub fn parse(line: &str) -> Result<Option<Command>, String> {
    let line = line.trim();
    let (word, rest) = match line.split_once(char::is_whitespace) {
        Some((w, r)) => (w, r.trim()),
        None => (line, ""),
    };
    let command = match (word, rest.is_empty()) {
        ("", _) => return Ok(None),
        ("leader", true) => Command::Leader,
        ("peers", true) => Command::Peers,
        ("files", true) => Command::Files,
        ("get", false) => Command::Get(rest.to_owned()),
        ("get", true) => return Err("usage: get NAME".into()),
        ("quit" | "exit", true) => Command::Quit,
        ("help" | "?", true) => Command::Help,
        _ => return Err(format!("unknown command {line:?}; {}", help())),
    };
    Ok(Some(command))
}

pub fn help() -> &'static str {
    "commands:
  leader      which node leads, and in which term
  peers       every node of the cluster and its state
  files       the cluster's file index
  get NAME    download NAME from every node holding it
  help        this list
  quit        stop this node"
}

/// The line editor's printer, once a line editor runs: output goes above the prompt.
static PRINTER: OnceLock<Mutex<Box<dyn ExternalPrinter + Send>>> = OnceLock::new();

/// True once a line editor owns the terminal (output must then go through [`say`]).
pub fn has_line_editor() -> bool {
    PRINTER.get().is_some()
}

/// Prints a result for the user, once: above the prompt while a line editor runs,
/// otherwise on stdout.
pub fn say(text: &str) {
    let mut text = text.to_owned();
    if !text.ends_with('\n') {
        text.push('\n');
    }
    if let Some(printer) = PRINTER.get() {
        if let Ok(mut printer) = printer.lock() {
            let _ = printer.print(text);
            return;
        }
    }
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// Prints the outcome of something the user started (`get NAME: failed: ...`). Without a
/// line editor it is logged as well (scripts and tests follow the log); with one, the user
/// would see it twice, so the log gets it at debug level only.
pub fn announce(line: &str) {
    announce_as(line, line);
}

/// Like [`announce`], with a shorter or friendlier text for the user than for the log
/// (a download's summary: a short line and indented details, where the log keeps it on
/// one line for scripts).
pub fn announce_as(shown: &str, logged: &str) {
    if PRINTER.get().is_some() {
        tracing::debug!("{logged}");
    } else {
        tracing::info!("{logged}");
    }
    say(shown);
}

/// The log's writer: stderr, or above the prompt while a line editor runs (a log line
/// written straight to the terminal would land in the middle of the line being typed).
#[derive(Debug, Clone, Copy, Default)]
pub struct ConsoleLog;

/// One log event's bytes, written out as a whole when dropped.
#[derive(Debug)]
pub struct LogLine(Vec<u8>);

impl Write for LogLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LogLine {
    fn drop(&mut self) {
        if self.0.is_empty() {
            return;
        }
        if let Some(printer) = PRINTER.get() {
            if let Ok(mut printer) = printer.lock() {
                let text = String::from_utf8_lossy(&self.0).into_owned();
                if printer.print(text).is_ok() {
                    return;
                }
            }
        }
        let _ = std::io::stderr().lock().write_all(&self.0);
    }
}

impl<'w> MakeWriter<'w> for ConsoleLog {
    type Writer = LogLine;

    fn make_writer(&'w self) -> LogLine {
        LogLine(Vec::new())
    }
}

/// A command and where its answer goes.
pub type Request = (Command, oneshot::Sender<String>);

/// Reads commands until end of input, `quit` or shutdown, sending each to `requests`.
pub async fn run(requests: mpsc::Sender<Request>, token: CancellationToken) {
    let terminal = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    let mut lines = match terminal.then(spawn_line_editor).flatten() {
        Some(lines) => lines,
        None => spawn_stdin_reader(),
    };
    loop {
        let line = tokio::select! {
            _ = token.cancelled() => return,
            line = lines.recv() => line,
        };
        let Some(line) = line else { return };
        let command = match parse(&line) {
            Ok(None) => continue,
            Ok(Some(c)) => c,
            Err(message) => {
                say(&message);
                continue;
            }
        };
        if command == Command::Help {
            say(help());
            continue;
        }
        let quit = command == Command::Quit;
        let (reply_tx, reply_rx) = oneshot::channel();
        if requests.send((command, reply_tx)).await.is_err() {
            return;
        }
        let answer = match tokio::time::timeout(ANSWER_TIMEOUT, reply_rx).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => "no answer (the node is shutting down)".to_owned(),
            Err(_) => format!("no answer within {ANSWER_TIMEOUT:?}"),
        };
        // An empty answer: the node has already said what there was to say, in order with
        // what follows (`get` prints `looking for holders` before its task can finish).
        if !answer.is_empty() {
            say(&answer);
        }
        if quit {
            return;
        }
    }
}

/// Reads stdin on a plain thread: a blocking read inside the runtime (tokio's stdin) would
/// keep the process from exiting while nobody types. Lines longer than [`MAX_LINE`] are cut.
fn spawn_stdin_reader() -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel(16);
    let spawned = std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            let stdin = std::io::stdin();
            let mut locked = stdin.lock();
            loop {
                let mut buf = Vec::new();
                match (&mut locked)
                    .take(MAX_LINE as u64)
                    .read_until(b'\n', &mut buf)
                {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                if buf.last() != Some(&b'\n') && buf.len() >= MAX_LINE {
                    // Skip the rest of an overlong line.
                    let mut rest = Vec::new();
                    let _ = locked.read_until(b'\n', &mut rest);
                }
                let line = String::from_utf8_lossy(&buf).into_owned();
                if tx.blocking_send(line).is_err() {
                    return;
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("cannot start the console: {e}");
    }
    rx
}

/// Runs the line editor on a thread of its own (its read blocks) and installs its printer
/// for [`say`] and [`ConsoleLog`]. None when the terminal cannot be set up; the caller
/// then reads stdin plainly. Ctrl-C and Ctrl-D (the editor reads them as keys, so no
/// signal arrives) send `quit`. After `quit` the thread stops reading, so the terminal is
/// back in its normal mode while the node shuts down.
fn spawn_line_editor() -> Option<mpsc::Receiver<String>> {
    let mut editor = match rustyline::DefaultEditor::new() {
        Ok(editor) => editor,
        Err(e) => {
            tracing::warn!("no line editing on this terminal: {e}");
            return None;
        }
    };
    let printer = editor.create_external_printer().ok()?;
    let (tx, rx) = mpsc::channel(16);
    let spawned = std::thread::Builder::new()
        .name("console".into())
        .spawn(move || loop {
            let line = match editor.readline("> ") {
                Ok(line) => line,
                Err(ReadlineError::Interrupted | ReadlineError::Eof) => "quit".to_owned(),
                Err(e) => {
                    tracing::warn!("console: {e}");
                    return;
                }
            };
            if !line.trim().is_empty() {
                let _ = editor.add_history_entry(line.as_str());
            }
            let quit = matches!(parse(&line), Ok(Some(Command::Quit)));
            if tx.blocking_send(line).is_err() || quit {
                return;
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("cannot start the console: {e}");
        return None;
    }
    let _ = PRINTER.set(Mutex::new(Box::new(printer)));
    Some(rx)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn commands_parse() {
        assert_eq!(parse(" leader ").unwrap(), Some(Command::Leader));
        assert_eq!(parse("peers").unwrap(), Some(Command::Peers));
        assert_eq!(parse("files").unwrap(), Some(Command::Files));
        assert_eq!(
            parse("get my file.txt").unwrap(),
            Some(Command::Get("my file.txt".into()))
        );
        assert_eq!(parse("quit").unwrap(), Some(Command::Quit));
        assert_eq!(parse("").unwrap(), None);
        assert!(parse("get").unwrap_err().contains("usage"));
        assert!(parse("leader now").is_err());
        assert!(parse("dance").unwrap_err().contains("commands:"));
        assert_eq!(parse("help").unwrap(), Some(Command::Help));
        for command in ["leader", "peers", "files", "get NAME", "help", "quit"] {
            assert!(help().contains(command), "{command} missing from help");
        }
    }
}
