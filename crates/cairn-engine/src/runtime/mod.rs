//! Layer 6, the runtime: what every execution in one process shares, how a run is driven to
//! its end (claimed, or taken from memory when this process created it; executed; waited on
//! while another worker holds it or while it is parked), child runs, the executor and the
//! heartbeat. Uses layers 1 to 5.

pub(crate) mod executor;
pub(crate) mod heartbeat;

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex, PoisonError},
};

use async_trait::async_trait;
use cairn_core::{ErrorInfo, ErrorKind, RunStatus, StepKey};
use cairn_store::{ClaimOutcome, ClaimedRun, NewRun, RunId, RunRecord, rules};
use serde_json::Value;
use tokio::sync::Notify;

use crate::{
    base::error::EngineError,
    registry::Registry,
    run::{
        RunContext, Stop,
        body::ErasedWorkflow,
        env::{ChildRuns, ChildState, RunEnv},
    },
    runtime::{
        executor::{ExecEnd, execute},
        heartbeat::Heartbeats,
    },
};

/// What `drive` does next with a run.
enum NextMove {
    /// The run ended (or the engine is stopping): return it.
    Done(RunRecord),
    /// Execute it here.
    Execute(ClaimedRun),
    /// Wait until this time (unix ms), a wake-up, or the poll interval.
    Wait(i64),
}

/// What every execution in this process shares.
pub(crate) struct Runtime {
    pub(crate) env: Arc<RunEnv>,
    pub(crate) registry: Registry,
    /// Woken when this process starts, resumes or retries a run, or parks one.
    pub(crate) new_work: Notify,
    /// The executions of this process, by run.
    running: Mutex<HashMap<RunId, Arc<RunContext>>>,
    /// Claims of runs this process created under its lease, not executed yet.
    fresh: Mutex<HashMap<RunId, ClaimedRun>>,
    /// Runs the worker loop claimed whose executions have not started yet: a parent reaching
    /// such a child must not execute it a second time (found by `cairn-sim`, decision 0044).
    /// Locked after `running`, never before.
    claimed: Mutex<HashSet<RunId>>,
    /// The loop renewing the leases of the runs in `running`.
    pub(crate) heartbeats: Heartbeats,
}

/// Most fresh claims kept in memory (runs started with `execute_here` but not executed yet);
/// beyond it a run is read back from the store when executed.
const MAX_FRESH_CLAIMS: usize = 10_000;

impl Runtime {
    pub(crate) fn new(env: Arc<RunEnv>, registry: Registry) -> Runtime {
        Runtime {
            env,
            registry,
            new_work: Notify::new(),
            running: Mutex::new(HashMap::new()),
            fresh: Mutex::new(HashMap::new()),
            claimed: Mutex::default(),
            heartbeats: Heartbeats::default(),
        }
    }

    pub(crate) fn track(&self, run: &Arc<RunContext>) {
        let mut running = lock(&self.running);
        running.insert(run.run_id, run.clone());
        lock(&self.claimed).remove(&run.run_id);
    }

    /// Notes runs the worker loop claimed, before their executions start.
    pub(crate) fn claimed_here(&self, runs: impl IntoIterator<Item = RunId>) {
        lock(&self.claimed).extend(runs);
    }

    /// Forgets a claimed run whose execution ends before it starts (nothing to execute).
    pub(crate) fn unclaim(&self, run_id: RunId) {
        lock(&self.claimed).remove(&run_id);
    }

    /// Whether this process executes `run_id`, or claimed it to execute it next.
    fn executing_or_claimed(&self, run_id: RunId) -> bool {
        let running = lock(&self.running);
        running.contains_key(&run_id) || lock(&self.claimed).contains(&run_id)
    }

    /// Forgets `run`'s execution, unless a later execution of the same run took its place.
    pub(crate) fn untrack(&self, run: &Arc<RunContext>) {
        let mut running = lock(&self.running);
        if running
            .get(&run.run_id)
            .is_some_and(|tracked| Arc::ptr_eq(tracked, run))
        {
            running.remove(&run.run_id);
        }
    }

    /// The executions whose leases the heartbeat renews.
    pub(crate) fn renewing(&self) -> Vec<Arc<RunContext>> {
        let mut runs: Vec<Arc<RunContext>> = lock(&self.running)
            .values()
            .filter(|run| run.renews_lease())
            .cloned()
            .collect();
        // In run order, not the map's (random) order: one seed, one sequence of renewals.
        runs.sort_unstable_by_key(|run| run.run_id);
        runs
    }

