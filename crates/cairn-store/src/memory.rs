//! [`MemoryStore`]: a [`Store`] kept in process memory, for tests and the testing harness.
//!
//! It keeps the same rows the SQLite backend keeps (a run's columns, its log, its hooks) in
//! plain maps behind one mutex, and applies every operation with the same semantics, so a
//! workflow behaves on it exactly as on disk, minus durability. Every method does its work
//! synchronously under the lock (never held across an `await`), so operations are atomic
//! and totally ordered. Times are only ever the `now_ms` passed in, which suits a virtual
//! clock.

mod credentials;
mod polls;
mod schedules;
mod state;
mod waits;

#[cfg(test)]
mod tests;

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex, MutexGuard, PoisonError},
};

use async_trait::async_trait;
use cairn_core::{Event, EventRecord, RunStatus};

use crate::{
    ChangeWatch, ClaimOutcome, ClaimedRun, CreateOutcome, CredentialFilter, CredentialRecord,
    DELIVERIES_KEPT, FireOutcome, HookFilter, HookRecord, Lease, NewRun, Park, PollClaim,
    PollCommit, PollCommitOutcome, PollControl, PollSourceRecord, Reseal, RunFilter, RunId,
    RunRecord, RunSummary, ScheduleFire, ScheduleMiss, SchedulePut, ScheduleRecord, Store,
    StoreResult, WebhookDelivery, WorkerId, watch::ChangeHub,
};

use self::state::State;

/// A [`Store`] in memory: nothing survives the process, everything else is as in the SQLite
/// backend (it passes the same conformance suite).
///
/// Clones share one state, so a test can keep a handle next to the engine's. Its change
/// watches see the commits of every clone (there is no other process).
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
    shared: Arc<Shared>,
}

