//! Shares that keep one hostile client from taking more than its part of a server.
//!
//! Two kinds of limit, both released by dropping a guard so no early return can leak them:
//!
//! * [`SourceLimiter`]: at most N of something (connections, handshakes in progress,
//!   documents opened) per source. A source is one IPv4 address, or one IPv6 /64: a
//!   single IPv6 host usually owns a whole /64, so counting its addresses one by one would
//!   give it 2^64 shares. 127.0.0.1 and 127.0.0.2 are two sources.
//! * [`MemoryBudget`]: a number of bytes every connection of a server draws from (frames
//!   being received, queued output). A [`Charge`] holds some of it and can grow or shrink.
//!
//! Both are cheap: the source table holds one entry per source with a live guard (so it
//! is bounded by the number of connections), and the budget is one atomic counter.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// The unit per-source limits count by: an IPv4 address, or an IPv6 /64 prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Source(IpAddr);

impl Source {
    /// The source `ip` belongs to (IPv4-mapped IPv6 addresses count as their IPv4 address).
    pub fn of(ip: IpAddr) -> Source {
        match ip.to_canonical() {
            IpAddr::V4(v4) => Source(IpAddr::V4(v4)),
            IpAddr::V6(v6) => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                Source(IpAddr::V6(Ipv6Addr::from(prefix)))
            }
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => write!(f, "{v4}"),
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
        }
    }
}

/// Counts something per source and refuses beyond `max` at once.
#[derive(Debug, Clone)]
pub struct SourceLimiter {
    inner: Arc<SourceTable>,
}

#[derive(Debug)]
struct SourceTable {
    max: usize,
    counts: Mutex<HashMap<Source, usize>>,
}

/// Holds one unit of a source's share; dropping it gives the unit back.
#[derive(Debug)]
pub struct SourceGuard {
    table: Arc<SourceTable>,
    source: Source,
}

/// A source already holds its whole share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{from} already holds {max} (the per-source limit)")]
pub struct SourceFull {
    pub from: Source,
    pub max: usize,
}

impl SourceLimiter {
    /// At most `max` units per source (0 is treated as 1: a limit that refuses everyone
    /// is a configuration mistake, not a policy).
    pub fn new(max: usize) -> Self {
        SourceLimiter {
            inner: Arc::new(SourceTable {
                max: max.max(1),
                counts: Mutex::new(HashMap::new()),
            }),
        }
    }

    pub fn max(&self) -> usize {
        self.inner.max
    }

    /// Takes one unit of `ip`'s source's share, or says it has none left.
    pub fn try_acquire(&self, ip: IpAddr) -> Result<SourceGuard, SourceFull> {
        let source = Source::of(ip);
        let mut counts = lock(&self.inner.counts);
        let count = counts.entry(source).or_insert(0);
        if *count >= self.inner.max {
            return Err(SourceFull {
                from: source,
                max: self.inner.max,
            });
        }
        *count += 1;
        Ok(SourceGuard {
            table: self.inner.clone(),
            source,
        })
    }

    /// Units `ip`'s source holds now.
    pub fn held(&self, ip: IpAddr) -> usize {
        lock(&self.inner.counts)
            .get(&Source::of(ip))
            .copied()
            .unwrap_or(0)
    }

    /// Sources holding at least one unit (the table never holds more).
    pub fn sources(&self) -> usize {
        lock(&self.inner.counts).len()
    }
}

impl SourceGuard {
    pub fn source(&self) -> Source {
        self.source
    }
}

impl Drop for SourceGuard {
    fn drop(&mut self) {
        let mut counts = lock(&self.table.counts);
        if let Some(count) = counts.get_mut(&self.source) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.remove(&self.source);
            }
        }
    }
}

/// A poisoned lock only means another thread panicked while counting; the counts are
/// still integers, so keep using them rather than disabling the limit.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Bytes a server's connections may hold together. Cloning shares the same budget.
#[derive(Debug, Clone)]
pub struct MemoryBudget {
    inner: Arc<BudgetInner>,
}

#[derive(Debug)]
struct BudgetInner {
    limit: usize,
    used: AtomicUsize,
}

/// Bytes taken from a [`MemoryBudget`], given back when dropped.
#[derive(Debug)]
pub struct Charge {
    budget: MemoryBudget,
    bytes: usize,
}

