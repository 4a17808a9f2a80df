//! Group commit: one thread owns the write connection and runs queued write commands,
//! many to a transaction; answers wait until the transaction's commit is on disk.
//!
//! This file holds the commands, how one runs inside a batch's transaction, the write
//! connection a [`batch`](crate::batch) asks for its statements ([`WriteConnection`]), and
//! the [`Writer`] handle (its queue and threads). When a transaction opens, commits and is
//! synced is up to the writer thread's loop, in [`pipeline`](crate::pipeline). A refused
//! command (a fenced append that lost its lease) fails alone: it runs in its own savepoint,
//! or, for appends and creates, refuses before it writes anything (see [`unguarded`]; a
//! savepoint copies every page it touches and was a quarter of the writer's time). An SQL
//! failure part-way through an unguarded command rolls the whole batch back and every
//! waiter is told `Unavailable`.

use std::{
    path::{Path, PathBuf},
    sync::mpsc,
    thread::{self, JoinHandle},
};

use cairn_core::RunStatus;
use cairn_store::{
    CommitTimer, CreateOutcome, HookRecord, Lease, Park, RunId, StoreError, StoreResult, WorkerId,
    watch::ChangeHub,
};
use rusqlite::Connection;
use tokio::sync::oneshot;

pub(crate) use crate::{batch::Answer, savepoint::in_savepoint};
use crate::{
    batch::{Committed, Database},
    codec::{PreparedEvents, PreparedRun, RawClaimOutcome, RawClaimed, Result, sql_error},
    credentials::CredentialWrite,
    deliveries::RecordDelivery,
    held::{Hot, Sql},
    ops::{self, Changed},
    pipeline::{Message, Pipeline, PipelineLimits, Syncer, WalFile},
    polls::PollWrite,
    run_cache::RunCache,
    savepoint::{run_statement, unguarded},
    schedules::ScheduleWrite,
    sync::{Std, Threads},
    waits,
    watch::DataVersions,
};

/// Where a command's result goes.
pub(crate) type Reply<T> = oneshot::Sender<StoreResult<T>>;

/// A write for the writer thread. Each variant mirrors one `Store` method.
#[allow(
    clippy::large_enum_variant,
    reason = "a create, the hot path's largest command, is moved once into the queue; boxing it \
              would allocate per run"
)]
pub(crate) enum Command {
    CreateRun {
        run: PreparedRun,
        reply: Reply<CreateOutcome>,
    },
    ClaimRun {
        id: RunId,
        lease: Lease,
        now_ms: i64,
        reply: Reply<RawClaimOutcome>,
    },
    ClaimReady {
        workflows: Vec<String>,
        lease: Lease,
        now_ms: i64,
        limit: usize,
        reply: Reply<Vec<RawClaimed>>,
    },
    RenewLease {
        id: RunId,
        lease: Lease,
        reply: Reply<()>,
    },
    ReleaseLease {
        id: RunId,
        worker: WorkerId,
        ready_at_ms: i64,
        reply: Reply<()>,
    },
    Append {
        id: RunId,
        worker: WorkerId,
        events: PreparedEvents,
        now_ms: i64,
        reply: Reply<()>,
    },
    CancelRun {
        id: RunId,
        canceled: PreparedEvents,
        now_ms: i64,
        reply: Reply<RunStatus>,
    },
    RetryRun {
        id: RunId,
        retried: PreparedEvents,
        now_ms: i64,
        reply: Reply<()>,
    },
    ParkRun {
        id: RunId,
        worker: WorkerId,
        park: Park,
        now_ms: i64,
        reply: Reply<bool>,
    },
    ResumeHook {
        token: String,
        payload: serde_json::Value,
        now_ms: i64,
        reply: Reply<HookRecord>,
    },
    TimeOutHook {
        token: String,
        worker: WorkerId,
        timed_out: PreparedEvents,
        now_ms: i64,
        reply: Reply<bool>,
    },
    /// A credential write (touches no run).
    Credential(CredentialWrite),
    /// A schedule write (a fire creates runs, which no cached run can be).
    Schedule(ScheduleWrite),
    /// A poll source write (a commit creates runs, which no cached run can be).
    Poll(PollWrite),
    /// A webhook delivery to log (touches no run).
    Delivery(RecordDelivery),
    /// Answers once every command queued before it is committed.
    Flush { reply: Reply<()> },
}

