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

use cairn_store::StoreError;
use tokio::task::JoinHandle;

use crate::{
    run::{RunContext, Stop},
    runtime::Runtime,
};

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
        drop(runtime);
        futures::future::join_all(runs.iter().map(|run| renew(run))).await;
    }
}

/// Renews `run`'s lease; stops its execution if another worker took the run over or the run
/// ended elsewhere.
async fn renew(run: &RunContext) {
    if run.creation_pending() {
        // Nothing to renew yet: the run is created, leased, by its first write.
        return;
    }
    let env = &run.env;
    let lease = env.lease();
    // Noted before asking: the body may finish, and the run end, after the store took the
    // renewal but before it answered.
    run.leased_at(lease.expires_at_ms);
    let renewed = env.store.renew_lease(run.run_id, &lease).await;
    if !run.renews_lease() {
        // The body finished meanwhile: what it writes next settles the run.
        return;
    }
    match renewed {
        Ok(()) => {}
        Err(StoreError::LeaseLost { .. }) => {
            tracing::warn!(run = %run.run_id, "lease lost to another worker; stopping this execution");
            run.stop_renewing();
            run.stop(Stop::LeaseLost);
        }
        Err(StoreError::RunEnded { status, .. }) => {
            tracing::info!(run = %run.run_id, %status, "run ended elsewhere; stopping this execution");
            run.stop_renewing();
            run.cancel.cancel();
            run.stop(Stop::Ended);
        }
        Err(err) => {
            tracing::warn!(run = %run.run_id, error = %err, "lease renewal failed; will try again");
        }
    }
}
