//! Child processes of the real binaries, killed when dropped, with their stderr captured
//! line by line so a test can wait for a log line (`listening on [::]:41234`).

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Path of a workspace binary, built from the current sources (see `fresh_bins.rs`).
pub fn bin_path(name: &str) -> PathBuf {
    let path = crate::fresh_bins::fresh_bin_dir().join(name);
    assert!(
        path.exists(),
        "{} is missing: is `{name}` a binary of this workspace?",
        path.display()
    );
    path
}

#[derive(Default)]
struct Lines {
    lines: Vec<String>,
    closed: bool,
}

/// A running binary. Killed (SIGKILL) on drop.
pub struct Proc {
    pub child: Child,
    pub name: String,
    stderr: Arc<(Mutex<Lines>, Condvar)>,
}

impl Proc {
    /// Starts binary `name` with `args`, stdin and stdout piped, stderr captured.
    pub fn start(name: &str, args: &[&str]) -> Proc {
        let mut cmd = Command::new(bin_path(name));
        cmd.args(args);
        Self::spawn(name, cmd)
    }

    /// Starts a prepared command (for extra env vars, working directory, `ip netns exec`).
    pub fn spawn(name: &str, mut cmd: Command) -> Proc {
        // RUST_LOG=info unless the test's environment or the command itself sets it.
        let set_by_cmd = cmd.get_envs().any(|(key, _)| key == "RUST_LOG");
        if std::env::var_os("RUST_LOG").is_none() && !set_by_cmd {
            cmd.env("RUST_LOG", "info");
        }
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let stderr = Arc::new((Mutex::new(Lines::default()), Condvar::new()));
        let pipe = child.stderr.take().expect("stderr is piped");
        let sink = stderr.clone();
        let label = name.to_owned();
        std::thread::spawn(move || {
            // Bytes, not `lines()`: a line that is not UTF-8 would end `lines()`, and the pipe,
            // no longer drained, would block the child on a later write once it filled up.
            let mut reader = BufReader::new(pipe);
            let mut raw = Vec::new();
            while matches!(reader.read_until(b'\n', &mut raw), Ok(n) if n > 0) {
                let text = raw.strip_suffix(b"\n").unwrap_or(&raw);
                let text = text.strip_suffix(b"\r").unwrap_or(text);
                let line = String::from_utf8_lossy(text).into_owned();
                raw.clear();
                if std::env::var_os("E2E_ECHO_STDERR").is_some() {
                    eprintln!("[{label}] {line}");
                }
                let (lock, cvar) = &*sink;
                lock.lock().expect("lines").lines.push(line);
                cvar.notify_all();
            }
            let (lock, cvar) = &*sink;
            lock.lock().expect("lines").closed = true;
            cvar.notify_all();
        });
        Proc {
            child,
            name: name.to_owned(),
            stderr,
        }
    }

    /// Waits until a stderr line contains `needle`; returns that line, or None on timeout
    /// or when the process closed stderr first.
    pub fn wait_for(&self, needle: &str, timeout: Duration) -> Option<String> {
        self.wait_for_nth(needle, 1, timeout)
    }

    /// Waits until `n` stderr lines contain `needle`; returns the n-th.
    pub fn wait_for_nth(&self, needle: &str, n: usize, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        let (lock, cvar) = &*self.stderr;
        let mut guard = lock.lock().expect("lines");
        loop {
            if let Some(line) = guard.lines.iter().filter(|l| l.contains(needle)).nth(n - 1) {
                return Some(line.clone());
            }
            let now = Instant::now();
            if guard.closed || now >= deadline {
                return None;
            }
            guard = cvar.wait_timeout(guard, deadline - now).expect("lines").0;
        }
    }

    /// Every stderr line so far.
    pub fn stderr_lines(&self) -> Vec<String> {
        self.stderr.0.lock().expect("lines").lines.clone()
    }

    /// All of stderr so far, for assertion messages.
    pub fn stderr_text(&self) -> String {
        self.stderr_lines().join("\n")
    }

    /// Waits for the `listening on ADDR` log line and returns the port.
    pub fn listening_port(&self) -> u16 {
        let line = self
            .wait_for("listening on ", Duration::from_secs(20))
            .unwrap_or_else(|| {
                panic!(
                    "{} never said it was listening; stderr:\n{}",
                    self.name,
                    self.stderr_text()
                )
            });
        let addr = line
            .split("listening on ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|a| a.parse::<SocketAddr>().ok())
            .unwrap_or_else(|| panic!("cannot parse the address in {line:?}"));
        addr.port()
    }

    pub fn stdin(&mut self) -> &mut ChildStdin {
        self.child.stdin.as_mut().expect("stdin is piped")
    }

    /// Writes to the child's stdin.
    pub fn write_stdin(&mut self, text: &str) {
        let stdin = self.stdin();
        stdin.write_all(text.as_bytes()).expect("write to stdin");
        stdin.flush().expect("flush stdin");
    }

    /// Takes stdout, for reading the child's output.
    pub fn take_stdout(&mut self) -> ChildStdout {
        self.child.stdout.take().expect("stdout is piped")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal (SIGTERM, SIGINT...) to the child.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
        unsafe {
            libc::kill(self.child.id() as i32, signal);
        }
    }

    /// SIGKILL, and reap it.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the process to exit, up to `timeout`; returns its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stderr_is_still_captured_after_a_line_that_is_not_utf8() {
        let mut cmd = Command::new("sh");
        cmd.args([
            "-c",
            r"printf 'bad \377 byte\nlistening after it\n' >&2; exec sleep 10",
        ]);
        let proc = Proc::spawn("sh", cmd);
        let line = proc.wait_for("listening after", Duration::from_secs(10));
        assert!(line.is_some(), "captured: {:?}", proc.stderr_lines());
        assert!(proc.stderr_text().contains("bad \u{fffd} byte"));
    }
}