pub(crate) fn answer<T: Send + 'static>(reply: Reply<T>, result: StoreResult<T>) -> Answer {
    Box::new(move |failure| {
        let result = match (result, failure) {
            (Ok(_), Some(why)) => Err(StoreError::Unavailable(why.to_owned())),
            (result, _) => result,
        };
        // The caller may have stopped waiting (its future was dropped): nothing to do then.
        let _ = reply.send(result);
    })
}

/// Runs `op`, which writes `events`: [`unguarded`] when it refuses only before writing,
/// else [`in_savepoint`].
fn writing<T>(
    events: &PreparedEvents,
    conn: &Sql<'_>,
    broken: &mut Option<String>,
    op: impl FnOnce(&Sql<'_>) -> Result<T>,
) -> StoreResult<T> {
    if ops::refuses_only_before_writing(events) {
        unguarded(conn, broken, op)
    } else {
        in_savepoint(conn, broken, op)
    }
}

impl Command {
    /// Runs the command in its own savepoint (or not at all once the batch is broken),
    /// noting in `changed` the runs it changed. Creates and appends use and update `runs`;
    /// every other command forgets the runs it may change before it runs, and parents woken
    /// by a child's end are forgotten after (see [`RunCache`]).
    fn execute(
        self,
        conn: &Sql<'_>,
        runs: &mut RunCache,
        broken: &mut Option<String>,
        changed: &mut Changed,
    ) -> Answer {
        self.forget_changed_runs(runs);
        let answer = match self {
            Command::CreateRun { run, reply } => {
                let result = writing(&run.events, conn, broken, |c| {
                    ops::create_run(c, runs, &run, changed)
                });
                answer(reply, result)
            }
            Command::ClaimRun {
                id,
                lease,
                now_ms,
                reply,
            } => answer(
                reply,
                in_savepoint(conn, broken, |c| {
                    ops::claim_run(c, id, &lease, now_ms, changed)
                }),
            ),
            Command::ClaimReady {
                workflows,
                lease,
                now_ms,
                limit,
                reply,
            } => answer(
                reply,
                in_savepoint(conn, broken, |c| {
                    ops::claim_ready(c, runs, &workflows, &lease, now_ms, limit, changed)
                }),
            ),
            Command::RenewLease { id, lease, reply } => answer(
                reply,
                in_savepoint(conn, broken, |c| ops::renew_lease(c, id, &lease)),
            ),
            Command::ReleaseLease {
                id,
                worker,
                ready_at_ms,
                reply,
            } => answer(
                reply,
                in_savepoint(conn, broken, |c| {
                    ops::release_lease(c, id, &worker, ready_at_ms, changed)
                }),
            ),
            Command::Append {
                id,
                worker,
                events,
                now_ms,
                reply,
            } => {
                let result = writing(&events, conn, broken, |c| {
                    ops::append(c, runs, id, &worker, &events, now_ms, changed)
                });
                answer(reply, result)
            }
            Command::CancelRun {
                id,
                canceled,
                now_ms,
                reply,
            } => answer(
                reply,
                in_savepoint(conn, broken, |c| {
                    ops::cancel_run(c, id, &canceled, now_ms, changed)
                }),
            ),
            Command::RetryRun {
                id,
                retried,
                now_ms,
                reply,
            } => answer(
                reply,
                in_savepoint(conn, broken, |c| {
                    ops::retry_run(c, id, &retried, now_ms, changed)
                }),
            ),
            Command::ParkRun {
                id,
                worker,
                park,
                now_ms,
                reply,
            } => answer(
                reply,
                in_savepoint(conn, broken, |c| {
                    waits::park_run(c, id, &worker, &park, now_ms, changed)
                }),
            ),
            Command::ResumeHook {
                token,
                payload,
                now_ms,
                reply,
            } => answer(
                reply,
                in_savepoint(conn, broken, |c| {
                    waits::resume_hook(c, &token, &payload, now_ms, changed)
                }),
            ),
            Command::TimeOutHook {
                token,
                worker,
                timed_out,
                now_ms,
                reply,
            } => answer(
                reply,
                in_savepoint(conn, broken, |c| {
                    waits::time_out_hook(c, &token, &worker, &timed_out, now_ms, changed)
                }),
            ),
            Command::Credential(write) => write.execute(conn, broken),
            Command::Schedule(write) => write.execute(conn, broken, changed),
            Command::Poll(write) => write.execute(conn, broken, changed),
            Command::Delivery(record) => record.execute(conn, broken),
            Command::Flush { reply } => answer(reply, Ok(())),
        };
        changed.forget_woken(runs);
        answer
    }

    /// Forgets, in `runs`, every run this command may change other than through
    /// [`RunCache`]'s own updates: the run it names, or every run when it names a hook.
    fn forget_changed_runs(&self, runs: &mut RunCache) {
        match self {
            Command::CreateRun { .. }
            | Command::Append { .. }
            | Command::Credential(_)
            | Command::Schedule(_)
            | Command::Poll(_)
            | Command::Delivery(_)
            | Command::Flush { .. } => {}
            Command::ClaimRun { id, .. }
            | Command::RenewLease { id, .. }
            | Command::ReleaseLease { id, .. }
            | Command::CancelRun { id, .. }
            | Command::RetryRun { id, .. }
            | Command::ParkRun { id, .. } => runs.forget(*id),
            // Forgets the runs it claims as it claims them.
            Command::ClaimReady { .. } => {}
            Command::ResumeHook { .. } | Command::TimeOutHook { .. } => runs.forget_all(),
        }
    }
}

/// The writer thread's connection, with its hot statements held, and what it remembers of
/// the runs it writes: the store's [`Database`].
pub(crate) struct WriteConnection<'c> {
    pub(crate) sql: Sql<'c>,
    runs: RunCache,
}