impl MemoryBudget {
    pub fn new(limit: usize) -> Self {
        MemoryBudget {
            inner: Arc::new(BudgetInner {
                limit,
                used: AtomicUsize::new(0),
            }),
        }
    }

    /// A budget nothing exceeds (for clients and tests).
    pub fn unlimited() -> Self {
        MemoryBudget::new(usize::MAX)
    }

    pub fn limit(&self) -> usize {
        self.inner.limit
    }

    /// Bytes charged right now.
    pub fn used(&self) -> usize {
        self.inner.used.load(Ordering::Relaxed)
    }

    /// True when less than `1/denominator` of the budget is left: callers refuse optional
    /// work (new joins) a little before the hard limit, so the connections already
    /// admitted can still grow.
    pub fn nearly_full(&self, denominator: usize) -> bool {
        let headroom = self.inner.limit / denominator.max(1);
        self.used() > self.inner.limit.saturating_sub(headroom)
    }

    /// An empty charge, to grow later.
    pub fn charge_nothing(&self) -> Charge {
        Charge {
            budget: self.clone(),
            bytes: 0,
        }
    }

    /// Takes `bytes` if they fit.
    pub fn try_charge(&self, bytes: usize) -> Option<Charge> {
        self.take(bytes).then(|| Charge {
            budget: self.clone(),
            bytes,
        })
    }

    fn take(&self, bytes: usize) -> bool {
        let limit = self.inner.limit;
        self.inner
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|&total| total <= limit)
            })
            .is_ok()
    }

    fn give_back(&self, bytes: usize) {
        self.inner.used.fetch_sub(bytes, Ordering::AcqRel);
    }
}

impl Charge {
    /// Bytes this charge holds.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Makes the charge exactly `bytes`; false (and unchanged) if growing does not fit.
    pub fn try_resize(&mut self, bytes: usize) -> bool {
        if bytes > self.bytes {
            if !self.budget.take(bytes - self.bytes) {
                return false;
            }
        } else {
            self.budget.give_back(self.bytes - bytes);
        }
        self.bytes = bytes;
        true
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.budget.give_back(self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ipv6_counts_by_64_and_mapped_ipv4_as_ipv4() {
        assert_eq!(
            Source::of(ip("2001:db8::1")),
            Source::of(ip("2001:db8::ffff:1"))
        );
        assert_ne!(
            Source::of(ip("2001:db8::1")),
            Source::of(ip("2001:db8:0:1::1"))
        );
        assert_eq!(
            Source::of(ip("::ffff:127.0.0.1")),
            Source::of(ip("127.0.0.1"))
        );
        assert_ne!(Source::of(ip("127.0.0.1")), Source::of(ip("127.0.0.2")));
        assert_eq!(Source::of(ip("2001:db8::7")).to_string(), "2001:db8::/64");
    }

    #[test]
    fn a_source_gets_its_share_and_others_are_unaffected() {
        let limiter = SourceLimiter::new(2);
        let a = limiter.try_acquire(ip("192.0.2.1")).unwrap();
        let b = limiter.try_acquire(ip("192.0.2.1")).unwrap();
        let full = limiter.try_acquire(ip("192.0.2.1")).unwrap_err();
        assert_eq!(full.max, 2);
        let other = limiter.try_acquire(ip("192.0.2.2")).unwrap();
        drop(a);
        let c = limiter.try_acquire(ip("192.0.2.1")).unwrap();
        assert_eq!(limiter.held(ip("192.0.2.1")), 2);
        drop((b, c, other));
        assert_eq!(limiter.sources(), 0, "released sources leave the table");
    }

    #[test]
    fn the_budget_refuses_beyond_its_limit_and_charges_give_back_on_drop() {
        let budget = MemoryBudget::new(100);
        let mut a = budget.try_charge(60).unwrap();
        assert!(budget.try_charge(41).is_none());
        assert!(!a.try_resize(101));
        assert_eq!(a.bytes(), 60);
        assert!(a.try_resize(100));
        assert!(budget.try_charge(1).is_none());
        assert!(a.try_resize(10));
        let b = budget.try_charge(90).unwrap();
        assert_eq!(budget.used(), 100);
        drop((a, b));
        assert_eq!(budget.used(), 0);
        assert!(!budget.nearly_full(10));
    }
}
