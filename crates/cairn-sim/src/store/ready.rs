//! The wake-ups of idle workers (`Store::watch_ready`), as PostgreSQL's `NOTIFY` gives them:
//! every flushed group wakes every watch, unless the seed loses the wake-up, and some come
//! twice (`wake-ups-lost`, `wake-ups-doubled`). Workers must not depend on them: a lost one
//! costs at most a poll interval, a doubled one a look that finds nothing.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use async_trait::async_trait;
use cairn_store::ReadyWatch;
use tokio::sync::Notify;

use crate::world::World;

/// What every watch of one store listens to.
#[derive(Default)]
pub(crate) struct Wakeups {
    /// How many wake-ups have been sent.
    sent: AtomicU64,
    /// Told of each (`Notify` wakes its waiters in order, so a seed's wake order repeats).
    bell: Notify,
}

impl Wakeups {
    /// After a flushed group: wakes every watch, or loses the wake-up, or sends it twice
    /// (the second once the first's waiters have had a turn).
    pub(crate) async fn after_flush(&self, world: &World) {
        if world.fault("wake-ups-lost", |f| f.wakeup_lost) {
            world.note("wake-up lost");
            return;
        }
        self.ring();
        if world.fault("wake-ups-doubled", |f| f.wakeup_doubled) {
            tokio::task::yield_now().await;
            self.ring();
        }
    }

    fn ring(&self) {
        self.sent.fetch_add(1, Ordering::SeqCst);
        self.bell.notify_waiters();
    }

    /// A watch that has seen every wake-up sent so far.
    pub(crate) fn watch(self: &Arc<Self>) -> SimReadyWatch {
        SimReadyWatch {
            seen: self.sent.load(Ordering::SeqCst),
            wakeups: self.clone(),
        }
    }
}

/// One worker's watch.
pub(crate) struct SimReadyWatch {
    wakeups: Arc<Wakeups>,
    /// The wake-ups sent before its last return.
    seen: u64,
}

#[async_trait]
impl ReadyWatch for SimReadyWatch {
    async fn wait(&mut self, timeout: std::time::Duration) -> bool {
        let rung = self.wakeups.bell.notified();
        tokio::pin!(rung);
        rung.as_mut().enable();
        let woken = self.wakeups.sent.load(Ordering::SeqCst) > self.seen || {
            tokio::select! {
                biased;
                () = rung => true,
                () = tokio::time::sleep(timeout) => false,
            }
        };
        self.seen = self.wakeups.sent.load(Ordering::SeqCst);
        woken
    }
}
