//! Layer 7, the API: the [`Engine`] starts runs, executes them in this process, and answers
//! questions about them; `worker` executes queued runs; `resume` resumes hooks from outside;
//! `view` shapes what every interface shows. Uses every layer below.

use std::{
    collections::HashMap,
    sync::{Arc, Weak},
};

use cairn_core::{Event, EventRecord, Owner, RunStatus, StepKey, StepSummary, summarize_steps};
use cairn_store::{
    ForkOrigin, NewRun, RunFilter, RunId, RunRecord, RunSummary, Store, WorkerId, rules,
};
use serde_json::Value;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::{
    base::{
        clock::{Clock, StoreClock},
        config::{EngineConfig, MAX_IDEMPOTENCY_KEY_LEN},
        entropy::{Entropy, EntropyExt, OsEntropy},
        error::EngineError,
        oauth_http::OAuthHttp,
        schema::{Payload, json_size},
        vault::{KeySource, Keyring},
    },
    registry::Registry,
    run::{
        Stop,
        env::{ActionOverride, ChildRuns, RunEnv, RunEvent},
    },
    runtime::Runtime,
    steps::workflow::Workflow,
};

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
    /// On whose behalf the run executes (default: organization and project `default`, no
    /// user). A rerun keeps the original's unless given.
    pub owner: Option<Owner>,
}

/// One execution of a run started by [`Engine::start_to_execute`]: the run if it ended.
pub type Execution = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<Option<RunRecord>, EngineError>> + Send>,
>;

/// A started run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Started {
    /// The run's id.
    pub run_id: RunId,
    /// `false` when the idempotency key named an existing run.
    pub created: bool,
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

/// The durable workflow engine of one process: a store, a registry, a clock and a source of
/// randomness.
#[derive(Clone)]
pub struct Engine {
    pub(crate) runtime: Arc<Runtime>,
}

/// Builds an [`Engine`].
pub struct EngineBuilder {
    store: Arc<dyn Store>,
    registry: Registry,
    config: EngineConfig,
    /// The injected clock; `None`: the store's ([`StoreClock`]).
    clock: Option<Arc<dyn Clock>>,
    entropy: Arc<dyn Entropy>,
    worker: Option<WorkerId>,
    overrides: HashMap<String, ActionOverride>,
    master_key: Option<KeySource>,
}

impl EngineBuilder {
    /// Where the master key that seals credentials comes from (default: none, so actions
    /// that need credentials fail with a message saying so). The CLI passes
    /// `KeySource::File(<data dir>/master.key)`, which `CAIRN_MASTER_KEY` overrides.
    pub fn master_key(mut self, source: KeySource) -> Self {
        self.master_key = Some(source);
        self
    }

    /// Sets the configuration.
    pub fn config(mut self, config: EngineConfig) -> Self {
        self.config = config;
        self
    }

    /// Sets the clock: every reading of the time and every timer of the engine goes through
    /// it (tests and the testing harness inject a virtual one). By default the engine runs on
    /// the store's clock, which every worker of the store shares (its own clock carries it
    /// between readings): leases and due runs are then judged alike by all of them, whatever
    /// each machine's clock says. An injected clock, [`SystemClock`](crate::SystemClock)
    /// included, is trusted as it is.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Sets the source of randomness: run ids, hook tokens, `ctx.random()`/`ctx.uuid()`, the
    /// worker id, backoff jitter (default: the operating system's CSPRNG; tests pass a
    /// [`SeededEntropy`](crate::SeededEntropy) to make them repeatable).
    pub fn entropy(mut self, entropy: Arc<dyn Entropy>) -> Self {
        self.entropy = entropy;
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

    /// The engine, or why the registry cannot be used (a bad slug, two definitions under
    /// one slug).
    pub fn build(self) -> Result<Engine, EngineError> {
        self.registry.check()?;
        let worker = self.worker.unwrap_or_else(|| {
            let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "local".to_owned());
            let suffix = self.entropy.next_u64() & 0xffff_ffff_ffff;
            WorkerId(format!("{host}:{}:{suffix:012x}", std::process::id()).into())
        });
        let (events, _) = broadcast::channel(4096);
        let (clock, store_clock): (Arc<dyn Clock>, _) = match self.clock {
            Some(clock) => (clock, None),
            None => {
                let store_clock = Arc::new(StoreClock::new());
                (store_clock.clone(), Some(store_clock))
            }
        };
        let runtime = Arc::new_cyclic(|runtime: &Weak<Runtime>| {
            let children: Weak<dyn ChildRuns> = runtime.clone();
            let env = RunEnv {
                store: self.store,
                clock,
                store_clock,
                entropy: self.entropy,
                config: self.config,
                worker,
                claims: std::sync::atomic::AtomicU64::new(0),
                stopping: CancellationToken::new(),
                events,
                end_waiters: Arc::default(),
                resources: self.registry.resources.clone(),
                overrides: self.overrides,
                keyring: Keyring::new(self.master_key),
                oauth: OAuthHttp::default(),
                children,
            };
            Runtime::new(Arc::new(env), self.registry)
        });
        Ok(Engine { runtime })
    }
}

