//! How long a store's commits take to become durable: a backend times each commit (from
//! `COMMIT` until it is on disk: SQLite's fsync of its WAL, PostgreSQL's answer to `COMMIT`)
//! and records it in the histogram a metrics exporter gave it (`serve`'s `/metrics`).

use std::{
    sync::{Arc, OnceLock},
    time::Instant,
};

/// Where a backend records its commit latencies; nothing until someone observes them.
/// Cheap to clone (one `Arc`), shared by the store and its writer threads.
#[derive(Clone, Debug, Default)]
pub struct CommitTimer(Arc<OnceLock<metrics::Histogram>>);

impl CommitTimer {
    /// Records, in seconds, the time from `began` (the commit's start) until now.
    pub fn record_since(&self, began: Instant) {
        if let Some(histogram) = self.0.get() {
            histogram.record(began.elapsed().as_secs_f64());
        }
    }

    /// Whether anyone observes the commits (a backend may then skip reading the clock).
    pub fn is_observed(&self) -> bool {
        self.0.get().is_some()
    }

    /// Has commits recorded in `histogram` from now on. Only the first observer gets them
    /// (a store has one set of commits); returns whether it was this one.
    pub fn observe(&self, histogram: metrics::Histogram) -> bool {
        self.0.set(histogram).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use metrics::HistogramFn;

    use super::*;

    #[derive(Default)]
    struct Count(AtomicU64);

    impl HistogramFn for Count {
        fn record(&self, _value: f64) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn commits_are_recorded_once_observed_and_by_the_first_observer_only() {
        let timer = CommitTimer::default();
        timer.record_since(Instant::now());
        assert!(!timer.is_observed());
        let (first, second) = (Arc::new(Count::default()), Arc::new(Count::default()));
        assert!(timer.observe(metrics::Histogram::from_arc(first.clone())));
        assert!(!timer.observe(metrics::Histogram::from_arc(second.clone())));
        timer.clone().record_since(Instant::now());
        assert_eq!(first.0.load(Ordering::Relaxed), 1);
        assert_eq!(second.0.load(Ordering::Relaxed), 0);
    }
}
