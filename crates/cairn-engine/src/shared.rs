//! What every execution in one process shares, and how a run is driven to its end: claimed
//! (or taken from memory when this process created it), executed, waited on while another
//! worker holds it or while it is parked.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
};

use cairn_core::{ErrorInfo, Event, RunStatus, StepKey};
use cairn_store::{
    ClaimOutcome, ClaimedRun, CreateOutcome, Lease, NewRun, RunId, RunRecord, Store, WorkerId,
    rules,
};
use serde_json::Value;
use tokio::sync::{Notify, broadcast};
use tokio_util::sync::CancellationToken;

use crate::{
    clock::Clock,
    context::{Abort, RunContext},
    engine::{ActionOverride, EngineConfig, RunEvent},
    error::EngineError,
    executor::{ExecEnd, execute},
    heartbeat::Heartbeats,
    registry::Registry,
    workflow::ErasedWorkflow,
};

/// What `drive` does next.
enum Step {
    /// The run ended (or the engine is stopping): return it.
    Done(RunRecord),
    /// Execute it here.
    Execute(ClaimedRun),
    /// Wait until this time (unix ms), a wake-up, or the poll interval.
    Wait(i64),
}

/// What every execution in this process shares.
pub(crate) struct Shared {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) registry: Registry,
    pub(crate) config: EngineConfig,
    pub(crate) worker: WorkerId,
    pub(crate) overrides: HashMap<String, ActionOverride>,
    pub(crate) stopping: CancellationToken,
    pub(crate) new_work: Notify,
    pub(crate) events: broadcast::Sender<RunEvent>,
    pub(crate) running: Mutex<HashMap<RunId, Arc<RunContext>>>,
    /// Claims of runs this process created under its lease, not executed yet.
    pub(crate) fresh: Mutex<HashMap<RunId, ClaimedRun>>,
    /// The loop renewing the leases of the runs in `running`.
    pub(crate) heartbeats: Heartbeats,
}

/// Most fresh claims kept in memory (runs started with `execute_here` but not executed yet);
/// beyond it a run is read back from the store when executed.
const MAX_FRESH_CLAIMS: usize = 10_000;

impl Shared {
    /// Tells subscribers (if any: the event is copied only then) that `event` was recorded.
    pub(crate) fn publish(&self, run_id: RunId, at_ms: i64, event: &Event) {
        if self.events.receiver_count() > 0 {
            let _ = self.events.send(RunEvent {
                run_id,
                at_ms,
                event: event.clone(),
            });
        }
    }

    pub(crate) fn lease(&self) -> Lease {
        let ttl = i64::try_from(self.config.lease_ttl.as_millis()).unwrap_or(i64::MAX / 4);
        Lease {
            worker: self.worker.clone(),
            expires_at_ms: self.clock.now_ms() + ttl,
        }
    }

    pub(crate) fn track(&self, run: &Arc<RunContext>) {
        self.running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(run.run_id, run.clone());
    }

    /// Forgets `run`'s execution, unless a later execution of the same run took its place.
    pub(crate) fn untrack(&self, run: &Arc<RunContext>) {
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        if running
            .get(&run.run_id)
            .is_some_and(|tracked| Arc::ptr_eq(tracked, run))
        {
            running.remove(&run.run_id);
        }
    }

    pub(crate) fn remember_fresh(&self, claim: ClaimedRun) {
        let mut fresh = self.fresh.lock().unwrap_or_else(PoisonError::into_inner);
        if fresh.len() < MAX_FRESH_CLAIMS {
            fresh.insert(claim.run.run_id, claim);
        }
    }

