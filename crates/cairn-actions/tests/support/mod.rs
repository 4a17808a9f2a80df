//! What the integration tests share: an engine with a master key on a manual clock (its store
//! made in one place, [`store`]), credentials stored through the engine, a workflow that calls
//! one action, and a run driven to its end with the clock moved to each retry.

#![allow(dead_code)]

pub mod smtp;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use cairn_actions::Config;
use cairn_core::{ErrorInfo, ErrorKind, Event, Holder, RunStatus, Scope, StepStatus, StepSummary};
use cairn_engine::{
    Action, Clock, Engine, EngineConfig, KeySource, ManualClock, MasterKey, Payload, Registry,
    RunDetail, Secret, SetCredential, StartOptions, Workflow, WorkflowCtx,
};
use cairn_store::Store;
use wiremock::{
    Mock, MockServer, ResponseTemplate,
    matchers::{method, path},
};

/// The store every test uses: a real SQLite file in a temporary directory (kept alive
/// beside it).
pub fn store() -> (Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::TempDir::new().expect("a temporary directory");
    let store = cairn_store_sqlite::SqliteStore::open_in_dir(dir.path()).expect("open the store");
    (Arc::new(store), dir)
}

/// The time the manual clock starts at (2026-01-01).
const START_MS: i64 = 1_767_225_600_000;
/// How long a test waits for a run at most.
const RUN_DEADLINE: Duration = Duration::from_secs(20);

/// An engine running the integration actions, and the clock it reads.
pub struct Env {
    /// The engine.
    pub engine: Engine,
    /// Its clock: moved only by [`Env::run`], to each scheduled retry.
    pub clock: Arc<ManualClock>,
    /// Holds the store's file.
    _dir: tempfile::TempDir,
}

/// An engine with a fresh master key, `workflow` and every integration action registered,
/// and `config` as the actions' configuration.
pub fn env<I: Payload, O: Payload>(workflow: &Workflow<I, O>, config: Config) -> Env {
    let registry = cairn_actions::register(Registry::new().workflow(workflow)).resource(config);
    let clock = Arc::new(ManualClock::new(START_MS));
    let (store, dir) = store();
    let engine = Engine::builder(store, registry)
        .master_key(KeySource::Key(MasterKey::generate()))
        .clock(clock.clone())
        .config(EngineConfig {
            poll_interval: Duration::from_millis(20),
            ..EngineConfig::default()
        })
        .build()
        .expect("a valid registry");
    Env {
        engine,
        clock,
        _dir: dir,
    }
}

/// The actions' configuration with short timeouts and no base URLs changed.
pub fn config() -> Config {
    Config::new()
        .expect("the default configuration")
        .request_timeout(Duration::from_secs(5))
        .smtp_timeout(Duration::from_secs(5))
}

/// A workflow `slug` that calls `action` once and returns its output.
pub fn calling<I: Payload, O: Payload>(
    slug: &str,
    action: &'static Action<I, O>,
) -> Workflow<I, O> {
    Workflow::new(slug)
        .run(move |input: I, _ctx: WorkflowCtx| async move { Ok(action.run(input).await?) })
}

impl Env {
    /// Stores the organization's default credential of type `key` with `fields`.
    pub async fn set_credential(&self, key: &str, fields: &[(&str, &str)]) {
        self.engine
            .set_credential(SetCredential {
                key: key.to_owned(),
                holder: Holder {
                    scope: Scope::Organization,
                    org: "default".into(),
                    project: None,
                    user: None,
                },
                fields: fields
                    .iter()
                    .map(|(name, value)| ((*name).to_owned(), Secret::new(*value)))
                    .collect(),
                is_default: true,
                id: None,
                expires_at_ms: None,
            })
            .await
            .expect("set the credential");
    }

