//! [`TestEnv`]: an engine on an in-memory store and a virtual clock, with mocks. It drives
//! the engine's real loop: runs are executed by [`Engine::execute_ready`], as a worker would,
//! until nothing is ready; mocks run where the action's body would.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use cairn_core::{
    ErrorInfo, ErrorKind, Event, Owner, RunStatus, Scope, StepKey, StepKind, StepStatus,
    StepSummary,
};
use cairn_engine::{
    Action, ActionError, ActionOverride, Clock, Credential, Engine, EngineConfig, EngineError,
    KeySource, MasterKey, Payload, Registry, RunDetail, RunDetailView, Secret, SeededEntropy,
    SetCredential, StartOptions, Workflow,
};
use cairn_store::{ClaimOutcome, Lease, MemoryStore, RunFilter, RunId, RunRecord, Store, WorkerId};
use futures::FutureExt;

use super::clock::TestClock;
use serde::Serialize;
use serde_json::Value;

/// Where the virtual clock starts: 2026-01-01T00:00:00Z.
const START_MS: i64 = 1_767_225_600_000;

/// How a run stands after the harness executed it as far as it could go.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome<O> {
    /// The run succeeded.
    Completed {
        /// Its output.
        output: O,
    },
    /// The run failed (or was canceled).
    Failed {
        /// Its error, with the failing step.
        error: ErrorInfo,
    },
    /// Every path of the run waits: skip time or resume a hook to go on.
    Suspended {
        /// What it waits for.
        waits: Vec<Wait>,
    },
}

impl<O> Outcome<O> {
    /// The output, if the run completed.
    pub fn completed(self) -> Option<O> {
        match self {
            Outcome::Completed { output } => Some(output),
            _ => None,
        }
    }

    /// The error, if the run failed.
    pub fn failed(self) -> Option<ErrorInfo> {
        match self {
            Outcome::Failed { error } => Some(error),
            _ => None,
        }
    }

    /// The waits, if the run is suspended.
    pub fn waits(self) -> Option<Vec<Wait>> {
        match self {
            Outcome::Suspended { waits } => Some(waits),
            _ => None,
        }
    }
}

/// One thing a suspended run waits for.
#[derive(Clone, Debug, PartialEq)]
pub enum Wait {
    /// A sleep until a time.
    Sleep {
        /// The sleep's step.
        key: StepKey,
        /// When it wakes.
        until: SystemTime,
    },
    /// A hook to be resumed.
    Hook {
        /// The hook's step.
        key: StepKey,
        /// The token that resumes it.
        token: String,
        /// The JSON Schema its payload must match.
        schema: Value,
    },
}

/// A workflow test environment: in-memory store, virtual clock (retry backoffs and sleeps
/// take no wall-clock time), seeded randomness (the same test makes the same run ids and hook
/// tokens), mocked actions. Unmocked actions run for real.
///
/// Run the test on tokio's paused time (`#[tokio::test(start_paused = true)]`) and the
/// virtual clock drives tokio's timers too: an action `.timeout()` or a `tokio::time::sleep`
/// inside an action takes no wall-clock time. On a normal runtime the clock moves only when
/// the harness skips it.
pub struct TestEnv {
    store: Arc<dyn Store>,
    clock: TestClock,
    /// One generator for every engine the environment builds, so their draws never repeat.
    entropy: Arc<SeededEntropy>,
    registry: Mutex<Registry>,
    overrides: Mutex<HashMap<String, ActionOverride>>,
    runs: Mutex<Vec<RunId>>,
    config: EngineConfig,
    /// Seals the credentials the test sets.
    master_key: MasterKey,
    /// Who runs start for.
    owner: Owner,
}

/// The lease holder the harness executes and seeds runs as.
const WORKER: &str = "cairn-testing";

impl Default for TestEnv {
    fn default() -> Self {
        TestEnv::new()
    }
}

