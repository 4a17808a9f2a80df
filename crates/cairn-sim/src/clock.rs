//! The engine's clock in the simulator: virtual time (tokio's paused clock, which jumps
//! straight to the next timer when every task waits), counted from a fixed epoch, with timers
//! made late or early by the seed's `timers-late` and `timers-early` faults (an early timer
//! must not make anything happen before its time: the engine looks at the clock again).

use std::{sync::Arc, time::Duration};

use cairn_engine::Clock;
use futures::future::BoxFuture;
use tokio::time::Instant;

use crate::world::World;

/// Unix milliseconds of virtual time zero: 2026-01-01T00:00:00Z.
pub(crate) const EPOCH_MS: i64 = 1_767_225_600_000;

/// Virtual wall-clock time for one engine.
pub(crate) struct SimClock {
    started: Instant,
    world: Arc<World>,
}

impl SimClock {
    /// A clock reading [`EPOCH_MS`] at `started`.
    pub(crate) fn new(started: Instant, world: Arc<World>) -> SimClock {
        SimClock { started, world }
    }
}

impl Clock for SimClock {
    fn now_ms(&self) -> i64 {
        EPOCH_MS + i64::try_from(self.started.elapsed().as_millis()).unwrap_or(i64::MAX / 4)
    }

    fn sleep_until(&self, deadline_ms: i64) -> BoxFuture<'static, ()> {
        let wait = u64::try_from(deadline_ms - self.now_ms()).unwrap_or(0);
        let faults = self.world.faults();
        let late = if faults.timer_late_ms > 0 {
            self.world.rng.below(faults.timer_late_ms + 1)
        } else {
            0
        };
        let early = if faults.timer_early_ms > 0 && wait > 0 {
            self.world.count("timers-early");
            self.world.rng.below(faults.timer_early_ms.min(wait) + 1)
        } else {
            0
        };
        Box::pin(tokio::time::sleep(Duration::from_millis(
            wait + late - early,
        )))
    }
}
