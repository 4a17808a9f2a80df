//! Layer 2, the run: one execution of one run ([`RunContext`]), how it stops, and how what it
//! records reaches the store (`writes`), over a narrow environment (`env`). Uses layer 1 only.

pub(crate) mod action_ctx;
pub(crate) mod body;
pub(crate) mod ended;
pub(crate) mod env;
mod lease;
pub(crate) mod scope;
pub(crate) mod writes;

use std::sync::{
    Arc, Mutex, PoisonError,
    atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering},
};

use cairn_core::{ErrorInfo, Journal, Owner, RunStatus};
use cairn_store::{NewRun, RunId, RunRecord, StoreError, WorkerId};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::run::{env::RunEnv, writes::Unwritten};

/// Why an execution stops before its body finished.
#[derive(Clone, Debug)]
pub(crate) enum Stop {
    /// Fail the run with this error (non-determinism, a misuse the body cannot catch).
    Fail(ErrorInfo),
    /// Another worker took the run over.
    LeaseLost,
    /// The run ended elsewhere (canceled).
    Ended,
    /// The engine is shutting down: give the run back to the queue.
    Shutdown,
    /// The store kept failing: give the run back and let a later execution go on.
    StoreFailing(String),
    /// Every path of the body waits: suspend the run (park it, holding nothing) until
    /// `wake_at_ms`, a hook's resume, or the end of a child run.
    Suspend {
        /// `Sleeping` or `Waiting`.
        status: RunStatus,
        /// When to wake it (unix ms), or `cairn_store::NEVER`.
        wake_at_ms: i64,
        /// A child run it waits for: if that run has ended by the time the run is parked,
        /// the run is made ready instead.
        child: Option<RunId>,
    },
}

impl Stop {
    /// What a failed write means for the execution.
    pub(crate) fn of(err: StoreError) -> Stop {
        match err {
            StoreError::LeaseLost { .. } => Stop::LeaseLost,
            StoreError::RunEnded { .. } => Stop::Ended,
            other => Stop::StoreFailing(other.to_string()),
        }
    }

    /// Whether the execution is merely suspending (its waits may still record when they
    /// wake), as opposed to ending for good.
    pub(crate) fn is_suspend(&self) -> bool {
        matches!(self, Stop::Suspend { .. })
    }
}

/// Returned by operations after which the step must not go on (the execution is stopping).
#[derive(Debug)]
pub(crate) struct Halted;

/// One execution of one run: its journal, its signals, and the way to its store.
pub(crate) struct RunContext {
    pub(crate) run_id: RunId,
    pub(crate) workflow: String,
    /// What started the run, as stored (see `base::trigger`).
    pub(crate) trigger: String,
    /// On whose behalf the run executes: its steps' credentials are looked up for it.
    pub(crate) owner: Owner,
    pub(crate) env: Arc<RunEnv>,
    journal: Mutex<Journal>,
    /// Fired when the run is canceled: actions in flight see it through `ActionCtx`.
    pub(crate) cancel: CancellationToken,
    stop: CancellationToken,
    stop_reason: Mutex<Option<Stop>>,
    /// Steps of this execution doing work now (actions, child runs): a wait suspends the run
    /// only when there are none.
    in_flight: AtomicUsize,
    /// Notified whenever `in_flight` drops to zero.
    idle: Notify,
    /// The `seq` of the last event of the run's log this execution knows is committed.
    written_seq: AtomicU64,
    /// What was recorded but not written yet (see `writes`).
    pub(crate) unwritten: Mutex<Unwritten>,
    /// Held while writing, so writes reach the store in the order they were recorded.
    pub(crate) write_lock: tokio::sync::Mutex<()>,
    /// When the run was created by this execution's first write (`i64::MIN`: it was not).
    created_at_ms: AtomicI64,
    /// When the lease this execution last wrote (creating the run or renewing its lease)
    /// lapses: the run's `ready_at_ms` in the store (`i64::MIN`: as claimed).
    leased_until_ms: AtomicI64,
    /// Until when the store has confirmed this execution's lease (the claim, the creation
    /// or the last renewal it answered): an action's attempt starts only before then
    /// (see `heartbeat::hold_lease`).
    lease_confirmed_until_ms: AtomicI64,
    /// Whether the engine's heartbeat renews the run's lease: while the body runs.
    renewing: AtomicBool,
    /// Whether this execution has begun a step that works (see
    /// `EngineConfig::replay_every_step`).
    began_work: AtomicBool,
    /// Whether the run was executed before this execution (it was parked, retried, handed
    /// back, or its worker died): an attempt it left in flight may have been cut off.
    pub(crate) executed_before: bool,
    /// The name this execution's lease is held under (its claim's, see `RunEnv::lease`):
    /// every fenced write and renewal of the execution is made under it.
    pub(crate) lease_holder: WorkerId,
}

