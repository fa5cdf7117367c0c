//! A program running in a tmux session of its own (own server socket, killed on drop), for
//! tests of what a terminal user sees: type keys, read the screen, wait for a state.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::require::require_tool;

/// One tmux server with one session running a command in a `width`x`height` window.
pub struct Tmux {
    socket: String,
}

impl Tmux {
    /// Starts `command` (a shell command line) in a detached session.
    pub fn start(tag: &str, width: u16, height: u16, command: &str) -> Tmux {
        require_tool("tmux", "tmux");
        let tmux = Tmux {
            socket: format!("e2e-{tag}-{}", std::process::id()),
        };
        let (w, h) = (width.to_string(), height.to_string());
        let out = tmux.cmd(&["new-session", "-d", "-s", "t", "-x", &w, "-y", &h, command]);
        assert!(out.status.success(), "tmux: {out:?}");
        tmux
    }

    fn cmd(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .env("LANG", "C.UTF-8")
            .env_remove("TMUX")
            .output()
            .expect("tmux runs")
    }

    /// Sends tmux key names (`Enter`, `Up`, `C-c`).
    pub fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "t"];
        args.extend_from_slice(keys);
        assert!(self.cmd(&args).status.success());
    }

    /// Types `text` literally.
    pub fn type_text(&self, text: &str) {
        assert!(self
            .cmd(&["send-keys", "-t", "t", "-l", text])
            .status
            .success());
    }

    /// The visible lines.
    pub fn screen(&self) -> Vec<String> {
        let out = self.cmd(&["capture-pane", "-p", "-t", "t"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Polls the screen until `cond` holds; panics with the screen after `timeout`.
    pub fn wait_screen(
        &self,
        what: &str,
        timeout: Duration,
        cond: impl Fn(&[String]) -> bool,
    ) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let screen = self.screen();
            if cond(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; screen:\n{}",
                screen.join("\n")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The terminal cursor, `(column, row)` from 0.
    pub fn cursor(&self) -> (usize, usize) {
        let out = self.cmd(&[
            "display-message",
            "-p",
            "-t",
            "t",
            "#{cursor_x} #{cursor_y}",
        ]);
        let text = String::from_utf8_lossy(&out.stdout);
        let mut numbers = text
            .split_whitespace()
            .map(|n| n.parse().unwrap_or(usize::MAX));
        let x = numbers.next().unwrap_or(usize::MAX);
        (x, numbers.next().unwrap_or(usize::MAX))
    }

    /// Polls until the cursor is at `want` (a frame may reach tmux in pieces); panics with
    /// the screen after `timeout`.
    pub fn wait_cursor(&self, want: (usize, usize), timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let at = self.cursor();
            if at == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "cursor at {at:?}, expected {want:?}; screen:\n{}",
                self.screen().join("\n")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Pastes `text` as a bracketed paste (with the markers, when the program asked for
    /// them), as a terminal does for a paste.
    pub fn paste(&self, text: &str) {
        assert!(self
            .cmd(&["set-buffer", "-b", "clip", text])
            .status
            .success());
        let out = self.cmd(&["paste-buffer", "-p", "-b", "clip", "-t", "t"]);
        assert!(out.status.success(), "tmux paste-buffer: {out:?}");
    }

    /// Resizes the window (the program sees SIGWINCH).
    pub fn resize(&self, width: u16, height: u16) {
        let (w, h) = (width.to_string(), height.to_string());
        let out = self.cmd(&["resize-window", "-t", "t", "-x", &w, "-y", &h]);
        assert!(out.status.success(), "tmux resize-window: {out:?}");
    }

    /// [`Tmux::wait_screen`] with the screen as one text, lines joined by `\n`.
    pub fn wait_text(&self, what: &str, timeout: Duration, cond: impl Fn(&str) -> bool) -> String {
        self.wait_screen(what, timeout, |lines| cond(&lines.join("\n")))
            .join("\n")
    }

    /// True while the session's program runs.
    pub fn alive(&self) -> bool {
        self.cmd(&["has-session", "-t", "t"]).status.success()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd(&["kill-server"]);
    }
}