impl<'c> WriteConnection<'c> {
    /// `conn` with its hot statements held and nothing remembered.
    pub(crate) fn new(conn: &'c Connection) -> WriteConnection<'c> {
        WriteConnection {
            sql: Sql::new(conn),
            runs: RunCache::default(),
        }
    }
}

impl Database for WriteConnection<'_> {
    type Command = Command;
    type Wal = WalFile;

    /// `BEGIN IMMEDIATE`, then has the run cache checked against the transaction.
    fn begin(&mut self) -> std::result::Result<(), String> {
        run_statement(&self.sql, Hot::Begin).map_err(|error| {
            format!("could not start a write transaction: {}", sql_error(error))
        })?;
        self.runs.revalidate(&self.sql);
        Ok(())
    }

    fn execute(
        &mut self,
        command: Command,
        broken: &mut Option<String>,
        changed: &mut Changed,
    ) -> Answer {
        command.execute(&self.sql, &mut self.runs, broken, changed)
    }

    /// `COMMIT`, or `ROLLBACK` if `broken`; the run cache forgets what it learned in a
    /// batch that broke.
    fn end(&mut self, began: bool, broken: &mut Option<String>) {
        let conn = &self.sql;
        if began {
            let ended = match broken {
                None => run_statement(conn, Hot::Commit),
                Some(_) => run_statement(conn, Hot::Rollback),
            };
            if let Err(error) = ended {
                broken.get_or_insert_with(|| {
                    format!("the write batch did not commit: {}", sql_error(error))
                });
                if !conn.is_autocommit()
                    && let Err(error) = run_statement(conn, Hot::Rollback)
                {
                    tracing::warn!(%error, "rolling back a failed write batch failed");
                }
            }
        }
        if broken.is_some() {
            self.runs.forget_all();
        }
    }

