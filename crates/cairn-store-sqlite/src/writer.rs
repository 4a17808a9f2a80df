//! Group commit: one thread owns the write connection and turns queued write commands into
//! one transaction, and one fsync, per batch.
//!
//! The thread blocks for a first command, drains whatever else is queued (up to the batch
//! limit), runs them in order inside one `BEGIN IMMEDIATE … COMMIT`, commits, and only then
//! answers every waiter. A refused command (a fenced append that lost its lease) fails alone:
//! it runs in its own savepoint, or, for appends and creates, refuses before it writes
//! anything (see [`unguarded`]; a savepoint copies every page it touches and was a quarter
//! of the writer's time). An SQL failure part-way through an unguarded command rolls the
//! whole batch back and every waiter is told `Unavailable`. A sync thread fsyncs committed
//! batches while the next batch's SQL runs, so the commit rate stays at the disk's while the
//! event rate grows with the number of concurrent callers. When nothing is queued behind a
//! batch and nothing is being synced, the writer syncs it itself ([`Settle`]): a lone
//! caller's write then costs one thread wake-up fewer.

use std::{
    fs::{File, OpenOptions},
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
        mpsc,
    },
    thread::{self, JoinHandle},
};

use cairn_core::RunStatus;
use cairn_store::{
    CreateOutcome, HookRecord, Lease, Park, RunId, StoreError, StoreResult, WorkerId,
};
use rusqlite::Connection;
use tokio::sync::oneshot;

use crate::{
    codec::{Error, PreparedEvent, PreparedRun, RawClaimOutcome, RawClaimed, Result, sql_error},
    ops, waits,
};

/// Where a command's result goes.
pub(crate) type Reply<T> = oneshot::Sender<StoreResult<T>>;

/// A write for the writer thread. Each variant mirrors one `Store` method.
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
        events: Vec<PreparedEvent>,
        now_ms: i64,
        reply: Reply<()>,
    },
    CancelRun {
        id: RunId,
        canceled: PreparedEvent,
        now_ms: i64,
        reply: Reply<RunStatus>,
    },
    RetryRun {
        id: RunId,
        retried: PreparedEvent,
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
        timed_out: PreparedEvent,
        now_ms: i64,
        reply: Reply<bool>,
    },
    /// Answers once every command queued before it is committed.
    Flush { reply: Reply<()> },
}

/// Answers one command once its batch committed (`None`) or failed (`Some(why)`).
type Answer = Box<dyn FnOnce(Option<&str>) + Send>;

fn answer<T: Send + 'static>(reply: Reply<T>, result: StoreResult<T>) -> Answer {
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
    events: &[PreparedEvent],
    conn: &Connection,
    broken: &mut Option<String>,
    op: impl FnOnce(&Connection) -> Result<T>,
) -> StoreResult<T> {
    if ops::refuses_only_before_writing(events) {
        unguarded(conn, broken, op)
    } else {
        in_savepoint(conn, broken, op)
    }
}

impl Command {
    /// Runs the command in its own savepoint (or not at all once the batch is broken).
    fn execute(self, conn: &Connection, broken: &mut Option<String>) -> Answer {
        match self {
            Command::CreateRun { run, reply } => {
                let result = writing(&run.events, conn, broken, |c| ops::create_run(c, &run));
                answer(reply, result)
            }
            Command::ClaimRun {
                id,
                lease,
                now_ms,
                reply,
            } => answer(
                reply,
                in_savepoint(conn, broken, |c| ops::claim_run(c, id, &lease, now_ms)),
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
                    ops::claim_ready(c, &workflows, &lease, now_ms, limit)
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
                    ops::release_lease(c, id, &worker, ready_at_ms)
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
                    ops::append(c, id, &worker, &events, now_ms)
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
                in_savepoint(conn, broken, |c| ops::cancel_run(c, id, &canceled, now_ms)),
            ),
            Command::RetryRun {
                id,
                retried,
                now_ms,
                reply,
            } => answer(
                reply,
                in_savepoint(conn, broken, |c| ops::retry_run(c, id, &retried, now_ms)),
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
                    waits::park_run(c, id, &worker, &park, now_ms)
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
                    waits::resume_hook(c, &token, &payload, now_ms)
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
                    waits::time_out_hook(c, &token, &worker, &timed_out, now_ms)
                }),
            ),
            Command::Flush { reply } => answer(reply, Ok(())),
        }
    }
}

