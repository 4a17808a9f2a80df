//! Where a step call finds its run: the task-local scope a workflow body (or an action) runs
//! in, and the per-execution [`RunContext`] that records events and carries abort signals.

use std::sync::{Arc, Mutex, PoisonError};

use cairn_core::{ErrorInfo, Event, Journal, StepKey};
use cairn_store::{RunId, StoreError};
use tokio_util::sync::CancellationToken;

use crate::{engine::Shared, error::StepError};

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
}

impl RunContext {
    pub(crate) fn new(
        run_id: RunId,
        workflow: String,
        shared: Arc<Shared>,
        journal: Journal,
    ) -> Self {
        RunContext {
            run_id,
            workflow,
            shared,
            journal: Mutex::new(journal),
            cancel: CancellationToken::new(),
            abort: CancellationToken::new(),
            abort_reason: Mutex::new(None),
        }
    }

    /// Locks the journal (never held across an await).
    pub(crate) fn journal(&self) -> std::sync::MutexGuard<'_, Journal> {
        self.journal.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stops the execution; the first reason given wins.
    pub(crate) fn abort(&self, reason: Abort) {
        let mut slot = self
            .abort_reason
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if slot.is_none() {
            *slot = Some(reason);
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

    /// Whether the step about to start should not (the engine is stopping).
    pub(crate) fn should_stop(&self) -> bool {
        self.shared.stopping.is_cancelled()
    }

    /// Appends `event` durably (fenced by the lease), retrying transient store errors.
    pub(crate) async fn record(&self, event: Event) -> Result<(), StoreError> {
        let mut delay_ms = 20;
        loop {
            let now = self.shared.clock.now_ms();
            let result = self
                .shared
                .store
                .append(self.run_id, &self.shared.worker, vec![event.clone()], now)
                .await;
            match result {
                Ok(()) => {
                    self.journal().apply(&event);
                    self.shared.publish(self.run_id, now, event);
                    return Ok(());
                }
                Err(err) if err.is_transient() && delay_ms <= 2_000 => {
                    tracing::warn!(run = %self.run_id, error = %err, "store unavailable; retrying the append");
                    tokio::time::sleep(std::time::Duration::from_millis(delay_ms)).await;
                    delay_ms *= 4;
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// Like [`record`](Self::record), but a failure aborts the execution.
    pub(crate) async fn append(&self, event: Event) -> Result<(), Halted> {
        match self.record(event).await {
            Ok(()) => Ok(()),
            Err(err) => {
                self.abort(abort_for(err));
                Err(Halted)
            }
        }
    }

    /// Appends without waiting for the commit (events replay does not depend on).
    pub(crate) fn append_in_background(&self, event: Event) {
        let now = self.shared.clock.now_ms();
        self.journal().apply(&event);
        self.shared.store.append_in_background(
            self.run_id,
            &self.shared.worker,
            vec![event.clone()],
            now,
        );
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