/// What the clones of a store share: the tables and the change watches.
#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    /// Credentials, apart: no run or watch depends on them.
    credentials: Mutex<credentials::Credentials>,
    /// Logged webhook deliveries by endpoint, oldest first (apart, like credentials).
    deliveries: Mutex<HashMap<String, VecDeque<WebhookDelivery>>>,
    changes: ChangeHub,
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.changes.close();
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// The state, locked. A panic while the lock was held cannot leave it half-written
    /// (writes are worked out before anything is changed), so a poisoned lock is taken over.
    fn state(&self) -> MutexGuard<'_, State> {
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The credential table, locked (poisoning taken over as for the state).
    fn credentials(&self) -> MutexGuard<'_, credentials::Credentials> {
        self.shared
            .credentials
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs the write `op` under the lock and tells the change watches which runs it changed
    /// (in the order writes happen: still under the lock).
    fn write<T>(&self, op: impl FnOnce(&mut State) -> T) -> T {
        let mut state = self.state();
        let result = op(&mut state);
        self.shared.changes.publish(&state.touched);
        state.touched.clear();
        result
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
        self.write(|state| state.create_run(run))
    }

    async fn get_run(&self, id: RunId) -> StoreResult<Option<RunRecord>> {
        Ok(self.state().get_run(id))
    }

    async fn events(&self, id: RunId) -> StoreResult<Vec<EventRecord>> {
        Ok(self.state().events(id))
    }

    async fn events_after(&self, id: RunId, after_seq: u64) -> StoreResult<Vec<EventRecord>> {
        Ok(self.state().events_after(id, after_seq))
    }

    async fn watch_changes(&self) -> StoreResult<Box<dyn ChangeWatch>> {
        Ok(Box::new(self.shared.changes.watch()))
    }

    async fn list_runs(&self, filter: &RunFilter) -> StoreResult<Vec<RunRecord>> {
        Ok(self.state().list_runs(filter))
    }

    async fn list_run_summaries(&self, filter: &RunFilter) -> StoreResult<Vec<RunSummary>> {
        Ok(self.state().list_run_summaries(filter))
    }

    async fn claim_run(&self, id: RunId, lease: &Lease, now_ms: i64) -> StoreResult<ClaimOutcome> {
        Ok(self.write(|state| state.claim_run(id, lease, now_ms)))
    }

    async fn claim_ready(
        &self,
        workflows: &[String],
        lease: &Lease,
        now_ms: i64,
        limit: usize,
    ) -> StoreResult<Vec<ClaimedRun>> {
        Ok(self.write(|state| state.claim_ready(workflows, lease, now_ms, limit)))
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
        self.write(|state| state.release_lease(id, worker, ready_at_ms))
    }

    async fn append(
        &self,
        id: RunId,
        worker: &WorkerId,
        events: &[Event],
        now_ms: i64,
    ) -> StoreResult<()> {
        self.write(|state| state.append(id, worker, events.to_vec(), now_ms))
    }

    async fn cancel_run(&self, id: RunId, reason: &str, now_ms: i64) -> StoreResult<RunStatus> {
        self.write(|state| state.cancel_run(id, reason, now_ms))
    }

    async fn retry_run(&self, id: RunId, now_ms: i64) -> StoreResult<()> {
        self.write(|state| state.retry_run(id, now_ms))
    }

    async fn park_run(
        &self,
        id: RunId,
        worker: &WorkerId,
        park: Park,
        now_ms: i64,
    ) -> StoreResult<bool> {
        self.write(|state| state.park_run(id, worker, park, now_ms))
    }

    async fn resume_hook(
        &self,
        token: &str,
        payload: serde_json::Value,
        now_ms: i64,
    ) -> StoreResult<HookRecord> {
        self.write(|state| state.resume_hook(token, payload, now_ms))
    }

    async fn time_out_hook(
        &self,
        token: &str,
        worker: &WorkerId,
        timed_out: Event,
        now_ms: i64,
    ) -> StoreResult<bool> {
        self.write(|state| state.time_out_hook(token, worker, timed_out, now_ms))
    }

    async fn get_hook(&self, token: &str) -> StoreResult<Option<HookRecord>> {
        Ok(self.state().get_hook(token))
    }

    async fn list_hooks(&self, filter: &HookFilter) -> StoreResult<Vec<HookRecord>> {
        Ok(self.state().list_hooks(filter))
    }

    async fn put_credential(&self, credential: CredentialRecord) -> StoreResult<()> {
        self.credentials().put(credential);
        Ok(())
    }

    async fn get_credential(&self, id: &str) -> StoreResult<Option<CredentialRecord>> {
        Ok(self.credentials().get(id))
    }

    async fn list_credentials(
        &self,
        filter: &CredentialFilter,
    ) -> StoreResult<Vec<CredentialRecord>> {
        Ok(self.credentials().list(filter))
    }

    async fn delete_credential(&self, id: &str) -> StoreResult<bool> {
        Ok(self.credentials().delete(id))
    }

    async fn set_default_credential(&self, id: &str, now_ms: i64) -> StoreResult<()> {
        self.credentials().set_default(id, now_ms)
    }

    async fn reseal_credentials(&self, reseals: &[Reseal], now_ms: i64) -> StoreResult<()> {
        self.credentials().reseal(reseals, now_ms)
    }

    async fn put_schedule(
        &self,
        schedule: ScheduleRecord,
    ) -> StoreResult<(SchedulePut, ScheduleRecord)> {
        Ok(self.state().schedules.put(schedule))
    }

    async fn get_schedule(&self, id: &str) -> StoreResult<Option<ScheduleRecord>> {
        Ok(self.state().schedules.get(id))
    }

    async fn list_schedules(&self) -> StoreResult<Vec<ScheduleRecord>> {
        Ok(self.state().schedules.list())
    }

    async fn set_schedule_paused(
        &self,
        id: &str,
        paused: bool,
        next_fire_at_ms: i64,
        now_ms: i64,
    ) -> StoreResult<ScheduleRecord> {
        self.state()
            .schedules
            .set_paused(id, paused, next_fire_at_ms, now_ms)
    }

    async fn due_schedules(&self, now_ms: i64, limit: usize) -> StoreResult<Vec<ScheduleRecord>> {
        Ok(self.state().schedules.due(now_ms, limit))
    }

    async fn fire_schedule(&self, fire: ScheduleFire) -> StoreResult<FireOutcome> {
        self.write(|state| state.fire_schedule(fire))
    }

    async fn schedule_misses(&self, id: &str) -> StoreResult<Vec<ScheduleMiss>> {
        Ok(self.state().schedules.misses(id))
    }

    async fn declare_poll_source(&self, source: PollSourceRecord) -> StoreResult<PollSourceRecord> {
        Ok(self.state().polls.declare(source))
    }

    async fn get_poll_source(&self, name: &str) -> StoreResult<Option<PollSourceRecord>> {
        Ok(self.state().polls.get(name))
    }

    async fn list_poll_sources(&self) -> StoreResult<Vec<PollSourceRecord>> {
        Ok(self.state().polls.list())
    }

    async fn due_poll_sources(
        &self,
        now_ms: i64,
        limit: usize,
    ) -> StoreResult<Vec<PollSourceRecord>> {
        Ok(self.state().polls.due(now_ms, limit))
    }

    async fn claim_poll_source(
        &self,
        name: &str,
        lease: &Lease,
        now_ms: i64,
    ) -> StoreResult<Option<PollClaim>> {
        Ok(self.state().polls.claim(name, lease, now_ms))
    }

    async fn control_poll_source(
        &self,
        name: &str,
        control: PollControl,
        now_ms: i64,
    ) -> StoreResult<PollSourceRecord> {
        self.state().polls.control(name, control, now_ms)
    }

    async fn commit_poll(&self, commit: PollCommit) -> StoreResult<PollCommitOutcome> {
        self.write(|state| state.commit_poll(commit))
    }

    async fn delete_schedule(&self, id: &str) -> StoreResult<bool> {
        Ok(self.state().schedules.delete(id))
    }

    async fn record_webhook_delivery(&self, delivery: WebhookDelivery) -> StoreResult<()> {
        let mut deliveries = self
            .shared
            .deliveries
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let log = deliveries.entry(delivery.endpoint.clone()).or_default();
        log.push_back(delivery);
        while log.len() > DELIVERIES_KEPT {
            log.pop_front();
        }
        Ok(())
    }

    async fn webhook_deliveries(
        &self,
        endpoint: &str,
        limit: usize,
    ) -> StoreResult<Vec<WebhookDelivery>> {
        let deliveries = self
            .shared
            .deliveries
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        Ok(deliveries
            .get(endpoint)
            .map(|log| log.iter().rev().take(limit).cloned().collect())
            .unwrap_or_default())
    }
}
