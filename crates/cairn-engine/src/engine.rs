//! The engine: starts runs, executes them in this process, and answers questions about them.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use cairn_core::{Event, EventRecord, Limits, RunStatus, StepKey, StepSummary, summarize_steps};
use cairn_store::{ForkOrigin, NewRun, RunFilter, RunId, RunRecord, Store, WorkerId, rules};
use serde_json::Value;
use tokio::sync::{Notify, broadcast};
use tokio_util::sync::CancellationToken;

use futures::future::BoxFuture;

use crate::{
    action::{ActionCtx, Payload},
    clock::{Clock, SystemClock},
    context::Abort,
    error::ActionError,
    error::EngineError,
    heartbeat::Heartbeats,
    registry::Registry,
    shared::Shared,
    step::json_size,
    workflow::Workflow,
};

/// How the engine behaves. The defaults suit a single machine.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// How long a run's lease lasts without a heartbeat. A crashed worker's runs are taken
    /// over this long after its last heartbeat. Default 15 s.
    pub lease_ttl: Duration,
    /// How often an idle worker looks for ready runs (runs started in this process wake it at
    /// once). Default 250 ms.
    pub poll_interval: Duration,
    /// Most runs one worker executes at once. Default 256.
    pub max_concurrent_runs: usize,
    /// Payload and history limits.
    pub limits: Limits,
    /// How long a stopping worker waits for steps in flight before it lets go. Default 30 s.
    pub shutdown_grace: Duration,
    /// Waits (sleeps, hooks) up to this long are waited in-process, holding the lease;
    /// longer ones park the run. Default 1 s.
    pub in_process_wait_limit: Duration,
    /// For harnesses (`cairn::testing`): `Engine::execute` executes a run at once even if it
    /// is parked and not due, and returns as soon as it parks again, instead of waiting for
    /// its wake-up. Default false.
    pub return_when_parked: bool,
    /// For replaying a recorded history against current code (`cairn::testing::replay`):
    /// a step that is not in the history fails the run with a non-determinism error instead
    /// of executing. Default false.
    pub replay_only: bool,
    /// The base of hooks' resume URLs (`<public_url>/hooks/<token>`): where the HTTP server
    /// is reachable. Default `http://127.0.0.1:3000`.
    pub public_url: String,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            lease_ttl: Duration::from_secs(15),
            poll_interval: Duration::from_millis(250),
            max_concurrent_runs: 256,
            limits: Limits::default(),
            shutdown_grace: Duration::from_secs(30),
            in_process_wait_limit: Duration::from_secs(1),
            return_when_parked: false,
            replay_only: false,
            public_url: "http://127.0.0.1:3000".to_owned(),
        }
    }
}

/// How to start a run.
#[derive(Clone, Debug, Default)]
pub struct StartOptions {
    /// Starting twice with the same key (for the same workflow) yields the same run.
    pub idempotency_key: Option<String>,
    /// What started the run (`cli`, `api`, …); shown in inspection. Default `api`.
    pub trigger: Option<String>,
    /// Take the run's lease at once because this process will execute it (`Engine::execute`),
    /// so no other worker claims it first.
    pub execute_here: bool,
}

/// A started run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Started {
    /// The run's id.
    pub run_id: RunId,
    /// `false` when the idempotency key named an existing run.
    pub created: bool,
}

/// An event appended to a run by this process, for live progress displays.
#[derive(Clone, Debug)]
pub struct RunEvent {
    /// The run.
    pub run_id: RunId,
    /// When it was appended (unix ms).
    pub at_ms: i64,
    /// The event.
    pub event: Event,
}

/// A run with its steps and its whole log.
#[derive(Clone, Debug)]
pub struct RunDetail {
    /// The run.
    pub run: RunRecord,
    /// Its steps, in execution order.
    pub steps: Vec<StepSummary>,
    /// Its log.
    pub events: Vec<EventRecord>,
}

