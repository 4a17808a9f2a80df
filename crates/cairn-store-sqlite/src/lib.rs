//! Cairn's embedded store: one SQLite file, zero setup, every commit fsync'd.
//!
//! [`SqliteStore`] implements [`cairn_store::Store`] and passes its conformance suite.
//!
//! - **Durable**: WAL journal; a write method returns only after its transaction committed
//!   and the WAL was fdatasync'd (by the writer's sync thread, or by the writer thread itself
//!   when nothing else waits: `synchronous=NORMAL` plus our own sync, durable like `FULL`),
//!   so it survives a power loss.
//! - **Cheap durability, by group commit**: every write (create, claim, renew, release,
//!   append, cancel, retry) goes to one writer thread that commits whatever has queued up in
//!   one transaction and one fsync, then answers all the waiters. While a sync is under
//!   way, arriving writes fill one open transaction, committed when the sync is done. One
//!   refused command fails alone: it refuses before writing (appends, creates) or runs in
//!   its own savepoint.
//! - **Reads don't wait for writes**: `get_run`, `events`, `list_runs` and `next_ready_at`
//!   use a small pool of read-only connections; WAL lets them read the last commit while the
//!   writer writes.
//! - **Shareable**: several processes may open one file; writes take SQLite's write lock
//!   with `BEGIN IMMEDIATE` (waiting up to the busy timeout, then failing with
//!   [`StoreError::Unavailable`]), so claims stay exclusive across processes.
//! - **Credentials** (schema v10) are written by the writer thread too, each write in its
//!   own savepoint, so the default rule's check and its writes commit together; a run's
//!   owner is a nullable column, NULL for the default owner, so the common create binds
//!   nothing new.
//! - **Schedules** (schema v11) are written by the writer thread too: a fire's runs and its
//!   schedule's advance (a compare-and-set of the next fire time) share one savepoint.
//! - **Webhook deliveries** (schema v12) are logged by the writer thread too, each with the
//!   pruning of its endpoint's oldest rows.
//! - **Poll sources** (schema v13) likewise: a poll's runs, its item keys and its cursor
//!   share one savepoint, fenced by the poll's lease (owner and fencing token).
//! - **Versioned schema**: migrations are applied on open, in one transaction.
//! - **Change watches**: [`Store::watch_changes`] hears this store's commits at once, with
//!   their runs, and other connections' commits (other processes) within
//!   [`OTHER_COMMITS_POLL`], through `PRAGMA data_version`, as `Unknown`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), cairn_store::StoreError> {
//! use cairn_store::{RunFilter, Store};
//! let store = cairn_store_sqlite::SqliteStore::open_in_dir(".cairn")?;
//! let runs = store.list_runs(&RunFilter::default()).await?;
//! # Ok(()) }
//! ```

mod batch;
mod clock;
mod codec;
mod credentials;
mod deliveries;
mod held;
mod listing;
mod ops;
mod options;
mod pipeline;
mod polls;
mod read;
mod run_cache;
mod savepoint;
mod schedules;
mod schema;
mod sync;
mod waits;
mod watch;
mod writer;

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use async_trait::async_trait;
use cairn_core::{Event, EventRecord, RunStatus};
use cairn_store::{
    ChangeWatch, ClaimOutcome, ClaimedRun, CommitTimer, CreateOutcome, CredentialFilter,
    CredentialRecord, FireOutcome, HookFilter, HookRecord, Lease, NewRun, Park, PollClaim,
    PollCommit, PollCommitOutcome, PollControl, PollSourceRecord, Reseal, RunFilter, RunId,
    RunRecord, RunSummary, ScheduleFire, ScheduleMiss, SchedulePut, ScheduleRecord, Store,
    StoreError, StoreResult, WebhookDelivery, WorkerId,
};

use crate::{
    codec::{PreparedEvents, PreparedRun, RawClaimed},
    credentials::CredentialWrite,
    deliveries::RecordDelivery,
    pipeline::PipelineLimits,
    polls::{PollWrite, PreparedCommit},
    read::ReadPool,
    schedules::{PreparedFire, ScheduleWrite},
    watch::Watches,
    writer::{Command, Writer},
};
pub use crate::{options::SqliteOptions, watch::OTHER_COMMITS_POLL};

/// The database file's name inside a data directory (see [`SqliteStore::open_in_dir`]).
pub const DATABASE_FILE: &str = "cairn.db";

/// The name of each store's writer thread, the one thread every write of the store runs on:
/// how a profiler or a benchmark tells its CPU time apart (Linux shows the first 15 bytes).
pub const WRITER_THREAD_NAME: &str = "cairn-sqlite-writer";