    fn take_fresh(&self, run_id: RunId) -> Option<ClaimedRun> {
        self.fresh
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&run_id)
    }

    pub(crate) fn executing(&self, run_id: RunId) -> Option<Arc<RunContext>> {
        self.running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&run_id)
            .cloned()
    }

    /// Executes `run_id` in this process until it ends (or waits while another worker does),
    /// then returns the run as stored. Returns early, unended, when the engine stops.
    pub(crate) async fn drive(
        self: Arc<Self>,
        run_id: RunId,
        workflow: Option<Arc<dyn ErasedWorkflow>>,
    ) -> Result<RunRecord, EngineError> {
        // A run this process just created is executed from memory, without reading it back.
        let fresh = self.take_fresh(run_id).map(|claim| (claim, None));
        self.drive_from(run_id, workflow, fresh).await
    }

    /// Like [`drive`](Self::drive) for a run not in the store yet: `new` (leased to this
    /// worker) is created by the execution's first write, with its first events.
    pub(crate) async fn drive_new(self: Arc<Self>, new: NewRun) -> Result<RunRecord, EngineError> {
        let run_id = new.id;
        let claim = rules::created_claim(&new).ok_or_else(|| {
            EngineError::BadRequest("a run created by its first write must be leased".into())
        })?;
        self.drive_from(run_id, None, Some((claim, Some(new))))
            .await
    }

    async fn drive_from(
        self: Arc<Self>,
        run_id: RunId,
        workflow: Option<Arc<dyn ErasedWorkflow>>,
        mut fresh: Option<(ClaimedRun, Option<NewRun>)>,
    ) -> Result<RunRecord, EngineError> {
        loop {
            let (claimed, create, wake) = match fresh.take() {
                Some((claimed, create)) => (Some(claimed), create, i64::MAX),
                None => match self.claim_for_drive(run_id).await? {
                    Step::Done(run) => return Ok(run),
                    Step::Execute(claimed) => (Some(claimed), None, i64::MAX),
                    Step::Wait(wake) => (None, None, wake),
                },
            };
            let Some(claimed) = claimed else {
                // Parked runs wake at their time (or sooner, on a resume); others are looked
                // at again after the poll interval.
                tokio::select! {
                    () = self.clock.sleep_until(wake) => {}
                    () = tokio::time::sleep(self.config.poll_interval) => {}
                    () = self.new_work.notified() => {}
                    () = self.stopping.cancelled() => {}
                }
                continue;
            };
            match execute(self.clone(), claimed, workflow.clone(), create).await {
                ExecEnd::NotExecutable(workflow) => {
                    return Err(EngineError::NotExecutable {
                        run: run_id,
                        workflow,
                    });
                }
                ExecEnd::Parked if self.config.return_when_parked => {
                    let run = self.store.get_run(run_id).await?;
                    return run.ok_or(EngineError::RunNotFound(run_id));
                }
                ExecEnd::Ended(Some(run)) => return Ok(*run),
                ExecEnd::Ended(None) | ExecEnd::Released | ExecEnd::Lost | ExecEnd::Parked => {}
            }
        }
    }

    /// What `drive` does next with a run, as the store has it.
    async fn claim_for_drive(&self, run_id: RunId) -> Result<Step, EngineError> {
        let run = self
            .store
            .get_run(run_id)
            .await?
            .ok_or(EngineError::RunNotFound(run_id))?;
        if run.status.is_terminal() || self.stopping.is_cancelled() {
            return Ok(Step::Done(run));
        }
        let now = self.clock.now_ms();
        let parked = !self.config.return_when_parked
            && matches!(run.status, RunStatus::Sleeping | RunStatus::Waiting)
            && run.lease_owner.is_none()
            && run.ready_at_ms > now;
        if parked {
            return Ok(Step::Wait(run.ready_at_ms));
        }
        if self.executing(run_id).is_some() {
            return Ok(Step::Wait(i64::MAX));
        }
        if run.lease_owner.as_ref() == Some(&self.worker) {
            let events = self.store.events(run_id).await?;
            return Ok(Step::Execute(ClaimedRun { run, events }));
        }
        match self.store.claim_run(run_id, &self.lease(), now).await? {
            ClaimOutcome::Claimed(claimed) => Ok(Step::Execute(*claimed)),
            ClaimOutcome::Held { .. } | ClaimOutcome::Ended(_) => Ok(Step::Wait(i64::MAX)),
            ClaimOutcome::NotFound => Err(EngineError::RunNotFound(run_id)),
        }
    }

    /// Runs a child workflow for step `key` of `parent` and returns its output or error.
    pub(crate) async fn run_child(
        self: Arc<Self>,
        parent: &RunContext,
        key: &StepKey,
        workflow: Arc<dyn ErasedWorkflow>,
        input: Value,
    ) -> Result<Result<Value, ErrorInfo>, Abort> {
        let new = NewRun {
            id: RunId::new(),
            workflow: workflow.info().slug.clone(),
            input,
            idempotency_key: Some(format!("{}:{key}", parent.run_id)),
            parent_run_id: Some(parent.run_id),
            forked_from: None,
            trigger: "child".to_owned(),
            history: Vec::new(),
            lease: Some(self.lease()),
            now_ms: self.clock.now_ms(),
        };
        let claim = rules::created_claim(&new);
        let CreateOutcome { run_id, created } = self
            .store
            .create_run(new)
            .await
            .map_err(crate::context::abort_for)?;
        if let Some(claim) = claim.filter(|_| created) {
            self.remember_fresh(claim);
        }
        let record = Box::pin(self.clone().drive(run_id, Some(workflow)))
            .await
            .map_err(|err| Abort::Store(err.to_string()))?;
        match record.status {
            RunStatus::Succeeded => Ok(Ok(record.output.unwrap_or(Value::Null))),
            RunStatus::Sleeping | RunStatus::Waiting if self.config.return_when_parked => {
                // The child parked (harness mode): park the parent until the child is due.
                Err(Abort::Park {
                    status: RunStatus::Waiting,
                    wake_at_ms: record.ready_at_ms,
                })
            }
            RunStatus::Failed | RunStatus::Canceled => Ok(Err(record.error.unwrap_or_else(|| {
                ErrorInfo::new(
                    cairn_core::ErrorKind::ChildFailed,
                    format!("child run {run_id} ended {}", record.status),
                )
            }))),
            _ => Err(Abort::Shutdown),
        }
    }
}
