//! [`MemoryStore`]: a [`Store`] kept in process memory, for tests and the testing harness.
//!
//! It keeps the same rows the SQLite backend keeps (a run's columns, its log, its hooks) in
//! plain maps behind one mutex, and applies every operation with the same semantics, so a
//! workflow behaves on it exactly as on disk, minus durability. Every method does its work
//! synchronously under the lock (never held across an `await`), so operations are atomic
//! and totally ordered. Times are only ever the `now_ms` passed in, which suits a virtual
//! clock.

mod state;
mod waits;

#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use cairn_core::{Event, EventRecord, RunStatus};

use crate::{
    ClaimOutcome, ClaimedRun, CreateOutcome, HookFilter, HookRecord, Lease, NewRun, Park,
    RunFilter, RunId, RunRecord, Store, StoreResult, WorkerId,
};

use self::state::State;

/// A [`Store`] in memory: nothing survives the process, everything else is as in the SQLite
/// backend (it passes the same conformance suite).
///
/// Clones share one state, so a test can keep a handle next to the engine's.
///
/// ```
/// # async fn demo() -> Result<(), cairn_store::StoreError> {
/// use cairn_store::{MemoryStore, RunFilter, Store};
/// let store = MemoryStore::new();
/// let runs = store.list_runs(&RunFilter::default()).await?;
/// assert!(runs.is_empty());
/// # Ok(()) }
/// ```
#[derive(Clone, Default)]
pub struct MemoryStore {
    state: Arc<Mutex<State>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// The state, locked. A panic while the lock was held cannot leave it half-written
    /// (writes are worked out before anything is changed), so a poisoned lock is taken over.
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("runs", &self.state().run_count())
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn create_run(&self, run: NewRun) -> StoreResult<CreateOutcome> {
        self.state().create_run(run)
    }

    async fn get_run(&self, id: RunId) -> StoreResult<Option<RunRecord>> {
        Ok(self.state().get_run(id))
    }

    async fn events(&self, id: RunId) -> StoreResult<Vec<EventRecord>> {
        Ok(self.state().events(id))
    }

    async fn list_runs(&self, filter: &RunFilter) -> StoreResult<Vec<RunRecord>> {
        Ok(self.state().list_runs(filter))
    }

    async fn claim_run(&self, id: RunId, lease: &Lease, now_ms: i64) -> StoreResult<ClaimOutcome> {
        Ok(self.state().claim_run(id, lease, now_ms))
    }

    async fn claim_ready(
        &self,
        workflows: &[String],
        lease: &Lease,
        now_ms: i64,
        limit: usize,
    ) -> StoreResult<Vec<ClaimedRun>> {
        Ok(self.state().claim_ready(workflows, lease, now_ms, limit))
    }

    async fn next_ready_at(&self, workflows: &[String]) -> StoreResult<Option<i64>> {
        Ok(self.state().next_ready_at(workflows))
    }

    async fn renew_lease(&self, id: RunId, lease: &Lease) -> StoreResult<()> {
        self.state().renew_lease(id, lease)
    }

    async fn release_lease(
        &self,
        id: RunId,
        worker: &WorkerId,
        ready_at_ms: i64,
    ) -> StoreResult<()> {
        self.state().release_lease(id, worker, ready_at_ms)
    }

    async fn append(
        &self,
        id: RunId,
        worker: &WorkerId,
        events: &[Event],
        now_ms: i64,
    ) -> StoreResult<()> {
        self.state().append(id, worker, events.to_vec(), now_ms)
    }

    async fn cancel_run(&self, id: RunId, reason: &str, now_ms: i64) -> StoreResult<RunStatus> {
        self.state().cancel_run(id, reason, now_ms)
    }

    async fn retry_run(&self, id: RunId, now_ms: i64) -> StoreResult<()> {
        self.state().retry_run(id, now_ms)
    }

    async fn park_run(
        &self,
        id: RunId,
        worker: &WorkerId,
        park: Park,
        now_ms: i64,
    ) -> StoreResult<bool> {
        self.state().park_run(id, worker, park, now_ms)
    }

    async fn resume_hook(
        &self,
        token: &str,
        payload: serde_json::Value,
        now_ms: i64,
    ) -> StoreResult<HookRecord> {
        self.state().resume_hook(token, payload, now_ms)
    }

    async fn time_out_hook(
        &self,
        token: &str,
        worker: &WorkerId,
        timed_out: Event,
        now_ms: i64,
    ) -> StoreResult<bool> {
        self.state().time_out_hook(token, worker, timed_out, now_ms)
    }

    async fn get_hook(&self, token: &str) -> StoreResult<Option<HookRecord>> {
        Ok(self.state().get_hook(token))
    }

    async fn list_hooks(&self, filter: &HookFilter) -> StoreResult<Vec<HookRecord>> {
        Ok(self.state().list_hooks(filter))
    }
}