    pub(crate) fn remember_fresh(&self, claim: ClaimedRun) {
        let mut fresh = lock(&self.fresh);
        if fresh.len() < MAX_FRESH_CLAIMS {
            fresh.insert(claim.run.run_id, claim);
        }
    }

    fn take_fresh(&self, run_id: RunId) -> Option<ClaimedRun> {
        lock(&self.fresh).remove(&run_id)
    }

    pub(crate) fn executing(&self, run_id: RunId) -> Option<Arc<RunContext>> {
        lock(&self.running).get(&run_id).cloned()
    }

    /// Executes `run_id` in this process until it ends (or waits while another worker does,
    /// or while it is parked), then returns the run as stored. Returns early, unended, when
    /// the engine stops.
    pub(crate) async fn drive(self: Arc<Self>, run_id: RunId) -> Result<RunRecord, EngineError> {
        // A run this process just created is executed from memory, without reading it back.
        let fresh = self.take_fresh(run_id).map(|claim| (claim, None));
        self.drive_from(run_id, fresh).await
    }

    /// Like [`drive`](Self::drive) for a run not in the store yet: `new` (leased to this
    /// worker) is created by the execution's first write, with its first events.
    pub(crate) async fn drive_new(self: Arc<Self>, new: NewRun) -> Result<RunRecord, EngineError> {
        let run_id = new.id;
        let claim = rules::created_claim(&new).ok_or_else(|| {
            EngineError::BadRequest("a run created by its first write must be leased".into())
        })?;
        self.drive_from(run_id, Some((claim, Some(new)))).await
    }

    /// Executes a run this process created under its lease (`new`: one to be created by its
    /// first write) once: until it ends, parks or is handed back, never longer (the workers
    /// take a parked run from there). The run when it ended, else `None` (also when its claim
    /// is no longer in memory: the workers take it too).
    pub(crate) async fn execute_once(
        self: Arc<Self>,
        run_id: RunId,
        new: Option<NewRun>,
    ) -> Result<Option<RunRecord>, EngineError> {
        let (claimed, create) = match new {
            Some(new) => {
                let claim = rules::created_claim(&new).ok_or_else(|| {
                    EngineError::BadRequest(
                        "a run created by its first write must be leased".into(),
                    )
                })?;
                (claim, Some(new))
            }
            None => match self.take_fresh(run_id) {
                Some(claim) => (claim, None),
                None => return Ok(None),
            },
        };
        match execute(self.clone(), claimed, None, create).await {
            ExecEnd::NotExecutable(workflow) => Err(EngineError::NotExecutable {
                run: run_id,
                workflow,
            }),
            ExecEnd::Ended(Some(run)) => Ok(Some(*run)),
            ExecEnd::Ended(None) | ExecEnd::Released | ExecEnd::Lost | ExecEnd::Parked { .. } => {
                Ok(None)
            }
        }
    }

    async fn drive_from(
        self: Arc<Self>,
        run_id: RunId,
        mut fresh: Option<(ClaimedRun, Option<NewRun>)>,
    ) -> Result<RunRecord, EngineError> {
        let env = self.env.clone();
        loop {
            let (claimed, create) = match fresh.take() {
                Some((claimed, create)) => (claimed, create),
                None => match self.next_move(run_id).await? {
                    NextMove::Done(run) => return Ok(run),
                    NextMove::Execute(claimed) => (claimed, None),
                    NextMove::Wait(wake) => {
                        // Parked runs wake at their time (or sooner, on a resume); others are
                        // looked at again after the poll interval.
                        tokio::select! {
                            biased;
                            () = env.clock.sleep_until(wake) => {}
                            () = env.clock.sleep(env.config.poll_interval) => {}
                            () = self.new_work.notified() => {}
                            () = env.stopping.cancelled() => {}
                        }
                        continue;
                    }
                },
            };
            match execute(self.clone(), claimed, None, create).await {
                ExecEnd::NotExecutable(workflow) => {
                    return Err(EngineError::NotExecutable {
                        run: run_id,
                        workflow,
                    });
                }
                ExecEnd::Ended(Some(run)) => return Ok(*run),
                ExecEnd::Ended(None)
                | ExecEnd::Released
                | ExecEnd::Lost
                | ExecEnd::Parked { .. } => {}
            }
        }
    }

