//! [`PostgresStore`]: connecting (pool, migrations, write task, listener) and the [`Store`]
//! methods, which queue writes for the write task and run reads on the pool.

use std::time::Duration;

use async_trait::async_trait;
use cairn_core::{Event, EventRecord, RunStatus};
use cairn_store::{
    ChangeWatch, ClaimOutcome, ClaimedRun, CommitTimer, CreateOutcome, CredentialFilter,
    CredentialRecord, FireOutcome, HookFilter, HookRecord, Lease, NewRun, Park, PollClaim,
    PollCommit, PollCommitOutcome, PollControl, PollSourceRecord, ReadyWatch, Reseal, RunFilter,
    RunId, RunRecord, RunSummary, ScheduleFire, ScheduleMiss, SchedulePut, ScheduleRecord, Store,
    StoreError, StoreResult, WebhookDelivery, WorkerId,
};
use sqlx::{
    PgPool,
    postgres::{PgConnectOptions, PgPoolOptions},
};

use crate::{
    codec::{PreparedEvent, PreparedRun},
    credentials, deliveries,
    error::sql_error,
    notify::{Notifications, ReadyWaiter},
    polls::{self, PreparedCommit},
    read,
    schedules::{self, PreparedFire},
    schema, waits,
    writer::{Op, Writer},
};

/// Knobs of a [`PostgresStore`]. The defaults suit most deployments.
#[derive(Clone, Debug)]
pub struct PostgresOptions {
    /// The schema holding Cairn's tables, created if missing; every pooled connection's
    /// `search_path` is set to it. `None` (the default) uses the connection's current schema
    /// (normally `public`). Lowercase letters, digits and `_` only.
    pub schema: Option<String>,
    /// Most connections in the pool, for reads (they run in parallel). The writer's
    /// connection (its first is taken out of the pool) and the `LISTEN` connection come on
    /// top. Default 10.
    pub max_connections: u32,
    /// How long to wait for a pooled connection (or a new one) before the call fails with
    /// [`StoreError::Unavailable`]. Default 5 s.
    pub acquire_timeout: Duration,
    /// Longest a single statement may run before PostgreSQL cancels it (the call then fails
    /// with [`StoreError::Unavailable`]). Default 30 s.
    pub statement_timeout: Duration,
    /// Longest one of the store's connections may sit inside a transaction waiting for this
    /// process before PostgreSQL ends its session, rolling the transaction back and letting
    /// go of the rows it locked (`idle_in_transaction_session_timeout`). A worker cut off
    /// mid-transaction (a network partition, a frozen process or machine) otherwise holds
    /// its runs' rows until the server finds the connection dead, with PostgreSQL's defaults
    /// never, and no other worker can take those runs over when their leases lapse (claims
    /// skip locked rows). Keep it below the engine's lease TTL; zero turns it off. Default
    /// 5 s (decision 0047).
    pub idle_in_transaction_timeout: Duration,
    /// Most write commands committed together in one transaction. Default 512.
    pub max_batch: usize,
    /// The `application_name` the connections show in `pg_stat_activity`. Default `cairn`.
    pub application_name: String,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        PostgresOptions {
            schema: None,
            max_connections: 10,
            acquire_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(30),
            idle_in_transaction_timeout: Duration::from_secs(5),
            max_batch: 512,
            application_name: "cairn".to_owned(),
        }
    }
}