impl TestEnv {
    /// An empty environment; the clock reads 2026-01-01T00:00:00Z.
    pub fn new() -> TestEnv {
        TestEnv::with_config(TestEnv::new_config())
    }

    /// The engine configuration of a test environment.
    pub(crate) fn new_config() -> EngineConfig {
        EngineConfig {
            in_process_wait_limit: Duration::ZERO,
            lease_ttl: Duration::from_secs(365 * 86_400),
            poll_interval: Duration::from_millis(1),
            ..EngineConfig::default()
        }
    }

    pub(crate) fn with_config(config: EngineConfig) -> TestEnv {
        TestEnv {
            store: Arc::new(MemoryStore::new()),
            clock: TestClock::new(START_MS),
            entropy: Arc::new(SeededEntropy::new(0)),
            registry: Mutex::new(Registry::new()),
            overrides: Mutex::new(HashMap::new()),
            runs: Mutex::new(Vec::new()),
            config,
            master_key: MasterKey::generate(),
            owner: Owner::default(),
        }
    }

    /// Starts runs on behalf of `owner` (default: organization and project `default`, no
    /// user), whose credentials their steps get.
    pub fn owner(mut self, owner: Owner) -> Self {
        self.owner = owner;
        self
    }

    /// Saves a credential of type `credential` with `fields` for the runs' owner at `scope`
    /// (its holder's default) and returns its id. Mocked actions need none.
    ///
    /// # Panics
    /// If the fields do not fit the type, or `scope` is [`Scope::User`] and the owner has no
    /// user (see [`owner`](Self::owner)).
    pub async fn credential(
        &self,
        credential: &Credential,
        scope: Scope,
        fields: &[(&str, &str)],
    ) -> String {
        {
            let mut registry = lock(&self.registry);
            *registry = registry.clone().credential(credential);
        }
        let holder = self.owner.holder(scope).unwrap_or_else(|| {
            panic!(
                "TestEnv::credential: the user scope needs an owner with a user (TestEnv::owner)"
            )
        });
        let set = SetCredential {
            key: credential.key().to_owned(),
            holder,
            fields: fields
                .iter()
                .map(|(name, value)| ((*name).to_owned(), Secret::new(*value)))
                .collect(),
            is_default: true,
            id: None,
            expires_at_ms: None,
        };
        self.engine()
            .set_credential(set)
            .await
            .unwrap_or_else(|err| panic!("TestEnv::credential: {err}"))
            .id
    }

    /// Seeds the environment's randomness (run ids, hook tokens, `ctx.random()`,
    /// `ctx.uuid()`, backoff jitter); the default seed is 0.
    pub fn seed(mut self, seed: u64) -> Self {
        self.entropy = Arc::new(SeededEntropy::new(seed));
        self
    }

    /// Replaces `action`'s body with `mock` (its output is still checked against the schema).
    pub fn mock<I: Payload, O: Payload>(
        self,
        action: &Action<I, O>,
        mock: impl Fn(I) -> Result<O, ActionError> + Send + Sync + 'static,
    ) -> Self {
        let mock = Arc::new(mock);
        let stand_in: ActionOverride = Arc::new(move |input, _ctx| {
            let mock = mock.clone();
            async move {
                let input: I = serde_json::from_value(input)
                    .map_err(|err| ActionError::fatal(err.to_string()))?;
                let output = mock(input)?;
                serde_json::to_value(output).map_err(|err| ActionError::fatal(err.to_string()))
            }
            .boxed()
        });
        lock(&self.overrides).insert(action.slug().to_owned(), stand_in);
        self
    }

    /// Makes every call of `action` fail with `error`.
    pub fn mock_err<I: Payload, O: Payload>(
        self,
        action: &Action<I, O>,
        error: ActionError,
    ) -> Self {
        self.mock(action, move |_input: I| Err::<O, _>(error.clone()))
    }