    /// What `drive` does next with a run, as the store has it.
    async fn next_move(&self, run_id: RunId) -> Result<NextMove, EngineError> {
        let env = &self.env;
        let run = env
            .store
            .get_run(run_id)
            .await?
            .ok_or(EngineError::RunNotFound(run_id))?;
        if run.status.is_terminal() || env.stopping.is_cancelled() {
            return Ok(NextMove::Done(run));
        }
        env.read_store_clock().await;
        let now = env.clock.now_ms();
        let parked = matches!(run.status, RunStatus::Sleeping | RunStatus::Waiting)
            && run.lease_owner.is_none()
            && run.ready_at_ms > now;
        if parked {
            return Ok(NextMove::Wait(run.ready_at_ms));
        }
        if self.executing_or_claimed(run_id) {
            return Ok(NextMove::Wait(i64::MAX));
        }
        // A run this worker leased when it created it (or claimed it to execute at once) is
        // executed from the store. Not a worker-loop claim: the loop may hold it without
        // having heard the answer yet (found by `cairn-sim`, decision 0044); the claim below
        // waits for such a lease.
        if run
            .lease_owner
            .as_ref()
            .is_some_and(|holder| env.holds(holder))
        {
            let events = env.store.events(run_id).await?;
            return Ok(NextMove::Execute(ClaimedRun { run, events }));
        }
        match env.store.claim_run(run_id, &env.lease(), now).await? {
            ClaimOutcome::Claimed(claimed) => Ok(NextMove::Execute(*claimed)),
            ClaimOutcome::Held { until_ms, .. } => Ok(NextMove::Wait(until_ms)),
            ClaimOutcome::Ended(_) => Ok(NextMove::Wait(i64::MAX)),
            ClaimOutcome::NotFound => Err(EngineError::RunNotFound(run_id)),
        }
    }
}

#[async_trait]
impl ChildRuns for Runtime {
    async fn run_child(
        self: Arc<Self>,
        parent: &RunContext,
        key: &StepKey,
        workflow: Arc<dyn ErasedWorkflow>,
        input: Value,
    ) -> Result<ChildState, Stop> {
        let env = &self.env;
        let new = NewRun {
            id: env.new_run_id(),
            workflow: workflow.info().slug.clone(),
            input,
            idempotency_key: Some(format!("{}:{key}", parent.run_id)),
            parent_run_id: Some(parent.run_id),
            forked_from: None,
            trigger: "child".to_owned(),
            owner: parent.owner.clone(),
            history: Vec::new(),
            lease: Some(env.lease()),
            now_ms: env.clock.now_ms(),
        };
        let claim = rules::created_claim(&new);
        let outcome = env.store.create_run(new.clone()).await.map_err(Stop::of)?;
        let child = outcome.run_id;
        let fresh = claim.filter(|_| outcome.created);
        if fresh.is_some() {
            env.publish_created(&new, new.now_ms);
        }
        let store_error = |err: EngineError| Stop::StoreFailing(err.to_string());
        let claimed = match fresh.or_else(|| self.take_fresh(child)) {
            Some(claimed) => claimed,
            None => match self.next_move(child).await.map_err(store_error)? {
                NextMove::Done(run) => return Ok(child_state(run)),
                NextMove::Execute(claimed) => claimed,
                NextMove::Wait(ready_at_ms) => {
                    return Ok(ChildState::Waiting {
                        run_id: child,
                        ready_at_ms,
                    });
                }
            },
        };
        match execute(self.clone(), claimed, Some(workflow), None).await {
            ExecEnd::Ended(Some(run)) => Ok(child_state(*run)),
            ExecEnd::Parked { wake_at_ms } => Ok(ChildState::Waiting {
                run_id: child,
                ready_at_ms: wake_at_ms,
            }),
            ExecEnd::Released => Err(Stop::Shutdown),
            ExecEnd::Ended(None) | ExecEnd::Lost | ExecEnd::NotExecutable(_) => {
                let run = env
                    .store
                    .get_run(child)
                    .await
                    .map_err(Stop::of)?
                    .ok_or_else(|| Stop::StoreFailing(format!("child run {child} vanished")))?;
                Ok(child_state(run))
            }
        }
    }
}

/// Where a child run stands, from its record.
fn child_state(run: RunRecord) -> ChildState {
    match run.status {
        RunStatus::Succeeded => ChildState::Ended(Ok(run.output.unwrap_or(Value::Null))),
        RunStatus::Failed | RunStatus::Canceled => {
            let status = run.status;
            ChildState::Ended(Err(run.error.unwrap_or_else(|| {
                ErrorInfo::new(
                    ErrorKind::ChildFailed,
                    format!("child run {} ended {status}", run.run_id),
                )
            })))
        }
        RunStatus::Queued | RunStatus::Running | RunStatus::Sleeping | RunStatus::Waiting => {
            ChildState::Waiting {
                run_id: run.run_id,
                ready_at_ms: run.ready_at_ms,
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