fn run_statement(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

/// Runs `op` between `SAVEPOINT` and `RELEASE`, rolling back to the savepoint if it fails.
/// If the savepoint machinery itself fails, the transaction can no longer be trusted:
/// `broken` is set and the batch will be rolled back whole.
fn in_savepoint<T>(
    conn: &Connection,
    broken: &mut Option<String>,
    op: impl FnOnce(&Connection) -> Result<T>,
) -> StoreResult<T> {
    still_whole(broken)?;
    let mut fail = |error: rusqlite::Error| break_batch(broken, error);
    run_statement(conn, "SAVEPOINT command").map_err(&mut fail)?;
    match op(conn) {
        Ok(value) => {
            run_statement(conn, "RELEASE command").map_err(&mut fail)?;
            Ok(value)
        }
        Err(error) => {
            let undone = run_statement(conn, "ROLLBACK TO command")
                .and_then(|()| run_statement(conn, "RELEASE command"));
            if let Err(undo) = undone {
                fail(undo);
            }
            Err(error.into())
        }
    }
}

/// Runs `op` without a savepoint, for an operation that refuses (a contract error such as
/// `LeaseLost`) only before it writes anything: a refusal needs no undo, and an SQL failure
/// part-way — I/O, a full disk — breaks the batch, which is rolled back whole and every
/// caller told `Unavailable` (writers retry that). The hot path (appends, creates) saves a
/// savepoint's statements and its copy of every page it touches.
fn unguarded<T>(
    conn: &Connection,
    broken: &mut Option<String>,
    op: impl FnOnce(&Connection) -> Result<T>,
) -> StoreResult<T> {
    still_whole(broken)?;
    match op(conn) {
        Ok(value) => Ok(value),
        Err(Error::Store(refusal)) => Err(refusal),
        Err(Error::Sql(error)) => Err(break_batch(broken, error)),
    }
}

/// Refuses every command of a batch once it is broken.
fn still_whole(broken: &Option<String>) -> StoreResult<()> {
    match broken {
        Some(why) => Err(StoreError::Unavailable(why.clone())),
        None => Ok(()),
    }
}

/// Marks the batch broken by `error` (it will be rolled back whole) and returns the error
/// for the command that met it.
fn break_batch(broken: &mut Option<String>, error: rusqlite::Error) -> StoreError {
    let error = sql_error(error);
    *broken = Some(format!("the write batch was rolled back: {error}"));
    error
}

/// A batch run in one transaction: its waiters' answers, and why it failed, if it did.
/// The answers go out once the commit is on disk (see [`Syncer`]).
pub(crate) struct Committed {
    answers: Vec<Answer>,
    broken: Option<String>,
}

impl Committed {
    /// Answers every waiter: the batch's own failure, else `sync_failure`, else success.
    fn answer(self, sync_failure: Option<&str>) {
        let why = self.broken.as_deref().or(sync_failure);
        for answer in self.answers {
            answer(why);
        }
    }
}

/// Runs `batch` in one transaction (committed without waiting for the disk).
pub(crate) fn commit_batch(
    conn: &Connection,
    batch: impl IntoIterator<Item = Command>,
) -> Committed {
    let mut broken = run_statement(conn, "BEGIN IMMEDIATE")
        .err()
        .map(|error| format!("could not start a write transaction: {}", sql_error(error)));
    let began = broken.is_none();
    let answers: Vec<Answer> = batch
        .into_iter()
        .map(|command| command.execute(conn, &mut broken))
        .collect();
    if began {
        let ended = match &broken {
            None => run_statement(conn, "COMMIT"),
            Some(_) => run_statement(conn, "ROLLBACK"),
        };
        if let Err(error) = ended {
            broken.get_or_insert_with(|| {
                format!("the write batch did not commit: {}", sql_error(error))
            });
            if !conn.is_autocommit()
                && let Err(error) = run_statement(conn, "ROLLBACK")
            {
                tracing::warn!(%error, "rolling back a failed write batch failed");
            }
        }
    }
    Committed { answers, broken }
}

/// Runs `batch` and answers at once, without syncing: for tests of the batch logic.
#[cfg(test)]
pub(crate) fn execute_batch(conn: &Connection, batch: impl IntoIterator<Item = Command>) {
    commit_batch(conn, batch).answer(None);
}

/// Makes commits durable before anyone hears of them: fdatasyncs the WAL file after one or
/// more committed batches, then answers their waiters.
///
/// The write connection runs with `synchronous=NORMAL`, so SQLite does not sync the WAL at
/// `COMMIT` (it still syncs before every checkpoint); the sync thread does it instead. That
/// takes the fsync off the SQL thread: batch N+1's SQL runs while batch N's commit is synced,
/// and several batches share one sync. (The writer thread has a `Syncer` of its own for a
/// batch nobody waits behind, see [`Settle`].) Every caller is answered only after a sync
/// that followed its commit, exactly as with `synchronous=FULL`. Another connection may
/// *read* a commit before it is synced; anything it then writes is synced after it (one WAL
/// file).
struct Syncer {
    wal: PathBuf,
    file: Option<File>,
}

impl Syncer {
    /// A syncer of `wal`, which it opens at its first sync (the file may not exist yet).
    fn new(wal: PathBuf) -> Syncer {
        Syncer { wal, file: None }
    }

    fn sync(&mut self) -> std::result::Result<(), String> {
        if self.file.is_none() {
            let file = OpenOptions::new()
                .write(true)
                .open(&self.wal)
                .map_err(|error| {
                    format!("cannot open {} to sync it: {error}", self.wal.display())
                })?;
            self.file = Some(file);
        }
        let file = self
            .file
            .as_ref()
            .ok_or_else(|| "the WAL file is not open".to_owned())?;
        file.sync_data().map_err(|error| {
            format!(
                "syncing {} failed, so commits may not be durable: {error}",
                self.wal.display()
            )
        })
    }

    /// Syncs once for `group` (unless every batch in it was rolled back) and answers it.
    fn settle(&mut self, group: Vec<Committed>) {
        let needs_sync = group.iter().any(|batch| batch.broken.is_none());
        let failure = if needs_sync { self.sync().err() } else { None };
        if let Some(failure) = &failure {
            tracing::error!(%failure, "the WAL could not be synced");
        }
        for batch in group {
            batch.answer(failure.as_deref());
        }
    }

    /// Answers committed batches as they come, one sync for everything queued; `in_flight`
    /// counts the batches handed over and not answered yet.
    fn run(mut self, committed: &mpsc::Receiver<Committed>, in_flight: &AtomicUsize) {
        while let Ok(first) = committed.recv() {
            let mut group = vec![first];
            group.extend(committed.try_iter());
            let settled = group.len();
            self.settle(group);
            in_flight.fetch_sub(settled, Ordering::Release);
        }
    }
}

/// Where the writer thread sends each committed batch: to the sync thread, so the next
/// batch's SQL runs during the sync, or, when nothing else is waiting, nowhere: it syncs
/// and answers the batch itself, which spares a sequential caller a thread wake-up per
/// write and changes nothing for concurrent ones.
struct Settle {
    /// The writer thread's own handle on the WAL, for syncing in place.
    in_place: Syncer,
    to_syncer: mpsc::Sender<Committed>,
    /// Batches with the sync thread, not answered yet.
    in_flight: Arc<AtomicUsize>,
}

impl Settle {
    /// Hands `batch` on, unless `idle`: no command is queued behind it. It is synced in place
    /// only when the sync thread holds no batch either, so answers keep their commit order.
    fn batch(&mut self, batch: Committed, idle: bool) -> std::result::Result<(), ()> {
        if idle && self.in_flight.load(Ordering::Acquire) == 0 {
            self.in_place.settle(vec![batch]);
            return Ok(());
        }
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.to_syncer.send(batch).map_err(drop)
    }
}

/// The writer thread and the queue to it.
pub(crate) struct Writer {
    queue: Option<mpsc::Sender<Command>>,
    thread: Option<JoinHandle<()>>,
    syncer: Option<JoinHandle<()>>,
}

impl Writer {
    /// Starts the thread that owns `conn`, committing up to `max_batch` commands at a time.
    pub(crate) fn spawn(
        conn: Connection,
        max_batch: usize,
        database: &Path,
    ) -> StoreResult<Writer> {
        let (queue, commands) = mpsc::channel::<Command>();
        let (to_syncer, committed) = mpsc::channel::<Committed>();
        let max_batch = max_batch.max(1);
        let mut wal = database.as_os_str().to_owned();
        wal.push("-wal");
        let wal = PathBuf::from(wal);
        let syncer = Syncer::new(wal.clone());
        let in_flight = Arc::new(AtomicUsize::new(0));
        let mut settle = Settle {
            in_place: Syncer::new(wal),
            to_syncer,
            in_flight: in_flight.clone(),
        };
        let cannot_start = |error: std::io::Error| {
            StoreError::Unavailable(format!("cannot start the SQLite writer threads: {error}"))
        };
        let syncer = thread::Builder::new()
            .name("cairn-sqlite-sync".into())
            .spawn(move || syncer.run(&committed, &in_flight))
            .map_err(cannot_start)?;
        let thread = thread::Builder::new()
            .name("cairn-sqlite-writer".into())
            .spawn(move || {
                let mut batch = Vec::with_capacity(max_batch);
                let mut next = None;
                while let Some(first) = next.take().or_else(|| commands.recv().ok()) {
                    batch.push(first);
                    batch.extend(commands.try_iter().take(max_batch - 1));
                    let committed = commit_batch(&conn, batch.drain(..));
                    next = commands.try_recv().ok();
                    if settle.batch(committed, next.is_none()).is_err() {
                        break;
                    }
                }
                drop(settle);
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
        queue.send(make(reply)).map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

fn stopped() -> StoreError {
    StoreError::Unavailable(
        "the SQLite writer thread has stopped (see the log for why); reopen the store".into(),
    )
}

impl Drop for Writer {
    /// Closes the queue and waits for the thread to commit what was queued before.
    fn drop(&mut self) {
        drop(self.queue.take());
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
mod tests;
