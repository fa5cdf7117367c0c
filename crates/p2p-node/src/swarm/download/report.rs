//! What a download tells the user: the progress display while it runs and the summary
//! line at the end (size, time, rate, bytes per peer, peers dropped).

use std::collections::BTreeMap;
use std::fmt;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::lock;
use crate::wire::NodeId;
use crate::words::count;

/// The end of a successful download.
#[derive(Debug, Clone)]
pub struct Summary {
    pub name: String,
    pub size: u64,
    pub elapsed: Duration,
    /// Of `elapsed`: making the file durable at the end (fsync, rename, fsync of the dir).
    pub sync: Duration,
    /// Pieces fetched over the network (new ones; end-game duplicates not counted).
    pub fetched: usize,
    /// Pieces verified from an earlier, interrupted download.
    pub resumed: usize,
    pub rejected: usize,
    pub duplicates: usize,
    /// Bytes of verified pieces received from each peer.
    pub per_peer: BTreeMap<NodeId, u64>,
    pub dropped: Vec<NodeId>,
}

impl Summary {
    /// The first line the user sees: `get a.bin: complete, 2.9 MiB in 0.02 s (125.3 MiB/s)
    /// from Node 2, Node 3`; [`Summary::details`] follows, indented.
    pub fn short(&self) -> String {
        let secs = self.elapsed.as_secs_f64().max(1e-6);
        let fetched_bytes: u64 = self.per_peer.values().sum();
        let from: Vec<String> = self.per_peer.keys().map(|p| format!("Node {p}")).collect();
        let from = if from.is_empty() {
            "this node's earlier pieces".to_owned()
        } else {
            from.join(", ")
        };
        format!(
            "get {}: complete, {} in {:.2} s ({:.1} MiB/s) from {from}",
            self.name,
            mib(self.size),
            secs,
            fetched_bytes as f64 / secs / MIB,
        )
    }

    /// The rest of the summary, two indented lines.
    pub fn details(&self) -> String {
        let mut received: Vec<String> = self
            .per_peer
            .iter()
            .map(|(peer, bytes)| format!("Node {peer} {}", mib(*bytes)))
            .collect();
        if received.is_empty() {
            received.push("nothing".to_owned());
        }
        let dropped = if self.dropped.is_empty() {
            "no peer dropped".to_owned()
        } else {
            let list: Vec<String> = self.dropped.iter().map(|p| format!("Node {p}")).collect();
            format!("dropped for bad pieces: {}", list.join(", "))
        };
        format!(
            "  pieces: {} fetched, {} resumed, {} rejected, {} duplicate; {:.2} s of fsync\n  received: {}; {dropped}",
            self.fetched,
            self.resumed,
            self.rejected,
            self.duplicates,
            self.sync.as_secs_f64(),
            received.join(", "),
        )
    }
}

/// Bytes in a MiB, the unit of every size and rate the node shows.
const MIB: f64 = 1024.0 * 1024.0;

/// The whole summary on one line, for the log (scripts and tests parse it).
impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.elapsed.as_secs_f64().max(1e-6);
        let fetched_bytes: u64 = self.per_peer.values().sum();
        write!(
            f,
            "get {}: complete, {} bytes ({}) in {:.2} s ({:.1} MiB/s; {:.2} s of it fsync); pieces: {} fetched, {} resumed, {} rejected, {} duplicate; received:",
            self.name,
            self.size,
            mib(self.size),
            secs,
            fetched_bytes as f64 / secs / MIB,
            self.sync.as_secs_f64(),
            self.fetched,
            self.resumed,
            self.rejected,
            self.duplicates,
        )?;
        for (peer, bytes) in &self.per_peer {
            write!(f, " Node {peer} {bytes} B ({}),", mib(*bytes))?;
        }
        if self.per_peer.is_empty() {
            write!(f, " nothing,")?;
        }
        if self.dropped.is_empty() {
            write!(f, " no peer dropped")
        } else {
            let list: Vec<String> = self.dropped.iter().map(|p| format!("Node {p}")).collect();
            write!(f, " dropped for bad pieces: {}", list.join(", "))
        }
    }
}

pub(super) fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// Progress display: an indicatif bar when stdout is a terminal that no line editor owns
/// (the bar would be drawn over its prompt), otherwise a line every 10 %.
pub(super) struct Progress {
    name: String,
    size: u64,
    bar: Option<indicatif::ProgressBar>,
    started: Instant,
    last_tenth: Mutex<u64>,
}

impl Progress {
    pub(super) fn new(name: &str, size: u64, peers: usize) -> Self {
        let terminal = std::io::stdout().is_terminal() && !crate::console::has_line_editor();
        let bar = terminal.then(|| {
            let bar = indicatif::ProgressBar::with_draw_target(
                Some(size),
                indicatif::ProgressDrawTarget::stdout(),
            );
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{prefix} [{bar:30}] {percent:>3}% {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} ETA {eta} {msg}",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_prefix(format!("get {name}"));
            bar.set_message(count(peers as u64, "peer"));
            bar
        });
        Progress {
            name: name.to_owned(),
            size,
            bar,
            started: Instant::now(),
            last_tenth: Mutex::new(0),
        }
    }

    pub(super) fn update(&self, verified: u64, peers: usize) {
        if let Some(bar) = &self.bar {
            bar.set_position(verified);
            bar.set_message(count(peers as u64, "peer"));
            return;
        }
        let tenth = (verified * 10).checked_div(self.size).unwrap_or(10);
        let mut last = lock(&self.last_tenth);
        if tenth > *last && tenth < 10 {
            *last = tenth;
            let secs = self.started.elapsed().as_secs_f64().max(1e-6);
            let line = format!(
                "get {}: {}% ({} of {}) from {}, {:.1} MiB/s",
                self.name,
                tenth * 10,
                mib(verified),
                mib(self.size),
                count(peers as u64, "peer"),
                verified as f64 / secs / MIB
            );
            crate::console::announce(&line);
        }
    }

    pub(super) fn finish(&self, verified: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(verified);
            bar.finish_and_clear();
        }
    }
}

/// Prints one line on stdout (the console's output).
pub fn print_line(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_summary_names_every_peer() {
        let summary = Summary {
            name: "a b".into(),
            size: 3 << 20,
            elapsed: Duration::from_millis(500),
            sync: Duration::from_millis(100),
            fetched: 3,
            resumed: 0,
            rejected: 1,
            duplicates: 0,
            per_peer: BTreeMap::from([(2, 1 << 20), (3, 2 << 20)]),
            dropped: vec![4],
        };
        let text = summary.to_string();
        assert!(
            text.starts_with("get a b: complete, 3145728 bytes (3.0 MiB) in 0.50 s (6.0 MiB/s; 0.10 s of it fsync)"),
            "{text}"
        );
        assert_eq!(
            summary.short(),
            "get a b: complete, 3.0 MiB in 0.50 s (6.0 MiB/s) from Node 2, Node 3"
        );
        assert_eq!(
            summary.details(),
            "  pieces: 3 fetched, 0 resumed, 1 rejected, 0 duplicate; 0.10 s of fsync\n  received: Node 2 1.0 MiB, Node 3 2.0 MiB; dropped for bad pieces: Node 4"
        );
        assert!(text.contains("Node 2 1048576 B"), "{text}");
        assert!(text.contains("dropped for bad pieces: Node 4"), "{text}");
    }
}