    /// Answers the `n`-th call (attempts included) of `action` with `results[n]`; the last
    /// result answers every later call.
    pub fn mock_sequence<I: Payload, O: Payload + Clone + Sync>(
        self,
        action: &Action<I, O>,
        results: Vec<Result<O, ActionError>>,
    ) -> Self {
        assert!(
            !results.is_empty(),
            "mock_sequence needs at least one result"
        );
        let calls = AtomicUsize::new(0);
        self.mock(action, move |_input: I| {
            let n = calls.fetch_add(1, Ordering::SeqCst).min(results.len() - 1);
            results[n].clone()
        })
    }

    /// Shares `value` with the actions that run for real, as `Registry::resource` does.
    pub fn resource<T: Send + Sync + 'static>(self, value: T) -> Self {
        let mut registry = lock(&self.registry);
        *registry = registry.clone().resource(value);
        drop(registry);
        self
    }

    /// Registers a workflow (workflows passed to `execute_workflow`/`start` are registered
    /// for you).
    pub fn register<I: Payload, O: Payload>(self, workflow: &Workflow<I, O>) -> Self {
        self.add(workflow);
        self
    }

    fn add<I: Payload, O: Payload>(&self, workflow: &Workflow<I, O>) {
        let mut registry = lock(&self.registry);
        *registry = registry.clone().workflow(workflow);
    }

    /// The engine of this environment (to use the full API in a test).
    ///
    /// # Panics
    /// If the registered workflows cannot be used (a bad slug, two definitions under one
    /// slug): the message says which.
    pub fn engine(&self) -> Engine {
        let registry = lock(&self.registry).clone();
        let mut builder = Engine::builder(self.store.clone(), registry)
            .config(self.config.clone())
            .clock(Arc::new(self.clock.clone()))
            .entropy(self.entropy.clone())
            .master_key(KeySource::Key(self.master_key.clone()))
            .worker_id(WorkerId(WORKER.into()));
        for (slug, stand_in) in lock(&self.overrides).iter() {
            builder = builder.override_action(slug.clone(), stand_in.clone());
        }
        builder
            .build()
            .unwrap_or_else(|err| panic!("TestEnv: {err}"))
    }

    /// Starts `workflow` and executes it until it completes, fails, or every path waits.
    pub async fn execute_workflow<I: Payload, O: Payload>(
        &self,
        workflow: &Workflow<I, O>,
        input: I,
    ) -> Outcome<O> {
        match self.start(workflow, input).await {
            Ok(run_id) => self.outcome(run_id).await,
            Err(err) => Outcome::Failed {
                error: ErrorInfo::new(ErrorKind::InvalidInput, err.to_string()),
            },
        }
    }

    /// Creates a run without executing it (seed steps, then call [`outcome`](Self::outcome)).
    pub async fn start<I: Payload, O: Payload>(
        &self,
        workflow: &Workflow<I, O>,
        input: I,
    ) -> Result<RunId, EngineError> {
        self.add(workflow);
        let options = StartOptions {
            trigger: Some("test".into()),
            owner: Some(self.owner.clone()),
            ..StartOptions::default()
        };
        let started = self.engine().start(workflow, &input, options).await?;
        lock(&self.runs).push(started.run_id);
        Ok(started.run_id)
    }

    /// Records `output` as the result of action step `key` (`slug#n`) of a started run, so
    /// executing it replays the step instead of running the action.
    pub async fn seed_step(
        &self,
        run_id: RunId,
        key: &str,
        output: impl Serialize,
    ) -> Result<(), EngineError> {
        let output =
            serde_json::to_value(output).map_err(|err| EngineError::BadRequest(err.to_string()))?;
        let slug = key
            .rsplit_once('#')
            .map_or(key, |(slug, _)| slug)
            .to_owned();
        let event = Event::StepCompleted {
            call: None,
            key: StepKey::custom(key),
            kind: StepKind::Action,
            slug,
            output,
        };
        // Recorded as the harness's worker would: under the run's lease.
        let now = self.clock.now_ms();
        let lease = Lease {
            worker: WorkerId(WORKER.into()),
            expires_at_ms: now + 60_000,
        };
        match self.store.claim_run(run_id, &lease, now).await? {
            ClaimOutcome::Claimed(_) => {}
            ClaimOutcome::NotFound => return Err(EngineError::RunNotFound(run_id)),
            ClaimOutcome::Held { .. } | ClaimOutcome::Ended(_) => {
                return Err(EngineError::BadRequest(format!(
                    "run {run_id} is executing or has ended; seed steps right after `start`"
                )));
            }
        }
        self.store
            .append(run_id, &lease.worker, &[event], now)
            .await?;
        Ok(self.store.release_lease(run_id, &lease.worker, now).await?)
    }

    /// Executes `run_id` as far as it goes and says how it stands. Retry backoffs are
    /// skipped on the virtual clock; sleeps and hooks suspend the run.
    pub async fn outcome<O: Payload>(&self, run_id: RunId) -> Outcome<O> {
        match self.drive(run_id).await {
            Ok(detail) => outcome_of(&detail, self.waits(&detail).await),
            Err(err) => Outcome::Failed {
                error: ErrorInfo::new(ErrorKind::Internal, err.to_string()),
            },
        }
    }

    /// Executes every ready run until none is, skipping the virtual clock to retry backoffs
    /// of `run_id` and its child runs, then returns `run_id` as it stands.
    async fn drive(&self, run_id: RunId) -> Result<RunDetail, EngineError> {
        let engine = self.engine();
        loop {
            while engine.execute_ready().await? > 0 {}
            let detail = engine.get_run(run_id).await?;
            if detail.run.status.is_terminal() {
                return Ok(detail);
            }
            match self.next_retry(&engine, detail.clone()).await? {
                Some(at_ms) => self.clock.skip_to(at_ms).await,
                None => return Ok(detail),
            }
        }
    }

    /// When the earliest retry backoff of `detail`'s run or its unended child runs ends: a
    /// run retries when a step is retrying and none waits on a sleep or a hook.
    async fn next_retry(
        &self,
        engine: &Engine,
        detail: RunDetail,
    ) -> Result<Option<i64>, EngineError> {
        let mut earliest = None::<i64>;
        let mut pending = vec![detail];
        while let Some(detail) = pending.pop() {
            let retrying = detail
                .steps
                .iter()
                .any(|s| s.status == StepStatus::Retrying);
            let waiting = detail
                .steps
                .iter()
                .any(|s| matches!(s.status, StepStatus::Sleeping | StepStatus::Waiting));
            if retrying && !waiting && !detail.run.status.is_terminal() {
                let at = detail.run.ready_at_ms;
                earliest = Some(earliest.map_or(at, |e| e.min(at)));
            }
            for child in self.children(detail.run.run_id).await {
                if !child.status.is_terminal() {
                    pending.push(engine.get_run(child.run_id).await?);
                }
            }
        }
        Ok(earliest)
    }

    async fn children(&self, run_id: RunId) -> Vec<RunRecord> {
        let filter = RunFilter {
            parent_run_id: Some(run_id),
            limit: 1_000,
            ..RunFilter::default()
        };
        self.store.list_runs(&filter).await.unwrap_or_default()
    }

    /// What a suspended run waits for, its child runs' waits included.
    async fn waits(&self, detail: &RunDetail) -> Vec<Wait> {
        let mut waits = Vec::new();
        let mut pending = vec![detail.clone()];
        while let Some(detail) = pending.pop() {
            for step in &detail.steps {
                match step.status {
                    StepStatus::Sleeping => {
                        let wake_at_ms = step.sleep_input().map_or(0, |sleep| sleep.wake_at_ms);
                        waits.push(Wait::Sleep {
                            key: step.key.clone(),
                            until: UNIX_EPOCH
                                + Duration::from_millis(u64::try_from(wake_at_ms).unwrap_or(0)),
                        });
                    }
                    StepStatus::Waiting => {
                        let token = step.hook_input().map(|hook| hook.token).unwrap_or_default();
                        let hook = self.store.get_hook(&token).await.ok().flatten();
                        let schema = hook.map(|hook| hook.schema).unwrap_or_default();
                        waits.push(Wait::Hook {
                            key: step.key.clone(),
                            token,
                            schema,
                        });
                    }
                    _ => {}
                }
            }
            for child in self.children(detail.run.run_id).await {
                if !child.status.is_terminal()
                    && let Ok(child) = self.run(child.run_id).await
                {
                    pending.push(child);
                }
            }
        }
        waits
    }

    /// Moves the virtual clock forward and executes every run of this environment whose
    /// sleep is now over.
    pub async fn skip_time(&self, by: Duration) {
        self.clock.skip(by).await;
        let runs = lock(&self.runs).clone();
        for run_id in runs {
            let unended = self
                .store
                .get_run(run_id)
                .await
                .ok()
                .flatten()
                .is_some_and(|run| !run.status.is_terminal());
            if unended {
                let _ = self.drive(run_id).await;
            }
        }
    }

    /// Resumes a hook (the payload is checked against its schema) and executes its run on.
    pub async fn resume_hook(
        &self,
        token: &str,
        payload: impl Serialize,
    ) -> Result<(), EngineError> {
        let payload = serde_json::to_value(payload)
            .map_err(|err| EngineError::BadRequest(err.to_string()))?;
        let hook = self.engine().resume_hook(token, payload).await?;
        let root = self.root_of(hook.run_id).await;
        self.drive(root).await.map(drop)
    }

    async fn root_of(&self, mut run_id: RunId) -> RunId {
        while let Ok(Some(RunRecord {
            parent_run_id: Some(parent),
            ..
        })) = self.store.get_run(run_id).await
        {
            run_id = parent;
        }
        run_id
    }

    /// The recorded steps of a run: key, kind, input, output, error, attempts.
    pub async fn steps(&self, run_id: RunId) -> Vec<StepSummary> {
        self.run(run_id)
            .await
            .map(|detail| detail.steps)
            .unwrap_or_default()
    }

    /// A run with its steps and log.
    pub async fn run(&self, run_id: RunId) -> Result<RunDetail, EngineError> {
        self.engine().get_run(run_id).await
    }

    /// The run as `runs get <id> --json` prints it (with its `events`): what
    /// [`replay`](super::replay) takes.
    pub async fn export(&self, run_id: RunId) -> Result<Value, EngineError> {
        let view = RunDetailView::from(&self.run(run_id).await?);
        serde_json::to_value(view).map_err(|err| EngineError::BadRequest(err.to_string()))
    }

    /// The run started last.
    pub fn last_run(&self) -> Option<RunId> {
        lock(&self.runs).last().copied()
    }

    /// The virtual clock's time.
    pub fn now(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(u64::try_from(self.clock.now_ms()).unwrap_or(0))
    }

    pub(crate) fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }
}

fn outcome_of<O: Payload>(detail: &RunDetail, waits: Vec<Wait>) -> Outcome<O> {
    let run = &detail.run;
    match run.status {
        RunStatus::Succeeded => {
            match serde_json::from_value(run.output.clone().unwrap_or(Value::Null)) {
                Ok(output) => Outcome::Completed { output },
                Err(err) => Outcome::Failed {
                    error: ErrorInfo::new(ErrorKind::InvalidOutput, err.to_string()),
                },
            }
        }
        RunStatus::Failed | RunStatus::Canceled => Outcome::Failed {
            error: run.error.clone().unwrap_or_else(|| {
                ErrorInfo::new(ErrorKind::Internal, "run ended without an error")
            }),
        },
        _ => Outcome::Suspended { waits },
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