impl Engine {
    /// An engine with the default configuration, the system clock and the OS's randomness,
    /// or why the registry cannot be used.
    pub fn new(store: Arc<dyn Store>, registry: Registry) -> Result<Engine, EngineError> {
        Engine::builder(store, registry).build()
    }

    /// An engine to configure.
    pub fn builder(store: Arc<dyn Store>, registry: Registry) -> EngineBuilder {
        EngineBuilder {
            store,
            registry,
            config: EngineConfig::default(),
            clock: None,
            entropy: Arc::new(OsEntropy),
            worker: None,
            overrides: HashMap::new(),
            master_key: None,
        }
    }

    /// The registered workflows and actions.
    pub fn registry(&self) -> &Registry {
        &self.runtime.registry
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.runtime.env.store
    }

    /// This engine's identity as a lease holder.
    pub fn worker_id(&self) -> &WorkerId {
        &self.runtime.env.worker
    }

    /// The configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.runtime.env.config
    }

    /// The engine's clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.runtime.env.clock
    }

    /// Events this process committed, as they are committed, with their `seq` (for live
    /// progress). Another process's events are read with [`follow`](Self::follow).
    pub fn subscribe(&self) -> broadcast::Receiver<RunEvent> {
        self.runtime.env.events.subscribe()
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
        let runtime = &self.runtime;
        // A lease taken now must be judged by the store's time (decision 0046).
        runtime.env.read_store_clock().await;
        let new = self.new_run(slug, input, &options)?;
        // A run this process will execute needs no read-back: keep its claim in memory.
        let claim = rules::created_claim(&new);
        let published = runtime.env.has_subscribers().then(|| new.clone());
        let outcome = runtime.env.store.create_run(new).await?;
        if outcome.created {
            if let Some(new) = published {
                runtime.env.publish_created(&new, new.now_ms);
            }
            if let Some(claim) = claim {
                runtime.remember_fresh(claim);
            }
        }
        runtime.new_work.notify_waiters();
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
        self.runtime.clone().drive_new(new).await
    }

    /// A new run of `slug`, its input and options checked.
    pub(crate) fn new_run(
        &self,
        slug: &str,
        input: Value,
        options: &StartOptions,
    ) -> Result<NewRun, EngineError> {
        let runtime = &self.runtime;
        let env = &runtime.env;
        let workflow = runtime
            .registry
            .get(slug)
            .ok_or_else(|| EngineError::UnknownWorkflow {
                slug: slug.to_owned(),
                known: runtime.registry.slugs().join(", "),
            })?;
        workflow
            .input_schema()
            .validate(&input)
            .map_err(|violations| EngineError::InvalidInput {
                workflow: slug.to_owned(),
                violations,
            })?;
        env.config
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
            id: env.new_run_id(),
            workflow: slug.to_owned(),
            input,
            idempotency_key: options.idempotency_key.clone(),
            parent_run_id: None,
            forked_from: None,
            trigger: options.trigger.clone().unwrap_or_else(|| "api".to_owned()),
            owner: checked_owner(options.owner.clone())?,
            history: Vec::new(),
            lease: options.execute_here.then(|| env.lease()),
            now_ms: env.clock.now_ms(),
        })
    }

    /// Starts a run of `slug` to be executed by the caller, for a caller about to wait for its
    /// result (the HTTP API's `?wait=`): the run is leased to this process from the start, so
    /// no worker has to claim it, and the returned execution runs it once — until it ends,
    /// parks or is handed back, never longer, so nothing waits here for a run that sleeps for
    /// days (the workers take it from there). The execution resolves to the run if it ended.
    /// It is `None` when an idempotency key named an existing run. Without a key the run is
    /// created by the execution's first write, as [`run`](Self::run) does.
    pub async fn start_to_execute(
        &self,
        slug: &str,
        input: Value,
        options: StartOptions,
    ) -> Result<(Started, Option<Execution>), EngineError> {
        let options = StartOptions {
            execute_here: true,
            ..options
        };
        let runtime = self.runtime.clone();
        if options.idempotency_key.is_some() {
            let started = self.start_json(slug, input, options).await?;
            let execution: Option<Execution> = started
                .created
                .then(|| Box::pin(runtime.execute_once(started.run_id, None)) as Execution);
            return Ok((started, execution));
        }
        let new = self.new_run(slug, input, &options)?;
        let started = Started {
            run_id: new.id,
            created: true,
        };
        Ok((
            started,
            Some(Box::pin(runtime.execute_once(new.id, Some(new)))),
        ))
    }

    /// Executes a run in this process until it ends, then returns it. If another worker holds
    /// it, waits for that worker (and takes it over if its lease lapses).
    pub async fn execute(&self, run_id: RunId) -> Result<RunRecord, EngineError> {
        self.runtime.clone().drive(run_id).await
    }

    /// A run with its steps and log.
    pub async fn get_run(&self, run_id: RunId) -> Result<RunDetail, EngineError> {
        let store = self.store();
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
        Ok(self.store().list_runs(filter).await?)
    }

    /// The runs [`list_runs`](Engine::list_runs) lists, without their payloads: what a page
    /// of runs shows, however large the runs' inputs and outputs.
    pub async fn list_run_summaries(
        &self,
        filter: &RunFilter,
    ) -> Result<Vec<RunSummary>, EngineError> {
        Ok(self.store().list_run_summaries(filter).await?)
    }

    /// Sends a failed or canceled run back to the queue: its completed steps are replayed,
    /// the rest run again. Follow with [`Engine::execute`] to run it here.
    pub async fn retry(&self, run_id: RunId) -> Result<(), EngineError> {
        let env = &self.runtime.env;
        env.store.retry_run(run_id, env.clock.now_ms()).await?;
        self.runtime.new_work.notify_waiters();
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
        let env = &self.runtime.env;
        let new = NewRun {
            id: env.new_run_id(),
            workflow: detail.run.workflow.clone(),
            input: detail.run.input.clone(),
            idempotency_key: options.idempotency_key,
            parent_run_id: None,
            forked_from: Some(ForkOrigin {
                run_id,
                step: step.clone(),
            }),
            trigger: options.trigger.unwrap_or_else(|| "rerun".to_owned()),
            owner: match options.owner {
                Some(owner) => checked_owner(Some(owner))?,
                None => detail.run.owner.clone(),
            },
            history,
            lease: options.execute_here.then(|| env.lease()),
            now_ms: env.clock.now_ms(),
        };
        let outcome = env.store.create_run(new.clone()).await?;
        if outcome.created {
            env.publish_created(&new, new.now_ms);
        }
        self.runtime.new_work.notify_waiters();
        Ok(outcome.run_id)
    }

    /// Cancels a run that has not ended (and its unended child runs). A step in flight sees
    /// its cancellation signal. Returns the status the run had.
    pub async fn cancel(&self, run_id: RunId, reason: &str) -> Result<RunStatus, EngineError> {
        let env = &self.runtime.env;
        let previous = env
            .store
            .cancel_run(run_id, reason, env.clock.now_ms())
            .await?;
        env.end_waiters.signal(run_id);
        if let Some(run) = self.runtime.executing(run_id) {
            run.cancel.cancel();
            run.stop(Stop::Ended);
        }
        let children = RunFilter {
            parent_run_id: Some(run_id),
            limit: 10_000,
            ..RunFilter::default()
        };
        for child in env.store.list_runs(&children).await? {
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
        self.runtime.env.stopping.cancel();
    }
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("worker", &self.runtime.env.worker)
            .field("registry", &self.runtime.registry)
            .finish()
    }
}

/// The length a name of an owner (organization, project, user) may have.
const MAX_OWNER_NAME_LEN: usize = 128;

/// The owner a start asks for, checked (`None`: the default owner).
fn checked_owner(owner: Option<Owner>) -> Result<Owner, EngineError> {
    let owner = owner.unwrap_or_default();
    let names = [
        ("org", Some(&owner.org)),
        ("project", Some(&owner.project)),
        ("user", owner.user.as_ref()),
    ];
    for (what, name) in names {
        if let Some(name) = name
            && (name.is_empty()
                || name.len() > MAX_OWNER_NAME_LEN
                || name.chars().any(char::is_control))
        {
            return Err(EngineError::BadRequest(format!(
                "owner {what} {name:?} must be 1 to {MAX_OWNER_NAME_LEN} characters, none of them control characters"
            )));
        }
    }
    Ok(owner)
}
