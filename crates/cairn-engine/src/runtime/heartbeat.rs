//! Lease renewal: one loop per engine renews the lease of every run this engine executes,
//! every third of the lease's time to live.
//!
//! One task and one timer for all runs, rather than a task per execution: a spawned task
//! per run cost every workflow a task, a timer and their cross-thread wake-ups, about 2% of
//! a short workflow's instructions, though most runs end long before their first renewal.
//! The loop is a task of its own, so a workflow body that blocks its thread does not stop
//! the renewals. An execution renews only while it runs its body
//! ([`RunContext::renews_lease`]): once the body is done, its end (or parking, or release)
//! is written under the lease it holds, as before.

use std::{
    sync::{Arc, Mutex, PoisonError, Weak},
    time::Duration,
};

use tokio::task::JoinHandle;

use crate::runtime::Runtime;

/// The engine's renewal loop, started by its first execution (on that execution's
/// runtime) and stopped with the engine.
#[derive(Default)]
pub(crate) struct Heartbeats {
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Heartbeats {
    /// Starts the loop unless it is running (it stops with the runtime it was started on, so
    /// an engine used on a later runtime starts it again).
    pub(crate) fn ensure_running(&self, runtime: &Arc<Runtime>) {
        let mut task = self.task.lock().unwrap_or_else(PoisonError::into_inner);
        if task.as_ref().is_some_and(|task| !task.is_finished()) {
            return;
        }
        let every = (runtime.env.config.lease_ttl / 3).max(Duration::from_millis(10));
        *task = Some(tokio::spawn(renew_every(Arc::downgrade(runtime), every)));
    }
}

impl Drop for Heartbeats {
    fn drop(&mut self) {
        let task = self.task.get_mut().unwrap_or_else(PoisonError::into_inner);
        if let Some(task) = task.take() {
            task.abort();
        }
    }
}

/// Every `every`, renews the lease of each run `runtime` executes, all at once; ends when the
/// engine is gone.
async fn renew_every(runtime: Weak<Runtime>, every: Duration) {
    loop {
        let tick = match runtime.upgrade() {
            Some(runtime) => runtime.env.clock.sleep(every),
            None => return,
        };
        tick.await;
        let Some(runtime) = runtime.upgrade() else {
            return;
        };
        let runs = runtime.renewing();
        let env = runtime.env.clone();
        drop(runtime);
        // A long execution outside the worker loop still reads the store's clock now and then.
        env.read_store_clock().await;
        futures::future::join_all(runs.iter().map(|run| run.renew_lease())).await;
    }
}