    fn data_version(&mut self) -> StoreResult<i64> {
        self.sql
            .query_row(Hot::DataVersion, [], |row| row.get(0))
            .map_err(sql_error)
    }
}

/// The writer thread, the sync thread, and the queue to them.
pub(crate) struct Writer {
    queue: Option<mpsc::Sender<Message<Command>>>,
    thread: Option<JoinHandle<()>>,
    syncer: Option<JoinHandle<()>>,
}

impl Writer {
    /// Starts the thread that owns `conn`, within `limits`, and the thread that syncs its
    /// commits.
    pub(crate) fn spawn(
        conn: Connection,
        limits: PipelineLimits,
        database: &Path,
        changes: &ChangeHub,
        timer: &CommitTimer,
    ) -> StoreResult<Writer> {
        let (queue, messages) = Std::channel::<Message<Command>>();
        let (to_syncer, committed) = Std::channel::<Committed>();
        let mut wal = database.as_os_str().to_owned();
        wal.push("-wal");
        let wal = WalFile::new(PathBuf::from(wal));
        let syncer = Syncer::<_, Std>::new(wal, changes.clone()).timed(timer.clone());
        let in_place = syncer.twin();
        let cannot_start = |error: std::io::Error| {
            StoreError::Unavailable(format!("cannot start the SQLite writer threads: {error}"))
        };
        let synced = queue.clone();
        let syncer = thread::Builder::new()
            .name("cairn-sqlite-sync".into())
            .spawn(move || syncer.run(&committed, &synced))
            .map_err(cannot_start)?;
        let thread = thread::Builder::new()
            .name(crate::WRITER_THREAD_NAME.into())
            .spawn(move || {
                Pipeline::new(WriteConnection::new(&conn), limits, in_place, to_syncer)
                    .run(&messages);
                if let Err((_, error)) = conn.close() {
                    tracing::warn!(%error, "closing the SQLite write connection failed");
                }
            })
            .map_err(cannot_start)?;
        Ok(Writer {
            queue: Some(queue),
            thread: Some(thread),
            syncer: Some(syncer),
        })
    }

    /// Queues the command `make` builds around a reply channel and waits for its answer.
    pub(crate) async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> StoreResult<T> {
        let (reply, answer) = oneshot::channel();
        let queue = self.queue.as_ref().ok_or_else(stopped)?;
        queue
            .send(Message::Command(make(reply)))
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// A handle that asks the writer thread for its connection's `PRAGMA data_version`.
    pub(crate) fn data_versions(&self) -> StoreResult<DataVersions> {
        let queue = self.queue.as_ref().ok_or_else(stopped)?;
        Ok(DataVersions::new(queue.clone()))
    }
}

pub(crate) fn stopped() -> StoreError {
    StoreError::Unavailable(
        "the SQLite writer thread has stopped (see the log for why); reopen the store".into(),
    )
}

impl Drop for Writer {
    /// Stops the writer thread once it has committed what was queued before, and waits for
    /// the sync thread to answer it. (The sync thread holds a sender of the queue, so closing
    /// the queue alone would not stop the writer.)
    fn drop(&mut self) {
        if let Some(queue) = self.queue.take() {
            // Fails only if the thread has stopped already.
            let _ = queue.send(Message::Stop);
        }
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the SQLite writer thread panicked");
        }
        if let Some(syncer) = self.syncer.take()
            && syncer.join().is_err()
        {
            tracing::error!("the SQLite sync thread panicked");
        }
    }
}

#[cfg(test)]
#[path = "writer_tests.rs"]
pub(crate) mod tests;
