//! The console: commands typed on stdin (`leader`, `peers`, `files`, `get NAME`, `quit`).
//!
//! Lines are read with a length limit, parsed here, and sent to the node's event loop with
//! a reply channel; the answer is printed to stdout. A prompt is shown only when stdin is a
//! terminal, so piped input (scripts, tests) gets clean output. End of input stops the
//! console but not the node: a node started with `< /dev/null` keeps running.

use std::io::IsTerminal;
use std::time::Duration;

use std::io::{BufRead, Read};

use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

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
    "commands: leader, peers, files, get NAME, quit"
}

/// A command and where its answer goes.
pub type Request = (Command, oneshot::Sender<String>);

/// Reads commands from stdin until end of input or shutdown, sending each to `requests`.
pub async fn run(requests: mpsc::Sender<Request>, token: CancellationToken) {
    let interactive = std::io::stdin().is_terminal();
    let mut lines = spawn_stdin_reader();
    let mut stdout = tokio::io::stdout();
    loop {
        if interactive {
            let _ = stdout.write_all(b"> ").await;
            let _ = stdout.flush().await;
        }
        let line = tokio::select! {
            _ = token.cancelled() => return,
            line = lines.recv() => line,
        };
        let Some(line) = line else { return };
        let command = match parse(&line) {
            Ok(None) => continue,
            Ok(Some(c)) => c,
            Err(message) => {
                print(&mut stdout, &message).await;
                continue;
            }
        };
        if command == Command::Help {
            print(&mut stdout, help()).await;
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
        print(&mut stdout, &answer).await;
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

async fn print(stdout: &mut tokio::io::Stdout, text: &str) {
    let mut text = text.to_owned();
    if !text.ends_with('\n') {
        text.push('\n');
    }
    let _ = stdout.write_all(text.as_bytes()).await;
    let _ = stdout.flush().await;
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
    }
}
