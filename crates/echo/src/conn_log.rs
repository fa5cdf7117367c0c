//! Which connect and disconnect lines `echo-server` logs at info, and the summaries of
//! those it does not.
//!
//! One client connecting is worth a line, a hundred at once are not: `echo-client bench`
//! opens its connections together, and a default run would print a hundred connect and a
//! hundred disconnect lines. So each source (an address) gets its first [`BURST`]
//! connections within [`BURST_WINDOW`] logged at info; beyond that, the source is busy and
//! its connections are logged at debug, until it has been quiet (no connect, no
//! disconnect, nothing open that was logged at debug) for [`SETTLE`]. What the debug lines
//! said is summed up at info, once the source settles or every [`SUMMARY_INTERVAL`] while it
//! stays busy:
//!
//! ```text
//! accepted 90 connections from 127.0.0.1 in the last 1.2 s, 90 closed (1800 bytes echoed); each logged at debug level
//! ```
//!
//! Pure apart from a mutex: the clock comes in as arguments, and the caller logs.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Connections per source within [`BURST_WINDOW`] logged at info.
pub const BURST: u32 = 5;
/// The window in which more than [`BURST`] connections make a source busy.
pub const BURST_WINDOW: Duration = Duration::from_secs(1);
/// Quiet time after which a busy source's summary is logged.
pub const SETTLE: Duration = Duration::from_secs(1);
/// Longest time between two summaries of a source that stays busy.
pub const SUMMARY_INTERVAL: Duration = Duration::from_secs(10);
/// Sources tracked individually; beyond it, connections from new sources are logged at
/// debug and summed up under "other sources", so a flood of addresses cannot grow the
/// table.
const MAX_SOURCES: usize = 4096;

/// The log level of one connection's connect and disconnect lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Debug,
}

/// Per-source counts, owned by the server's accept loop and its connections.
#[derive(Debug, Default)]
pub struct ConnectionLog {
    table: Mutex<HashMap<Option<IpAddr>, Source>>,
}

#[derive(Debug)]
struct Source {
    window_start: Instant,
    in_window: u32,
    /// Connections logged at debug that are still open.
    open_quiet: u64,
    /// What happened at debug level since the last summary.
    accepted: u64,
    closed: u64,
    bytes: u64,
    /// The first and the latest event since the last summary.
    since: Option<Instant>,
    last: Instant,
}

impl Source {
    fn new(now: Instant) -> Self {
        Source {
            window_start: now,
            in_window: 0,
            open_quiet: 0,
            accepted: 0,
            closed: 0,
            bytes: 0,
            since: None,
            last: now,
        }
    }

    fn busy(&self) -> bool {
        self.open_quiet > 0 || self.since.is_some()
    }

    fn note(&mut self, now: Instant) {
        self.since.get_or_insert(now);
        self.last = now;
    }
}

