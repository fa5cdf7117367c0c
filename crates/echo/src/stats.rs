//! Round-trip-time statistics shared by ping and bench mode (pure: values in, numbers out).
//!
//! min/avg/max/mdev are computed exactly, as ping does (mdev is the standard deviation);
//! percentiles come from an HDR histogram of nanoseconds with 3 significant digits, so the
//! memory per histogram is fixed whatever the number of samples.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Longest RTT the histogram distinguishes; longer ones are recorded as this.
const MAX_TRACKED_NS: u64 = 60_000_000_000;

/// Accumulated RTT samples.
#[derive(Debug, Clone)]
pub struct RttStats {
    histogram: Histogram<u64>,
    count: u64,
    sum_ns: f64,
    sum_sq_ns: f64,
    min_ns: u64,
    max_ns: u64,
}

/// The numbers reported, in microseconds (0 when there were no samples).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct RttSummary {
    pub min_us: f64,
    pub avg_us: f64,
    pub max_us: f64,
    pub mdev_us: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
}

impl Default for RttStats {
    fn default() -> Self {
        Self::new()
    }
}

impl RttStats {
    pub fn new() -> Self {
        RttStats {
            histogram: Histogram::new_with_bounds(1, MAX_TRACKED_NS, 3)
                .expect("constant histogram bounds are valid"),
            count: 0,
            sum_ns: 0.0,
            sum_sq_ns: 0.0,
            min_ns: u64::MAX,
            max_ns: 0,
        }
    }

    /// Adds one sample.
    pub fn record(&mut self, rtt: Duration) {
        let ns = u64::try_from(rtt.as_nanos()).unwrap_or(u64::MAX).max(1);
        self.histogram.saturating_record(ns.min(MAX_TRACKED_NS));
        self.count += 1;
        let value = ns as f64;
        self.sum_ns += value;
        self.sum_sq_ns += value * value;
        self.min_ns = self.min_ns.min(ns);
        self.max_ns = self.max_ns.max(ns);
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// The summary of every sample so far.
    pub fn summary(&self) -> RttSummary {
        if self.count == 0 {
            return RttSummary::default();
        }
        let n = self.count as f64;
        let mean = self.sum_ns / n;
        let variance = (self.sum_sq_ns / n - mean * mean).max(0.0);
        let us = |ns: f64| ns / 1_000.0;
        // The histogram answers with the top of a value's bucket, which can lie above the
        // largest value recorded: never report a percentile above the maximum.
        let pct = |q: f64| us(self.histogram.value_at_quantile(q).min(self.max_ns) as f64);
        RttSummary {
            min_us: us(self.min_ns as f64),
            avg_us: us(mean),
            max_us: us(self.max_ns as f64),
            mdev_us: us(variance.sqrt()),
            p50_us: pct(0.50),
            p90_us: pct(0.90),
            p99_us: pct(0.99),
            p999_us: pct(0.999),
        }
    }
}

/// Formats microseconds as milliseconds with 3 decimals, as ping does (`0.041`).
pub fn ms(us: f64) -> String {
    format!("{:.3}", us / 1_000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_stats_are_zero() {
        assert_eq!(RttStats::new().summary(), RttSummary::default());
    }

    #[test]
    fn min_avg_max_mdev_and_percentiles() {
        let mut stats = RttStats::new();
        for us in 1..=100u64 {
            stats.record(Duration::from_micros(us));
        }
        let s = stats.summary();
        assert_eq!(s.min_us, 1.0);
        assert_eq!(s.max_us, 100.0);
        assert!((s.avg_us - 50.5).abs() < 1e-9);
        // Population standard deviation of 1..=100.
        assert!((s.mdev_us - 28.866).abs() < 0.01, "{}", s.mdev_us);
        // Three significant digits.
        assert!((s.p50_us - 50.0).abs() <= 0.1, "{}", s.p50_us);
        assert!((s.p90_us - 90.0).abs() <= 0.1, "{}", s.p90_us);
        assert!((s.p99_us - 99.0).abs() <= 0.1, "{}", s.p99_us);
    }

    #[test]
    fn huge_samples_saturate_instead_of_failing() {
        let mut stats = RttStats::new();
        stats.record(Duration::from_secs(3600));
        assert_eq!(stats.count(), 1);
        assert!(stats.summary().p50_us > 0.0);
    }

    #[test]
    fn milliseconds_have_three_decimals() {
        assert_eq!(ms(41.0), "0.041");
        assert_eq!(ms(1234.5), "1.234");
    }
}
