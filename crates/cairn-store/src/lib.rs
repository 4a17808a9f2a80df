//! The storage contract of Cairn.
//!
//! [`Store`] is the one trait every backend implements: the engine's real operations on runs
//! and their append-only event logs (create with idempotency, claim under a lease, fenced
//! append, cancel, retry), not a generic key-value API. [`conformance`] is the test suite
//! written once that every backend runs, so what one backend guarantees, all do. [`rules`]
//! holds the contract's backend-independent decisions (an event's effect on its run, fencing,
//! claims, parking, retries, hooks), shared by backends so they decide alike.
//!
//! **Architecture invariant:** backend tricks (group commit, `SKIP LOCKED`, notifications)
//! live in the backend crates; this crate knows no database.

mod commit_timer;
mod credentials;
mod error;
mod memory;
mod polls;
mod schedules;
mod types;
mod webhooks;

pub mod conformance;
pub mod rules;
pub mod watch;

pub use commit_timer::CommitTimer;
pub use credentials::{
    CredentialFilter, CredentialRecord, Reseal, first_is_default, listing_order,
};
pub use error::StoreError;
pub use memory::MemoryStore;
pub use polls::{
    ITEM_KEYS_KEPT_MS, PollClaim, PollCommit, PollCommitOutcome, PollControl, PollItem, PollLease,
    PollResult, PollSourceRecord, PollState, holds_poll_lease, state_after,
};
pub use schedules::{
    CatchUpPolicy, FireOutcome, MISSES_KEPT, OverlapPolicy, ScheduleFire, ScheduleMiss,
    SchedulePut, ScheduleRecord, ScheduleSpec, put_decision,
};
pub use types::{
    ClaimOutcome, ClaimedRun, CreateOutcome, ForkOrigin, HookFilter, HookRecord, HookState, Lease,
    NEVER, NewRun, Park, PatchFilter, RunFilter, RunId, RunRecord, RunSummary, WorkerId,
};
pub use watch::{ChangeWatch, Changes};
pub use webhooks::{DELIVERIES_KEPT, WebhookDelivery};

use async_trait::async_trait;
use cairn_core::{Event, EventRecord, RunStatus};

/// Shorthand for store results.
pub type StoreResult<T> = Result<T, StoreError>;

