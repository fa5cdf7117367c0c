//! Per-source token buckets for UDP replies, in a table of bounded size (pure: the caller
//! passes the time in, so tests need no clock and no socket).
//!
//! UDP echo can be abused to reflect traffic at a spoofed victim, or to start an endless
//! loop between two echo-like services (CERT CA-1996-01). Each source address may get
//! `rate` replies per second with bursts of `burst`; beyond that its datagrams are dropped.
//! The table holds at most `max_sources` addresses so a flood of spoofed sources cannot
//! grow it: a bucket that has refilled completely carries no information and is evicted
//! first; if every slot belongs to a source active right now, the least recently seen of
//! a sample is evicted, so a newcomer always gets a bucket and a source that keeps
//! talking keeps its own (a spoofed source is seen once; a real client comes back).
//! Whatever the number of sources, all replies together stay within a global budget of
//! `total_rate` per second, so a flood from many addresses cannot make us a reflector of
//! more than that.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// What to do with one datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Reply.
    Allow,
    /// This source has used up its budget: drop.
    Limited,
    /// All sources together have used up the global reply budget: drop.
    OverTotal,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// The table of buckets. `rate == 0` disables limiting.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    max_sources: usize,
    buckets: HashMap<IpAddr, Bucket>,
    last_sweep: Option<Instant>,
    total_rate: f64,
    total: Option<Bucket>,
}

/// When the table is full of active sources, this many are looked at to pick the least
/// recently seen one to evict (looking at all would cost a scan per new source).
const EVICTION_SAMPLE: usize = 32;

/// Sweeping a full table scans it; do that at most this often.
const SWEEP_INTERVAL: Duration = Duration::from_millis(100);

impl RateLimiter {
    /// `rate` replies per second per source with bursts of `burst` (at least 1), tracking at
    /// most `max_sources` sources.
    pub fn new(rate: u32, burst: u32, max_sources: usize) -> Self {
        RateLimiter {
            rate: f64::from(rate),
            burst: f64::from(burst.max(1)),
            max_sources: max_sources.max(1),
            buckets: HashMap::new(),
            last_sweep: None,
            total_rate: 0.0,
            total: None,
        }
    }

    /// Also limits all replies together to `total_rate` per second (bursts of one second's
    /// worth); 0 leaves them unlimited.
    pub fn with_total_rate(mut self, total_rate: u32) -> Self {
        self.total_rate = f64::from(total_rate);
        self
    }

    /// Number of sources currently tracked.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    /// Decides about one datagram from `source` arriving at `now`, and charges for it.
    pub fn check(&mut self, source: IpAddr, now: Instant) -> Verdict {
        if self.rate <= 0.0 {
            return Verdict::Allow;
        }
        let source = source.to_canonical();
        if !self.buckets.contains_key(&source) && self.buckets.len() >= self.max_sources {
            self.sweep(now);
            if self.buckets.len() >= self.max_sources {
                self.evict_least_recent();
            }
        }
        let (rate, burst) = (self.rate, self.burst);
        let bucket = self.buckets.entry(source).or_insert(Bucket {
            tokens: burst,
            last: now,
        });
        let elapsed = now.saturating_duration_since(bucket.last).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(burst);
        bucket.last = now;
        if bucket.tokens < 1.0 {
            return Verdict::Limited;
        }
        if !self.take_from_total(now) {
            return Verdict::OverTotal;
        }
        if let Some(bucket) = self.buckets.get_mut(&source) {
            bucket.tokens -= 1.0;
        }
        Verdict::Allow
    }