    /// Starts a run of `workflow` and executes it to its end, moving the clock to each retry
    /// the run schedules (so a `Retry-After` is honoured without waiting for it).
    pub async fn run<I: Payload, O: Payload>(
        &self,
        workflow: &Workflow<I, O>,
        input: &I,
    ) -> RunDetail {
        let started = self
            .engine
            .start(workflow, input, StartOptions::default())
            .await
            .expect("start the run");
        let id = started.run_id;
        let engine = self.engine.clone();
        let execution = tokio::spawn(async move { engine.execute(id).await });
        let deadline = Instant::now() + RUN_DEADLINE;
        while !execution.is_finished() {
            assert!(
                Instant::now() < deadline,
                "run {id} did not end within {RUN_DEADLINE:?}"
            );
            if let Some(retry_at_ms) = self.next_retry(id).await {
                self.clock.advance_to(retry_at_ms);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let run = execution
            .await
            .expect("the execution's task")
            .expect("execute");
        assert!(
            matches!(run.status, RunStatus::Succeeded | RunStatus::Failed),
            "{:?}",
            run.status
        );
        self.engine.get_run(id).await.expect("the run")
    }

    /// The time of the latest retry the run scheduled, if it is still ahead.
    async fn next_retry(&self, id: cairn_store::RunId) -> Option<i64> {
        let detail = self.engine.get_run(id).await.ok()?;
        let now = self.clock.now_ms();
        detail
            .events
            .iter()
            .rev()
            .find_map(|record| match record.event {
                Event::StepAttemptFailed { retry_at_ms, .. } => Some(retry_at_ms),
                _ => None,
            })
            .filter(|at| *at > now)
    }
}

/// The run's only step.
pub fn only_step(detail: &RunDetail) -> &StepSummary {
    assert_eq!(detail.steps.len(), 1, "{:#?}", detail.steps);
    &detail.steps[0]
}

/// How long after its failure the run's first failed attempt was retried, as scheduled.
pub fn first_retry_delay(detail: &RunDetail) -> Duration {
    let (failed_at, retry_at) = detail
        .events
        .iter()
        .find_map(|record| match record.event {
            Event::StepAttemptFailed { retry_at_ms, .. } => Some((record.at_ms, retry_at_ms)),
            _ => None,
        })
        .expect("a failed attempt");
    Duration::from_millis(u64::try_from(retry_at - failed_at).expect("a retry after the failure"))
}

/// The output of a run that succeeded, as `O`.
pub fn output<O: Payload>(detail: &RunDetail) -> O {
    assert_eq!(
        detail.run.status,
        RunStatus::Succeeded,
        "{:#?}",
        detail.run.error
    );
    serde_json::from_value(detail.run.output.clone().expect("an output")).expect("the output type")
}

/// The error of a run that failed at its only step's first attempt, fatally.
pub fn failed_at_once(detail: &RunDetail) -> &ErrorInfo {
    assert_eq!(detail.run.status, RunStatus::Failed);
    let step = only_step(detail);
    assert_eq!((step.status, step.attempts), (StepStatus::Failed, 1));
    let error = step.error.as_ref().expect("an error");
    assert!(!error.retryable, "{}", error.message);
    error
}

/// Asserts the run failed with `MissingCredentials` for `key`, and `server` saw no request.
pub async fn assert_missing_credentials(detail: &RunDetail, key: &str, server: &MockServer) {
    let error = failed_at_once(detail);
    assert_eq!(
        error.kind,
        ErrorKind::MissingCredentials,
        "{}",
        error.message
    );
    assert!(error.message.contains(key), "{}", error.message);
    let requests = server.received_requests().await.unwrap_or_default();
    assert!(requests.is_empty(), "{requests:?}");
}

/// Answers the first `http_method` request to `at` with `failure`, the next one with
/// `success`; each exactly once.
pub async fn fail_once_then(
    server: &MockServer,
    http_method: &str,
    at: &str,
    failure: ResponseTemplate,
    success: ResponseTemplate,
) {
    Mock::given(method(http_method))
        .and(path(at))
        .respond_with(failure)
        .up_to_n_times(1)
        .with_priority(1)
        .expect(1)
        .mount(server)
        .await;
    Mock::given(method(http_method))
        .and(path(at))
        .respond_with(success)
        .expect(1)
        .mount(server)
        .await;
}

/// Asserts the run's only step took two attempts, the first failing retryably with a message
/// containing `first_error`, and returns the delay the retry was scheduled after.
pub fn retried_once(detail: &RunDetail, first_error: &str) -> Duration {
    let step = only_step(detail);
    assert_eq!(step.attempts, 2);
    let first = &step.attempt_errors[0].error;
    assert!(
        first.retryable && first.message.contains(first_error),
        "{}",
        first.message
    );
    first_retry_delay(detail)
}
