//! Who waits for a run to end in this process, and the signal they get when this process
//! commits the event that ends it: a wait learns of an end committed here without reading the
//! run after each of its commits (`Engine::wait_until_ended`).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
};

use cairn_core::Event;
use cairn_store::RunId;
use tokio::sync::Notify;

/// The runs someone in this process waits on, each with its waiters' signals.
#[derive(Default)]
pub(crate) struct EndWaiters {
    waiting: Mutex<HashMap<RunId, Vec<Arc<Notify>>>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves the map whole: a poisoned lock is taken over.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl EndWaiters {
    /// Registers a waiter for `run_id`'s end; unregistered when the returned guard drops.
    pub(crate) fn register(self: &Arc<Self>, run_id: RunId) -> EndWaiter {
        let signal = Arc::new(Notify::new());
        lock(&self.waiting)
            .entry(run_id)
            .or_default()
            .push(Arc::clone(&signal));
        EndWaiter {
            waiters: Arc::clone(self),
            run_id,
            signal,
        }
    }

    /// Signals `run_id`'s waiters if one of `events` (committed to its log) ends it.
    pub(crate) fn committed<'a>(&self, run_id: RunId, events: impl IntoIterator<Item = &'a Event>) {
        let ends = events.into_iter().any(|event| {
            matches!(
                event,
                Event::RunCompleted { .. } | Event::RunFailed { .. } | Event::RunCanceled { .. }
            )
        });
        if ends {
            self.signal(run_id);
        }
    }

    /// Signals `run_id`'s waiters: this process ended it (committed its end).
    pub(crate) fn signal(&self, run_id: RunId) {
        let waiting = lock(&self.waiting);
        for signal in waiting.get(&run_id).into_iter().flatten() {
            // Leaves a permit if the waiter is not waiting right now: never lost.
            signal.notify_one();
        }
    }
}

/// One registered waiter (see [`EndWaiters::register`]).
pub(crate) struct EndWaiter {
    waiters: Arc<EndWaiters>,
    run_id: RunId,
    signal: Arc<Notify>,
}

impl EndWaiter {
    /// Completes once this process has committed the run's end (at once if it did since the
    /// last call, or since registering).
    pub(crate) async fn ended(&self) {
        self.signal.notified().await;
    }
}

impl Drop for EndWaiter {
    fn drop(&mut self) {
        let mut waiting = lock(&self.waiters.waiting);
        if let Some(signals) = waiting.get_mut(&self.run_id) {
            signals.retain(|signal| !Arc::ptr_eq(signal, &self.signal));
            if signals.is_empty() {
                waiting.remove(&self.run_id);
            }
        }
    }
}