    /// Takes one reply from the global budget, if there is one.
    fn take_from_total(&mut self, now: Instant) -> bool {
        if self.total_rate <= 0.0 {
            return true;
        }
        let rate = self.total_rate;
        let total = self.total.get_or_insert(Bucket {
            tokens: rate,
            last: now,
        });
        let elapsed = now.saturating_duration_since(total.last).as_secs_f64();
        total.tokens = (total.tokens + elapsed * rate).min(rate);
        total.last = now;
        if total.tokens >= 1.0 {
            total.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Evicts the least recently seen source among a sample of the table.
    fn evict_least_recent(&mut self) {
        let stalest = self
            .buckets
            .iter()
            .take(EVICTION_SAMPLE)
            .min_by_key(|(_, b)| b.last)
            .map(|(ip, _)| *ip);
        if let Some(ip) = stalest {
            self.buckets.remove(&ip);
        }
    }

    /// Forgets every source whose bucket has refilled completely (it would start full anyway).
    fn sweep(&mut self, now: Instant) {
        if self
            .last_sweep
            .is_some_and(|t| now.saturating_duration_since(t) < SWEEP_INTERVAL)
        {
            return;
        }
        self.last_sweep = Some(now);
        let (rate, burst) = (self.rate, self.burst);
        self.buckets.retain(|_, b| {
            let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
            b.tokens + elapsed * rate < burst
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn burst_then_refill_at_the_rate() {
        let mut limiter = RateLimiter::new(10, 5, 100);
        let t0 = Instant::now();
        for _ in 0..5 {
            assert_eq!(limiter.check(ip("192.0.2.1"), t0), Verdict::Allow);
        }
        assert_eq!(limiter.check(ip("192.0.2.1"), t0), Verdict::Limited);
        // Another source has its own budget.
        assert_eq!(limiter.check(ip("192.0.2.2"), t0), Verdict::Allow);
        // 10/s: one token back after 100 ms, and only one.
        let t1 = t0 + Duration::from_millis(100);
        assert_eq!(limiter.check(ip("192.0.2.1"), t1), Verdict::Allow);
        assert_eq!(limiter.check(ip("192.0.2.1"), t1), Verdict::Limited);
    }

    #[test]
    fn mapped_and_plain_ipv4_share_a_bucket() {
        let mut limiter = RateLimiter::new(1, 1, 10);
        let t0 = Instant::now();
        assert_eq!(limiter.check(ip("::ffff:192.0.2.1"), t0), Verdict::Allow);
        assert_eq!(limiter.check(ip("192.0.2.1"), t0), Verdict::Limited);
    }

    #[test]
    fn the_table_stays_bounded_and_evicts_idle_sources() {
        let mut limiter = RateLimiter::new(10, 2, 3);
        let t0 = Instant::now();
        for last in 1..=3 {
            assert_eq!(
                limiter.check(ip(&format!("192.0.2.{last}")), t0),
                Verdict::Allow
            );
        }
        // Full of active sources: the least recently seen one makes room.
        let t1 = t0 + Duration::from_millis(1);
        assert_eq!(limiter.check(ip("192.0.2.2"), t1), Verdict::Allow);
        assert_eq!(limiter.check(ip("192.0.2.3"), t1), Verdict::Allow);
        assert_eq!(limiter.check(ip("192.0.2.9"), t1), Verdict::Allow);
        assert_eq!(limiter.len(), 3);
        assert!(!limiter.buckets.contains_key(&ip("192.0.2.1")));
        // After the buckets refill (2 tokens at 10/s = 200 ms) they can be evicted.
        let later = t0 + Duration::from_millis(300);
        assert_eq!(limiter.check(ip("192.0.2.9"), later), Verdict::Allow);
        assert!(limiter.len() <= 3);
    }

    #[test]
    fn a_flood_of_sources_never_grows_the_table() {
        let mut limiter = RateLimiter::new(1, 1, 64);
        let t0 = Instant::now();
        for i in 0..10_000u32 {
            let now = t0 + Duration::from_micros(u64::from(i));
            limiter.check(IpAddr::from(i.to_be_bytes()), now);
            assert!(limiter.len() <= 64);
        }
    }

    #[test]
    fn a_flood_of_new_sources_does_not_lock_out_a_source_that_keeps_talking() {
        let mut limiter = RateLimiter::new(10, 10, 64);
        let t0 = Instant::now();
        let mut allowed = 0;
        for i in 0..10_000u32 {
            let now = t0 + Duration::from_millis(u64::from(i));
            limiter.check(IpAddr::from((0x0a00_0000 + i).to_be_bytes()), now);
            if i % 100 == 0 && limiter.check(ip("192.0.2.1"), now) == Verdict::Allow {
                allowed += 1;
            }
        }
        assert_eq!(
            allowed, 100,
            "every one of the regular client's datagrams is answered"
        );
    }

    #[test]
    fn all_sources_together_stay_within_the_total_rate() {
        let mut limiter = RateLimiter::new(1000, 1000, 100_000).with_total_rate(100);
        let t0 = Instant::now();
        let allowed = (0..10_000u32)
            .filter(|&i| limiter.check(IpAddr::from(i.to_be_bytes()), t0) == Verdict::Allow)
            .count();
        assert_eq!(allowed, 100);
        let later = t0 + Duration::from_millis(500);
        assert_eq!(limiter.check(ip("192.0.2.1"), later), Verdict::Allow);
    }

    #[test]
    fn rate_zero_means_unlimited() {
        let mut limiter = RateLimiter::new(0, 1, 1);
        let t0 = Instant::now();
        for i in 0..100u32 {
            assert_eq!(
                limiter.check(IpAddr::from(i.to_be_bytes()), t0),
                Verdict::Allow
            );
        }
        assert!(limiter.is_empty());
    }
}
