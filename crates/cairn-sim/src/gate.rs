//! A worker's life as the rest of the world sees it: running, paused (a zombie: stopped past
//! its lease, its calls and actions held), or dead (`kill -9`: nothing it started ever
//! reaches the store or begins an action again). Every store call and every action of a
//! worker passes its gate first.
//!
//! Built on [`Notify`], not on a `watch` channel: a watch spreads its waiters over shards
//! picked at random, so the order in which a resumed worker's tasks wake would differ from
//! run to run, and one seed would no longer be one execution.

use std::sync::Mutex;

use tokio::sync::Notify;

use crate::world::lock;

/// The state of one worker process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Life {
    Running,
    Paused,
    Dead,
}

/// The gate of one worker process.
#[derive(Debug)]
pub(crate) struct Gate {
    life: Mutex<Life>,
    changed: Notify,
}

impl Gate {
    /// A running worker's gate.
    pub(crate) fn new() -> Gate {
        Gate {
            life: Mutex::new(Life::Running),
            changed: Notify::new(),
        }
    }

    /// Sets the worker's state: a paused worker's calls wait, a dead worker's never go on.
    pub(crate) fn set(&self, life: Life) {
        *lock(&self.life) = life;
        self.changed.notify_waiters();
    }

    /// The worker's state.
    pub(crate) fn life(&self) -> Life {
        *lock(&self.life)
    }

    /// Completes while the worker runs; waits while it is paused; never completes once it
    /// is dead.
    pub(crate) async fn pass(&self) {
        loop {
            let changed = self.changed.notified();
            match self.life() {
                Life::Running => return,
                Life::Dead => std::future::pending::<()>().await,
                Life::Paused => changed.await,
            }
        }
    }
}
