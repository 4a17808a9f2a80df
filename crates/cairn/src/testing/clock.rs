//! The harness's virtual clock: time moves only when a test skips it, or, when the test runs
//! on tokio's paused time (`#[tokio::test(start_paused = true)]`), as tokio's paused time
//! moves, which tokio advances by itself while every task waits on a timer. Every timer of
//! the engine (sleeps, retry backoffs, action timeouts) goes through it.

use std::{sync::Arc, time::Duration};

use cairn_engine::Clock;
use futures::future::BoxFuture;
use tokio::{sync::watch, time::Instant};

/// A virtual clock for [`TestEnv`](super::TestEnv).
#[derive(Clone, Debug)]
pub struct TestClock {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// What the clock read when made (unix ms).
    start_ms: i64,
    /// Tokio's time when made.
    start: Instant,
    /// Whether tokio's time is paused: then tokio's time is the clock, and skipping advances
    /// it (so timers in actions follow too); else the clock moves by skips only.
    tokio_paused: bool,
    /// How far the clock was skipped (ms), when tokio's time is not paused.
    skipped: watch::Sender<i64>,
}

impl TestClock {
    /// A clock reading `start_ms` (unix ms).
    pub fn new(start_ms: i64) -> TestClock {
        TestClock {
            inner: Arc::new(Inner {
                start_ms,
                start: Instant::now(),
                tokio_paused: tokio_time_is_paused(),
                skipped: watch::Sender::new(0),
            }),
        }
    }

    /// Moves the clock forward by `by`, waking every timer now due.
    pub async fn skip(&self, by: Duration) {
        if self.inner.tokio_paused {
            tokio::time::advance(by).await;
        } else {
            let by = i64::try_from(by.as_millis()).unwrap_or(i64::MAX / 4);
            self.inner
                .skipped
                .send_modify(|skipped| *skipped = skipped.saturating_add(by));
        }
    }

    /// Moves the clock forward to `at_ms` (never backwards).
    pub async fn skip_to(&self, at_ms: i64) {
        let ahead = u64::try_from(at_ms - self.now_ms()).unwrap_or(0);
        if ahead > 0 {
            self.skip(Duration::from_millis(ahead)).await;
        }
    }
}

impl Inner {
    fn now_ms(&self) -> i64 {
        let skipped = *self.skipped.borrow();
        let elapsed = if self.tokio_paused {
            i64::try_from(self.start.elapsed().as_millis()).unwrap_or(i64::MAX / 4)
        } else {
            0
        };
        self.start_ms + skipped + elapsed
    }
}

impl Clock for TestClock {
    fn now_ms(&self) -> i64 {
        self.inner.now_ms()
    }

    fn sleep_until(&self, deadline_ms: i64) -> BoxFuture<'static, ()> {
        let inner = self.inner.clone();
        let mut skipped = inner.skipped.subscribe();
        Box::pin(async move {
            loop {
                let left = deadline_ms.saturating_sub(inner.now_ms());
                if left <= 0 {
                    return;
                }
                if inner.tokio_paused {
                    let left = Duration::from_millis(u64::try_from(left).unwrap_or(0));
                    tokio::time::sleep(left).await;
                } else if skipped.changed().await.is_err() {
                    // The clock is gone: nothing will ever wake this timer.
                    std::future::pending::<()>().await;
                }
            }
        })
    }
}

/// Whether tokio's clock is paused on this thread's runtime: a paused clock does not move
/// while the thread does.
fn tokio_time_is_paused() -> bool {
    if tokio::runtime::Handle::try_current().is_err() {
        return false;
    }
    let before = Instant::now();
    std::thread::sleep(Duration::from_millis(1));
    Instant::now() == before
}
