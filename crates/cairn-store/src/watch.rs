//! Change watches: a subscriber learns which runs changed, in any process, so it can read
//! what it follows again ([`Store::events_after`](crate::Store::events_after),
//! [`Store::get_run`](crate::Store::get_run)).
//!
//! [`ChangeWatch`] is what [`Store::watch_changes`](crate::Store::watch_changes) hands out.
//! [`ChangeHub`] is the fan-out a backend builds it on: the backend publishes each commit's
//! runs (its own commits at once, other processes' as it learns of them), and every watch
//! of the store instance collects them until its owner asks.

use std::{
    collections::HashSet,
    sync::{
        Arc, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicUsize, Ordering},
    },
};

use async_trait::async_trait;
use tokio::sync::Notify;

use crate::{RunId, StoreError, StoreResult};

/// Which runs changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Changes {
    /// These runs changed (each once, in no particular order).
    Runs(Vec<RunId>),
    /// Something changed, which runs is not known (another process committed, notifications
    /// may have been lost): re-read what you follow.
    Unknown,
}

impl Changes {
    /// Whether `run` may have changed: it is listed, or the changes are unknown.
    pub fn may_include(&self, run: RunId) -> bool {
        match self {
            Changes::Runs(runs) => runs.contains(&run),
            Changes::Unknown => true,
        }
    }
}

/// Tells its owner when runs changed (see [`Store::watch_changes`](crate::Store::watch_changes)).
#[async_trait]
pub trait ChangeWatch: Send {
    /// Completes once runs changed after the watch was made or after the previous call
    /// returned (changes may be coalesced; a committed change is never missed). Fails with
    /// [`StoreError::Unavailable`] once the store it watches is closed.
    async fn changed(&mut self) -> StoreResult<Changes>;
}

/// Most distinct runs one watch collects between two [`ChangeWatch::changed`] calls; past it,
/// the watch reports [`Changes::Unknown`] instead, so a watch nobody reads stays small.
pub const MAX_PENDING_RUNS: usize = 4_096;

/// The watches of one store instance and the fan-out of changes to them; for backends.
///
/// Clones share the watches. Publishing costs one atomic load while nobody watches, so a
/// backend may call [`watching`](ChangeHub::watching) before it collects anything.
#[derive(Clone, Default)]
pub struct ChangeHub {
    hub: Arc<Hub>,
}

#[derive(Default)]
struct Hub {
    /// How many watches are registered: read before anything is built.
    watches: AtomicUsize,
    /// The registered watches' slots, and whether the store has closed.
    slots: Mutex<Slots>,
}

#[derive(Default)]
struct Slots {
    registered: Vec<Arc<Slot>>,
    closed: bool,
}

/// What one watch has collected, and how its owner is woken.
#[derive(Default)]
struct Slot {
    pending: Mutex<Pending>,
    woken: Notify,
}

#[derive(Default)]
struct Pending {
    runs: HashSet<RunId>,
    unknown: bool,
    closed: bool,
}

fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section here leaves the data whole: a poisoned lock is taken over.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl ChangeHub {
    /// A hub without watches.
    pub fn new() -> ChangeHub {
        ChangeHub::default()
    }

    /// Whether any watch is registered. Commits made while this is false need not be
    /// published (no watch can have been made before them).
    pub fn watching(&self) -> bool {
        self.watches() > 0
    }

    /// How many watches are registered.
    pub fn watches(&self) -> usize {
        self.hub.watches.load(Ordering::SeqCst)
    }

    /// Tells every watch that `runs` changed.
    pub fn publish(&self, runs: &[RunId]) {
        if runs.is_empty() {
            return;
        }
        self.each_slot(|pending| {
            if pending.unknown {
                return;
            }
            pending.runs.extend(runs.iter().copied());
            if pending.runs.len() > MAX_PENDING_RUNS {
                pending.runs.clear();
                pending.unknown = true;
            }
        });
    }

    /// Tells every watch that something changed, which runs is not known.
    pub fn publish_unknown(&self) {
        self.each_slot(|pending| {
            pending.runs.clear();
            pending.unknown = true;
        });
    }

    /// The store is closed: every watch's [`changed`](ChangeWatch::changed) fails from now
    /// on, and watches made later fail at once.
    pub fn close(&self) {
        let mut slots = locked(&self.hub.slots);
        slots.closed = true;
        for slot in &slots.registered {
            locked(&slot.pending).closed = true;
            slot.woken.notify_one();
        }
    }

    /// A new watch: it collects what is published from now on.
    pub fn watch(&self) -> HubWatch {
        let slot = Arc::new(Slot::default());
        let mut slots = locked(&self.hub.slots);
        locked(&slot.pending).closed = slots.closed;
        slots.registered.push(Arc::clone(&slot));
        self.hub.watches.fetch_add(1, Ordering::SeqCst);
        HubWatch {
            slot,
            hub: Arc::clone(&self.hub),
        }
    }

    fn each_slot(&self, mut add: impl FnMut(&mut Pending)) {
        if !self.watching() {
            return;
        }
        let slots = locked(&self.hub.slots);
        for slot in &slots.registered {
            add(&mut locked(&slot.pending));
            slot.woken.notify_one();
        }
    }
}