/// A [`Store`] in a PostgreSQL database, shared by any number of processes. See the
/// [crate docs](crate) for how it works.
///
/// Needs a tokio runtime. Dropping it lets the writes already queued (a caller may have
/// stopped waiting for its own) commit in the background while the runtime runs;
/// [`flush`](Self::flush) first to wait for them.
pub struct PostgresStore {
    pub(crate) pool: PgPool,
    pub(crate) schema: String,
    /// How the writer connects (its connections are its own, not the pool's); the writer
    /// tests run batches with it.
    #[cfg(test)]
    pub(crate) connect: PgConnectOptions,
    writer: Writer,
    notifications: Notifications,
    /// Where the writer records commit latencies.
    timer: CommitTimer,
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user:password@host:port/database?…`) with the default
    /// options and brings the schema up to date.
    pub async fn connect(url: &str) -> StoreResult<PostgresStore> {
        PostgresStore::connect_with(url, PostgresOptions::default()).await
    }

    /// [`connect`](Self::connect) with explicit options. Fails with
    /// [`StoreError::Unavailable`] if the database cannot be reached (or the URL or schema
    /// name is invalid) and [`StoreError::Corrupt`] if its schema is newer than this build.
    pub async fn connect_with(url: &str, options: PostgresOptions) -> StoreResult<PostgresStore> {
        if let Some(name) = &options.schema {
            schema::check_schema_name(name)?;
        }
        let connect: PgConnectOptions = url.parse().map_err(|error| {
            StoreError::Unavailable(format!("the PostgreSQL database URL is not valid: {error}"))
        })?;
        let mut settings = vec![
            (
                "statement_timeout",
                format!("{}ms", options.statement_timeout.as_millis()),
            ),
            (
                "idle_in_transaction_session_timeout",
                format!("{}ms", options.idle_in_transaction_timeout.as_millis()),
            ),
        ];
        // Every statement of the store reads or locks rows by key. A connection caches a
        // generic plan per statement, made once from the table's size at the time: made on a
        // new, small table it would scan, and keep scanning as the table grows (decision 0049).
        settings.push(("enable_seqscan", "off".to_owned()));
        // That setting prices a scan that has no index to use (the version check, a small
        // table's listing) at ten billion, far past `jit_above_cost`: the server would compile
        // such a statement with LLVM at every execution, 100-200 ms each, for a one-row read.
        // The store's statements are key lookups, which compiling never pays for (decision
        // 0053).
        settings.push(("jit", "off".to_owned()));
        if let Some(name) = &options.schema {
            settings.push(("search_path", name.clone()));
        }
        let connect = connect
            .application_name(&options.application_name)
            .options(settings);
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(options.acquire_timeout)
            .connect_lazy_with(connect.clone());
        let schema = {
            let mut conn = pool.acquire().await.map_err(sql_error)?;
            let schema = schema::migrate(&mut conn, options.schema.as_deref()).await?;
            // Back in the pool before this returns (dropping it would return it from a task
            // spawned for that, maybe after the first read had opened a second connection):
            // a one-shot command then makes one connection, and one TLS handshake.
            conn.return_to_pool().await;
            schema
        };
        // One listening connection for ready waiters, one for change watches.
        let listen_pool = PgPoolOptions::new()
            .max_connections(2)
            .max_lifetime(None)
            .idle_timeout(None)
            .acquire_timeout(options.acquire_timeout)
            .connect_lazy_with(connect.clone());
        let notifications = Notifications::new(listen_pool, schema.clone());
        let timer = CommitTimer::default();
        let writer = Writer::spawn(
            connect.clone(),
            pool.clone(),
            schema.clone(),
            notifications.instance.clone(),
            notifications.changes.clone(),
            options.max_batch,
            timer.clone(),
        );
        Ok(PostgresStore {
            #[cfg(test)]
            connect,
            timer,
            writer,
            notifications,
            pool,
            schema,
        })
    }

    /// The schema holding the store's tables.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// Waits until every write queued before this call (by any task) has been committed or
    /// has failed.
    pub async fn flush(&self) -> StoreResult<()> {
        self.writer.call(Op::Flush).await
    }

    /// A [`ReadyWaiter`] that wakes when a run of `workflows` becomes ready (created,
    /// released, parked with a wake-up time, resumed or retried) in this store's schema, by
    /// any process. The first call starts listening (`LISTEN cairn_ready` on a connection of
    /// its own) and fails with [`StoreError::Unavailable`] if the database cannot be reached;
    /// poll meanwhile and ask again later.
    pub async fn ready_waiter(&self, workflows: &[String]) -> StoreResult<ReadyWaiter> {
        self.notifications.waiter(workflows).await
    }

    /// Waits up to `timeout` for a run of `workflows` to become ready: `Ok(true)` when woken,
    /// `Ok(false)` on timeout. Only notifications sent after the call are heard; a worker
    /// loop should keep one [`ReadyWaiter`] instead (see there), so none falls between its
    /// look for work and its wait.
    pub async fn wait_for_work(
        &self,
        workflows: &[String],
        timeout: Duration,
    ) -> StoreResult<bool> {
        Ok(self.ready_waiter(workflows).await?.wait(timeout).await)
    }
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn create_run(&self, run: NewRun) -> StoreResult<CreateOutcome> {
        let run = PreparedRun::new(run)?;
        self.writer.call(Op::CreateRun(run)).await
    }

    async fn get_run(&self, id: RunId) -> StoreResult<Option<RunRecord>> {
        Ok(read::get_run(&self.pool, id).await?)
    }

    async fn events(&self, id: RunId) -> StoreResult<Vec<EventRecord>> {
        Ok(read::events(&self.pool, id).await?)
    }

    async fn events_after(&self, id: RunId, after_seq: u64) -> StoreResult<Vec<EventRecord>> {
        Ok(read::events_after(&self.pool, id, after_seq).await?)
    }

    async fn watch_changes(&self) -> StoreResult<Box<dyn ChangeWatch>> {
        self.notifications.watch().await
    }

    async fn list_runs(&self, filter: &RunFilter) -> StoreResult<Vec<RunRecord>> {
        Ok(read::list_runs(&self.pool, filter).await?)
    }

    async fn list_run_summaries(&self, filter: &RunFilter) -> StoreResult<Vec<RunSummary>> {
        Ok(read::list_run_summaries(&self.pool, filter).await?)
    }

    async fn claim_run(&self, id: RunId, lease: &Lease, now_ms: i64) -> StoreResult<ClaimOutcome> {
        let lease = lease.clone();
        self.writer.call(Op::ClaimRun { id, lease, now_ms }).await
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
        self.writer
            .call(Op::ClaimReady {
                workflows,
                lease,
                now_ms,
                limit,
            })
            .await
    }

    async fn next_ready_at(&self, workflows: &[String]) -> StoreResult<Option<i64>> {
        Ok(read::next_ready_at(&self.pool, workflows).await?)
    }

    async fn renew_lease(&self, id: RunId, lease: &Lease) -> StoreResult<()> {
        let lease = lease.clone();
        self.writer.call(Op::RenewLease { id, lease }).await
    }

    async fn release_lease(
        &self,
        id: RunId,
        worker: &WorkerId,
        ready_at_ms: i64,
    ) -> StoreResult<()> {
        let worker = worker.clone();
        self.writer
            .call(Op::ReleaseLease {
                id,
                worker,
                ready_at_ms,
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
        let events = PreparedEvent::all(events)?;
        let worker = worker.clone();
        self.writer
            .call(Op::Append {
                id,
                worker,
                events,
                now_ms,
            })
            .await
    }

    async fn cancel_run(&self, id: RunId, reason: &str, now_ms: i64) -> StoreResult<RunStatus> {
        let canceled = PreparedEvent::new(&Event::RunCanceled {
            reason: reason.to_owned(),
        })?;
        self.writer
            .call(Op::CancelRun {
                id,
                canceled,
                now_ms,
            })
            .await
    }

    async fn retry_run(&self, id: RunId, now_ms: i64) -> StoreResult<()> {
        let retried = PreparedEvent::new(&Event::RunRetried)?;
        self.writer
            .call(Op::RetryRun {
                id,
                retried,
                now_ms,
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
            .call(Op::ParkRun {
                id,
                worker,
                park,
                now_ms,
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
            .call(Op::ResumeHook {
                token,
                payload,
                now_ms,
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
        let timed_out = PreparedEvent::new(&timed_out)?;
        let (token, worker) = (token.to_owned(), worker.clone());
        self.writer
            .call(Op::TimeOutHook {
                token,
                worker,
                timed_out,
                now_ms,
            })
            .await
    }

    async fn get_hook(&self, token: &str) -> StoreResult<Option<HookRecord>> {
        Ok(waits::load_hook(&self.pool, token).await?)
    }

    async fn list_hooks(&self, filter: &HookFilter) -> StoreResult<Vec<HookRecord>> {
        Ok(waits::list_hooks(&self.pool, filter).await?)
    }

    async fn put_credential(&self, credential: CredentialRecord) -> StoreResult<()> {
        Ok(credentials::put(&self.pool, &credential).await?)
    }

    async fn get_credential(&self, id: &str) -> StoreResult<Option<CredentialRecord>> {
        Ok(credentials::get(&self.pool, id).await?)
    }

    async fn list_credentials(
        &self,
        filter: &CredentialFilter,
    ) -> StoreResult<Vec<CredentialRecord>> {
        Ok(credentials::list(&self.pool, filter).await?)
    }

    async fn delete_credential(&self, id: &str) -> StoreResult<bool> {
        Ok(credentials::delete(&self.pool, id).await?)
    }

    async fn set_default_credential(&self, id: &str, now_ms: i64) -> StoreResult<()> {
        Ok(credentials::set_default(&self.pool, id, now_ms).await?)
    }

    async fn reseal_credentials(&self, reseals: &[Reseal], now_ms: i64) -> StoreResult<()> {
        Ok(credentials::reseal(&self.pool, reseals, now_ms).await?)
    }

    async fn put_schedule(
        &self,
        schedule: ScheduleRecord,
    ) -> StoreResult<(SchedulePut, ScheduleRecord)> {
        self.writer.call(Op::PutSchedule(Box::new(schedule))).await
    }

    async fn get_schedule(&self, id: &str) -> StoreResult<Option<ScheduleRecord>> {
        Ok(schedules::get(&self.pool, id).await?)
    }

    async fn list_schedules(&self) -> StoreResult<Vec<ScheduleRecord>> {
        Ok(schedules::list(&self.pool).await?)
    }

    async fn set_schedule_paused(
        &self,
        id: &str,
        paused: bool,
        next_fire_at_ms: i64,
        now_ms: i64,
    ) -> StoreResult<ScheduleRecord> {
        self.writer
            .call(Op::SetSchedulePaused {
                id: id.to_owned(),
                paused,
                next_fire_at_ms,
                now_ms,
            })
            .await
    }

    async fn due_schedules(&self, now_ms: i64, limit: usize) -> StoreResult<Vec<ScheduleRecord>> {
        Ok(schedules::due(&self.pool, now_ms, limit).await?)
    }

    async fn fire_schedule(&self, fire: ScheduleFire) -> StoreResult<FireOutcome> {
        let fire = PreparedFire::new(fire)?;
        self.writer.call(Op::FireSchedule(Box::new(fire))).await
    }

    async fn schedule_misses(&self, id: &str) -> StoreResult<Vec<ScheduleMiss>> {
        Ok(schedules::misses(&self.pool, id).await?)
    }

    async fn declare_poll_source(&self, source: PollSourceRecord) -> StoreResult<PollSourceRecord> {
        self.writer
            .call(Op::DeclarePollSource(Box::new(source)))
            .await
    }

    async fn get_poll_source(&self, name: &str) -> StoreResult<Option<PollSourceRecord>> {
        Ok(polls::get(&self.pool, name).await?)
    }

    async fn list_poll_sources(&self) -> StoreResult<Vec<PollSourceRecord>> {
        Ok(polls::list(&self.pool).await?)
    }

    async fn due_poll_sources(
        &self,
        now_ms: i64,
        limit: usize,
    ) -> StoreResult<Vec<PollSourceRecord>> {
        Ok(polls::due(&self.pool, now_ms, limit).await?)
    }

    async fn claim_poll_source(
        &self,
        name: &str,
        lease: &Lease,
        now_ms: i64,
    ) -> StoreResult<Option<PollClaim>> {
        self.writer
            .call(Op::ClaimPollSource {
                name: name.to_owned(),
                lease: lease.clone(),
                now_ms,
            })
            .await
    }

    async fn control_poll_source(
        &self,
        name: &str,
        control: PollControl,
        now_ms: i64,
    ) -> StoreResult<PollSourceRecord> {
        self.writer
            .call(Op::ControlPollSource {
                name: name.to_owned(),
                control,
                now_ms,
            })
            .await
    }

    async fn commit_poll(&self, commit: PollCommit) -> StoreResult<PollCommitOutcome> {
        let commit = PreparedCommit::new(commit)?;
        self.writer.call(Op::CommitPoll(Box::new(commit))).await
    }

    async fn delete_schedule(&self, id: &str) -> StoreResult<bool> {
        Ok(schedules::delete(&self.pool, id).await?)
    }

    async fn record_webhook_delivery(&self, delivery: WebhookDelivery) -> StoreResult<()> {
        Ok(deliveries::record(&self.pool, &delivery).await?)
    }

    async fn webhook_deliveries(
        &self,
        endpoint: &str,
        limit: usize,
    ) -> StoreResult<Vec<WebhookDelivery>> {
        Ok(deliveries::list(&self.pool, endpoint, limit).await?)
    }

    async fn watch_ready(&self, workflows: &[String]) -> StoreResult<Option<Box<dyn ReadyWatch>>> {
        Ok(Some(Box::new(self.ready_waiter(workflows).await?)))
    }

    async fn flush(&self) -> StoreResult<()> {
        PostgresStore::flush(self).await
    }

    async fn clock_ms(&self) -> StoreResult<Option<i64>> {
        Ok(Some(read::server_clock_ms(&self.pool).await?))
    }

    fn commit_timer(&self) -> Option<CommitTimer> {
        Some(self.timer.clone())
    }
}