/// A [`Store`] in one SQLite file. See the [crate docs](crate) for how it works.
///
/// Dropping it waits for the writes already queued (a caller may have stopped waiting for its
/// own) to commit, and ends its change watches.
pub struct SqliteStore {
    path: PathBuf,
    /// Where the sync thread records commit latencies.
    timer: CommitTimer,
    writer: Writer,
    readers: Arc<ReadPool>,
    watches: Arc<Watches>,
}

impl SqliteStore {
    /// Opens (creating it and its parent directories if needed) the database at `path` and
    /// brings its schema up to date.
    pub fn open(path: impl AsRef<Path>) -> StoreResult<SqliteStore> {
        SqliteStore::open_with(path, SqliteOptions::default())
    }

    /// Opens `<data_dir>/cairn.db` (see [`open`](SqliteStore::open)).
    pub fn open_in_dir(data_dir: impl AsRef<Path>) -> StoreResult<SqliteStore> {
        SqliteStore::open(data_dir.as_ref().join(DATABASE_FILE))
    }

    /// [`open`](SqliteStore::open) with explicit options.
    pub fn open_with(path: impl AsRef<Path>, options: SqliteOptions) -> StoreResult<SqliteStore> {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|error| {
                StoreError::Unavailable(format!(
                    "cannot create the data directory {}: {error}",
                    dir.display()
                ))
            })?;
        }
        let conn = schema::open_writer(&path, options.busy_timeout)?;
        let limits = PipelineLimits {
            max_batch: options.max_batch,
            idle_spin: options.writer_idle_spin,
        };
        let watches = Arc::new(Watches::default());
        let timer = CommitTimer::default();
        let writer = Writer::spawn(conn, limits, &path, &watches.changes, &timer)?;
        let readers = ReadPool::new(path.clone(), options.busy_timeout, options.max_idle_readers);
        Ok(SqliteStore {
            path,
            timer,
            writer,
            readers,
            watches,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Waits until every write queued before this call (by any task) has been committed or
    /// has failed.
    pub async fn flush(&self) -> StoreResult<()> {
        self.writer.call(|reply| Command::Flush { reply }).await
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.watches.changes.close();
    }
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_run(&self, run: NewRun) -> StoreResult<CreateOutcome> {
        let run = PreparedRun::new(run)?;
        self.writer
            .call(|reply| Command::CreateRun { run, reply })
            .await
    }

    async fn get_run(&self, id: RunId) -> StoreResult<Option<RunRecord>> {
        self.readers.read(move |conn| read::get_run(conn, id)).await
    }

    async fn events(&self, id: RunId) -> StoreResult<Vec<EventRecord>> {
        self.readers.read(move |conn| read::events(conn, id)).await
    }

    async fn events_after(&self, id: RunId, after_seq: u64) -> StoreResult<Vec<EventRecord>> {
        self.readers
            .read(move |conn| read::events_after(conn, id, after_seq))
            .await
    }

    async fn watch_changes(&self) -> StoreResult<Box<dyn ChangeWatch>> {
        self.watches.watch(&self.writer).await
    }

    async fn list_runs(&self, filter: &RunFilter) -> StoreResult<Vec<RunRecord>> {
        let filter = filter.clone();
        self.readers
            .read(move |conn| read::list_runs(conn, &filter))
            .await
    }

    async fn list_run_summaries(&self, filter: &RunFilter) -> StoreResult<Vec<RunSummary>> {
        let filter = filter.clone();
        self.readers
            .read(move |conn| read::list_run_summaries(conn, &filter))
            .await
    }

    async fn claim_run(&self, id: RunId, lease: &Lease, now_ms: i64) -> StoreResult<ClaimOutcome> {
        let lease = lease.clone();
        self.writer
            .call(|reply| Command::ClaimRun {
                id,
                lease,
                now_ms,
                reply,
            })
            .await?
            .decode()
    }

    async fn claim_ready(
        &self,
        workflows: &[String],
        lease: &Lease,
        now_ms: i64,
        limit: usize,
    ) -> StoreResult<Vec<ClaimedRun>> {
        if workflows.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let (workflows, lease) = (workflows.to_vec(), lease.clone());
        let claimed = self
            .writer
            .call(|reply| Command::ClaimReady {
                workflows,
                lease,
                now_ms,
                limit,
                reply,
            })
            .await?;
        claimed.into_iter().map(RawClaimed::decode).collect()
    }

    async fn next_ready_at(&self, workflows: &[String]) -> StoreResult<Option<i64>> {
        if workflows.is_empty() {
            return Ok(None);
        }
        let workflows = workflows.to_vec();
        self.readers
            .read(move |conn| read::next_ready_at(conn, &workflows))
            .await
    }

    async fn renew_lease(&self, id: RunId, lease: &Lease) -> StoreResult<()> {
        let lease = lease.clone();
        self.writer
            .call(|reply| Command::RenewLease { id, lease, reply })
            .await
    }

    async fn release_lease(
        &self,
        id: RunId,
        worker: &WorkerId,
        ready_at_ms: i64,
    ) -> StoreResult<()> {
        let worker = worker.clone();
        self.writer
            .call(|reply| Command::ReleaseLease {
                id,
                worker,
                ready_at_ms,
                reply,
            })
            .await
    }

    async fn append(
        &self,
        id: RunId,
        worker: &WorkerId,
        events: &[Event],
        now_ms: i64,
    ) -> StoreResult<()> {
        let events = PreparedEvents::new(events)?;
        let worker = worker.clone();
        self.writer
            .call(|reply| Command::Append {
                id,
                worker,
                events,
                now_ms,
                reply,
            })
            .await
    }

    async fn cancel_run(&self, id: RunId, reason: &str, now_ms: i64) -> StoreResult<RunStatus> {
        let canceled = PreparedEvents::one(&Event::RunCanceled {
            reason: reason.to_owned(),
        })?;
        self.writer
            .call(|reply| Command::CancelRun {
                id,
                canceled,
                now_ms,
                reply,
            })
            .await
    }

    async fn retry_run(&self, id: RunId, now_ms: i64) -> StoreResult<()> {
        let retried = PreparedEvents::one(&Event::RunRetried)?;
        self.writer
            .call(|reply| Command::RetryRun {
                id,
                retried,
                now_ms,
                reply,
            })
            .await
    }

    async fn park_run(
        &self,
        id: RunId,
        worker: &WorkerId,
        park: Park,
        now_ms: i64,
    ) -> StoreResult<bool> {
        let worker = worker.clone();
        self.writer
            .call(|reply| Command::ParkRun {
                id,
                worker,
                park,
                now_ms,
                reply,
            })
            .await
    }

    async fn resume_hook(
        &self,
        token: &str,
        payload: serde_json::Value,
        now_ms: i64,
    ) -> StoreResult<HookRecord> {
        let token = token.to_owned();
        self.writer
            .call(|reply| Command::ResumeHook {
                token,
                payload,
                now_ms,
                reply,
            })
            .await
    }

    async fn time_out_hook(
        &self,
        token: &str,
        worker: &WorkerId,
        timed_out: Event,
        now_ms: i64,
    ) -> StoreResult<bool> {
        let timed_out = PreparedEvents::one(&timed_out)?;
        let (token, worker) = (token.to_owned(), worker.clone());
        self.writer
            .call(|reply| Command::TimeOutHook {
                token,
                worker,
                timed_out,
                now_ms,
                reply,
            })
            .await
    }

    async fn get_hook(&self, token: &str) -> StoreResult<Option<HookRecord>> {
        let token = token.to_owned();
        self.readers
            .read(move |conn| waits::load_hook(conn, &token))
            .await
    }

    async fn list_hooks(&self, filter: &HookFilter) -> StoreResult<Vec<HookRecord>> {
        let filter = filter.clone();
        self.readers
            .read(move |conn| waits::list_hooks(conn, &filter))
            .await
    }

    async fn put_credential(&self, credential: CredentialRecord) -> StoreResult<()> {
        let fields = credentials::field_names(&credential)?;
        self.writer
            .call(|reply| {
                Command::Credential(CredentialWrite::Put {
                    credential: Box::new(credential),
                    fields,
                    reply,
                })
            })
            .await
    }

    async fn get_credential(&self, id: &str) -> StoreResult<Option<CredentialRecord>> {
        let id = id.to_owned();
        self.readers
            .read(move |conn| credentials::get(conn, &id))
            .await
    }

    async fn list_credentials(
        &self,
        filter: &CredentialFilter,
    ) -> StoreResult<Vec<CredentialRecord>> {
        let filter = filter.clone();
        self.readers
            .read(move |conn| credentials::list(conn, &filter))
            .await
    }

    async fn delete_credential(&self, id: &str) -> StoreResult<bool> {
        let id = id.to_owned();
        self.writer
            .call(|reply| Command::Credential(CredentialWrite::Delete { id, reply }))
            .await
    }

    async fn set_default_credential(&self, id: &str, now_ms: i64) -> StoreResult<()> {
        let id = id.to_owned();
        self.writer
            .call(|reply| Command::Credential(CredentialWrite::SetDefault { id, now_ms, reply }))
            .await
    }

    async fn reseal_credentials(&self, reseals: &[Reseal], now_ms: i64) -> StoreResult<()> {
        let reseals = reseals.to_vec();
        self.writer
            .call(|reply| {
                Command::Credential(CredentialWrite::Reseal {
                    reseals,
                    now_ms,
                    reply,
                })
            })
            .await
    }

    async fn put_schedule(
        &self,
        schedule: ScheduleRecord,
    ) -> StoreResult<(SchedulePut, ScheduleRecord)> {
        let schedule = Box::new(schedule);
        self.writer
            .call(|reply| Command::Schedule(ScheduleWrite::Put { schedule, reply }))
            .await
    }

    async fn get_schedule(&self, id: &str) -> StoreResult<Option<ScheduleRecord>> {
        let id = id.to_owned();
        self.readers
            .read(move |conn| schedules::get(conn, &id))
            .await
    }

    async fn list_schedules(&self) -> StoreResult<Vec<ScheduleRecord>> {
        self.readers.read(schedules::list).await
    }

    async fn set_schedule_paused(
        &self,
        id: &str,
        paused: bool,
        next_fire_at_ms: i64,
        now_ms: i64,
    ) -> StoreResult<ScheduleRecord> {
        let id = id.to_owned();
        self.writer
            .call(|reply| {
                Command::Schedule(ScheduleWrite::SetPaused {
                    id,
                    paused,
                    next_fire_at_ms,
                    now_ms,
                    reply,
                })
            })
            .await
    }

    async fn due_schedules(&self, now_ms: i64, limit: usize) -> StoreResult<Vec<ScheduleRecord>> {
        self.readers
            .read(move |conn| schedules::due(conn, now_ms, limit))
            .await
    }

    async fn fire_schedule(&self, fire: ScheduleFire) -> StoreResult<FireOutcome> {
        let fire = Box::new(PreparedFire::new(fire)?);
        self.writer
            .call(|reply| Command::Schedule(ScheduleWrite::Fire { fire, reply }))
            .await
    }

    async fn schedule_misses(&self, id: &str) -> StoreResult<Vec<ScheduleMiss>> {
        let id = id.to_owned();
        self.readers
            .read(move |conn| schedules::misses(conn, &id))
            .await
    }

    async fn declare_poll_source(&self, source: PollSourceRecord) -> StoreResult<PollSourceRecord> {
        self.poll_write(|reply| PollWrite::declare(source, reply))
            .await
    }

    async fn get_poll_source(&self, name: &str) -> StoreResult<Option<PollSourceRecord>> {
        let name = name.to_owned();
        self.readers.read(move |conn| polls::get(conn, &name)).await
    }

    async fn list_poll_sources(&self) -> StoreResult<Vec<PollSourceRecord>> {
        self.readers.read(polls::list).await
    }

    async fn due_poll_sources(
        &self,
        now_ms: i64,
        limit: usize,
    ) -> StoreResult<Vec<PollSourceRecord>> {
        self.readers
            .read(move |conn| polls::due(conn, now_ms, limit))
            .await
    }

    async fn claim_poll_source(
        &self,
        name: &str,
        lease: &Lease,
        now_ms: i64,
    ) -> StoreResult<Option<PollClaim>> {
        self.poll_write(|reply| PollWrite::claim(name, lease, now_ms, reply))
            .await
    }

    async fn control_poll_source(
        &self,
        name: &str,
        control: PollControl,
        now_ms: i64,
    ) -> StoreResult<PollSourceRecord> {
        self.poll_write(|reply| PollWrite::control(name, control, now_ms, reply))
            .await
    }

    async fn commit_poll(&self, commit: PollCommit) -> StoreResult<PollCommitOutcome> {
        let commit = PreparedCommit::new(commit)?;
        self.poll_write(|reply| PollWrite::commit(commit, reply))
            .await
    }

    async fn delete_schedule(&self, id: &str) -> StoreResult<bool> {
        let id = id.to_owned();
        self.writer
            .call(|reply| Command::Schedule(ScheduleWrite::Delete { id, reply }))
            .await
    }

    async fn flush(&self) -> StoreResult<()> {
        SqliteStore::flush(self).await
    }

    async fn clock_ms(&self) -> StoreResult<Option<i64>> {
        Ok(Some(clock::host_clock_ms()))
    }

    fn commit_timer(&self) -> Option<CommitTimer> {
        Some(self.timer.clone())
    }

    async fn record_webhook_delivery(&self, delivery: WebhookDelivery) -> StoreResult<()> {
        let delivery = Box::new(delivery);
        self.writer
            .call(|reply| Command::Delivery(RecordDelivery { delivery, reply }))
            .await
    }

    async fn webhook_deliveries(
        &self,
        endpoint: &str,
        limit: usize,
    ) -> StoreResult<Vec<WebhookDelivery>> {
        let endpoint = endpoint.to_owned();
        self.readers
            .read(move |conn| deliveries::list(conn, &endpoint, limit))
            .await
    }
}
