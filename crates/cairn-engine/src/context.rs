//! Where a step call finds its run: the task-local scope a workflow body (or an action) runs
//! in, and the per-execution [`RunContext`] that records events and carries abort signals.

use std::sync::{
    Arc, Mutex, PoisonError,
    atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering},
};

use cairn_core::{ErrorInfo, Event, Journal, RunStatus, StepKey};
use cairn_store::{NewRun, RunId, RunRecord, StoreError};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::{error::StepError, shared::Shared, writes::Unwritten};

/// How the message of a step that replay-only mode refused ends.
pub const UNRECORDED: &str = "which the recorded history does not have";

tokio::task_local! {
    static SCOPE: Scope;
}

/// What the current task is executing.
#[derive(Clone)]
pub(crate) enum Scope {
    /// A workflow body: step calls are recorded in this run.
    Workflow(Arc<RunContext>),
    /// An action's `run`: step calls are refused.
    Action {
        /// The action's slug.
        slug: String,
        /// The step executing it.
        key: StepKey,
    },
}

impl Scope {
    /// Runs `future` inside this scope.
    pub(crate) async fn enter<F: Future>(self, future: F) -> F::Output {
        SCOPE.scope(self, future).await
    }
}

/// The run a step call of `slug` belongs to, or why it cannot be made here.
pub(crate) fn current_run(slug: &str) -> Result<Arc<RunContext>, StepError> {
    match SCOPE.try_with(Scope::clone) {
        Ok(Scope::Workflow(run)) => Ok(run),
        Ok(Scope::Action { slug: caller, key }) => Err(StepError::misuse(format!(
            "`{slug}` was called from inside action `{caller}` (step {key}); an action cannot call another action or workflow: call both from the workflow, one after the other"
        ))),
        Err(_) => Err(StepError::misuse(format!(
            "`{slug}`.run() was called outside a workflow; call it from a workflow's body, or start a run with Engine::start"
        ))),
    }
}

/// Why an execution must stop before its body finished.
#[derive(Clone, Debug)]
pub(crate) enum Abort {
    /// Fail the run with this error (non-determinism, a misuse the body cannot catch).
    Fail(ErrorInfo),
    /// Another worker took the run over.
    LeaseLost,
    /// The run ended elsewhere (canceled).
    Ended,
    /// The engine is shutting down: give the run back to the queue.
    Shutdown,
    /// The store kept failing: give the run back and let a later execution go on.
    Store(String),
    /// Every path is waiting: park the run (no memory held) until `wake_at_ms` or a resume.
    Park {
        /// `Sleeping` or `Waiting`.
        status: RunStatus,
        /// When to wake it (unix ms), or `cairn_store::NEVER`.
        wake_at_ms: i64,
    },
}

/// Returned by operations after which the step must not go on (the run is being aborted).
#[derive(Debug)]
pub(crate) struct Halted;

/// One execution of one run: its journal, its signals, and the way to its store.
pub(crate) struct RunContext {
    pub(crate) run_id: RunId,
    pub(crate) workflow: String,
    pub(crate) shared: Arc<Shared>,
    pub(crate) journal: Mutex<Journal>,
    /// Fired when the run is canceled: actions in flight see it through `ActionCtx`.
    pub(crate) cancel: CancellationToken,
    abort: CancellationToken,
    abort_reason: Mutex<Option<Abort>>,
    /// Steps of this execution doing work now (actions, child runs): a wait parks the run
    /// only when there are none.
    in_flight: AtomicUsize,
    /// Notified whenever `in_flight` drops to zero.
    idle: Notify,
    /// The `seq` of the last event this execution knows of in the run's log.
    known_seq: AtomicU64,
    /// What was recorded but not written yet (see `writes`).
    pub(crate) unwritten: Mutex<Unwritten>,
    /// Held while writing, so writes reach the store in the order they were recorded.
    pub(crate) write_lock: tokio::sync::Mutex<()>,
    /// When the run was created by this execution's first write (`i64::MIN`: it was not).
    created_at_ms: AtomicI64,
    /// When the lease this execution last wrote (creating the run or renewing its lease)
    /// lapses: the run's `ready_at_ms` in the store (`i64::MIN`: as claimed).
    leased_until_ms: AtomicI64,
    /// Whether the engine's heartbeat renews the run's lease: while the body runs (see
    /// `heartbeat`).
    renewing: AtomicBool,
}

