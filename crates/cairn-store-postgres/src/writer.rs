//! The write queue: one FIFO per store, consumed by one task, which commits whatever has
//! queued up in one shared transaction (group commit).
//!
//! **Ordering.** Every write of the store enters the queue, and the task commits the queue's
//! commands in order, batch after batch: a write is committed in the same transaction as, or
//! an earlier one than, every write queued after it.
//!
//! **Group commit.** The task takes the first command and everything queued behind it (up to
//! `max_batch`), runs them in one transaction and commits once; while it commits, new
//! commands queue for the next batch. A batch first runs without savepoints (fewest round
//! trips). If any command fails, the transaction is rolled back and the batch runs again
//! with one savepoint per command, so a refused command (a fenced append that lost its lease)
//! fails alone and the others commit; nothing was answered in between, so the rerun's
//! results are the only ones anyone sees. If the connection is lost before `COMMIT` was sent
//! (nothing committed), the batch runs once more on a fresh connection. A failure at `COMMIT`
//! itself is reported as `MaybeCommitted`: as with any database, the commit may or may not have
//! happened. A batch of one command that is one statement runs alone in autocommit instead,
//! one round trip, with the same guarantees (see `alone`).
//!
//! **Wake-ups and changes.** Commands note the workflows whose runs they made ready and the
//! runs they changed (`Notes`); the batch sends one `pg_notify` per workflow and, while a
//! change watch may be listening (see `notify`), one per (up to) 150 changed runs just before
//! `COMMIT`, so listeners hear of it exactly when the change is visible, and never for a
//! command that was rolled back. Once committed, the batch hands its changed runs to this
//! store's change watches at once (a commit that may or may not have happened is `Unknown`
//! to them).

use cairn_core::RunStatus;
use cairn_store::{
    ClaimOutcome, ClaimedRun, CommitTimer, CreateOutcome, FireOutcome, HookRecord, Lease, Park,
    PollClaim, PollCommitOutcome, PollControl, PollSourceRecord, RunId, SchedulePut,
    ScheduleRecord, StoreError, StoreResult, WorkerId, watch::ChangeHub,
};
use sqlx::{PgConnection, PgPool, pool::PoolConnection, postgres::PgConnectOptions};
use tokio::sync::{mpsc, oneshot};

use crate::{
    alone::Announce,
    append::{Appended, StepAppend, append_steps},
    batch::{Batch, Link},
    codec::{PreparedEvent, PreparedRun},
    error::Result,
    ops,
    polls::{self, PreparedCommit},
    schedules::{self, PreparedFire},
    waits,
};

/// What a transaction's listeners hear of: the workflows whose runs became claimable (or
/// claimable sooner), and the runs it changed.
#[derive(Debug, Default)]
pub(crate) struct Notes {
    pub(crate) workflows: Vec<String>,
    pub(crate) runs: Vec<RunId>,
}

impl Notes {
    /// Notes that a run of `workflow` became ready.
    pub(crate) fn ready(&mut self, workflow: &str) {
        if !self.workflows.iter().any(|known| known == workflow) {
            self.workflows.push(workflow.to_owned());
        }
    }

    /// Notes that run `id` changed (see `Store::watch_changes`).
    pub(crate) fn changed(&mut self, id: RunId) {
        self.runs.push(id);
    }

    /// Adds what `other` noted.
    pub(crate) fn extend(&mut self, other: Notes) {
        for workflow in other.workflows {
            self.ready(&workflow);
        }
        self.runs.extend(other.runs);
    }
}