impl std::fmt::Debug for ChangeHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangeHub")
            .field("watches", &self.watches())
            .finish()
    }
}

/// One watch registered with a [`ChangeHub`]; unregistered when dropped.
pub struct HubWatch {
    slot: Arc<Slot>,
    hub: Arc<Hub>,
}

impl HubWatch {
    /// What was collected since the last call, if anything.
    fn take(&self) -> StoreResult<Option<Changes>> {
        let mut pending = locked(&self.slot.pending);
        if pending.closed {
            return Err(StoreError::Unavailable(
                "the store this change watch watched was closed; open it again and make a new watch"
                    .into(),
            ));
        }
        if std::mem::take(&mut pending.unknown) {
            pending.runs.clear();
            return Ok(Some(Changes::Unknown));
        }
        if pending.runs.is_empty() {
            return Ok(None);
        }
        Ok(Some(Changes::Runs(pending.runs.drain().collect())))
    }
}

#[async_trait]
impl ChangeWatch for HubWatch {
    async fn changed(&mut self) -> StoreResult<Changes> {
        loop {
            if let Some(changes) = self.take()? {
                return Ok(changes);
            }
            // A publish between the look and here left a permit: this returns at once.
            self.slot.woken.notified().await;
        }
    }
}

impl Drop for HubWatch {
    fn drop(&mut self) {
        let mut slots = locked(&self.hub.slots);
        slots
            .registered
            .retain(|slot| !Arc::ptr_eq(slot, &self.slot));
        self.hub.watches.fetch_sub(1, Ordering::SeqCst);
    }
}

impl std::fmt::Debug for HubWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubWatch").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    async fn next(watch: &mut HubWatch) -> Changes {
        tokio::time::timeout(Duration::from_secs(10), watch.changed())
            .await
            .expect("a change within the deadline")
            .expect("the hub is open")
    }

    #[tokio::test]
    async fn a_watch_collects_what_is_published_after_it_was_made() {
        let hub = ChangeHub::new();
        let (a, b) = (RunId::new(), RunId::new());
        hub.publish(&[a]);
        assert!(!hub.watching());
        let mut watch = hub.watch();
        assert!(hub.watching());
        hub.publish(&[b]);
        hub.publish(&[b]);
        assert_eq!(next(&mut watch).await, Changes::Runs(vec![b]), "coalesced");
        assert!(watch.take().expect("open").is_none(), "nothing new");
        hub.publish(&[a]);
        hub.publish_unknown();
        assert_eq!(next(&mut watch).await, Changes::Unknown);
        drop(watch);
        assert!(!hub.watching());
    }

    #[tokio::test]
    async fn a_waiting_watch_wakes_and_too_many_runs_become_unknown() {
        let hub = ChangeHub::new();
        let mut watch = hub.watch();
        let waiter = tokio::spawn(async move { next(&mut watch).await });
        let run = RunId::new();
        tokio::task::yield_now().await;
        hub.publish(&[run]);
        assert_eq!(waiter.await.expect("joined"), Changes::Runs(vec![run]));

        let mut watch = hub.watch();
        let many: Vec<RunId> = (0..=MAX_PENDING_RUNS).map(|_| RunId::new()).collect();
        hub.publish(&many);
        assert_eq!(next(&mut watch).await, Changes::Unknown);
    }

    #[tokio::test]
    async fn closing_fails_current_and_later_watches() {
        let hub = ChangeHub::new();
        let mut watch = hub.watch();
        hub.close();
        watch.changed().await.expect_err("closed");
        let mut later = hub.watch();
        let error = later.changed().await.expect_err("closed");
        assert!(error.to_string().contains("closed"), "{error}");
    }
}
