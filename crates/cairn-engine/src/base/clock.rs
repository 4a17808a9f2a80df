//! Time as the engine sees it: every reading of the time and every timer of the engine goes
//! through an injected [`Clock`], so tests (and the testing harness) can control it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::future::BoxFuture;

/// A source of the current time and of timers.
pub trait Clock: Send + Sync + 'static {
    /// Now, in unix milliseconds.
    fn now_ms(&self) -> i64;

    /// Completes at or after `deadline_ms` (unix milliseconds).
    fn sleep_until(&self, deadline_ms: i64) -> BoxFuture<'static, ()>;

    /// Completes after `duration` has passed on this clock.
    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        let duration = i64::try_from(duration.as_millis()).unwrap_or(i64::MAX / 4);
        self.sleep_until(self.now_ms().saturating_add(duration))
    }
}

/// The machine's wall clock and tokio's timers.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
    }

    fn sleep_until(&self, deadline_ms: i64) -> BoxFuture<'static, ()> {
        let wait = u64::try_from(deadline_ms - self.now_ms()).unwrap_or(0);
        Box::pin(tokio::time::sleep(Duration::from_millis(wait)))
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep(duration))
    }
}

/// Unix milliseconds as a `SystemTime`.
pub(crate) fn system_time(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// A clock that moves only when told to: for tests that skip time (`cairn::testing`).
/// Timers complete as soon as the clock is advanced past their deadline.
#[derive(Debug)]
pub struct ManualClock {
    now: tokio::sync::watch::Sender<i64>,
}

impl ManualClock {
    /// A clock reading `start_ms` (unix milliseconds).
    pub fn new(start_ms: i64) -> ManualClock {
        ManualClock {
            now: tokio::sync::watch::Sender::new(start_ms),
        }
    }

    /// Moves the clock forward by `by`, waking every timer now due.
    pub fn advance(&self, by: Duration) {
        let by = i64::try_from(by.as_millis()).unwrap_or(i64::MAX / 4);
        self.now.send_modify(|now| *now = now.saturating_add(by));
    }

    /// Moves the clock forward to `at_ms` (never backwards).
    pub fn advance_to(&self, at_ms: i64) {
        self.now.send_modify(|now| *now = (*now).max(at_ms));
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        *self.now.borrow()
    }

    fn sleep_until(&self, deadline_ms: i64) -> BoxFuture<'static, ()> {
        let mut now = self.now.subscribe();
        Box::pin(async move {
            // An error means the clock is gone: nothing will ever wake this timer.
            if now.wait_for(|now| *now >= deadline_ms).await.is_err() {
                std::future::pending::<()>().await;
            }
        })
    }
}