/// A write, mirroring one `Store` method.
pub(crate) enum Op {
    CreateRun(PreparedRun),
    ClaimRun {
        id: RunId,
        lease: Lease,
        now_ms: i64,
    },
    ClaimReady {
        workflows: Vec<String>,
        lease: Lease,
        now_ms: i64,
        limit: usize,
    },
    RenewLease {
        id: RunId,
        lease: Lease,
    },
    ReleaseLease {
        id: RunId,
        worker: WorkerId,
        ready_at_ms: i64,
    },
    Append {
        id: RunId,
        worker: WorkerId,
        events: Vec<PreparedEvent>,
        now_ms: i64,
    },
    CancelRun {
        id: RunId,
        canceled: PreparedEvent,
        now_ms: i64,
    },
    RetryRun {
        id: RunId,
        retried: PreparedEvent,
        now_ms: i64,
    },
    ParkRun {
        id: RunId,
        worker: WorkerId,
        park: Park,
        now_ms: i64,
    },
    ResumeHook {
        token: String,
        payload: serde_json::Value,
        now_ms: i64,
    },
    TimeOutHook {
        token: String,
        worker: WorkerId,
        timed_out: PreparedEvent,
        now_ms: i64,
    },
    /// `Store::put_schedule`.
    PutSchedule(Box<ScheduleRecord>),
    /// `Store::set_schedule_paused`.
    SetSchedulePaused {
        id: String,
        paused: bool,
        next_fire_at_ms: i64,
        now_ms: i64,
    },
    /// `Store::fire_schedule`.
    FireSchedule(Box<PreparedFire>),
    /// `Store::declare_poll_source`.
    DeclarePollSource(Box<PollSourceRecord>),
    /// `Store::claim_poll_source`.
    ClaimPollSource {
        name: String,
        lease: Lease,
        now_ms: i64,
    },
    /// `Store::control_poll_source`.
    ControlPollSource {
        name: String,
        control: PollControl,
        now_ms: i64,
    },
    /// `Store::commit_poll`.
    CommitPoll(Box<PreparedCommit>),
    /// Writes nothing; answered once every command queued before it has committed.
    Flush,
}

macro_rules! outputs {
    ($($variant:ident($ty:ty)),+ $(,)?) => {
        /// What a command returns, one variant per result type.
        pub(crate) enum Output {
            $($variant($ty)),+
        }

        /// A result type that an [`Output`] may carry.
        pub(crate) trait FromOutput: Sized {
            fn from_output(output: Output) -> Option<Self>;
        }

        $(
            impl From<$ty> for Output {
                fn from(value: $ty) -> Output {
                    Output::$variant(value)
                }
            }

            impl FromOutput for $ty {
                fn from_output(output: Output) -> Option<Self> {
                    match output {
                        Output::$variant(value) => Some(value),
                        #[allow(unreachable_patterns)]
                        _ => None,
                    }
                }
            }
        )+
    };
}

outputs! {
    Created(CreateOutcome),
    Claim(ClaimOutcome),
    Claimed(Vec<ClaimedRun>),
    Done(()),
    Status(RunStatus),
    Flag(bool),
    Hook(HookRecord),
    Schedule(ScheduleRecord),
    Put((SchedulePut, ScheduleRecord)),
    Fired(FireOutcome),
    PollSource(PollSourceRecord),
    PollClaimed(Option<PollClaim>),
    PollCommitted(PollCommitOutcome),
}

impl Op {
    pub(crate) fn is_flush(&self) -> bool {
        matches!(self, Op::Flush)
    }

    /// Runs the operation inside the open transaction, or (one statement, see `alone`) in
    /// autocommit announcing itself with `alone`.
    pub(crate) async fn run(
        &self,
        conn: &mut PgConnection,
        notes: &mut Notes,
        alone: Option<&Announce<'_>>,
    ) -> Result<Output> {
        if let Some(step) = StepAppend::of(self) {
            return match append_steps(conn, &[step], notes, alone).await?.remove(0) {
                Appended::Done(outcome) => Ok(outcome?.into()),
                Appended::Deferred => Err(StoreError::Corrupt(
                    "a step append without an end was deferred (a bug)".into(),
                )
                .into()),
            };
        }
        Ok(match self {
            Op::CreateRun(run) => ops::create_run(conn, run, notes, alone).await?.into(),
            Op::ClaimRun { id, lease, now_ms } => ops::claim_run(conn, *id, lease, *now_ms, notes)
                .await?
                .into(),
            Op::ClaimReady {
                workflows,
                lease,
                now_ms,
                limit,
            } => ops::claim_ready(conn, workflows, lease, *now_ms, *limit, notes)
                .await?
                .into(),
            Op::RenewLease { id, lease } => ops::renew_lease(conn, *id, lease).await?.into(),
            Op::ReleaseLease {
                id,
                worker,
                ready_at_ms,
            } => ops::release_lease(conn, *id, worker, *ready_at_ms, notes)
                .await?
                .into(),
            Op::Append {
                id,
                worker,
                events,
                now_ms,
            } => ops::append(conn, *id, worker, events, *now_ms, notes, alone)
                .await?
                .into(),
            Op::CancelRun {
                id,
                canceled,
                now_ms,
            } => ops::cancel_run(conn, *id, canceled, *now_ms, notes)
                .await?
                .into(),
            Op::RetryRun {
                id,
                retried,
                now_ms,
            } => ops::retry_run(conn, *id, retried, *now_ms, notes)
                .await?
                .into(),
            Op::ParkRun {
                id,
                worker,
                park,
                now_ms,
            } => waits::park_run(conn, *id, worker, park, *now_ms, notes)
                .await?
                .into(),
            Op::ResumeHook {
                token,
                payload,
                now_ms,
            } => waits::resume_hook(conn, token, payload, *now_ms, notes)
                .await?
                .into(),
            Op::TimeOutHook {
                token,
                worker,
                timed_out,
                now_ms,
            } => waits::time_out_hook(conn, token, worker, timed_out, *now_ms, notes)
                .await?
                .into(),
            Op::PutSchedule(schedule) => schedules::put(conn, schedule).await?.into(),
            Op::SetSchedulePaused {
                id,
                paused,
                next_fire_at_ms,
                now_ms,
            } => schedules::set_paused(conn, id, *paused, *next_fire_at_ms, *now_ms)
                .await?
                .into(),
            Op::FireSchedule(fire) => schedules::fire(conn, fire, notes).await?.into(),
            Op::DeclarePollSource(source) => polls::declare(conn, source).await?.into(),
            Op::ClaimPollSource {
                name,
                lease,
                now_ms,
            } => polls::claim(conn, name, lease, *now_ms).await?.into(),
            Op::ControlPollSource {
                name,
                control,
                now_ms,
            } => polls::control(conn, name, *control, *now_ms).await?.into(),
            Op::CommitPoll(commit) => polls::commit(conn, commit, notes).await?.into(),
            Op::Flush => ().into(),
        })
    }
}