impl RunContext {
    /// An execution of `run` (as claimed). It was executed before when this is not its
    /// first claim.
    pub(crate) fn new(
        run: &cairn_store::RunRecord,
        env: Arc<RunEnv>,
        journal: Journal,
        written_seq: u64,
        create: Option<NewRun>,
    ) -> Self {
        RunContext {
            run_id: run.run_id,
            workflow: run.workflow.clone(),
            trigger: run.trigger.clone(),
            owner: run.owner.clone(),
            env: env.clone(),
            journal: Mutex::new(journal),
            cancel: CancellationToken::new(),
            stop: CancellationToken::new(),
            stop_reason: Mutex::new(None),
            in_flight: AtomicUsize::new(0),
            idle: Notify::new(),
            written_seq: AtomicU64::new(written_seq),
            unwritten: Mutex::new(Unwritten::new(create)),
            write_lock: tokio::sync::Mutex::new(()),
            created_at_ms: AtomicI64::new(i64::MIN),
            leased_until_ms: AtomicI64::new(i64::MIN),
            lease_confirmed_until_ms: AtomicI64::new(run.lease_expires_at_ms.unwrap_or(i64::MIN)),
            renewing: AtomicBool::new(true),
            began_work: AtomicBool::new(false),
            executed_before: run.executions > 1,
            lease_holder: run
                .lease_owner
                .clone()
                .unwrap_or_else(|| env.worker.clone()),
        }
    }

    /// Notes that this execution begins a step that works; whether it had begun one before.
    pub(crate) fn begins_work(&self) -> bool {
        self.began_work.swap(true, Ordering::SeqCst)
    }

    /// Whether the engine's heartbeat renews this run's lease.
    pub(crate) fn renews_lease(&self) -> bool {
        self.renewing.load(Ordering::SeqCst)
    }

    /// Stops the heartbeat renewing this run's lease: the body is done (its end, parking or
    /// release is written under the lease it holds), or the execution is over.
    pub(crate) fn stop_renewing(&self) {
        self.renewing.store(false, Ordering::SeqCst);
    }

    /// The `seq` of the last event this execution knows is committed.
    pub(crate) fn written_seq(&self) -> u64 {
        self.written_seq.load(Ordering::SeqCst)
    }

    /// Notes that `count` more events were committed after [`written_seq`](Self::written_seq)
    /// and returns the `seq` of the first of them.
    pub(crate) fn committed(&self, count: u64) -> u64 {
        self.written_seq.fetch_add(count, Ordering::SeqCst) + 1
    }

    /// Notes that this execution's first write created the run, at `at_ms`, under a lease
    /// lapsing at `leased_until_ms`.
    pub(crate) fn created_at(&self, at_ms: i64, leased_until_ms: i64) {
        self.created_at_ms.store(at_ms, Ordering::SeqCst);
        self.leased_at(leased_until_ms);
        self.lease_confirmed(leased_until_ms);
    }

    /// Notes that the store took a lease for this execution lapsing at `until_ms`.
    pub(crate) fn lease_confirmed(&self, until_ms: i64) {
        self.lease_confirmed_until_ms
            .fetch_max(until_ms, Ordering::SeqCst);
    }

    /// Until when the store has confirmed this execution's lease.
    pub(crate) fn lease_confirmed_until(&self) -> i64 {
        self.lease_confirmed_until_ms.load(Ordering::SeqCst)
    }