/// The longest idempotency key accepted.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 256;

/// The durable workflow engine of one process: a store, a registry and a clock.
#[derive(Clone)]
pub struct Engine {
    pub(crate) shared: Arc<Shared>,
}

/// Builds an [`Engine`].
pub struct EngineBuilder {
    store: Arc<dyn Store>,
    registry: Registry,
    config: EngineConfig,
    clock: Arc<dyn Clock>,
    worker: Option<WorkerId>,
    overrides: HashMap<String, ActionOverride>,
}

/// A stand-in for an action's body, on JSON values (the testing harness's mocks). Its
/// output is still validated against the action's output schema.
pub type ActionOverride =
    Arc<dyn Fn(Value, ActionCtx) -> BoxFuture<'static, Result<Value, ActionError>> + Send + Sync>;

impl EngineBuilder {
    /// Sets the configuration.
    pub fn config(mut self, config: EngineConfig) -> Self {
        self.config = config;
        self
    }

    /// Sets the clock (tests and the testing harness inject one).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Sets this engine's identity as a lease holder (default: host, pid and a random
    /// suffix). Two live engines must never share one.
    pub fn worker_id(mut self, worker: WorkerId) -> Self {
        self.worker = Some(worker);
        self
    }

    /// Runs `body` instead of the action `slug`'s own body (for tests).
    pub fn override_action(mut self, slug: impl Into<String>, body: ActionOverride) -> Self {
        self.overrides.insert(slug.into(), body);
        self
    }

    /// The engine.
    pub fn build(self) -> Engine {
        let worker = self.worker.unwrap_or_else(|| {
            let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "local".to_owned());
            let suffix = &uuid::Uuid::now_v7().simple().to_string()[20..];
            WorkerId(format!("{host}:{}:{suffix}", std::process::id()).into())
        });
        let (events, _) = broadcast::channel(4096);
        Engine {
            shared: Arc::new(Shared {
                store: self.store,
                clock: self.clock,
                registry: self.registry,
                config: self.config,
                worker,
                overrides: self.overrides,
                stopping: CancellationToken::new(),
                new_work: Notify::new(),
                events,
                running: Mutex::new(HashMap::new()),
                fresh: Mutex::new(HashMap::new()),
                heartbeats: Heartbeats::default(),
            }),
        }
    }
}

impl Engine {
    /// An engine with the default configuration and the system clock.
    pub fn new(store: Arc<dyn Store>, registry: Registry) -> Engine {
        Engine::builder(store, registry).build()
    }

    /// An engine to configure.
    pub fn builder(store: Arc<dyn Store>, registry: Registry) -> EngineBuilder {
        EngineBuilder {
            store,
            registry,
            config: EngineConfig::default(),
            clock: Arc::new(SystemClock),
            worker: None,
            overrides: HashMap::new(),
        }
    }

    /// The registered workflows and actions.
    pub fn registry(&self) -> &Registry {
        &self.shared.registry
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.shared.store
    }

    /// This engine's identity as a lease holder.
    pub fn worker_id(&self) -> &WorkerId {
        &self.shared.worker
    }