/// Where a command's result goes.
pub(crate) type Reply = oneshot::Sender<StoreResult<Output>>;

/// A queued write and where its answer goes.
pub(crate) struct Command {
    op: Op,
    reply: Reply,
}

impl Command {
    fn answer(self, result: StoreResult<Output>) {
        // The caller may have stopped waiting (its future was dropped): nothing to do then.
        let _ = self.reply.send(result);
    }
}

/// The queue into the writer task.
pub(crate) struct Writer {
    queue: mpsc::UnboundedSender<Command>,
}

impl Writer {
    /// Starts the task that commits the queue's commands on a connection of its own (at its
    /// first write, one taken out of `pool`, so that a one-shot command that migrated on the
    /// pool's connection and then writes makes one connection; then new ones made with
    /// `connect` whenever one fails), up to `max_batch` at a time, announcing changes as the
    /// store `instance` and handing them to `changes`. It ends once the store (the queue's
    /// sender) is gone and the queue is drained.
    pub(crate) fn spawn(
        connect: PgConnectOptions,
        pool: PgPool,
        schema: String,
        instance: String,
        changes: ChangeHub,
        max_batch: usize,
        timer: CommitTimer,
    ) -> Writer {
        let (queue, mut commands) = mpsc::unbounded_channel::<Command>();
        let max_batch = max_batch.max(1);
        tokio::spawn(async move {
            let batch = Batch {
                connect: &connect,
                schema: &schema,
                instance: &instance,
                changes: &changes,
                timer: &timer,
            };
            let mut link = Link::default();
            let mut adopt = Some(pool);
            let mut queued = Vec::with_capacity(max_batch);
            while commands.recv_many(&mut queued, max_batch).await > 0 {
                let commands: Vec<Command> = std::mem::take(&mut queued);
                if commands.iter().any(|command| !command.op.is_flush())
                    && let Some(pool) = adopt.take()
                {
                    link = Link::pinged(pool.acquire().await.ok().map(PoolConnection::detach));
                }
                let ops: Vec<&Op> = commands.iter().map(|command| &command.op).collect();
                let outcome = batch.run(&mut link, &ops).await;
                match outcome {
                    Ok(results) => {
                        for (command, result) in commands.into_iter().zip(results) {
                            command.answer(result);
                        }
                    }
                    Err(failed) => {
                        for command in commands {
                            command.answer(Err(failed.error()));
                        }
                    }
                }
            }
        });
        Writer { queue }
    }

    /// Queues `op` and waits for its result, after its batch committed.
    pub(crate) async fn call<T: FromOutput>(&self, op: Op) -> StoreResult<T> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Command { op, reply })
            .map_err(|_| stopped())?;
        let output = answer.await.map_err(|_| stopped())??;
        T::from_output(output).ok_or_else(|| {
            StoreError::Corrupt("the PostgreSQL writer answered with the wrong type (a bug)".into())
        })
    }
}

fn stopped() -> StoreError {
    StoreError::Unavailable(
        "the PostgreSQL write task has stopped (its tokio runtime shut down); reconnect the store"
            .into(),
    )
}

#[cfg(test)]
#[path = "writer_tests.rs"]
pub(crate) mod tests;