    /// Notes that the run's lease, as last written (or being written), lapses at `until_ms`.
    pub(crate) fn leased_at(&self, until_ms: i64) {
        self.leased_until_ms.store(until_ms, Ordering::SeqCst);
    }

    /// The run's record as this execution last wrote it: `claimed`, with the creation time
    /// and lease expiry (`ready_at_ms`) this execution wrote since.
    pub(crate) fn as_written(&self, mut claimed: RunRecord) -> RunRecord {
        let created_at = self.created_at_ms.load(Ordering::SeqCst);
        if created_at != i64::MIN {
            claimed.created_at_ms = created_at;
        }
        let leased_until = self.leased_until_ms.load(Ordering::SeqCst);
        if leased_until != i64::MIN {
            claimed.ready_at_ms = leased_until;
            claimed.lease_expires_at_ms = Some(leased_until);
        }
        claimed
    }

    /// Marks a step as doing work until the guard drops.
    pub(crate) fn busy(self: &Arc<Self>) -> Busy {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        Busy(self.clone())
    }

    /// Whether a step of this execution is doing work.
    pub(crate) fn is_busy(&self) -> bool {
        self.in_flight.load(Ordering::SeqCst) > 0
    }

    /// Completes when no step is doing work (immediately if none is).
    pub(crate) async fn until_idle(&self) {
        loop {
            let notified = self.idle.notified();
            if !self.is_busy() {
                return;
            }
            notified.await;
        }
    }

    /// Locks the journal (never held across an await).
    pub(crate) fn journal(&self) -> std::sync::MutexGuard<'_, Journal> {
        self.journal.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stops the execution; the first reason given wins, except that suspensions combine
    /// (the run wakes at the earliest of them) and any other reason overrides a suspension.
    pub(crate) fn stop(&self, reason: Stop) {
        let mut slot = self
            .stop_reason
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match (&mut *slot, reason) {
            (None, reason) => *slot = Some(reason),
            (
                Some(Stop::Suspend {
                    status,
                    wake_at_ms,
                    child,
                }),
                Stop::Suspend {
                    status: other_status,
                    wake_at_ms: other_wake,
                    child: other_child,
                },
            ) => {
                if other_wake < *wake_at_ms {
                    (*status, *wake_at_ms) = (other_status, other_wake);
                }
                *child = child.or(other_child);
            }
            (Some(Stop::Suspend { .. }), reason) => *slot = Some(reason),
            (Some(_), _) => {}
        }
        self.stop.cancel();
    }

    /// The reason the execution is stopping, if it is.
    pub(crate) fn stopping(&self) -> Option<Stop> {
        if !self.stop.is_cancelled() {
            return None;
        }
        self.stop_reason
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Whether the execution is stopping for good (not merely suspending): nothing more is
    /// recorded then.
    pub(crate) fn is_ending(&self) -> bool {
        self.stopping().is_some_and(|stop| !stop.is_suspend())
    }

    /// Completes with the reason once the execution is stopping.
    pub(crate) async fn stopped(&self) -> Stop {
        self.stop.cancelled().await;
        self.stopping().unwrap_or(Stop::Ended)
    }

    /// Stops the execution after a failed write (see [`Stop::of`]).
    pub(crate) fn stop_for(&self, err: StoreError) {
        self.note_taken_away(&err);
        self.stop(Stop::of(err));
    }

    /// Says why the execution stops when `err` means the run was taken from it (another worker
    /// holds its lease, or it ended elsewhere), once per execution: a zombie worker must say
    /// what happened to its runs, whichever write or renewal found out first.
    pub(crate) fn note_taken_away(&self, err: &StoreError) {
        if self.stopping().is_some() {
            return;
        }
        match err {
            StoreError::LeaseLost { .. } => tracing::warn!(
                run = %self.run_id,
                "lease lost to another worker; stopping this execution"
            ),
            StoreError::RunEnded { status, .. } => tracing::info!(
                run = %self.run_id,
                %status,
                "run ended elsewhere; stopping this execution"
            ),
            _ => {}
        }
    }
}

/// Counts a step as doing work while alive.
pub(crate) struct Busy(Arc<RunContext>);

impl Drop for Busy {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}
