//! What one source, and one connection, may take of the server.
//!
//! * per source (an IPv4 address or an IPv6 /64): connections, handshakes in progress
//!   (hello and `Join` not yet done), and documents loaded on its behalf;
//! * the whole server: one [`MemoryBudget`] in bytes (`--max-memory`) that frames being
//!   received and messages queued for clients draw from. Each session's queued-and-unread
//!   bytes are visible here, so when the budget runs out the sessions holding the most are
//!   shed first (they reconnect and catch up), instead of whoever happens to ask next;
//! * log lines about repeated trouble from one source, once per interval.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use netutil::{LogLimiter, MemoryBudget, Source, SourceLimiter, Suppressed, LOG_INTERVAL};
use tokio_util::sync::CancellationToken;

use super::Config;

/// The server's shared limits; one per server, used by every session and document.
pub struct Shares {
    pub connections: SourceLimiter,
    pub handshakes: SourceLimiter,
    pub documents: SourceLimiter,
    pub memory: MemoryBudget,
    log: LogLimiter<(Source, &'static str)>,
    doc_log: LogLimiter<(String, &'static str)>,
    loads: Mutex<HashMap<u64, Arc<Load>>>,
}

/// One session's queued, unwritten bytes, and the signal that sheds it.
#[derive(Debug, Default)]
pub struct Load {
    pub unread: AtomicUsize,
    pub shed: CancellationToken,
}

/// Keeps a session's [`Load`] visible to shedding while it lives.
pub struct LoadGuard<'a> {
    shares: &'a Shares,
    session: u64,
    pub load: Arc<Load>,
}

impl Shares {
    pub fn new(config: &Config) -> Self {
        Shares {
            connections: SourceLimiter::new(config.max_connections_per_source),
            handshakes: SourceLimiter::new(config.max_handshakes_per_source),
            documents: SourceLimiter::new(config.max_documents_per_source),
            memory: MemoryBudget::new(config.max_memory),
            log: LogLimiter::new(LOG_INTERVAL),
            doc_log: LogLimiter::new(LOG_INTERVAL),
            loads: Mutex::new(HashMap::new()),
        }
    }

    /// Whether to log trouble of kind `what` from `ip` now; see [`LogLimiter`].
    pub fn should_log(&self, ip: IpAddr, what: &'static str) -> Option<Suppressed> {
        self.log.check(&(Source::of(ip), what))
    }

    /// Whether to log trouble of kind `what` with document `name` now (a client that
    /// keeps reconnecting into a failing disk must not fill the log).
    pub fn should_log_doc(&self, name: &str, what: &'static str) -> Option<Suppressed> {
        self.doc_log.check(&(name.to_owned(), what))
    }

    /// Registers a session's load for shedding until the guard drops.
    pub fn register(&self, session: u64) -> LoadGuard<'_> {
        let load = Arc::new(Load::default());
        lock(&self.loads).insert(session, load.clone());
        LoadGuard {
            shares: self,
            session,
            load,
        }
    }

    /// The budget is short by about `needed` bytes: sheds the sessions holding the most
    /// unread bytes until what they hold covers it (with an eighth of the budget to spare,
    /// so one more message does not start this again). Returns how many were shed.
    pub fn shed(&self, needed: usize) -> usize {
        let mut heaviest: Vec<(usize, Arc<Load>)> = lock(&self.loads)
            .values()
            .filter(|l| !l.shed.is_cancelled())
            .map(|l| (l.unread.load(Ordering::Relaxed), l.clone()))
            .filter(|(unread, _)| *unread > 0)
            .collect();
        heaviest.sort_unstable_by_key(|(unread, _)| std::cmp::Reverse(*unread));
        let target = needed.saturating_add(self.memory.limit() / 8);
        let mut freed = 0usize;
        let mut shed = 0;
        for (unread, load) in heaviest {
            if freed >= target {
                break;
            }
            load.shed.cancel();
            freed += unread;
            shed += 1;
        }
        shed
    }
}

impl Drop for LoadGuard<'_> {
    fn drop(&mut self) {
        lock(&self.shares.loads).remove(&self.session);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_heaviest_sessions_are_shed_first() {
        let config = Config {
            max_memory: 800,
            ..Config::default()
        };
        let shares = Shares::new(&config);
        let guards: Vec<_> = [10, 500, 50, 300]
            .iter()
            .enumerate()
            .map(|(i, &unread)| {
                let g = shares.register(i as u64);
                g.load.unread.store(unread, Ordering::Relaxed);
                g
            })
            .collect();
        // Needs 100 + 100 spare: the 500-byte session alone covers it.
        assert_eq!(shares.shed(100), 1);
        let shed: Vec<bool> = guards.iter().map(|g| g.load.shed.is_cancelled()).collect();
        assert_eq!(shed, [false, true, false, false]);
        // Next time the already-shed one does not count: 300 and then 50 go.
        assert_eq!(shares.shed(250), 2);
        drop(guards);
        assert!(lock(&shares.loads).is_empty());
    }
}