impl ConnectionLog {
    pub fn new() -> Self {
        ConnectionLog::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Option<IpAddr>, Source>> {
        self.table
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A connection from `ip` was accepted: at which level to log it (and its end).
    pub fn accepted(&self, ip: IpAddr, now: Instant) -> Level {
        let mut table = self.lock();
        let key = if table.contains_key(&Some(ip)) || table.len() < MAX_SOURCES {
            Some(ip)
        } else {
            None
        };
        let source = table.entry(key).or_insert_with(|| Source::new(now));
        if now.saturating_duration_since(source.window_start) >= BURST_WINDOW {
            source.window_start = now;
            source.in_window = 0;
        }
        source.in_window = source.in_window.saturating_add(1);
        if key.is_some() && source.in_window <= BURST && !source.busy() {
            return Level::Info;
        }
        source.open_quiet += 1;
        source.accepted += 1;
        source.note(now);
        Level::Debug
    }

    /// A connection accepted at `level` closed after echoing `bytes`.
    pub fn closed(&self, ip: IpAddr, level: Level, bytes: u64, now: Instant) {
        if level == Level::Info {
            return;
        }
        let mut table = self.lock();
        let source = match table.get_mut(&Some(ip)) {
            Some(source) => source,
            None => match table.get_mut(&None) {
                Some(source) => source,
                None => return,
            },
        };
        source.open_quiet = source.open_quiet.saturating_sub(1);
        source.closed += 1;
        source.bytes += bytes;
        source.note(now);
    }

    /// The summaries due at `now` (a source quiet for [`SETTLE`], or summed up last
    /// [`SUMMARY_INTERVAL`] ago); forgets sources with nothing left to say.
    pub fn summaries(&self, now: Instant) -> Vec<String> {
        let mut table = self.lock();
        let mut lines = Vec::new();
        for (key, source) in table.iter_mut() {
            let Some(since) = source.since else { continue };
            let settled = now.saturating_duration_since(source.last) >= SETTLE;
            if settled || now.saturating_duration_since(since) >= SUMMARY_INTERVAL {
                lines.push(summary(*key, source, now.saturating_duration_since(since)));
                source.accepted = 0;
                source.closed = 0;
                source.bytes = 0;
                source.since = None;
            }
        }
        table.retain(|_, source| {
            source.busy() || now.saturating_duration_since(source.window_start) < BURST_WINDOW
        });
        lines
    }
}

/// `accepted 90 connections from 127.0.0.1 in the last 1.2 s, 90 closed (1800 bytes
/// echoed); each logged at debug level`.
fn summary(key: Option<IpAddr>, source: &Source, over: Duration) -> String {
    let from = key.map_or_else(|| "other sources".to_owned(), |ip| ip.to_string());
    let plural = |n: u64| if n == 1 { "" } else { "s" };
    let over = over.max(Duration::from_millis(100)).as_secs_f64();
    let head = if source.accepted > 0 {
        let mut head = format!(
            "accepted {} connection{} from {from} in the last {over:.1} s",
            source.accepted,
            plural(source.accepted)
        );
        if source.closed > 0 {
            head.push_str(&format!(", {} closed", source.closed));
        }
        head
    } else {
        format!(
            "closed {} connection{} from {from} in the last {over:.1} s",
            source.closed,
            plural(source.closed)
        )
    };
    let bytes = if source.closed > 0 {
        format!(" ({} byte{} echoed)", source.bytes, plural(source.bytes))
    } else {
        String::new()
    };
    let open = if source.open_quiet > 0 {
        format!(", {} still open", source.open_quiet)
    } else {
        String::new()
    };
    format!("{head}{bytes}{open}; each logged at debug level")
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));

    #[test]
    fn a_burst_beyond_the_first_few_is_logged_at_debug_and_summed_up_once_it_settles() {
        let log = ConnectionLog::new();
        let t0 = Instant::now();
        let levels: Vec<Level> = (0..100).map(|_| log.accepted(A, t0)).collect();
        assert!(levels[..BURST as usize].iter().all(|&l| l == Level::Info));
        assert!(levels[BURST as usize..].iter().all(|&l| l == Level::Debug));
        // Another source is not affected.
        assert_eq!(log.accepted(B, t0), Level::Info);
        assert!(log.summaries(t0).is_empty(), "not settled yet");
        let later = t0 + SETTLE;
        assert_eq!(
            log.summaries(later),
            [
                "accepted 95 connections from 127.0.0.1 in the last 1.0 s, 95 still open; \
              each logged at debug level"
            ]
        );
        // They close 9 s later, 20 bytes echoed each.
        let end = t0 + Duration::from_secs(10);
        for level in levels {
            log.closed(A, level, 20, end);
        }
        assert!(log.summaries(end).is_empty());
        assert_eq!(
            log.summaries(end + SETTLE),
            [
                "closed 95 connections from 127.0.0.1 in the last 1.0 s (1900 bytes echoed); \
              each logged at debug level"
            ]
        );
        // Once settled and closed, the next client is worth a line again.
        let next = end + SETTLE + BURST_WINDOW;
        assert!(log.summaries(next).is_empty());
        assert_eq!(log.accepted(A, next), Level::Info);
    }

    #[test]
    fn a_source_that_stays_busy_is_summed_up_every_interval() {
        let log = ConnectionLog::new();
        let t0 = Instant::now();
        let mut summaries = Vec::new();
        for ms in (0..25_000).step_by(50) {
            let now = t0 + Duration::from_millis(ms);
            let level = log.accepted(A, now);
            log.closed(A, level, 1, now);
            summaries.extend(log.summaries(now));
        }
        assert_eq!(summaries.len(), 2, "{summaries:?}");
        assert!(
            summaries[0].starts_with("accepted ") && summaries[0].contains(" in the last 10.0 s"),
            "{summaries:?}"
        );
    }

    #[test]
    fn a_few_connections_now_and_then_are_all_logged_at_info() {
        let log = ConnectionLog::new();
        let t0 = Instant::now();
        for i in 0..50 {
            let now = t0 + Duration::from_millis(300 * i);
            let level = log.accepted(A, now);
            assert_eq!(level, Level::Info, "connection {i}");
            log.closed(A, level, 5, now);
            assert!(log.summaries(now).is_empty());
        }
    }
}
