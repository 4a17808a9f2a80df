//! Latency histograms (HdrHistogram, nanosecond resolution, 3 significant digits) and the
//! summaries the report prints and writes.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// The largest latency recorded exactly (one hour); longer ones saturate.
const MAX_NANOS: u64 = 3_600_000_000_000;

/// Latencies of one measurement.
#[derive(Clone, Debug)]
pub struct Latencies(Histogram<u64>);

impl Default for Latencies {
    fn default() -> Self {
        Latencies::new()
    }
}

impl Latencies {
    /// An empty histogram.
    pub fn new() -> Latencies {
        Latencies(
            Histogram::new_with_bounds(1, MAX_NANOS, 3)
                .expect("constant histogram bounds are valid"),
        )
    }

    /// Records one latency.
    pub fn record(&mut self, took: Duration) {
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(MAX_NANOS);
        self.0.saturating_record(nanos.max(1));
    }

    /// Adds another histogram's samples.
    pub fn merge(&mut self, other: &Latencies) {
        self.0
            .add(&other.0)
            .expect("histograms with the same bounds always merge");
    }

    /// How many samples were recorded.
    pub fn count(&self) -> u64 {
        self.0.len()
    }

    /// Mean, percentiles and maximum, in microseconds.
    pub fn summary(&self) -> LatencySummary {
        let us = |nanos: u64| nanos as f64 / 1_000.0;
        LatencySummary {
            count: self.0.len(),
            mean_us: self.0.mean() / 1_000.0,
            p50_us: us(self.0.value_at_quantile(0.50)),
            p90_us: us(self.0.value_at_quantile(0.90)),
            p99_us: us(self.0.value_at_quantile(0.99)),
            max_us: us(self.0.max()),
        }
    }
}

/// A latency distribution, in microseconds.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct LatencySummary {
    /// Samples.
    pub count: u64,
    /// Arithmetic mean.
    pub mean_us: f64,
    /// Median.
    pub p50_us: f64,
    /// 90th percentile.
    pub p90_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// Largest sample.
    pub max_us: f64,
}

/// `count` per second of `elapsed` (0 when nothing elapsed).
pub fn per_second(count: usize, elapsed: Duration) -> f64 {
    let seconds = elapsed.as_secs_f64();
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_the_samples() {
        let mut first = Latencies::new();
        for ms in 1..=50 {
            first.record(Duration::from_millis(ms));
        }
        let mut second = Latencies::new();
        for ms in 51..=100 {
            second.record(Duration::from_millis(ms));
        }
        first.merge(&second);
        let summary = first.summary();
        assert_eq!(summary.count, 100);
        assert!((summary.p50_us - 50_000.0).abs() < 100.0, "{summary:?}");
        assert!((summary.p99_us - 99_000.0).abs() < 100.0, "{summary:?}");
        assert!((summary.max_us - 100_000.0).abs() < 100.0, "{summary:?}");
    }

    #[test]
    fn rates_are_per_second() {
        assert_eq!(per_second(500, Duration::from_millis(250)), 2_000.0);
        assert_eq!(per_second(5, Duration::ZERO), 0.0);
    }
}