/// A durable home for runs and their event logs.
///
/// Every method that returns `Ok` after writing has made the write durable (committed and
/// fsync'd or the backend's equivalent). Times are passed in (`now_ms`, unix milliseconds) so
/// the engine's clock, not the store's, decides what is due.
///
/// **Fencing rule:** a worker may append to a run only while it is the run's lease owner and
/// the run has not ended. A worker whose lease was taken over (or whose run was canceled) gets
/// [`StoreError::LeaseLost`] or [`StoreError::RunEnded`] and must stop executing the run. This
/// is what guarantees that a completed step is never recorded twice.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Creates a run with a `RunCreated` event followed by `run.history`.
    ///
    /// If `run.idempotency_key` was used before for the same workflow, nothing is written and
    /// the existing run's id is returned with `created: false`. The same holds when a run with
    /// `run.id` exists already, so a create retried after a lost reply is harmless.
    ///
    /// A new run is `queued` and ready at `run.now_ms`; with `run.lease` it starts `running`
    /// under that lease instead, exactly as if claimed (`executions` 1).
    async fn create_run(&self, run: NewRun) -> StoreResult<CreateOutcome>;

    /// One run, or `None` if there is no run with this id.
    async fn get_run(&self, id: RunId) -> StoreResult<Option<RunRecord>>;

    /// A run's whole log in order (one query). Empty if the run does not exist.
    async fn events(&self, id: RunId) -> StoreResult<Vec<EventRecord>>;

    /// The run's events with `seq > after_seq`, in order (one query): what a follower of the
    /// run has not seen yet. Empty for an unknown run or when nothing is newer.
    async fn events_after(&self, id: RunId, after_seq: u64) -> StoreResult<Vec<EventRecord>>;

    /// A watch that completes when runs changed after it was made, by a commit of this store
    /// instance or of any other process sharing the database: a create, an append, a claim,
    /// a park, a release, a cancel, a retry, a hook's resume or time-out, a parent woken by
    /// its child's end. (A lease renewal need not be reported.) With
    /// [`events_after`](Store::events_after) driven by it, a follower sees each event of a
    /// run once, in order. Create it *before* reading what you follow, so no change falls
    /// between the read and the wait.
    async fn watch_changes(&self) -> StoreResult<Box<dyn ChangeWatch>>;

    /// Runs matching `filter`, newest first.
    async fn list_runs(&self, filter: &RunFilter) -> StoreResult<Vec<RunRecord>>;

    /// The runs [`list_runs`](Store::list_runs) lists for `filter`, in its order, as
    /// summaries: no payload is read (what a page of runs needs, however large the runs).
    async fn list_run_summaries(&self, filter: &RunFilter) -> StoreResult<Vec<RunSummary>>;

    /// Takes the lease of one run, if it has not ended and nobody else holds a live lease
    /// (a lease is live while `now_ms < expires_at_ms`), whatever its `ready_at`. A claimed
    /// run becomes `running`, its `executions` grows by one, and its log comes with it.
    async fn claim_run(&self, id: RunId, lease: &Lease, now_ms: i64) -> StoreResult<ClaimOutcome>;

    /// Claims up to `limit` runs of `workflows` that are ready (`ready_at <= now`, not ended,
    /// no live lease: queued runs and runs whose worker's lease lapsed), oldest first.
    async fn claim_ready(
        &self,
        workflows: &[String],
        lease: &Lease,
        now_ms: i64,
        limit: usize,
    ) -> StoreResult<Vec<ClaimedRun>>;

    /// The earliest `ready_at` of an unclaimed, unended run of `workflows` (or when the
    /// earliest live lease lapses), so an idle worker knows when to look again.
    async fn next_ready_at(&self, workflows: &[String]) -> StoreResult<Option<i64>>;

    /// Extends the lease. Fails with `LeaseLost` or `RunEnded` when the worker must stop.
    async fn renew_lease(&self, id: RunId, lease: &Lease) -> StoreResult<()>;

    /// Gives the lease up so any worker may claim the run from `ready_at_ms` on. A `running`
    /// run goes back to `queued` (a parked status, sleeping or waiting, stays). Fails like
    /// [`renew_lease`](Store::renew_lease) when the caller no longer holds the lease.
    async fn release_lease(
        &self,
        id: RunId,
        worker: &WorkerId,
        ready_at_ms: i64,
    ) -> StoreResult<()>;

    /// Appends events to a run's log, fenced by the lease (see the trait docs), and durably.
    /// All or nothing: a refused append writes none of its events. Terminal events
    /// (`RunCompleted`, `RunFailed`, `RunCanceled`) end the run (status, output or error,
    /// `finished_at`) and free its lease.
    async fn append(
        &self,
        id: RunId,
        worker: &WorkerId,
        events: &[Event],
        now_ms: i64,
    ) -> StoreResult<()>;

    /// Ends a run that has not ended with `RunCanceled`, whoever holds its lease (the
    /// worker finds out at its next append or lease renewal). Returns the status it had.
    /// The run's `error` becomes an [`ErrorKind::Canceled`](cairn_core::ErrorKind) error
    /// carrying `reason`; `RunEnded` if it had already ended.
    async fn cancel_run(&self, id: RunId, reason: &str, now_ms: i64) -> StoreResult<RunStatus>;

    /// Sends a failed or canceled run back to the queue with a `RunRetried` event: it becomes
    /// `queued`, ready at `now_ms`, with its output, error and `finished_at` cleared.
    /// `NotRetryable` for any other status.
    async fn retry_run(&self, id: RunId, now_ms: i64) -> StoreResult<()>;

    /// Parks a run (fenced by the lease): frees the lease and sets the status to `sleeping` or
    /// `waiting`, ready at `wake_at_ms` ([`NEVER`] for a hook without timeout). If the log has
    /// grown past `park.known_seq` (a hook was resumed meanwhile), or `park.child` has already
    /// ended, the run is instead made `queued` and ready at `now_ms`, so no wake-up is lost.
    /// Returns whether it was parked. `RunNotFound` (naming the child) if `park.child` does
    /// not exist; nothing is written then.
    ///
    /// **Child-run rule:** whenever a run with a `parent_run_id` ends (an append, a cancel, a
    /// create whose history ends it), a parked parent (sleeping or waiting, no lease) becomes
    /// `queued` and ready now in the same transaction, as a resumed hook makes its run ready.
    /// So a parent waits for its child as a parked row, not as a task.
    async fn park_run(
        &self,
        id: RunId,
        worker: &WorkerId,
        park: Park,
        now_ms: i64,
    ) -> StoreResult<bool>;

    /// Resumes the pending hook `token`: appends `HookResumed { payload }` to its run's log
    /// (whoever holds the lease), marks the hook resumed, and makes a parked run ready now.
    /// `HookNotFound`, `HookNotPending` (already resumed, timed out, or its run ended) or
    /// `RunEnded` otherwise; nothing is written then.
    async fn resume_hook(
        &self,
        token: &str,
        payload: serde_json::Value,
        now_ms: i64,
    ) -> StoreResult<HookRecord>;

    /// Gives up on the pending hook `token` (fenced by the run's lease): marks it timed out
    /// and appends `timed_out` (the hook step's `StepFailed`). Returns `false`, writing
    /// nothing, if the hook was resumed first.
    async fn time_out_hook(
        &self,
        token: &str,
        worker: &WorkerId,
        timed_out: Event,
        now_ms: i64,
    ) -> StoreResult<bool>;

    /// One hook by token.
    async fn get_hook(&self, token: &str) -> StoreResult<Option<HookRecord>>;

    /// Hooks matching `filter`, newest first.
    async fn list_hooks(&self, filter: &HookFilter) -> StoreResult<Vec<HookRecord>>;

    /// Saves a credential: inserts it, or replaces the one with its id (keeping that one's
    /// `created_at_ms`). It is its holder's default for its key when `is_default` is set or
    /// when the holder has no other credential of that key ([`first_is_default`]); a new
    /// default takes the flag from the holder's other credentials of the key, in the same
    /// commit.
    async fn put_credential(&self, credential: CredentialRecord) -> StoreResult<()>;

    /// One credential by id.
    async fn get_credential(&self, id: &str) -> StoreResult<Option<CredentialRecord>>;

    /// Credentials matching `filter`, in [`listing_order`].
    async fn list_credentials(
        &self,
        filter: &CredentialFilter,
    ) -> StoreResult<Vec<CredentialRecord>>;

    /// Deletes a credential; `false` if there was none with this id.
    async fn delete_credential(&self, id: &str) -> StoreResult<bool>;

    /// Makes a credential its holder's default for its key (the others of that holder and
    /// key lose the flag), in one commit. [`StoreError::CredentialNotFound`] if there is none.
    async fn set_default_credential(&self, id: &str, now_ms: i64) -> StoreResult<()>;

    /// Replaces the sealed fields of every credential at once (master-key rotation): all
    /// or nothing. [`StoreError::CredentialsChanged`] (and nothing written) when a credential
    /// was saved or deleted since `reseals` were read: one's stored bytes are not its `old`,
    /// or the store holds a credential `reseals` does not name.
    async fn reseal_credentials(&self, reseals: &[Reseal], now_ms: i64) -> StoreResult<()>;

    /// Saves a schedule by id: inserts `schedule` if no schedule has its id
    /// ([`SchedulePut::Created`]); writes nothing if the stored spec equals its spec
    /// ([`SchedulePut::Unchanged`]: the stored next fire time stands); else replaces the spec
    /// and sets the next fire time to `schedule.next_fire_at_ms` ([`SchedulePut::Updated`]),
    /// keeping the stored paused flag, last fire and `created_at_ms`. Returns what it did and
    /// the schedule as stored.
    async fn put_schedule(
        &self,
        schedule: ScheduleRecord,
    ) -> StoreResult<(SchedulePut, ScheduleRecord)>;

    /// One schedule by id.
    async fn get_schedule(&self, id: &str) -> StoreResult<Option<ScheduleRecord>>;

    /// Every schedule, by id.
    async fn list_schedules(&self) -> StoreResult<Vec<ScheduleRecord>>;

    /// Pauses (`paused`) or resumes a schedule. Resuming sets the next fire time to
    /// `next_fire_at_ms` (the first after now: a resume does not catch up); pausing keeps
    /// it. Returns the schedule as stored; [`StoreError::ScheduleNotFound`] if there is none.
    async fn set_schedule_paused(
        &self,
        id: &str,
        paused: bool,
        next_fire_at_ms: i64,
        now_ms: i64,
    ) -> StoreResult<ScheduleRecord>;

    /// Unpaused schedules whose next fire time is not after `now_ms`, earliest first, at
    /// most `limit`: the work a worker fires with [`fire_schedule`](Store::fire_schedule).
    async fn due_schedules(&self, now_ms: i64, limit: usize) -> StoreResult<Vec<ScheduleRecord>>;

    /// Commits one fire of a schedule, all or nothing, in one transaction: if the schedule
    /// is unpaused and its next fire time is still `fire.expected_next_fire_at_ms`, creates
    /// `fire.runs` (as [`create_run`](Store::create_run) does: a key used before is no error
    /// and no new run), sets the next and last fire times, and records `fire.misses`.
    /// Otherwise writes nothing and returns [`FireOutcome::Superseded`]: of two workers
    /// firing the same fire time, one advances the schedule and the other is told so.
    async fn fire_schedule(&self, fire: ScheduleFire) -> StoreResult<FireOutcome>;

    /// The schedule's recorded missed fire times, newest first (at most [`MISSES_KEPT`]).
    async fn schedule_misses(&self, id: &str) -> StoreResult<Vec<ScheduleMiss>>;

    /// Saves a declared poll source by name: inserts `source` if no source has its name,
    /// else only sets the stored one's workflow (its cursor, state, items and lease stay).
    /// Returns the source as stored.
    async fn declare_poll_source(&self, source: PollSourceRecord) -> StoreResult<PollSourceRecord>;

    /// One poll source by name.
    async fn get_poll_source(&self, name: &str) -> StoreResult<Option<PollSourceRecord>>;

    /// Every poll source, by name.
    async fn list_poll_sources(&self) -> StoreResult<Vec<PollSourceRecord>>;

    /// Sources a worker may claim at `now_ms` ([`PollSourceRecord::is_due`]), earliest due
    /// first, at most `limit`: a read, so idle workers write nothing.
    async fn due_poll_sources(
        &self,
        now_ms: i64,
        limit: usize,
    ) -> StoreResult<Vec<PollSourceRecord>>;

    /// Takes the lease of source `name` if it is due at `now_ms` (not paused, due, no live
    /// lease): sets its owner and expiry from `lease` and grows its fencing token by one.
    /// `None` (nothing written) if it is not due, is leased, or does not exist.
    async fn claim_poll_source(
        &self,
        name: &str,
        lease: &Lease,
        now_ms: i64,
    ) -> StoreResult<Option<PollClaim>>;

    /// Pauses, resumes (state active, error streak cleared, next poll at the time given)
    /// or makes a source due now. Returns it as stored;
    /// [`StoreError::PollSourceNotFound`] if there is none.
    async fn control_poll_source(
        &self,
        name: &str,
        control: PollControl,
        now_ms: i64,
    ) -> StoreResult<PollSourceRecord>;

    /// Commits one poll, all or nothing, in one transaction, if `commit.lease` still holds
    /// the source ([`holds_poll_lease`]: same owner and fencing token), else writes nothing
    /// and answers [`PollCommitOutcome::LeaseLost`]. A success forgets the source's item
    /// keys last seen [`ITEM_KEYS_KEPT_MS`] or more ago, records each item's key (seen now),
    /// creates the run of each item whose key was not recorded (as
    /// [`create_run`](Store::create_run) does: a key used before is no error and no new run),
    /// stores the cursor, marks the source seeded and clears its error streak; a failure
    /// keeps the cursor and records the error. Either way the next poll time is set, the state follows [`state_after`],
    /// and the lease is freed.
    async fn commit_poll(&self, commit: PollCommit) -> StoreResult<PollCommitOutcome>;

    /// Deletes a schedule and its recorded misses, in one commit; `false` if there was none
    /// with this id. The runs it started stay. A fire read before the delete is superseded.
    async fn delete_schedule(&self, id: &str) -> StoreResult<bool>;

    /// Logs a webhook delivery, dropping the endpoint's oldest beyond [`DELIVERIES_KEPT`]
    /// (of the deliveries committed when it commits: concurrent recordings may leave a few
    /// more until the next).
    async fn record_webhook_delivery(&self, delivery: WebhookDelivery) -> StoreResult<()>;

    /// The newest `limit` logged deliveries to `endpoint`, newest first.
    async fn webhook_deliveries(
        &self,
        endpoint: &str,
        limit: usize,
    ) -> StoreResult<Vec<WebhookDelivery>>;

    /// A watch that wakes an idle worker when runs of `workflows` may have become ready
    /// through another process (created, released, resumed, retried). `None` when the backend
    /// cannot notify: the worker then polls. Create it *before* looking for work, so a wake-up
    /// between the look and the wait is not missed.
    async fn watch_ready(&self, workflows: &[String]) -> StoreResult<Option<Box<dyn ReadyWatch>>> {
        let _ = workflows;
        Ok(None)
    }

    /// The store's own clock, in unix milliseconds: the time every worker sharing the store
    /// judges leases and due runs by, whatever its process's clock says (decision 0046).
    /// `None` when the store has no clock of its own (it lives in one process, whose clock
    /// is the store's).
    async fn clock_ms(&self) -> StoreResult<Option<i64>> {
        Ok(None)
    }

    /// Waits until every write queued so far (by any task) is committed or has failed.
    /// Call it before a process exits.
    async fn flush(&self) -> StoreResult<()> {
        Ok(())
    }

    /// Where the backend records how long its commits take to become durable; `None` when it
    /// does not time them (the memory store has nothing to make durable).
    fn commit_timer(&self) -> Option<CommitTimer> {
        None
    }
}

/// Wakes an idle worker when runs may have become ready elsewhere (see [`Store::watch_ready`]).
#[async_trait]
pub trait ReadyWatch: Send {
    /// Completes with `true` when woken, `false` once `timeout` has passed.
    async fn wait(&mut self, timeout: std::time::Duration) -> bool;
}
