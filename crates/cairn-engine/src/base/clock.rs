//! Time as the engine sees it: every reading of the time and every timer of the engine goes
//! through an injected [`Clock`], so tests (and the testing harness) can control it. Unless
//! one is injected, the engine runs on the store's clock ([`StoreClock`], decision 0046).

use std::{
    sync::atomic::{AtomicI64, Ordering},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use cairn_store::Store;
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

/// How long a reading of the store's clock is trusted before it is read again (the monotonic
/// clock it is carried on drifts by parts per million; a process suspended meanwhile falls
/// behind, which delays its claims but never hastens them).
const STORE_CLOCK_READ_EVERY_MS: i64 = 10_000;

/// The store's clock as this process carries it: the store's time at its last reading
/// ([`StoreClock::read_store`]), moved on by this process's monotonic clock since. Leases and
/// due runs are judged by the store's time, so a worker whose own clock jumped (a wrong
/// time zone, an NTP step, `FAKETIME=+2h`) neither takes live leases nor wakes runs early;
/// until the first reading it is the system clock.
pub(crate) struct StoreClock {
    /// What the monotonic clock is measured from.
    base: Instant,
    /// The store's time at `base`, in unix ms: now is `at_base_ms + base.elapsed()`.
    at_base_ms: AtomicI64,
    /// When (ms after `base`) the store's clock was last read; [`NEVER_READ`] before.
    read_at_ms: AtomicI64,
}

const NEVER_READ: i64 = i64::MIN;

impl StoreClock {
    /// A clock reading the system clock until the store's is read.
    pub(crate) fn new() -> StoreClock {
        StoreClock {
            base: Instant::now(),
            at_base_ms: AtomicI64::new(SystemClock.now_ms()),
            read_at_ms: AtomicI64::new(NEVER_READ),
        }
    }

    fn elapsed_ms(&self) -> i64 {
        i64::try_from(self.base.elapsed().as_millis()).unwrap_or(i64::MAX / 4)
    }

    /// Whether the store's clock should be read (again) before time is judged.
    pub(crate) fn read_due(&self) -> bool {
        let read_at = self.read_at_ms.load(Ordering::Relaxed);
        read_at == NEVER_READ
            || self.elapsed_ms().saturating_sub(read_at) >= STORE_CLOCK_READ_EVERY_MS
    }

    /// Reads the store's clock and carries it from now on; the reading is taken to be the
    /// store's time halfway through the round trip. A store without a clock of its own
    /// leaves the system clock; a store that cannot answer leaves the last reading (it is
    /// read again at the next occasion).
    pub(crate) async fn read_store(&self, store: &dyn Store) {
        let sent = self.elapsed_ms();
        match store.clock_ms().await {
            Ok(reading) => {
                let received = self.elapsed_ms();
                if let Some(store_ms) = reading {
                    let midway = sent + (received - sent) / 2;
                    self.at_base_ms.store(store_ms - midway, Ordering::Relaxed);
                }
                self.read_at_ms.store(received, Ordering::Relaxed);
            }
            Err(err) => {
                tracing::debug!(error = %err, "cannot read the store's clock; keeping the last reading");
            }
        }
    }
}

impl Clock for StoreClock {
    fn now_ms(&self) -> i64 {
        self.at_base_ms
            .load(Ordering::Relaxed)
            .saturating_add(self.elapsed_ms())
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
