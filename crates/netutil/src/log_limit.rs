//! Repeated warnings logged once per key per interval, with a count of the rest.
//!
//! A flood of bad connections must not become a flood of log lines (5,000 slowloris
//! connections, 5,000 warnings; a reconnecting client on a full disk, 35 MB of log in a
//! minute). A [`LogLimiter`] lets the first event for a key through, then swallows the
//! others for an interval and lets the next one through with how many were swallowed:
//!
//! ```text
//! 127.0.0.1: refused: too many connections from this source (... 4,812 more in the last 10 s)
//! ```
//!
//! The table is bounded: beyond its size, keys share one "other" slot, so a flood of
//! distinct sources cannot grow it.

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Keys tracked individually before they share one slot.
const MAX_KEYS: usize = 4096;

/// The usual interval between two lines about the same trouble.
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Decides which repeated events are logged.
#[derive(Debug)]
pub struct LogLimiter<K> {
    interval: Duration,
    slots: Mutex<Slots<K>>,
}

#[derive(Debug)]
struct Slots<K> {
    by_key: HashMap<K, Slot>,
    other: Slot,
}

#[derive(Debug, Default, Clone, Copy)]
struct Slot {
    last: Option<Instant>,
    suppressed: u64,
}

/// What to append to a line that is logged: nothing, or how many were not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Suppressed {
    pub count: u64,
    pub over: Duration,
}

impl<K: Hash + Eq + Clone> LogLimiter<K> {
    pub fn new(interval: Duration) -> Self {
        LogLimiter {
            interval,
            slots: Mutex::new(Slots {
                by_key: HashMap::new(),
                other: Slot::default(),
            }),
        }
    }

    /// Records one event for `key`. `Some` means log it now (with the count of events
    /// swallowed since the last line); `None` means stay quiet.
    pub fn check(&self, key: &K) -> Option<Suppressed> {
        self.check_at(key, Instant::now())
    }

    fn check_at(&self, key: &K, now: Instant) -> Option<Suppressed> {
        let interval = self.interval;
        let mut slots = self
            .slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !slots.by_key.contains_key(key) && slots.by_key.len() >= MAX_KEYS {
            slots.by_key.retain(|_, slot| {
                slot.last
                    .is_some_and(|t| now.saturating_duration_since(t) < interval)
            });
        }
        let slot = if slots.by_key.len() < MAX_KEYS || slots.by_key.contains_key(key) {
            slots.by_key.entry(key.clone()).or_default()
        } else {
            &mut slots.other
        };
        match slot.last {
            Some(last) if now.saturating_duration_since(last) < interval => {
                slot.suppressed += 1;
                None
            }
            last => {
                let over = last.map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
                slot.last = Some(now);
                Some(Suppressed {
                    count: std::mem::take(&mut slot.suppressed),
                    over,
                })
            }
        }
    }
}

impl fmt::Display for Suppressed {
    /// Empty when nothing was swallowed, else ` (... 4,812 more in the last 10 s)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.count == 0 {
            return Ok(());
        }
        write!(
            f,
            " (... {} more in the last {} s)",
            thousands(self.count),
            self.over.as_secs().max(1)
        )
    }
}

/// `4812` as `4,812`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn once_per_interval_per_key_then_the_count() {
        let limiter = LogLimiter::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(limiter.check_at(&1, t0).unwrap().to_string(), "");
        for i in 0..4812 {
            assert!(limiter
                .check_at(&1, t0 + Duration::from_millis(i))
                .is_none());
        }
        // Another key is not held back by the first.
        assert!(limiter.check_at(&2, t0).is_some());
        let next = limiter.check_at(&1, t0 + Duration::from_secs(10)).unwrap();
        assert_eq!(next.to_string(), " (... 4,812 more in the last 10 s)");
    }

    #[test]
    fn many_keys_share_one_slot_beyond_the_table() {
        let limiter = LogLimiter::new(Duration::from_secs(10));
        let t0 = Instant::now();
        let logged = (0..MAX_KEYS as u32 + 1000)
            .filter(|k| limiter.check_at(k, t0).is_some())
            .count();
        assert_eq!(logged, MAX_KEYS + 1);
        assert!(limiter.slots.lock().unwrap().by_key.len() <= MAX_KEYS);
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
    }
}