    /// The configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.shared.config
    }

    /// Events appended by this process, as they are appended (for live progress).
    pub fn subscribe(&self) -> broadcast::Receiver<RunEvent> {
        self.shared.events.subscribe()
    }

    /// Starts a run of a registered workflow with a typed input.
    pub async fn start<I: Payload, O: Payload>(
        &self,
        workflow: &Workflow<I, O>,
        input: &I,
        options: StartOptions,
    ) -> Result<Started, EngineError> {
        let input = serde_json::to_value(input).map_err(|err| EngineError::Unserializable {
            workflow: workflow.slug().to_owned(),
            message: err.to_string(),
        })?;
        self.start_json(workflow.slug(), input, options).await
    }

    /// Starts a run of the workflow `slug` with a JSON input, validated against the workflow's
    /// input schema (a bad input creates no run).
    pub async fn start_json(
        &self,
        slug: &str,
        input: Value,
        options: StartOptions,
    ) -> Result<Started, EngineError> {
        let shared = &self.shared;
        let new = self.new_run(slug, input, &options)?;
        // A run this process will execute needs no read-back: keep its claim in memory.
        let claim = rules::created_claim(&new);
        let outcome = shared.store.create_run(new).await?;
        if let Some(claim) = claim.filter(|_| outcome.created) {
            shared.remember_fresh(claim);
        }
        shared.new_work.notify_waiters();
        Ok(Started {
            run_id: outcome.run_id,
            created: outcome.created,
        })
    }

    /// Starts a run and executes it here until it ends, then returns it: [`start`](Self::start)
    /// and [`execute`](Self::execute) in one call, as a request handler awaiting a workflow
    /// would. Without an idempotency key the run is created by its first write (before its
    /// first action or child run starts, or when it first waits or ends), in one commit with
    /// whatever the body recorded before; its `created_at` is that write's time. With one, it
    /// is created first, so a second caller finds it.
    pub async fn run<I: Payload, O: Payload>(
        &self,
        workflow: &Workflow<I, O>,
        input: &I,
        options: StartOptions,
    ) -> Result<RunRecord, EngineError> {
        let input = serde_json::to_value(input).map_err(|err| EngineError::Unserializable {
            workflow: workflow.slug().to_owned(),
            message: err.to_string(),
        })?;
        self.run_json(workflow.slug(), input, options).await
    }

    /// [`run`](Self::run) with a JSON input, validated like [`start_json`](Self::start_json).
    pub async fn run_json(
        &self,
        slug: &str,
        input: Value,
        options: StartOptions,
    ) -> Result<RunRecord, EngineError> {
        let options = StartOptions {
            execute_here: true,
            ..options
        };
        if options.idempotency_key.is_some() {
            let started = self.start_json(slug, input, options).await?;
            return self.execute(started.run_id).await;
        }
        let new = self.new_run(slug, input, &options)?;
        self.shared.clone().drive_new(new).await
    }

    /// A new run of `slug`, its input and options checked.
    fn new_run(
        &self,
        slug: &str,
        input: Value,
        options: &StartOptions,
    ) -> Result<NewRun, EngineError> {
        let shared = &self.shared;
        let workflow = shared
            .registry
            .get(slug)
            .ok_or_else(|| EngineError::UnknownWorkflow {
                slug: slug.to_owned(),
                known: shared.registry.slugs().join(", "),
            })?;
        workflow
            .input_schema()
            .validate(&input)
            .map_err(|violations| EngineError::InvalidInput {
                workflow: slug.to_owned(),
                violations,
            })?;
        shared
            .config
            .limits
            .check_payload(|| format!("input of workflow {slug}"), json_size(&input))?;
        if let Some(key) = &options.idempotency_key
            && (key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY_LEN)
        {
            return Err(EngineError::BadRequest(format!(
                "idempotency key must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} characters"
            )));
        }
        Ok(NewRun {
            id: RunId::new(),
            workflow: slug.to_owned(),
            input,
            idempotency_key: options.idempotency_key.clone(),
            parent_run_id: None,
            forked_from: None,
            trigger: options.trigger.clone().unwrap_or_else(|| "api".to_owned()),
            history: Vec::new(),
            lease: options.execute_here.then(|| shared.lease()),
            now_ms: shared.clock.now_ms(),
        })
    }

    /// Executes a run in this process until it ends, then returns it. If another worker holds
    /// it, waits for that worker (and takes it over if its lease lapses).
    pub async fn execute(&self, run_id: RunId) -> Result<RunRecord, EngineError> {
        self.shared.clone().drive(run_id, None).await
    }

    /// A run with its steps and log.
    pub async fn get_run(&self, run_id: RunId) -> Result<RunDetail, EngineError> {
        let store = &self.shared.store;
        let run = store
            .get_run(run_id)
            .await?
            .ok_or(EngineError::RunNotFound(run_id))?;
        let events = store.events(run_id).await?;
        let steps = summarize_steps(&events);
        Ok(RunDetail { run, steps, events })
    }

    /// Runs matching `filter`, newest first.
    pub async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>, EngineError> {
        Ok(self.shared.store.list_runs(filter).await?)
    }

    /// Sends a failed or canceled run back to the queue: its completed steps are replayed,
    /// the rest run again. Follow with [`Engine::execute`] to run it here.
    pub async fn retry(&self, run_id: RunId) -> Result<(), EngineError> {
        self.shared
            .store
            .retry_run(run_id, self.shared.clock.now_ms())
            .await?;
        self.shared.new_work.notify_waiters();
        Ok(())
    }

    /// Forks a new run from `run_id` that keeps the original's recorded steps started before
    /// `step` and executes from `step` on. The original is never changed.
    pub async fn rerun_from(
        &self,
        run_id: RunId,
        step: &StepKey,
        options: StartOptions,
    ) -> Result<RunId, EngineError> {
        let detail = self.get_run(run_id).await?;
        let first = detail
            .events
            .iter()
            .position(|record| record.event.step_key() == Some(step))
            .ok_or_else(|| EngineError::StepNotFound {
                run: run_id,
                step: step.clone(),
            })?;
        // Steps "before" `step` are those started before it; their whole records are kept,
        // including completions that landed after `step` started (parallel steps).
        let kept: std::collections::HashSet<&StepKey> = detail.events[..first]
            .iter()
            .filter_map(|record| record.event.step_key())
            .collect();
        let history: Vec<Event> = detail
            .events
            .iter()
            .filter(|record| {
                record
                    .event
                    .step_key()
                    .is_some_and(|key| kept.contains(key))
            })
            .map(|record| record.event.clone())
            .collect();
        let shared = &self.shared;
        let outcome = shared
            .store
            .create_run(NewRun {
                id: RunId::new(),
                workflow: detail.run.workflow.clone(),
                input: detail.run.input.clone(),
                idempotency_key: options.idempotency_key,
                parent_run_id: None,
                forked_from: Some(ForkOrigin {
                    run_id,
                    step: step.clone(),
                }),
                trigger: options.trigger.unwrap_or_else(|| "rerun".to_owned()),
                history,
                lease: options.execute_here.then(|| shared.lease()),
                now_ms: shared.clock.now_ms(),
            })
            .await?;
        shared.new_work.notify_waiters();
        Ok(outcome.run_id)
    }

    /// Cancels a run that has not ended (and its unended child runs). A step in flight sees
    /// its cancellation signal. Returns the status the run had.
    pub async fn cancel(&self, run_id: RunId, reason: &str) -> Result<RunStatus, EngineError> {
        let shared = &self.shared;
        let previous = shared
            .store
            .cancel_run(run_id, reason, shared.clock.now_ms())
            .await?;
        if let Some(run) = shared.executing(run_id) {
            run.cancel.cancel();
            run.abort(Abort::Ended);
        }
        let children = RunFilter {
            parent_run_id: Some(run_id),
            limit: 10_000,
            ..RunFilter::default()
        };
        for child in shared.store.list_runs(&children).await? {
            if !child.status.is_terminal() {
                Box::pin(self.cancel(child.run_id, "parent run canceled"))
                    .await
                    .ok();
            }
        }
        Ok(previous)
    }

    /// Asks every execution in this process to stop at its next step boundary and give its
    /// run back to the queue.
    pub fn stop(&self) {
        self.shared.stopping.cancel();
    }
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("worker", &self.shared.worker)
            .field("registry", &self.shared.registry)
            .finish()
    }
}