impl RunContext {
    pub(crate) fn new(
        run_id: RunId,
        workflow: String,
        shared: Arc<Shared>,
        journal: Journal,
        known_seq: u64,
        create: Option<NewRun>,
    ) -> Self {
        RunContext {
            run_id,
            workflow,
            shared,
            journal: Mutex::new(journal),
            cancel: CancellationToken::new(),
            abort: CancellationToken::new(),
            abort_reason: Mutex::new(None),
            in_flight: AtomicUsize::new(0),
            idle: Notify::new(),
            known_seq: AtomicU64::new(known_seq),
            unwritten: Mutex::new(Unwritten::new(create)),
            write_lock: tokio::sync::Mutex::new(()),
            created_at_ms: AtomicI64::new(i64::MIN),
            leased_until_ms: AtomicI64::new(i64::MIN),
            renewing: AtomicBool::new(true),
        }
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

    /// The `seq` of the last event this execution knows of.
    pub(crate) fn known_seq(&self) -> u64 {
        self.known_seq.load(Ordering::SeqCst)
    }

    /// Notes that this execution's first write created the run, at `at_ms`, under a lease
    /// lapsing at `leased_until_ms`.
    pub(crate) fn created_at(&self, at_ms: i64, leased_until_ms: i64) {
        self.created_at_ms.store(at_ms, Ordering::SeqCst);
        self.leased_at(leased_until_ms);
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

    /// Stops the execution; the first reason given wins, except that parking waits combine
    /// (the run wakes at the earliest of them).
    pub(crate) fn abort(&self, reason: Abort) {
        let mut slot = self
            .abort_reason
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match (&mut *slot, reason) {
            (None, reason) => *slot = Some(reason),
            (
                Some(Abort::Park { status, wake_at_ms }),
                Abort::Park {
                    status: other_status,
                    wake_at_ms: other_wake,
                },
            ) => {
                if other_wake < *wake_at_ms {
                    (*status, *wake_at_ms) = (other_status, other_wake);
                }
            }
            (Some(Abort::Park { .. }), reason) => *slot = Some(reason),
            (Some(_), _) => {}
        }
        self.abort.cancel();
    }

    /// Completes with the reason once the execution is aborted.
    pub(crate) async fn aborted(&self) -> Abort {
        self.abort.cancelled().await;
        self.abort_reason
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .unwrap_or(Abort::Ended)
    }

    /// In replay-only mode, a step that would execute is not in the history: fail the run.
    /// Returns whether the execution was aborted.
    pub(crate) fn refuse_unrecorded(
        &self,
        key: &StepKey,
        kind: cairn_core::StepKind,
        slug: &str,
    ) -> bool {
        if !self.shared.config.replay_only {
            return false;
        }
        let message = format!(
            "non-determinism at step {key}: the workflow now makes {kind} `{slug}`, {UNRECORDED}"
        );
        self.abort(Abort::Fail(
            ErrorInfo::new(cairn_core::ErrorKind::NonDeterminism, message).at_step(key.clone()),
        ));
        true
    }

    /// Whether the step about to start should not (the engine is stopping).
    pub(crate) fn should_stop(&self) -> bool {
        self.shared.stopping.is_cancelled()
    }

    /// Takes note of an event recorded for this execution (by `defer`, or by another store
    /// operation such as a hook's timeout): the known log length, the progress display.
    ///
    /// Not the journal: this execution records events only for keys it has decided, and a
    /// key is decided once per execution, so the journal would never read them back (a
    /// later execution replays them from the store). Folding them in cloned every step's
    /// key, input and output, a tenth of the engine's allocations per workflow.
    pub(crate) fn note_appended(&self, event: &Event, now: i64) {
        self.known_seq.fetch_add(1, Ordering::SeqCst);
        self.shared.publish(self.run_id, now, event);
    }
}

/// What a failed append means for the execution.
pub(crate) fn abort_for(err: StoreError) -> Abort {
    match err {
        StoreError::LeaseLost { .. } => Abort::LeaseLost,
        StoreError::RunEnded { .. } => Abort::Ended,
        other => Abort::Store(other.to_string()),
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
